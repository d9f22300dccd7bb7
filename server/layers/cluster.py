"""The Redis Cluster layer: sharded pub/sub, so publishing scales with the shards.

SPUBLISH goes to the shard that owns the channel's slot, and only that shard's subscribers
hear it; each process holds one pub/sub connection per shard it has channels on and
SSUBSCRIBEs each group there (once, while it has local members), as Centrifugo does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from switchboard.layers import urls
from switchboard.layers.redis import RedisLayer, client_options


class RedisClusterLayer(RedisLayer):
    """RedisLayer over a Redis Cluster (Redis >= 7), with SSUBSCRIBE/SPUBLISH."""

    SHARDED = True

    def _make_client(self, url: str, timeout: float) -> Any:
        target = urls.parse(url)
        options = client_options(timeout)
        options.pop("retry")  # per-shard pub/sub connections are redis-py's own reconnects
        self._shard_pubsubs: dict[str, PubSub] = {}
        self._shard_clients: list[aioredis.Redis] = []
        self._channel_shard: dict[str, str] = {}
        self._password = target.password
        self._in_flight = asyncio.Semaphore(urls.POOL_SIZE)
        self._options = options
        return urls.async_client(target, **options)

    async def _publish(self, channel: str, data: bytes) -> int:
        # The cluster client's per-node pools raise past max_connections instead of waiting.
        async with self._in_flight:
            return int(await self._client.spublish(channel, data))

    async def _open_transport(self) -> None:
        await self._client.initialize()
        await self._open_channel(self._control_channel)

    def _shard_pubsub(self, channel: str) -> tuple[str, PubSub]:
        node = self._client.get_node_from_key(channel)
        pubsub = self._shard_pubsubs.get(node.name)
        if pubsub is None:
            # A plain connection to that shard's master: the cluster client's own pub/sub
            # polls its shards in turn, which would add latency to every delivery.
            client = aioredis.Redis(host=node.host, port=node.port, password=self._password, **self._options)
            self._shard_clients.append(client)
            pubsub = client.pubsub()
            self._shard_pubsubs[node.name] = pubsub
        return node.name, pubsub

    async def _open_channel(self, channel: str) -> None:
        name, pubsub = self._shard_pubsub(channel)
        await self._subscribe_on(pubsub, channel, pubsub.ssubscribe)
        self._channel_shard[channel] = name

    async def _close_channel(self, channel: str) -> None:
        name = self._channel_shard.pop(channel, None)
        pubsub = self._shard_pubsubs.get(name) if name else None
        if pubsub is not None:
            await pubsub.sunsubscribe(channel)

    def _transport_channels(self) -> Iterable[str]:
        return list(self._channel_shard)

    async def _close_pubsubs(self) -> None:
        for pubsub in self._shard_pubsubs.values():
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        self._shard_pubsubs.clear()
        self._channel_shard.clear()
        for client in self._shard_clients:
            await client.aclose()
        self._shard_clients.clear()
