"""What a client presented when it connected: the handshake's headers and the connection_init
payload. Authentication hooks receive it, and it is kept to ask the app again when the
credentials it gave expire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any


@dataclass(frozen=True, slots=True)
class Handshake:
    """A client's credentials as it presented them (header names lower case)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)  # the connection_init payload
    address: str | None = None
    transport: str = "websocket"  # or "http"

    @classmethod
    def from_asgi(
        cls, raw: Any, params: Mapping[str, Any] | None, address: str | None, transport: str
    ) -> Handshake:
        """From ASGI `headers` ((name, value) byte pairs); repeated headers joined with a comma,
        and repeated Cookie headers (HTTP/2 sends a cookie a header) with "; ", as one
        Cookie header carries them."""
        headers: dict[str, str] = {}
        for name, value in raw or ():
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            joiner = "; " if key == "cookie" else ", "
            headers[key] = f"{headers[key]}{joiner}{text}" if key in headers else text
        return cls(headers, dict(params or {}), address, transport)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def origin(self) -> str | None:
        return self.header("origin")

    @property
    def cookies(self) -> dict[str, str]:
        raw = self.header("cookie")
        if not raw:
            return {}
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}
