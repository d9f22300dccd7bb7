"""Sessions spread over several server processes on one Redis: found and changed from any of them."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ServerProcess

OPEN = "mutation($n: ID!, $s: ID) { openNote(noteId: $n, sessionId: $s) { id groups } }"
CLOSE = "mutation($n: ID!, $s: ID) { closeNote(noteId: $n, sessionId: $s) { id groups } }"
SESSIONS = "{ sessions { id userId groups connectedAt } }"
DATA = "mutation($g: String!, $p: JSON!) { sendData(group: $g, payload: $p) { id } }"


@pytest.fixture(scope="module")
def trio(redis_url: str) -> Iterator[list[ServerProcess]]:
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("p"), "SWITCHBOARD_HEARTBEAT_INTERVAL": "0.3"}
    servers = [ServerProcess(env).start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


async def test_open_and_close_a_note_of_a_session_in_another_process(trio: list[ServerProcess]) -> None:
    a, b, _ = trio
    user, note = unique("u"), unique()
    async with WsClient(a.ws_url, token(user)) as client:
        sid = (await client.session_info())["id"]
        events = await client.events([f"note_{note}"])
        body = await http(b.http_url, OPEN, token(user), n=note, s=sid)
        assert "errors" not in body, body
        assert f"note_{note}" in body["data"]["openNote"]["groups"]
        assert f"note_{note}" in (await client.session_info())["groups"]
        sent = await http(b.http_url, DATA, token("pub", publisher=True), g=f"note_{note}", p=1)
        assert (await events.next())["events"]["id"] == sent["data"]["sendData"]["id"]
        body = await http(b.http_url, CLOSE, token(user), n=note, s=sid)
        assert f"note_{note}" not in body["data"]["closeNote"]["groups"]
        assert f"note_{note}" not in (await client.session_info())["groups"]


async def test_other_users_and_unknown_sessions_are_not_found_quickly(trio: list[ServerProcess]) -> None:
    a, b, _ = trio
    owner, stranger = unique("u"), unique("u")
    async with WsClient(a.ws_url, token(owner)) as client:
        sid = (await client.session_info())["id"]
        started = time.monotonic()
        theirs = await http(b.http_url, OPEN, token(stranger), n="1", s=sid)
        unknown = await http(b.http_url, OPEN, token(stranger), n="1", s=unique("s"))
        assert time.monotonic() - started < 1.0
        assert error_codes(theirs) == error_codes(unknown) == ["NOT_FOUND"]
        assert (await client.session_info())["groups"] == ["all", f"user_{owner}"]


async def test_sessions_query_lists_own_sessions_across_processes(trio: list[ServerProcess]) -> None:
    a, b, c = trio
    user, note = unique("u"), unique()
    async with WsClient(a.ws_url, token(user)) as on_a, WsClient(b.ws_url, token(user)) as on_b:
        await on_b.execute(OPEN, n=note)
        ids = {(await on_a.session_info())["id"], (await on_b.session_info())["id"]}
        async with WsClient(c.ws_url, token(unique("u"))):  # someone else's session is not listed
            body = await http(c.http_url, SESSIONS, token(user))
        listed = {s["id"]: s for s in body["data"]["sessions"]}
        assert set(listed) == ids
        assert all(s["userId"] == user and s["connectedAt"] for s in listed.values())
        assert f"note_{note}" in listed[(await on_b.session_info())["id"]]["groups"]
    # Gone with their connections.
    for _ in range(50):
        if (await http(c.http_url, SESSIONS, token(user)))["data"]["sessions"] == []:
            break
        await asyncio.sleep(0.05)
    assert (await http(c.http_url, SESSIONS, token(user)))["data"]["sessions"] == []
    assert error_codes(await http(c.http_url, SESSIONS)) == ["UNAUTHENTICATED"]


async def test_sessions_of_a_killed_process_disappear(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("p"), "SWITCHBOARD_HEARTBEAT_INTERVAL": "0.3"}
    doomed, survivor = ServerProcess(env).start(), ServerProcess(env).start()
    user = unique("u")
    try:
        client = WsClient(doomed.ws_url, token(user))
        await client.__aenter__()
        sid = (await client.session_info())["id"]
        assert [
            s["id"] for s in (await http(survivor.http_url, SESSIONS, token(user)))["data"]["sessions"]
        ] == [sid]
        doomed.stop(signal.SIGKILL)  # no cleanup at all
        started = time.monotonic()
        body = await http(survivor.http_url, OPEN, token(user), n="1", s=sid)
        assert error_codes(body) == ["NOT_FOUND"] and time.monotonic() - started < 1.0
        await asyncio.sleep(1.2)  # three heartbeat intervals
        assert (await http(survivor.http_url, SESSIONS, token(user)))["data"]["sessions"] == []
        await client.__aexit__(None, None, None)
    finally:
        doomed.stop()
        survivor.stop()


async def test_two_processes_on_a_redis_cluster(redis_cluster_url: str) -> None:
    env = {"REDIS_URL": redis_cluster_url, "SWITCHBOARD_PREFIX": unique("p")}
    a, b = ServerProcess(env).start(), ServerProcess(env).start()
    user, note = unique("u"), unique()
    try:
        async with WsClient(a.ws_url, token(user)) as client:
            sid = (await client.session_info())["id"]
            events = await client.events()
            body = await http(b.http_url, OPEN, token(user), n=note, s=sid)
            assert f"note_{note}" in body["data"]["openNote"]["groups"], body
            for group in (f"note_{note}", f"user_{user}", "all"):
                sent = await http(b.http_url, DATA, token("pub", publisher=True), g=group, p=group)
                assert (await events.next())["events"]["id"] == sent["data"]["sendData"]["id"]
            listed = (await http(b.http_url, SESSIONS, token(user)))["data"]["sessions"]
            assert [s["id"] for s in listed] == [sid]
    finally:
        a.stop()
        b.stop()
