"""The embedded default layer: groups of one process, no network."""

from __future__ import annotations

from switchboard.layers.base import LocalGroups, Receiver
from switchboard.layers.history import HISTORY_OFF, MemoryHistory, Recovery, parse_cursor
from switchboard.messages.envelope import Envelope
from switchboard.observability.stats import Stats


class InMemoryLayer:
    """Every group lives in this process; group_send delivers synchronously to local receivers."""

    def __init__(self, history_size: int = 0, history_ttl: float = 300.0, stats: Stats | None = None) -> None:
        self.stats = stats if stats is not None else Stats()
        self._groups = LocalGroups(self.stats)
        self._closed = False
        self._history = MemoryHistory(history_size, history_ttl) if history_size > 0 else None

    async def group_add(self, group: str, receiver: Receiver) -> None:
        if not self._closed:
            self._groups.add(group, receiver)

    async def group_discard(self, group: str, receiver: Receiver) -> None:
        self._groups.discard(group, receiver)

    async def group_send(self, group: str, message: Envelope, *, history: bool = True) -> None:
        if self._closed:
            return
        if history and self._history is not None:
            message = self._history.append(group, message)
        self.stats.published[message.type] += 1
        self._groups.deliver(group, message)

    async def history_since(self, group: str, cursor: str) -> Recovery:
        """What `group` published after `cursor`, or why that cannot be told."""
        if self._history is None:
            return Recovery(group, False, reason=HISTORY_OFF)
        epoch, offset = parse_cursor(cursor)
        return self._history.since(group, epoch, offset)

    async def start(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True
        self._groups.clear()

    def local_count(self, group: str) -> int:
        """Receivers of `group` in this process."""
        return self._groups.count(group)
