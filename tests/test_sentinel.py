"""Through Redis Sentinel: the master dies, Sentinel promotes its replica, delivery resumes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import RedisServer, ServerProcess, _wait_for_port, free_port

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"


class SentinelProcess:
    def __init__(self, master_port: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-sentinel-"))
        (self.dir / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, str(self.dir / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert _wait_for_port(self.port, time.monotonic() + 10, self.proc), "sentinel did not start"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


async def test_failover_through_sentinel() -> None:
    master = RedisServer().start()
    replica = RedisServer(("--replicaof", "127.0.0.1", str(master.port))).start()
    sentinel = SentinelProcess(master.port).start()
    await asyncio.sleep(1.5)  # sentinel discovers the replica through the master
    server = ServerProcess({"REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster"}).start()
    user = unique("u")
    publisher = token("pub", publisher=True)
    try:
        async with WsClient(server.ws_url, token(user)) as client:
            events = await client.events()
            body = await http(server.http_url, NOTIFY, publisher, g=f"user_{user}", m="before")
            assert (await events.next())["events"]["id"] == body["data"]["sendNotify"]["id"]

            master.kill()
            started = time.monotonic()
            while True:  # at-most-once while the failover runs: publish until one arrives
                assert time.monotonic() - started < 30, "delivery did not resume after the failover"
                body = await http(server.http_url, NOTIFY, publisher, g=f"user_{user}", m="after")
                if body.get("errors"):
                    assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
                    await asyncio.sleep(0.3)
                    continue
                try:
                    got = await events.next(1)
                except AssertionError:
                    continue
                if "message" not in got["events"]:
                    # The layer says whether the history on the new master covers what it missed.
                    assert got["events"]["__typename"] == "ResumeEvent", got
                    continue
                assert got["events"]["message"] == "after"
                break
            print(f"delivery resumed {time.monotonic() - started:.1f}s after the master died")
            assert (await client.session_info())["groups"] == ["all", f"user_{user}"]
    finally:
        server.stop()
        sentinel.stop()
        replica.stop()
        master.stop()
