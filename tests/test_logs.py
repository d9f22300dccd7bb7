"""JSON logs: one object per line, and every line about a connection carries its session id."""

from __future__ import annotations

import asyncio

import orjson

from tests.conftest import token, unique
from tests.support.client import WsClient
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer


async def test_json_log_lines_carry_the_session_id() -> None:
    server = ServerProcess({"SWITCHBOARD_LOG_FORMAT": "json"}).start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        async with WsClient(server.ws_url, token(unique("u"))) as client:
            sid = (await client.session_info())["id"]
            await client.execute('mutation { openNote(noteId: "7") { id } }')
        async with RawPeer(server.ws_url) as peer:  # a connection that ends with a protocol error
            await peer.init()
            await peer.send("{not json")
            await peer.closed_with()
        await asyncio.sleep(0.3)
    finally:
        server.stop()
    lines = [line for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    entries = [orjson.loads(line) for line in lines]
    assert entries and all({"time", "level", "logger", "message", "pid"} <= e.keys() for e in entries)
    assert {e["pid"] for e in entries} == {pid}
    assert sum(1 for e in entries if e["message"].startswith("Running on")) == 1  # hypercorn's, once
    about_sessions = [
        e for e in entries if e["logger"] in ("switchboard.sessions.session", "switchboard.ws.connection")
    ]
    assert len(about_sessions) >= 4
    assert all(e.get("session") for e in about_sessions), about_sessions
    assert {e["session"] for e in about_sessions if "connected as" in e["message"]} >= {sid}
    closing = [e for e in about_sessions if "closing websocket 4400" in e["message"]]
    assert closing and closing[0]["session"] != sid
