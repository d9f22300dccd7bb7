"""The live carriers of one endpoint (its sockets, or its streams): counted in the process's
shedding, checked by one periodic sweep, and ended together, within a grace, on shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Generic, Protocol, TypeVar

from switchboard.engine.delivery import Delivery, Sheddable

log = logging.getLogger(__name__)


class Carrier(Sheddable, Protocol):
    """A transport adapter as its endpoint holds it: sheddable, and checked by the sweep."""

    def abort(self) -> None: ...
    def check(self, now: float) -> None: ...


C = TypeVar("C", bound=Carrier)


class Carriers(Generic[C]):
    """One endpoint's carriers; the sweep calls each one's `check` every `tick` seconds."""

    def __init__(self, delivery: Delivery, name: str, tick: float) -> None:
        self._delivery = delivery
        self._items: set[C] = set()
        self._drained = asyncio.Event()
        self._name = name
        self._tick = tick
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._items))

    def add(self, carrier: C) -> None:
        self._items.add(carrier)
        self._delivery.carriers.add(carrier)

    def discard(self, carrier: C) -> None:
        self._items.discard(carrier)
        self._delivery.carriers.discard(carrier)
        if not self._items:
            self._drained.set()

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name=self._name)

    async def end_all(self, end: Callable[[C], None], grace: float) -> None:
        """`end` each carrier, wait (within `grace`) for them to go, abort what is left, and
        stop the sweep."""
        self._drained.clear()
        for carrier in list(self._items):
            end(carrier)
        if self._items:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        for carrier in list(self._items):
            carrier.abort()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await sweeper

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for carrier in list(self._items):
                try:
                    carrier.check(now)
                except Exception:
                    log.exception("liveness check failed for session %s", carrier.peer.session_id)
