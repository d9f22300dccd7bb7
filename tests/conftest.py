"""Session-wide real things: one redis-server, and Switchboard servers on both layers."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from switchboard.publish import send_to_group_sync
from switchboard.security.auth import mint_token
from tests.support.processes import TEST_SECRET, RedisClusterNodes, RedisServer, ServerProcess
from tests.support.stock import stock_clients  # noqa: F401 (a fixture for every module)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    try:
        cluster = RedisClusterNodes().start()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        pytest.fail(f"could not start a local Redis Cluster: {exc}", pytrace=False)
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def prefix() -> str:
    """Channels of this test session never meet another's, even on a shared Redis."""
    return f"sbtest{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def memory_server() -> Iterator[ServerProcess]:
    server = ServerProcess().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_servers(redis_url: str, prefix: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two server processes on one Redis."""
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}
    first = ServerProcess(env).start()
    try:
        second = ServerProcess(env).start()
    except BaseException:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


@pytest.fixture(scope="session")
def uvicorn_server(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    """The same app under uvicorn (`switchboard serve --server uvicorn`), on the Redis layer."""
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}, server="uvicorn").start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis", "uvicorn"])
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """Every end-to-end test runs against both layers, and under both ASGI servers."""
    name = {"memory": "memory_server", "uvicorn": "uvicorn_server"}.get(request.param)
    if name is not None:
        return request.getfixturevalue(name)  # type: ignore[no-any-return]
    return request.getfixturevalue("redis_servers")[0]  # type: ignore[no-any-return]


@pytest.fixture
def publish_env(redis_url: str, prefix: str) -> dict[str, str]:
    """Environment for a publisher process that talks to the Redis servers."""
    import os

    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": prefix,
        "SWITCHBOARD_SECRET": TEST_SECRET,
    }


def token(user: str, publisher: bool = False, ttl: int = 3600) -> str:
    return mint_token(TEST_SECRET, user, publisher=publisher, ttl=ttl)


def unique(name: str = "n") -> str:
    return f"{name}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def publishing(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Publish a notify from this process straight to Redis, as a Django view would (history
    included), to the servers of `redis_servers` (same Redis, same prefix)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SWITCHBOARD_PREFIX", prefix)
    monkeypatch.delenv("SWITCHBOARD_HISTORY_SIZE", raising=False)

    def publish(group: str, message: str) -> None:
        send_to_group_sync(group, "notify", message=message)

    return publish
