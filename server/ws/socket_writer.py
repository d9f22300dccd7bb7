"""The writer of a WebSocket: the engine's bounded queue, sending text frames."""

from __future__ import annotations

from switchboard.engine.asgi import Send
from switchboard.engine.writer import Frame, FrameWriter


class SocketWriter(FrameWriter):
    __slots__ = ()

    async def _send_frame(self, send: Send, frame: Frame) -> None:
        # The one copy of a shared payload this socket makes, for as long as it is sent.
        text = frame if isinstance(frame, str) else frame[0] + frame[1] + "}"
        await send({"type": "websocket.send", "text": text})

    async def _send_close(self, send: Send, code: int, reason: str) -> None:
        await send({"type": "websocket.close", "code": code, "reason": reason})
