"""Budgets in bytes and time: refused before they cost anything, each answered on its own
operation, while a bystander receives every event published meanwhile, in order."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from switchboard.exceptions import ConfigurationError
from switchboard.security.auth import mint_token
from switchboard.settings import DEVELOPMENT_SECRET, Settings
from tests.conftest import token, unique
from tests.support.client import WsClient, http, padded_events_reach
from tests.support.frames import FramePeer
from tests.support.processes import ROOT, TEST_SECRET, ServerProcess, rss, run_python
from tests.support.raw import StalledPeer
from tests.test_lifecycle import slow_subscribe

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
EVENTS = "subscription($s: [SinceInput!]) { events(since: $s) { __typename } }"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    started = ServerProcess().start()
    yield started
    started.stop()


@pytest.fixture
async def bystander(server: ServerProcess) -> AsyncIterator[Callable[[Awaitable[Any]], Awaitable[Any]]]:
    """Runs an attack while events are published to a bystander, then checks it got them all."""
    user = unique("b")
    async with WsClient(server.ws_url, token(user)) as client:
        events = await client.events([f"user_{user}"])

        async def during(attack: Awaitable[Any]) -> Any:
            sent: list[str] = []

            publisher = token(unique("svc"), publisher=True)  # its own mutation budget

            async def publish() -> None:
                for i in range(20):
                    sent.append(f"m{i}")
                    body = await http(
                        server.http_url,
                        NOTIFY,
                        token=publisher,
                        g=f"user_{user}",
                        m=sent[-1],
                    )
                    assert "errors" not in body, body
                    await asyncio.sleep(0.02)

            result, _ = await asyncio.gather(attack, publish())
            started = time.monotonic()
            got = [(await events.next())["events"]["message"] for _ in sent]
            assert got == sent
            assert time.monotonic() - started < 2.0, "the bystander's events came late"
            return result

        yield during


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ConfigurationError, match="development secret"):
        Settings.from_env({"SWITCHBOARD_MODE": "prod", "SWITCHBOARD_SECRET": DEVELOPMENT_SECRET})
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--port", "1"],
        env={"SWITCHBOARD_MODE": "prod", "SWITCHBOARD_SECRET": DEVELOPMENT_SECRET, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "development secret" in done.stderr


async def test_a_token_living_longer_than_the_maximum_is_refused(server: ServerProcess) -> None:
    forever = mint_token(TEST_SECRET, unique("u"), ttl=365 * 24 * 3600)
    body = await http(server.http_url, "{ me { id } }", token=forever)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "lifetime" in body["errors"][0]["message"]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "switchboard", "token", "--user", "u", "--ttl", str(365 * 24 * 3600)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "SWITCHBOARD_MAX_TOKEN_TTL" in done.stderr


async def test_a_2_mb_http_body_is_refused_before_it_is_read(
    server: ServerProcess, bystander: Callable[[Awaitable[Any]], Awaitable[Any]]
) -> None:
    query = "{ " + "me { id } " * 200_000 + "}"  # 2 MB

    async def attack() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            replies = await asyncio.gather(
                *(client.post(server.http_url, json={"query": query}) for _ in range(5))
            )
        return [r.status_code for r in replies]

    before = rss(server)
    assert await bystander(attack()) == [413] * 5
    assert rss(server) - before < 8 << 20


async def test_a_token_heavy_document_stops_at_the_token_limit(
    server: ServerProcess, bystander: Callable[[Awaitable[Any]], Awaitable[Any]]
) -> None:
    """60 KB (under the body limit) of 30,000 tokens: refused at token 2000, not parsed whole."""
    query = "{ " + "a " * 30_000 + "}"

    async def attack() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            replies = await asyncio.gather(
                *(client.post(server.http_url, json={"query": query}) for _ in range(20))
            )
        return [r.json() for r in replies]

    started = time.monotonic()
    bodies = await bystander(attack())
    assert all("more than 2000 tokens" in b["errors"][0]["message"] for b in bodies), bodies[0]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("since", "fragment"),
    [
        ([{"group": "all", "cursor": "abc:1²"}], "is not <epoch>:<offset>"),  # isdigit() yet no int
        ([{"group": "all", "cursor": "abc:" + "9" * 40}], "is not <epoch>:<offset>"),  # past 64 bits
        ([{"group": "all", "cursor": "nocolon"}], "is not <epoch>:<offset>"),
        ([{"group": f"g{i}", "cursor": "e:1"} for i in range(1500)], "at most"),  # 1500 groups, 44 KB
    ],
)
async def test_a_bad_cursor_fails_that_subscription_and_nothing_else(
    server: ServerProcess,
    bystander: Callable[[Awaitable[Any]], Awaitable[Any]],
    since: list[dict[str, str]],
    fragment: str,
) -> None:
    async with FramePeer("127.0.0.1", server.port) as peer:
        await peer.init(token(unique("u")))

        async def attack() -> dict[str, Any]:
            await peer.send(
                {"id": "1", "type": "subscribe", "payload": {"query": EVENTS, "variables": {"s": since}}}
            )
            return (await peer.message())[1]

        refused = await bystander(attack())
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert fragment in refused["payload"][0]["message"]
        await peer.send({"id": "2", "type": "subscribe", "payload": {"query": "{ session { id } }"}})
        _, fine = await peer.message()
        assert fine["type"] == "next" and fine["id"] == "2"


async def test_a_subscriptions_variables_are_bounded(server: ServerProcess) -> None:
    async with FramePeer("127.0.0.1", server.port) as peer:
        await peer.init(token(unique("u")))
        fat = {"s": [], "unused": "x" * 5000}
        await peer.send({"id": "1", "type": "subscribe", "payload": {"query": EVENTS, "variables": fat}})
        _, refused = await peer.message()
        assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "variables" in refused["payload"][0]["message"]


async def stalled_readers(
    env: dict[str, str], readers: int, count: int, pad: str
) -> tuple[list[int | None], int]:
    """`readers` connections stop reading while `count` events (`pad` is the payload's padding,
    an expression of `i`) go to their note; a bystander in the same note must get them all.
    Returns the stalled connections' close codes and the server's RSS growth meanwhile."""
    server = ServerProcess(env).start()
    note = unique("n")
    stalled: list[StalledPeer] = []
    try:
        async with WsClient(server.ws_url, token(unique("b"))) as bystander:
            await bystander.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
            events = await bystander.events([f"note_{note}"])
            for _ in range(readers):
                peer = await asyncio.to_thread(StalledPeer, "127.0.0.1", server.port)
                stalled.append(peer)
                await asyncio.to_thread(slow_subscribe, peer, note)
            await asyncio.sleep(0.3)
            before = rss(server)
            await padded_events_reach(events, server, f"note_{note}", count, pad)
            growth = rss(server) - before
            closes = await asyncio.gather(*(asyncio.to_thread(p.drain_until_closed) for p in stalled))
            return [code for code, _ in closes], growth
    finally:
        for peer in stalled:
            peer.close()
        server.stop()


async def test_readers_that_stall_on_large_events_cost_their_byte_budget_not_the_process(
    redis_url: str, prefix: str
) -> None:
    """20 connections stop reading while 200 events of 29 KB go to their note: each is closed with
    4008 once its queue holds SWITCHBOARD_QUEUE_BYTES (payloads shared, not copied per socket);
    the process grows by a few MB instead of 20 x 1024 frames x 29 KB; the bystander gets all."""
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}
    codes, growth = await stalled_readers(env, readers=20, count=200, pad="'x' * 29000")
    assert codes == [4008] * 20
    assert growth < 48 << 20, f"RSS grew {growth / 1e6:.0f} MB"


GUARDED = {
    "SWITCHBOARD_MAX_CONNECTIONS": "6",
    "SWITCHBOARD_MAX_PENDING_CONNECTIONS": "40",
    "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "20",
    "SWITCHBOARD_CONNECT_BURST": "40",
    "SWITCHBOARD_CONNECT_RATE": "2",
    "SWITCHBOARD_OPERATION_BURST": "30",
    "SWITCHBOARD_HTTP_BURST": "20",
    "SWITCHBOARD_HTTP_RATE": "1",
    "SWITCHBOARD_OPERATION_RATE": "0.1",
}


@pytest.fixture
def guarded() -> Iterator[ServerProcess]:
    started = ServerProcess(GUARDED).start()
    yield started
    started.stop()


async def test_sockets_that_never_authenticate_cannot_lock_real_users_out(guarded: ServerProcess) -> None:
    """25 token-less sockets from one address: 20 wait (their own budget), 5 are refused; real
    users from another address still connect, up to MAX_CONNECTIONS (6) authenticated ones."""
    attackers = [FramePeer("127.0.0.1", guarded.port, local="127.0.0.2") for _ in range(25)]
    users = [FramePeer("127.0.0.1", guarded.port) for _ in range(7)]
    try:
        for peer in attackers:
            await peer.__aenter__()
        waiting = await asyncio.gather(*(peer.still_open(0.5) for peer in attackers))
        assert waiting.count(True) == 20
        refused = [p.closed_with for p, open_ in zip(attackers, waiting, strict=True) if not open_]
        assert refused == [1013] * 5
        for peer in users[:6]:
            await peer.__aenter__()
            await peer.init(token(unique("u")))
        await users[6].__aenter__()
        await users[6].send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token(unique('u'))}"}}
        )
        assert await users[6].close_code() == 1013  # the seventh authenticated one
    finally:
        for peer in attackers + users:
            await peer.__aexit__()


async def test_connection_attempts_are_limited_per_address(guarded: ServerProcess) -> None:
    codes = []
    # 20 past the burst of 40: at 2 per second the bucket cannot refill them all however slowly
    # this machine opens sockets (each attempt takes 0.05-0.2 s here).
    for _ in range(60):
        async with FramePeer("127.0.0.1", guarded.port, local="127.0.0.3") as peer:
            codes.append(None if await peer.still_open(0.05) else peer.closed_with)
    assert codes[:40] == [None] * 40  # the burst
    assert codes[40:].count(1013) >= 10, codes[40:]


async def test_operations_are_limited_per_user_across_connections_and_http(guarded: ServerProcess) -> None:
    user, bystander_user = unique("u"), unique("b")
    async with (
        WsClient(guarded.ws_url, token(bystander_user)) as bystander,
        FramePeer("127.0.0.1", guarded.port) as first,
        FramePeer("127.0.0.1", guarded.port) as second,
    ):
        events = await bystander.events([f"user_{bystander_user}"])
        await first.init(token(user))
        await second.init(token(user))
        codes: list[str | None] = []
        for i in range(20):
            for peer in (first, second):
                await peer.send(
                    {"id": f"q{i}", "type": "subscribe", "payload": {"query": "{ session { id } }"}}
                )
                reply = {"type": "complete"}
                while reply["type"] == "complete":  # a query's `next` comes with a `complete`
                    _, reply = await peer.message()
                codes.append(reply["payload"][0]["extensions"]["code"] if reply["type"] == "error" else None)
        assert codes[:30] == [None] * 30  # the user's burst, shared by both connections
        assert codes[30:] == ["RATE_LIMITED"] * 10
        over_http = await http(guarded.http_url, "{ me { id } }", token=token(user))
        assert over_http["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        body = await http(
            guarded.http_url, NOTIFY, token=token("svc", publisher=True), g=f"user_{bystander_user}", m="ok"
        )
        assert "errors" not in body, body
        assert (await events.next())["events"]["message"] == "ok"


async def test_past_the_process_queue_budget_the_slowest_readers_go_first(
    redis_url: str, prefix: str
) -> None:
    """Per-connection budgets generous (50 MB), the process's small (3 MB): five stalled readers
    are closed with 4008 once the queues together pass it; the bystander, whose queue stays
    near empty, gets every event."""
    env = {
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": prefix,
        "SWITCHBOARD_QUEUE_BYTES": str(50 << 20),
        "SWITCHBOARD_QUEUE_BYTES_TOTAL": str(3 << 20),
    }
    codes, _ = await stalled_readers(env, readers=5, count=80, pad="str(i) * 100000")
    assert codes == [4008] * 5


async def test_http_requests_are_limited_per_address_before_anything_else(guarded: ServerProcess) -> None:
    """One address in a loop gets 429 at the door (no authentication, no body read); another
    address is not affected."""
    loud = httpx.AsyncHTTPTransport(local_address="127.0.0.4")
    async with httpx.AsyncClient(transport=loud, timeout=10) as client:
        replies = [await client.post(guarded.http_url, json={"query": "{ __typename }"}) for _ in range(30)]
    statuses = [r.status_code for r in replies]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429] * 10
    assert replies[-1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert replies[-1].headers["retry-after"] == "1"
    quiet = await http(guarded.http_url, "{ __typename }")
    assert quiet == {"data": {"__typename": "Query"}}


async def test_sigterm_during_an_attack_still_stops_the_server_in_time(redis_url: str, prefix: str) -> None:
    """Stalled readers holding full queues, and a client hammering HTTP with heavy queries: SIGTERM
    still ends the process within its grace period (5 s, plus start-up of the stop)."""
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}).start()
    note = unique("n")
    stalled: list[StalledPeer] = []
    stop = asyncio.Event()

    async def hammer() -> None:
        heavy = "{ " + "a " * 30_000 + "}"
        async with httpx.AsyncClient(timeout=5) as client:
            while not stop.is_set():
                try:
                    await client.post(server.http_url, json={"query": heavy})
                except httpx.HTTPError:
                    return  # the server is gone

    try:
        for _ in range(5):
            peer = await asyncio.to_thread(StalledPeer, "127.0.0.1", server.port)
            stalled.append(peer)
            await asyncio.to_thread(slow_subscribe, peer, note)
        await asyncio.to_thread(
            run_python,
            "from switchboard.publish import send_to_group_sync as s\n"
            f"for i in range(100):\n    s('note_{note}', 'data', payload={{'i': i, 'pad': 'x' * 20000}})",
            {**server.env},
        )
        hammering = [asyncio.create_task(hammer()) for _ in range(4)]
        await asyncio.sleep(1.0)
        started = time.monotonic()
        code = await asyncio.to_thread(server.stop, signal.SIGTERM, 15)
        took = time.monotonic() - started
        stop.set()
        await asyncio.gather(*hammering)
        assert code == 0 and took < 10, (code, took)
    finally:
        stop.set()
        for peer in stalled:
            peer.close()
        server.stop()


async def test_one_mib_events_to_many_readers_are_sent_within_the_send_budget(
    redis_url: str, prefix: str
) -> None:
    """300 readers (another process) each get three 1 MiB events: rendered once, the payload
    shared by every queue, each socket's copy made only while it sends (and no more than
    SWITCHBOARD_SEND_BYTES_TOTAL of them at once), so the process grows by a few copies, not by
    900 (the issue measured +593 MB for 500 readers); a bystander gets every notify meanwhile."""
    env = {
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": prefix,
        "SWITCHBOARD_SEND_BYTES_TOTAL": str(16 << 20),
        "SWITCHBOARD_MAX_PENDING_PER_ADDRESS": "1000",
        "SWITCHBOARD_CONNECT_BURST": "1000",
        "SWITCHBOARD_LOG_LEVEL": "WARNING",
    }
    server = ServerProcess(env).start()
    group, readers, sampled = "all", 300, threading.Event()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.readers", server.ws_url, str(readers), group, "3",
        cwd=ROOT, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        async with asyncio.timeout(60):
            assert (await child.stdout.readline()).strip() == b"READY"
        user = unique("b")
        async with WsClient(server.ws_url, token(user)) as bystander:
            events = await bystander.events([f"user_{user}"])
            before, peak = rss(server), [0]

            def sample() -> None:
                while not sampled.is_set():
                    peak[0] = max(peak[0], rss(server))
                    time.sleep(0.01)

            sampler = asyncio.create_task(asyncio.to_thread(sample))
            code = (
                "from switchboard.publish import send_to_group_sync as s\n"
                "for i in range(3):\n"
                f"    s('{group}', 'data', payload={{'i': i, 'pad': 'x' * ((1 << 20) - 64)}})"
            )
            publishing = asyncio.create_task(asyncio.to_thread(run_python, code, {**server.env}))
            publisher, sent = token(unique("svc"), publisher=True), []
            for i in range(20):
                sent.append(f"m{i}")
                await http(server.http_url, NOTIFY, token=publisher, g=f"user_{user}", m=sent[-1])
                await asyncio.sleep(0.05)
            got = [(await events.next(10))["events"]["message"] for _ in sent]
            assert got == sent
            await publishing
            async with asyncio.timeout(60):
                result = json.loads(await child.stdout.readline())
            sampled.set()
            await sampler
        assert result == {"done": readers, "received": 3 * readers}
        growth = peak[0] - before
        assert growth < 64 << 20, f"RSS peaked {growth / 1e6:.0f} MB above where it started"
    finally:
        sampled.set()
        if child.returncode is None:
            child.kill()
            await child.wait()
        server.stop()
