"""How each HTTP transport frames what a stream sends: a `next` (a rendered payload between a
prefix and a suffix), a `complete`, a keepalive, and the end of the response."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
MULTIPART_CONTENT_TYPE = b'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'
BOUNDARY = "\r\n--graphql"
_PART = "\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
# A multipart body opens with a boundary and every part ends with one, so that a client parses
# each part as soon as it arrives (parsers split on the boundary that follows a part).


@dataclass(frozen=True, slots=True)
class Framing:
    """One transport's framing; `op_id` is the operation's id (single-connection mode) or ""."""

    content_type: bytes
    keepalive: bytes  # sent on an idle stream, so proxies with idle timeouts keep it
    end: bytes  # the last bytes of the response
    start: bytes = b""  # the first bytes of the response
    single: bool = False  # graphql-sse's single-connection mode: messages carry the operation id
    multipart: bool = False

    def next_prefix(self, op_id: str, event_id: str | None = None) -> str:
        """What precedes a result's JSON; `event_id` is the SSE `id` (resume position)."""
        if self.multipart:
            return _PART + '{"payload":'
        head = "event: next\n" if event_id is None else f"event: next\nid: {event_id}\n"
        if self.single:
            return head + 'data: {"id":' + orjson.dumps(op_id).decode() + ',"payload":'
        return head + "data: "

    @property
    def suffix(self) -> str:
        """What follows a result's JSON."""
        if self.multipart:
            return "}" + BOUNDARY
        return "}\n\n" if self.single else "\n\n"

    def result(self, op_id: str, payload: str, event_id: str | None = None) -> str:
        return self.next_prefix(op_id, event_id) + payload + self.suffix

    def complete(self, op_id: str) -> str:
        """The end of one operation ("" where the transport has none but the end of the body)."""
        if self.multipart:
            return ""
        if self.single:
            return "event: complete\ndata: " + orjson.dumps({"id": op_id}).decode() + "\n\n"
        return "event: complete\ndata:\n\n"  # EventSource fires no listener without data

    def closing(self, reason: str) -> str:
        """Why the server ends a stream that did not complete (shutdown, a slow reader, expired
        credentials): an SSE comment (EventSource and graphql-sse reconnect by themselves); over
        multipart the spec's transport error, `{"payload": null, "errors": [...]}` with the code
        STREAM_ENDED, so that a client that retries on errors (Apollo's RetryLink) reconnects
        rather than taking the end for a completed subscription."""
        if self.multipart:
            error = {"message": reason, "extensions": {"code": "STREAM_ENDED"}}
            return _PART + orjson.dumps({"payload": None, "errors": [error]}).decode() + BOUNDARY
        return "".join(f": {line}\n" for line in reason.splitlines()) + "\n"


RECONNECT_MS = 1000
"""How long EventSource waits before reconnecting a stream that ended (browsers default to ~3 s)."""
SSE = Framing(SSE_CONTENT_TYPE, keepalive=b":\n\n", end=b"", start=f"retry: {RECONNECT_MS}\n\n".encode())
SSE_SINGLE = Framing(SSE_CONTENT_TYPE, keepalive=b":\n\n", end=b"", single=True)
MULTIPART = Framing(
    MULTIPART_CONTENT_TYPE,
    keepalive=(_PART + "{}" + BOUNDARY).encode(),  # Apollo's heartbeat: an empty object part
    end=b"--\r\n",
    start=BOUNDARY.encode(),
    multipart=True,
)


def retry_field(milliseconds: int) -> str:
    """The SSE `retry` field: how long EventSource waits before it reconnects."""
    return f"retry: {milliseconds}\n\n"
