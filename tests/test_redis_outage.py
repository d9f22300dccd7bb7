"""Redis dies in the middle of a run and comes back: sessions stay, publishing fails fast, and
every process resubscribes its groups by itself."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import RedisServer, ServerProcess

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
OPEN = "mutation($n: ID!) { openNote(noteId: $n) { groups } }"


async def metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def test_redis_outage_and_recovery() -> None:
    redis = RedisServer().start()
    servers = [ServerProcess({"REDIS_URL": redis.url}).start() for _ in range(2)]
    a, b = servers
    user, note = unique("u"), unique()
    publisher = token("pub", publisher=True)
    try:
        async with WsClient(a.ws_url, token(user)) as on_a, WsClient(b.ws_url, token(user)) as on_b:
            for client in (on_a, on_b):
                await client.execute(OPEN, n=note)
            groups_before = [(await c.session_info())["groups"] for c in (on_a, on_b)]
            subs = [await on_a.events(), await on_b.events()]

            redis.kill()
            # Publishing fails fast with UNAVAILABLE; readiness says so; sessions stay connected.
            started = time.monotonic()
            body = await http(a.http_url, NOTIFY, publisher, g=f"note_{note}", m="lost")
            assert error_codes(body) == ["UNAVAILABLE"]
            assert time.monotonic() - started < 5
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{a.base_url}/readyz")).status_code == 503
            await asyncio.sleep(2)  # an outage of a few seconds
            assert [(await c.session_info())["groups"] for c in (on_a, on_b)] == groups_before

            redis.start()
            back = time.monotonic()
            # Each process resubscribes by itself; delivery resumes on both, for every group.
            # Events published before a process has resubscribed are lost (at-most-once), so
            # keep publishing until each subscriber has one.
            for group in (f"note_{note}", f"user_{user}"):
                waiting = list(subs)
                while waiting:
                    assert time.monotonic() - back < 10, "delivery did not resume"
                    await http(b.http_url, NOTIFY, publisher, g=group, m=f"back {group}")
                    for sub in list(waiting):
                        try:
                            # (a ResumeEvent says recovered: false first: the history died with Redis)
                            while (await sub.next(0.3))["events"].get("message") != f"back {group}":
                                pass
                        except AssertionError:
                            continue
                        waiting.remove(sub)
            assert time.monotonic() - back < 10
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{a.base_url}/readyz")).status_code == 200
            assert [(await c.session_info())["groups"] for c in (on_a, on_b)] == groups_before
            # Redis came back empty: each process wrote its live sessions and presence again.
            sessions = "{ sessions { id } }"
            presence = "query($g: String!) { presence(group: $g) { sessions users { userId } } }"
            ids = {(await c.session_info())["id"] for c in (on_a, on_b)}
            while True:
                listed = {
                    s["id"] for s in (await http(a.http_url, sessions, token(user)))["data"]["sessions"]
                }
                here = (await http(b.http_url, presence, token(user), g=f"note_{note}"))["data"]["presence"]
                if listed == ids and here["sessions"] == 2:
                    break
                assert time.monotonic() - back < 10, (listed, here)
                await asyncio.sleep(0.2)
            assert here["users"] == [{"userId": user}]
            for server in servers:
                reconnects = await metric(server, "switchboard_redis_reconnects_total")
                assert 1 <= reconnects <= 3  # counted once per outage: the reader did not spin
    finally:
        for server in servers:
            server.stop()
        redis.stop()
