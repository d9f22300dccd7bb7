"""The edge's WebSocket protocol under uvicorn, through its extension point for WebSocket
implementations: `uvicorn.Config(ws=UvicornWebSocket)` (a class in place of "wsproto" or
"websockets"). uvicorn's HTTP protocol hands it each upgrade (the transport, then the request
head as the first data) and calls `shutdown()` on what is still open when it stops."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from wsproto.extensions import Extension

from switchboard.edge.websocket import WebSocketProtocol
from switchboard.settings import Settings
from switchboard.ws.deflate import extension_factory


class UvicornWebSocket(WebSocketProtocol):
    __slots__ = ("_connections", "_tasks")

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        super().__init__(config.loaded_app, None, _extension(), self._track_task, config.root_path)
        self._connections: set[Any] = server_state.connections  # uvicorn's: shut down when it stops
        self._tasks: set[asyncio.Task[None]] = server_state.tasks  # waited for when it stops

    def _track_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self.cut()


@functools.cache
def _extension() -> Callable[[], Extension]:
    """The process's one extension factory: its shared compressor and contexts serve every socket."""
    return extension_factory(Settings.from_env())
