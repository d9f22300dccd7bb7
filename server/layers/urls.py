"""REDIS_URL forms: redis:// (one server), redis+sentinel:// (follow failovers), redis+cluster://.

redis://[[user]:password@]host:port/db                 a single Redis (rediss:// for TLS)
redis+sentinel://[[user]:password@]host:port[,host:port]/service_name[/db]
redis+cluster://[[user]:password@]host:port[,host:port] seed nodes of a Redis Cluster (sharded pub/sub)
rediss+sentinel://, rediss+cluster://                   the same over TLS
The user, password and TLS of the URL hold for every connection made from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from switchboard.exceptions import ConfigurationError

POOL_SIZE = 64
SENTINEL = ("redis+sentinel", "rediss+sentinel")
CLUSTER = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    kind: Literal["single", "sentinel", "cluster"]
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None
    username: str | None = None
    tls: bool = False


def connection_kwargs(target: RedisTarget) -> dict[str, Any]:
    """Credentials and TLS for a connection to one node of a Sentinel set or a cluster."""
    options: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.tls:
        options["ssl"] = True
    return options


def parse(url: str) -> RedisTarget:
    parts = urlsplit(url)
    if parts.scheme not in (*SENTINEL, *CLUSTER):
        return RedisTarget("single", url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, sep, secret = credentials.partition(":")
        username = unquote(user) or None if sep else None
        password = unquote(secret if sep else user) or None
    tls = parts.scheme.startswith("rediss")
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"REDIS_URL host {item!r} must be host:port")
        hosts.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme in CLUSTER:
        return RedisTarget("cluster", url, tuple(hosts), password=password, username=username, tls=tls)
    if not path:
        raise ConfigurationError("a redis+sentinel:// URL needs the service name: .../mymaster[/db]")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    return RedisTarget(
        "sentinel", url, tuple(hosts), service=path[0], db=db, password=password, username=username, tls=tls
    )


def async_client(target: RedisTarget, **options: Any) -> Any:
    """An asyncio client for a single Redis, a Sentinel-managed master, or a cluster."""
    if target.kind == "sentinel":
        options.setdefault("max_connections", 1000)  # its pool raises, rather than waits, past this
        sentinel = AsyncSentinel(list(target.hosts), socket_timeout=options.get("socket_connect_timeout"))  # type: ignore[no-untyped-call,unused-ignore]
        client: aioredis.Redis = sentinel.master_for(
            target.service, db=target.db, **connection_kwargs(target), **options
        )
        return client
    if target.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        options.pop("retry", None)  # the cluster client retries at the cluster level itself
        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        return RedisCluster(startup_nodes=nodes, **connection_kwargs(target), **options)
    # redis-py's default pool raises "Too many connections" past 100 in use; this one waits its
    # turn instead (a burst of connects or publishes is normal here, not an error).
    pool = BlockingConnectionPool.from_url(
        target.url,
        max_connections=options.pop("max_connections", POOL_SIZE),
        timeout=options.get("socket_connect_timeout") or 5.0,
        **options,
    )
    return aioredis.Redis.from_pool(pool)


def sync_client(target: RedisTarget, **options: Any) -> Any:
    """A blocking client with a `publish`/`spublish` command, for publishers outside the server."""
    if target.kind == "sentinel":
        sentinel = Sentinel(list(target.hosts), socket_timeout=options.get("socket_timeout"))  # type: ignore[no-untyped-call,unused-ignore]
        return sentinel.master_for(target.service, db=target.db, **connection_kwargs(target), **options)  # type: ignore[no-untyped-call,unused-ignore]
    if target.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in target.hosts]  # type: ignore[no-untyped-call,unused-ignore]
        return RedisCluster(startup_nodes=nodes, **connection_kwargs(target), **options)
    return redis.Redis.from_url(target.url, **options)
