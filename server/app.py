"""The ASGI application: WebSocket /graphql to server.ws, everything else to Quart."""

from __future__ import annotations

import logging
from typing import Any, cast

import orjson
from quart import Quart, Response, send_from_directory

from server.context import Services
from server.control import SessionControl
from server.directory import RedisDirectory
from server.exceptions import Unavailable
from server.gc_pauses import GcPauses, freeze_start_up_objects
from server.inbox import Inbox
from server.layers import RedisLayer, make_layer
from server.logs import configure_logging
from server.metrics import CONTENT_TYPE, SwitchboardCollector, make_registry, render
from server.policy import Authorizer, load_note_policy
from server.presence import Presence, RedisPresenceStore
from server.publish import attach_server_layer
from server.settings import Settings
from server.view import STATIC, SwitchboardView
from server.worker_metrics import WorkerShare
from server.ws.api import GraphQLApi
from server.ws.asgi import ASGIApp, Receive, Scope, Send
from server.ws.endpoint import WebSocketEndpoint

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"


class Switchboard:
    """The app a server runs. `services` is the process's layer, sessions and handler registry."""

    def __init__(self, quart: Quart, services: Services, websockets: WebSocketEndpoint) -> None:
        self.quart = quart
        self._http: ASGIApp = cast(ASGIApp, quart)
        self.services = services
        self.websockets = websockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == GRAPHQL_PATH:
            await self.websockets(scope, receive, send)
        else:
            await self._http(scope, receive, send)


def create_app(settings: Settings | None = None, schema: Any = None) -> Switchboard:
    """A Switchboard app; settings default to the environment, schema to `schema.schema`."""
    settings = settings or Settings.from_env()
    if schema is None:
        from schema import schema as default_schema

        schema = default_schema
    api: GraphQLApi = schema
    configure_logging(settings)
    services = Services(
        settings=settings,
        layer=make_layer(settings),
        authorizer=Authorizer(load_note_policy(settings.note_policy)),
    )
    if isinstance(services.layer, RedisLayer):
        layer = services.layer
        directory = RedisDirectory(
            layer.client, layer.prefix, layer.process_id, heartbeat=settings.heartbeat_interval
        )
        services.control = SessionControl(services.sessions, directory)
        services.control.inbox = Inbox(layer, services.control.inbox_handlers())
        store = RedisPresenceStore(directory, layer.prefix)
        services.presence = store.presence = Presence(layer, store)
    websockets = WebSocketEndpoint(services, api)
    quart = Quart(__name__)
    quart.add_url_rule(
        GRAPHQL_PATH,
        view_func=SwitchboardView.as_view("graphql", schema=schema, services=services),
        methods=["GET", "POST"],
    )

    share = WorkerShare(settings.metrics_dir) if settings.metrics_dir else None
    gc_pauses = GcPauses()
    collector = SwitchboardCollector(services, websockets.connections, share)
    registry = make_registry(collector)

    @quart.before_serving
    async def start() -> None:
        await services.layer.ping()
        if isinstance(services.layer, RedisLayer):
            await services.layer.start()
        await services.control.directory.start()
        attach_server_layer(services.layer)
        websockets.start()
        frozen = freeze_start_up_objects()
        log.debug("froze %d start-up objects out of the garbage collector's way", frozen)
        gc_pauses.install()
        if share is not None:
            share.start(collector.snapshot)
        if settings.dev and settings.secret_is_default:
            log.warning("development mode with the development secret: do not expose this server")
        layer = "redis" if settings.redis_url else "in-memory"
        log.info("switchboard serving in %s mode on the %s layer", settings.mode, layer)

    @quart.after_serving
    async def stop() -> None:
        await websockets.stop()
        for session in services.sessions:
            await services.control.disconnected(session)
            await session.disconnect()
        if services.control.inbox is not None:
            await services.control.inbox.close()
        await services.control.directory.close()
        attach_server_layer(None)
        await services.layer.close()
        if share is not None:
            await share.stop(collector.snapshot())
        gc_pauses.remove()

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

    return Switchboard(quart, services, websockets)


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")
