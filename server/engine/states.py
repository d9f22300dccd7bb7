"""Where an operation is in its life: the explicit states of engine.operations."""

from __future__ import annotations

import enum


class OperationState(enum.Enum):
    OPENING = "joining its notes and replaying history; live events are held"
    LIVE = "a subscription delivering its events"
    RUNNING = "a query or mutation running to its one result"
