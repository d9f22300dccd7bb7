"""The session: one per WebSocket connection, the equivalent of a Channels consumer."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import suppress
from typing import Any, Protocol

from switchboard import close_codes
from switchboard.exceptions import Forbidden, InvalidEvent, SessionClosed, Unauthenticated
from switchboard.layers.base import GroupLayer
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import (
    DATA,
    NOTIFY,
    PRESENCE,
    RESUME,
    REVOKE,
    REVOKED,
    data_payload,
    notify_fields,
)
from switchboard.messages.filters import EventFilter, Listener
from switchboard.messages.groups import ALL, note_group, note_id_of, require_valid_group_name
from switchboard.observability.stats import Stats
from switchboard.security.auth import User
from switchboard.sessions.handlers import HandlerRegistry

log = logging.getLogger(__name__)

Closer = Callable[[int, str], Coroutine[Any, Any, None]]
"""Closes the session's socket with a close code and a reason."""


OPENED = "openNote"
"""The hold openNote takes on a note (a subscription's hold is the subscription itself)."""


class MembershipObserver(Protocol):
    """Told after a session joined or left a group (presence)."""

    async def joined(self, session: Session, group: str) -> None: ...
    async def left(self, session: Session, group: str) -> None: ...


class SessionStats:
    """Counters of what a session dropped, read by metrics and tests."""

    __slots__ = ("delivered", "invalid", "overflowed", "unknown_type")

    def __init__(self) -> None:
        self.delivered = 0
        self.unknown_type = 0
        self.invalid = 0
        self.overflowed = False


class _Stream:
    """One subscription's bounded queue of events, for async iteration."""

    __slots__ = ("_items", "_limit", "_wake", "closed", "filter")

    def __init__(self, limit: int, event_filter: EventFilter) -> None:
        self._items: deque[Envelope] = deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self.filter = event_filter
        self.closed = False

    def offer(self, message: Envelope) -> bool:
        """Queue `message`; False when the queue is full."""
        if len(self._items) >= self._limit:
            return False
        self._items.append(message)
        self._wake.set()
        return True

    async def next(self) -> Envelope | None:
        """The next event, or None once the stream is closed and drained."""
        while not self._items:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class Session:
    """A connection's membership in groups and its typed event streams.

    Method names follow the Channels consumer: `connect`, `disconnect`, `add_group`,
    `discard_group`, `dispatch`, and one `send_<type>` handler per built-in event type.
    """

    # One per connection, thousands per process: no per-instance __dict__.
    __slots__ = (
        "__weakref__",
        "_closed",
        "_closer",
        "_closing",
        "_counters",
        "_departures",
        "_groups",
        "_handlers",
        "_layer",
        "_listeners",
        "_max_notes",
        "_note_holders",
        "_observer",
        "_queue_size",
        "connected_at",
        "id",
        "stats",
        "user",
    )

    def __init__(
        self,
        layer: GroupLayer,
        user: User | None = None,
        *,
        handlers: HandlerRegistry | None = None,
        queue_size: int = 1024,
        closer: Closer | None = None,
        session_id: str | None = None,
        max_notes: int = 50,
        observer: MembershipObserver | None = None,
        counters: Stats | None = None,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self._counters = counters if counters is not None else Stats()  # the app's
        self.user = user
        self.connected_at = time.time()
        self.stats = SessionStats()
        self._layer = layer
        self._handlers = handlers if handlers is not None else DEFAULT_HANDLERS
        self._queue_size = queue_size
        self._closer = closer
        self._max_notes = max_notes
        self._observer = observer
        self._groups: dict[str, None] = {}
        # Who holds each open note: OPENED (openNote) and each subscription that declared it.
        # The note is left when its last holder lets go, so closing one never drops the other.
        self._note_holders: dict[str, set[object]] | None = None  # made with the first note
        self._listeners: dict[Listener, None] = {}
        self._closing: asyncio.Task[None] | None = None
        self._departures: set[asyncio.Task[None]] | None = None  # groups revoked, being left
        self._closed = False

    def __repr__(self) -> str:
        user = self.user.id if self.user else "anonymous"
        return f"<Session {self.id} user={user} groups={len(self._groups)}>"

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user else None

    @property
    def groups(self) -> list[str]:
        """The groups this session is in, in the order it joined them."""
        return list(self._groups)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self, *, allow_anonymous: bool = True) -> None:
        """Accept the connection and join `all` (and `user_<id>`), or refuse it by raising."""
        if self.user is None and not allow_anonymous:
            raise Unauthenticated("a token is required")
        await self.add_group(ALL)
        if self.user is not None:
            await self.add_group(self.user.group)
        log.info(
            "session %s connected as %s", self.id, self.user_id or "anonymous", extra={"session": self.id}
        )

    async def disconnect(self) -> None:
        """Leave every group, however it was joined, and end every stream. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_streams()
        for group in list(self._groups):
            await self._leave(group)
        for departure in list(self._departures or ()):
            with suppress(asyncio.CancelledError):
                await departure
        if self._closing is not None and self._closing is not asyncio.current_task():
            with suppress(asyncio.CancelledError):
                await self._closing
        log.info("session %s disconnected", self.id, extra={"session": self.id})

    # -- groups ------------------------------------------------------------------------------

    async def add_group(self, group: str) -> None:
        """Join `group`; a no-op if already in it. Events sent after this returns arrive."""
        require_valid_group_name(group)
        if self._closed:
            raise SessionClosed("the session has disconnected")
        if group in self._groups:
            return
        self._groups[group] = None
        try:
            await self._layer.group_add(group, self.dispatch)
        except BaseException:
            self._groups.pop(group, None)
            raise
        if self._closed:  # disconnected while we waited for the layer
            self._groups.pop(group, None)
            await self._layer.group_discard(group, self.dispatch)
            raise SessionClosed("the session has disconnected")
        if self._observer is not None:
            await self._observer.joined(self, group)

    async def discard_group(self, group: str) -> None:
        """Leave `group`; a no-op if not in it."""
        if group in self._groups:
            await self._leave(group)

    async def open_note(self, note_id: str, holder: object = None) -> None:
        """Join note_<id> for `holder` (None: openNote's own hold), within the session's limit of
        open notes. A note stays joined while anyone holds it."""
        group = note_group(note_id)
        if group not in self._groups and len(self.notes) >= self._max_notes:
            raise Forbidden(f"at most {self._max_notes} notes may be open in one session")
        await self.add_group(group)
        if self._note_holders is None:
            self._note_holders = {}
        self._note_holders.setdefault(group, set()).add(OPENED if holder is None else holder)

    @property
    def notes(self) -> list[str]:
        """Ids of the notes this session has open."""
        return [note for group in self._groups if (note := note_id_of(group)) is not None]

    async def close_note(self, note_id: str, holder: object = None) -> None:
        """Let go of note_<id> for `holder` (None: openNote's hold); left when nobody holds it."""
        group = note_group(note_id)
        holders = self._note_holders.get(group) if self._note_holders is not None else None
        if holders is not None:
            holders.discard(OPENED if holder is None else holder)
            if holders:
                return
        await self.discard_group(group)

    async def _leave(self, group: str) -> None:
        self._forget(group)
        await self._layer.group_discard(group, self.dispatch)
        if self._observer is not None:
            await self._observer.left(self, group)

    def _forget(self, group: str) -> None:
        """No longer in `group`, whoever held it (the layer is told by the caller)."""
        self._groups.pop(group, None)
        if self._note_holders is not None:
            self._note_holders.pop(group, None)

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch(self, message: Envelope) -> None:
        """Route a group message to the handler registered for its type; never raises."""
        if message.group not in self._groups:
            return  # a group being left (revoked): nothing more of it
        handler = self._handlers.get(message.type)
        if handler is None:
            self.stats.unknown_type += 1
            self._dropped("unknown_type", message, "no handler for its type")
            return
        try:
            handler(self, message)
        except InvalidEvent as exc:
            self.stats.invalid += 1
            self._dropped("invalid", message, str(exc))
        except Exception:
            self.stats.invalid += 1
            self._dropped("handler_failed", message, "its handler raised", exc_info=True)

    def _dropped(self, reason: str, message: Envelope, detail: str, *, exc_info: bool = False) -> None:
        self._counters.dropped[reason] += 1
        log.warning(
            "session %s dropped %r event %s: %s",
            self.id,
            message.type,
            message.id,
            detail,
            exc_info=exc_info,
            extra={"session": self.id},
        )

    def send_notify(self, message: Envelope) -> None:
        """Handler of `notify`: check the fields, then deliver to the session's streams."""
        notify_fields(message.fields)
        self.forward(message)

    def send_data(self, message: Envelope) -> None:
        """Handler of `data`: check the payload, then deliver."""
        data_payload(message.fields)
        self.forward(message)

    def send_presence(self, message: Envelope) -> None:
        """Handler of `presence`: others' joins and leaves; a session is not told about itself."""
        if message.fields.get("session_id") != self.id:
            self.forward(message)

    def revoke(self, message: Envelope) -> None:
        """Handler of `revoke` (switchboard.publish.revoke, sent to this user's group): leave the
        group at once (nothing more of it is delivered) and tell every stream with a
        RevokedEvent. A note left so is left whoever held it (openNote, subscriptions)."""
        fields = message.fields
        group, target = fields.get("group"), fields.get("session")
        if (target is not None and target != self.id) or not isinstance(group, str):
            return
        if group not in self._groups or group == ALL or (self.user is not None and group == self.user.group):
            return
        reason = fields.get("reason")
        self.forward(
            Envelope(
                type=REVOKED, group=group, fields={"reason": reason if isinstance(reason, str) else None}
            )
        )
        self._forget(group)  # before anything else of the group can be delivered
        if self._departures is None:
            self._departures = set()
        task = asyncio.get_running_loop().create_task(
            self._depart(group), name=f"switchboard-revoke-{self.id}"
        )
        self._departures.add(task)
        task.add_done_callback(self._departures.discard)
        log.info("session %s: revoked from %s", self.id, group, extra={"session": self.id})

    async def _depart(self, group: str) -> None:
        if group in self._groups:
            return  # joined again meanwhile (the app allowed it): stays
        await self._layer.group_discard(group, self.dispatch)
        if group in self._groups and not self._closed:  # joined again while it was being left
            await self._layer.group_add(group, self.dispatch)
            return
        if self._observer is not None:
            await self._observer.left(self, group)

    def forward(self, message: Envelope) -> None:
        """Deliver `message` as it is to every stream that wants it; the handler for custom types."""
        if self._closed:
            return
        # No copy: offer() never adds or removes listeners, and this runs per session per event.
        for listener in self._listeners:
            if listener.filter.accepts(message) and not listener.offer(message):
                self._overflow()
                return
        self.stats.delivered += 1
        self._counters.delivered += 1

    # -- listeners and streams -----------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Deliver matching events to `listener` until `remove_listener`."""
        if self._closed:
            raise SessionClosed("the session has disconnected")
        self._listeners[listener] = None

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.pop(listener, None)

    async def stream(
        self, *, groups: Iterable[str] | None = None, types: Iterable[str] | None = None
    ) -> AsyncIterator[Envelope]:
        """Events delivered to this session from now on, optionally only some groups or types."""
        stream = _Stream(self._queue_size, EventFilter.of(groups, types))
        self.add_listener(stream)
        try:
            while (message := await stream.next()) is not None:
                yield message
        finally:
            self.remove_listener(stream)

    @property
    def stream_count(self) -> int:
        """Listeners drawing from this session: streams and WebSocket subscriptions."""
        return len(self._listeners)

    def _close_streams(self) -> None:
        for listener in self._listeners:
            if isinstance(listener, _Stream):
                listener.close()

    def _overflow(self) -> None:
        """A stream is full: the client is not reading. Close rather than grow without bound."""
        if self.stats.overflowed:
            return
        self.stats.overflowed = True
        self._counters.overflows += 1
        log.warning(
            "session %s: outgoing queue full (%d); closing as a slow consumer",
            self.id,
            self._queue_size,
        )
        self._close_streams()
        if self._closer is not None:
            self._closing = asyncio.get_running_loop().create_task(
                self._closer(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed"),
                name=f"switchboard-close-{self.id}",
            )


DEFAULT_HANDLERS = HandlerRegistry(
    {
        NOTIFY: Session.send_notify,
        DATA: Session.send_data,
        PRESENCE: Session.send_presence,
        REVOKE: Session.revoke,
        # Made by the layer itself (a gap it could not fill), never published.
        RESUME: Session.forward,
    }
)
"""The built-in event types. Copy it and `register` more to add your own (see README)."""
