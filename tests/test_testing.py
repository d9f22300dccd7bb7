"""switchboard.testing, as an app's own tests use it: the real app and protocol in-process."""

from __future__ import annotations

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
