"""The ASGI application: WebSocket /graphql to switchboard.ws, everything else to Quart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import orjson
from quart import Quart, Response, send_from_directory

from switchboard.engine.api import GraphQLApi
from switchboard.engine.asgi import ASGIApp, Receive, Scope, Send, client_address
from switchboard.engine.delivery import Delivery
from switchboard.exceptions import Unavailable
from switchboard.observability.loop_lag import LoopLag
from switchboard.observability.worker_metrics import WorkerShare
from switchboard.publish import attach_server_layer, detach_server_layer
from switchboard.security.proxies import TrustedProxies
from switchboard.security.ratelimit import BucketTable
from switchboard.services import Services, build_services
from switchboard.settings import Settings
from switchboard.streams.endpoint import StreamEndpoint
from switchboard.web.cors import Answer, Cors
from switchboard.web.metrics import CONTENT_TYPE, SwitchboardCollector, make_registry, render
from switchboard.web.view import STATIC, SwitchboardView
from switchboard.ws.endpoint import WebSocketEndpoint

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
REQUEST_COST_BYTES = 4096
"""A request to /graphql costs one token of the address's HTTP budget, and one more per this many
bytes of body or query string."""
TOO_MANY_HEADERS = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
TOO_MANY_BODY = orjson.dumps(
    {
        "data": None,
        "errors": [{"message": "too many requests: slow down", "extensions": {"code": "RATE_LIMITED"}}],
    }
)


class Switchboard:
    """The app a server runs. `services` is the process's layer, sessions and handler registry."""

    def __init__(
        self, quart: Quart, services: Services, websockets: WebSocketEndpoint, streams: StreamEndpoint
    ) -> None:
        self.quart = quart
        self._http: ASGIApp = cast(ASGIApp, quart)
        self.services = services
        self.websockets = websockets
        self.streams = streams
        settings = services.settings
        # Before Quart, authentication or the body: a request over its address's budget costs
        # a few microseconds, so one client in a loop cannot take the CPU from everyone else.
        self._requests = BucketTable(settings.http_rate, settings.http_burst)
        self._cors = Cors(websockets.origins)  # the same allowlist as WebSocket handshakes
        self._proxies = TrustedProxies(settings.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = self._proxies.resolve(scope)  # the browser behind a trusted proxy, if any
        if scope["type"] == "websocket" and scope["path"] == GRAPHQL_PATH:
            await self.websockets(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == GRAPHQL_PATH:
            if not self._admit(scope):
                await _answer(send, (429, TOO_MANY_HEADERS, TOO_MANY_BODY))
                return
            decided = self._cors.decide(scope, send)
            if isinstance(decided, tuple):
                await _answer(send, decided)
            elif StreamEndpoint.takes(scope):
                await self.streams(scope, receive, decided)
            else:
                await self._http(scope, receive, decided)
        else:
            await self._http(scope, receive, send)

    async def drain(self) -> None:
        """The server is stopping (SIGTERM): close every WebSocket with 1001 and end every HTTP
        stream with its closing comment or boundary, within the grace, before the ASGI server
        cuts what is still open (a stream cut there is a truncated body to the browser)."""
        await asyncio.gather(self.websockets.stop(), self.streams.stop())

    def _admit(self, scope: Scope) -> bool:
        """Whether the address's budget holds this request. It is counted in bytes as well as in
        requests: one request, plus one per whole REQUEST_COST_BYTES it sends (by Content-Length,
        or the largest body allowed when it sends none), so that large documents, which cost
        their parse, come at a proportionally slower rate."""
        return self._requests.get(str(client_address(scope))).take(self._cost(scope))

    def _cost(self, scope: Scope) -> float:
        limit = self.services.settings.max_request_bytes
        size = len(scope.get("query_string", b""))
        if scope["method"] in ("POST", "PUT"):
            length = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"), None)
            try:
                size += int(length) if length is not None else limit
            except ValueError:
                size += limit
        # A body over the limit is refused (413) unread: it costs no more than the largest allowed.
        return 1.0 + min(size, limit) // REQUEST_COST_BYTES


async def _answer(send: Send, answer: Answer) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None, schema: Any = None) -> Switchboard:
    """A Switchboard app; settings default to the environment, schema to the built-in one.

    Leaves the process alone (logging, the garbage collector): that is the job of whatever
    runs the process (`switchboard serve`, or `switchboard.web.asgi` for an ASGI server)."""
    settings = settings or Settings.from_env()
    if schema is None:
        from switchboard.schema import schema as default_schema

        schema = default_schema
    api: GraphQLApi = schema
    services = build_services(settings)
    delivery = Delivery(settings, api, services.stats)  # the engine's shared parts; the transports adapt it
    websockets = WebSocketEndpoint(services, delivery)
    streams = StreamEndpoint(services, delivery)
    quart = Quart(__name__)
    # Bodies past this are refused (413) before they are read: nothing parses a 2 MB query.
    quart.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    quart.add_url_rule(
        GRAPHQL_PATH,
        view_func=SwitchboardView.as_view("graphql", schema=schema, services=services),
        methods=["GET", "POST"],
    )

    share = WorkerShare(settings.metrics_dir) if settings.metrics_dir else None
    collector = SwitchboardCollector(services, websockets.connections, share, streams.streams)
    registry = make_registry(collector)
    loop_lag = LoopLag()

    @quart.before_serving
    async def start() -> None:
        await services.layer.ping()
        await services.layer.start()
        await services.control.start()
        attach_server_layer(services.layer)
        websockets.start()
        streams.start()
        loop_lag.start()
        if share is not None:
            share.start(collector.snapshot)
        if settings.dev and settings.secret_is_default:
            log.warning("development mode with the development secret: do not expose this server")
        layer = "redis" if settings.redis_url else "in-memory"
        log.info("switchboard serving in %s mode on the %s layer", settings.mode, layer)

    @quart.after_serving
    async def stop() -> None:
        await loop_lag.stop()
        await asyncio.gather(websockets.stop(), streams.stop())
        for session in services.sessions:
            await services.control.disconnected(session)
            await session.disconnect()
        await services.control.close()
        await services.authenticator.close()  # the app hooks' HTTP clients
        await services.authorizer.close()
        detach_server_layer(services.layer)
        await services.layer.close()
        if share is not None:
            await share.stop(collector.snapshot())

    @quart.get("/metrics")
    async def metrics() -> Response:
        return Response(render(registry), content_type=CONTENT_TYPE)

    if settings.dev:

        @quart.get("/demo")
        async def demo() -> Response:
            return await send_from_directory(STATIC, "demo.html")

    @quart.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @quart.get("/readyz")
    async def readyz() -> Response:
        try:
            await services.layer.ping()
        except Unavailable as exc:
            return _json({"status": "unavailable", "detail": str(exc)}, status=503)
        return _json({"status": "ok", "sessions": len(services.sessions)})

    return Switchboard(quart, services, websockets, streams)


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")
