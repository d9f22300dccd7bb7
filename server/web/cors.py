"""CORS for /graphql over HTTP, from the same allowlist as WebSocket origins
(SWITCHBOARD_ALLOWED_ORIGINS): a page on the app's origin may call queries and mutations with its
cookies or a token when Switchboard has an origin of its own.

- A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin: 204 with the
  allowed methods and headers, cached 10 minutes; from any other origin: 403, no CORS headers.
- Requests from an allowed origin get Access-Control-Allow-Origin (that origin, never `*`) and
  Access-Control-Allow-Credentials.
- A request whose Origin is neither allowed nor the server's own is refused with 403 before
  anything reads it: a cookie-authenticated mutation cannot be sent from another site's form.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from switchboard.engine.asgi import Scope, Send
from switchboard.security.origins import OriginPolicy

ALLOW_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"  # PUT, DELETE: graphql-sse reservations
ALLOW_HEADERS = b"authorization, content-type, accept, last-event-id, x-graphql-event-stream-token"
MAX_AGE = b"600"
FORBIDDEN_BODY = (
    b'{"data":null,"errors":[{"message":"this origin may not call /graphql",'
    b'"extensions":{"code":"FORBIDDEN"}}]}'
)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""(status, headers, body) given instead of the app's."""


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


class Cors:
    def __init__(self, origins: OriginPolicy) -> None:
        self._origins = origins

    def decide(self, scope: Scope, send: Send) -> Send | Answer:
        """The `send` the app answers through (with CORS headers added where they belong), or
        the answer to give without the app (a preflight, or a refused origin)."""
        headers = _headers(scope)
        origin = headers.get("origin")
        if origin is None:
            return send  # not a browser's cross-origin call: nothing to add
        if not self._origins.allows(headers):
            return (403, [(b"content-type", b"application/json")], FORBIDDEN_BODY)
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            preflight = [
                *cors,
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
            ]
            return (204, preflight, b"")

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
            await send(message)

        return send_with_cors
