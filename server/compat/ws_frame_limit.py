"""Refusing a WebSocket message from its frame header, before its payload is read.

hypercorn and uvicorn's wsproto implementation both count a message's bytes as they arrive, and
hypercorn (tested: 0.17, 0.18) keeps writing them into its buffer after the count passed the
limit: a 300 MB frame sent before `connection_init` grew the process by 300 MB, with no close
until the init timeout. A frame's length is in its header, and so, summed, is a fragmented
message's: wsproto reads each header in `FrameDecoder.extension_processing(opcode, rsv,
payload_len)` (tested: wsproto 1.2, 1.3), for every frame of every connection, with or without
extensions. `limit_messages` wraps that method: past the limit it raises wsproto's own
`ParseFailed` with 1009 before a byte of the payload is taken. wsproto reports any frame it
cannot parse as a close from the peer without moving the connection's state, so hypercorn and
uvicorn dropped such connections with no close frame; `limit_messages` also marks them closed by
the peer, and the servers answer with the close frame (1009, 1002, 1007) before dropping them.
The limit counts bytes on the wire (compressed, where permessage-deflate is on; ws/deflate.py
bounds what they inflate to).

tests/test_compat.py fails when wsproto stops calling the method or its parse failures stop
arriving as close events of an open connection.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event
from wsproto.frame_protocol import CloseReason, FrameDecoder, Opcode, ParseFailed, RsvBits

TOO_BIG = "message larger than {limit} bytes"
_COUNT = "_switchboard_message_bytes"  # an attribute of each FrameDecoder: this message so far
_original_processing: Callable[..., None] | None = None
_original_events: Callable[..., Generator[Event, None, None]] | None = None
_limit = 0


class MessageTooBig(ParseFailed):
    """Raised when a frame header says its message passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(TOO_BIG.format(limit=limit), CloseReason.MESSAGE_TOO_BIG)


def limit_messages(limit: int) -> None:
    """Refuse, from the header, every WebSocket message of the process longer than `limit`
    bytes (data frames summed, control frames aside). Idempotent; the last limit holds."""
    global _original_processing, _original_events, _limit
    _limit = limit
    if _original_processing is not None:
        return
    if not hasattr(FrameDecoder, "extension_processing") or not hasattr(Connection, "events"):
        raise RuntimeError("wsproto changed: see switchboard/compat/ws_frame_limit.py")
    _original_processing = FrameDecoder.extension_processing
    _original_events = Connection.events
    FrameDecoder.extension_processing = _checked_processing  # type: ignore[method-assign,assignment]
    Connection.events = _events  # type: ignore[method-assign,assignment]


def _checked_processing(decoder: FrameDecoder, opcode: Opcode, rsv: RsvBits, payload_len: int) -> None:
    if not opcode.iscontrol():
        so_far = getattr(decoder, _COUNT, 0) if opcode is Opcode.CONTINUATION else 0
        so_far += payload_len
        setattr(decoder, _COUNT, so_far)
        if so_far > _limit:
            raise MessageTooBig(_limit)
    assert _original_processing is not None
    _original_processing(decoder, opcode, rsv, payload_len)


def _events(connection: Connection) -> Generator[Event, None, None]:
    assert _original_events is not None
    for event in _original_events(connection):
        if isinstance(event, CloseConnection) and connection.state is ConnectionState.OPEN:
            # A close event while still open is wsproto's ParseFailed (a real close frame moved
            # the state on): our limit, permessage-deflate's inflation limit, a protocol error.
            # As if the peer had closed with that code, the server answers with the close frame
            # saying why (1009, 1002, 1007) instead of dropping the connection without a word.
            connection._state = ConnectionState.REMOTE_CLOSING
        yield event


def installed() -> dict[str, Any]:
    """What is in place (for tests)."""
    return {"limit": _limit, "wrapped": _original_processing is not None}
