"""Redis faults never lose an event silently: a server whose connection to Redis is cut (by a
proxy of the test's own) delivers what was published meanwhile from the history, late and in
order, once it is back; or says `recovered: false` where the history cannot tell."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import pytest
import redis

from switchboard.publish import send_to_group_sync
from tests.conftest import token, unique
from tests.support.client import Subscription, WsClient, http
from tests.support.processes import ServerProcess
from tests.support.proxy import TcpProxy

EVENTS = (
    "subscription($g: [String!]) { events(groups: $g) { __typename"
    " ... on NotifyEvent { message } ... on ResumeEvent { recovered reason } } }"
)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    started = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    yield started
    await started.close()


@pytest.fixture
def publish(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Publish straight to Redis (not through the proxy), as another process would."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SWITCHBOARD_PREFIX", prefix)
    monkeypatch.delenv("SWITCHBOARD_HISTORY_SIZE", raising=False)
    return lambda group, message: send_to_group_sync(group, "notify", message=message)


@asynccontextmanager
async def subscribed_through(proxy: TcpProxy, prefix: str) -> AsyncIterator[tuple[Subscription, str]]:
    """A server whose Redis is behind the proxy, and a client in a note subscribed to it:
    (its events, the note's group). The server starts from a thread: the proxy runs on this
    event loop, and the server needs it to get ready."""
    env = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "SWITCHBOARD_PREFIX": prefix}
    server = await asyncio.to_thread(ServerProcess(env).start)
    user, note = unique("u"), unique("n")
    try:
        async with WsClient(server.ws_url, token(user)) as client:
            await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
            yield await client.subscribe(EVENTS, g=[f"note_{note}"]), f"note_{note}"
    finally:
        server.stop()


@pytest.mark.parametrize("before", [("before-1", "before-2"), ()], ids=["delivered-before", "quiet-group"])
async def test_events_published_while_the_connection_is_cut_arrive_late_and_in_order(
    proxy: TcpProxy, prefix: str, publish: Callable[[str, str], None], before: tuple[str, ...]
) -> None:
    """Whether or not the group delivered anything before the cut: every group the server is
    subscribed to has a position from the moment it subscribed."""
    async with subscribed_through(proxy, prefix) as (events, group):
        for message in before:
            await asyncio.to_thread(publish, group, message)
        got = [(await events.next())["events"] for _ in before]

        await proxy.cut(5.0)  # the server's pub/sub and command connections are reset
        for message in ("during-1", "during-2", "during-3"):
            await asyncio.to_thread(publish, group, message)
        while True:  # once the server is back, the gap arrives first, then live events
            event = (await events.next(15))["events"]
            got.append(event)
            if event.get("message") == "during-3":
                break
        await asyncio.to_thread(publish, group, "after-1")
        got.append((await events.next())["events"])
    messages = [e.get("message") for e in got if e["__typename"] == "NotifyEvent"]
    assert messages == [*before, "during-1", "during-2", "during-3", "after-1"]
    assert all(e["__typename"] == "NotifyEvent" for e in got), got


async def test_a_gap_the_history_cannot_cover_is_said_not_hidden(
    proxy: TcpProxy, redis_url: str, prefix: str, publish: Callable[[str, str], None]
) -> None:
    async with subscribed_through(proxy, prefix) as (events, group):
        await asyncio.to_thread(publish, group, "before")
        assert (await events.next())["events"]["message"] == "before"

        cutting = asyncio.create_task(proxy.cut(2.0))
        await asyncio.sleep(0.5)
        # The group's history is lost meanwhile (expired, or Redis restarted without it).
        direct = redis.Redis.from_url(redis_url)
        direct.delete(*direct.keys(f"{prefix}:history:{group}:*"))
        direct.close()
        await asyncio.to_thread(publish, group, "after-the-loss")
        await cutting
        resume = (await events.next(15))["events"]
        assert resume["__typename"] == "ResumeEvent" and resume["recovered"] is False, resume
        assert "refetch" in resume["reason"]
        await asyncio.to_thread(publish, group, "live")
        assert (await events.next())["events"]["message"] == "live"


@pytest.mark.parametrize("before", [("before",), ()], ids=["delivered-before", "quiet-group"])
async def test_a_black_holed_connection_is_found_and_its_gap_filled(
    proxy: TcpProxy, prefix: str, publish: Callable[[str, str], None], before: tuple[str, ...]
) -> None:
    """20 s during which the route to Redis drops everything and resets nothing: the server
    finds its silent pub/sub connection by a PING, reconnects when the route is back, and the
    events of the hole arrive late and in order, in a group quiet until then too."""
    async with subscribed_through(proxy, prefix) as (events, group):
        for message in before:
            await asyncio.to_thread(publish, group, message)
        got = [(await events.next())["events"] for _ in before]
        hole = asyncio.create_task(proxy.blackhole(20.0))
        await asyncio.sleep(1.0)
        for message in ("during-1", "during-2"):
            await asyncio.to_thread(publish, group, message)
        await hole
        while not got or got[-1].get("message") != "during-2":
            got.append((await events.next(30))["events"])
        await asyncio.to_thread(publish, group, "after")
        got.append((await events.next(10))["events"])
    assert [e.get("message") for e in got] == [*before, "during-1", "during-2", "after"]


async def test_200_ms_to_redis_delays_but_loses_and_forgets_nothing(
    proxy: TcpProxy, prefix: str, publish: Callable[[str, str], None]
) -> None:
    """Every Redis round trip takes 400 ms more (200 each way): events arrive, in order, and the
    session stays listed and present (no LEAVE for a session still connected)."""
    proxy.latency = 0.2
    async with subscribed_through(proxy, prefix) as (events, group):
        sent = [f"slow-{i}" for i in range(10)]
        for message in sent:
            await asyncio.to_thread(publish, group, message)
        got = [(await events.next(10))["events"] for _ in sent]
        assert [e.get("message") for e in got] == sent
        await asyncio.sleep(6)  # past a heartbeat interval: a slow heartbeat must not look dead
        await asyncio.to_thread(publish, group, "still")
        later = (await events.next(10))["events"]
        assert later.get("message") == "still", later  # no PresenceEvent LEAVE came first


SESSIONS = "{ sessions { id } }"
PRESENCE = "query($g: String!) { presence(group: $g) { sessions } }"


async def test_sessions_that_leave_during_a_reset_are_gone_once_redis_is_back(
    proxy: TcpProxy, redis_url: str, prefix: str
) -> None:
    """Ten tabs close while their server cannot reach Redis: once it can again, another process
    sees neither their sessions nor their presence (within a heartbeat interval), not 24 h later."""
    behind = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "SWITCHBOARD_PREFIX": prefix}
    cut_off = await asyncio.to_thread(ServerProcess(behind).start)
    watcher = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}).start()
    user, note = unique("u"), unique("n")
    publisher = token("svc", publisher=True)

    async def seen() -> tuple[int, int]:
        sessions = await http(watcher.http_url, SESSIONS, token(user))
        present = await http(watcher.http_url, PRESENCE, publisher, g=f"note_{note}")
        return len(sessions["data"]["sessions"]), present["data"]["presence"]["sessions"]

    tabs = [WsClient(cut_off.ws_url, token(user)) for _ in range(10)]
    try:
        for tab in tabs:
            await tab.__aenter__()
            await tab.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
        assert await seen() == (10, 10)
        cutting = asyncio.create_task(proxy.cut(5.0))
        await asyncio.sleep(0.5)
        for tab in tabs:
            await tab.__aexit__(None, None, None)
        await cutting
        back = asyncio.get_running_loop().time()
        while (now := await seen()) != (0, 0):
            assert asyncio.get_running_loop().time() - back < 12, f"still seen after Redis came back: {now}"
            await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(cut_off.stop)
        watcher.stop()
