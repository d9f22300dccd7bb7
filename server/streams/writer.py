"""The writer of an HTTP stream: the WebSocket writer's bounded queue and batching, sending
response body chunks in the transport's framing instead of WebSocket frames."""

from __future__ import annotations

from collections.abc import Callable

from switchboard.engine.asgi import Send
from switchboard.engine.writer import FlushBatch, Frame, FrameWriter, QueueMemory, SendBudget
from switchboard.streams.framing import Framing


class StreamWriter(FrameWriter):
    """Frames are body chunks; closing ends the response (after `framing.end`) and calls `on_end`."""

    __slots__ = ("_on_end", "_suffix", "framing")

    def __init__(
        self,
        send: Send,
        framing: Framing,
        limit: int,
        *,
        on_end: Callable[[], None],
        batch: FlushBatch | None = None,
        max_bytes: int = 1 << 20,
        memory: QueueMemory | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        super().__init__(
            send,
            limit,
            name="switchboard-stream-writer",
            batch=batch,
            max_bytes=max_bytes,
            memory=memory,
            budget=budget,
        )
        self.framing = framing
        self._suffix = framing.suffix
        self._on_end = on_end

    async def _send_frame(self, send: Send, frame: Frame) -> None:
        text = frame if isinstance(frame, str) else frame[0] + frame[1] + self._suffix
        await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def _send_close(self, send: Send, code: int, reason: str) -> None:
        last = self.framing.end
        if reason:
            last = self.framing.closing(f"closed: {reason}").encode() + last
        try:
            await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            self._on_end()
