"""A WebSocket client at the frame level: it shows each frame's RSV1 bit and its bytes as they
came off the wire, and sends frames a library would refuse to (a compressed bomb).

Its handshake offers permessage-deflate exactly as Chromium does."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from switchboard.ws.deflate_blocks import TAIL

CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Frame:
    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes  # as on the wire (compressed when rsv1)

    def text(self) -> str:
        """The message text, inflated when the frame is compressed (no context takeover)."""
        if not self.rsv1:
            return self.payload.decode()
        inflater = zlib.decompressobj(-15)
        return (inflater.decompress(self.payload + TAIL) + inflater.flush()).decode()


class FramePeer:
    def __init__(
        self, host: str, port: int, offer: str | None = CHROMIUM_OFFER, local: str | None = None
    ) -> None:
        self.host, self.port, self.offer = host, port, offer
        self.local = local  # a source address (127.0.0.x: another "client address" on loopback)
        self.closed_with: int | None = None  # the close code still_open saw
        self.extensions: str | None = None
        self._inflater: zlib._Decompress | None = None  # while the server keeps its context
        self.last_text = ""  # of the last message `message` returned
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> FramePeer:
        local = (self.local, 0) if self.local else None
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /graphql HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: graphql-transport-ws",
        ]
        if self.offer:
            lines.append(f"Sec-WebSocket-Extensions: {self.offer}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status, *headers = head.decode("latin-1").split("\r\n")
        if " 101 " not in status:
            raise ConnectionError(status)
        for header in headers:
            name, _, value = header.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                self.extensions = value.strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not hasattr(self, "writer"):
            return  # never connected
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def close(self, code: int = 1000) -> int | None:
        """Close as a browser does: a close frame, then the server's close frame back."""
        self.send_frame(struct.pack("!H", code), opcode=8)
        await self.writer.drain()
        return await self.close_code()

    def send_frame(
        self,
        payload: bytes,
        *,
        opcode: int = 1,
        rsv1: bool = False,
        fin: bool = True,
        only: int | None = None,
        declared: int | None = None,
    ) -> None:
        """Send one masked frame; with `only`, just its header and first `only` bytes of payload
        (a peer that is refused mid-frame otherwise sees a reset, not the close frame); with
        `declared`, a header announcing that many bytes, of which `payload` is the start."""
        mask = os.urandom(4)
        head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
        size = len(payload) if declared is None else declared
        if size < 126:
            head.append(0x80 | size)
        elif size < 1 << 16:
            head.append(0x80 | 126)
            head += struct.pack("!H", size)
        else:
            head.append(0x80 | 127)
            head += struct.pack("!Q", size)
        if only is not None:
            payload = payload[:only]
        masked = (
            bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if len(payload) < 4096
            else _mask(payload, mask)
        )
        self.writer.write(bytes(head) + mask + masked)

    async def send(self, message: dict[str, Any]) -> None:
        self.send_frame(orjson.dumps(message))
        await self.writer.drain()

    async def frame(self, timeout: float = TIMEOUT) -> Frame:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size)
        return Frame(bool(first & 0x80), bool(first & 0x40), first & 0x0F, payload)

    def text(self, frame: Frame) -> str:
        """A frame's message, inflated as the answer says: when the server keeps its context, by
        one inflater across the connection's messages, as a browser does; else each on its own.
        Every compressed message must come through here, in order."""
        if not frame.rsv1 or "server_no_context_takeover" in (self.extensions or ""):
            return frame.text()
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        return self._inflater.decompress(frame.payload + TAIL).decode()

    async def message(self, timeout: float = TIMEOUT) -> tuple[Frame, dict[str, Any]]:  # noqa: ASYNC109
        """The next text frame and its message, answering pings on the way."""
        while True:
            frame = await self.frame(timeout)
            if frame.opcode == 8:
                raise ConnectionError(f"closed: {close_code(frame)}")
            if frame.opcode != 1:
                continue
            text = self.text(frame)
            message: dict[str, Any] = orjson.loads(text)
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            self.last_text = text
            return frame, message

    async def init(self, token: str | None = None) -> dict[str, Any]:
        await self.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"} if token else {}}
        )
        _, ack = await self.message()
        assert ack["type"] == "connection_ack", ack
        return ack

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:  # noqa: ASYNC109
        """Read until a close frame (its code) or the end of the stream (None)."""
        try:
            while True:
                frame = await self.frame(timeout)
                if frame.opcode == 8:
                    return close_code(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def still_open(self, seconds: float = 0.5) -> bool:
        """True when nothing (no close) arrives for `seconds`; a close's code goes to closed_with."""
        try:
            frame = await self.frame(seconds)
        except TimeoutError:
            return True
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        if frame.opcode == 8:
            self.closed_with = close_code(frame)
            return False
        return True


def close_code(frame: Frame) -> int | None:
    return struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None


def _mask(payload: bytes, mask: bytes) -> bytes:
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")


def deflate_bomb(inflated_size: int) -> bytes:
    """A raw-deflate message (no trailing sync marker) that inflates to `inflated_size` zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated_size >> 20)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]
