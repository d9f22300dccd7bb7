"""A multiplexed subscription: a Listener of its session that writes rendered frames to its
transport's writer, whatever the transport."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any, Protocol

from switchboard.engine.render import Renderer
from switchboard.engine.states import OperationState
from switchboard.engine.writer import FrameWriter
from switchboard.exceptions import SwitchboardError
from switchboard.messages.envelope import Envelope
from switchboard.messages.filters import EventFilter
from switchboard.security.auth import User
from switchboard.security.policy import Authorizer
from switchboard.sessions.session import Session


class Carrier(Protocol):
    """What a subscription delivers through (an engine.peer.Peer): its transport's writer, the
    process's renderer, and the context its events render with."""

    @property
    def writer(self) -> FrameWriter: ...
    @property
    def renderer(self) -> Renderer: ...
    @property
    def session_id(self) -> str: ...
    @property
    def context(self) -> Any: ...


class Subscription:
    """A subscription multiplexed over its session: a Listener that writes rendered frames.

    While it joins the notes it declared and catches up on history, live events are held in
    `held` (bounded like the queue) and released after the replay, without duplicates: its state
    is OPENING until then, LIVE after."""

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
        conn: Carrier,
        op_id: str,
        event_filter: EventFilter,
        document: Any,
        variables: dict[str, Any],
        operation_name: str | None,
        key: object,
        prefix: str,
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
        self._prefix = prefix  # the transport's framing before the payload of a result

    @property
    def state(self) -> OperationState:
        return OperationState.OPENING if self.held is not None else OperationState.LIVE

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
        payload = conn.renderer.payload(
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
        return conn.writer.offer((self.prefix_of(message), payload))

    def prefix_of(self, message: Envelope) -> str:
        """What goes before the rendered payload (the transport's framing)."""
        return self._prefix


async def join_notes(
    subscription: Subscription,
    notes: list[str],
    session: Session,
    authorizer: Authorizer,
    user: User | None,
) -> SwitchboardError | None:
    """Join the notes a subscription declared (it holds them); the refusal, with none held, if
    the user may not open one of them."""
    try:
        for note in notes:
            await authorizer.require_note(user, note)
            subscription.notes += (note,)  # before joining: a stop meanwhile lets go of it
            await session.open_note(note, holder=subscription)
    except SwitchboardError as exc:
        await release_notes(subscription, session)
        return exc
    return None


async def stop_subscription(subscription: Subscription, session: Session | None) -> None:
    """Stop delivering to the subscription, end its opening (joining notes, replaying) if it is
    still under way, and let go of its notes."""
    if session is not None:
        session.remove_listener(subscription)
    opening = subscription.opening
    if opening is not None and not opening.done():
        opening.cancel()
        with suppress(asyncio.CancelledError):
            await opening
    await release_notes(subscription, session)


async def release_notes(subscription: Subscription, session: Session | None) -> None:
    """Let go of the notes the subscription holds (a note stays joined while another holds it)."""
    notes, subscription.notes = subscription.notes, ()
    if session is None or session.closed:
        return
    for note in notes:
        await session.close_note(note, holder=subscription)
