"""Prometheus metrics at /metrics, read from live state and STATS at scrape time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sized
from itertools import accumulate

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from server.context import Services
from server.stats import LATENCY_BUCKETS, STATS

TASK_PREFIX = "switchboard-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SwitchboardCollector(Collector):
    def __init__(self, services: Services, connections: Sized) -> None:
        self._services = services
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        services = self._services
        yield GaugeMetricFamily(
            "switchboard_connections", "Open WebSocket connections.", len(self._connections)
        )
        yield GaugeMetricFamily(
            "switchboard_sessions", "Live sessions in this process.", len(services.sessions)
        )
        subscribed = getattr(services.layer, "subscribed_groups", None)
        yield GaugeMetricFamily(
            "switchboard_groups_subscribed",
            "Groups this process holds a Redis subscription for.",
            len(subscribed()) if subscribed is not None else 0,
        )
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:
            tasks = set()
        own = sum(1 for t in tasks if t.get_name().startswith(TASK_PREFIX))
        yield GaugeMetricFamily(
            "switchboard_asyncio_tasks", "asyncio tasks alive in this process.", len(tasks)
        )
        yield GaugeMetricFamily(
            "switchboard_own_tasks", "asyncio tasks Switchboard started (named switchboard-*).", own
        )
        yield _labeled(
            "switchboard_events_published", "Events published from this process.", "type", STATS.published
        )
        yield CounterMetricFamily(
            "switchboard_events_delivered", "Events handed to sessions' subscriptions.", STATS.delivered
        )
        yield _labeled("switchboard_events_dropped", "Events a session dropped.", "reason", STATS.dropped)
        yield CounterMetricFamily(
            "switchboard_queue_overflows", "Sessions closed as slow consumers (4008).", STATS.overflows
        )
        yield CounterMetricFamily(
            "switchboard_redis_reconnects",
            "Times the Redis pub/sub connection was lost.",
            STATS.redis_reconnects,
        )
        yield _labeled("switchboard_errors", "Errors returned to clients, by code.", "code", STATS.errors)
        cumulative = list(accumulate(STATS.latency_counts))
        buckets = [(repr(b), cumulative[i]) for i, b in enumerate(LATENCY_BUCKETS)] + [
            ("+Inf", cumulative[-1])
        ]
        yield HistogramMetricFamily(
            "switchboard_delivery_latency_seconds",
            "From publish to delivery to this process's sessions.",
            buckets=buckets,
            sum_value=STATS.latency_sum,
        )


def _labeled(name: str, documentation: str, label: str, counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def make_registry(services: Services, connections: Sized) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(SwitchboardCollector(services, connections))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
