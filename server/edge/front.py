"""The protocol of every accepted connection until its request head says what it is: a WebSocket
upgrade goes to the edge's own protocol (websocket.py), anything else to hypercorn, which is
handed the bytes read so far and the transport as if it had accepted the connection itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from switchboard.edge.head import END, MAX_HEAD, Head, parse

HEAD_TIMEOUT = 5.0
"""A connection whose head is not complete by then goes to hypercorn, whose timeouts apply (its
keep-alive timeout, 5 s, is what it would have given the connection itself)."""

Route = Callable[[Head | None], asyncio.Protocol]
"""The protocol for a connection: the edge's WebSocket for an upgrade head, else hypercorn's."""


class Front(asyncio.Protocol):
    __slots__ = ("_buffer", "_route", "_timer", "_transport")

    def __init__(self, route: Route) -> None:
        self._route = route
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self._hand_over, None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if len(buffer) >= 4 and not buffer.startswith(b"GET "):
            self._hand_over(None)  # only a GET upgrades: POSTs, other methods, HTTP/2 go on at once
        elif END in buffer:
            self._hand_over(parse(bytes(buffer)))
        elif len(buffer) > MAX_HEAD:
            self._hand_over(None)

    def eof_received(self) -> bool | None:
        # The client half-closed before its head was whole: hypercorn sees it as it would have.
        protocol = self._hand_over(None)
        return protocol.eof_received() if protocol is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _hand_over(self, head: Head | None) -> asyncio.Protocol | None:
        transport = self._transport
        if transport is None or transport.get_protocol() is not self:
            return None
        if self._timer is not None:
            self._timer.cancel()
        protocol = self._route(head if head is not None and head.upgrade else None)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        buffer, self._buffer = bytes(self._buffer), bytearray()
        if buffer:
            protocol.data_received(buffer)
        return protocol
