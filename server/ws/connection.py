"""One GraphQL WebSocket connection: the protocol state machine around a Session."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLError, OperationType
from graphql.execution.values import get_argument_values, get_variable_values

from switchboard import close_codes
from switchboard.context import Context
from switchboard.exceptions import SwitchboardError, Unauthenticated, Unavailable
from switchboard.layers.history import GroupHistory, Recovery
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.messages.filters import EventFilter
from switchboard.observability.logs import current_session
from switchboard.observability.stats import STATS
from switchboard.security.auth import User, authenticate, authorization_from_params
from switchboard.sessions.session import Session
from switchboard.ws.asgi_types import Receive, Scope, Send
from switchboard.ws.writer import FrameWriter

if TYPE_CHECKING:
    from switchboard.ws.endpoint import WebSocketEndpoint

log = logging.getLogger(__name__)

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
SUBPROTOCOLS = (TRANSPORT_WS, LEGACY_WS)
MAX_OPERATION_ID = 128


class WsSubscription:
    """A subscription multiplexed over its session: a Listener that writes rendered frames.

    While it catches up on history (`events(since: ...)`), live events are held in `held`
    (bounded like the queue) and released after the replay, without duplicates."""

    __slots__ = ("_conn", "_prefix", "document", "filter", "held", "id", "key", "operation_name", "variables")

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
        quoted = orjson.dumps(op_id).decode()
        if conn.legacy:
            self._prefix = '{"type":"data","id":' + quoted + ',"payload":'
        else:
            self._prefix = '{"id":' + quoted + ',"type":"next","payload":'

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
        return conn.writer.offer(self._prefix + payload + "}")


Operation = WsSubscription | asyncio.Task[None]


class Connection:
    """Speaks graphql-transport-ws or graphql-ws on one socket; owns its session and writer."""

    __slots__ = (
        "_aborted",
        "_catch_ups",
        "_handlers",
        "_receive",
        "_task",
        "context",
        "endpoint",
        "init_received",
        "last_ping",
        "last_received",
        "legacy",
        "opened_at",
        "ops",
        "pinged",
        "scope",
        "session",
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
        self.writer = FrameWriter(send, settings.queue_size, batch=endpoint.flush_batch)
        self.context = Context(endpoint.services, request=self, bucket=endpoint.services.new_bucket())
        self.session: Session | None = None
        self.ops: dict[str, Operation] = {}
        self.opened_at = self.last_received = time.monotonic()
        self.last_ping = 0.0  # when the last ping was sent (or the ack, before the first ping)
        self.pinged = False
        self.init_received = False
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._catch_ups: set[asyncio.Task[None]] | None = None  # made on the first resume
        self._aborted = False
        # One table per protocol, shared by every connection (a per-connection dict of bound
        # methods costs about a kilobyte a socket).
        self._handlers = LEGACY_HANDLERS if self.legacy else TRANSPORT_HANDLERS

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else "-"

    @property
    def closing(self) -> bool:
        return self.writer.closed

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
        self.writer.close(code, reason, flush=flush)

    def abort(self) -> None:
        """End the connection now, without waiting for the peer (dead or not reading)."""
        self._aborted = True
        if self._task is not None:
            self._task.cancel()

    async def _shutdown(self) -> None:
        ops, self.ops = self.ops, {}
        tasks = list(self._catch_ups or ())
        for task in tasks:
            task.cancel()
        for op in ops.values():
            if isinstance(op, WsSubscription):
                if self.session is not None:
                    self.session.remove_listener(op)
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
        if not self.init_received:
            if now - self.opened_at > settings.init_timeout:
                self.close(close_codes.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout")
            return
        if self.session is None:
            # Between connection_init and connection_ack nothing else may be sent: clients
            # (gql, graphql-ws) treat any other first message as a failed handshake.
            return
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
        if self.init_received:
            self.close(close_codes.TOO_MANY_INIT_REQUESTS, "Too many initialisation requests")
            return
        self.init_received = True
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            self.close(close_codes.BAD_REQUEST, "connection_init payload must be an object")
            return
        try:
            user = self._authenticate(payload)
            session = await self._open_session(user)
        except Unavailable as exc:
            log.warning("refused a websocket connection: %s", exc)
            self.close(close_codes.TRY_AGAIN_LATER, "group layer unavailable: try again later")
            return
        except SwitchboardError as exc:
            log.info("refused a websocket connection: %s", exc)
            if self.legacy:
                self._send({"type": "connection_error", "payload": {"message": str(exc), "code": exc.code}})
            self.close(close_codes.FORBIDDEN, "Forbidden", flush=True)
            return
        self.context.user = user
        self.context.session = session
        self.context.connection_params = payload
        ack = {"sessionId": session.id, "userId": user.id if user else None}
        self._send({"type": "connection_ack", "payload": ack})
        self.last_ping = time.monotonic()  # the first ping comes one interval after the ack

    def _authenticate(self, payload: dict[str, Any] | None) -> User | None:
        settings = self.endpoint.services.settings
        authorization = authorization_from_params(payload)
        if authorization is None:
            authorization = self.header("authorization")
        return authenticate(settings.secret, authorization)

    async def _open_session(self, user: User | None) -> Session:
        services = self.endpoint.services
        session = Session(
            services.layer,
            user,
            handlers=services.handlers,
            queue_size=services.settings.queue_size,
            closer=self._close_from_session,
            max_notes=services.settings.max_notes,
            observer=services.presence,
        )
        try:
            await session.connect(allow_anonymous=services.settings.allow_anonymous)
        except BaseException:
            await session.disconnect()
            raise
        if self.closing:  # the peer left while we joined its groups
            await session.disconnect()
            raise Unauthenticated("connection closed during initialisation")
        try:
            await services.control.connected(session)
        except BaseException:
            await session.disconnect()
            raise
        self.session = session
        current_session.set(session.id)  # every log line of this connection's task carries it
        if user is None:
            log.info("session %s connected anonymously (development mode)", session.id)
        return session

    async def _close_from_session(self, code: int, reason: str) -> None:
        self.close(code, reason)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.scope.get("headers", ()):
            if key.lower() == wanted:
                return str(value.decode("latin-1"))
        return None

    # -- operations --------------------------------------------------------------------------

    async def _on_subscribe(self, message: dict[str, Any]) -> None:
        if self.session is None:
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
        if len(self.ops) >= self.endpoint.services.settings.max_subscriptions:
            self._send_error(
                op_id, [_coded("too many operations in flight on this connection", "RATE_LIMITED")]
            )
            return
        self._start(op_id, query, variables or {}, name)

    def _start(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        api = self.endpoint.api
        prepared = self.endpoint.documents.prepare(query)
        if prepared.errors:
            self._send_error(op_id, [api.format_error(e) for e in prepared.errors])
            return
        operation = prepared.operation(name)
        if operation is None:
            self._send_error(
                op_id, [_coded("no operation with that name in the document", "GRAPHQL_VALIDATION_FAILED")]
            )
            return
        if operation.operation is not OperationType.SUBSCRIPTION:
            self._spawn(op_id, self._execute(op_id, query, variables, name))
            return
        (field, *rest) = operation.selection_set.selections
        builder = (
            self.endpoint.api.stream_filters.get(field.name.value) if isinstance(field, FieldNode) else None
        )
        if builder is None or rest:
            self._spawn(op_id, self._stream(op_id, query, variables, name))
            return
        assert isinstance(field, FieldNode)
        schema = api.graphql_schema
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            self._send_error(op_id, [api.format_error(e) for e in coerced])
            return
        subscription_type = schema.subscription_type
        if subscription_type is None:  # validation would have failed
            return
        try:
            args = get_argument_values(subscription_type.fields[field.name.value], field, coerced)
            event_filter = builder(args, api.event_types)
        except GraphQLError as exc:
            self._send_error(op_id, [api.format_error(exc)])
            return
        except SwitchboardError as exc:
            self._send_error(op_id, [_coded(str(exc), exc.code)])
            return
        # decode(): orjson's bytes keep a 4 KiB buffer however short, and the key lives as long
        # as the subscription.
        key = (prepared.query, name, orjson.dumps(variables, option=orjson.OPT_SORT_KEYS).decode())
        subscription = WsSubscription(self, op_id, event_filter, prepared.document, variables, name, key)
        since = [(_field(s, "group"), _field(s, "cursor")) for s in (args.get("since") or ())]
        if since:
            subscription.held = []  # listen first, then read the history: no gap between the two
        self.ops[op_id] = subscription
        assert self.session is not None
        self.session.add_listener(subscription)
        if since:
            task = asyncio.get_running_loop().create_task(
                self._catch_up(subscription, since), name=f"switchboard-resume-{op_id[:16]}"
            )
            if self._catch_ups is None:
                self._catch_ups = set()
            self._catch_ups.add(task)
            task.add_done_callback(self._catch_ups.discard)

    async def _catch_up(self, subscription: WsSubscription, since: list[tuple[str, str]]) -> None:
        """Replay what each group published after its cursor, then release the held live events."""
        layer = self.endpoint.services.layer
        session = self.session
        replayed: dict[str, int] = {}
        for group, cursor in since:
            if session is None or group not in session.groups:
                recovery = Recovery(group, False, reason="this session is not in that group")
            elif not isinstance(layer, GroupHistory):
                recovery = Recovery(group, False, reason="this layer keeps no history")
            else:
                try:
                    recovery = await layer.history_since(group, cursor)
                except SwitchboardError as exc:
                    recovery = Recovery(group, False, reason=str(exc))
            resume = Envelope(
                type=RESUME,
                group=group,
                fields={
                    "recovered": recovery.recovered,
                    "reason": recovery.reason,
                    "cursor": recovery.cursor,
                },
            )
            subscription.emit(resume)
            for event in recovery.events:
                if subscription.filter.accepts(event):
                    subscription.emit(event)
                replayed[group] = event.offset or 0
        held, subscription.held = subscription.held or [], None
        for event in held:
            if event.offset is not None and event.offset <= replayed.get(event.group, -1):
                continue  # already replayed from the history
            if not subscription.emit(event):
                self.close(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")
                return

    def _spawn(self, op_id: str, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                if self.ops.get(op_id) is task:
                    del self.ops[op_id]

        task = asyncio.get_running_loop().create_task(run(), name=f"switchboard-op-{op_id[:16]}")
        self.ops[op_id] = task

    async def _execute(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        """A query or mutation: one result, then complete."""
        result = await self.endpoint.api.execute(
            query, variable_values=variables, context_value=self.context, operation_name=name
        )
        self._send_result(op_id, result)
        self._send_complete(op_id)

    async def _stream(self, op_id: str, query: str, variables: dict[str, Any], name: str | None) -> None:
        """A subscription field the endpoint does not multiplex: Strawberry runs it per subscriber."""
        source = await self.endpoint.api.subscribe(
            query, variable_values=variables, context_value=self.context, operation_name=name
        )
        if not hasattr(source, "__aiter__"):
            self._send_error(op_id, [e.formatted for e in (source.errors or [])])
            return
        async with aclosing(source):
            async for result in source:
                self._send_result(op_id, result)
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
            if self.session is not None:
                self.session.remove_listener(op)
            if self.legacy:
                self._send_complete(op_id)
        else:
            op.cancel()

    def _send_result(self, op_id: str, result: Any) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
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


def _field(value: Any, name: str) -> str:
    """A field of a coerced input object (Strawberry builds its class; plain graphql-core a dict)."""
    return str(value[name] if isinstance(value, dict) else getattr(value, name))


def _coded(message: str, code: str) -> dict[str, Any]:
    STATS.errors[code] += 1
    return {"message": message, "extensions": {"code": code}}
