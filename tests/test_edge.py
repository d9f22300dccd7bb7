"""The edge (switchboard.edge): `switchboard serve` takes WebSocket upgrades on its own protocol
and hands every other connection to hypercorn on the same port. What it must keep: the
handshake's answers, HTTP beside it, every event once and in order; and what it is for: the
frames of a burst framed once and written to a socket together, not an ASGI message each."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import token, unique
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer

EVENTS = "subscription { events { __typename ... on NotifyEvent { group message } } }"
TIMEOUT = 10.0


async def counters(server: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.base_url}/metrics", timeout=5)).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


async def subscribed_peers(server: ServerProcess, count: int) -> list[RawPeer]:
    peers = []
    for i in range(count):
        # As a browser connects: permessage-deflate offered (declined by default).
        peer = await RawPeer(server.ws_url, compression="deflate").__aenter__()
        await peer.init({"authToken": token(unique("u"))})
        await peer.send({"id": f"op{i}", "type": "subscribe", "payload": {"query": EVENTS}})
        peers.append(peer)
    await asyncio.sleep(0.3)
    return peers


async def received(peer: RawPeer, count: int) -> list[str]:
    messages = []
    async with asyncio.timeout(TIMEOUT):
        while len(messages) < count:
            message = await peer.recv_type("next")
            messages.append(message["payload"]["data"]["events"]["message"])
    return messages


async def test_a_burst_reaches_every_socket_in_order_in_fewer_writes_than_frames(
    redis_servers: tuple[ServerProcess, ServerProcess], publishing: Callable[[str, str], None]
) -> None:
    server = redis_servers[0]
    peers = await subscribed_peers(server, 3)
    try:
        before = await counters(server)
        burst = [f"event {i}" for i in range(300)]
        # Straight to Redis from this process, as fast as it goes: the server's reader takes
        # several per read, and each socket's writer finds them queued together.
        await asyncio.to_thread(lambda: [publishing("all", m) for m in burst])
        for peer in peers:
            assert await received(peer, len(burst)) == burst
        after = await counters(server)
        frames = after["switchboard_ws_edge_frames_total"] - before["switchboard_ws_edge_frames_total"]
        writes = after["switchboard_ws_edge_writes_total"] - before["switchboard_ws_edge_writes_total"]
        assert frames >= len(peers) * len(burst)  # every event went out on the edge's own path
        assert writes < frames  # and frames of a burst shared a write
    finally:
        for peer in peers:
            await peer.__aexit__()


@pytest.mark.parametrize(("implementation", "direct"), [("switchboard", True), ("wsproto", False)])
async def test_under_uvicorn_the_edge_protocol_or_the_asgi_path(
    redis_url: str, prefix: str, implementation: str, direct: bool
) -> None:
    """uvicorn runs the edge's protocol through its `ws` class (the default), or its own
    WebSocket implementation, through which the app's ASGI path serves the same events."""
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix, "SWITCHBOARD_UVICORN_WS": implementation}
    server = ServerProcess(env, server="uvicorn").start()
    try:
        peers = await subscribed_peers(server, 1)
        try:
            before = await counters(server)
            body = {
                "query": 'mutation($m: String!) { sendNotify(group: "all", message: $m) { id } }',
                "variables": {"m": implementation},
            }
            headers = {"authorization": f"Bearer {token('svc', publisher=True)}"}
            async with httpx.AsyncClient() as client:
                answer = await client.post(server.http_url, json=body, headers=headers)
            assert "errors" not in answer.json(), answer.text
            assert await received(peers[0], 1) == [implementation]
            after = await counters(server)
            sent = after["switchboard_ws_edge_frames_total"] - before["switchboard_ws_edge_frames_total"]
            assert (sent >= 1) == direct
        finally:
            for peer in peers:
                await peer.__aexit__()
    finally:
        assert server.stop() == 0


def upgrade_head(port: int, **drop: bool) -> bytes:
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "graphql-transport-ws",
    }
    lines = ["GET /graphql HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if not drop.get(k)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer_to(port: int, *chunks: bytes, pause: float = 0.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    finally:
        writer.close()


async def test_a_handshake_without_its_key_gets_400(memory_server: ServerProcess) -> None:
    head = upgrade_head(memory_server.port, **{"Sec-WebSocket-Key": True})
    assert (await answer_to(memory_server.port, head)).startswith(b"HTTP/1.1 400")


async def test_a_head_sent_a_byte_at_a_time_is_still_upgraded(memory_server: ServerProcess) -> None:
    head = upgrade_head(memory_server.port)
    answer = await answer_to(memory_server.port, *(head[i : i + 1] for i in range(len(head))), pause=0.001)
    assert answer.startswith(b"HTTP/1.1 101")
    assert b"graphql-transport-ws" in answer


async def test_http_and_an_upgrade_after_it_on_one_connection(memory_server: ServerProcess) -> None:
    # The first request decides who serves the connection: hypercorn, which then upgrades it itself.
    reader, writer = await asyncio.open_connection("127.0.0.1", memory_server.port)
    try:
        writer.write(f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{memory_server.port}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200")
        lines = head.lower().split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(upgrade_head(memory_server.port))
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 101")
    finally:
        writer.close()


async def test_http_clients_that_are_not_get_go_to_hypercorn_at_once(memory_server: ServerProcess) -> None:
    body = b'{"query": "{ __typename }"}'
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = await answer_to(memory_server.port, request, body)
    assert answer.startswith(b"HTTP/1.1 200")


def masked_text_frame(text: str) -> bytes:
    """A client's text frame (RFC 6455 5.2: masked), for payloads under 126 bytes."""
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_message_sent_with_the_handshake_is_not_lost(memory_server: ServerProcess) -> None:
    # RFC 6455 has a client wait for the 101, but a client that sends its connection_init in
    # the same packet as the handshake, or before the answer, still gets its ack.
    reader, writer = await asyncio.open_connection("127.0.0.1", memory_server.port)
    try:
        init = masked_text_frame('{"type":"connection_init","payload":{}}')
        writer.write(upgrade_head(memory_server.port) + init)
        writer.write(masked_text_frame('{"type":"ping"}'))
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 101")
        received = b""
        async with asyncio.timeout(TIMEOUT):
            while b"connection_ack" not in received or b"pong" not in received:
                received += await reader.read(4096)
    finally:
        writer.close()
