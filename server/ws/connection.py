"""One GraphQL WebSocket connection: the protocol state machine around a Session.

Around it: protocol.py (vocabulary and states), opening.py (authentication and the session),
operations.py (how each operation runs), subscription.py (multiplexed subscriptions),
resume.py (replay after a reconnect), keepalive in `check`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from switchboard import close_codes
from switchboard.context import Context
from switchboard.exceptions import SwitchboardError, Unauthenticated, Unavailable
from switchboard.messages.groups import note_group
from switchboard.security.handshake import Handshake
from switchboard.security.ratelimit import TokenBucket
from switchboard.sessions.session import Session
from switchboard.ws.asgi_types import Receive, Scope, Send, client_address
from switchboard.ws.opening import open_session
from switchboard.ws.operations import Execute, Multiplexed, Stream, run_unmultiplexed
from switchboard.ws.protocol import LEGACY_WS, MAX_OPERATION_ID, State, coded
from switchboard.ws.render import Renderer
from switchboard.ws.resume import catch_up, resume_cursors
from switchboard.ws.subscription import WsSubscription, join_notes, stop_subscription
from switchboard.ws.writer import FrameWriter

if TYPE_CHECKING:
    from switchboard.ws.endpoint import WebSocketEndpoint

log = logging.getLogger(__name__)

RESUME_WINDOW = 10.0
"""Seconds after connection_ack in which new subscriptions resume from connection_init's cursors:
a client re-subscribing after a reconnect does so at once; a subscription started later is new."""


Operation = WsSubscription | asyncio.Task[None]


class Connection:
    """Speaks graphql-transport-ws or graphql-ws on one socket; owns its session and writer."""

    __slots__ = (
        "_aborted",
        "_handlers",
        "_receive",
        "_refresh",
        "_task",
        "context",
        "endpoint",
        "handshake",
        "last_ping",
        "last_received",
        "legacy",
        "opened_at",
        "operations",
        "ops",
        "pending",
        "pinged",
        "resume",
        "resume_until",
        "scope",
        "session",
        "state",
        "writer",
    )

    def __init__(
        self,
        endpoint: WebSocketEndpoint,
        scope: Scope,
        receive: Receive,
        send: Send,
        subprotocol: str,
    ) -> None:
        settings = endpoint.services.settings
        self.endpoint = endpoint
        self.scope = scope
        self.legacy = subprotocol == LEGACY_WS
        self.writer = FrameWriter(
            send,
            settings.queue_size,
            batch=endpoint.flush_batch,
            max_bytes=settings.queue_bytes,
            memory=endpoint.queue_memory,
            budget=endpoint.send_budget,
        )
        self.context = Context(endpoint.services, request=self)
        self.operations: TokenBucket | None = None  # the caller's, once it is known
        self.pending = True  # counted in the endpoint's pre-authentication budget
        self.session: Session | None = None
        self.ops: dict[str, Operation] = {}
        self.opened_at = self.last_received = time.monotonic()
        self.handshake: Handshake | None = None  # what the client presented, kept to refresh it
        self._refresh: asyncio.Task[None] | None = None  # asking the app again, when credentials expire
        self.last_ping = 0.0  # when the last ping was sent (or the ack, before the first ping)
        self.pinged = False
        self.state = State.AWAITING_INIT
        # Cursors from connection_init (`resume`: group -> cursor) and when they stop applying.
        self.resume: dict[str, str] | None = None
        self.resume_until = 0.0
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._aborted = False
        # One table per protocol, shared by every connection (a per-connection dict of bound
        # methods costs about a kilobyte a socket).
        self._handlers = LEGACY_HANDLERS if self.legacy else TRANSPORT_HANDLERS

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else "-"

    @property
    def renderer(self) -> Renderer:
        return self.endpoint.renderer

    @property
    def closing(self) -> bool:
        return self.state is State.CLOSING or self.writer.closed

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until the peer disconnects, the connection is closed, or it is aborted."""
        self._task = asyncio.current_task()
        max_bytes = self.endpoint.services.settings.max_message_bytes
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive" or self.closing:
                    continue
                self.last_received = time.monotonic()
                text = message.get("text")
                if text is None:
                    self.close(close_codes.BAD_REQUEST, "binary frames are not accepted")
                elif len(text) > max_bytes or len(text.encode()) > max_bytes:
                    self.close(close_codes.MESSAGE_TOO_BIG, f"message larger than {max_bytes} bytes")
                else:
                    await self._on_text(text)
        except asyncio.CancelledError:
            if not self._aborted:
                raise
        finally:
            await self._shutdown()

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket with `code`; queued frames are dropped unless `flush`."""
        if not self.closing:
            log.info("session %s: closing websocket %d (%s)", self.session_id, code, reason)
        self.state = State.CLOSING
        self.writer.close(code, reason, flush=flush)

    def shed(self) -> None:
        """Closed to free the process's queue memory (the slowest readers go first)."""
        self.close(close_codes.SLOW_CONSUMER, "slow consumer: the server's queue memory is full")

    def abort(self) -> None:
        """End the connection now, without waiting for the peer (dead or not reading)."""
        self._aborted = True
        if self._task is not None:
            self._task.cancel()

    async def _shutdown(self) -> None:
        ops, self.ops = self.ops, {}
        tasks: list[asyncio.Task[None]] = []
        if self._refresh is not None:
            self._refresh.cancel()
            tasks.append(self._refresh)
        for op in ops.values():
            if isinstance(op, WsSubscription):
                if self.session is not None:
                    self.session.remove_listener(op)
                if op.opening is not None:
                    op.opening.cancel()
                    tasks.append(op.opening)
            else:
                op.cancel()
                tasks.append(op)
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        session, self.session = self.session, None
        if session is not None:
            await self.endpoint.services.control.disconnected(session)
            await session.disconnect()
        await self.writer.stop()

    def check(self, now: float) -> None:
        """Called about once a second by the endpoint: init timeout, pings, stuck writers."""
        settings = self.endpoint.services.settings
        busy = self.writer.busy_since
        if busy and now - busy > 2 * settings.ping_interval:
            log.info("session %s: peer stopped reading; aborting", self.session_id)
            self.abort()
            return
        if self.closing:
            return
        if self.state is State.AWAITING_INIT:
            if now - self.opened_at > settings.init_timeout:
                self.close(close_codes.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout")
            return
        if self.state is not State.READY:
            # Between connection_init and connection_ack nothing else may be sent: clients
            # (gql, graphql-ws) treat any other first message as a failed handshake.
            return
        user = self.context.user
        if user is not None and user.expires_at is not None and self._refresh is None:
            if time.time() >= user.expires_at:
                self._refresh = asyncio.get_running_loop().create_task(
                    self._refresh_credentials(user.id), name="switchboard-refresh"
                )
        if now - self.last_ping < settings.ping_interval:
            return
        if self.legacy:
            self._send({"type": "ka"})
        elif self.pinged and self.last_received < self.last_ping:
            self.close(close_codes.CONNECTION_INIT_TIMEOUT, "no pong: the peer seems gone")
            self.abort()
            return
        else:
            self._send({"type": "ping"})
            self.pinged = True
        self.last_ping = now

    # -- messages ----------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.close(close_codes.BAD_REQUEST, "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.close(close_codes.BAD_REQUEST, "message must be an object with a string 'type'")
            return
        handler = self._handlers.get(message["type"])
        if handler is None:
            self.close(close_codes.BAD_REQUEST, "unknown message type")
            return
        await handler(self, message)

    def _send(self, message: dict[str, Any]) -> None:
        if not self.writer.offer(orjson.dumps(message).decode()):
            self.close(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")

    async def _on_ping(self, message: dict[str, Any]) -> None:
        self._send({"type": "pong"})

    async def _on_pong(self, message: dict[str, Any]) -> None:
        return None

    async def _on_terminate(self, message: dict[str, Any]) -> None:
        self.close(close_codes.NORMAL, "terminated by the client")

    async def _on_init(self, message: dict[str, Any]) -> None:
        if self.state is not State.AWAITING_INIT:
            self.close(close_codes.TOO_MANY_INIT_REQUESTS, "Too many initialisation requests")
            return
        self.state = State.INITIALISING
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self.close(close_codes.BAD_REQUEST, "connection_init payload must be an object")
            return
        try:
            self.resume = resume_cursors(payload, self.endpoint.services.settings.max_groups)
        except SwitchboardError as exc:
            self.close(close_codes.BAD_REQUEST, str(exc))
            return
        services = self.endpoint.services
        self.handshake = Handshake.from_asgi(self.scope.get("headers"), payload, self.address, "websocket")
        try:
            user = await services.authenticator.authenticate(self.handshake)
        except SwitchboardError as exc:
            self._refuse(exc, "authentication")
            return
        if self.closing:
            return
        try:
            session = await open_session(services, user, self._close_from_session, lambda: not self.closing)
        except SwitchboardError as exc:
            self._refuse(exc, "group layer")
            return
        if not self.endpoint.authenticated(self):
            await self.endpoint.services.control.disconnected(session)
            await session.disconnect()
            self.close(close_codes.TRY_AGAIN_LATER, "server is at its connection limit")
            return
        self.session = session
        self.state = State.READY
        self.context.bucket, self.operations = services.buckets_of(user, self.address)
        self.context.user = user
        self.context.session = session
        self.context.connection_params = payload
        ack = {"sessionId": session.id, "userId": user.id if user else None}
        self._send({"type": "connection_ack", "payload": ack})
        self.last_ping = time.monotonic()  # the first ping comes one interval after the ack
        if self.resume:
            self.resume_until = self.last_ping + RESUME_WINDOW

    def _refuse(self, exc: SwitchboardError, step: str) -> None:
        """End a connection_init that failed: 1013 when `step` could not answer now (the client
        retries), 4403 for a refusal (and the legacy protocol's connection_error first)."""
        if isinstance(exc, Unavailable):
            log.warning("refused a websocket connection: %s", exc)
            self.close(close_codes.TRY_AGAIN_LATER, f"{step} unavailable: try again later")
            return
        log.info("refused a websocket connection: %s", exc)
        if self.legacy:
            self._send({"type": "connection_error", "payload": {"message": str(exc), "code": exc.code}})
        self.close(close_codes.FORBIDDEN, "Forbidden", flush=True)

    async def _refresh_credentials(self, user_id: str) -> None:
        """The credentials expired: ask the app again (its hook or connect endpoint, with the
        handshake the client made), or, for a token of ours, close with 4403, which the
        reference client retries (calling connectionParams again for a fresh token)."""
        authenticator = self.endpoint.services.authenticator
        try:
            if not authenticator.delegates or self.handshake is None:
                raise Unauthenticated("token expired: reconnect with a fresh one")
            user = await authenticator.authenticate(self.handshake)
            if user is None or user.id != user_id:
                raise Unauthenticated("credentials expired: the app no longer names this user")
        except Unavailable as exc:
            log.warning("session %s: could not refresh credentials: %s", self.session_id, exc)
            self.close(close_codes.TRY_AGAIN_LATER, "authentication unavailable: try again later")
        except SwitchboardError as exc:
            log.info("session %s: %s", self.session_id, exc)
            self.close(close_codes.FORBIDDEN, str(exc))
        else:
            self.context.user = user
            if self.session is not None:
                self.session.user = user
        finally:
            self._refresh = None

    async def _close_from_session(self, code: int, reason: str) -> None:
        self.close(code, reason)

    @property
    def address(self) -> str | None:
        """The peer's address, as the ASGI server reports it."""
        return client_address(self.scope)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.scope.get("headers", ()):
            if key.lower() == wanted:
                return str(value.decode("latin-1"))
        return None

    # -- operations --------------------------------------------------------------------------

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        if self.state is not State.READY:
            self.close(close_codes.UNAUTHORIZED, "Unauthorized")
            return
        op_id, payload = message.get("id"), message.get("payload")
        if not isinstance(op_id, str) or not op_id or len(op_id) > MAX_OPERATION_ID:
            self.close(
                close_codes.BAD_REQUEST,
                f"operation id must be a string of 1 to {MAX_OPERATION_ID} characters",
            )
            return
        if not isinstance(payload, dict):
            self.close(close_codes.BAD_REQUEST, "subscribe payload must be an object")
            return
        query, variables, name = payload.get("query"), payload.get("variables"), payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (name is None or isinstance(name, str))
        ):
            self.close(
                close_codes.BAD_REQUEST, "query must be a string, variables an object, operationName a string"
            )
            return
        if op_id in self.ops:
            if not self.legacy:
                self.close(close_codes.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {op_id} already exists")
                return
            await self._stop(op_id)  # the legacy protocol replaces an operation with the same id
        if self.operations is not None and not self.operations.take():
            self._send_error(op_id, [coded("too many operations: slow down", "RATE_LIMITED")])
            return
        if len(self.ops) >= self.endpoint.services.settings.max_subscriptions:
            self._send_error(
                op_id, [coded("too many operations in flight on this connection", "RATE_LIMITED")]
            )
            return
        await self._start(op_id, query, variables or {}, name)

    async def _start(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        planned = await self.endpoint.plan(query, variables, name)
        if isinstance(planned, list):
            self._send_error(op_id, planned)
        elif isinstance(planned, Execute | Stream):
            self._spawn(op_id, self._run(op_id, planned, query, variables, name))
        else:
            await self._subscribe(op_id, planned, name)

    async def _subscribe(self, op_id: str, planned: Multiplexed, name: str | None) -> None:
        session = self.session
        if session is None:
            return
        subscription = WsSubscription(
            self, op_id, planned.filter, planned.document, planned.variables, name, planned.key
        )
        since = planned.since + self._resumed(planned, {group for group, _ in planned.since})
        if since or planned.notes:
            subscription.held = []  # listen first, then join and read the history: no gap
        self.ops[op_id] = subscription
        session.add_listener(subscription)
        if subscription.held is not None:
            subscription.opening = asyncio.get_running_loop().create_task(
                self._open(subscription, planned.notes, since), name=f"switchboard-open-{op_id[:16]}"
            )
        await self.endpoint.services.control.changed(session)  # its subscription count

    def _resumed(self, planned: Multiplexed, explicit: set[str]) -> list[tuple[str, str]]:
        """The connection_init cursors that apply to this subscription: for the groups it
        covers, when it starts within RESUME_WINDOW of the ack (a client re-subscribing after a
        reconnect), and unless `since` names the group itself."""
        if not self.resume or time.monotonic() > self.resume_until:
            return []
        covered = planned.filter.groups
        # A subscription to every group resumes the groups the session is in, or joins with it;
        # one that names its groups resumes those.
        mine = {note_group(note) for note in planned.notes}
        if covered is None and self.session is not None:
            mine.update(self.session.groups)
        return [
            (group, cursor)
            for group, cursor in self.resume.items()
            if group not in explicit and (group in mine or (covered is not None and group in covered))
        ]

    async def _open(
        self, subscription: WsSubscription, notes: list[str], since: list[tuple[str, str]]
    ) -> None:
        """Join the notes the subscription declared, replay what it missed, release the held."""
        session = self.session
        services = self.endpoint.services
        if session is None:
            return
        error = await join_notes(subscription, notes, session, services.authorizer, self.context.user)
        if error is not None:
            if self.ops.get(subscription.id) is subscription:
                del self.ops[subscription.id]
                session.remove_listener(subscription)
                self._send_error(subscription.id, [coded(str(error), error.code)])
            await services.control.changed(session)
            return
        if notes:
            await services.control.changed(session)  # its groups
        if not await catch_up(subscription, since, services.layer, session):
            self.close(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")

    def _spawn(self, op_id: str, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                if self.ops.get(op_id) is task:
                    del self.ops[op_id]

        task = asyncio.get_running_loop().create_task(run(), name=f"switchboard-op-{op_id[:16]}")
        self.ops[op_id] = task

    async def _run(
        self, op_id: str, planned: Execute | Stream, query: str, variables: dict[str, Any], name: str | None
    ) -> None:
        """A query or mutation (one result), or a subscription field the endpoint does not
        multiplex (Strawberry runs it per subscriber); then complete."""
        errors = await run_unmultiplexed(
            self.endpoint.api,
            planned,
            self.context,
            query,
            variables,
            name,
            partial(self._send_payload, op_id),
        )
        if errors is not None:
            self._send_error(op_id, errors)
        else:
            self._send_complete(op_id)

    async def _on_complete(self, message: dict[str, Any]) -> None:
        op_id = message.get("id")
        if isinstance(op_id, str):
            await self._stop(op_id)

    async def _stop(self, op_id: str) -> None:
        op = self.ops.pop(op_id, None)
        if op is None:
            return
        if isinstance(op, WsSubscription):
            await stop_subscription(op, self.session)
            if self.legacy:
                self._send_complete(op_id)
            if self.session is not None and not self.session.closed:
                await self.endpoint.services.control.changed(self.session)  # its subscription count
        else:
            op.cancel()

    def _send_payload(self, op_id: str, payload: dict[str, Any]) -> None:
        kind = "data" if self.legacy else "next"
        self._send({"id": op_id, "type": kind, "payload": payload})

    def _send_error(self, op_id: str, errors: list[Any]) -> None:
        self.ops.pop(op_id, None)
        payload = errors[0] if self.legacy else errors
        self._send({"id": op_id, "type": "error", "payload": payload})

    def _send_complete(self, op_id: str) -> None:
        self._send({"id": op_id, "type": "complete"})


MessageHandler = Callable[[Connection, dict[str, Any]], Awaitable[None]]
TRANSPORT_HANDLERS: dict[str, MessageHandler] = {
    "connection_init": Connection._on_init,
    "subscribe": Connection._on_subscribe,
    "complete": Connection._on_complete,
    "ping": Connection._on_ping,
    "pong": Connection._on_pong,
}
LEGACY_HANDLERS: dict[str, MessageHandler] = {
    "connection_init": Connection._on_init,
    "start": Connection._on_subscribe,
    "stop": Connection._on_complete,
    "connection_terminate": Connection._on_terminate,
}
