"""A raw graphql-transport-ws / graphql-ws peer on the `websockets` library, for protocol edge cases."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

TIMEOUT = 5.0


class RawPeer:
    """Sends exactly what a test says, and reports what came back and how the socket closed."""

    def __init__(
        self, url: str, subprotocol: str | None = "graphql-transport-ws", **connect_args: Any
    ) -> None:
        self.url = url
        self.subprotocols = [subprotocol] if subprotocol else None
        self.connect_args = connect_args
        self.ws: ClientConnection

    async def __aenter__(self) -> RawPeer:
        self.ws = await websockets.connect(self.url, subprotocols=self.subprotocols, **self.connect_args)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else orjson.dumps(message).decode())

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = orjson.loads(raw)
        return message

    async def recv_type(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next message of `kind`, skipping pings and keep-alives."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.recv(timeout)
                if message.get("type") == kind:
                    return message
                if message.get("type") == "ping":
                    await self.send({"type": "pong"})
                elif message.get("type") not in ("ka", "pong"):
                    raise AssertionError(f"expected {kind}, got {message}")

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.recv_type("connection_ack")

    async def closed_with(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:  # noqa: ASYNC109
        """Read until the server closes; return its close code and reason."""
        try:
            async with asyncio.timeout(timeout):
                async for _ in self.ws:
                    pass
        except websockets.ConnectionClosed:
            pass
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")


class StalledPeer:
    """A client that subscribes and then stops reading its socket (websockets' sans-I/O protocol
    over a blocking socket with a small receive buffer, so the server feels the push-back)."""

    def __init__(self, host: str, port: int, path: str = "/graphql") -> None:
        import socket

        from websockets.client import ClientProtocol
        from websockets.typing import Subprotocol
        from websockets.uri import parse_uri

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((host, port))
        self._pending: list[dict[str, Any]] = []
        self.protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{port}{path}"), subprotocols=[Subprotocol("graphql-transport-ws")]
        )
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self._events():
            self._read_some()
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def _events(self) -> list[Any]:
        return list(self.protocol.events_received())

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def _read_some(self) -> bool:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return bool(data)

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(orjson.dumps(message))
        self._flush()

    def recv(self) -> dict[str, Any]:
        """The next text message. One read can carry several frames: keep the ones not yet returned."""
        while not self._pending:
            for event in self._events():
                if getattr(event, "opcode", None) is not None and event.opcode.name == "TEXT":
                    self._pending.append(orjson.loads(event.data))
            if not self._pending:
                self._read_some()
        return self._pending.pop(0)

    def drain_until_closed(self, timeout: float = 30) -> tuple[int | None, int]:
        """Read everything the server sent; return (close code, number of text frames)."""
        import time

        deadline = time.monotonic() + timeout
        frames = 0
        while time.monotonic() < deadline and self.protocol.close_rcvd is None:
            try:
                if not self._read_some():
                    break
            except OSError:
                break
            frames += sum(1 for e in self._events() if e.opcode.name == "TEXT")
        rcvd = self.protocol.close_rcvd
        return (rcvd.code if rcvd else None), frames

    def close(self) -> None:
        self.sock.close()
