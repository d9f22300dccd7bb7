"""Request and reply between server processes over their Redis inbox channels.

Used to change a session that lives in another process (openNote over HTTP with a sessionId).
A request to a process that is gone fails at once: PUBLISH reports nobody listening.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import orjson

from switchboard.exceptions import NotFound, SwitchboardError, Unavailable
from switchboard.layers.redis import RedisLayer

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 3.0
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class RemoteError(SwitchboardError):
    """Raised when the other process refused a request; carries that process's error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]


class Inbox:
    """Calls operations on other processes and answers theirs."""

    def __init__(self, layer: RedisLayer, handlers: dict[str, Handler], max_pending: int = 1000) -> None:
        self._layer = layer
        self._handlers = handlers
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_pending = max_pending

    def start(self) -> None:
        """Take the messages sent to this process's inbox (until `close`)."""
        self._layer.listen_inbox(self._on_message)

    @property
    def process_id(self) -> str:
        return self._layer.process_id

    async def call(self, process_id: str, op: str, **args: Any) -> dict[str, Any]:
        """Run `op` in `process_id`; its result, or its refusal raised here."""
        if len(self._pending) >= self._max_pending:
            raise Unavailable("too many cross-process requests in flight")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            request = {
                "kind": "request",
                "id": request_id,
                "reply_to": self.process_id,
                "op": op,
                "args": args,
            }
            if await self._layer.send_to_process(process_id, orjson.dumps(request)) == 0:
                raise NotFound("that session's process is gone")
            try:
                async with asyncio.timeout(REPLY_TIMEOUT):
                    reply = await future
            except TimeoutError:
                raise Unavailable("the session's process did not answer in time") from None
        finally:
            self._pending.pop(request_id, None)
        if "error" in reply:
            raise RemoteError(str(reply.get("message", "refused")), str(reply["error"]))
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def close(self) -> None:
        self._layer.listen_inbox(None)
        for task in list(self._tasks):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for future in self._pending.values():
            future.cancel()

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            kind = message["kind"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("dropped a malformed inbox message")
            return
        if kind == "reply":
            future = self._pending.get(str(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "request" and len(self._tasks) < self._max_pending:
            task = asyncio.get_running_loop().create_task(self._answer(message), name="switchboard-inbox")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"kind": "reply", "id": request.get("id")}
        handler = self._handlers.get(str(request.get("op")))
        try:
            if handler is None:
                raise NotFound(f"unknown operation {request.get('op')!r}")
            reply["result"] = await handler(request.get("args") or {})
        except SwitchboardError as exc:
            reply.update(error=exc.code, message=str(exc))
        except Exception:
            log.exception("inbox request %s failed", request.get("op"))
            reply.update(error="INTERNAL_SERVER_ERROR", message="Internal server error")
        with suppress(Unavailable):
            await self._layer.send_to_process(str(request.get("reply_to")), orjson.dumps(reply))
