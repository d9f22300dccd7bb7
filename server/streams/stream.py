"""One HTTP stream (an SSE response, a multipart response, or a single-connection reservation's
SSE response): a session like a WebSocket connection's, its operations, and the writer of its body.

A stream's subscriptions are the WebSocket's multiplexed listeners (ws/subscription.py) with the
transport's framing; over SSE every event carries an `id` (streams/event_ids.py) from which a
reconnect resumes. A stream ends when its client goes away, when its operation completes
(distinct connections and multipart), or when the server ends it: its queue overflowed (a
comment says why, and the client reconnects and resumes), the credentials expired, or shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.context import Context
from switchboard.exceptions import SwitchboardError
from switchboard.messages.envelope import Envelope
from switchboard.security.auth import User
from switchboard.sessions.session import Session
from switchboard.streams.event_ids import EventIds, current_cursor, resume_point
from switchboard.streams.framing import Framing
from switchboard.streams.writer import StreamWriter
from switchboard.ws.asgi_types import Scope, Send, client_address
from switchboard.ws.operations import Execute, Multiplexed, Stream, run_unmultiplexed
from switchboard.ws.protocol import coded
from switchboard.ws.render import Renderer
from switchboard.ws.resume import catch_up
from switchboard.ws.subscription import WsSubscription, join_notes, stop_subscription

if TYPE_CHECKING:
    from switchboard.streams.endpoint import StreamEndpoint

log = logging.getLogger(__name__)

OVERFLOWED = "slow consumer: the stream's queue overflowed; reconnect to resume"


class StreamSubscription(WsSubscription):
    """A multiplexed subscription framed for an HTTP stream; over SSE each event has an id."""

    __slots__ = ("event_ids", "framing")

    def __init__(self, stream: HttpStream, op_id: str, planned: Multiplexed, name: str | None) -> None:
        super().__init__(
            stream, op_id, planned.filter, planned.document, planned.variables, name, planned.key
        )
        self.framing = stream.writer.framing
        self._prefix = self.framing.next_prefix(op_id)
        self.event_ids: EventIds | None = None  # set once the positions are known (SSE)

    def prefix_of(self, message: Envelope) -> str:
        ids = self.event_ids
        if ids is None:
            return self._prefix
        return self.framing.next_prefix(self.id, ids.advance(message))


Operation = StreamSubscription | asyncio.Task[None]


class HttpStream:
    """One streaming response; `ops` holds its operations by id ("" in distinct mode)."""

    legacy = False  # what WsSubscription asks of its connection

    __slots__ = (
        "_ended",
        "_keepalive_sent",
        "context",
        "distinct",
        "endpoint",
        "last_event_id",
        "ops",
        "owner",
        "scope",
        "session",
        "writer",
    )

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
        settings = endpoint.services.settings
        ws = endpoint.websockets
        self.endpoint = endpoint
        self.scope = scope
        self.distinct = distinct  # one operation; the response ends when it completes
        self.last_event_id = last_event_id
        self._ended = asyncio.Event()
        self.writer = StreamWriter(
            send,
            framing,
            settings.queue_size,
            on_end=self._ended.set,
            batch=ws.flush_batch,
            max_bytes=settings.queue_bytes,
            memory=ws.queue_memory,
            budget=ws.send_budget,
        )
        self.context = Context(endpoint.services, user=user, request=self)
        self.session: Session | None = None
        self.ops: dict[str, Operation] = {}
        self.owner = user.id if user is not None else f"@{client_address(scope)}"
        self._keepalive_sent = (time.monotonic(), 0)  # (when, writer.sent then)

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else "-"

    @property
    def address(self) -> str | None:
        return client_address(self.scope)

    @property
    def renderer(self) -> Renderer:
        return self.endpoint.websockets.renderer

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self, receive: Any) -> None:
        """Until the client goes away or the stream ends; then every operation and group is left."""
        watcher = asyncio.get_running_loop().create_task(self._watch(receive), name="switchboard-stream-peer")
        try:
            await self._ended.wait()
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            await self._shutdown()

    async def _watch(self, receive: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._ended.set()
                return

    def end(self, reason: str = "") -> None:
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

    async def _shutdown(self) -> None:
        ops, self.ops = self.ops, {}
        for op_id, op in ops.items():
            await self._drop(op_id, op)
        session, self.session = self.session, None
        if session is not None:
            await self.endpoint.services.control.disconnected(session)
            await session.disconnect()
        await self.writer.stop()

    def check(self, now: float, keepalive: float, stuck_after: float) -> None:
        """Called about once a second: stuck readers, keepalives, expired credentials."""
        writer = self.writer
        if writer.busy_since and now - writer.busy_since > stuck_after:
            log.info("stream of session %s: peer stopped reading; ending it", self.session_id)
            self.abort()
            return
        if writer.closed:
            return
        user = self.context.user
        if user is not None and user.expires_at is not None and time.time() >= user.expires_at:
            self.end("credentials expired: reconnect")
            return
        when, sent = self._keepalive_sent
        if writer.sent != sent:
            self._keepalive_sent = (now, writer.sent)
        elif now - when >= keepalive:
            writer.offer(writer.framing.keepalive.decode())
            self._keepalive_sent = (now, writer.sent + 1)

    # -- operations --------------------------------------------------------------------------

    async def start(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        """Run one operation on this stream; its results and completion are framed on the body."""
        planned = await self.endpoint.websockets.plan(query, variables, name)
        if isinstance(planned, list):
            self.refuse(op_id, planned)
        elif isinstance(planned, Execute | Stream):
            self._spawn(op_id, self._run(op_id, planned, query, variables, name))
        else:
            self._subscribe(op_id, planned, name)

    def refuse(self, op_id: str, errors: list[Any]) -> None:
        """An operation that does not run: its errors as its only result, then complete."""
        self._send(op_id, orjson.dumps({"errors": errors}).decode())
        self._complete(op_id)

    async def stop(self, op_id: str) -> bool:
        """Stop one operation (single-connection DELETE); False if there is none with that id."""
        op = self.ops.pop(op_id, None)
        if op is None:
            return False
        await self._drop(op_id, op)
        return True

    async def _drop(self, op_id: str, op: Operation) -> None:
        if isinstance(op, StreamSubscription):
            await stop_subscription(op, self.session)
            if self.session is not None and not self.session.closed:
                await self.endpoint.services.control.changed(self.session)
        else:
            op.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await op

    def _subscribe(self, op_id: str, planned: Multiplexed, name: str | None) -> None:
        session = self.session
        if session is None:
            return
        subscription = StreamSubscription(self, op_id, planned, name)
        subscription.held = []  # listen first, then join, find positions, replay: no gap
        self.ops[op_id] = subscription
        session.add_listener(subscription)
        subscription.opening = asyncio.get_running_loop().create_task(
            self._open(subscription, planned), name="switchboard-stream-open"
        )

    async def _open(self, subscription: StreamSubscription, planned: Multiplexed) -> None:
        session = self.session
        services = self.endpoint.services
        if session is None:
            return
        error = await join_notes(subscription, planned.notes, session, services.authorizer, self.context.user)
        if error is not None:
            if self.ops.get(subscription.id) is subscription:
                del self.ops[subscription.id]
                session.remove_listener(subscription)
                self.refuse(subscription.id, [coded(str(error), error.code)])
            await services.control.changed(session)
            return
        await services.control.changed(session)  # its groups, its subscription count
        since = list(planned.since)
        if not self.writer.framing.multipart and not self.writer.framing.single:
            since = await self._positions(subscription, since)
        if not await catch_up(subscription, since, services.layer, session):
            self.overflowed()

    async def _positions(
        self, subscription: StreamSubscription, since: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Where the stream stands in every group it covers (its event ids start from there),
        and what to replay: `since` as given, and the groups `Last-Event-ID` names."""
        session = self.session
        layer = self.endpoint.services.layer
        if session is None:
            return since
        covered = [
            g for g in session.groups if subscription.filter.groups is None or g in subscription.filter.groups
        ]
        explicit = {group for group, _ in since}
        resumed = self.last_event_id or {}
        positions: dict[str, str] = {}
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
        subscription.event_ids = EventIds(positions)
        return since

    def _spawn(self, op_id: str, work: Any) -> None:
        async def run() -> None:
            try:
                await work
            except SwitchboardError as exc:
                self.refuse(op_id, [coded(str(exc), exc.code)])
            finally:
                if self.ops.get(op_id) is task:
                    del self.ops[op_id]

        task = asyncio.get_running_loop().create_task(run(), name="switchboard-stream-op")
        self.ops[op_id] = task

    async def _run(
        self, op_id: str, planned: Execute | Stream, query: str, variables: dict[str, Any], name: str | None
    ) -> None:
        def emit(payload: dict[str, Any]) -> None:
            self._send(op_id, orjson.dumps(payload).decode())

        errors = await run_unmultiplexed(
            self.endpoint.api, planned, self.context, query, variables, name, emit
        )
        if errors is not None:
            self.refuse(op_id, errors)
        else:
            self._complete(op_id)

    def _send(self, op_id: str, payload: str) -> None:
        if not self.writer.offer(self.writer.framing.result(op_id, payload)):
            self.overflowed()

    def _complete(self, op_id: str) -> None:
        complete = self.writer.framing.complete(op_id)
        if complete and not self.writer.offer(complete):
            self.overflowed()
        if self.distinct:
            self.end()
