"""The ASGI WebSocket endpoint: handshake checks, the live connections, and their liveness sweep."""

from __future__ import annotations

import logging
from collections import Counter

from switchboard import close_codes
from switchboard.engine.asgi import Receive, Scope, Send, client_address
from switchboard.engine.carriers import Carriers
from switchboard.engine.delivery import Delivery
from switchboard.security.origins import OriginPolicy
from switchboard.security.ratelimit import BucketTable
from switchboard.services import Services
from switchboard.ws.connection import Connection
from switchboard.ws.protocol import SUBPROTOCOLS

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 3.0


class WebSocketEndpoint:
    """Accepts GraphQL WebSocket connections and runs one Connection for each."""

    def __init__(self, services: Services, delivery: Delivery) -> None:
        settings = services.settings
        self.services = services
        self.delivery = delivery
        tick = max(0.05, min(1.0, settings.init_timeout / 4, settings.ping_interval / 4))
        self.connections: Carriers[Connection] = Carriers(delivery, "switchboard-ws-sweeper", tick)
        self.origins = OriginPolicy(
            settings.allowed_origins, allow_any=settings.dev and not settings.allowed_origins
        )
        self.refused = 0
        # Before connection_init succeeds a socket is "pending": its own small budget, so sockets
        # that never authenticate cannot take the places of real users (MAX_CONNECTIONS counts
        # only connections past the ack).
        self.pending: Counter[str | None] = Counter()  # by peer address
        self.pending_total = 0
        self.per_user: Counter[str] = Counter()  # connections past connection_init, by user
        self.handshakes = BucketTable(settings.connect_rate, settings.connect_burst)
        self._stopping = False

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
        refusal = self._refusal(scope)
        if refusal is not None:
            self.refused += 1
            await send({"type": "websocket.close", "code": close_codes.TRY_AGAIN_LATER, "reason": refusal})
            return
        connection = Connection(self, scope, receive, send, subprotocol)
        self.connections.add(connection)
        self._pend(connection.peer.address, +1)
        try:
            await connection.serve()
        finally:
            if connection.pending:
                self._pend(connection.peer.address, -1)
            self._uncount(connection)
            self.connections.discard(connection)

    def _refusal(self, scope: Scope) -> str | None:
        """Why a new socket is turned away (1013), or None."""
        settings = self.services.settings
        address = client_address(scope)
        if self._stopping:
            return "server shutting down"
        if len(self.connections) - self.pending_total >= settings.max_connections:
            return "server is at its connection limit"
        if self.pending_total >= settings.max_pending_connections:
            return "too many connections waiting to authenticate"
        mine = self.pending[address]
        if mine >= settings.max_pending_per_address:
            return "too many unauthenticated connections from your address"
        if (
            self.pending_total * 2 >= settings.max_pending_connections
            and mine * 2 * len(self.pending) >= settings.max_pending_connections
        ):
            # Past half the budget, no address holds more than an even share of it: a few
            # addresses cannot fill it and lock every other browser out.
            return "too many unauthenticated connections from your address"
        if not self.handshakes.get(str(address)).take():
            return "too many connection attempts from your address"
        return None

    def _pend(self, address: str | None, change: int) -> None:
        self.pending_total += change
        self.pending[address] += change
        if self.pending[address] <= 0:
            del self.pending[address]

    def authenticated(self, connection: Connection) -> str | None:
        """Move a connection out of the pending budget; why not, if that would pass
        MAX_CONNECTIONS or its user's MAX_CONNECTIONS_PER_USER."""
        settings = self.services.settings
        if len(self.connections) - self.pending_total >= settings.max_connections:
            return "server is at its connection limit"
        user = connection.peer.context.user
        if user is not None:
            if self.per_user[user.id] >= settings.max_connections_per_user:
                return f"at most {settings.max_connections_per_user} connections per user"
            self.per_user[user.id] += 1
            connection.counted_user = user.id
        self._pend(connection.peer.address, -1)
        connection.pending = False
        return None

    def _uncount(self, connection: Connection) -> None:
        user_id = connection.counted_user
        if user_id is not None:
            self.per_user[user_id] -= 1
            if self.per_user[user_id] <= 0:
                del self.per_user[user_id]

    def start(self) -> None:
        """Start the liveness sweep (init timeouts, pings, stuck writers)."""
        self.connections.start()

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Close every connection with 1001 (going away) and wait, within `grace`, for them to end."""
        self._stopping = True
        await self.connections.end_all(
            lambda c: c.close(close_codes.GOING_AWAY, "server shutting down"), grace
        )
