"""permessage-deflate (RFC 7692) as Switchboard negotiates it, for wsproto-based servers.

Every browser offers it; hypercorn accepts it for every connection, with 15-bit windows and
context takeover: a zlib compressor and decompressor per socket (about 100 KB idle, 200 KB after
traffic), and every frame compressed again for every socket.

- Off (the default): `Declined` answers no offer; no socket holds compression state.
- On (`SWITCHBOARD_WS_COMPRESSION=1`): `SharedDeflate` answers `server_no_context_takeover;
  client_no_context_takeover`, which a server may do whatever the offer, so each message is
  compressed on its own. The same rendered event is then the same compressed bytes for every
  subscriber: `SharedCompressor` compresses it once (level 1) and hands the bytes to the rest,
  as uWebSockets' shared compressor and Centrifugo's prepared messages do. A subscription's
  frame is not the same bytes for every subscriber, though: it starts with the operation's id,
  a UUID per subscription from graphql-ws (so from Apollo Client and urql). So a frame goes as
  two pieces of one deflate stream: what comes before its `"payload":` as a stored block (the
  few bytes that differ per socket, sent as they are), then the payload, compressed once for
  every socket that sends it. Frames under `min_bytes` go uncompressed. No zlib state outlives
  a message, in either direction.
- Either way, no client frame is inflated beyond the message limit: past it, close 1009.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from switchboard.observability.stats import STATS
from switchboard.settings import Settings

NAME = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; RFC 7692 leaves it off the wire
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY)
ACCEPTED_PARAMETERS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)
ANSWER = "server_no_context_takeover; client_no_context_takeover"
SHARED_AFTER = b'"payload":'
"""Where the part of a frame shared by its subscribers starts. In JSON text a quote inside a
string is escaped, so this cannot occur within the id before it: the first one is the key."""
PREFIX_SCAN = 512  # how far into a frame the key is looked for (an id is shorter)
RSV1 = RsvBits(True, False, False)  # ours is the one extension: wsproto hands us no other bit


def stored_block(data: bytes) -> bytes:
    """`data` as one non-final stored deflate block (RFC 1951 3.2.4), starting and ending on a
    byte boundary, so any deflate data may follow it in the same message."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


class Declined(Extension):
    """Answers no permessage-deflate offer: the connection runs uncompressed."""

    name = NAME

    def offer(self) -> bool:
        return False

    def accept(self, offer: str) -> None:
        return None


class SharedCompressor:
    """Compresses each distinct message once: later sends of the same bytes reuse the result.

    A fan-out sends one rendered frame to every subscriber within one turn of the event loop,
    so a small cache (by content, bounded in entries and bytes) turns N compressions into one."""

    def __init__(self, level: int = 1, max_entries: int = 256, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._level = level
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._cache: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()

    def compress(self, data: bytes, window_bits: int) -> bytes:
        key = (window_bits, data)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            STATS.ws_compression_reused += 1
            return found
        compressor = zlib.compressobj(self._level, zlib.DEFLATED, -window_bits)
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        compressed = compressed[: -len(TAIL)]
        STATS.ws_compressions += 1
        STATS.ws_bytes_before_compression += len(data)
        STATS.ws_bytes_after_compression += len(compressed)
        self._cache[key] = compressed
        self._bytes += len(data) + len(compressed)
        while len(self._cache) > self._max_entries or self._bytes > self._max_bytes:
            (_, old), old_compressed = self._cache.popitem(last=False)
            self._bytes -= len(old) + len(old_compressed)
        return compressed

    def compress_frame(self, data: bytes, window_bits: int, min_bytes: int) -> bytes | None:
        """A whole message's deflate data: the part before the shared payload as a stored block,
        the payload compressed once (`compress`); valid wherever the split falls. None when what
        would be compressed is under `min_bytes`: the frame is better sent as it is."""
        split = data.find(SHARED_AFTER, 0, PREFIX_SCAN)
        if split < 0:
            return self.compress(data, window_bits) if len(data) >= min_bytes else None
        split += len(SHARED_AFTER)
        if len(data) - split < min_bytes:
            return None
        return stored_block(data[:split]) + self.compress(data[split:], window_bits)


class SharedDeflate(Extension):
    """The server side of permessage-deflate with no context takeover either way."""

    name = NAME

    def __init__(self, compressor: SharedCompressor, min_bytes: int, max_message_bytes: int) -> None:
        self._compressor = compressor
        self._min_bytes = min_bytes
        self._max_message_bytes = max_message_bytes
        self._window_bits = 15
        self._enabled = False
        self._inflater: zlib._Decompress | None = None  # only while a compressed message arrives
        self._inflated = 0
        self._message_compressed: bool | None = None  # None between messages
        self._frame_is_data = False
        self._refused = False  # this message inflated past the limit: nothing more is inflated

    def enabled(self) -> bool:
        return self._enabled

    def offer(self) -> bool:
        return False  # server side only

    def accept(self, offer: str) -> str | None:
        window_bits = 15
        for parameter in offer.split(";")[1:]:
            name, _, value = (p.strip().strip('"') for p in parameter.partition("="))
            if name not in ACCEPTED_PARAMETERS:
                return None  # an offer we do not understand is declined, not half-honoured
            if name == "server_max_window_bits":
                if not value.isdigit() or not 9 <= int(value) <= 15:
                    return None
                window_bits = int(value)
            elif name == "client_max_window_bits":
                if value and (not value.isdigit() or not 8 <= int(value) <= 15):
                    return None
            elif value:
                return None
        self._window_bits = window_bits
        self._enabled = True
        # An offer's server_max_window_bits must be answered with a value no larger.
        return ANSWER if window_bits == 15 else f"{ANSWER}; server_max_window_bits={window_bits}"

    # -- inbound: inflate each message with a fresh inflater, never past the message limit ------

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        self._frame_is_data = not opcode.iscontrol()
        if self._frame_is_data and self._message_compressed is None:  # the message's first frame
            self._message_compressed = rsv.rsv1
            if rsv.rsv1:
                self._inflater = zlib.decompressobj(-15)
                self._inflated = 0
                self._refused = False
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._frame_is_data or not self._message_compressed:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._frame_is_data:
            return None
        compressed, self._message_compressed = self._message_compressed, None
        if not compressed:
            return None
        rest = self._inflate(TAIL)
        self._inflater = None  # client_no_context_takeover: nothing is kept between messages
        return rest

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._refused:
            return CloseReason.MESSAGE_TOO_BIG
        inflater = self._inflater
        if inflater is None:
            return CloseReason.PROTOCOL_ERROR
        room = self._max_message_bytes - self._inflated
        try:
            # Never more than one byte past the limit, whatever the input would inflate to.
            out = inflater.decompress(data, room + 1)
        except zlib.error:
            self._inflater = None
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._max_message_bytes:
            # Hand on what makes the message one byte too long: the server's own size limit (the
            # same one: web/serving.py) then closes with a 1009 frame, which wsproto's error path
            # (a CloseReason from here) would not send. Anything more of it is refused here.
            self._inflater = None
            self._refused = True
            STATS.ws_inflation_refused += 1
        return out

    # -- outbound: whole messages of min_bytes or more, compressed once for every socket --------

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        # A fragmented message (never sent by the servers we run on) goes uncompressed whole.
        if opcode not in DATA_OPCODES or not fin or len(data) < self._min_bytes:
            return (rsv, data)
        compressed = self._compressor.compress_frame(bytes(data), self._window_bits, self._min_bytes)
        return (rsv, data) if compressed is None else (RSV1, compressed)


WINDOW_BITS = 11  # a 2 KiB window: zlib reaches back 262 bytes less (1786), the frame before
MEM_LEVEL = 1  # with the window, under 10 KB of zlib state per socket (15 bits, level 8: ~87 KB)
SHARED_FIRST = 16
"""A socket's first compressed frames are compressed the shared way (once per event for every
socket, no state); its own context starts with the next. Quiet sockets (most tabs) then never
hold one, and a fan-out to ten thousand new sockets does not set up ten thousand compressors."""


class WindowDeflate(SharedDeflate):
    """permessage-deflate keeping a small compression context per socket (SWITCHBOARD_WS_COMPRESSION
    =window): each frame refers back to the frames before it within a 2 KiB window, so the
    envelope and field names every event repeats cost a few bytes. The client keeps no context
    for us (client_no_context_takeover: inbound is inflated as in SharedDeflate). A deflate stream
    made with a smaller window is read by any inflater, so the window need not be announced.
    The first SHARED_FIRST compressed frames go the shared way."""

    def __init__(self, compressor: SharedCompressor, min_bytes: int, max_message_bytes: int) -> None:
        super().__init__(compressor, min_bytes, max_message_bytes)
        self._deflater: zlib._Compress | None = None  # made by the first compressed frame
        self._shared = False  # the client asked for server_no_context_takeover: SharedDeflate's way
        self._compressed = 0  # frames compressed so far

    def accept(self, offer: str) -> str | None:
        answer = super().accept(offer)
        if answer is None:
            return None
        if "server_no_context_takeover" in offer:
            self._shared = True
            return answer
        if "server_max_window_bits" in offer:  # answered no larger than asked: ours is smaller
            return f"client_no_context_takeover; server_max_window_bits={self._window_bits}"
        return "client_no_context_takeover"

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        if opcode not in DATA_OPCODES or not fin or len(data) < self._min_bytes:
            return (rsv, data)  # an uncompressed message leaves the context as it was
        self._compressed += 1
        if self._shared or self._compressed <= SHARED_FIRST:
            # Standalone messages: valid whatever the client's inflater holds (they refer to
            # nothing before them).
            return super().frame_outbound(proto, opcode, rsv, data, fin)
        deflater = self._deflater
        if deflater is None:
            deflater = self._deflater = zlib.compressobj(1, zlib.DEFLATED, -WINDOW_BITS, MEM_LEVEL)
        compressed = (deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH))[: -len(TAIL)]
        STATS.ws_compressions += 1
        STATS.ws_bytes_before_compression += len(data)
        STATS.ws_bytes_after_compression += len(compressed)
        return (RSV1, compressed)


def extension_factory(settings: Settings) -> Callable[[], Extension]:
    """What each WebSocket handshake of this process is offered to accept."""
    if not settings.ws_compression:
        return Declined
    if settings.ws_compression_mode == "window":
        return partial(
            WindowDeflate, SharedCompressor(), settings.ws_compression_min_bytes, settings.max_message_bytes
        )
    return partial(
        SharedDeflate, SharedCompressor(), settings.ws_compression_min_bytes, settings.max_message_bytes
    )
