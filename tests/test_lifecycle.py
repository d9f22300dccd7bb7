"""Process lifecycle: graceful shutdown, slow consumers, several workers."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ServerProcess, run_python
from tests.support.raw import RawPeer, StalledPeer
from tests.support.redis_checks import numsub

SEND_DATA = "mutation($g: String!, $p: JSON!) { sendData(group: $g, payload: $p) { id } }"


@pytest.mark.parametrize("asgi_server", ["hypercorn", "uvicorn"])
async def test_sigterm_closes_websockets_with_1001_and_leaves_redis_clean(
    redis_url: str, prefix: str, asgi_server: str
) -> None:
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}, server=asgi_server).start()
    user, note = unique("u"), unique()
    try:
        async with RawPeer(server.ws_url) as peer:
            await peer.init({"authorization": f"Bearer {token(user)}"})
            await peer.send(
                {
                    "type": "subscribe",
                    "id": "n",
                    "payload": {"query": f'mutation {{ openNote(noteId: "{note}") {{ id }} }}'},
                }
            )
            await peer.recv_type("next")
            await peer.recv_type("complete")
            channel = f"{prefix}:group:note_{note}"
            assert await numsub(redis_url, channel) == 1
            started = time.monotonic()
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            code, reason = await peer.closed_with(10)
            assert code == 1001, (code, reason)
        exit_code = await asyncio.to_thread(server.proc.wait, 15)
        assert exit_code == 0, server.log_tail()
        assert time.monotonic() - started < 10
        assert await numsub(redis_url, channel) == 0
        assert await numsub(redis_url, f"{prefix}:group:user_{user}") == 0
    finally:
        server.stop()


def slow_subscribe(peer: StalledPeer, note: str) -> None:
    peer.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token(unique('u'))}"}})
    assert peer.recv()["type"] == "connection_ack"
    open_note = f'mutation {{ openNote(noteId: "{note}") {{ id }} }}'
    peer.send({"type": "subscribe", "id": "o", "payload": {"query": open_note}})
    assert peer.recv()["type"] == "next"
    peer.send({"type": "subscribe", "id": "s", "payload": {"query": "subscription { data { payload } }"}})
    peer.send({"type": "subscribe", "id": "q", "payload": {"query": "{ session { subscriptionCount } }"}})
    while peer.recv().get("id") != "q":
        pass


async def test_a_client_that_stops_reading_is_closed_as_slow_and_others_lose_nothing(
    redis_url: str, prefix: str
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": prefix,
        "SWITCHBOARD_QUEUE_SIZE": "16",
        "SWITCHBOARD_PING_INTERVAL": "30",
    }
    server = ServerProcess(env).start()
    note = unique()
    try:
        async with WsClient(server.ws_url, token(unique("u"))) as reader:
            await reader.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
            events = await reader.events([f"note_{note}"])
            slow = await asyncio.to_thread(StalledPeer, "127.0.0.1", server.port)
            try:
                await asyncio.to_thread(slow_subscribe, slow, note)
                # ~14 MB: more than the kernel buffers hold, so the slow peer's queue overflows.
                # Published from a thread: the bystander reads on this loop meanwhile (with
                # deflate declined its frames are 24 KB each, no longer ~100 bytes).
                count = 600
                publishing = asyncio.create_task(
                    asyncio.to_thread(
                        run_python,
                        "from switchboard.publish import send_to_group_sync as s\n"
                        f"for i in range({count}):\n"
                        f"    s('note_{note}', 'data', payload={{'i': i, 'pad': 'x' * 24000}})",
                        {**server.env},
                    )
                )
                got: list[int] = []
                while len(got) < count:  # the slow peer's JOIN arrives too: count data events
                    event = (await events.next(10))["events"]
                    if event["__typename"] == "DataEvent":
                        got.append(event["payload"]["i"])
                assert got == list(range(count))
                await publishing
                code, frames = await asyncio.to_thread(slow.drain_until_closed)
                assert code == 4008, (code, frames)
                assert frames < count
            finally:
                slow.close()
    finally:
        server.stop()


async def test_two_workers_share_one_port_and_one_redis(redis_url: str, prefix: str) -> None:
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}, workers=2).start()
    user = unique("u")
    try:
        clients = [WsClient(server.ws_url, token(user)) for _ in range(6)]
        for client in clients:
            await client.__aenter__()
        try:
            subs = [await c.events() for c in clients]
            body = await http(
                server.http_url, SEND_DATA, token("p", publisher=True), g=f"user_{user}", p={"to": "all tabs"}
            )
            event_id = body["data"]["sendData"]["id"]
            for sub in subs:
                assert (await sub.next())["events"]["id"] == event_id
        finally:
            for client in clients:
                await client.__aexit__(None, None, None)
    finally:
        assert server.stop() == 0, server.log_tail()


@pytest.mark.parametrize("asgi_server", ["hypercorn", "uvicorn"])
async def test_sigterm_ends_http_streams_with_their_closing_frame(asgi_server: str) -> None:
    """SSE and multipart streams open at SIGTERM are ended by the server within the grace, with
    the comment saying why (SSE) or the closing boundary (multipart), and a complete chunked
    body: they were cut by the ASGI server after it (Chromium: ERR_INCOMPLETE_CHUNKED_ENCODING)."""
    server = ServerProcess(server=asgi_server).start()
    query = 'subscription { events(groups: ["all"]) { __typename } }'
    accepts = ["text/event-stream", "multipart/mixed;subscriptionSpec=1.0"]
    try:
        async with httpx.AsyncClient(timeout=15) as client:
            streams = [
                await client.send(
                    client.build_request(
                        "POST", server.http_url, json={"query": query}, headers={"accept": accept}
                    ),
                    stream=True,
                )
                for accept in accepts
            ]
            await asyncio.sleep(0.3)
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            bodies = [(await stream.aread()).decode() for stream in streams]  # complete, or it raises
            took = time.monotonic() - started
        sse, multipart = bodies
        assert ": closed: server shutting down" in sse, sse[-200:]
        assert multipart.rstrip().endswith("--graphql--"), multipart[-200:]
        assert took < 4, took
        assert await asyncio.to_thread(server.proc.wait, 15) == 0, server.log_tail()
    finally:
        server.stop()
