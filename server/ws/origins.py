"""The WebSocket Origin check (browsers apply no CORS to WebSocket handshakes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from strawberry.http.websocket_origin import is_same_origin, normalize_allowed_origins, normalize_origin


class OriginPolicy:
    """No Origin (not a browser) and same-origin always pass; others only if listed (or dev mode)."""

    def __init__(self, allowed: Iterable[str], *, allow_any: bool) -> None:
        self._allowed = normalize_allowed_origins(tuple(allowed))
        self._allow_any = allow_any or "*" in self._allowed

    def refusal(self, scope: Mapping[str, Any]) -> str | None:
        """The Origin of a handshake this policy refuses, or None when it may connect."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        return None if self.allows(headers) else headers.get("origin", "")

    def allows(self, headers: dict[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None or self._allow_any:
            return True
        if headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, headers.get("host")):
            return True
        normalized = normalize_origin(origin)
        return normalized is not None and normalized in self._allowed
