"""switchboard.testing, as an app's own tests use it: the real app and protocol in-process."""

from __future__ import annotations

import asyncio

import pytest

from switchboard import Settings, create_app, send_to_group, send_to_group_sync
from switchboard.exceptions import LayerNotConfigured
from switchboard.security.auth import mint_token
from switchboard.testing import WebSocketClient, captured_events, serving

EVENTS = "subscription { events { __typename ... on NotifyEvent { group message } } }"


def test_captured_events_records_what_a_view_publishes_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with captured_events() as events:
        send_to_group_sync("user_7", "send_notify", message="saved", status="success")
    assert [(e.group, e.type, e.fields["message"]) for e in events] == [("user_7", "notify", "saved")]
    with pytest.raises(LayerNotConfigured):  # outside the block, nothing captures any more
        send_to_group_sync("user_7", "notify", message="lost")


async def test_a_client_in_process_receives_group_events_and_leaves_its_groups() -> None:
    settings = Settings()
    app = create_app(settings)
    async with serving(app):
        async with WebSocketClient(app, token=mint_token(settings.secret, "7")) as client:
            assert client.ack is not None and client.ack["userId"] == "7"
            op = await client.subscribe(EVENTS)
            me = await client.execute("{ me { id } }")
            assert me["data"] == {"me": {"id": "7"}}
            await send_to_group("user_7", "notify", message="hello")
            payload = await client.next(op)
            assert payload["data"]["events"] == {
                "__typename": "NotifyEvent",
                "group": "user_7",
                "message": "hello",
            }
            assert app.services.layer.local_count("user_7") == 1  # type: ignore[attr-defined]
        layer = app.services.layer
        assert layer.local_count("user_7") == 0 and layer.local_count("all") == 0  # type: ignore[attr-defined]
        assert len(app.services.sessions) == 0


async def test_two_apps_live_in_one_process() -> None:
    """No process-wide state is one app's: stopping the second leaves the first publishing."""
    first, second = create_app(Settings()), create_app(Settings())
    async with serving(first), WebSocketClient(first) as a:
        op = await a.subscribe(EVENTS)
        async with serving(second), WebSocketClient(second) as b:
            assert a.ack and b.ack and a.ack["sessionId"] != b.ack["sessionId"]
            assert len(first.services.sessions) == len(second.services.sessions) == 1
        await send_to_group("all", "notify", message="still here")
        payload = await a.next(op)
        assert payload["data"]["events"]["message"] == "still here"
    # Each app counts what it did (/metrics), not what the other did in the same process.
    assert first.services.stats.published["notify"] == 1 and first.services.stats.delivered >= 1
    assert second.services.stats.published["notify"] == 0 and second.services.stats.delivered == 0
    assert first.services.stats.renders == 1


class KeepAliveApp:
    """The app's connect endpoint on HTTP/1.1 keep-alive: it knows which connections are open."""

    def __init__(self) -> None:
        self.open = 0
        self.served = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/connect"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                body = b'{"user": "7"}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                self.served += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def test_the_clients_an_app_opens_are_closed_when_it_stops() -> None:
    """The app's connect endpoint is asked over a pooled keep-alive connection; stopping the app
    closes it (the client was never closed: its connections lived as long as the process)."""
    hook = KeepAliveApp()
    async with hook as url:
        app = create_app(Settings(connect_url=url))
        async with serving(app):
            async with WebSocketClient(app, headers=[(b"cookie", b"session=abc")]) as client:
                assert client.ack is not None and client.ack["userId"] == "7"
            assert hook.served == 1 and hook.open == 1
        for _ in range(50):
            if hook.open == 0:
                break
            await asyncio.sleep(0.02)
        assert hook.open == 0


async def test_the_app_refuses_a_message_over_the_limit_whatever_serves_it() -> None:
    """Behind an ASGI server that counts nothing (this in-process one; the servers we run refuse
    from the frame header, compat/ws_frame_limit.py), the app itself closes with 1009: in bytes,
    so 340 euro signs (361 characters in all) are over a 1024-byte limit."""
    app = create_app(Settings(max_message_bytes=1024))
    async with serving(app), WebSocketClient(app) as client:
        await client.send({"type": "ping", "pad": "€" * 340})  # ~1040 bytes, 361 characters
        with pytest.raises(ConnectionError, match="1009"):
            await client.receive()
