"""Which events a subscription wants: by group and by type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from switchboard.messages.envelope import Envelope


@dataclass(frozen=True, slots=True)
class EventFilter:
    """None means any; an empty set means none."""

    groups: frozenset[str] | None = None
    types: frozenset[str] | None = None

    @classmethod
    def of(cls, groups: Iterable[str] | None = None, types: Iterable[str] | None = None) -> EventFilter:
        return cls(None if groups is None else frozenset(groups), None if types is None else frozenset(types))

    def accepts(self, message: Envelope) -> bool:
        return (self.groups is None or message.group in self.groups) and (
            self.types is None or message.type in self.types
        )


class Listener(Protocol):
    """Something a session delivers events to: a stream, or a WebSocket subscription."""

    @property
    def filter(self) -> EventFilter: ...

    def offer(self, message: Envelope) -> bool:
        """Take `message`; False when the listener's bounded queue is full."""
