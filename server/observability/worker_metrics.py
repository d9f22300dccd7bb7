"""Every worker's figures at any worker's /metrics, for `switchboard serve --workers N`.

The workers share one listening socket, so a scrape reaches one of them. Each worker writes a
snapshot of its own figures to a file in a directory the parent process made
(SWITCHBOARD_METRICS_DIR), every SHARE_INTERVAL and whenever it is scraped; the scraped worker
adds up its own live figures and the other workers' latest snapshots. Counters of a worker that
stopped are kept (a sum of counters must never go down); its gauges count as zero once its
snapshot is older than STALE_AFTER (a worker killed without a word).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypedDict

import orjson

log = logging.getLogger(__name__)

SHARE_INTERVAL = 1.0
STALE_AFTER = 5 * SHARE_INTERVAL
SUFFIX = ".metrics.json"


class Snapshot(TypedDict):
    """One process's figures as plain data."""

    pid: int
    at: float  # wall-clock time written
    alive: bool
    gauges: dict[str, float]
    counters: dict[str, dict[str, float]]  # name -> label value ("" when unlabelled) -> count
    latency_counts: list[int]
    latency_sum: float
    gc_pause_counts: list[list[int]]  # per generation, GC_BUCKETS plus +Inf
    gc_pause_sum: list[float]
    loop_lag_counts: list[int]  # GC_BUCKETS plus +Inf
    loop_lag_sum: float


def rss_bytes() -> int:
    """This process's resident set size (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class WorkerShare:
    """This worker's file in the shared directory, and the other workers' files."""

    def __init__(self, directory: str, pid: int | None = None) -> None:
        self._dir = Path(directory)
        self._pid = os.getpid() if pid is None else pid
        self._path = self._dir / f"{self._pid}{SUFFIX}"
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def write(self, snapshot: Snapshot) -> None:
        """Replace this worker's file atomically (a reader never sees half a snapshot)."""
        partial = self._path.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(snapshot))
        os.replace(partial, self._path)

    def others(self) -> Iterator[Snapshot]:
        """The other workers' latest snapshots; gauges of a silent worker read as zero."""
        now = time.time()
        for path in self._dir.glob(f"*{SUFFIX}"):
            if path == self._path:
                continue
            try:
                snapshot: Snapshot = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # a worker that is just starting, or a file that is not ours
            if not snapshot["alive"] or now - snapshot["at"] > STALE_AFTER:
                snapshot["alive"] = False
                snapshot["gauges"] = {}
            yield snapshot

    def start(self, take: Callable[[], Snapshot]) -> None:
        """Write `take()` every SHARE_INTERVAL until stop()."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(take), name="switchboard-metrics-share"
            )

    async def stop(self, final: Snapshot) -> None:
        """Stop writing; leave a last snapshot whose counters still count and gauges do not."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        final["alive"] = False
        final["gauges"] = {}
        with suppress(OSError):
            self.write(final)

    async def _run(self, take: Callable[[], Snapshot]) -> None:
        while True:
            try:
                self.write(take())
            except OSError as exc:
                log.warning("could not share this worker's metrics: %s", exc)
            await asyncio.sleep(SHARE_INTERVAL)


def clear(directory: str) -> None:
    """Forget the snapshots of an earlier run (called by the parent before its workers start)."""
    for path in Path(directory).glob(f"*{SUFFIX}"):
        with suppress(OSError):
            path.unlink()
