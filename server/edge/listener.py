"""The edge of one worker: its listening sockets, the WebSocket connections it serves itself and
the HTTP connections it hands to hypercorn (compat/hypercorn_connection.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from typing import Any

from hypercorn.config import Config

from switchboard.compat.hypercorn_connection import HttpConnections
from switchboard.edge.front import Front
from switchboard.edge.head import Head
from switchboard.edge.websocket import WebSocketProtocol
from switchboard.settings import Settings
from switchboard.ws.deflate import extension_factory

log = logging.getLogger(__name__)


class Edge:
    def __init__(self, app: Any, config: Config, settings: Settings, state: dict[str, Any]) -> None:
        self._app = app
        self._config = config
        self._http = HttpConnections(app, config, state)
        self._extension = extension_factory(settings)
        self._websockets: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.AbstractServer] = []

    def _route(self, head: Head | None) -> asyncio.Protocol:
        if head is None:
            return self._http.protocol()
        return WebSocketProtocol(self._app, head, self._extension, self._track, self._config.root_path)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._websockets.add(task)
        task.add_done_callback(self._websockets.discard)

    async def start(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            server = await loop.create_server(
                lambda: Front(self._route), sock=sock, backlog=self._config.backlog
            )
            self._servers.append(server)
            host, port = sock.getsockname()[:2]
            log.info("Running on http://%s:%d (CTRL + C to quit)", host, port)

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def stop(self, grace: float) -> None:
        """After the app's drain: HTTP connections end after their request, and every connection
        still served after `grace` (HTTP or WebSocket) is cut."""
        self.stop_accepting()
        await self._http.terminate()
        running = self._http.tasks | self._websockets
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with suppress(asyncio.CancelledError, Exception):
                await task
