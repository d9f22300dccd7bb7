"""Reconnecting as stock clients do: Apollo Client 4 and urql on graphql-ws (pinned in
client_examples/stock), configured only as the README says. Across a server restart, or a
server killed with -9 and the client moving to another, the client is back in its note and gets
every event exactly once, in order, or an explicit `recovered: false`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, http
from tests.support.frames import FramePeer
from tests.support.processes import ServerProcess
from tests.support.stock import STOCK, StockClient


@pytest.fixture
async def start_client(stock_clients: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[StockClient] = []

    async def start(kind: str, urls: list[str], user: str, notes: list[str]) -> StockClient:
        env = {
            **os.environ,
            "SWITCHBOARD_URLS": ",".join(urls),
            "SWITCHBOARD_TOKEN": token(user),
            "NOTES": ",".join(notes),
        }
        proc = await asyncio.create_subprocess_exec(
            stock_clients, f"{kind}.mjs", cwd=STOCK, env=env, stdout=asyncio.subprocess.PIPE
        )
        client = StockClient(proc)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


def notify_in(group: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e.get("__typename") == "NotifyEvent" and e.get("group") == group


async def publish_all(publish: Callable[[str, str], None], group: str, messages: list[str]) -> None:
    for message in messages:
        await asyncio.to_thread(publish, group, message)


def received(client: StockClient, group: str) -> list[str]:
    return [
        e["message"] for e in client.seen if notify_in(group)(e) and not e["message"].startswith("probe-")
    ]


@pytest.fixture
def redis_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}


def started_in(group: str) -> Callable[[dict[str, Any]], bool]:
    """The ResumeEvent giving the subscription's position in `group` when it starts."""
    return lambda e: e.get("__typename") == "ResumeEvent" and e.get("group") == group


@pytest.mark.parametrize("earlier", [True, False], ids=["an-event-before", "nothing-before"])
@pytest.mark.parametrize("kind", ["apollo", "urql"])
async def test_a_stock_client_keeps_its_note_and_misses_nothing_across_a_restart(
    kind: str,
    earlier: bool,
    start_client: Callable[..., Any],
    publishing: Callable[[str, str], None],
    redis_env: dict[str, str],
) -> None:
    """With or without an event in the note before the cut: the subscription's start gave the
    client a position in every group it covers, which its connectionParams send back."""
    server = ServerProcess(redis_env).start()
    user, note = unique("u"), unique("n")
    group = f"note_{note}"
    before = ["before-1", "before-2"] if earlier else []
    try:
        client = await start_client(kind, [server.ws_url], user, [note])
        start = await client.until(started_in(group))
        assert start["recovered"] is True and start["cursor"], start
        await publish_all(publishing, group, before)
        if before:
            await client.until(lambda e: notify_in(group)(e) and e["message"] == "before-2")

        assert server.stop() == 0  # SIGTERM: every socket closed with 1001; graphql-ws reconnects
        await publish_all(publishing, group, ["during-1", "during-2", "during-3"])
        server = server.on_same_port().start()

        resumed = await client.until(started_in(group))
        assert resumed["recovered"] is True, resumed
        await publish_all(publishing, group, ["after-1", "after-2"])
        await client.until(lambda e: notify_in(group)(e) and e["message"] == "after-2")
    finally:
        server.stop()
    assert received(client, group) == [*before, "during-1", "during-2", "during-3", "after-1", "after-2"]


@pytest.mark.parametrize("earlier", [True, False], ids=["an-event-before", "nothing-before"])
@pytest.mark.parametrize("kind", ["apollo", "urql"])
async def test_a_stock_client_moves_to_another_server_when_its_own_is_killed(
    kind: str,
    earlier: bool,
    start_client: Callable[..., Any],
    publishing: Callable[[str, str], None],
    redis_env: dict[str, str],
) -> None:
    first, second = ServerProcess(redis_env).start(), ServerProcess(redis_env).start()
    user, note = unique("u"), unique("n")
    group = f"note_{note}"
    before = ["before-1"] if earlier else []
    try:
        client = await start_client(kind, [first.ws_url, second.ws_url], user, [note])
        await client.until(started_in(group))
        await publish_all(publishing, group, before)
        if before:
            await client.until(lambda e: notify_in(group)(e) and e["message"] == "before-1")

        first.stop(signal.SIGKILL)  # no close frame, no clean-up: the client sees the socket die
        await publish_all(publishing, group, ["during-1", "during-2"])
        resumed = await client.until(started_in(group))
        assert resumed["recovered"] is True, resumed
        await publish_all(publishing, group, ["after-1"])
        await client.until(lambda e: notify_in(group)(e) and e["message"] == "after-1")
    finally:
        first.stop()
        second.stop()
    assert received(client, group) == [*before, "during-1", "during-2", "after-1"]


@pytest.fixture(scope="module")
def small_queue(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix, "SWITCHBOARD_QUEUE_SIZE": "5"}
    ).start()
    yield server
    server.stop()


async def test_a_replay_longer_than_the_queue_is_not_recovered_instead_of_cut(
    small_queue: ServerProcess, publishing: Callable[[str, str], None]
) -> None:
    """29 missed events and a queue of 5: `recovered: false` ("too many missed events"), then
    live events; never a partial replay called recovered."""
    user = unique("u")
    group = f"user_{user}"
    query = (
        "subscription($s: [SinceInput!]) { events(since: $s) { __typename"
        " ... on NotifyEvent { message cursor } ... on ResumeEvent { recovered reason } } }"
    )
    async with WsClient(small_queue.ws_url, token(user)) as client:
        sub = await client.subscribe(
            "subscription { events { __typename ... on NotifyEvent { message cursor } } }"
        )
        await asyncio.to_thread(publishing, group, "mark")
        mark = (await sub.next())["events"]
    for i in range(29):
        await asyncio.to_thread(publishing, group, f"missed-{i}")
    async with FramePeer("127.0.0.1", small_queue.port) as peer:
        await peer.init(token(user))
        await peer.send(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"s": [{"group": group, "cursor": mark["cursor"]}]}},
            }
        )
        _, resume = await peer.message()
        event = resume["payload"]["data"]["events"]
        assert event == {"__typename": "ResumeEvent", "recovered": False, "reason": event["reason"]}
        assert "too many missed events (29)" in event["reason"]
        await asyncio.to_thread(publishing, group, "live")
        _, live = await peer.message()
        assert live["payload"]["data"]["events"]["message"] == "live"


@pytest.fixture(params=["memory", "redis", "cluster"])
def any_layer_server(request: pytest.FixtureRequest, redis_env: dict[str, str]) -> Iterator[ServerProcess]:
    if request.param == "memory":
        yield request.getfixturevalue("memory_server")
    elif request.param == "redis":
        yield request.getfixturevalue("redis_servers")[0]
    else:
        server = ServerProcess({"REDIS_URL": request.getfixturevalue("redis_cluster_url")}).start()
        yield server
        server.stop()


async def test_subscription_count_and_declared_notes_are_right_on_every_layer(
    any_layer_server: ServerProcess,
) -> None:
    user, note = unique("u"), unique("n")
    sessions = "{ sessions { id groups subscriptionCount } }"
    async with WsClient(any_layer_server.ws_url, token(user)) as client:
        info = await client.session_info()
        await client.subscribe(f'subscription {{ events(notes: ["{note}"]) {{ __typename }} }}')
        await client.subscribe("subscription { notify { message } }")
        for _ in range(50):
            found = (await http(any_layer_server.http_url, sessions, token=token(user)))["data"]["sessions"]
            mine = next(s for s in found if s["id"] == info["id"])
            if mine["subscriptionCount"] == 2 and f"note_{note}" in mine["groups"]:
                break
            await asyncio.sleep(0.1)
        assert mine["subscriptionCount"] == 2 and f"note_{note}" in mine["groups"], mine


@pytest.fixture(scope="module")
def policed() -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_NOTE_POLICY": "tests.apps.policies:can_open_note"}).start()
    yield server
    server.stop()


async def test_a_note_declared_by_a_subscription_and_opened_by_openNote_is_held_by_both(
    policed: ServerProcess,
) -> None:
    user, note = unique("u"), unique("n")
    group = f"note_{note}"
    async with WsClient(policed.ws_url, token(user)) as client:
        events = await client.subscribe(
            "subscription($n: [ID!]) { events(notes: $n) { ... on NotifyEvent { message } } }", n=[note]
        )
        await client.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
        await client.execute("mutation($n: ID!) { closeNote(noteId: $n) { id } }", n=note)
        assert group in (await client.session_info())["groups"]  # the subscription still holds it
        body = await http(
            policed.http_url,
            'mutation($g: String!) { sendNotify(group: $g, message: "still in") { id } }',
            token=token("svc", publisher=True),
            g=group,
        )
        assert "errors" not in body, body
        assert (await events.next())["events"]["message"] == "still in"
        await events.stop()  # completes it: the last hold goes, and the note with it
        for _ in range(50):
            if group not in (await client.session_info())["groups"]:
                break
            await asyncio.sleep(0.05)
        assert group not in (await client.session_info())["groups"]


async def test_a_note_the_policy_refuses_fails_that_subscription_only(policed: ServerProcess) -> None:
    user = unique("u")
    async with FramePeer("127.0.0.1", policed.port) as peer:
        await peer.init(token(user))
        query = 'subscription { events(notes: ["secret-1"]) { __typename } }'
        await peer.send({"id": "1", "type": "subscribe", "payload": {"query": query}})
        _, refused = await peer.message()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        await peer.send({"id": "2", "type": "subscribe", "payload": {"query": "{ session { groups } }"}})
        _, fine = await peer.message()
        assert fine["type"] == "next" and "note_secret-1" not in fine["payload"]["data"]["session"]["groups"]
