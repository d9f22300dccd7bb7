"""Subscriptions over plain HTTP against live servers: stock clients (graphql-sse in both modes,
Apollo Client 4's HttpLink with multipart, urql with fetchSubscriptions, pinned in
client_examples/stock) and the raw protocol (SSE ids and Last-Event-ID, limits, keepalives,
leaving groups), each stream a session like a WebSocket connection."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, padded_events_reach
from tests.support.processes import ServerProcess
from tests.support.stock import STOCK, StockClient
from tests.test_budgets import rss as rss_of

WAIT = 20.0
EVENTS = """subscription Events($groups: [String!], $notes: [ID!]) {
  events(groups: $groups, notes: $notes) {
    __typename
    ... on NotifyEvent { group message cursor }
    ... on ResumeEvent { group recovered reason cursor }
  }
}"""
SSE = {"accept": "text/event-stream", "content-type": "application/json"}


@pytest.fixture
def server(redis_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return redis_servers[0]


@pytest.fixture
async def start_client(stock_clients: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[StockClient] = []

    async def start(kind: str, server: ServerProcess, user: str, **env: str) -> StockClient:
        full = {
            **os.environ,
            "SWITCHBOARD_URL": server.http_url,
            "SWITCHBOARD_TOKEN": token(user),
            "KIND": kind,
            **env,
        }
        proc = await asyncio.create_subprocess_exec(
            stock_clients, "http_streams.mjs", cwd=STOCK, env=full, stdout=asyncio.subprocess.PIPE
        )
        client = StockClient(proc)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


def notify_in(group: str, message: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("__typename") == "NotifyEvent"
        and e.get("group") == group
        and (message is None or e.get("message") == message)
    )


async def until_joined(client: StockClient, group: str, publish: Callable[[str, str], None]) -> None:
    """Publish probes to `group` until the client shows one: it is subscribed and in the group."""
    for attempt in range(60):
        await asyncio.to_thread(publish, group, f"probe-{attempt}")
        try:
            await client.until(lambda e: notify_in(group)(e) and e["message"].startswith("probe-"), 0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"the client never received events of {group}: {client.seen[-5:]}")


def messages(client: StockClient, group: str) -> list[str]:
    return [
        e["message"] for e in client.seen if notify_in(group)(e) and not e["message"].startswith("probe-")
    ]


@pytest.mark.parametrize("kind", ["sse", "sse-single", "apollo", "urql"])
async def test_a_stock_http_client_gets_its_groups_and_notes(
    kind: str, server: ServerProcess, start_client: Callable[..., Any], publishing: Callable[[str, str], None]
) -> None:
    user, note, opened = unique("u"), unique("n"), unique("o")
    extra = {"OPEN_NOTE": opened} if kind == "sse-single" else {}
    client = await start_client(kind, server, user, NOTES=note, **extra)
    await until_joined(client, f"note_{note}", publishing)
    await until_joined(client, f"user_{user}", publishing)
    if kind == "sse-single":  # openNote sent over the reservation runs on the stream's session
        await until_joined(client, f"note_{opened}", publishing)
    for group in (f"note_{note}", f"user_{user}"):
        for message in ("one", "two", "three"):
            await asyncio.to_thread(publishing, group, message)
        await client.until(notify_in(group, "three"), WAIT)
        assert messages(client, group) == ["one", "two", "three"]  # each once, in order


@pytest.mark.parametrize("kind", ["sse", "sse-single", "apollo", "urql"])
async def test_a_stock_http_client_is_told_why_a_subscription_is_refused(
    kind: str, server: ServerProcess, start_client: Callable[..., Any]
) -> None:
    query = 'subscription { events(groups: ["not a group"]) { __typename } }'
    client = await start_client(kind, server, unique("u"), QUERY=query)
    refused = await client.until(lambda e: "error" in e, WAIT)
    assert refused["code"] == "BAD_USER_INPUT", refused
    assert "group name" in refused["error"]


# -- the raw protocol --------------------------------------------------------------------------


class SseReader:
    """An SSE response read event by event (httpx streaming)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next_event(self, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        """The next event as {"event", "id", "data" (parsed)}."""
        event: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if "event" in event:
                        data = event.get("data", "")
                        event["data"] = orjson.loads(data) if data else None
                        return event
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if not field:
                    self.comments.append(value)
                elif field == "retry":
                    self.retry = int(value)
                else:
                    event[field] = value
        raise AssertionError(f"the stream ended; comments: {self.comments}")

    async def next_notify(self, timeout: float = WAIT) -> dict[str, Any]:  # noqa: ASYNC109
        while True:
            event = await self.next_event(timeout)
            data = event["data"] or {}
            if (data.get("data") or {}).get("events", {}).get("__typename") != "PresenceEvent":
                return event


async def open_sse(
    client: httpx.AsyncClient,
    server: ServerProcess,
    user: str,
    variables: dict[str, Any],
    last_event_id: str | None = None,
) -> tuple[httpx.Response, SseReader]:
    headers = {**SSE, "authorization": f"Bearer {token(user)}"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    request = client.build_request(
        "POST", server.http_url, headers=headers, json={"query": EVENTS, "variables": variables}
    )
    response = await client.send(request, stream=True)
    assert response.status_code == 200, await response.aread()
    assert response.headers["content-type"].startswith("text/event-stream")
    return response, SseReader(response)


def event_of(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event["data"]["data"]["events"])


async def test_last_event_id_resumes_every_missed_event_once(
    server: ServerProcess, publishing: Callable[[str, str], None]
) -> None:
    user = unique("u")
    group = f"user_{user}"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response, reader = await open_sse(client, server, user, {"groups": [group]})
        assert reader.retry is None  # read with the first event
        await asyncio.to_thread(publishing, group, "before")
        first = await reader.next_notify()
        assert reader.retry == 1000  # EventSource reconnects within a second
        assert event_of(first)["message"] == "before"
        assert first["id"] == f"{group}={event_of(first)['cursor']}"
        await response.aclose()

        for message in ("during-1", "during-2"):
            await asyncio.to_thread(publishing, group, message)
        response, reader = await open_sse(client, server, user, {"groups": [group]}, first["id"])
        resumed = event_of(await reader.next_notify())
        assert resumed["__typename"] == "ResumeEvent" and resumed["recovered"] is True, resumed
        missed = [await reader.next_notify() for _ in range(2)]
        assert [event_of(e)["message"] for e in missed] == ["during-1", "during-2"]
        # Each replayed event's id is its own position: a break after during-1 resumes at during-2.
        assert [e["id"] for e in missed] == [f"{group}={event_of(e)['cursor']}" for e in missed]
        await asyncio.to_thread(publishing, group, "after")
        assert event_of(await reader.next_notify())["message"] == "after"
        await response.aclose()


async def test_a_stale_or_foreign_last_event_id_is_answered_not_guessed(server: ServerProcess) -> None:
    user = unique("u")
    group = f"user_{user}"
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response, reader = await open_sse(client, server, user, {"groups": [group]}, f"{group}=0badepoch0:3")
        resumed = event_of(await reader.next_notify())
        assert resumed["recovered"] is False and resumed["reason"], resumed
        await response.aclose()

        response, reader = await open_sse(client, server, user, {"groups": [group]}, "whatever")
        refused = await reader.next_event()
        assert refused["event"] == "next"
        assert refused["data"]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert (await reader.next_event())["event"] == "complete"
        await response.aclose()


async def presence_sessions(client: httpx.AsyncClient, server: ServerProcess, user: str, group: str) -> int:
    query = "query($g: String!) { presence(group: $g) { sessions } }"
    answer = await client.post(
        server.http_url,
        json={"query": query, "variables": {"g": group}},
        headers={"authorization": f"Bearer {token(user)}"},
    )
    return int(answer.json()["data"]["presence"]["sessions"])


async def test_a_stream_is_a_session_that_leaves_its_groups_when_it_ends(
    server: ServerProcess, publishing: Callable[[str, str], None]
) -> None:
    user, note, opened = unique("u"), unique("n"), unique("o")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response, reader = await open_sse(client, server, user, {"notes": [note]})
        session = response.headers["x-switchboard-session"]
        metrics = (await client.get(f"{server.base_url}/metrics")).text
        gauge = next(line for line in metrics.splitlines() if line.startswith("switchboard_http_streams "))
        assert float(gauge.split()[1]) >= 1
        # openNote over plain HTTP names the stream's session, as for a WebSocket's.
        answer = await client.post(
            server.http_url,
            json={"query": f'mutation {{ openNote(noteId: "{opened}", sessionId: "{session}") {{ id }} }}'},
            headers={"authorization": f"Bearer {token(user)}"},
        )
        assert answer.json()["data"]["openNote"]["id"] == session, answer.text
        for group in (f"note_{note}", f"note_{opened}"):
            await asyncio.to_thread(publishing, group, "hello")
            got = event_of(await reader.next_notify())
            assert (got["group"], got["message"]) == (group, "hello")
            assert await presence_sessions(client, server, user, group) == 1
        await response.aclose()
        for _ in range(100):  # the stream's end is seen, and every group left, within 10 s
            left = [await presence_sessions(client, server, user, f"note_{n}") for n in (note, opened)]
            if left == [0, 0]:
                break
            await asyncio.sleep(0.1)
        assert left == [0, 0]


async def test_a_query_over_sse_is_one_result_then_complete(server: ServerProcess) -> None:
    user = unique("u")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        headers = {**SSE, "authorization": f"Bearer {token(user)}"}
        answer = await client.post(server.http_url, headers=headers, json={"query": "{ me { id } }"})
        reader = SseReader(answer)
        result = await reader.next_event()
        assert result["data"] == {"data": {"me": {"id": user}}}
        assert (await reader.next_event())["event"] == "complete"


async def test_single_connection_mode_refuses_what_it_cannot_match(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        headers = {"x-graphql-event-stream-token": "nope", "content-type": "application/json"}
        answer = await client.post(
            server.http_url,
            headers=headers,
            json={"query": "{ me { id } }", "extensions": {"operationId": "1"}},
        )
        assert answer.status_code == 404
        assert answer.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        # A page's own ?token= (GraphiQL's) is no reservation: the page is served as before.
        page = await client.get(f"{server.http_url}?token=abc", headers={"accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        token_ = (await client.put(server.http_url)).text
        answer = await client.post(
            server.http_url,
            headers={**headers, "x-graphql-event-stream-token": token_},
            json={"query": "{ me { id } }"},
        )
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.fixture
def limited(redis_url: str, prefix: str) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {
            "REDIS_URL": redis_url,
            "SWITCHBOARD_PREFIX": prefix,
            "SWITCHBOARD_MAX_STREAMS_PER_USER": "2",
            "SWITCHBOARD_STREAM_KEEPALIVE": "1",
        }
    ).start()
    yield server
    server.stop()


async def test_streams_per_user_are_limited_and_idle_streams_keep_alive(
    limited: ServerProcess, publishing: Callable[[str, str], None]
) -> None:
    user, bystander = unique("u"), unique("b")
    async with httpx.AsyncClient(timeout=WAIT) as client:
        mine = [await open_sse(client, limited, user, {"groups": [f"user_{user}"]}) for _ in range(2)]
        theirs, reader = await open_sse(client, limited, bystander, {"groups": [f"user_{bystander}"]})
        third = await client.post(
            limited.http_url,
            headers={**SSE, "authorization": f"Bearer {token(user)}"},
            json={"query": EVENTS, "variables": {}},
        )
        assert third.status_code == 200  # EventSource fails for good on an error status
        assert "retry: 3000" in third.text
        assert '"code":"RATE_LIMITED"' in third.text
        assert "event: complete" not in third.text  # ended without completing: clients retry

        await asyncio.sleep(2.5)  # idle: keepalive comments, every second here
        await asyncio.to_thread(publishing, f"user_{bystander}", "still here")
        assert event_of(await reader.next_notify())["message"] == "still here"
        assert reader.comments.count("") >= 1, reader.comments

        request = client.build_request(
            "POST",
            limited.http_url,
            headers={
                "accept": "multipart/mixed;subscriptionSpec=1.0",
                "authorization": f"Bearer {token(bystander)}",
            },
            json={"query": EVENTS, "variables": {"groups": [f"user_{bystander}"]}},
        )
        multipart = await client.send(request, stream=True)
        assert multipart.headers["content-type"].startswith("multipart/mixed")
        received = b""
        async with asyncio.timeout(5):
            async for chunk in multipart.aiter_bytes():
                received += chunk
                if b"\r\n\r\n{}\r\n--graphql" in received:  # Apollo's heartbeat part
                    break
        await multipart.aclose()
        for response, _ in mine:
            await response.aclose()
        await theirs.aclose()


def stalled_sse(port: int, note: str, user: str) -> socket.socket:
    """An SSE stream of `note` whose reader takes the response head, then stops reading (a small
    receive buffer, so the server feels the push-back)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    query = "subscription($n: [ID!]) { events(notes: $n) { ... on DataEvent { payload } } }"
    body = orjson.dumps({"query": query, "variables": {"n": [note]}})
    head = (
        f"POST /graphql HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n"
        f"authorization: Bearer {token(user)}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(1024)
    assert received.startswith(b"HTTP/1.1 200"), received
    return sock


def drain(sock: socket.socket) -> bytes:
    """Everything left, until the server ends the response (the chunked body's last chunk)."""
    received = b""
    while not received.endswith(b"0\r\n\r\n"):
        data = sock.recv(1 << 16)
        if not data:
            break
        received += data
    return received


async def test_a_stream_whose_reader_stalls_is_ended_and_costs_only_its_byte_budget(
    redis_url: str, prefix: str
) -> None:
    """Ten SSE readers stop reading while 200 events of 29 KB go to their note: each stream is
    ended once its queue holds SWITCHBOARD_QUEUE_BYTES, its last words a comment saying why
    (EventSource then reconnects and resumes); the server grows by a few MB; a WebSocket
    bystander in the same note gets every event."""
    server = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}).start()
    note = unique("n")
    stalled: list[socket.socket] = []
    try:
        async with WsClient(server.ws_url, token(unique("b"))) as bystander:
            await bystander.execute("mutation($n: ID!) { openNote(noteId: $n) { id } }", n=note)
            events = await bystander.events([f"note_{note}"])
            for _ in range(10):
                stalled.append(await asyncio.to_thread(stalled_sse, server.port, note, unique("s")))
            await asyncio.sleep(0.5)
            before = rss_of(server)
            count = 200
            await padded_events_reach(events, server, f"note_{note}", count, "'x' * 29000")
            growth = rss_of(server) - before
            ends = await asyncio.gather(*(asyncio.to_thread(drain, s) for s in stalled))
        assert all(b": closed: slow consumer" in end[-2000:] for end in ends), [e[-300:] for e in ends]
        assert growth < 48 << 20, f"RSS grew {growth / 1e6:.0f} MB"
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


async def renders(client: httpx.AsyncClient, server: ServerProcess) -> float:
    metrics = (await client.get(f"{server.base_url}/metrics")).text
    return float(
        next(x for x in metrics.splitlines() if x.startswith("switchboard_event_renders_total ")).split()[1]
    )


async def test_every_transport_shares_one_rendering_per_event(
    server: ServerProcess, publishing: Callable[[str, str], None]
) -> None:
    """Two SSE streams, a multipart stream and a WebSocket subscription with one document: each
    event is rendered once for all four (no per-stream execution)."""
    note = unique("n")
    group = f"note_{note}"
    variables = {"groups": [group], "notes": [note]}
    async with httpx.AsyncClient(timeout=WAIT) as client, WsClient(server.ws_url, token(unique("w"))) as ws:
        streams = [await open_sse(client, server, unique("s"), variables) for _ in range(2)]
        request = client.build_request(
            "POST",
            server.http_url,
            headers={
                "accept": "multipart/mixed;subscriptionSpec=1.0",
                "authorization": f"Bearer {token(unique('m'))}",
            },
            json={"query": EVENTS, "variables": variables},
        )
        multipart = await client.send(request, stream=True)
        chunks = multipart.aiter_bytes()
        subscription = await ws.subscribe(EVENTS, **variables)

        async def everyone_gets(message: str) -> None:
            for _, reader in streams:
                while event_of(await reader.next_notify()).get("message") != message:
                    pass
            seen = b""
            async with asyncio.timeout(WAIT):
                while f'"message":"{message}"'.encode() not in seen:
                    seen += await anext(chunks)
            while (await subscription.next())["events"].get("message") != message:
                pass

        for attempt in range(50):  # until all four are in the note
            await asyncio.to_thread(publishing, group, f"probe-{attempt}")
            try:
                async with asyncio.timeout(0.5):
                    await everyone_gets(f"probe-{attempt}")
                break
            except TimeoutError:
                continue
        before = await renders(client, server)
        for message in ("one", "two", "three"):
            await asyncio.to_thread(publishing, group, message)
        await everyone_gets("three")
        assert await renders(client, server) - before == 3
        await multipart.aclose()
        for response, _ in streams:
            await response.aclose()


@pytest.fixture
def redis_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}


@pytest.mark.parametrize(
    ("earlier", "stop"),
    [(True, "sigterm"), (False, "sigterm"), (False, "kill")],
    ids=["an-event-before", "nothing-before", "killed-nothing-before"],
)
@pytest.mark.parametrize("kind", ["sse", "apollo", "urql-sse"])
async def test_a_stock_http_client_misses_nothing_across_a_restart(
    kind: str,
    earlier: bool,
    stop: str,
    start_client: Callable[..., Any],
    publishing: Callable[[str, str], None],
    redis_env: dict[str, str],
) -> None:
    """Configured as the README says (cursors kept, sent back as Last-Event-ID on every attempt):
    the stream ends with the server (SIGTERM) or breaks (SIGKILL), the client retries until it is
    back, and every event of the note arrives once, in order, whether or not one had reached it
    before the cut."""
    server = ServerProcess(redis_env).start()
    user, note = unique("u"), unique("n")
    group = f"note_{note}"
    before = ["before-1", "before-2"] if earlier else []
    try:
        client = await start_client(kind, server, user, NOTES=note)
        start = await client.until(
            lambda e: e.get("__typename") == "ResumeEvent" and e["group"] == group, WAIT
        )
        assert start["recovered"] is True and start["cursor"], start
        for message in before:
            await asyncio.to_thread(publishing, group, message)
        if before:
            await client.until(notify_in(group, before[-1]), WAIT)

        if stop == "kill":  # no closing frame, no clean-up: the stream just breaks
            server.stop(signal.SIGKILL)
        else:
            assert server.stop() == 0
        for message in ("during-1", "during-2", "during-3"):
            await asyncio.to_thread(publishing, group, message)
        server = server.on_same_port().start()

        resumed = await client.until(
            lambda e: e.get("__typename") == "ResumeEvent" and e["group"] == group, WAIT
        )
        assert resumed["recovered"] is True, resumed
        for message in ("after-1", "after-2"):
            await asyncio.to_thread(publishing, group, message)
        await client.until(notify_in(group, "after-2"), WAIT)
    finally:
        server.stop()
    assert messages(client, group) == [*before, "during-1", "during-2", "during-3", "after-1", "after-2"]
