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
- Window (`SWITCHBOARD_WS_COMPRESSION=window`): `WindowDeflate` keeps the server's context, so a
  frame refers back to those before it, and small events cost a few bytes. The contexts belong
  to no socket: sockets that were sent the same payloads share one (`contexts`), and each event
  is compressed once per context, not per socket. A frame's id goes as a back-reference to the
  socket's previous frame (`deflate_blocks`).
- Either way, no client frame is inflated beyond the message limit: past it, close 1009.
"""

from __future__ import annotations

import functools
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from switchboard.observability.stats import PROCESS
from switchboard.settings import Settings
from switchboard.ws.contexts import ContextsByWindow, Seat
from switchboard.ws.deflate_blocks import MAX_MATCH, MIN_MATCH, TAIL, back_reference, stored_block

NAME = "permessage-deflate"
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


class Declined(Extension):
    """Answers no permessage-deflate offer: the connection runs uncompressed."""

    name = NAME

    def offer(self) -> bool:
        return False

    def accept(self, offer: str) -> None:
        return None


class SharedCompressor:
    """Compresses each distinct message once: later sends of the same bytes reuse the result.

    A fan-out sends one rendered frame to every subscriber, so a cache by content (bounded in
    entries and bytes) turns N compressions into one. Not within one turn of the event loop,
    though: a writer sends a socket everything queued for it, so under load the sockets of one
    fan-out are up to a queue's length of events apart (W1 saturated: with 256 entries the
    sockets behind found most events gone, 0.4 compressions per delivery). 4096 entries of a
    few hundred bytes stay well under the byte bound."""

    def __init__(self, level: int = 1, max_entries: int = 4096, max_bytes: int = 4 * 1024 * 1024) -> None:
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
            PROCESS.ws_compression_reused += 1
            return found
        compressor = zlib.compressobj(self._level, zlib.DEFLATED, -window_bits)
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        compressed = compressed[: -len(TAIL)]
        PROCESS.ws_compressions += 1
        PROCESS.ws_bytes_before_compression += len(data)
        PROCESS.ws_bytes_after_compression += len(compressed)
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
            PROCESS.ws_inflation_refused += 1
        return out

    # -- outbound: whole messages of min_bytes or more, compressed once for every socket --------

    @property
    def keeps_context(self) -> bool:
        """Whether frames must go through `frame_outbound` in order (the server's context kept)."""
        return False

    def compress_parts(self, own: bytes, tail: bytes) -> bytes | None:
        """The deflate data of a subscription's frame given in two parts, its own bytes (up to
        and with `"payload":`) and the tail its subscribers share (the payload and the closing
        brace): what `frame_outbound` makes of the whole frame, without joining it or looking
        for the split. The edge hands every socket the same tail object, whose hash Python
        keeps, so a reuse is one lookup. None: under min_bytes, to be sent uncompressed."""
        if len(tail) < self._min_bytes:
            return None
        return stored_block(own) + self._compressor.compress(tail, self._window_bits)

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        # A fragmented message (never sent by the servers we run on) goes uncompressed whole.
        if opcode not in DATA_OPCODES or not fin or len(data) < self._min_bytes:
            return (rsv, data)
        compressed = self._compressor.compress_frame(bytes(data), self._window_bits, self._min_bytes)
        return (rsv, data) if compressed is None else (RSV1, compressed)


WINDOW_BITS = 11  # 2 KiB: the frames before a small event (zlib reaches 262 bytes less, 1786)


class WindowDeflate(SharedDeflate):
    """permessage-deflate with the server's context kept (SWITCHBOARD_WS_COMPRESSION=window): each
    frame refers back to the frames before it within a 2 KiB window, so the envelope and field
    names every event repeats cost a few bytes. The contexts are shared by the sockets that were
    sent the same payloads (`contexts`), so an event is compressed once for all of them; a socket
    holds only its place among them. The client keeps no context for us (client_no_context_
    takeover: inbound is inflated as in SharedDeflate). A deflate stream made with a smaller
    window is read by any inflater, so the window is not announced unless the offer names one.

    The bytes before a frame's payload (its operation's id) go as a back-reference to the last
    frame that began with them when the client's window still holds it (`back_reference`, 9
    bytes), else as they are (a stored block). Binary frames, which the contexts cannot take
    (their bytes may hold 0xFF), and frames under the threshold go uncompressed, which leaves
    the client's context as it was."""

    def __init__(
        self, compressor: SharedCompressor, contexts: ContextsByWindow, min_bytes: int, max_message_bytes: int
    ) -> None:
        super().__init__(compressor, min_bytes, max_message_bytes)
        self._contexts = contexts
        self._seat: Seat | None = None  # made by the handshake that keeps the server's context
        self._position = 0  # bytes of the compressed messages sent so far: the client's history
        self._prefix_at: dict[bytes, int] = {}  # where the last few frames' own bytes began
        self._last_prefix = b""  # the own bytes of the last frame that had any

    def accept(self, offer: str) -> str | None:
        answer = super().accept(offer)
        if answer is None or "server_no_context_takeover" in offer:
            return answer  # a client that asks the server to keep no context gets the shared way
        seat = self._seat = Seat(self._contexts.of(min(WINDOW_BITS, self._window_bits)))
        # wsproto gives an extension no close hook: the seat is let go when a close frame goes
        # either way (`_closing`), else (a dropped connection) when the extension is collected.
        weakref.finalize(self, seat.leave)
        if "server_max_window_bits" in offer:  # answered no larger than asked
            return f"client_no_context_takeover; server_max_window_bits={self._window_bits}"
        return "client_no_context_takeover"

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if opcode is Opcode.CLOSE:
            self._closing()
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    @property
    def keeps_context(self) -> bool:
        return self._seat is not None

    def _closing(self) -> None:
        """The connection is closing: its context is let go now rather than when the extension
        is collected. Anything still sent starts from the empty context, which is valid after
        whatever the client holds."""
        if self._seat is not None:
            self._seat.leave()

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        # Once per frame per socket: the common case (the socket's one subscription again, its
        # event already compressed for another socket) is a few lookups, without the scan.
        seat = self._seat
        if seat is None:
            return super().frame_outbound(proto, opcode, rsv, data, fin)
        if opcode is not Opcode.TEXT:
            if opcode is Opcode.CLOSE:
                self._closing()
            return (rsv, data)
        if not fin or len(data) < self._min_bytes:
            return (rsv, data)
        prefix = self._last_prefix  # data is bytes: wsproto's _serialize_frame makes it so
        if prefix and data.startswith(prefix):
            split = len(prefix)  # '"payload":' overlaps no copy of itself: the first is there
        else:
            split = data.find(SHARED_AFTER, 0, PREFIX_SCAN)
            split = 0 if split < 0 else split + len(SHARED_AFTER)
            prefix = data[:split]
        if len(data) - split < self._min_bytes:
            return (rsv, data)
        return (RSV1, self._step(seat, prefix, data[split:]))

    def compress_parts(self, own: bytes, tail: bytes) -> bytes | None:
        seat = self._seat
        if seat is None:
            return super().compress_parts(own, tail)
        if len(tail) < self._min_bytes:
            return None
        return self._step(seat, own, tail)

    def _step(self, seat: Seat, prefix: bytes, payload: bytes) -> bytes:
        """A frame of `prefix` (the socket's own bytes, maybe none) then `payload` (what its
        context is fed), compressed from the socket's place in its context."""
        split = len(prefix)
        compressed = seat.step((split, payload))
        if compressed is None:  # no context to spare: standalone, valid whatever came before
            compressed = self._compressor.compress(payload, seat.contexts.window_bits)
        if split:
            compressed = self._own_bytes(prefix) + compressed
            if prefix is not self._last_prefix:
                if len(self._prefix_at) >= 8 and prefix not in self._prefix_at:
                    self._prefix_at.clear()
                self._last_prefix = prefix
            self._prefix_at[prefix] = self._position
        self._position += split + len(payload)
        return compressed

    def _own_bytes(self, prefix: bytes) -> bytes:
        at = self._prefix_at.get(prefix)
        if at is not None and MIN_MATCH <= len(prefix) <= MAX_MATCH:
            distance = self._position - at
            if distance <= 1 << self._window_bits:  # what the client's window holds
                return cached_back_reference(len(prefix), distance)
        return stored_block(prefix)


@functools.lru_cache(maxsize=4096)
def cached_back_reference(length: int, distance: int) -> bytes:
    return back_reference(length, distance)


def extension_factory(settings: Settings) -> Callable[[], Extension]:
    """What each WebSocket handshake of this process is offered to accept."""
    if not settings.ws_compression:
        return Declined
    if settings.ws_compression_mode == "window":
        contexts = ContextsByWindow(settings.ws_compression_context_bytes)
        return partial(
            WindowDeflate,
            SharedCompressor(),
            contexts,
            settings.ws_compression_min_bytes,
            settings.max_message_bytes,
        )
    return partial(
        SharedDeflate, SharedCompressor(), settings.ws_compression_min_bytes, settings.max_message_bytes
    )
