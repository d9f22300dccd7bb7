"""The operations of one peer, by id: multiplexed subscriptions (OPENING, then LIVE) and queries
or mutations running in a task (RUNNING). An operation that ends leaves the registry."""

from __future__ import annotations

import asyncio

from switchboard.engine.states import OperationState
from switchboard.engine.subscription import Subscription


class Running:
    """A query or mutation, running in its task."""

    __slots__ = ("id", "task")

    state = OperationState.RUNNING

    def __init__(self, op_id: str, task: asyncio.Task[None]) -> None:
        self.id = op_id
        self.task = task


Operation = Subscription | Running


class Operations:
    """A bounded registry (the bound is the caller's: SWITCHBOARD_MAX_SUBSCRIPTIONS)."""

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def __contains__(self, op_id: object) -> bool:
        return op_id in self._ops

    def __len__(self) -> int:
        return len(self._ops)

    def add(self, operation: Operation) -> None:
        self._ops[operation.id] = operation

    def pop(self, op_id: str) -> Operation | None:
        return self._ops.pop(op_id, None)

    def discard(self, operation: Operation) -> bool:
        """Remove `operation` if it is still the one registered under its id."""
        if self._ops.get(operation.id) is operation:
            del self._ops[operation.id]
            return True
        return False

    def take_all(self) -> list[Operation]:
        ops, self._ops = list(self._ops.values()), {}
        return ops
