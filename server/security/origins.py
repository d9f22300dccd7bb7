"""The WebSocket Origin check (browsers apply no CORS to WebSocket handshakes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from switchboard.exceptions import ConfigurationError

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """`origin` as browsers send it (lowercase scheme and host, no default port); None if not one."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def normalize_allowed(origins: Iterable[str]) -> frozenset[str]:
    """The configured origins, normalized; ConfigurationError for anything that is not an origin."""
    allowed: set[str] = set()
    for origin in origins:
        if origin == "*":
            allowed.add(origin)
            continue
        normalized = normalize_origin(origin)
        parts = urlsplit(origin.strip())
        extra = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username
        if normalized is None or extra:
            raise ConfigurationError(f"{origin!r} is not an origin like https://example.com")
        allowed.add(normalized)
    return frozenset(allowed)


def is_same_origin(origin: str, host: str | None) -> bool:
    """Whether `origin` names the host and port the request was sent to (scheme aside, so TLS
    ended at a proxy still counts); a port left out is the default of the origin's scheme."""
    if not host:
        return False
    try:
        origin_parts = urlsplit(origin)
        host_parts = urlsplit(f"//{host.strip()}")
        default_port = DEFAULT_PORTS.get(origin_parts.scheme.lower())
        origin_port = origin_parts.port or default_port
        host_port = host_parts.port or default_port
    except ValueError:
        return False
    return (
        origin_parts.hostname is not None
        and origin_parts.hostname == host_parts.hostname
        and origin_port == host_port
    )


class OriginPolicy:
    """No Origin (not a browser) and same-origin always pass; others only if listed (or dev mode)."""

    def __init__(self, allowed: Iterable[str], *, allow_any: bool) -> None:
        self._allowed = normalize_allowed(allowed)
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
