"""/graphql over HTTP streams: GraphQL over SSE (graphql-sse's distinct connections mode, and its
single connection mode with reservations) and Apollo's multipart subscriptions.

Which requests are ours (`takes`): PUT and DELETE (reservations, stopping an operation), any
request with an X-GraphQL-Event-Stream-Token header, and requests whose Accept header prefers
`text/event-stream` or `multipart/mixed`. Everything else is Quart's (queries and mutations).

Refusals (docs/http-streams.md): a bad request or a refused operation is a `next` carrying
`errors` with an `extensions.code`, then `complete` (multipart: a JSON body, as for a query);
a stream over its limits (per user, per process) or refused while the server cannot answer is
ended at once with a `retry` hint over SSE (EventSource and graphql-sse reconnect by themselves),
429 or 503 otherwise.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import OperationType

from switchboard.engine.asgi import Receive, Scope, Send, client_address
from switchboard.engine.carriers import Carriers
from switchboard.engine.delivery import Delivery
from switchboard.engine.errors import coded, count_errors
from switchboard.exceptions import (
    BadUserInput,
    NotFound,
    RateLimited,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
)
from switchboard.security.auth import User
from switchboard.security.handshake import Handshake
from switchboard.services import Services
from switchboard.streams.event_ids import parse_last_event_id
from switchboard.streams.framing import MULTIPART, SSE, SSE_SINGLE, Framing, retry_field
from switchboard.streams.requests import (
    TOKEN_HEADER,
    GraphQLParams,
    headers_of,
    negotiate,
    params_of,
    query_params,
    read_body,
)
from switchboard.streams.stream import HttpStream

log = logging.getLogger(__name__)

RESERVATION_TTL = 30.0
"""Seconds a reservation (PUT) waits for its stream before it is forgotten."""
RETRY_MS = 3000
"""The SSE `retry` given with a refusal that may pass: how long EventSource waits to reconnect."""


@dataclass(slots=True)
class Reservation:
    """A single-connection reservation: its user, and its stream once that is open."""

    token: str
    user: User | None
    owner: str
    handshake: Handshake | None
    made_at: float = field(default_factory=time.monotonic)
    stream: HttpStream | None = None


class StreamEndpoint:
    """Serves the streaming requests of /graphql; holds the open streams and reservations."""

    def __init__(self, services: Services, delivery: Delivery) -> None:
        self.services = services
        self.delivery = delivery
        self.streams: Carriers[HttpStream] = Carriers(delivery, "switchboard-streams", 1.0)
        self.reservations: dict[str, Reservation] = {}
        self.owners: Counter[str] = Counter()  # streams and reservations per user (or @address)
        self.refused = 0
        self._stopping = False

    # -- routing -----------------------------------------------------------------------------

    @staticmethod
    def takes(scope: Scope) -> bool:
        """Whether a /graphql HTTP request is a streaming one (else Quart serves it)."""
        method = scope["method"]
        if method in ("PUT", "DELETE"):
            return True
        if method not in ("GET", "POST"):
            return False
        headers = headers_of(scope)
        return TOKEN_HEADER in headers or negotiate(headers.get("accept")) != "json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        query = query_params(scope)
        method = scope["method"]
        # The reservation token: the header, or `?token=` for EventSource, which sends no headers
        # (a page's own `?token=`, GraphiQL's, is no reservation: that request is not ours).
        in_query = method == "DELETE" or negotiate(headers.get("accept")) == "sse"
        token = headers.get(TOKEN_HEADER) or (query.get("token") if in_query else None)
        try:
            if method == "PUT":
                await self._reserve(scope, headers, send)
            elif method == "DELETE":
                await self._delete(token, query, send)
            elif token is not None and method == "POST":
                await self._reserved_operation(token, scope, receive, send)
            elif token is not None:
                await self._reserved_stream(token, scope, receive, send)
            else:
                await self._distinct(scope, headers, query, receive, send)
        except SwitchboardError as exc:
            await self._json(send, _status_of(exc), {"errors": [coded(str(exc), exc.code)]})

    # -- graphql-sse distinct connections, and multipart ---------------------------------------

    async def _distinct(
        self, scope: Scope, headers: dict[str, str], query: dict[str, str], receive: Receive, send: Send
    ) -> None:
        framing = MULTIPART if negotiate(headers.get("accept")) == "multipart" else SSE
        body = b""
        if scope["method"] == "POST":
            body = await read_body(receive, self.services.settings.max_request_bytes)
        try:
            params = params_of(scope["method"], query, body)
            last_event_id = None
            if "last-event-id" in headers:  # even empty: the client keeps positions (README)
                last_event_id = parse_last_event_id(
                    headers["last-event-id"], self.services.settings.max_groups
                )
        except SwitchboardError as exc:
            await self._refuse(send, framing, exc)
            return
        if scope["method"] == "GET" and await self._is_mutation(params):
            # What a cross-site GET (a link, an <img>, a no-cors fetch with the victim's cookie)
            # must never do, as the GraphQL-over-HTTP spec says: 405, on every transport.
            errors = [coded("mutations are not run over GET: use POST", "BAD_REQUEST")]
            count_errors(self.services.stats, errors)
            allow = [(b"content-type", b"application/json"), (b"allow", b"POST")]
            await _answer(send, 405, allow, orjson.dumps({"errors": errors}))
            return
        known, user, handshake = await self._authenticate(scope, send, framing)
        if not known:
            return
        stream = await self._open(
            scope, send, framing, user, handshake, distinct=True, last_event_id=last_event_id
        )
        if stream is None:
            return
        try:
            await self._run(stream, "", params)
            await stream.serve(receive)
        finally:
            self._close(stream)

    async def _is_mutation(self, params: GraphQLParams) -> bool:
        prepared = await self.delivery.documents.prepare(params.query)
        operation = prepared.operation(params.operation_name)
        return operation is not None and operation.operation is OperationType.MUTATION

    async def _run(self, stream: HttpStream, op_id: str, params: GraphQLParams) -> None:
        await stream.peer.start(op_id, params.query, params.variables, params.operation_name)

    # -- graphql-sse single connection mode --------------------------------------------------

    async def _reserve(self, scope: Scope, headers: dict[str, str], send: Send) -> None:
        known, user, handshake = await self._authenticate(scope, send, None)
        if not known:
            return
        owner = _owner(user, scope)
        refusal = self._refusal(owner)
        if refusal is not None:
            raise refusal
        token = secrets.token_urlsafe(24)
        self.reservations[token] = Reservation(token, user, owner, handshake)
        self.owners[owner] += 1
        await _answer(send, 201, [(b"content-type", b"text/plain; charset=utf-8")], token.encode())

    def _reservation(self, token: str | None) -> Reservation:
        reservation = self.reservations.get(token or "")
        if reservation is None:
            raise NotFound("no stream reserved with that token: make a new reservation (PUT)")
        return reservation

    async def _reserved_stream(self, token: str, scope: Scope, receive: Receive, send: Send) -> None:
        reservation = self._reservation(token)
        if reservation.stream is not None:
            await _json(
                send, 409, {"errors": [coded("the reservation's stream is already open", "CONFLICT")]}
            )
            return
        stream = await self._open(
            scope, send, SSE_SINGLE, reservation.user, reservation.handshake, distinct=False, owned=True
        )
        if stream is None:
            return
        reservation.stream = stream
        try:
            await stream.serve(receive)
        finally:
            self.reservations.pop(token, None)
            self._close(stream)

    async def _reserved_operation(self, token: str, scope: Scope, receive: Receive, send: Send) -> None:
        reservation = self._reservation(token)
        body = await read_body(receive, self.services.settings.max_request_bytes)
        params = params_of("POST", {}, body)
        op_id = params.extensions.get("operationId")
        if not isinstance(op_id, str) or not op_id or len(op_id) > 128:
            raise BadUserInput("extensions.operationId must be a string of 1 to 128 characters")
        stream = reservation.stream
        if stream is None:
            raise NotFound("the reservation's stream is not open: open it (GET) first")
        if op_id in stream.peer.ops:
            await self._json(
                send, 409, {"errors": [coded("an operation with that id is running", "CONFLICT")]}
            )
            return
        await self._run(stream, op_id, params)
        await _answer(send, 202, [], b"")

    async def _delete(self, token: str | None, query: dict[str, str], send: Send) -> None:
        reservation = self._reservation(token)
        op_id = query.get("operationId")
        if not op_id:
            raise BadUserInput("operationId is missing")
        if reservation.stream is not None:
            await reservation.stream.peer.stop(op_id)
        await _answer(send, 200, [], b"")

    # -- streams -----------------------------------------------------------------------------

    async def _authenticate(
        self, scope: Scope, send: Send, framing: Framing | None
    ) -> tuple[bool, User | None, Handshake | None]:
        """(True, the caller, what it presented), or (False, None, None) once it has been refused
        (the answer is sent)."""
        handshake = Handshake.from_asgi(scope.get("headers"), None, client_address(scope), "http")
        try:
            user = await self.services.authenticator.authenticate(handshake)
            if user is None and not self.services.settings.allow_anonymous:
                raise Unauthenticated("authentication required: a bearer token, or the app's session")
        except SwitchboardError as exc:
            if framing is None:
                await self._json(send, _status_of(exc), {"errors": [coded(str(exc), exc.code)]})
            else:
                await self._refuse(send, framing, exc)
            return False, None, None
        return True, user, handshake

    def _refusal(self, owner: str, *, owned: int = 0) -> SwitchboardError | None:
        settings = self.services.settings
        self._expire_reservations()
        if self._stopping:
            return Unavailable("server shutting down: try again")
        if len(self.streams) + len(self.reservations) - owned >= settings.max_streams:
            return Unavailable("server is at its stream limit: try again later")
        if self.owners[owner] - owned >= settings.max_streams_per_user:
            return RateLimited(f"at most {settings.max_streams_per_user} streams per user")
        return None

    async def _open(
        self,
        scope: Scope,
        send: Send,
        framing: Framing,
        user: User | None,
        handshake: Handshake | None,
        *,
        distinct: bool,
        last_event_id: dict[str, str] | None = None,
        owned: bool = False,
    ) -> HttpStream | None:
        """A stream with its session, its response started; None if refused (answered)."""
        owner = _owner(user, scope)
        refusal = self._refusal(owner, owned=1 if owned else 0)
        if refusal is not None:
            self.refused += 1
            await self._refuse(send, framing, refusal)
            return None
        stream = HttpStream(self, scope, send, framing, user, distinct=distinct, last_event_id=last_event_id)
        stream.peer.handshake = handshake
        try:
            # Multipart has no event ids: positions go as ResumeEvents, as on a WebSocket.
            resume = last_event_id if framing.multipart else None
            session = await stream.peer.open(user, lambda: True, resume)
        except SwitchboardError as exc:
            await self._refuse(send, framing, exc)
            return None
        self.streams.add(stream)
        if not owned:
            self.owners[owner] += 1
        headers = [
            (b"content-type", framing.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
            (b"x-switchboard-session", session.id.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if framing.start:
            await send({"type": "http.response.body", "body": framing.start, "more_body": True})
        return stream

    def _close(self, stream: HttpStream) -> None:
        self.streams.discard(stream)
        owner = stream.owner
        self.owners[owner] -= 1
        if self.owners[owner] <= 0:
            del self.owners[owner]

    async def _refuse(self, send: Send, framing: Framing, exc: SwitchboardError) -> None:
        """Answer a stream that will not run: over SSE a `next` with the error then `complete`,
        or, for a refusal that may pass (limits, unavailable), a `retry` hint and the end (the
        client reconnects); a JSON body for multipart."""
        errors = [coded(str(exc), exc.code)]
        count_errors(self.services.stats, errors)
        passing = isinstance(exc, RateLimited | Unavailable)
        if framing.multipart:  # as a query's refusal: 200 and errors, unless it may pass
            await self._json(send, _status_of(exc) if passing else 200, {"errors": errors})
            return
        body = (retry_field(RETRY_MS) if passing else "") + framing.result(
            "", orjson.dumps({"errors": errors}).decode()
        )
        if not passing:
            body += framing.complete("")
        headers = [(b"content-type", framing.content_type), (b"cache-control", b"no-cache")]
        await _answer(send, 200, headers, body.encode())

    async def _json(self, send: Send, status: int, body: dict[str, Any]) -> None:
        count_errors(self.services.stats, body.get("errors") or ())
        await _json(send, status, body)

    def _expire_reservations(self) -> None:
        now = time.monotonic()
        for token, reservation in list(self.reservations.items()):
            if reservation.stream is None and now - reservation.made_at > RESERVATION_TTL:
                del self.reservations[token]
                self.owners[reservation.owner] -= 1
                if self.owners[reservation.owner] <= 0:
                    del self.owners[reservation.owner]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.streams.start()

    async def stop(self, grace: float = 3.0) -> None:
        """End every stream (SSE clients reconnect, to another server, and resume)."""
        self._stopping = True
        await self.streams.end_all(lambda stream: stream.finish("server shutting down"), grace)


def _owner(user: User | None, scope: Scope) -> str:
    return user.id if user is not None else f"@{client_address(scope)}"


def _status_of(exc: SwitchboardError) -> int:
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, Unavailable):
        return 503
    if isinstance(exc, NotFound):
        return 404
    if exc.code == "PAYLOAD_TOO_LARGE":
        return 413
    return 400


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _answer(send, status, [(b"content-type", b"application/json")], orjson.dumps(body))
