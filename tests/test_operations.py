"""Health, readiness and metrics as a scraper and a load balancer see them."""

from __future__ import annotations

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
