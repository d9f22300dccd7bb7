"""Admission under attack (issue 25): the app's endpoints asked through a bounded client that
recovers after a flood and reads no more than a small answer; WebSocket connections capped per
user; the pending budget shared fairly between addresses; repeated Cookie headers joined as one.
Every case keeps a real user who must get in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import token, unique
from tests.support.app_server import AppServer
from tests.support.processes import ServerProcess, rss

MB = 1 << 20
INIT = '{"type":"connection_init","payload":{}}'


async def login(url: str, headers: Any, *, local: str = "127.0.0.1", init: str = INIT) -> Any:
    """The first answer to connection_init: the ack's payload (dict), or the close code (int)."""
    try:
        async with websockets.connect(
            url, subprotocols=["graphql-transport-ws"], additional_headers=headers, local_addr=(local, 0)
        ) as ws:  # type: ignore[list-item]
            await ws.send(init)
            reply = await asyncio.wait_for(ws.recv(), 10)
            return __import__("json").loads(reply)["payload"]
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1


@pytest.fixture(scope="module")
def slow_app() -> Iterator[AppServer]:
    server = AppServer(connect_delay=1.5).start()
    server.sessions.update({f"real-{i}": f"real{i}" for i in range(20)})
    yield server
    server.stop()


async def test_after_a_flood_against_a_slow_app_real_logins_get_in(slow_app: AppServer) -> None:
    """300 connects with a cookie the app does not know, against an app that takes 1.5 s per
    answer: at most 32 are asked at once and 256 wait, the rest refused at once (1013) rather
    than after a pool timeout; within the hook timeout (2 s) of the flood's end, 20 of 20 cookie
    logins succeed. (httpx's pool, 100 connections and a pool timeout, let connections that never
    connected pile up after pool timeouts, and logins failed for minutes.)"""
    server = ServerProcess(
        {
            "SWITCHBOARD_MODE": "prod",
            "SWITCHBOARD_ALLOWED_ORIGINS": "*",
            "SWITCHBOARD_CONNECT_URL": f"{slow_app.url}/connect",
            "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "2000",
            "SWITCHBOARD_MAX_PENDING_CONNECTIONS": "5000",
        }
    ).start()
    try:

        async def timed(i: int) -> tuple[Any, float]:
            begun = time.monotonic()
            outcome = await login(server.ws_url, {"cookie": f"session=flood-{i}"})
            return outcome, time.monotonic() - begun

        started = time.monotonic()
        results = await asyncio.gather(*(timed(i) for i in range(300)))
        flooded = time.monotonic() - started
        outcomes = [outcome for outcome, _ in results]
        assert set(outcomes) <= {4403, 1013}, set(map(str, outcomes))  # never admitted
        # 32 sent at once; the app may still be answering requests given up at their deadline
        # (their slot freed), never twice as many. httpx's own pool went to its 100.
        assert slow_app.most_in_flight <= 64, slow_app.most_in_flight
        # Refused without waiting out the hook timeout (2 s): the queue was full.
        at_once = [took for outcome, took in results if outcome == 1013 and took < 1.5]
        assert len(at_once) >= 300 - 32 - 256 - 5, (len(at_once), sorted(t for _, t in results)[:12])
        logins = await asyncio.gather(
            *(login(server.ws_url, {"cookie": f"session=real-{i}"}) for i in range(20))
        )
        took = time.monotonic() - started - flooded
        assert [p["userId"] if isinstance(p, dict) else p for p in logins] == [f"real{i}" for i in range(20)]
        assert took < 5, took
    finally:
        server.stop()


async def test_an_answer_past_the_size_limit_is_refused_and_costs_nothing(slow_app: AppServer) -> None:
    slow_app.connect_delay = 0.0
    server = ServerProcess({"SWITCHBOARD_CONNECT_URL": f"{slow_app.url}/connect"}).start()
    try:
        before = rss(server)
        outcomes = await asyncio.gather(*(login(server.ws_url, {"cookie": "session=huge"}) for _ in range(8)))
        assert outcomes == [1013] * 8
        assert rss(server) - before < 20 * MB, (rss(server) - before) / MB
        assert (await login(server.ws_url, {"cookie": "session=real-1"}))["userId"] == "real1"
    finally:
        slow_app.connect_delay = 1.5
        server.stop()


async def test_repeated_cookie_headers_reach_the_app_as_one(slow_app: AppServer) -> None:
    """HTTP/2 sends a header per cookie; the app must read them as one Cookie header."""
    slow_app.connect_delay = 0.0
    server = ServerProcess({"SWITCHBOARD_CONNECT_URL": f"{slow_app.url}/connect"}).start()
    try:
        reply = await login(server.ws_url, [("cookie", "theme=dark"), ("cookie", "session=real-2")])
        assert reply["userId"] == "real2"
        sent = [headers for path, headers, _ in slow_app.requests if path == "/connect"][-1]
        assert sent["cookie"] == "theme=dark; session=real-2"
    finally:
        slow_app.connect_delay = 1.5
        server.stop()


async def test_one_user_cannot_take_every_connection() -> None:
    server = ServerProcess({"SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "3"}).start()
    greedy = token(unique("greedy"))
    init = '{"type":"connection_init","payload":{"authorization":"Bearer %s"}}'
    try:
        held = []
        for _ in range(3):
            ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
            await ws.send(init % greedy)
            assert "connection_ack" in str(await asyncio.wait_for(ws.recv(), 5))
            held.append(ws)
        assert await login(server.ws_url, {}, init=init % greedy) == 1013
        other = await login(server.ws_url, {}, init=init % token(unique("other")))
        assert isinstance(other, dict) and other["userId"].startswith("other")
        await held.pop().close()
        await asyncio.sleep(0.2)
        again = await login(server.ws_url, {}, init=init % greedy)
        assert isinstance(again, dict), again  # a place freed is a place again
        for ws in held:
            await ws.close()
    finally:
        server.stop()


async def test_a_few_addresses_cannot_fill_the_pending_budget() -> None:
    """Budget 20, 15 per address: three addresses opening sockets that never authenticate hold
    at most an even share each past half of it, and a browser from a fourth address gets in."""
    server = ServerProcess(
        {"SWITCHBOARD_MAX_PENDING_CONNECTIONS": "20", "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "15"}
    ).start()
    idle: list[Any] = []
    try:
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for _ in range(15):
                ws = await websockets.connect(
                    server.ws_url,
                    subprotocols=["graphql-transport-ws"],
                    local_addr=(address, 0),  # type: ignore[list-item]
                )
                idle.append(ws)
        refused = 0
        for ws in idle:
            try:
                await asyncio.wait_for(ws.recv(), 0.05)
            except ConnectionClosed:
                refused += 1
            except TimeoutError:
                pass
        assert refused >= 45 - 19, refused  # the budget was never full
        reply = await login(server.ws_url, {}, local="127.0.0.9", init=INIT)
        assert isinstance(reply, dict), reply
    finally:
        for ws in idle:
            await ws.close()
        server.stop()
