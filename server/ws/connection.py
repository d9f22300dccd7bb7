"""One GraphQL WebSocket connection: graphql-transport-ws or graphql-ws framing and its state
machine, as a transport adapter of the engine (engine.peer.Peer holds the session and the
operations). Around it: protocol.py (vocabulary and states), keepalive in `check`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from switchboard import close_codes
from switchboard.context import Context
from switchboard.engine.asgi import Receive, Scope, Send, client_address
from switchboard.engine.peer import Peer
from switchboard.engine.plan import Multiplexed
from switchboard.engine.resume import resume_cursors
from switchboard.engine.subscription import Subscription
from switchboard.engine.transport import Since
from switchboard.exceptions import SwitchboardError, Unavailable
from switchboard.security.handshake import Handshake
from switchboard.ws.protocol import LEGACY_WS, MAX_OPERATION_ID, State
from switchboard.ws.socket_writer import DirectSocketWriter, SocketWriter, frame_sink

if TYPE_CHECKING:
    from switchboard.ws.endpoint import WebSocketEndpoint

log = logging.getLogger(__name__)


class Connection:
    """Speaks graphql-transport-ws or graphql-ws on one socket; owns its peer and writer."""

    __slots__ = (
        "_aborted",
        "_handlers",
        "_receive",
        "_task",
        "counted_user",
        "endpoint",
        "last_ping",
        "last_received",
        "legacy",
        "opened_at",
        "peer",
        "pending",
        "pinged",
        "scope",
        "state",
        "writer",
    )

    tracks_positions = False

    def __init__(
        self, endpoint: WebSocketEndpoint, scope: Scope, receive: Receive, send: Send, subprotocol: str
    ) -> None:
        settings = endpoint.services.settings
        self.endpoint = endpoint
        self.scope = scope
        self.legacy = subprotocol == LEGACY_WS
        options = endpoint.delivery.writer_options()
        sink = frame_sink(scope)
        self.writer = (
            SocketWriter(send, settings.queue_size, **options)
            if sink is None
            else DirectSocketWriter(sink, send, settings.queue_size, **options)
        )
        context = Context(endpoint.services, request=self)
        self.peer = Peer(endpoint.services, endpoint.delivery, self, context, client_address(scope))
        self.pending = True  # counted in the endpoint's pre-authentication budget
        self.counted_user: str | None = None  # counted in the endpoint's per-user connections
        self.opened_at = self.last_received = time.monotonic()
        self.last_ping = 0.0  # when the last ping was sent (or the ack, before the first ping)
        self.pinged = False
        self.state = State.AWAITING_INIT
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._aborted = False
        # One table per protocol, shared by every connection (a per-connection dict of bound
        # methods costs about a kilobyte a socket).
        self._handlers = LEGACY_HANDLERS if self.legacy else TRANSPORT_HANDLERS

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
            await self.peer.shutdown()

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket with `code`; queued frames are dropped unless `flush`."""
        if not self.closing:
            log.info("session %s: closing websocket %d (%s)", self.peer.session_id, code, reason)
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

    def check(self, now: float) -> None:
        """Called about once a second by the endpoint: init timeout, pings, stuck writers."""
        settings = self.endpoint.services.settings
        busy = self.writer.busy_since
        if busy and now - busy > 2 * settings.ping_interval:
            log.info("session %s: peer stopped reading; aborting", self.peer.session_id)
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
        self.peer.check_credentials()
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

    # -- the engine's Transport --------------------------------------------------------------

    def subscription(self, peer: Peer, op_id: str, planned: Multiplexed, name: str | None) -> Subscription:
        quoted = orjson.dumps(op_id).decode()
        if self.legacy:
            prefix = '{"type":"data","id":' + quoted + ',"payload":'
        else:
            prefix = '{"id":' + quoted + ',"type":"next","payload":'
        return Subscription(
            peer, op_id, planned.filter, planned.document, planned.variables, name, planned.key, prefix
        )

    async def positions(self, subscription: Subscription, since: Since) -> tuple[Since, Since]:
        return since, []

    def send_result(self, op_id: str, payload: dict[str, Any]) -> None:
        self._send({"id": op_id, "type": "data" if self.legacy else "next", "payload": payload})

    def send_error(self, op_id: str, errors: list[Any]) -> None:
        self._send({"id": op_id, "type": "error", "payload": errors[0] if self.legacy else errors})

    def send_complete(self, op_id: str) -> None:
        self._send({"id": op_id, "type": "complete"})

    def stopped(self, op_id: str) -> None:
        if self.legacy:
            self.send_complete(op_id)

    def end(self, code: int, reason: str) -> None:
        self.close(code, reason)

    def _send(self, message: dict[str, Any]) -> None:
        if not self.writer.offer(orjson.dumps(message).decode()):
            self.close(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")

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
        services = self.endpoint.services
        try:
            resume = resume_cursors(payload, services.settings.max_groups)
        except SwitchboardError as exc:
            self.close(close_codes.BAD_REQUEST, str(exc))
            return
        raw_headers = self.scope.get("headers")
        handshake = Handshake.from_asgi(raw_headers, payload, self.peer.address, "websocket")
        if isinstance(raw_headers, list):
            # Now in the handshake, and read by nothing else after the upgrade: the scope's copy
            # (a kilobyte or more of a browser's headers) is let go, though the ASGI frames
            # above the endpoint keep the scope itself for the connection's lifetime.
            raw_headers.clear()
        self.peer.handshake = handshake
        try:
            user = await services.authenticator.authenticate(handshake)
        except SwitchboardError as exc:
            self._refuse(exc, "authentication")
            return
        if self.closing:
            return
        try:
            session = await self.peer.open(user, lambda: not self.closing, resume)
        except SwitchboardError as exc:
            self._refuse(exc, "group layer")
            return
        refusal = self.endpoint.authenticated(self)
        if refusal is not None:
            self.close(close_codes.TRY_AGAIN_LATER, refusal)
            return  # the session is left with the connection (Peer.shutdown)
        self.state = State.READY
        self.peer.context.connection_params = payload
        ack = {"sessionId": session.id, "userId": user.id if user else None}
        self._send({"type": "connection_ack", "payload": ack})
        self.last_ping = time.monotonic()  # the first ping comes one interval after the ack

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
        if op_id in self.peer.ops:
            if not self.legacy:
                self.close(close_codes.SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {op_id} already exists")
                return
            await self.peer.stop(op_id)  # the legacy protocol replaces an operation with the same id
        await self.peer.start(op_id, query, variables or {}, name)

    async def _on_complete(self, message: dict[str, Any]) -> None:
        op_id = message.get("id")
        if isinstance(op_id, str):
            await self.peer.stop(op_id)


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
