"""How the Redis layer carries channels: plain pub/sub on one Redis (or a Sentinel master).

The layer owns membership, acknowledgements and readers; a transport owns connections: which
pub/sub connection carries a channel, how to publish, and closing them. The cluster's sharded
transport is in layers/cluster.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from switchboard.layers import urls

SubscribeOn = Callable[[PubSub, str, Callable[[str], Awaitable[Any]]], Awaitable[None]]
"""The layer's (S)SUBSCRIBE: sends the command on a pub/sub connection and waits for Redis."""


def client_options(timeout: float) -> dict[str, Any]:
    # Fail fast when Redis is down: callers get UNAVAILABLE in about a second, not a long retry.
    return {
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
    }


class PubSubTransport(Protocol):
    """Connections for one RedisLayer."""

    sharded: bool
    """True on a cluster: channels and history keys are hash-tagged, publishing is SPUBLISH."""

    client: Any
    """The command client (pool), shared with the history, the directory and presence."""

    async def open(self, control_channel: str, subscribe_on: SubscribeOn) -> None:
        """Connect the pub/sub side, subscribed to the process's own control channel."""

    async def subscribe(self, channel: str, subscribe_on: SubscribeOn) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(self, channel: str, data: bytes) -> int:
        """Send `data`; return how many subscribers Redis counted."""

    def channels(self) -> list[str]:
        """The channels subscribed now."""

    async def close_pubsubs(self) -> None:
        """Close every pub/sub connection (the command client is closed by the layer)."""


class PlainTransport:
    """One pub/sub connection carries every channel; PUBLISH to publish."""

    sharded = False

    def __init__(self, target: urls.RedisTarget, timeout: float) -> None:
        self.client: Any = urls.async_client(target, **client_options(timeout))
        self._pubsub: PubSub | None = None

    async def open(self, control_channel: str, subscribe_on: SubscribeOn) -> None:
        pubsub = self.client.pubsub()
        try:
            await subscribe_on(pubsub, control_channel, pubsub.subscribe)
        except BaseException:
            await pubsub.aclose()
            raise
        self._pubsub = pubsub

    async def subscribe(self, channel: str, subscribe_on: SubscribeOn) -> None:
        pubsub = self._opened()
        await subscribe_on(pubsub, channel, pubsub.subscribe)

    async def unsubscribe(self, channel: str) -> None:
        await self._opened().unsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> int:
        return int(await self.client.publish(channel, data))

    def channels(self) -> list[str]:
        pubsub = self._pubsub
        return [] if pubsub is None else [c.decode() if isinstance(c, bytes) else c for c in pubsub.channels]

    async def close_pubsubs(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            self._pubsub = None

    def _opened(self) -> PubSub:
        if self._pubsub is None:
            raise RuntimeError("the transport is not open")  # the layer opens it before any channel
        return self._pubsub


def make_transport(url: str, timeout: float) -> PubSubTransport:
    """Sharded pub/sub for a redis+cluster:// URL, plain pub/sub for any other."""
    target = urls.parse(url)
    if target.kind == "cluster":
        from switchboard.layers.cluster import ShardedTransport

        return ShardedTransport(target, timeout)
    return PlainTransport(target, timeout)
