"""The benchmark's browser socket (bench/loadgen/browser_socket.mjs) against a real `websockets`
server: it offers what Chromium offers, and every message arrives as sent whatever the server
negotiates (context takeover at 12 and 15 bits, none, no compression), across fragments, 16- and
64-bit lengths, a ping, and a close code. The benchmark's figures rest on this client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shutil
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from tests.support.frames import CHROMIUM_OFFER
from tests.support.processes import ROOT, free_port

RECEIVE = ROOT / "bench" / "loadgen" / "receive.mjs"
FROM_CLIENT = "hello from the client " * 10  # past 125 bytes: a 16-bit length, masked

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed: the benchmark's load generator needs it"
)


def messages() -> list[str | list[str]]:
    """What the server sends: events like the benchmark's (each refers back to the last), lengths
    of each header size, a message longer than the 32 KiB window, and one in three fragments."""
    event = '{"type":"next","id":"1","payload":{"data":{"data":{"payload":{"seq":%d,"pad":"%s"}}}}}'
    sent: list[str | list[str]] = [event % (seq, "x" * 120) for seq in range(40)]
    noise = random.Random(7)  # the same bytes each time this is called
    sent.append(noise.randbytes(150).hex())  # 300 characters
    sent.append(noise.randbytes(100_000).hex())  # compresses to well over 64 KiB: a 64-bit length
    sent += [event % (seq, "y" * 120) for seq in range(40, 45)]  # after a window's worth
    sent.append(["first part " * 50, "second part " * 50, "the end"])
    sent.append(event % (45, "x" * 120))
    return sent


def whole(message: str | list[str]) -> bytes:
    return ("".join(message) if isinstance(message, list) else message).encode()


async def receive(
    extensions: list[ServerExtensionFactory] | None, deflate: str = "on"
) -> tuple[str | None, str, list[dict[str, Any]]]:
    offered: list[str | None] = []
    received: list[str] = []

    async def handler(websocket: ServerConnection) -> None:
        assert websocket.request is not None
        offered.append(websocket.request.headers.get("Sec-WebSocket-Extensions"))
        received.append(str(await websocket.recv()))
        for message in messages():
            await websocket.send(message)
        pong = await websocket.ping()
        await asyncio.wait_for(pong, 5)  # the client answers pings
        await websocket.close(4000, "done")

    port = free_port()
    async with serve(handler, "127.0.0.1", port, compression=None, extensions=extensions, max_size=None):
        node = await asyncio.create_subprocess_exec(
            "node",
            str(RECEIVE),
            "--url",
            f"ws://127.0.0.1:{port}/",
            "--deflate",
            deflate,
            "--send",
            FROM_CLIENT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(node.communicate(), 20)
    assert offered and received, "the client never reached the handler"
    return offered[0], received[0], [json.loads(line) for line in out.decode().splitlines()]


CASES: dict[str, tuple[list[ServerExtensionFactory] | None, str | None]] = {
    "context takeover, 12 bits (websockets' default)": (
        [ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12)],
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    ),
    "context takeover, 15 bits (as uvicorn and Channels answer)": (
        [ServerPerMessageDeflateFactory()],
        "permessage-deflate",
    ),
    "no context takeover": (
        [ServerPerMessageDeflateFactory(server_no_context_takeover=True)],
        "permessage-deflate; server_no_context_takeover",
    ),
    "declined": (None, None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_message_arrives_as_sent_whatever_the_server_negotiates(case: str) -> None:
    extensions, answer = CASES[case]
    offered, from_client, lines = await receive(extensions)
    assert offered == CHROMIUM_OFFER
    assert from_client == FROM_CLIENT
    assert lines[0] == {"answer": answer}
    sent = [whole(m) for m in messages()]
    got = [line for line in lines[1:] if "bytes" in line]
    assert [g["bytes"] for g in got] == [len(s) for s in sent]
    assert [g["sha256"] for g in got] == [hashlib.sha256(s).hexdigest() for s in sent]
    assert lines[-1] == {"close": 4000}
    assert not [line for line in lines if "error" in line]


async def test_with_deflate_off_it_offers_nothing() -> None:
    offered, _, lines = await receive([ServerPerMessageDeflateFactory()], deflate="off")
    assert offered is None
    assert lines[0] == {"answer": None}
    assert len([line for line in lines if "bytes" in line]) == len(messages())


INFLATE = """
import zlib from "node:zlib";
import { Inflater } from "%s";
const out = {};
for (const takeover of [false, true]) {
  const inflater = new Inflater(15, takeover);
  out[takeover] = ["first", "second"].map((text) => {
    try {
      return inflater.inflate(zlib.deflateRawSync(Buffer.from(text))).toString(); // BFINAL=1
    } catch (error) {
      return error.message;
    }
  });
}
try {
  new Inflater(15, true).inflate(Buffer.from("not deflate at all"));
} catch (error) {
  out.corrupt = error.message;
}
console.log(JSON.stringify(out));
"""


async def test_a_final_block_ends_the_stream_and_corrupt_data_is_an_error() -> None:
    """Messages that end their deflate stream (BFINAL=1, as zlib's Z_FINISH writes) inflate one
    after another without context takeover; with it the window cannot be carried over, and the
    next message says so instead of inflating against a window it lacks."""
    node = await asyncio.create_subprocess_exec(
        "node",
        "--input-type=module",
        "-e",
        INFLATE % (ROOT / "bench" / "loadgen" / "browser_socket.mjs").as_uri(),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(node.communicate(), 20)
    result = json.loads(out)
    assert result["false"] == ["first", "second"]
    assert result["true"] == ["first", "a message after a final deflate block under context takeover"]
    assert result["corrupt"].startswith("inflate: ")
