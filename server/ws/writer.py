"""The one writer of a WebSocket: a bounded queue of text frames, drained by a task that runs
only while there is something to send (an idle connection holds neither a task nor a queue)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import suppress

from server.ws.asgi import Send

log = logging.getLogger(__name__)


class FrameWriter:
    """Frames go out in order; a full queue refuses more instead of growing."""

    __slots__ = ("_close", "_frames", "_limit", "_name", "_send", "_task", "busy_since", "closed", "sent")

    def __init__(self, send: Send, limit: int, name: str = "switchboard-ws-writer") -> None:
        self._send = send
        self._limit = limit
        self._name = name
        self._frames: deque[str] | None = None  # created by the first frame, dropped when drained
        self._close: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = False  # a close was requested (or the peer is gone): nothing more is queued
        self.busy_since = 0.0  # monotonic time the send in progress started, 0 when idle
        self.sent = 0

    @property
    def limit(self) -> int:
        return self._limit

    def offer(self, frame: str) -> bool:
        """Queue `frame`; False when the queue is full. After close, frames are dropped."""
        if self.closed:
            return True
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif len(frames) >= self._limit:
            return False
        frames.append(frame)
        self._wake()
        return True

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket with `code` next; what is queued is dropped unless `flush`."""
        if self.closed:
            return
        self.closed = True
        if not flush:
            self._frames = None
        self._close = (code, reason[:120])  # a close reason must fit in 123 bytes
        self._wake()

    def __len__(self) -> int:
        return 0 if self._frames is None else len(self._frames)

    async def stop(self) -> None:
        """Stop sending; what is still queued is dropped."""
        self.closed = True
        self._frames = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def _wake(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name=self._name)

    async def _drain(self) -> None:
        send = self._send
        try:
            # Re-read each turn: close() and stop() drop the queue while a send is in progress.
            while frames := self._frames:
                self.busy_since = time.monotonic()
                await send({"type": "websocket.send", "text": frames.popleft()})
                self.sent += 1
            if self._close is not None:
                code, reason = self._close
                self._close = None
                self.busy_since = time.monotonic()
                await send({"type": "websocket.close", "code": code, "reason": reason})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Each ASGI server says "that socket is gone" with an exception of its own.
            log.debug("websocket send failed: %r", exc)
            self.closed = True
            self._frames = None
        finally:
            # No await since the queue was last seen empty: an offer() now starts a new task.
            self.busy_since = 0.0
            if self._task is asyncio.current_task():
                self._task = None
                self._frames = None  # empty (or dropped): an idle socket keeps no queue
