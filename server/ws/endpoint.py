"""The ASGI WebSocket endpoint: handshake checks, the live connections, and their liveness sweep."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from switchboard import close_codes
from switchboard.security.origins import OriginPolicy
from switchboard.services import Services
from switchboard.ws.api import GraphQLApi
from switchboard.ws.asgi_types import Receive, Scope, Send
from switchboard.ws.connection import Connection
from switchboard.ws.protocol import SUBPROTOCOLS
from switchboard.ws.render import DocumentCache, Renderer
from switchboard.ws.writer import FlushBatch

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 3.0


class WebSocketEndpoint:
    """Accepts GraphQL WebSocket connections and runs one Connection for each."""

    def __init__(self, services: Services, api: GraphQLApi) -> None:
        settings = services.settings
        self.services = services
        self.api = api
        self.documents = DocumentCache(
            api.graphql_schema,
            api.validation_rules(introspection=settings.introspection),
            api.limits.max_tokens,
        )
        self.renderer = Renderer(api)
        self.flush_batch = FlushBatch()  # every socket's writer, started together after a fan-out
        self.connections: set[Connection] = set()
        self.origins = OriginPolicy(
            settings.allowed_origins, allow_any=settings.dev and not settings.allowed_origins
        )
        self.refused = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._drained = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        # Nothing per-handshake stays in this frame: it lives as long as the connection.
        refused_origin = self.origins.refusal(scope)
        if refused_origin is not None:
            log.warning("refused a websocket from origin %r", refused_origin)
            self.refused += 1
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        subprotocol = next((p for p in scope.get("subprotocols") or () if p in SUBPROTOCOLS), None)
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        if subprotocol is None:
            await send(
                {
                    "type": "websocket.close",
                    "code": close_codes.SUBPROTOCOL_NOT_ACCEPTABLE,
                    "reason": "Subprotocol not acceptable",
                }
            )
            return
        if self._stopping or len(self.connections) >= self.services.settings.max_connections:
            self.refused += 1
            await send(
                {
                    "type": "websocket.close",
                    "code": close_codes.TRY_AGAIN_LATER,
                    "reason": "server is at its connection limit",
                }
            )
            return
        connection = Connection(self, scope, receive, send, subprotocol)
        self.connections.add(connection)
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)
            if not self.connections:
                self._drained.set()

    def start(self) -> None:
        """Start the liveness sweep (init timeouts, pings, stuck writers)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name="switchboard-ws-sweeper"
            )

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Close every connection with 1001 (going away) and wait, within `grace`, for them to end."""
        self._stopping = True
        self._drained.clear()
        for connection in list(self.connections):
            connection.close(close_codes.GOING_AWAY, "server shutting down")
        if self.connections:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        for connection in list(self.connections):
            connection.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        settings = self.services.settings
        tick = max(0.05, min(1.0, settings.init_timeout / 4, settings.ping_interval / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for connection in list(self.connections):
                try:
                    connection.check(now)
                except Exception:
                    log.exception("liveness check failed for session %s", connection.session_id)
