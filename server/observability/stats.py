"""Counters, plain ints so the delivery path pays nothing for them: an app's own (`Stats`, one
per app, in its Services) and the process's (`PROCESS`: what the garbage collector, the event
loop and the WebSocket extension, installed in the ASGI server for the whole process, measure).

/metrics reads them at scrape time (web/metrics.py); tests read them the same way.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

# Publish-to-delivery latency buckets, seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Garbage-collector pause buckets, seconds.
GC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(slots=True)
class Stats:
    """One app's: what its layer, sessions, engine and GraphQL errors did."""

    published: Counter[str] = field(default_factory=Counter)  # by event type, sent through the layer
    delivered: int = 0  # events handed to a session's subscriptions
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    overflows: int = 0  # sessions closed as slow consumers
    errors: Counter[str] = field(default_factory=Counter)  # GraphQL errors by code
    redis_reconnects: int = 0
    redis_gap_events: int = 0  # events delivered late from the history after a lost connection
    redis_gaps_lost: int = 0  # groups told recovered: false after a lost connection
    renders: int = 0  # executions of a subscription's selection set for an event (shared by subscribers)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        """One event reached this app's sessions `seconds` after it was published."""
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


@dataclass(slots=True)
class ProcessStats:
    """The process's: measured below any one app."""

    # permessage-deflate (ws/deflate.py): messages compressed, sends that reused a compression,
    # bytes before and after, client messages refused for inflating past the limit (1009).
    ws_compressions: int = 0
    ws_compression_reused: int = 0
    ws_bytes_before_compression: int = 0
    ws_bytes_after_compression: int = 0
    ws_inflation_refused: int = 0
    ws_compression_contexts: int = 0  # alive, shared by sockets (ws/contexts.py; a gauge)
    # The edge's own WebSocket protocol (edge/websocket.py): frames written, and the writes
    # (one writelines each) that carried them: frames of a burst leave a socket together.
    ws_edge_frames: int = 0
    ws_edge_writes: int = 0
    # Garbage-collector pauses per generation (observability/gc_pauses.py), GC_BUCKETS plus +Inf each.
    gc_pause_counts: list[list[int]] = field(
        default_factory=lambda: [[0] * (len(GC_BUCKETS) + 1) for _ in range(3)]
    )
    gc_pause_sum: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    # How late the event loop woke a timer (observability/loop_lag.py), GC_BUCKETS plus +Inf.
    loop_lag_counts: list[int] = field(default_factory=lambda: [0] * (len(GC_BUCKETS) + 1))
    loop_lag_sum: float = 0.0


PROCESS = ProcessStats()
