"""Per-group history: a bounded, expiring log of each group's events with growing offsets.

Every group_send appends the event and publishes it in one step; each event gets the next
offset of its group. An epoch names one unbroken history: if the history is lost (expired,
Redis restarted, a process restarted for the in-memory layer) the epoch changes, and a client
resuming with the old epoch is told it could not be recovered.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass

from server.envelope import Envelope
from server.exceptions import BadUserInput


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a client missed in one group since its cursor, or why that cannot be told."""

    group: str
    recovered: bool
    events: tuple[Envelope, ...] = ()
    reason: str | None = None
    cursor: str | None = None  # the group's newest cursor when read


def parse_cursor(cursor: str) -> tuple[str, int]:
    epoch, sep, offset = cursor.rpartition(":")
    if not sep or not epoch or not offset.isdigit():
        raise BadUserInput(f"cursor {cursor!r} is not <epoch>:<offset>")
    return epoch, int(offset)


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]


class MemoryHistory:
    """The in-memory layer's history: one bounded deque per group."""

    def __init__(self, size: int, ttl: float) -> None:
        self._size = size
        self._ttl = ttl
        self._logs: dict[str, tuple[str, int, float, deque[tuple[float, Envelope]]]] = {}

    def append(self, group: str, message: Envelope) -> Envelope:
        now = time.monotonic()
        epoch, last, _, log = self._current(group, now)
        stamped = message.at(epoch, last + 1)
        log.append((now, stamped))
        self._logs[group] = (epoch, last + 1, now, log)
        return stamped

    def since(self, group: str, epoch: str, offset: int) -> Recovery:
        now = time.monotonic()
        current, last, _, log = self._current(group, now)
        cursor = f"{current}:{last}"
        if epoch != current:
            return Recovery(group, False, reason="epoch changed: the history was lost", cursor=cursor)
        if offset > last:
            return Recovery(group, False, reason="cursor is ahead of the history", cursor=cursor)
        events = tuple(
            e for t, e in log if e.offset is not None and e.offset > offset and now - t <= self._ttl
        )
        first = events[0].offset if events else last + 1
        if first != offset + 1:
            return Recovery(group, False, reason="the history no longer covers the gap", cursor=cursor)
        return Recovery(group, True, events, cursor=cursor)

    def _current(self, group: str, now: float) -> tuple[str, int, float, deque[tuple[float, Envelope]]]:
        found = self._logs.get(group)
        if found is None or now - found[2] > self._ttl:
            # Never written, or expired as a whole: a new history with a new epoch.
            found = (new_epoch(), 0, now, deque(maxlen=self._size))
            self._logs[group] = found
        return found
