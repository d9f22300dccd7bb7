"""A WebSocket message over SWITCHBOARD_MAX_MESSAGE_BYTES is refused from its frame header, before
its payload is read, under hypercorn and uvicorn, before and after connection_init: 1009 at once,
nothing buffered, and a bystander gets every event. Raw sockets, because no client library sends
a header announcing 300 MB and then stops."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Iterator

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.processes import ServerProcess, rss

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
LIMIT = 65536
MB = 1 << 20


@pytest.fixture(scope="module", params=["hypercorn", "uvicorn"])
def limited(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_MAX_MESSAGE_BYTES": str(LIMIT)}, server=request.param).start()
    yield server
    server.stop()


def header(length: int, *, fin: bool = True, opcode: int = 0x1) -> bytes:
    """A masked client frame header announcing `length` bytes of payload."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + os.urandom(4)


def masked(payload: bytes, *, fin: bool = True, opcode: int = 0x1) -> bytes:
    """A whole client frame: header, mask and masked payload."""
    head = header(len(payload), fin=fin, opcode=opcode)
    mask = head[-4:]
    return head + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    """A WebSocket handshake by hand, then whatever bytes the test writes."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def __aenter__(self) -> RawSocket:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: graphql-transport-ws\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        response = await self.reader.readuntil(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101"), response
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    def init(self, user: str) -> None:
        payload = (
            f'{{"type":"connection_init","payload":{{"authorization":"Bearer {token(user)}"}}}}'.encode()
        )
        mask = os.urandom(4)
        self.writer.write(
            header(len(payload))[:-4] + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def close_code(self, within: float) -> int | None:
        """Read frames until a close frame (its code), or the end of the connection (None)."""
        async with asyncio.timeout(within):
            while True:
                try:
                    opcode, payload = await self.frame()
                except (asyncio.IncompleteReadError, ConnectionError):
                    return None
                if opcode == 0x8:
                    return int(struct.unpack("!H", payload[:2])[0])


async def go_on_sending(sock: RawSocket, size: int) -> int:
    """Write `size` more bytes of payload, as long as the server takes them; how many it took."""
    chunk, sent = b"\x00" * MB, 0
    try:
        while sent < size:
            sock.writer.write(chunk)
            await sock.writer.drain()
            sent += MB
    except ConnectionError:
        pass  # the server closed: the rest is never read
    return sent


@pytest.mark.parametrize(
    ("case", "authenticated"),
    [("one-frame", False), ("one-frame", True), ("fragments", False), ("fragments", True)],
)
async def test_a_message_over_the_limit_is_refused_from_its_header(
    limited: ServerProcess, case: str, authenticated: bool
) -> None:
    user = unique("u")
    async with WsClient(limited.ws_url, token(unique("by"))) as bystander_client:
        events = await bystander_client.events(["all"])
        before = rss(limited)
        socks = [RawSocket(limited) for _ in range(10)]
        for sock in socks:
            await sock.__aenter__()
            if authenticated:
                sock.init(user)
                assert b"connection_ack" in (await sock.frame())[1]
        if case == "one-frame":  # 300 MB announced in one header
            start = header(300 * MB)
        else:  # a message of 60 KiB fragments: the second passes 64 KiB
            start = masked(b"x" * 60 * 1024, fin=False) + header(60 * 1024, fin=False, opcode=0)
        started = time.monotonic()
        for sock in socks:  # the header and the first 60 KiB of what it announces, then listen
            sock.writer.write(start + b"\x00" * 60 * 1024)
        codes = await asyncio.gather(*(s.close_code(within=2.0) for s in socks))
        took = time.monotonic() - started
        # A client that goes on sending what it announced: nothing of it is kept.
        await asyncio.gather(*(go_on_sending(s, 32 * MB) for s in socks))
        for sock in socks:
            await sock.__aexit__(None, None, None)
        assert codes == [1009] * 10, codes
        assert took < 1.0, took
        assert rss(limited) - before < 20 * MB, (rss(limited) - before) / MB
        for i in range(5):  # the bystander got nothing late, and gets what comes next
            body = await http(
                limited.http_url, NOTIFY, token("svc-frames", publisher=True), g="all", m=f"m{i}"
            )
            assert (await events.next(1.0))["events"]["id"] == body["data"]["sendNotify"]["id"]


async def test_a_message_at_the_limit_is_read(limited: ServerProcess) -> None:
    """The limit is the limit: a message of exactly that many bytes is taken (and refused by the
    protocol for what it says, not for its size)."""
    async with RawSocket(limited) as sock:
        sock.init(unique("u"))
        payload = b'{"type":"ping","pad":"' + b"x" * (LIMIT - 24) + b'"}'
        assert len(payload) == LIMIT
        sock.writer.write(masked(payload))
        async with asyncio.timeout(3):
            while True:
                opcode, body = await sock.frame()
                assert opcode != 0x8, body  # not closed
                if b'"pong"' in body:
                    break
