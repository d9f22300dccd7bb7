"""Window mode's shared compression contexts (ws/contexts.py), through the extension that uses
them: many sockets, each read by its own zlib inflater that keeps its context across messages as
a browser's does, are sent events everyone gets and events of their own, join late, leave, and
hold ids of both lengths. Every message must inflate to what was sent."""

from __future__ import annotations

import gc
import random
import uuid
import zlib

import orjson
import pytest
from wsproto.frame_protocol import Opcode, RsvBits

from switchboard.observability.stats import PROCESS
from switchboard.ws.contexts import CONTEXT_BYTES, IDLE_SHARE, MAX_IDLE, ContextsByWindow
from switchboard.ws.deflate import SharedCompressor, WindowDeflate
from switchboard.ws.deflate_blocks import TAIL

PLAIN = RsvBits(False, False, False)
CHROMIUM = "permessage-deflate; client_max_window_bits"


class Socket:
    def __init__(self, contexts: ContextsByWindow, rng: random.Random, offer: str, inflate_bits: int) -> None:
        self.extension = WindowDeflate(SharedCompressor(), contexts, 128, 1 << 20)
        assert self.extension.accept(offer) is not None
        self.inflater = zlib.decompressobj(-inflate_bits)  # one for the connection
        short = rng.random() < 0.2  # gql and hand-written clients name operations 1, 2, ...
        self.ids = [
            str(rng.randint(1, 20)) if short else str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(2)
        ]

    def send(self, message: bytes) -> int:
        rsv, data = self.extension.frame_outbound(None, Opcode.TEXT, PLAIN, message, True)  # type: ignore[arg-type]
        got = self.inflater.decompress(data + TAIL) if rsv.rsv1 else data
        assert got == message
        return len(data)


def event(i: int, rng: random.Random) -> bytes:
    return orjson.dumps(
        {"data": {"events": {"__typename": "NotifyEvent", "message": f"{i} " + "x" * rng.randint(40, 500)}}}
    )


def fan_out(sockets: list[Socket], payload: bytes, rng: random.Random) -> tuple[int, int]:
    """The payload to each socket, in a frame of one of its operations; (bytes on the wire, sent)."""
    wire = sent = 0
    for socket in sockets:
        op = rng.choice(socket.ids).encode()
        message = b'{"id":"' + op + b'","type":"next","payload":' + payload + b"}"
        if rng.random() < 0.03:
            message = b'{"type":"error","payload":[{"message":"' + b"e" * 200 + b'"}]}'
        wire += socket.send(message)
        sent += len(message)
    return wire, sent


def run(
    seed: int, *, budget: int = 64 << 20, offer: str = CHROMIUM, inflate_bits: int = 15
) -> tuple[float, int]:
    """Random traffic; (bytes on the wire per byte sent, most contexts alive at once)."""
    rng = random.Random(seed)
    contexts = ContextsByWindow(budget)
    sockets = [Socket(contexts, rng, offer, inflate_bits) for _ in range(40)]
    events = [event(i, rng) for i in range(20)]
    wire = sent = most = 0
    for _ in range(150):
        draw = rng.random()
        if draw < 0.05:
            sockets.pop(rng.randrange(len(sockets)))
        elif draw < 0.1:
            sockets.append(Socket(contexts, rng, offer, inflate_bits))
        else:
            # Mostly events everyone gets, some a socket's own, now and then something else.
            payload = rng.choice(events) if draw < 0.85 else event(rng.randint(100, 10**6), rng)
            targets = sockets if draw < 0.85 else [rng.choice(sockets)]
            on_wire, in_frames = fan_out(targets, payload, rng)
            wire, sent = wire + on_wire, sent + in_frames
        most = max(most, PROCESS.ws_compression_contexts)
    sockets.clear()
    targets = []
    gc.collect()
    # Every socket gone: what is left is idle contexts that lead to each other (repeated events),
    # no more than are kept idle, and let go as soon as a new context needs room.
    assert PROCESS.ws_compression_contexts <= max(MAX_IDLE, budget // CONTEXT_BYTES // IDLE_SHARE)
    return wire / sent, most


@pytest.mark.parametrize("seed", range(12))
def test_every_socket_reads_every_message_whatever_the_traffic(seed: int) -> None:
    ratio, most = run(seed)
    assert ratio < 0.3
    assert most < 40  # fewer than one per socket: sockets sent the same events share them


@pytest.mark.parametrize("seed", range(4))
def test_past_the_budget_frames_go_standalone_and_still_read(seed: int) -> None:
    ratio, most = run(seed, budget=3 * CONTEXT_BYTES)
    assert most <= 3
    assert ratio < 0.9


@pytest.mark.parametrize("bits", [9, 10])
def test_an_offer_of_a_small_window_is_kept_to(bits: int) -> None:
    # Inflated with the window the answer names: a reference further back would fail to inflate.
    offer = f"permessage-deflate; server_max_window_bits={bits}"
    ratio, _ = run(bits, offer=offer, inflate_bits=bits)
    assert ratio < 0.5


@pytest.mark.parametrize("ahead", [1, 2, 3, 20])
def test_sockets_sent_the_same_events_share_one_compression_of_each_even_when_some_run_ahead(
    ahead: int,
) -> None:
    """A writer sends a socket everything queued for it before the next socket's turn, so under
    load the first sockets take several steps before the others take the first: the steps they
    leave behind must stay for the others, or every socket compresses every event itself."""
    rng = random.Random(ahead)
    contexts = ContextsByWindow(64 << 20)
    sockets = [Socket(contexts, rng, CHROMIUM, 15) for _ in range(50)]
    events = [event(i, rng) for i in range(60)]
    before = PROCESS.ws_compressions
    for start in range(0, len(events), ahead):
        for n in range(len(sockets)):
            for payload in events[start : start + ahead]:
                sockets[n].send(
                    b'{"id":"' + sockets[n].ids[0].encode() + b'","type":"next","payload":' + payload + b"}"
                )
    # Once per event, and once more per socket whose id is not a UUID's length (another history).
    histories = len({len(socket.ids[0]) for socket in sockets})
    assert PROCESS.ws_compressions - before <= len(events) * histories
    assert PROCESS.ws_compression_contexts <= histories * (ahead + 1) + MAX_IDLE
    sockets.clear()
    gc.collect()
    assert PROCESS.ws_compression_contexts == 0  # no events repeated: nothing leads anywhere
