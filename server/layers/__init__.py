"""Group layers: in-memory (one process) and Redis (many processes and hosts)."""

from __future__ import annotations

from switchboard.layers import urls
from switchboard.layers.base import GroupLayer, LocalGroups, Receiver
from switchboard.layers.cluster import RedisClusterLayer
from switchboard.layers.memory import InMemoryLayer
from switchboard.layers.redis import RedisLayer
from switchboard.observability.stats import Stats
from switchboard.settings import Settings

__all__ = [
    "GroupLayer",
    "InMemoryLayer",
    "LocalGroups",
    "Receiver",
    "RedisClusterLayer",
    "RedisLayer",
    "make_layer",
]


def make_layer(settings: Settings, stats: Stats | None = None) -> GroupLayer:
    """Redis (or Sentinel, or Cluster) when REDIS_URL is set, else the embedded in-memory layer;
    it counts what it carries in `stats` (the app's)."""
    size, ttl = settings.history_size, settings.history_ttl
    if not settings.redis_url:
        return InMemoryLayer(history_size=size, history_ttl=ttl, stats=stats)
    if urls.parse(settings.redis_url).kind == "cluster":
        return RedisClusterLayer(
            settings.redis_url, settings.prefix, history_size=size, history_ttl=ttl, stats=stats
        )
    return RedisLayer(settings.redis_url, settings.prefix, history_size=size, history_ttl=ttl, stats=stats)
