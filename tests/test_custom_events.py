"""A custom event type, added as the README shows, travels end to end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient
from tests.support.processes import ServerProcess, run_python


@pytest.fixture(scope="module")
def chat_server(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}, app="tests.apps.chat:app"
    ).start()
    yield server
    server.stop()


async def test_custom_event_type_reaches_the_events_union(
    chat_server: ServerProcess, publish_env: dict[str, str]
) -> None:
    user = unique("u")
    async with WsClient(chat_server.ws_url, token(user)) as client:
        events = await client.subscribe(
            "subscription { events { __typename"
            " ... on ChatEvent { text group } ... on NotifyEvent { message } } }"
        )
        code = (
            "from switchboard.publish import send_to_group_sync as s\n"
            f"s('user_{user}', 'chat', text=5)\n"  # invalid for its handler: dropped
            f"s('user_{user}', 'send_chat', text='hello')\n"
            f"s('user_{user}', 'notify', message='and a notify')\n"
        )
        run_python(code, publish_env)
        first, second = (await events.next())["events"], (await events.next())["events"]
        assert first == {"__typename": "ChatEvent", "text": "hello", "group": f"user_{user}"}
        assert second == {"__typename": "NotifyEvent", "message": "and a notify"}
        await events.nothing_within(0.3)
