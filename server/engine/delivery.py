"""What every transport of a process shares, built once: the documents and their plans, the
renderings, the writers' flush batch, the queue memory account and the send budget."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from switchboard.engine.api import GraphQLApi
from switchboard.engine.plan import Plan, plan
from switchboard.engine.render import DocumentCache, Renderer
from switchboard.engine.writer import FlushBatch, FrameWriter, QueueMemory, SendBudget
from switchboard.observability.stats import Stats
from switchboard.settings import Settings

if TYPE_CHECKING:
    from switchboard.engine.peer import Peer

log = logging.getLogger(__name__)


class Sheddable(Protocol):
    """A carrier (a socket, a stream) whose writer counts in the queue memory, and can be shed."""

    @property
    def writer(self) -> FrameWriter: ...
    @property
    def peer(self) -> Peer: ...
    def shed(self) -> None: ...


class Delivery:
    """One per app; every endpoint gets it at construction."""

    def __init__(self, settings: Settings, api: GraphQLApi, stats: Stats) -> None:
        self.settings = settings
        self.api = api
        self.stats = stats
        self.documents = DocumentCache(
            api.graphql_schema, api.validation_rules(introspection=settings.introspection), api.limits
        )
        self.renderer = Renderer(api, stats)
        self.flush_batch = FlushBatch()  # every writer woken by a fan-out, started together after it
        self.queue_memory = QueueMemory(settings.queue_bytes_total, self._shed)
        self.send_budget = SendBudget(settings.send_bytes_total)
        self.carriers: set[Sheddable] = set()  # every socket and stream, shed together

    async def plan(self, query: str, variables: dict[str, Any], name: str | None) -> Plan | list[Any]:
        """How to run an operation (engine/plan.py), with this process's documents and limits."""
        prepared = await self.documents.prepare(query)
        settings = self.settings
        return plan(self.api, prepared, variables, name, settings.max_groups, settings.max_variables_bytes)

    def writer_options(self) -> dict[str, Any]:
        """The process-wide parts of every writer: its batch, memory account and send budget."""
        return {
            "batch": self.flush_batch,
            "max_bytes": self.settings.queue_bytes,
            "memory": self.queue_memory,
            "budget": self.send_budget,
        }

    def _shed(self) -> None:
        """The process's queues hold more than SWITCHBOARD_QUEUE_BYTES_TOTAL: shed the carriers
        with the most queued, the slowest readers, until they hold under 90% of it."""
        memory = self.queue_memory
        target = memory.limit * 0.9
        for carrier in sorted(self.carriers, key=lambda c: c.writer.queued_bytes, reverse=True):
            if memory.total <= target or carrier.writer.queued_bytes == 0:
                break
            self.stats.overflows += 1
            log.warning(
                "session %s: %d bytes queued while the process holds %d; closing the slowest",
                carrier.peer.session_id,
                carrier.writer.queued_bytes,
                memory.total,
            )
            carrier.shed()
