"""WebSocket close codes Switchboard uses: graphql-transport-ws's own, then ours (documented in README)."""

NORMAL = 1000
GOING_AWAY = 1001  # server shutting down: reconnect elsewhere
BAD_REQUEST = 4400  # malformed message
UNAUTHORIZED = 4401  # subscribe before connection_ack
FORBIDDEN = 4403  # bad or expired token, or refused connection
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
CONNECTION_INIT_TIMEOUT = 4408
SUBSCRIBER_ALREADY_EXISTS = 4409
TOO_MANY_INIT_REQUESTS = 4429
INTERNAL_ERROR = 4500
# Ours. The graphql-ws reference client treats this as retryable, which is what we want.
SLOW_CONSUMER = 4008  # the session's outgoing queue overflowed: the client did not keep up
MESSAGE_TOO_BIG = 1009  # a message over SWITCHBOARD_MAX_MESSAGE_BYTES
TRY_AGAIN_LATER = 1013  # the process is at SWITCHBOARD_MAX_CONNECTIONS, or shutting down
