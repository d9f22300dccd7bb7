"""Prometheus metrics at /metrics, read from live state, the app's stats and the process's
(observability.stats) at scrape time.

Under `serve --workers N` the figures are those of every worker, added up (server/worker_metrics.py);
`switchboard_worker_*{worker="<pid>"}` show each worker on its own. `process_*` metrics describe
the worker that answered the scrape.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterable, Iterator, Sized
from itertools import accumulate

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.observability.stats import GC_BUCKETS, LATENCY_BUCKETS, PROCESS
from switchboard.observability.worker_metrics import Snapshot, WorkerShare, rss_bytes
from switchboard.services import Services

TASK_PREFIX = "switchboard-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

GAUGES = {
    "switchboard_connections": "Open WebSocket connections.",
    "switchboard_http_streams": "Open subscription streams over HTTP (SSE, multipart).",
    "switchboard_sessions": "Live sessions.",
    "switchboard_groups_subscribed": "Redis subscriptions held for groups (one per group per process).",
    "switchboard_asyncio_tasks": "asyncio tasks alive.",
    "switchboard_own_tasks": "asyncio tasks Switchboard started (named switchboard-*).",
    "switchboard_gc_frozen_objects": "Start-up objects exempt from garbage collection (gc.freeze).",
    "switchboard_ws_compression_contexts": "Compression contexts alive, shared by sockets (window mode).",
}
# Each worker on its own under --workers: name -> (help, the snapshot's gauge).
PER_WORKER = {
    "switchboard_worker_connections": (
        "Open WebSocket connections of each worker.",
        "switchboard_connections",
    ),
    "switchboard_worker_resident_memory_bytes": ("Resident memory of each worker.", "resident_memory_bytes"),
}
# name -> (help, label name or "" when unlabelled)
COUNTERS = {
    "switchboard_events_published": ("Events published from the server processes.", "type"),
    "switchboard_events_delivered": ("Events handed to sessions' subscriptions.", ""),
    "switchboard_events_dropped": ("Events a session dropped.", "reason"),
    "switchboard_queue_overflows": ("Sessions closed as slow consumers (4008).", ""),
    "switchboard_redis_reconnects": ("Times a Redis pub/sub connection was lost.", ""),
    "switchboard_redis_gap_events": (
        "Events delivered late from the history after a lost Redis connection.",
        "",
    ),
    "switchboard_redis_gaps_lost": ("Groups told recovered: false after a lost Redis connection.", ""),
    "switchboard_errors": ("Errors returned to clients, by code.", "code"),
    "switchboard_ws_compressions": ("Messages compressed (once per distinct frame).", ""),
    "switchboard_event_renders": (
        "Events rendered (once per distinct subscription document, shared by every transport).",
        "",
    ),
    "switchboard_ws_compression_reused": ("Compressed sends that reused another socket's compression.", ""),
    "switchboard_ws_compression_input_bytes": ("Bytes of the messages compressed.", ""),
    "switchboard_ws_compression_output_bytes": ("Bytes those messages compressed to.", ""),
    "switchboard_ws_inflation_refused": (
        "Client messages closed with 1009 for inflating past the limit.",
        "",
    ),
    "switchboard_ws_edge_frames": ("Frames written by the edge's own WebSocket protocol.", ""),
    "switchboard_ws_edge_writes": ("Writes (one system call or fewer) that carried those frames.", ""),
}


def local_snapshot(services: Services, connections: Sized, pid: int = 0, streams: Sized = ()) -> Snapshot:
    """This process's figures now."""
    stats = services.stats
    subscribed = getattr(services.layer, "subscribed_groups", None)
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:
        tasks = set()
    return Snapshot(
        pid=pid,
        at=time.time(),
        alive=True,
        gauges={
            "switchboard_connections": len(connections),
            "switchboard_http_streams": len(streams),
            "switchboard_sessions": len(services.sessions),
            "switchboard_groups_subscribed": len(subscribed()) if subscribed is not None else 0,
            "switchboard_asyncio_tasks": len(tasks),
            "switchboard_own_tasks": sum(1 for t in tasks if t.get_name().startswith(TASK_PREFIX)),
            "switchboard_gc_frozen_objects": gc.get_freeze_count(),
            "switchboard_ws_compression_contexts": PROCESS.ws_compression_contexts,
            "resident_memory_bytes": rss_bytes(),
        },
        counters={
            "switchboard_events_published": dict(stats.published),
            "switchboard_events_delivered": {"": stats.delivered},
            "switchboard_events_dropped": dict(stats.dropped),
            "switchboard_queue_overflows": {"": stats.overflows},
            "switchboard_redis_reconnects": {"": stats.redis_reconnects},
            "switchboard_redis_gap_events": {"": stats.redis_gap_events},
            "switchboard_redis_gaps_lost": {"": stats.redis_gaps_lost},
            "switchboard_errors": dict(stats.errors),
            "switchboard_ws_compressions": {"": PROCESS.ws_compressions},
            "switchboard_event_renders": {"": stats.renders},
            "switchboard_ws_compression_reused": {"": PROCESS.ws_compression_reused},
            "switchboard_ws_compression_input_bytes": {"": PROCESS.ws_bytes_before_compression},
            "switchboard_ws_compression_output_bytes": {"": PROCESS.ws_bytes_after_compression},
            "switchboard_ws_inflation_refused": {"": PROCESS.ws_inflation_refused},
            "switchboard_ws_edge_frames": {"": PROCESS.ws_edge_frames},
            "switchboard_ws_edge_writes": {"": PROCESS.ws_edge_writes},
        },
        latency_counts=list(stats.latency_counts),
        latency_sum=stats.latency_sum,
        gc_pause_counts=[list(counts) for counts in PROCESS.gc_pause_counts],
        gc_pause_sum=list(PROCESS.gc_pause_sum),
        loop_lag_counts=list(PROCESS.loop_lag_counts),
        loop_lag_sum=PROCESS.loop_lag_sum,
    )


def families(snapshots: Iterable[Snapshot], *, per_worker: bool) -> Iterator[Metric]:
    """The metric families of the sum of `snapshots` (and each worker's own, if `per_worker`)."""
    snapshots = list(snapshots)
    for name, documentation in GAUGES.items():
        yield GaugeMetricFamily(name, documentation, sum(s["gauges"].get(name, 0) for s in snapshots))
    for name, (documentation, label) in COUNTERS.items():
        totals: dict[str, float] = {}
        for snapshot in snapshots:
            for value, count in snapshot["counters"].get(name, {}).items():
                totals[value] = totals.get(value, 0) + count
        if label:
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in sorted(totals.items()):
                family.add_metric([value], count)
        else:
            family = CounterMetricFamily(name, documentation, totals.get("", 0))
        yield family
    yield HistogramMetricFamily(
        "switchboard_delivery_latency_seconds",
        "From publish to delivery to sessions.",
        buckets=_buckets(LATENCY_BUCKETS, [s["latency_counts"] for s in snapshots]),
        sum_value=sum(s["latency_sum"] for s in snapshots),
    )
    pauses = HistogramMetricFamily(
        "switchboard_gc_pause_seconds",
        "Garbage-collector pauses of the event loop, by generation (2: full collections).",
        labels=["generation"],
    )
    for generation in range(3):
        pauses.add_metric(
            [str(generation)],
            _buckets(GC_BUCKETS, [s["gc_pause_counts"][generation] for s in snapshots]),
            sum(s["gc_pause_sum"][generation] for s in snapshots),
        )
    yield pauses
    yield HistogramMetricFamily(
        "switchboard_event_loop_lag_seconds",
        "How late the event loop woke a timer due every 50 ms: time some work held the loop.",
        buckets=_buckets(GC_BUCKETS, [s["loop_lag_counts"] for s in snapshots]),
        sum_value=sum(s["loop_lag_sum"] for s in snapshots),
    )
    if per_worker:
        alive = [s for s in snapshots if s["alive"]]
        yield GaugeMetricFamily("switchboard_workers", "Worker processes reporting.", len(alive))
        for name, (documentation, gauge) in PER_WORKER.items():
            per = GaugeMetricFamily(name, documentation, labels=["worker"])
            for snapshot in alive:
                per.add_metric([str(snapshot["pid"])], snapshot["gauges"].get(gauge, 0))
            yield per


def _buckets(bounds: tuple[float, ...], counts: list[list[int]]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets of per-bucket `counts` (one list per process, each with a
    last entry for +Inf) added up over the processes."""
    cumulative = list(accumulate(sum(column) for column in zip(*counts, strict=True)))
    return [(repr(b), cumulative[i]) for i, b in enumerate(bounds)] + [("+Inf", cumulative[-1])]


class SwitchboardCollector(Collector):
    def __init__(
        self, services: Services, connections: Sized, share: WorkerShare | None = None, streams: Sized = ()
    ) -> None:
        self._services = services
        self._connections = connections
        self._streams = streams
        self._share = share

    def snapshot(self) -> Snapshot:
        pid = self._share.pid if self._share is not None else 0
        return local_snapshot(self._services, self._connections, pid, self._streams)

    def collect(self) -> Iterator[Metric]:
        own = self.snapshot()
        if self._share is None:
            yield from families([own], per_worker=False)
            return
        self._share.write(own)
        yield from families([own, *self._share.others()], per_worker=True)


def make_registry(collector: SwitchboardCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
