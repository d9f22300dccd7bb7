"""A WebSocket message over SWITCHBOARD_MAX_MESSAGE_BYTES is refused from its frame header, before
its payload is read, under hypercorn and uvicorn, before and after connection_init: 1009 at once,
nothing buffered, and a bystander gets every event. Frames by hand (tests/support/frames.py),
because no client library sends a header announcing 300 MB and then stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.frames import FramePeer
from tests.support.processes import ServerProcess, rss

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
LIMIT = 65536
MB = 1 << 20


@pytest.fixture(scope="module", params=["hypercorn", "uvicorn"])
def limited(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_MAX_MESSAGE_BYTES": str(LIMIT)}, server=request.param).start()
    yield server
    server.stop()


async def go_on_sending(peer: FramePeer, size: int, *, fragments: bool) -> int:
    """Write `size` more bytes, as long as the server takes them: the rest of the announced
    frame, or more 60 KiB fragments of the message; how many it took."""
    chunk, sent = b"\x00" * 60 * 1024, 0
    try:
        while sent < size:
            if fragments:
                peer.send_frame(chunk, opcode=0, fin=False)
            else:
                peer.writer.write(chunk)
            await peer.writer.drain()
            sent += len(chunk)
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
        peers = [FramePeer("127.0.0.1", limited.port) for _ in range(10)]
        for peer in peers:
            await peer.__aenter__()
            if authenticated:
                await peer.init(token(user))
        started = time.monotonic()
        for peer in peers:  # the header and the first 60 KiB of what it announces, then listen
            if case == "one-frame":  # 300 MB announced in one header
                peer.send_frame(b"\x00" * 60 * 1024, declared=300 * MB)
            else:  # a message of 60 KiB fragments: the second passes 64 KiB
                peer.send_frame(b"x" * 60 * 1024, fin=False)
                peer.send_frame(b"\x00" * 60 * 1024, opcode=0, fin=False)
        codes = await asyncio.gather(*(peer.close_code(timeout=2.0) for peer in peers))
        took = time.monotonic() - started
        # A client that goes on sending what it announced: nothing of it is kept.
        await asyncio.gather(*(go_on_sending(peer, 32 * MB, fragments=case == "fragments") for peer in peers))
        for peer in peers:
            await peer.__aexit__(None, None, None)
        assert codes == [1009] * 10, codes
        assert took < 1.0, took
        assert rss(limited) - before < 20 * MB, (rss(limited) - before) / MB
        for i in range(5):  # the bystander got nothing late, and gets what comes next
            body = await http(
                limited.http_url, NOTIFY, token("svc-frames", publisher=True), g="all", m=f"m{i}"
            )
            assert (await events.next(1.0))["events"]["id"] == body["data"]["sendNotify"]["id"]


async def test_a_message_at_the_limit_is_read(limited: ServerProcess) -> None:
    """The limit is the limit: a message of exactly that many bytes is taken (and answered)."""
    async with FramePeer("127.0.0.1", limited.port) as peer:
        await peer.init(token(unique("u")))
        payload = b'{"type":"ping","pad":"' + b"x" * (LIMIT - 24) + b'"}'
        assert len(payload) == LIMIT
        peer.send_frame(payload)
        _, message = await peer.message(timeout=3)  # raises if the server closes instead
        assert message["type"] == "pong"
