"""Per-group history and resume: offsets that only grow, replay of exactly what was missed, and
an explicit signal when the history cannot cover the gap. Both layers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from unittest.mock import ANY

import pytest
import redis.asyncio as aioredis

from switchboard.layers import InMemoryLayer, RedisClusterLayer, RedisLayer
from switchboard.messages.envelope import Envelope
from tests.conftest import token, unique
from tests.support.client import LEGACY_WS, TRANSPORT_WS, Subscription, WsClient, http
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer
from tests.test_layers import Inbox

DATA = "mutation($g: String!, $p: JSON!) { sendData(group: $g, payload: $p) { id } }"
OPEN = "mutation($n: ID!) { openNote(noteId: $n) { id } }"
RESUMING = """subscription($since: [SinceInput!]) {
  events(since: $since) {
    __typename
    ... on DataEvent { group payload cursor }
    ... on ResumeEvent { group recovered reason cursor }
  }
}"""


@pytest.fixture(params=["memory", "redis", "cluster"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[InMemoryLayer | RedisLayer]:
    made: InMemoryLayer | RedisLayer
    if request.param == "memory":
        made = InMemoryLayer(history_size=5, history_ttl=60)
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster_url")
        made = RedisClusterLayer(url, unique("p"), history_size=5, history_ttl=60)
    else:
        made = RedisLayer(request.getfixturevalue("redis_url"), unique("p"), history_size=5, history_ttl=60)
    yield made
    await made.close()


def data(group: str, n: int) -> Envelope:
    return Envelope(type="data", group=group, fields={"payload": n})


async def test_offsets_grow_and_reach_members(layer: InMemoryLayer | RedisLayer) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_add(group, inbox)
    for i in range(3):
        await layer.group_send(group, data(group, i))
    got = await inbox.wait_for(3)
    assert [m.offset for m in got] == [1, 2, 3]
    assert len({m.epoch for m in got}) == 1
    assert got[2].cursor == f"{got[0].epoch}:3"


async def test_since_returns_exactly_the_missed_events(layer: InMemoryLayer | RedisLayer) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_add(group, inbox)
    for i in range(4):
        await layer.group_send(group, data(group, i))
    got = await inbox.wait_for(4)
    recovery = await layer.history_since(group, got[1].cursor or "")
    assert recovery.recovered
    assert [e.fields["payload"] for e in recovery.events] == [2, 3]
    assert [e.offset for e in recovery.events] == [3, 4]
    assert recovery.cursor == got[3].cursor
    nothing = await layer.history_since(group, got[3].cursor or "")
    assert nothing.recovered and nothing.events == ()


async def test_what_is_sent_without_history_is_delivered_but_never_kept(
    layer: InMemoryLayer | RedisLayer,
) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_add(group, inbox)
    await layer.group_send(group, data(group, 0))
    for i in range(1, 20):  # four times what the history keeps
        await layer.group_send(group, data(group, i), history=False)
    await layer.group_send(group, data(group, 20))
    got = await inbox.wait_for(21)
    assert [m.fields["payload"] for m in got] == list(range(21))
    assert all(m.cursor is None for m in got[1:20])
    recovery = await layer.history_since(group, got[0].cursor or "")
    assert recovery.recovered, recovery.reason
    assert [e.fields["payload"] for e in recovery.events] == [20]


async def test_a_trimmed_history_says_it_cannot_recover(layer: InMemoryLayer | RedisLayer) -> None:
    group = unique("g")
    for i in range(10):  # the history keeps 5
        await layer.group_send(group, data(group, i))
    recovery = await layer.history_since(group, (await layer.history_since(group, "x:0")).cursor or "")
    assert recovery.recovered  # the newest cursor itself is fine
    first_epoch = (recovery.cursor or "").split(":")[0]
    stale = await layer.history_since(group, f"{first_epoch}:2")
    assert not stale.recovered and stale.events == () and "no longer covers" in (stale.reason or "")


async def test_a_lost_history_changes_the_epoch(redis_url: str) -> None:
    prefix, group = unique("p"), unique("g")
    layer = RedisLayer(redis_url, prefix, history_size=10)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await layer.group_send(group, data(group, 1))
        before = (await layer.history_since(group, "x:0")).cursor or ""
        await client.delete(*[k async for k in client.scan_iter(f"{prefix}:history:{group}:*")])
        await layer.group_send(group, data(group, 2))
        recovery = await layer.history_since(group, before)
        assert not recovery.recovered and "epoch" in (recovery.reason or "")
        assert (recovery.cursor or "").split(":")[0] != before.split(":")[0]
    finally:
        await client.aclose()
        await layer.close()


async def test_memory_history_expires_into_a_new_epoch() -> None:
    layer = InMemoryLayer(history_size=10, history_ttl=0.2)
    group = unique("g")
    await layer.group_send(group, data(group, 1))
    old = (await layer.history_since(group, "x:0")).cursor or ""
    await asyncio.sleep(0.3)
    await layer.group_send(group, data(group, 2))
    recovery = await layer.history_since(group, old)
    assert not recovery.recovered and "epoch" in (recovery.reason or "")


# -- resume end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history_servers(redis_url: str) -> Iterator[list[ServerProcess]]:
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("h"), "SWITCHBOARD_HISTORY_SIZE": "500"}
    servers = [ServerProcess(env).start(), ServerProcess(env).start()]
    yield servers
    for server in servers:
        server.stop()


class Feed:
    """Publishes 0, 1, 2, ... to a note group until stopped."""

    def __init__(self, server: ServerProcess, group: str) -> None:
        self.server, self.group, self.sent = server, group, 0
        self.publisher = token(unique("pub"), publisher=True)  # its own mutation budget
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            body = await http(self.server.http_url, DATA, self.publisher, g=self.group, p=self.sent)
            assert "errors" not in body, body  # a refused publish would look like a gap
            self.sent += 1
            await asyncio.sleep(0.12)  # within the default budget of 10 mutations a second

    async def stop(self) -> int:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        return self.sent


async def read_until(sub: Subscription, predicate: Callable[[dict], bool], limit: int = 2000) -> list[dict]:
    got = []
    for _ in range(limit):
        event = (await sub.next())["events"]
        got.append(event)
        if predicate(event):
            return got
    raise AssertionError("never saw the expected event")


async def resume_case(
    first: ServerProcess, second: ServerProcess, before_reconnect: Callable[[], Awaitable[None]]
) -> None:
    user, note = unique("u"), unique()
    group = f"note_{note}"
    feed = Feed(first, group)
    try:
        async with WsClient(first.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=None)
            received: list[dict] = []
            while len(received) < 20:
                event = (await sub.next())["events"]
                if event["__typename"] == "DataEvent":
                    received.append(event)
        last = received[-1]
        seen = [e["payload"] for e in received]
        await before_reconnect()
        await asyncio.sleep(0.3)  # events keep flowing while disconnected
        async with WsClient(second.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=[{"group": group, "cursor": last["cursor"]}])
            resume = (await sub.next())["events"]
            assert resume == {**resume, "__typename": "ResumeEvent", "group": group, "recovered": True}
            target = feed.sent + 30
            more = await read_until(sub, lambda e: e.get("payload", -1) >= target)
        sent = await feed.stop()
        numbers = seen + [e["payload"] for e in more if e["__typename"] == "DataEvent"]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a gap or a duplicate"
        assert numbers[-1] >= target and sent > numbers[-1]
    finally:
        if not feed._task.done():
            await feed.stop()


@pytest.mark.parametrize("layer_kind", ["memory", "redis"])
async def test_resume_after_a_dropped_connection(layer_kind: str, request: pytest.FixtureRequest) -> None:
    server = (
        request.getfixturevalue("memory_server")
        if layer_kind == "memory"
        else request.getfixturevalue("history_servers")[0]
    )

    async def nothing() -> None:
        return None

    await resume_case(server, server, nothing)


async def test_resume_through_another_process_after_a_restart(redis_url: str) -> None:
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("h"), "SWITCHBOARD_HISTORY_SIZE": "500"}
    first, second = ServerProcess(env).start(), ServerProcess(env).start()
    try:

        async def restart_first() -> None:
            first.stop()
            first.start()

        await resume_case(first, second, restart_first)
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("layer_kind", ["memory", "redis", "cluster"])
async def test_resume_past_the_history_is_not_recovered(
    layer_kind: str, request: pytest.FixtureRequest
) -> None:
    env = {"SWITCHBOARD_HISTORY_SIZE": "3"}
    if layer_kind != "memory":
        url = request.getfixturevalue("redis_cluster_url" if layer_kind == "cluster" else "redis_url")
        env |= {"REDIS_URL": url, "SWITCHBOARD_PREFIX": unique("h")}
    server = ServerProcess(env).start()
    user, note = unique("u"), unique()
    group = f"note_{note}"
    publisher = token("pub", publisher=True)
    try:
        async with WsClient(server.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=None)
            await http(server.http_url, DATA, publisher, g=group, p=0)
            cursor = (await sub.next())["events"]["cursor"]
        for i in range(1, 10):  # more than the 3 the history keeps
            await http(server.http_url, DATA, publisher, g=group, p=i)
        async with WsClient(server.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=[{"group": group, "cursor": cursor}])
            resume = (await sub.next())["events"]
            assert resume["__typename"] == "ResumeEvent" and resume["recovered"] is False
            assert "no longer covers" in resume["reason"]
            await http(server.http_url, DATA, publisher, g=group, p="live")
            assert (await sub.next())["events"]["payload"] == "live"  # live events follow, nothing replayed
    finally:
        server.stop()


async def test_a_crowd_opening_and_closing_a_note_keeps_its_events_resumable(redis_url: str) -> None:
    """Join and leave are not history: 40 of them in a note that keeps 5 events leave a cursor
    from before them recoverable (the reconnect storm lost its notes' events to them)."""
    server = ServerProcess(
        {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("h"), "SWITCHBOARD_HISTORY_SIZE": "5"}
    )
    server.start()
    user, note = unique("u"), unique()
    group = f"note_{note}"
    publisher = token(unique("pub"), publisher=True)
    presence = """subscription($g: [String!]) {
      events(groups: $g) { __typename ... on PresenceEvent { kind cursor } } }"""
    try:
        async with WsClient(server.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=None)
            watch = await client.subscribe(presence, g=[group])
            await http(server.http_url, DATA, publisher, g=group, p=0)
            cursor = (await sub.next())["events"]["cursor"]
            for _ in range(20):
                async with WsClient(server.ws_url, token(unique("v"))) as visitor:
                    await visitor.execute(OPEN, n=note)
            seen = []
            while len(seen) < 40:
                event = (await watch.next())["events"]
                if event["__typename"] == "PresenceEvent":
                    seen.append(event)
            assert {e["kind"] for e in seen} == {"JOIN", "LEAVE"}
            assert all(e["cursor"] is None for e in seen)
        await http(server.http_url, DATA, publisher, g=group, p=1)
        async with WsClient(server.ws_url, token(user)) as client:
            await client.execute(OPEN, n=note)
            sub = await client.subscribe(RESUMING, since=[{"group": group, "cursor": cursor}])
            resume = (await sub.next())["events"]
            assert resume["__typename"] == "ResumeEvent" and resume["recovered"] is True, resume
            assert (await sub.next())["events"]["payload"] == 1
    finally:
        server.stop()


# -- a position in every group, from the start ----------------------------------------------------

USER_EVENTS = """subscription($g: [String!], $since: [SinceInput!]) {
  events(groups: $g, since: $since) {
    __typename
    ... on DataEvent { group payload cursor }
    ... on ResumeEvent { group recovered reason cursor }
  }
}"""


class Peer:
    """A RawPeer speaking either WebSocket subprotocol, keeping cursors as the README says."""

    def __init__(self, raw: RawPeer, legacy: bool) -> None:
        self.raw, self.legacy = raw, legacy

    async def subscribe(self, **variables: Any) -> None:
        kind = "start" if self.legacy else "subscribe"
        payload = {"query": USER_EVENTS, "variables": variables}
        await self.raw.send({"id": "1", "type": kind, "payload": payload})

    async def event(self) -> dict[str, Any]:
        message = await self.raw.recv_type("data" if self.legacy else "next")
        event: dict[str, Any] = message["payload"]["data"]["events"]
        return event


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize("layer_kind", ["memory", "redis"])
@pytest.mark.parametrize("through", ["resume", "since"])
async def test_a_group_with_no_event_yet_still_resumes(
    layer_kind: str, subprotocol: str, through: str, request: pytest.FixtureRequest
) -> None:
    """A client that keeps cursors gets a position for every group its subscription covers when
    it starts ("-" before any history); sent back (connection_init `resume`, or `since`) after
    events were published meanwhile, it replays them from the start of the group's history."""
    server = (
        request.getfixturevalue("memory_server")
        if layer_kind == "memory"
        else request.getfixturevalue("history_servers")[0]
    )
    user = unique("u")
    group = f"user_{user}"
    auth = {"authorization": f"Bearer {token(user)}"}
    legacy = subprotocol == LEGACY_WS
    async with RawPeer(server.ws_url, subprotocol) as raw:
        await raw.init({**auth, "resume": {}})
        first = Peer(raw, legacy)
        await first.subscribe(g=[group])
        start = await first.event()
    expected = {"__typename": "ResumeEvent", "group": group, "recovered": True, "reason": None}
    assert start == {**expected, "cursor": ANY}
    # Redis has no history for the group yet ("-"); the memory layer begins one when asked.
    assert start["cursor"] == ("-" if layer_kind == "redis" else f"{start['cursor'].rpartition(':')[0]}:0")

    publisher = token(unique("pub"), publisher=True)
    for n in (1, 2):
        body = await http(server.http_url, DATA, publisher, g=group, p=n)
        assert "errors" not in body, body

    async with RawPeer(server.ws_url, subprotocol) as raw:
        if through == "resume":
            await raw.init({**auth, "resume": {group: start["cursor"]}})
            since = None
        else:
            await raw.init(auth)
            since = [{"group": group, "cursor": start["cursor"]}]
        again = Peer(raw, legacy)
        await again.subscribe(g=[group], since=since)
        resumed = await again.event()
        assert resumed["__typename"] == "ResumeEvent" and resumed["recovered"] is True, resumed
        epoch = resumed["cursor"].rpartition(":")[0]
        assert resumed["cursor"] == f"{epoch}:0"
        replayed = [await again.event(), await again.event()]
        assert [(e["payload"], e["cursor"]) for e in replayed] == [(1, f"{epoch}:1"), (2, f"{epoch}:2")]
        await http(server.http_url, DATA, publisher, g=group, p=3)
        assert (await again.event())["payload"] == 3


async def test_a_position_is_taken_after_what_the_subscription_already_holds(
    memory_server: ServerProcess,
) -> None:
    """A group that has history: the start position is its newest cursor, and a resume from it
    replays only what came after (nothing twice)."""
    user = unique("u")
    group = f"user_{user}"
    publisher = token(unique("pub"), publisher=True)
    await http(memory_server.http_url, DATA, publisher, g=group, p=0)
    auth = {"authorization": f"Bearer {token(user)}"}
    async with RawPeer(memory_server.ws_url) as raw:
        await raw.init({**auth, "resume": {}})
        peer = Peer(raw, False)
        await peer.subscribe(g=[group])
        start = await peer.event()
    assert start["recovered"] is True and start["cursor"].endswith(":1"), start
    await http(memory_server.http_url, DATA, publisher, g=group, p=1)
    async with RawPeer(memory_server.ws_url) as raw:
        await raw.init({**auth, "resume": {group: start["cursor"]}})
        peer = Peer(raw, False)
        await peer.subscribe(g=[group])
        assert (await peer.event())["cursor"] == start["cursor"]
        assert (await peer.event())["payload"] == 1


async def test_a_client_that_keeps_no_cursors_gets_no_positions(memory_server: ServerProcess) -> None:
    user = unique("u")
    group = f"user_{user}"
    async with RawPeer(memory_server.ws_url) as raw:
        await raw.init({"authorization": f"Bearer {token(user)}"})
        peer = Peer(raw, False)
        await peer.subscribe(g=[group])
        await http(memory_server.http_url, DATA, token(unique("pub"), publisher=True), g=group, p=7)
        event = await peer.event()
        assert event == {"__typename": "DataEvent", "group": group, "payload": 7, "cursor": ANY}
