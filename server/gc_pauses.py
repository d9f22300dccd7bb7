"""How long the garbage collector stops the event loop, by generation.

A full (generation 2) collection walks every tracked object; with 1000 sessions it took about
65 ms here, and every socket's deliveries wait for it. /metrics shows it as
`switchboard_gc_pause_seconds{generation}` so a latency tail can be told apart from the rest.
"""

from __future__ import annotations

import bisect
import gc
import time
from typing import Any

from server.stats import GC_BUCKETS, STATS


class GcPauses:
    """A gc callback that records each collection's duration in STATS while installed."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = int(info["generation"])
        STATS.gc_pause_counts[generation][bisect.bisect_left(GC_BUCKETS, seconds)] += 1
        STATS.gc_pause_sum[generation] += seconds

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
