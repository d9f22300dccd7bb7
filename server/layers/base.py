"""The group layer contract (Channels' names) and the local membership table both layers share."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from switchboard.messages.envelope import Envelope
from switchboard.observability.stats import Stats

log = logging.getLogger(__name__)

Receiver = Callable[[Envelope], None]
"""What a layer hands group messages to. Called on the event loop; must not block or await."""


class GroupLayer(Protocol):
    """Moves messages between groups; knows nothing of GraphQL, Quart or sessions."""

    async def group_add(self, group: str, receiver: Receiver) -> None:
        """Add `receiver` to `group`; when this returns, messages sent to the group reach it."""

    async def group_discard(self, group: str, receiver: Receiver) -> None:
        """Remove `receiver` from `group`; a receiver not in the group is ignored."""

    async def group_send(self, group: str, message: Envelope, *, history: bool = True) -> None:
        """Deliver `message` to every receiver in `group`, in every process; nobody there is fine.

        With `history=False` the message is not kept in the group's history (it has no cursor
        and is never replayed): for what is only news while it happens, like presence."""

    async def start(self) -> None:
        """Be ready to carry messages (subscribe what a process always listens to)."""

    async def ping(self) -> None:
        """Return if the layer can carry messages now; raise Unavailable if it cannot."""

    async def close(self) -> None:
        """Release connections and tasks. Receivers still added get nothing more."""


class LocalGroups:
    """The receivers of this process per group, with first-in / last-out edges reported."""

    __slots__ = ("_members", "_stats")

    def __init__(self, stats: Stats | None = None) -> None:
        self._stats = stats if stats is not None else Stats()
        # dict rather than set: delivery order follows join order, which makes runs repeatable.
        self._members: dict[str, dict[Receiver, None]] = {}

    def add(self, group: str, receiver: Receiver) -> bool:
        """Add; True when this made the group non-empty here."""
        members = self._members.get(group)
        if members is None:
            self._members[group] = {receiver: None}
            return True
        members[receiver] = None
        return False

    def discard(self, group: str, receiver: Receiver) -> bool:
        """Remove; True when this left the group empty here."""
        members = self._members.get(group)
        if members is None or receiver not in members:
            return False
        del members[receiver]
        if not members:
            del self._members[group]
            return True
        return False

    def has(self, group: str) -> bool:
        return group in self._members

    def count(self, group: str) -> int:
        return len(self._members.get(group, ()))

    def groups(self) -> list[str]:
        return list(self._members)

    def deliver(self, group: str, message: Envelope) -> int:
        """Hand `message` to each local member of `group`; return how many got it."""
        members = self._members.get(group)
        if not members:
            return 0
        self._stats.observe_latency(time.time() - message.sent_at)
        # Copy: a receiver may leave the group while we iterate.
        delivered = 0
        for receiver in list(members):
            try:
                receiver(message)
            except Exception:
                # One broken receiver must not cost the others their message.
                log.exception("receiver failed on event %s in group %s", message.id, message.group)
            else:
                delivered += 1
        return delivered

    def clear(self) -> None:
        self._members.clear()
