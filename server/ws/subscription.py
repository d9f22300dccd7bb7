"""A multiplexed subscription of one WebSocket connection: a Listener of its session that
writes rendered frames to the connection's writer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.messages.envelope import Envelope
from switchboard.messages.filters import EventFilter

if TYPE_CHECKING:
    from switchboard.ws.connection import Connection


class WsSubscription:
    """A subscription multiplexed over its session: a Listener that writes rendered frames.

    While it joins the notes it declared and catches up on history, live events are held in
    `held` (bounded like the queue) and released after the replay, without duplicates."""

    __slots__ = (
        "_conn",
        "_prefix",
        "document",
        "filter",
        "held",
        "id",
        "key",
        "notes",
        "opening",
        "operation_name",
        "variables",
    )

    def __init__(
        self,
        conn: Connection,
        op_id: str,
        event_filter: EventFilter,
        document: Any,
        variables: dict[str, Any],
        operation_name: str | None,
        key: object,
    ) -> None:
        self._conn = conn
        self.id = op_id
        self.filter = event_filter
        self.document = document
        self.variables = variables
        self.operation_name = operation_name
        self.key = key
        self.held: list[Envelope] | None = None
        self.notes: tuple[str, ...] = ()  # notes joined for this subscription (it holds them)
        self.opening: asyncio.Task[None] | None = None  # joining notes, replaying history
        quoted = orjson.dumps(op_id).decode()
        if conn.legacy:
            self._prefix = '{"type":"data","id":' + quoted + ',"payload":'
        else:
            self._prefix = '{"id":' + quoted + ',"type":"next","payload":'

    def room(self) -> int:
        """Frames the connection's queue can still take."""
        writer = self._conn.writer
        return writer.limit - len(writer)

    def offer(self, message: Envelope) -> bool:
        if self.held is not None:
            if len(self.held) >= self._conn.writer.limit:
                return False
            self.held.append(message)
            return True
        return self.emit(message)

    def emit(self, message: Envelope) -> bool:
        conn = self._conn
        payload = conn.endpoint.renderer.payload(
            message,
            self.key,
            conn.session_id,
            self.document,
            self.variables,
            self.operation_name,
            conn.context,
        )
        if payload is None:
            return True
        return conn.writer.offer((self._prefix, payload))
