"""Sharded pub/sub on a Redis Cluster, so publishing scales with the shards.

SPUBLISH goes to the shard that owns the channel's slot, and only that shard's subscribers
hear it; each process holds one pub/sub connection per shard it has channels on and
SSUBSCRIBEs each group there (once, while it has local members), as Centrifugo does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from switchboard.layers import urls
from switchboard.layers.redis import RedisLayer
from switchboard.layers.transport import SubscribeOn, client_options
from switchboard.observability.stats import Stats


class ShardedTransport:
    """One plain connection per shard's master for SSUBSCRIBE; the cluster client for SPUBLISH."""

    sharded = True

    def __init__(self, target: urls.RedisTarget, timeout: float) -> None:
        options = client_options(timeout)
        options.pop("retry")  # per-shard pub/sub connections are redis-py's own reconnects
        self.client: Any = urls.async_client(target, **options)
        self._target = target
        self._options = options
        self._in_flight = asyncio.Semaphore(urls.POOL_SIZE)
        self._shard_pubsubs: dict[str, PubSub] = {}
        self._shard_clients: list[aioredis.Redis] = []
        self._channel_shard: dict[str, str] = {}

    async def open(self, control_channel: str, subscribe_on: SubscribeOn) -> None:
        await self.client.initialize()
        await self.subscribe(control_channel, subscribe_on)

    async def subscribe(self, channel: str, subscribe_on: SubscribeOn) -> None:
        name, pubsub = self._shard_pubsub(channel)
        await subscribe_on(pubsub, channel, pubsub.ssubscribe)
        self._channel_shard[channel] = name

    async def unsubscribe(self, channel: str) -> None:
        name = self._channel_shard.pop(channel, None)
        pubsub = self._shard_pubsubs.get(name) if name else None
        if pubsub is not None:
            await pubsub.sunsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> int:
        # The cluster client's per-node pools raise past max_connections instead of waiting.
        async with self._in_flight:
            return int(await self.client.spublish(channel, data))

    def channels(self) -> list[str]:
        return list(self._channel_shard)

    async def close_pubsubs(self) -> None:
        for pubsub in self._shard_pubsubs.values():
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        self._shard_pubsubs.clear()
        self._channel_shard.clear()
        for client in self._shard_clients:
            await client.aclose()
        self._shard_clients.clear()

    def _shard_pubsub(self, channel: str) -> tuple[str, PubSub]:
        node = self.client.get_node_from_key(channel)
        pubsub = self._shard_pubsubs.get(node.name)
        if pubsub is None:
            # A plain connection to that shard's master: the cluster client's own pub/sub
            # polls its shards in turn, which would add latency to every delivery. It keeps the
            # URL's credentials and TLS.
            credentials = urls.connection_kwargs(self._target)
            client = aioredis.Redis(host=node.host, port=node.port, **credentials, **self._options)
            self._shard_clients.append(client)
            pubsub = client.pubsub()
            self._shard_pubsubs[node.name] = pubsub
        return node.name, pubsub


class RedisClusterLayer(RedisLayer):
    """RedisLayer over a Redis Cluster (Redis >= 7): the sharded transport."""

    def __init__(
        self,
        url: str,
        prefix: str = "switchboard",
        *,
        timeout: float = 3.0,
        history_size: int = 0,
        history_ttl: float = 300.0,
        stats: Stats | None = None,
    ) -> None:
        target = urls.parse(url)
        if target.kind != "cluster":
            raise ValueError(f"not a redis+cluster:// URL: {url!r}")
        super().__init__(
            url,
            prefix,
            timeout=timeout,
            history_size=history_size,
            history_ttl=history_ttl,
            transport=ShardedTransport(target, timeout),
            stats=stats,
        )
