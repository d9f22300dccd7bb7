"""The two GraphQL WebSocket protocols' vocabulary: subprotocols, connection states, errors."""

from __future__ import annotations

import enum

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
SUBPROTOCOLS = (TRANSPORT_WS, LEGACY_WS)
MAX_OPERATION_ID = 128


class State(enum.Enum):
    """Where a connection is in its life; each message handler checks it first."""

    AWAITING_INIT = "awaiting connection_init"
    INITIALISING = "authenticating and joining groups"  # nothing may be sent before the ack
    READY = "acknowledged: operations run"
    CLOSING = "a close was sent, or the peer left"
