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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from switchboard.exceptions import BadUserInput
from switchboard.messages.envelope import Envelope


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a client missed in one group since its cursor, or why that cannot be told."""

    group: str
    recovered: bool
    events: tuple[Envelope, ...] = ()
    reason: str | None = None
    cursor: str | None = None  # the group's newest cursor when read


@runtime_checkable
class GroupHistory(Protocol):
    """A layer that keeps each group's history (both built-in layers; a layer may not)."""

    async def history_since(self, group: str, cursor: str) -> Recovery:
        """What `group` published after `cursor`, or why that cannot be told."""


HISTORY_OFF = "history is off (SWITCHBOARD_HISTORY_SIZE=0)"


def decide(
    group: str, epoch: str, offset: int, current_epoch: str, last_offset: int, events: Sequence[Envelope]
) -> Recovery:
    """The one resume decision of every layer: `events` are those the history still holds after
    `offset`, in order; the client resumed from `epoch:offset`, the history is at
    `current_epoch:last_offset`."""
    cursor = f"{current_epoch}:{last_offset}"
    if epoch != current_epoch:
        return Recovery(group, False, reason="epoch changed: the history was lost", cursor=cursor)
    if offset > last_offset:
        return Recovery(group, False, reason="cursor is ahead of the history", cursor=cursor)
    first = events[0].offset if events else last_offset + 1
    if first != offset + 1:
        return Recovery(group, False, reason="the history no longer covers the gap", cursor=cursor)
    return Recovery(group, True, tuple(events), cursor=cursor)


MAX_CURSOR_LENGTH = 64
NO_HISTORY = "-"
"""The position "before any history": the group had none when the client's position was taken.
Resuming from it replays the group's current history from its start (or says it cannot)."""


def parse_cursor(cursor: str) -> tuple[str, int]:
    """`<epoch>:<offset>` as the history hands it out; BadUserInput for anything else (the
    offset is ASCII digits within 64 bits, so it never reaches Redis as something it rejects)."""
    epoch, sep, offset = cursor.rpartition(":")
    valid = (
        sep
        and epoch
        and len(cursor) <= MAX_CURSOR_LENGTH
        and offset.isascii()
        and offset.isdigit()
        and len(offset) <= 18
    )
    if not valid:
        raise BadUserInput(f"cursor {cursor[:MAX_CURSOR_LENGTH]!r} is not <epoch>:<offset>")
    return epoch, int(offset)


def parse_position(cursor: str) -> str:
    """A client's position in a group: a cursor, or NO_HISTORY; BadUserInput for anything else."""
    if cursor != NO_HISTORY:
        parse_cursor(cursor)
    return cursor


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
        events = [e for t, e in log if e.offset is not None and e.offset > offset and now - t <= self._ttl]
        return decide(group, epoch, offset, current, last, events)

    def _current(self, group: str, now: float) -> tuple[str, int, float, deque[tuple[float, Envelope]]]:
        found = self._logs.get(group)
        if found is None or now - found[2] > self._ttl:
            # Never written, or expired as a whole: a new history with a new epoch.
            found = (new_epoch(), 0, now, deque(maxlen=self._size))
            self._logs[group] = found
        return found
