"""How long the garbage collector stops the event loop, by generation, and making it shorter.

A full (generation 2) collection walks every tracked object; with 1000 sessions it took 52-78 ms
here, and every socket's deliveries wait for it. About half of those objects are the modules,
schema and app made at start-up, which live as long as the process: `freeze_start_up_objects`
moves them out of the collector's reach (`gc.freeze`), and full collections took 33-38 ms.
/metrics shows the pauses as `switchboard_gc_pause_seconds{generation}`.
"""

from __future__ import annotations

import bisect
import gc
import time
from typing import Any

from switchboard.observability.stats import GC_BUCKETS, PROCESS


def freeze_start_up_objects() -> int:
    """Collect once, then exempt everything alive now from later collections; returns how many
    objects are frozen. Called when the app starts serving: what exists then is the process's."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """A gc callback that records each collection's duration in PROCESS while installed."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = int(info["generation"])
        PROCESS.gc_pause_counts[generation][bisect.bisect_left(GC_BUCKETS, seconds)] += 1
        PROCESS.gc_pause_sum[generation] += seconds

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


GC_PAUSES = GcPauses()
"""The process's one recorder: installed by whatever runs the process (see web/serving.py)."""
