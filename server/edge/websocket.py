"""One WebSocket connection on the edge's own protocol: wsproto for the handshake and for what the
client sends, the ASGI interface for the app, and a direct path for the app's frames.

The app (switchboard.ws) sees an ordinary ASGI WebSocket, plus the scope extension
`switchboard.frames`, whose `sink` is this protocol: a writer that finds it hands its queued
frames to `write_frames` in one call, framed here without a task, a lock or an ASGI message
per frame, and written with one `writelines` (a shared payload is the same bytes object for
every socket). Close frames, pongs and the handshake still go through wsproto.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import Opcode, RsvBits
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from switchboard.edge.frames import TEXT, TEXT_COMPRESSED, header, tails
from switchboard.edge.head import END, Head, parse
from switchboard.engine.asgi import ASGIApp, Message
from switchboard.engine.writer import Frame
from switchboard.observability.stats import PROCESS
from switchboard.ws.deflate import SharedDeflate
from switchboard.ws.socket_writer import EXTENSION

log = logging.getLogger(__name__)

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
HIGH_WATER = 64 * 1024
"""Bytes in the transport's buffer past which the socket stops taking frames (pause_writing)."""
EARLY_BYTES = 64 * 1024
"""Bytes a client may send between its handshake and the answer (RFC 6455 has it wait)."""
INBOX = 16
"""Client messages waiting for the app past which the socket stops being read."""
CLOSE_TIMEOUT = 5.0
"""How long a close frame waits for the client's before the connection is dropped."""
NO_RSV = RsvBits(False, False, False)
ASGI = {"version": "3.0", "spec_version": "2.3"}  # one for every scope: nobody changes it
ABNORMAL = 1006


class WebSocketProtocol(asyncio.Protocol):
    """Serves one upgraded connection to `app`. The edge's Front makes it with the request head;
    a server that hands over the head as the first data (uvicorn) passes None."""

    __slots__ = (
        "_app",
        "_close_timer",
        "_deflate",
        "_disconnect",
        "_drain_waiters",
        "_early",
        "_extension_factory",
        "_gone",
        "_handshake",
        "_head",
        "_inbox",
        "_own_bytes",
        "_own_text",
        "_parts",
        "_paused",
        "_reading_paused",
        "_request",
        "_root_path",
        "_track",
        "_transport",
        "_waiter",
        "_ws",
    )

    def __init__(
        self,
        app: ASGIApp,
        head: Head | None,
        extension: Callable[[], Extension],
        track: Callable[[asyncio.Task[None]], None],
        root_path: str = "",
    ) -> None:
        self._app = app
        self._head: Head | None = head
        self._extension_factory = extension
        self._track = track
        self._root_path = root_path
        self._transport: asyncio.Transport | None = None
        self._handshake: H11Handshake | None = H11Handshake(ConnectionType.SERVER)
        self._request: Request | None = None
        self._ws: Connection | None = None
        self._deflate: SharedDeflate | None = None  # Switchboard's deflate, if negotiated
        self._own_text = ""  # the last subscription prefix sent, and its bytes
        self._own_bytes = b""
        self._inbox: list[Message] = []  # a list: at most INBOX short-lived entries, and 56 bytes idle
        self._parts: list[Any] = []  # fragments of the message arriving
        self._early = bytearray()  # what arrived between the request and its answer
        self._waiter: asyncio.Future[None] | None = None  # receive() waiting for the inbox
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._paused = False  # the transport's buffer is over HIGH_WATER
        self._reading_paused = False
        self._gone = False  # the connection is lost (or being closed): nothing more is written
        self._disconnect: Message | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # -- the transport's side ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._gone:
            return  # closed (wsproto would refuse it), or answered and being dropped
        if self._ws is not None:
            self._ws.receive_data(data)
            self._ws_events()
        elif self._request is None:
            # The head goes to wsproto's handshake, what follows it waits for the answer (wsproto
            # would keep it in h11, out of reach of the connection it makes).
            end = data.find(END)
            if end >= 0:
                self._early += data[end + len(END) :]
                data = data[: end + len(END)]
            if self._head is None and self._handshake is not None:
                self._head = parse(data)
            self._handshake_data(data)
        elif len(self._early) + len(data) <= EARLY_BYTES:
            self._early += data  # sent before the handshake was answered: read once it is
        else:
            self._reply_and_close(BAD_REQUEST)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._ended(ABNORMAL)
        self._resume_writers(ConnectionResetError("the connection is gone"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._resume_writers(None)

    # -- the sink (ws.socket_writer.FrameSink) -------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self._paused and not self._gone and self._ws is not None

    def write_frames(self, frames: Sequence[Frame]) -> None:
        """Frame and write `frames` together (one writelines); nothing once the socket is going."""
        transport = self._transport
        if self._gone or transport is None:
            return
        pieces: list[bytes] = []
        deflate = self._deflate
        for frame in frames:
            if isinstance(frame, str):
                data = frame.encode()
                first = TEXT
                if deflate is not None:
                    rsv, data = deflate.frame_outbound(None, Opcode.TEXT, NO_RSV, data, True)  # type: ignore[arg-type]
                    first = TEXT_COMPRESSED if rsv.rsv1 else TEXT
                pieces.append(header(len(data), first))
                pieces.append(data)
                continue
            own = self._own(frame[0])
            tail = tails(frame[1])  # the payload and its closing brace: one object for every socket
            compressed = deflate.compress_parts(own, tail) if deflate is not None else None
            if compressed is not None:
                pieces.append(header(len(compressed), TEXT_COMPRESSED))
                pieces.append(compressed)
            else:
                pieces.append(header(len(own) + len(tail)) + own)
                pieces.append(tail)
        transport.writelines(pieces)
        PROCESS.ws_edge_frames += len(frames)
        PROCESS.ws_edge_writes += 1

    def _own(self, prefix: str) -> bytes:
        """A subscription's own bytes (its id in the envelope), encoded once while it sends."""
        if prefix is not self._own_text:
            self._own_text = prefix
            self._own_bytes = prefix.encode()
        return self._own_bytes

    async def drained(self) -> None:
        """Return once the socket takes frames again; ConnectionResetError if it is gone."""
        if self._gone:
            raise ConnectionResetError("the connection is gone")
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _resume_writers(self, error: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    # -- the app's side (ASGI) -----------------------------------------------------------------

    async def receive(self) -> Message:
        while not self._inbox:
            if self._disconnect is not None:
                return self._disconnect
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._inbox.pop(0)
        if self._reading_paused and len(self._inbox) < INBOX // 2 and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self._ws is None or self._gone:
                raise ConnectionResetError("the websocket is not open")
            text = message.get("text")
            if text is not None:
                self.write_frames([text])
            else:
                self._write_bytes(message["bytes"])
            await self.drained()
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._close(int(message.get("code") or 1000), str(message.get("reason") or ""))
        else:
            raise ValueError(f"unexpected ASGI message {kind!r}")

    def _write_bytes(self, data: bytes) -> None:
        assert self._ws is not None and self._transport is not None
        if self._ws.state is not ConnectionState.OPEN:
            raise ConnectionResetError("the websocket is closing")
        self._transport.write(self._ws.send(BytesMessage(data=data)))

    # -- handshake -----------------------------------------------------------------------------

    def _handshake_data(self, data: bytes) -> None:
        handshake = self._handshake
        assert handshake is not None
        try:
            handshake.receive_data(data)
            for event in handshake.events():
                if isinstance(event, Request):
                    self._request = event
                    self._start_app(event)
                    return
        except RemoteProtocolError as exc:
            log.debug("bad websocket handshake: %s", exc)
            self._reply_and_close(handshake.send(exc.event_hint or RejectConnection(status_code=400)))

    def _start_app(self, request: Request) -> None:
        transport, head = self._transport, self._head
        if transport is None or head is None:
            self._reply_and_close(BAD_REQUEST)
            return
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": ASGI,
            "http_version": "1.1",
            "scheme": "wss" if transport.get_extra_info("sslcontext") is not None else "ws",
            "path": head.path,
            "raw_path": head.raw_path,
            "query_string": head.query_string,
            "root_path": self._root_path,
            "headers": head.headers,
            "client": _address(transport.get_extra_info("peername")),
            "server": _address(transport.get_extra_info("sockname")),
            "subprotocols": request.subprotocols,
            "extensions": {EXTENSION: {"sink": self}},
        }
        self._inbox.append({"type": "websocket.connect"})
        task = asyncio.get_running_loop().create_task(self._run(scope), name="switchboard-websocket")
        self._track(task)

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._app(scope, self.receive, self.send)
        except Exception:
            log.exception("the app failed on a websocket")
        finally:
            if self._handshake is not None and not self._gone:
                self._reply_and_close(self._handshake.send(RejectConnection(status_code=500)))
            elif not self._gone:
                self._close(1000, "")

    def _accept(self, message: Message) -> None:
        handshake = self._handshake
        if handshake is None or self._gone or self._transport is None:
            return
        extension = self._extension_factory()
        headers = [(bytes(k), bytes(v)) for k, v in message.get("headers") or ()]
        self._transport.write(
            handshake.send(
                AcceptConnection(
                    subprotocol=message.get("subprotocol"), extensions=[extension], extra_headers=headers
                )
            )
        )
        ws = self._ws = handshake.connection
        assert ws is not None  # made by the accept
        if extension.enabled():
            # The edge's extensions are ws.deflate's (extension_factory): a subscription's frame
            # is compressed from its parts (compress_parts).
            assert isinstance(extension, SharedDeflate)
            self._deflate = extension
        # What the handshake needed is let go: an open socket keeps wsproto's Connection and this.
        self._handshake = self._request = self._head = None
        # What came with the request (wsproto's Connection has read it) or after it, unanswered.
        early, self._early = bytes(self._early), bytearray()
        if early:
            ws.receive_data(early)
            self._ws_events()

    def _close(self, code: int, reason: str) -> None:
        """The app closes: 403 before the handshake is answered, else a close frame."""
        if self._gone:
            return
        if self._handshake is not None:
            self._reply_and_close(self._handshake.send(RejectConnection(status_code=403)))
            return
        assert self._ws is not None
        if self._ws.state is not ConnectionState.OPEN:
            return
        assert self._transport is not None
        self._transport.write(self._ws.send(CloseConnection(code=code, reason=reason)))
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._drop)

    def cut(self) -> None:
        """The server stops and this connection is still open (the app's drain closed every
        socket it serves with 1001 before): a handshake not answered yet gets 503, an open
        socket 1012 (service restart), and the connection is dropped."""
        if self._handshake is not None:
            self._reply_and_close(self._handshake.send(RejectConnection(status_code=503)))
            return
        self._close(1012, "server restarting")
        self._drop()

    def _reply_and_close(self, data: bytes) -> None:
        if self._transport is not None and not self._gone:
            self._transport.write(data)
            self._transport.close()
        self._gone = True
        self._ended(ABNORMAL)

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- what the client sends -----------------------------------------------------------------

    def _ws_events(self) -> None:
        ws = self._ws
        assert ws is not None and self._transport is not None
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(event, TextMessage):
                        self._deliver({"type": "websocket.receive", "text": "".join(parts)})
                    else:
                        self._deliver({"type": "websocket.receive", "bytes": b"".join(parts)})
            elif isinstance(event, Ping) and ws.state is ConnectionState.OPEN:
                self._transport.write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    # The client's close, or one wsproto made of a frame it refused (1009, 1002,
                    # 1007: compat/ws_frame_limit.py): answered with the same code, then dropped.
                    self._transport.write(ws.send(event.response()))
                self._gone = True
                self._transport.close()
                self._ended(event.code)
                return

    def _deliver(self, message: Message) -> None:
        self._inbox.append(message)
        if len(self._inbox) >= INBOX and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake()

    def _ended(self, code: int) -> None:
        if self._disconnect is None:
            self._disconnect = {"type": "websocket.disconnect", "code": code}
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
