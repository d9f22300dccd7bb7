"""One suite, both group layers: the contract of GroupLayer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from switchboard.exceptions import Unavailable
from switchboard.layers import GroupLayer, InMemoryLayer, RedisClusterLayer, RedisLayer
from switchboard.messages.envelope import Envelope
from tests.conftest import unique
from tests.support.redis_checks import numsub

TIMEOUT = 5.0


class Inbox:
    """A receiver that remembers what it got and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: Envelope) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[Envelope]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages

    async def stays_at(self, count: int, seconds: float = 0.3) -> None:
        await asyncio.sleep(seconds)
        assert len(self.messages) == count, self.messages


def make(kind: str, request: pytest.FixtureRequest, prefix: str | None = None) -> GroupLayer:
    if kind == "memory":
        return InMemoryLayer()
    if kind == "cluster":
        return RedisClusterLayer(request.getfixturevalue("redis_cluster_url"), prefix or unique("p"))
    return RedisLayer(request.getfixturevalue("redis_url"), prefix or unique("p"))


@pytest.fixture(params=["memory", "redis", "cluster"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[GroupLayer]:
    made = make(request.param, request)
    yield made
    await made.close()


@pytest.fixture(params=["redis", "cluster"])
def shared(request: pytest.FixtureRequest) -> str:
    """The layers that span processes."""
    return str(request.param)


def note(text: str, group: str) -> Envelope:
    return Envelope(type="notify", group=group, fields={"message": text})


async def test_group_send_reaches_every_member_once(layer: GroupLayer) -> None:
    group, a, b = unique("g"), Inbox(), Inbox()
    await layer.group_add(group, a)
    await layer.group_add(group, b)
    await layer.group_add(group, b)  # adding twice is still one membership
    sent = note("hi", group)
    await layer.group_send(group, sent)
    assert [m.id for m in await a.wait_for(1)] == [sent.id]
    assert [m.id for m in await b.wait_for(1)] == [sent.id]
    await b.stays_at(1)


async def test_envelope_survives_the_trip(layer: GroupLayer) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_add(group, inbox)
    sent = Envelope(type="data", group=group, fields={"payload": {"nested": [1, 2.5, None, "ü"]}})
    await layer.group_send(group, sent)
    (got,) = await inbox.wait_for(1)
    assert got == sent


async def test_discard_stops_delivery_and_unknown_discard_is_ignored(layer: GroupLayer) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_discard(group, inbox)  # never added: no error
    await layer.group_add(group, inbox)
    await layer.group_send(group, note("1", group))
    await inbox.wait_for(1)
    await layer.group_discard(group, inbox)
    await layer.group_send(group, note("2", group))
    await inbox.stays_at(1)


async def test_groups_are_isolated(layer: GroupLayer) -> None:
    g1, g2, in1, in2 = unique("g"), unique("g"), Inbox(), Inbox()
    await layer.group_add(g1, in1)
    await layer.group_add(g2, in2)
    await layer.group_send(g1, note("only one", g1))
    await in1.wait_for(1)
    await in2.stays_at(0)


async def test_sending_to_an_empty_group_is_fine(layer: GroupLayer) -> None:
    group = unique("empty")
    await layer.group_send(group, note("nobody", group))


async def test_order_is_kept_within_a_group(layer: GroupLayer) -> None:
    group, inbox = unique("g"), Inbox()
    await layer.group_add(group, inbox)
    sent = [note(str(i), group) for i in range(50)]
    for message in sent:
        await layer.group_send(group, message)
    assert [m.id for m in await inbox.wait_for(50)] == [m.id for m in sent]


async def test_a_failing_receiver_does_not_cost_others_their_message(layer: GroupLayer) -> None:
    group, good = unique("g"), Inbox()

    def broken(message: Envelope) -> None:
        raise RuntimeError("boom")

    await layer.group_add(group, broken)
    await layer.group_add(group, good)
    await layer.group_send(group, note("x", group))
    await good.wait_for(1)


async def test_ping_succeeds_when_reachable(layer: GroupLayer) -> None:
    await layer.ping()


# -- Redis-specific: one subscription per group per process, shared by processes ---------------


async def test_redis_subscribes_once_per_group_while_it_has_members(redis_url: str) -> None:
    layer = RedisLayer(redis_url, unique("p"))
    group = unique("g")
    channel = layer.channel(group)
    inboxes = [Inbox() for _ in range(5)]
    try:
        assert await numsub(redis_url, channel) == 0
        for inbox in inboxes:
            await layer.group_add(group, inbox)
        assert await numsub(redis_url, channel) == 1
        for inbox in inboxes[:-1]:
            await layer.group_discard(group, inbox)
        assert await numsub(redis_url, channel) == 1
        await layer.group_discard(group, inboxes[-1])
        assert await numsub(redis_url, channel) == 0
        assert layer.subscribed_groups() == frozenset()
    finally:
        await layer.close()


async def test_redis_layers_in_two_processes_share_groups(
    shared: str, request: pytest.FixtureRequest
) -> None:
    prefix = unique("p")
    first, second = make(shared, request, prefix), make(shared, request, prefix)
    group, here, there = unique("g"), Inbox(), Inbox()
    try:
        await first.group_add(group, here)
        await second.group_add(group, there)
        sent = note("across", group)
        await first.group_send(group, sent)
        assert (await here.wait_for(1))[0].id == sent.id
        assert (await there.wait_for(1))[0].id == sent.id
    finally:
        await first.close()
        await second.close()


async def test_redis_prefix_separates_deployments(shared: str, request: pytest.FixtureRequest) -> None:
    one, two = make(shared, request), make(shared, request)
    group, inbox = unique("g"), Inbox()
    try:
        await one.group_add(group, inbox)
        await two.group_send(group, note("other deployment", group))
        await inbox.stays_at(0)
    finally:
        await one.close()
        await two.close()


async def test_redis_drops_malformed_messages_and_keeps_going(redis_url: str) -> None:
    layer = RedisLayer(redis_url, unique("p"))
    group, inbox = unique("g"), Inbox()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await layer.group_add(group, inbox)
        for junk in (b"not json", b"[1,2]", b'{"type": 1}', b"\xff\xfe"):
            await client.publish(layer.channel(group), junk)
        sent = note("after junk", group)
        await layer.group_send(group, sent)
        assert [m.id for m in await inbox.wait_for(1)] == [sent.id]
    finally:
        await client.aclose()
        await layer.close()


async def test_concurrent_add_and_discard_settle_on_the_right_subscription(redis_url: str) -> None:
    layer = RedisLayer(redis_url, unique("p"))
    group = unique("g")
    inboxes = [Inbox() for _ in range(20)]
    try:
        await asyncio.gather(*(layer.group_add(group, i) for i in inboxes))
        await asyncio.gather(*(layer.group_discard(group, i) for i in inboxes[:10]))
        assert await numsub(redis_url, layer.channel(group)) == 1
        await asyncio.gather(*(layer.group_discard(group, i) for i in inboxes[10:]))
        assert await numsub(redis_url, layer.channel(group)) == 0
    finally:
        await layer.close()


async def test_redis_unreachable_is_unavailable_fast() -> None:
    from tests.support.processes import free_port

    layer = RedisLayer(f"redis://127.0.0.1:{free_port()}/0", "p", timeout=1.0)
    group = unique("g")
    try:
        async with asyncio.timeout(5):
            with pytest.raises(Unavailable):
                await layer.group_send(group, note("x", group))
            with pytest.raises(Unavailable):
                await layer.ping()
            with pytest.raises(Unavailable):
                await layer.group_add(group, Inbox())
    finally:
        await layer.close()


async def test_cluster_uses_sharded_pubsub_once_per_group_across_shards(redis_cluster_url: str) -> None:
    from redis.asyncio.cluster import RedisCluster

    layer = RedisClusterLayer(redis_cluster_url, unique("p"))
    groups = [unique("g") for _ in range(12)]
    inboxes = {g: [Inbox(), Inbox()] for g in groups}
    admin = RedisCluster.from_url(redis_cluster_url.replace("redis+cluster://", "redis://").split(",")[0])
    try:
        await admin.initialize()
        for group, pair in inboxes.items():
            for inbox in pair:
                await layer.group_add(group, inbox)
        owners = {admin.get_node_from_key(layer.channel(g)).name for g in groups}
        assert len(owners) > 1  # the groups really are spread over several shards
        for group in groups:
            node = admin.get_node_from_key(layer.channel(group))
            ((_, count),) = await admin.pubsub_shardnumsub(layer.channel(group), target_nodes=node)
            assert int(count) == 1  # one SSUBSCRIBE per group per process, however many members
            await layer.group_send(group, note("x", group))
        for pair in inboxes.values():
            for inbox in pair:
                await inbox.wait_for(1)
        for group, pair in inboxes.items():
            for inbox in pair:
                await layer.group_discard(group, inbox)
            node = admin.get_node_from_key(layer.channel(group))
            ((_, count),) = await admin.pubsub_shardnumsub(layer.channel(group), target_nodes=node)
            assert int(count) == 0
    finally:
        await admin.aclose()
        await layer.close()


async def test_a_burst_of_publishes_waits_for_pool_connections(
    shared: str, request: pytest.FixtureRequest
) -> None:
    """redis-py's default pool raises "Too many connections" past 100 in use (the channels_redis
    failure at 200 sockets); ours waits its turn."""
    layer = make(shared, request)
    group, inbox = unique("g"), Inbox()
    try:
        await layer.group_add(group, inbox)
        await asyncio.gather(*(layer.group_send(group, note(str(i), group)) for i in range(300)))
        assert len(await inbox.wait_for(300)) == 300
    finally:
        await layer.close()
