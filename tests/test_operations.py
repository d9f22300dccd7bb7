"""Health, readiness and metrics as a scraper and a load balancer see them."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ServerProcess

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"


async def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.base_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_health_and_readiness(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.base_url}/healthz")).json() == {"status": "ok"}
        ready = await client.get(f"{server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


async def test_metrics_follow_what_happens(server: ServerProcess) -> None:
    before = await scrape(server)
    user = unique("u")
    async with WsClient(server.ws_url, token(user)) as client:
        events = await client.events()
        during = await scrape(server)
        assert during[("switchboard_connections", ())] >= 1
        assert during[("switchboard_sessions", ())] >= 1
        await http(server.http_url, NOTIFY, token("pub", publisher=True), g=f"user_{user}", m="counted")
        await events.next()
        refused = await http(server.http_url, NOTIFY, token(user), g="all", m="not allowed")
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    after = await scrape(server)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert grew("switchboard_events_published_total", (("type", "notify"),)) >= 1
    assert grew("switchboard_events_delivered_total") >= 1
    assert grew("switchboard_errors_total", (("code", "FORBIDDEN"),)) >= 1
    assert grew("switchboard_delivery_latency_seconds_count") >= 1
    assert after[("process_resident_memory_bytes", ())] > 0
    # The modules, schema and app made at start-up are frozen out of every collection.
    assert after[("switchboard_gc_frozen_objects", ())] > 10_000
    # Collections happen all the time in a server that allocates; each is timed.
    young = (("generation", "0"),)
    assert after[("switchboard_gc_pause_seconds_count", young)] > 0
    assert after[("switchboard_gc_pause_seconds_sum", young)] > 0
    assert (
        after[("switchboard_gc_pause_seconds_bucket", (("generation", "0"), ("le", "+Inf")))]
        == after[("switchboard_gc_pause_seconds_count", young)]
    )


async def test_any_worker_answers_metrics_for_all_workers(redis_url: str, prefix: str) -> None:
    """Under --workers 2 a scrape reaches one worker; it must count every worker's sockets and
    deliveries, and show each worker on its own."""
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}, workers=2).start()
    user = unique("u")
    clients: list[WsClient] = []
    try:
        # The kernel picks the worker of each connection: open until both workers hold some.
        per_worker: dict[str, float] = {}
        async with asyncio.timeout(30):
            while len(clients) < 40 and not (len(per_worker) == 2 and all(per_worker.values())):
                client = WsClient(server.ws_url, token(user))
                await client.__aenter__()
                clients.append(client)
                per_worker = await settled_workers(server, len(clients))
        assert len(per_worker) == 2 and all(per_worker.values()), per_worker
        before = await scrape(server)
        subs = [await c.events() for c in clients]
        await http(server.http_url, NOTIFY, token("pub", publisher=True), g=f"user_{user}", m="to every tab")
        for sub in subs:
            assert (await sub.next())["events"]["message"] == "to every tab"
        async with asyncio.timeout(10):
            while True:  # the other worker's figures arrive with its next snapshot (every second)
                after = await scrape(server)
                delivered = after[("switchboard_events_delivered_total", ())]
                if delivered - before[("switchboard_events_delivered_total", ())] >= len(clients):
                    break
                await asyncio.sleep(0.2)
        assert after[("switchboard_workers", ())] == 2
        assert after[("switchboard_connections", ())] == len(clients)
        assert all(
            after[("switchboard_worker_resident_memory_bytes", (("worker", w),))] > 0 for w in per_worker
        )
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
        assert server.stop() == 0, server.log_tail()


async def settled_workers(server: ServerProcess, expected: int) -> dict[str, float]:
    """Each worker's connections, once the scraped sum has caught up with `expected` (a worker
    writes its snapshot every second)."""
    async with asyncio.timeout(10):
        while True:
            metrics = await scrape(server)
            if metrics.get(("switchboard_connections", ())) == expected:
                return {
                    dict(labels)["worker"]: value
                    for (name, labels), value in metrics.items()
                    if name == "switchboard_worker_connections"
                }
            await asyncio.sleep(0.2)
