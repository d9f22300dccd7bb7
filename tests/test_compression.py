"""permessage-deflate as browsers meet it: declined by default, shared and context-free when on,
and never inflated past the message limit. Clients offer it exactly as Chromium does."""

from __future__ import annotations

import asyncio
import struct
import uuid
import zlib
from collections.abc import Iterator

import httpx
import orjson
import pytest

from switchboard.ws.deflate_blocks import back_reference
from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.frames import FramePeer, deflate_bomb
from tests.support.processes import ServerProcess, rss

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
EVENTS = "subscription { events { __typename ... on NotifyEvent { group message } } }"
ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
BOMB_BYTES = 200 << 20  # what one attacker's frame inflates to (~200 KB on the wire)
SMALL_BOMB_BYTES = 48 << 20  # ~48 KB on the wire: under the 64 KiB message limit
MAX_RSS_GROWTH = 8 << 20


@pytest.fixture(scope="module")
def compressing(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_WS_COMPRESSION": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def compressing_uvicorn(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_WS_COMPRESSION": "1"}, server="uvicorn").start()
    yield server
    server.stop()


async def publish(server: ServerProcess, group: str, message: str) -> None:
    body = await http(server.http_url, NOTIFY, token=token("svc", publisher=True), g=group, m=message)
    assert "errors" not in body, body


def reused_compressions(server: ServerProcess) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("switchboard_ws_compression_reused_total"))
    return float(line.split()[-1])


@pytest.mark.parametrize("name", ["memory_server", "uvicorn_server"])
async def test_deflate_offers_are_declined_by_default(request: pytest.FixtureRequest, name: str) -> None:
    server: ServerProcess = request.getfixturevalue(name)
    user = unique("u")
    async with FramePeer("127.0.0.1", server.port) as peer:
        assert peer.extensions is None  # Chromium's offer, answered with nothing
        await peer.init(token(user))
        await peer.send({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.2)
        await publish(server, f"user_{user}", "x" * 2000)
        frame, message = await peer.message()
        assert not frame.rsv1 and message["payload"]["data"]["events"]["message"] == "x" * 2000


@pytest.mark.parametrize("name", ["compressing", "compressing_uvicorn"])
@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate; client_max_window_bits", ANSWER),  # Chromium
        ("permessage-deflate", ANSWER),  # Firefox, Safari
        ("permessage-deflate; server_max_window_bits=10", f"{ANSWER}; server_max_window_bits=10"),
        ("permessage-deflate; unknown_parameter", None),
    ],
)
async def test_compression_on_answers_without_context_takeover(
    request: pytest.FixtureRequest, name: str, offer: str, answer: str | None
) -> None:
    server: ServerProcess = request.getfixturevalue(name)
    user = unique("u")
    async with FramePeer("127.0.0.1", server.port, offer=offer) as peer:
        assert peer.extensions == answer
        await peer.init(token(user))
        await peer.send({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.2)
        await publish(server, f"user_{user}", "y" * 3000)
        frame, message = await peer.message()
        assert frame.rsv1 == (answer is not None)
        assert message["payload"]["data"]["events"]["message"] == "y" * 3000


async def test_subscribers_of_one_document_share_one_compression_of_each_event(
    compressing: ServerProcess,
) -> None:
    # Each operation named as graphql-ws names it (so Apollo Client and urql): a UUID, which makes
    # every socket's frame different bytes before the payload.
    ids = [str(uuid.uuid4()) for _ in range(3)]
    peers = [FramePeer("127.0.0.1", compressing.port) for _ in ids]
    try:
        for peer, op_id in zip(peers, ids, strict=True):
            await peer.__aenter__()
            await peer.init(token(unique("u")))
            await peer.send({"id": op_id, "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.3)
        before = reused_compressions(compressing)
        long_message = "the same long message " * 40
        await publish(compressing, "all", long_message)
        received = [await peer.message() for peer in peers]
        assert all(frame.rsv1 for frame, _ in received)
        assert all(m["payload"]["data"]["events"]["message"] == long_message for _, m in received)
        shared = set()
        for (frame, _), op_id in zip(received, ids, strict=True):
            # The socket's own bytes, as they are (a stored deflate block), then the shared part.
            prefix = b'{"id":"' + op_id.encode() + b'","type":"next","payload":'
            assert frame.payload[:5] == b"\x00" + struct.pack("<HH", len(prefix), len(prefix) ^ 0xFFFF)
            assert frame.payload[5 : 5 + len(prefix)] == prefix
            shared.add(frame.payload[5 + len(prefix) :])
        assert len(shared) == 1  # byte for byte
        assert len(shared.pop()) < len(long_message) / 3
        # Compressed once: the other sockets reused it.
        assert reused_compressions(compressing) - before >= len(peers) - 1

        await publish(compressing, "all", "short")  # under SWITCHBOARD_WS_COMPRESSION_MIN_BYTES
        for peer in peers:
            frame, message = await peer.message()
            assert not frame.rsv1 and message["payload"]["data"]["events"]["message"] == "short"
    finally:
        for peer in peers:
            await peer.__aexit__()


async def test_a_client_that_offers_no_deflate_gets_plain_frames(compressing: ServerProcess) -> None:
    user = unique("u")
    async with FramePeer("127.0.0.1", compressing.port, offer=None) as peer:
        assert peer.extensions is None
        await peer.init(token(user))
        await peer.send({"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.2)
        await publish(compressing, f"user_{user}", "w" * 3000)
        frame, message = await peer.message()
        assert not frame.rsv1 and message["payload"]["data"]["events"]["message"] == "w" * 3000


@pytest.mark.parametrize(
    ("name", "inflated", "expected"),
    [
        ("memory_server", BOMB_BYTES, 1009),
        ("compressing", BOMB_BYTES, 1009),
        ("memory_server", SMALL_BOMB_BYTES, 1002),
        ("compressing", SMALL_BOMB_BYTES, 1009),
    ],
)
async def test_a_deflate_bomb_is_refused_and_costs_nothing(
    request: pytest.FixtureRequest, name: str, inflated: int, expected: int
) -> None:
    """Five connections each send a frame of ~200 KB that would inflate to 200 MB, two before
    connection_init and three after. Its header announces more than the message limit, so it is
    refused with 1009 before a byte is inflated, whether compression was declined (default) or
    negotiated (compat/ws_frame_limit.py). A bomb of ~50 KB, under the limit on the wire:
    declined, RSV1 is a protocol error (1002); negotiated, it is inflated no further than the
    limit, then closed with 1009 (both were dropped without a close frame before). The server stays
    small, and a bystander gets every event published meanwhile, in order."""
    bomb = deflate_bomb(inflated)
    assert (len(bomb) > 64 * 1024) is (inflated == BOMB_BYTES)
    server: ServerProcess = request.getfixturevalue(name)
    bystander_user = unique("b")
    async with WsClient(server.ws_url, token(bystander_user)) as bystander:
        events = await bystander.events([f"user_{bystander_user}"])
        await asyncio.sleep(0.2)
        baseline = rss(server)

        async def attack(index: int) -> int | None:
            async with FramePeer("127.0.0.1", server.port) as peer:
                if index >= 2:
                    await peer.init(token(unique("a")))
                # The frame declares all of the bomb; its first 64 KiB already inflate to ~64 MB.
                peer.send_frame(bomb, rsv1=True, only=64 * 1024)
                await peer.writer.drain()
                return await peer.close_code()

        async def publish_meanwhile() -> list[str]:
            sent = []
            for i in range(20):
                sent.append(f"during-{i}")
                await publish(server, f"user_{bystander_user}", sent[-1])
                await asyncio.sleep(0.02)
            return sent

        *codes, sent = await asyncio.gather(*(attack(i) for i in range(5)), publish_meanwhile())
        assert codes == [expected] * 5
        got = [(await events.next())["events"]["message"] for _ in sent]
        assert got == sent
        growth = rss(server) - baseline
        print(f"{name}: RSS grew {growth / 1e6:.2f} MB under the attack")
        assert growth < MAX_RSS_GROWTH, f"RSS grew {growth / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def windowed() -> Iterator[ServerProcess]:
    # Its test publishes 46 events one after another as one publisher, past the default burst of
    # 30 mutations (RATE_LIMITED once in a fresh-clone CI run): rate limits are tested elsewhere.
    env = {"SWITCHBOARD_WS_COMPRESSION": "window", "SWITCHBOARD_MUTATION_RATE": "1000"}
    server = ServerProcess(env).start()
    yield server
    server.stop()


def gauge(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    return float(next(x for x in text.splitlines() if x.startswith(f"{name} ")).split()[-1])


def benchmark_event(i: int) -> str:
    """A message the size of the benchmark's (its frames are ~270 bytes with a UUID)."""
    return f"event {i}: " + "x" * 150


@pytest.fixture(scope="module")
def windowed_uvicorn() -> Iterator[ServerProcess]:
    env = {"SWITCHBOARD_WS_COMPRESSION": "window", "SWITCHBOARD_MUTATION_RATE": "1000"}
    server = ServerProcess(env, server="uvicorn").start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", ["windowed", "windowed_uvicorn"])
async def test_window_mode_keeps_the_servers_context_for_a_fraction_of_the_bytes(
    request: pytest.FixtureRequest, name: str
) -> None:
    """SWITCHBOARD_WS_COMPRESSION=window: the answer keeps the server's context (no
    server_no_context_takeover), frames refer back to the ones before them, and a client
    inflating with one context across messages (as browsers do) reads every event, of its own
    user's as much as of everyone's; events of the benchmark's size cost under a third of their
    bytes on the wire. Under hypercorn and uvicorn alike."""
    windowed: ServerProcess = request.getfixturevalue(name)
    user = unique("u")
    async with FramePeer("127.0.0.1", windowed.port) as peer:
        assert peer.extensions == "permessage-deflate; client_no_context_takeover"
        await peer.init(token(user))
        await peer.send({"id": str(uuid.uuid4()), "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.2)
        sent = [benchmark_event(i) for i in range(30)]
        wire = raw = 0
        for i, message in enumerate(sent):
            await publish(windowed, f"user_{user}", message)
            frame, got = await peer.message()
            assert frame.rsv1
            assert got["payload"]["data"]["events"]["message"] == message
            if i:  # the first has nothing before it to refer to
                wire, raw = wire + len(frame.payload), raw + len(orjson.dumps(got))
        assert wire < raw / 3, (wire, raw)
        assert await peer.close() == 1000
    async with FramePeer(
        "127.0.0.1", windowed.port, offer="permessage-deflate; server_no_context_takeover"
    ) as peer:
        # A client that asks the server to keep no context gets the shared, context-free way.
        assert peer.extensions == ANSWER


async def test_window_mode_compresses_each_event_once_for_the_sockets_sent_the_same_ones(
    windowed: ServerProcess,
) -> None:
    """Three sockets (graphql-ws's UUID ids) are sent the same events: each frame is the socket's
    id as one back-reference to its previous frame, then deflate data that is byte for byte the
    same on every socket, compressed once. Each socket still reads every event with its own
    inflater, also after an event of its own user's that the others were not sent; and the
    contexts they held are let go when they close."""
    before = gauge(windowed, "switchboard_ws_compression_contexts")
    users = [unique("u") for _ in range(3)]
    ids = [str(uuid.uuid4()) for _ in users]
    peers = [FramePeer("127.0.0.1", windowed.port) for _ in users]
    try:
        for peer, user, op_id in zip(peers, users, ids, strict=True):
            await peer.__aenter__()
            await peer.init(token(user))
            await peer.send({"id": op_id, "type": "subscribe", "payload": {"query": EVENTS}})
        await asyncio.sleep(0.3)
        reused = reused_compressions(windowed)
        last_compressed = [0] * len(peers)  # bytes of each socket's previous compressed message
        for i in range(16):
            if i == 5:  # one socket is sent an event the others are not: its history parts
                await publish(windowed, f"user_{users[0]}", "only yours " * 20)
                frame, got = await peers[0].message()
                assert frame.rsv1 and got["payload"]["data"]["events"]["message"] == "only yours " * 20
                last_compressed[0] = len(peers[0].last_text.encode())
            await publish(windowed, "all", benchmark_event(i))
            shared = set()
            for n, peer in enumerate(peers):
                frame, got = await peer.message()
                assert frame.rsv1 and got["payload"]["data"]["events"]["message"] == benchmark_event(i)
                if i:  # the id (69 bytes) as a back-reference to the previous frame; its first as it is
                    own = back_reference(69, last_compressed[n])
                    assert frame.payload.startswith(own), (i, n)
                    shared.add(frame.payload[len(own) :])
                last_compressed[n] = len(peer.last_text.encode())
            if 0 < i < 5 or i >= 14:  # before they part, and once a window of common events has passed
                assert len(shared) == 1, i
        assert reused_compressions(windowed) - reused >= 2 * 6
        assert gauge(windowed, "switchboard_ws_compression_contexts") <= before + 3
        for peer in peers:
            assert await peer.close() == 1000
    finally:
        for peer in peers:
            await peer.__aexit__()
    for _ in range(50):
        if gauge(windowed, "switchboard_ws_compression_contexts") <= before:
            break
        await asyncio.sleep(0.1)
    assert gauge(windowed, "switchboard_ws_compression_contexts") <= before


@pytest.mark.parametrize("payload_bytes", [10, 126, 127, 300, 70_000])
def test_a_frame_compressed_from_its_parts_is_the_frame_compressed_whole(payload_bytes: int) -> None:
    """The edge compresses a subscription's frame from its own bytes and its shared payload
    (SharedDeflate.compress_parts): the same deflate data as the whole frame through wsproto's
    extension hook, and uncompressed where that would be."""
    from wsproto.frame_protocol import Opcode, RsvBits

    from switchboard.ws.deflate import SharedCompressor, SharedDeflate

    deflate = SharedDeflate(SharedCompressor(), min_bytes=128, max_message_bytes=1 << 20)
    assert deflate.accept("permessage-deflate; client_max_window_bits") is not None
    own = b'{"id":"' + str(uuid.uuid4()).encode() + b'","type":"next","payload":'
    payload = orjson.dumps({"data": {"events": {"message": "m" * payload_bytes}}})
    rsv, whole = deflate.frame_outbound(
        None,  # type: ignore[arg-type]
        Opcode.TEXT,
        RsvBits(False, False, False),
        own + payload + b"}",
        True,
    )
    parts = deflate.compress_parts(own, payload + b"}")
    if rsv.rsv1:
        assert parts == whole
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(parts + b"\x00\x00\xff\xff") == own + payload + b"}"
    else:
        assert parts is None


def test_window_frames_from_their_parts_are_the_frames_compressed_whole() -> None:
    """With the server's context kept, a socket's frames from their parts (the edge) are the
    same deflate data, frame after frame, as the whole frames through wsproto's hook."""
    from wsproto.frame_protocol import Opcode, RsvBits

    from switchboard.ws.contexts import ContextsByWindow
    from switchboard.ws.deflate import SharedCompressor, WindowDeflate

    whole, parts = (
        WindowDeflate(SharedCompressor(), ContextsByWindow(1 << 24), min_bytes=128, max_message_bytes=1 << 20)
        for _ in range(2)
    )
    for extension in (whole, parts):
        assert extension.accept("permessage-deflate; client_max_window_bits") == "client_no_context_takeover"
    own = b'{"id":"' + str(uuid.uuid4()).encode() + b'","type":"next","payload":'
    inflater = zlib.decompressobj(-11)
    for i in range(30):
        tail = orjson.dumps({"data": {"events": {"message": f"event {i} " * (15 + i % 7)}}}) + b"}"
        rsv, expected = whole.frame_outbound(
            None,  # type: ignore[arg-type]
            Opcode.TEXT,
            RsvBits(False, False, False),
            own + tail,
            True,
        )
        got = parts.compress_parts(own, tail)
        assert rsv.rsv1 and got == expected
        assert inflater.decompress(got + b"\x00\x00\xff\xff") == own + tail  # context kept across
