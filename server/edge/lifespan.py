"""The ASGI lifespan protocol, driven for the edge's worker: the app's start-up before the first
connection is accepted, its shut-down after the last one ended."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from switchboard.engine.asgi import ASGIApp, Message

log = logging.getLogger(__name__)


SHUTDOWN_TIMEOUT = 10.0


class LifespanFailed(RuntimeError):
    pass


class Lifespan:
    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope), name="switchboard-lifespan")
        await self._step("startup")

    async def shutdown(self) -> None:
        try:
            if self._supported and self._task is not None and not self._task.done():
                await asyncio.wait_for(self._step("shutdown"), SHUTDOWN_TIMEOUT)
        finally:
            if self._task is not None:
                self._task.cancel()
                with suppress(asyncio.CancelledError):
                    await self._task

    async def _step(self, name: str) -> None:
        await self._inbox.put({"type": f"lifespan.{name}"})
        answer = await self._answers.get()
        if answer["type"] == f"lifespan.{name}.failed":
            raise LifespanFailed(f"the app's {name} failed: {answer.get('message', '')}")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._app(scope, self._inbox.get, self._answers.put)
        except Exception:
            log.exception("the app's lifespan failed")
            await self._answers.put({"type": "lifespan.startup.failed", "message": "exception"})
            raise
        finally:
            # An app without lifespan returns at once: start-up and shut-down go on without it.
            self._supported = False
            await self._answers.put({"type": "lifespan.startup.complete"})
            await self._answers.put({"type": "lifespan.shutdown.complete"})
