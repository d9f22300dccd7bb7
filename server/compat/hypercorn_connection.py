"""Serving one already accepted connection with hypercorn (tested: 0.17, 0.18).

The edge (switchboard.edge) accepts every connection itself and keeps the WebSocket upgrades;
the rest it hands to hypercorn unchanged, as a transport and the bytes read from it so far.
hypercorn has no public call for "serve this connection": its `worker_serve` passes
`TCPServer(app, loop, config, context, state, reader, writer)` to `asyncio.start_server` for
every connection it accepts, with one `WorkerContext` per worker. `HttpConnections` does the
same for the connections it is handed. tests/test_compat.py fails when that constructor changes.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.utils import wrap_app

EXPECTED = ["app", "loop", "config", "context", "state", "reader", "writer"]


def check() -> None:
    """Raise if hypercorn's per-connection server no longer takes what this module gives it."""
    names = list(inspect.signature(TCPServer.__init__).parameters)[1:]
    if names != EXPECTED:
        raise RuntimeError(
            f"hypercorn's TCPServer takes {names}: see switchboard/compat/hypercorn_connection.py"
        )


class HttpConnections:
    """hypercorn serving the connections it is handed (`protocol()` for each), in one worker."""

    def __init__(self, app: Any, config: Config, state: dict[str, Any]) -> None:
        check()
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")
        self._config = config
        self._state = state
        self._context = WorkerContext(config.max_requests)
        self._tasks: set[asyncio.Task[None]] = set()

    def protocol(self) -> asyncio.Protocol:
        """A protocol for one connection: hypercorn's, reached through asyncio's streams."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        return asyncio.StreamReaderProtocol(reader, self._serve, loop=loop)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        loop = asyncio.get_running_loop()
        await TCPServer(self._app, loop, self._config, self._context, self._state, reader, writer)

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """The connections being served, one task each."""
        return set(self._tasks)

    async def terminate(self) -> None:
        """Keep-alive connections end after the request they are serving (hypercorn's own stop)."""
        await self._context.terminated.set()
