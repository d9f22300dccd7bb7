"""WebSocket frames as the server sends them (RFC 6455 5.2: unmasked, one frame per message).

A subscription's event is (prefix, payload): the payload, rendered once per document, is encoded
once with the frame's closing brace (`tails`) and handed to every socket as the same bytes
object; a socket's own part is its frame header and operation id, a few dozen bytes."""

from __future__ import annotations

import struct

TEXT = 0x81  # FIN + text
TEXT_COMPRESSED = 0xC1  # FIN + RSV1 (permessage-deflate) + text

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def header(length: int, first: int = TEXT) -> bytes:
    """The header of a server frame of `length` payload bytes."""
    if length < 126:
        return _SHORT.pack(first, length)
    if length < 1 << 16:
        return _MEDIUM.pack(first, 126, length)
    return _LONG.pack(first, 127, length)


CACHED_TEXT = 64 * 1024
"""Payloads up to this size keep their encoded bytes for the sockets after the first."""
CACHE_BYTES = 8 * 1024 * 1024
CACHE_ENTRIES = 4096


class Tails:
    """The frame tails of recently sent payloads (UTF-8, with the closing brace), by identity:
    the engine hands every subscriber of a document the same str object, so its tail is made
    once, for the first socket that sends it. An entry holds its str, so an id cannot be reused
    while cached. Bounded in entries and bytes (emptied whole when full: the next fan-out fills
    it again)."""

    __slots__ = ("_bytes", "_entries")

    def __init__(self) -> None:
        self._entries: dict[int, tuple[str, bytes]] = {}
        self._bytes = 0

    def __call__(self, text: str) -> bytes:
        entry = self._entries.get(id(text))
        if entry is not None and entry[0] is text:
            return entry[1]
        data = (text + "}").encode()
        if len(data) <= CACHED_TEXT:
            if len(self._entries) >= CACHE_ENTRIES or self._bytes + len(data) > CACHE_BYTES:
                self._entries.clear()
                self._bytes = 0
            self._entries[id(text)] = (text, data)
            self._bytes += len(data)
        return data


tails = Tails()
