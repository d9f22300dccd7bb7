"""One HTTP stream (an SSE response, a multipart response, or a single-connection reservation's
SSE response) as a transport adapter of the engine: its framing, its keepalives and its end.
engine.peer.Peer holds its session and operations, as it does a WebSocket connection's.

Over SSE every event carries an `id` (streams/event_ids.py) from which a reconnect resumes. A
stream ends when its client goes away, when its operation completes (distinct connections and
multipart), or when the server ends it: its queue overflowed (a comment says why, and the client
reconnects and resumes), the credentials expired, or shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import orjson

from switchboard import close_codes
from switchboard.context import Context
from switchboard.engine.asgi import Receive, Scope, Send, client_address
from switchboard.engine.peer import Peer
from switchboard.engine.plan import Multiplexed
from switchboard.engine.positions import covered_groups, current_cursor, resume_point, start_position
from switchboard.engine.subscription import Subscription
from switchboard.engine.transport import Since
from switchboard.messages.envelope import Envelope
from switchboard.security.auth import User
from switchboard.streams.event_ids import EventIds
from switchboard.streams.framing import Framing
from switchboard.streams.writer import StreamWriter

if TYPE_CHECKING:
    from switchboard.streams.endpoint import StreamEndpoint

log = logging.getLogger(__name__)

OVERFLOWED = "slow consumer: the stream's queue overflowed; reconnect to resume"


class StreamSubscription(Subscription):
    """A multiplexed subscription framed for an HTTP stream; over SSE each event has an id."""

    __slots__ = ("event_ids", "framing")

    def __init__(
        self, peer: Peer, framing: Framing, op_id: str, planned: Multiplexed, name: str | None
    ) -> None:
        super().__init__(
            peer,
            op_id,
            planned.filter,
            planned.document,
            planned.variables,
            name,
            planned.key,
            framing.next_prefix(op_id),
        )
        self.framing = framing
        self.event_ids: EventIds | None = None  # set once the positions are known (SSE)

    def prefix_of(self, message: Envelope) -> str:
        ids = self.event_ids
        if ids is None:
            return self._prefix
        return self.framing.next_prefix(self.id, ids.advance(message))


class HttpStream:
    """One streaming response; its peer's operations are by id ("" in distinct mode)."""

    __slots__ = ("_ended", "_keepalive_sent", "distinct", "last_event_id", "owner", "peer", "scope", "writer")

    def __init__(
        self,
        endpoint: StreamEndpoint,
        scope: Scope,
        send: Send,
        framing: Framing,
        user: User | None,
        *,
        distinct: bool,
        last_event_id: dict[str, str] | None = None,
    ) -> None:
        self.scope = scope
        self.distinct = distinct  # one operation; the response ends when it completes
        self.last_event_id = last_event_id
        self._ended = asyncio.Event()
        self.writer = StreamWriter(
            send,
            framing,
            endpoint.services.settings.queue_size,
            on_end=self._ended.set,
            **endpoint.delivery.writer_options(),
        )
        context = Context(endpoint.services, user=user, request=self)
        self.peer = Peer(endpoint.services, endpoint.delivery, self, context, client_address(scope))
        self.owner = user.id if user is not None else f"@{client_address(scope)}"
        self._keepalive_sent = (time.monotonic(), 0)  # (when, writer.sent then)

    @property
    def framing(self) -> Framing:
        return self.writer.framing

    @property
    def tracks_positions(self) -> bool:
        """SSE in distinct mode: each event's id is the stream's position in every group."""
        return not self.framing.multipart and not self.framing.single

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self, receive: Receive) -> None:
        """Until the client goes away or the stream ends; then every operation and group is left."""
        watcher = asyncio.get_running_loop().create_task(self._watch(receive), name="switchboard-stream-peer")
        try:
            await self._ended.wait()
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            await self.peer.shutdown()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._ended.set()
                return

    def finish(self, reason: str = "") -> None:
        """End the response after what is queued (a comment giving `reason` first, over SSE)."""
        self.writer.close(0, reason, flush=True)

    def abort(self) -> None:
        """End now: the client is not reading."""
        self._ended.set()

    def overflowed(self) -> None:
        self.writer.close(0, OVERFLOWED)

    def shed(self) -> None:
        """Ended to free the process's queue memory (the client reconnects and resumes)."""
        self.writer.close(0, "slow consumer: the server's queue memory is full; reconnect to resume")

    def check(self, now: float) -> None:
        """Called about once a second: stuck readers, keepalives, expired credentials."""
        settings = self.peer.services.settings
        writer = self.writer
        if writer.busy_since and now - writer.busy_since > 2 * settings.ping_interval:
            log.info("stream of session %s: peer stopped reading; ending it", self.peer.session_id)
            self.abort()
            return
        if writer.closed:
            return
        self.peer.check_credentials()
        when, sent = self._keepalive_sent
        if writer.sent != sent:
            self._keepalive_sent = (now, writer.sent)
        elif now - when >= settings.stream_keepalive:
            writer.offer(writer.framing.keepalive.decode())
            self._keepalive_sent = (now, writer.sent + 1)

    # -- the engine's Transport --------------------------------------------------------------

    def subscription(self, peer: Peer, op_id: str, planned: Multiplexed, name: str | None) -> Subscription:
        return StreamSubscription(peer, self.framing, op_id, planned, name)

    async def positions(self, subscription: Subscription, since: Since) -> tuple[Since, Since]:
        """Where the stream stands in every group it covers (its event ids start from there),
        what to replay (`since` as given, and the groups `Last-Event-ID` names), and, for a
        client that sent `Last-Event-ID` (even empty: it keeps positions, as graphql-sse's
        `headers` can), each other group's start position as a ResumeEvent."""
        session = self.peer.session
        layer = self.peer.services.layer
        if session is None or not isinstance(subscription, StreamSubscription):
            return since, []
        covered = covered_groups(session.groups, subscription.filter)
        explicit = {group for group, _ in since}
        resumed = self.last_event_id or {}
        positions: dict[str, str] = {}
        starts: Since = []
        since = list(since)
        for group in covered:
            if group in explicit:
                continue
            if group in resumed:
                point = await resume_point(layer, group, resumed[group])
                positions[group] = resumed[group]
                if point is not None:
                    since.append((group, point))
            else:
                cursor = await current_cursor(layer, group)
                if cursor is not None:
                    positions[group] = cursor
                    if self.last_event_id is not None:
                        starts.append((group, start_position(cursor, group, subscription.held or ())))
        subscription.event_ids = ids = EventIds(positions)
        start = ids.current()
        if start is not None:
            # An id with no data: EventSource keeps it as its Last-Event-ID without firing any
            # listener (the spec sets it before it drops an event without data; graphql-sse's
            # parser skips it), so a reconnect before any event still resumes every group.
            self.writer.offer(f"id: {start}\n\n")
        return since, starts

    def send_result(self, op_id: str, payload: dict[str, Any]) -> None:
        self._send(op_id, orjson.dumps(payload).decode())

    def send_error(self, op_id: str, errors: list[Any]) -> None:
        """An operation that does not run: its errors as its only result, then complete."""
        self._send(op_id, orjson.dumps({"errors": errors}).decode())
        self.send_complete(op_id)

    def send_complete(self, op_id: str) -> None:
        complete = self.framing.complete(op_id)
        if complete and not self.writer.offer(complete):
            self.overflowed()
        if self.distinct:
            self.finish()

    def stopped(self, op_id: str) -> None:
        return None

    def end(self, code: int, reason: str) -> None:
        if code == close_codes.SLOW_CONSUMER:
            self.overflowed()  # what is queued is dropped: the client resumes from its last id
        else:
            self.finish(reason)

    def _send(self, op_id: str, payload: str) -> None:
        if not self.writer.offer(self.framing.result(op_id, payload)):
            self.overflowed()
