"""The writer of a WebSocket: the engine's bounded queue, sending text frames.

`SocketWriter` sends each frame as an ASGI message (any ASGI server). `DirectSocketWriter` is
used where the server offers a `FrameSink` (the scope extension `switchboard.frames`, which the
edge's own protocol offers: switchboard.edge): everything queued when the writer starts goes to
the sink in one call, without a task, and only a socket that stopped taking frames gets a task
that waits for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from switchboard.engine.asgi import Scope, Send
from switchboard.engine.writer import LARGE_FRAME, Frame, FrameWriter, frame_size

EXTENSION = "switchboard.frames"
"""The scope extension that offers a FrameSink (the edge's protocol: switchboard.edge)."""


class FrameSink(Protocol):
    """A socket that takes frames as they are queued (they are framed and written together)."""

    @property
    def writable(self) -> bool: ...

    def write_frames(self, frames: Sequence[Frame]) -> None: ...

    async def drained(self) -> None: ...


def frame_sink(scope: Scope) -> FrameSink | None:
    """The sink the server offers for this socket, if any."""
    offered = (scope.get("extensions") or {}).get(EXTENSION)
    return offered.get("sink") if isinstance(offered, dict) else None


class SocketWriter(FrameWriter):
    __slots__ = ()

    async def _send_frame(self, send: Send, frame: Frame) -> None:
        # The one copy of a shared payload this socket makes, for as long as it is sent.
        text = frame if isinstance(frame, str) else frame[0] + frame[1] + "}"
        await send({"type": "websocket.send", "text": text})

    async def _send_close(self, send: Send, code: int, reason: str) -> None:
        await send({"type": "websocket.close", "code": code, "reason": reason})


class DirectSocketWriter(SocketWriter):
    __slots__ = ("_sink",)

    def __init__(self, sink: FrameSink, send: Send, limit: int, **options: Any) -> None:
        super().__init__(send, limit, **options)
        self._sink = sink

    def _start(self) -> None:
        # What the socket takes now leaves in one write; a large frame (the process's SendBudget),
        # a close, or a socket that stopped taking frames go on in a task (FrameWriter._drain).
        frames = self._frames
        if frames and self._sink.writable:
            out = []
            while frames:
                frame = frames[0]
                size = frame_size(frame)
                if size >= LARGE_FRAME and self._budget is not None:
                    break
                frames.popleft()
                self._dequeued(frame, size)
                out.append(frame)
            self.sent += len(out)
            self._sink.write_frames(out)
        if not frames and self._close is None:
            self._frames = None  # an idle socket keeps no queue
            self._draining = False
            return
        super()._start()

    async def _send_frame(self, send: Send, frame: Frame) -> None:
        sink = self._sink
        await sink.drained()
        sink.write_frames((frame,))
        await sink.drained()  # a large frame holds its share of the budget until it is taken
