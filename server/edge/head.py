"""The head of an HTTP/1.1 request, read far enough to tell a WebSocket upgrade from the rest."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

END = b"\r\n\r\n"
MAX_HEAD = 16 * 1024
"""A head not complete within this many bytes goes to hypercorn, which refuses it: the largest
h11 (so hypercorn and wsproto's handshake) takes by default."""


@dataclass(frozen=True, slots=True)
class Head:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  # names lower-cased, as ASGI has them

    @property
    def path(self) -> str:
        return unquote(self.target.partition(b"?")[0].decode("latin-1"))

    @property
    def raw_path(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def query_string(self) -> bytes:
        return self.target.partition(b"?")[2]

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    @property
    def upgrade(self) -> bool:
        """A WebSocket handshake: GET with `Upgrade: websocket` (wsproto checks the rest)."""
        tokens = (token.strip().lower() for value in self.values(b"upgrade") for token in value.split(b","))
        return self.method == b"GET" and b"websocket" in tokens


def parse(raw: bytes) -> Head | None:
    """The head of `raw` (which holds it whole, up to END), or None if it is not one."""
    lines = raw.split(END, 1)[0].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name.lower(), value.strip()))
    return Head(parts[0], parts[1], headers)
