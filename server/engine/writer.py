"""The one writer of a transport (a WebSocket, an HTTP stream): a bounded queue of frames, sent
without a task while the transport takes them, and by a task only while it has to wait (an idle
connection holds neither a task nor a queue). ws.socket_writer and streams.writer frame them.

Writers woken while the event loop runs one callback (the Redis reader fanning an event, or a
burst of events, out to every local session) are started together by a `FlushBatch` right after
it: frames of a burst leave a socket back to back, and no task is made per socket per event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from switchboard.compat.eager_start import start_eagerly
from switchboard.engine.asgi import Send

log = logging.getLogger(__name__)

Frame = str | tuple[str, str]
"""A text frame, or (prefix, payload) of a subscription's `next`: the payload, rendered once per
document, is shared by every socket that queues it and joined (with the closing brace) only when
this socket sends it."""


def frame_size(frame: Frame) -> int:
    return len(frame) if isinstance(frame, str) else len(frame[0]) + len(frame[1]) + 1


class QueueMemory:
    """What every writer of the process holds queued, in bytes, a shared payload counted once;
    past `limit`, `on_over` runs (once per turn of the event loop) to shed the slowest sockets."""

    __slots__ = ("_on_over", "_payloads", "_scheduled", "limit", "total")

    def __init__(self, limit: int, on_over: Callable[[], None]) -> None:
        self.limit = limit
        self.total = 0
        self._on_over = on_over
        self._payloads: dict[int, list[Any]] = {}  # id -> [payload, queues holding it]
        self._scheduled = False

    def add(self, frame: Frame) -> None:
        if isinstance(frame, str):
            self.total += len(frame)
        else:
            self.total += len(frame[0]) + 1
            entry = self._payloads.get(id(frame[1]))
            if entry is None:
                self._payloads[id(frame[1])] = [frame[1], 1]
                self.total += len(frame[1])
            else:
                entry[1] += 1
        if self.total > self.limit and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._over)

    def remove(self, frame: Frame) -> None:
        if isinstance(frame, str):
            self.total -= len(frame)
            return
        self.total -= len(frame[0]) + 1
        entry = self._payloads.get(id(frame[1]))
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._payloads[id(frame[1])]
                self.total -= len(frame[1])

    def _over(self) -> None:
        self._scheduled = False
        if self.total > self.limit:
            self._on_over()


LARGE_FRAME = 64 * 1024
"""Frames from this size on take a share of the process's SendBudget while they are sent."""


class SendBudget:
    """Bytes of large frames being sent at once, in the whole process.

    Sending makes a socket's own copy of a frame (joined, encoded, framed, in the transport's
    buffer) that lives until the socket has taken it: one 1 MiB event to 500 readers would be
    500 copies at once. Large frames wait here, in order, until the bytes in flight are under
    `limit` (a frame larger than the limit goes alone), so the copies made at once stay bounded.
    A reader that never takes its frame is closed by the slow-consumer check, which frees its share.
    """

    __slots__ = ("_waiters", "in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, size: int) -> None:
        if not self._waiters and (self.in_flight == 0 or self.in_flight + size <= self.limit):
            self.in_flight += size
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter  # release() counts us in before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # woken and cancelled in the same turn: give the share back
            else:
                self._waiters.remove(entry)
            raise

    def release(self, size: int) -> None:
        self.in_flight -= size
        while self._waiters:
            wanted, waiter = self._waiters[0]
            if self.in_flight and self.in_flight + wanted > self.limit:
                break
            self._waiters.popleft()
            self.in_flight += wanted
            waiter.set_result(None)


class FlushBatch:
    """Starts the writers woken during one turn of the event loop, once that turn is over."""

    __slots__ = ("_ready", "_scheduled")

    def __init__(self) -> None:
        self._ready: list[FrameWriter] = []
        self._scheduled = False

    def add(self, writer: FrameWriter) -> None:
        self._ready.append(writer)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        ready, self._ready = self._ready, []
        self._scheduled = False
        for writer in ready:
            writer._start()


class FrameWriter:
    """Frames go out in order; a full queue refuses more instead of growing."""

    __slots__ = (
        "_batch",
        "_budget",
        "_bytes",
        "_close",
        "_draining",
        "_frames",
        "_limit",
        "_max_bytes",
        "_memory",
        "_name",
        "_send",
        "_task",
        "busy_since",
        "closed",
        "sent",
    )

    def __init__(
        self,
        send: Send,
        limit: int,
        name: str = "switchboard-writer",
        batch: FlushBatch | None = None,
        max_bytes: int = 1 << 20,
        memory: QueueMemory | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        self._send = send
        self._budget = budget  # the process's bound on large frames sent at once
        self._batch = batch  # None: start each drain at once
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0  # characters of the queued frames
        self._memory = memory  # the process's account of every queue
        self._name = name
        self._frames: deque[Frame] | None = None  # created by the first frame, dropped when drained
        self._close: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None  # carries on a drain that had to wait
        self._draining = False
        self.closed = False  # a close was requested (or the peer is gone): nothing more is queued
        self.busy_since = 0.0  # monotonic time the send in progress started, 0 when idle
        self.sent = 0

    @property
    def limit(self) -> int:
        return self._limit

    def offer(self, frame: Frame) -> bool:
        """Queue `frame`; False when the queue is full, in frames or in bytes (a frame larger
        than the byte budget still goes alone into an empty queue). After close, dropped."""
        if self.closed:
            return True
        size = frame_size(frame)
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif len(frames) >= self._limit or self._bytes + size > self._max_bytes:
            return False
        frames.append(frame)
        self._bytes += size
        if self._memory is not None:
            self._memory.add(frame)
        self._wake()
        return True

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket with `code` next; what is queued is dropped unless `flush`."""
        if self.closed:
            return
        self.closed = True
        if not flush:
            self._drop()
        self._close = (code, reason[:120])  # a close reason must fit in 123 bytes
        self._wake()

    def __len__(self) -> int:
        return 0 if self._frames is None else len(self._frames)

    async def stop(self) -> None:
        """Stop sending; what is still queued (a close frame too) is dropped."""
        self.closed = True
        self._drop()
        self._close = None  # a writer still waiting for its FlushBatch then sends nothing
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    def _dequeued(self, frame: Frame, size: int) -> None:
        """`frame` (of `size`) has left the queue to be sent: off its count and the process's."""
        self._bytes -= size
        if self._memory is not None:
            self._memory.remove(frame)

    def _drop(self) -> None:
        """Forget every queued frame (and take them off the process's account)."""
        frames, self._frames = self._frames, None
        self._bytes = 0
        if frames and self._memory is not None:
            for frame in frames:
                self._memory.remove(frame)

    def _wake(self) -> None:
        if not self._draining:
            self._draining = True
            if self._batch is None:
                self._start()
            else:
                self._batch.add(self)

    def _start(self) -> None:
        if self._frames is None and self._close is None:  # stopped while waiting for its batch
            self._draining = False
            return
        self._task = start_eagerly(self._drain(), self._name)

    async def _send_frame(self, send: Send, frame: Frame) -> None:
        """Send one frame in the transport's framing (each transport's writer says how)."""
        raise NotImplementedError

    async def _send_close(self, send: Send, code: int, reason: str) -> None:
        """End the transport: a close frame, the last chunk of a body."""
        raise NotImplementedError

    async def _drain(self) -> None:
        send = self._send
        try:
            # Re-read each turn: close() and stop() drop the queue while a send is in progress.
            while frames := self._frames:
                self.busy_since = time.monotonic()
                frame = frames.popleft()
                size = frame_size(frame)
                self._dequeued(frame, size)
                if self._budget is not None and size >= LARGE_FRAME:
                    await self._budget.acquire(size)
                    try:
                        await self._send_frame(send, frame)
                    finally:
                        self._budget.release(size)
                else:
                    await self._send_frame(send, frame)
                self.sent += 1
            if self._close is not None:
                code, reason = self._close
                self._close = None
                self.busy_since = time.monotonic()
                await self._send_close(send, code, reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Each ASGI server says "that socket is gone" with an exception of its own.
            log.debug("send failed: %r", exc)
            self.closed = True
            self._drop()
        finally:
            # No await since the queue was last seen empty: an offer() now starts a new drain.
            self.busy_since = 0.0
            self._draining = False
            self._task = None
            self._drop()  # empty (or cancelled mid-way): an idle socket keeps no queue
