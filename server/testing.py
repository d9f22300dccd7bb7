"""Helpers for the tests of apps that use Switchboard, like Channels' `WebsocketCommunicator`.

- `captured_events()`: what the code under test publishes, recorded instead of sent; no Redis,
  no server (a Django `TestCase` around a view that calls `send_to_group_sync`).
- `serving(app)` and `WebSocketClient`: the real app (`create_app()`), its real WebSocket
  endpoint and protocol, driven in this process over ASGI, with no network and no ASGI server.

    async with serving(create_app(settings)) as app:
        async with WebSocketClient(app, token=token) as client:
            op = await client.subscribe("subscription { events { __typename } }")
            await send_to_group("all", "notify", message="hi")
            event = await client.next(op)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from switchboard.engine.asgi import Message
from switchboard.messages.envelope import Envelope
from switchboard.publish import capture_into

if TYPE_CHECKING:  # the capture works with the plain (publish-only) install
    from switchboard.web.app import Switchboard

TRANSPORT_WS = "graphql-transport-ws"
DEFAULT_TIMEOUT = 5.0


@contextmanager
def captured_events() -> Iterator[list[Envelope]]:
    """Everything published in this process while inside, in order, instead of being sent."""
    events: list[Envelope] = []
    capture_into(events)
    try:
        yield events
    finally:
        capture_into(None)


@asynccontextmanager
async def serving(app: Switchboard, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[Switchboard]:
    """Run the app's start-up (layer, endpoint) as an ASGI server would, and its shutdown after."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.get_running_loop().create_task(app(scope, inbox.get, outbox.put))
    try:
        await inbox.put({"type": "lifespan.startup"})
        started = await asyncio.wait_for(outbox.get(), timeout)
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {started.get('message', started)}")
        yield app
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(outbox.get(), timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class WebSocketClient:
    """One graphql-transport-ws connection to an app served by `serving`, in this process."""

    def __init__(
        self,
        app: Switchboard,
        *,
        token: str | None = None,
        payload: dict[str, Any] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._app = app
        self._payload = dict(payload or {})
        if token is not None:
            self._payload.setdefault("authorization", f"Bearer {token}")
        self._headers = headers or []
        self._timeout = timeout
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self.ack: dict[str, Any] | None = None
        self.close_code: int | None = None

    async def __aenter__(self) -> WebSocketClient:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Handshake and connection_init; returns the connection_ack payload (sessionId, userId)."""
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "path": "/graphql",
            "raw_path": b"/graphql",
            "query_string": b"",
            "headers": self._headers,
            "subprotocols": [TRANSPORT_WS],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "scheme": "ws",
        }
        self._task = asyncio.get_running_loop().create_task(
            self._app(scope, self._to_app.get, self._from_app.put)
        )
        await self._to_app.put({"type": "websocket.connect"})
        accepted = await self._next_message()
        if accepted["type"] != "websocket.accept":
            raise ConnectionError(f"handshake refused: {accepted}")
        await self.send({"type": "connection_init", "payload": self._payload})
        ack = await self.receive()
        if ack.get("type") != "connection_ack":
            raise ConnectionError(f"connection_init refused: {ack}")
        self.ack = ack.get("payload") or {}
        return self.ack

    async def send(self, message: dict[str, Any]) -> None:
        """Send one protocol message as a text frame."""
        await self._to_app.put({"type": "websocket.receive", "text": orjson.dumps(message).decode()})

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next protocol message; ConnectionError when the app closes the socket."""
        frame = await self._next_message(timeout)
        if frame["type"] == "websocket.close":
            self.close_code = int(frame.get("code", 1000))
            raise ConnectionError(f"closed by the server: {self.close_code} {frame.get('reason', '')}")
        text = frame.get("text")
        if text is None:
            raise ConnectionError(f"unexpected ASGI message {frame}")
        message: dict[str, Any] = orjson.loads(text)
        return message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """Start an operation; returns its id."""
        op_id = str(next(self._ids))
        self._pending[op_id] = []
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        await self.send({"id": op_id, "type": "subscribe", "payload": payload})
        return op_id

    async def next(self, op_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The next `next` payload of operation `op_id`; an `error` message raises."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._timeout if timeout is None else timeout)
        while True:
            waiting = self._pending.get(op_id)
            if waiting:
                message = waiting.pop(0)
                if message["type"] == "error":
                    raise RuntimeError(f"operation {op_id} failed: {message.get('payload')}")
                if message["type"] == "complete":
                    raise RuntimeError(f"operation {op_id} completed")
                payload: dict[str, Any] = message["payload"]
                return payload
            message = await self.receive(max(0.0, deadline - loop.time()))
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
            elif "id" in message:
                self._pending.setdefault(message["id"], []).append(message)

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """A query or mutation over this connection; returns its result (data and errors)."""
        return await self.next(await self.subscribe(query, variables), timeout)

    async def complete(self, op_id: str) -> None:
        """Stop operation `op_id`."""
        await self.send({"id": op_id, "type": "complete"})
        self._pending.pop(op_id, None)

    async def close(self) -> None:
        """Disconnect, and wait until the app has let the session go (left all its groups)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(task, self._timeout)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _next_message(self, timeout: float | None = None) -> Message:
        return await asyncio.wait_for(self._from_app.get(), self._timeout if timeout is None else timeout)
