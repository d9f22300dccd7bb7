"""How late the event loop runs what is due: the one figure that says whether some piece of work
held it (a large document, a long render, a garbage collection) and so delayed every session.

A task asks to wake every INTERVAL and records how late it woke, as
`switchboard_event_loop_lag_seconds` (a histogram) on /metrics.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from contextlib import suppress

from switchboard.observability.stats import GC_BUCKETS, PROCESS

INTERVAL = 0.05


class LoopLag:
    """Started with the app and stopped with it."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="switchboard-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    @staticmethod
    async def _watch() -> None:
        while True:
            due = time.perf_counter() + INTERVAL
            await asyncio.sleep(INTERVAL)
            late = max(0.0, time.perf_counter() - due)
            PROCESS.loop_lag_counts[bisect.bisect_left(GC_BUCKETS, late)] += 1
            PROCESS.loop_lag_sum += late
