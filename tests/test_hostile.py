"""Property-based hostile input against a running server. After every case the server still
serves others, and a client connected throughout has received every event published."""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import token, unique
from tests.support.client import Subscription, WsClient, error_codes, http
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
DATA = "mutation($g: String!, $p: JSON!) { sendData(group: $g, payload: $p) { id } }"
GROUP_RULE = re.compile(r"[A-Za-z0-9\-_.]{1,99}")
PROTOCOL_CLOSE_CODES = {4400, 4401, 4409, 4429, 1009}
EXAMPLES = 60
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
message_types = st.sampled_from(
    [
        "connection_init",
        "subscribe",
        "complete",
        "ping",
        "pong",
        "start",
        "stop",
        "next",
        "error",
        "ka",
        "",
        "x",
    ]
)
# Integers within 64 bits: the test's own JSON encoder (orjson) cannot write larger ones.
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
ids = st.one_of(st.text(max_size=200), int64, st.none(), st.lists(int64, max_size=3))
queries = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "subscription { events { __typename } }",
            "{ session { id } }",
            'mutation { closeNote(noteId: "x") { id } }',
            "subscription { notify(group: 5) { id } }",
            'subscription { data(group: "bad group") { id } }',
            "query Q { me { id } } query R { me { id } }",
        ]
    ),
)
protocol_messages = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"type": message_types},
        optional={
            "id": ids,
            "payload": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {"query": queries}, optional={"variables": json_values, "operationName": json_values}
                ),
            ),
        },
    ),
)


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[ServerProcess]:
    server = ServerProcess(
        {
            "SWITCHBOARD_MAX_MESSAGE_BYTES": "4096",
            "SWITCHBOARD_MUTATION_RATE": "1000",
            "SWITCHBOARD_MUTATION_BURST": "1000",
            # Hundreds of generated cases from one user: budgets are tested on their own.
            "SWITCHBOARD_OPERATION_RATE": "1000",
            "SWITCHBOARD_OPERATION_BURST": "1000",
        }
    ).start()
    yield server
    server.stop()


class Bystander:
    """Connected throughout; `check` publishes one more event and expects it, in order."""

    def __init__(self, server: ServerProcess, client: WsClient, events: Subscription, user: str) -> None:
        self.server, self.client, self.events, self.user = server, client, events, user
        self.received = 0

    async def check(self) -> None:
        body = await http(
            self.server.http_url, NOTIFY, token("pub", publisher=True), g=f"user_{self.user}", m="tick"
        )
        event_id = body["data"]["sendNotify"]["id"]
        assert (await self.events.next())["events"]["id"] == event_id
        self.received += 1


@pytest.fixture
async def bystander(hostile_server: ServerProcess) -> AsyncIterator[Bystander]:
    user = unique("u")
    async with WsClient(hostile_server.ws_url, token(user)) as client:
        watcher = Bystander(hostile_server, client, await client.events(), user)
        await watcher.check()
        yield watcher
        await watcher.check()


async def _outcome(peer: RawPeer) -> int | None:
    """Read answers for a moment; the close code if the server closed, None if it stayed open."""
    try:
        async with asyncio.timeout(0.3):
            async for _ in peer.ws:
                pass
    except TimeoutError:
        return None
    except websockets.ConnectionClosed:
        pass
    rcvd = peer.ws.protocol.close_rcvd
    return rcvd.code if rcvd else -1


@HYPOTHESIS
@given(message=protocol_messages)
async def test_arbitrary_protocol_messages(
    hostile_server: ServerProcess, bystander: Bystander, message: Any
) -> None:
    async with RawPeer(hostile_server.ws_url) as peer:
        await peer.init()
        await peer.send(message)
        code = await _outcome(peer)
    assert code is None or code in PROTOCOL_CLOSE_CODES, (message, code)
    await bystander.check()


@HYPOTHESIS
@given(raw=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
async def test_arbitrary_frames_before_init(
    hostile_server: ServerProcess, bystander: Bystander, raw: Any
) -> None:
    async with RawPeer(hostile_server.ws_url) as peer:
        await peer.send(raw)
        code = await _outcome(peer)
    assert code is None or code in PROTOCOL_CLOSE_CODES, (raw, code)
    await bystander.check()


group_names = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=95, max_size=105),
    st.text(alphabet=string.punctuation + string.whitespace + "éü€\x00", min_size=1, max_size=5).map(
        lambda s: "g" + s
    ),
)


@HYPOTHESIS
@given(group=group_names)
async def test_arbitrary_group_names(hostile_server: ServerProcess, bystander: Bystander, group: str) -> None:
    body = await http(hostile_server.http_url, NOTIFY, token("pub", publisher=True), g=group, m="x")
    expected = [] if GROUP_RULE.fullmatch(group) else ["BAD_USER_INPUT"]
    assert error_codes(body) == expected, group
    await bystander.check()


@HYPOTHESIS
@given(payload=json_values)
async def test_arbitrary_payloads_round_trip_or_are_refused(
    hostile_server: ServerProcess, bystander: Bystander, payload: Any
) -> None:
    body = await http(
        hostile_server.http_url, DATA, token("pub", publisher=True), g=f"user_{bystander.user}", p=payload
    )
    codes = error_codes(body)
    if payload is None:
        assert codes == ["GRAPHQL_VALIDATION_FAILED"], body  # JSON! is non-null
    elif codes:
        assert codes == ["PAYLOAD_TOO_LARGE"], body
    else:
        got = (await bystander.events.next())["events"]
        assert got["id"] == body["data"]["sendData"]["id"]
        assert got["payload"] == payload
    await bystander.check()


@settings(
    max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300))
async def test_arbitrary_tokens_are_unauthenticated(
    hostile_server: ServerProcess, bystander: Bystander, raw: str
) -> None:
    body = await http(hostile_server.http_url, "{ me { id } }", raw.strip() or "x")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    async with RawPeer(hostile_server.ws_url) as peer:
        await peer.send({"type": "connection_init", "payload": {"authorization": f"Bearer {raw}"}})
        assert await _outcome(peer) == 4403
    await bystander.check()


async def test_a_flood_of_mutations_is_rate_limited_and_harms_nobody(bystander: Bystander) -> None:
    server = ServerProcess({"SWITCHBOARD_MUTATION_RATE": "5", "SWITCHBOARD_MUTATION_BURST": "10"}).start()
    try:
        async with RawPeer(server.ws_url) as peer:
            await peer.init({"authorization": f"Bearer {token(unique('u'))}"})
            for i in range(200):
                query = f'mutation {{ openNote(noteId: "{i % 3}") {{ id }} }}'
                await peer.send({"type": "subscribe", "id": str(i), "payload": {"query": query}})
            outcomes = []
            while len(outcomes) < 200:
                message = await peer.recv()
                if message["type"] == "next":  # it ran: ok, or refused by the mutation budget
                    errors = message["payload"].get("errors") or []
                    outcomes.append(errors[0]["extensions"]["code"] if errors else "ok")
                elif message["type"] == "error":  # refused before it ran (operations per second)
                    outcomes.append(message["payload"][0]["extensions"]["code"])
            assert 10 <= outcomes.count("ok") <= 15
            assert outcomes.count("RATE_LIMITED") == 200 - outcomes.count("ok")
            await peer.send({"type": "ping"})
            while (await peer.recv())["type"] != "pong":
                pass
    finally:
        server.stop()
    await bystander.check()


def multiplying_fragments(levels: int, root: str, on: str) -> str:
    """944 bytes at 23 levels: each fragment spreads the next twice (2^levels fields expanded)."""
    fragments = [f"fragment F{i} on {on} {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    return " ".join([f"{root} {{ ...F0 }}", *fragments, f"fragment F{levels} on {on} {{ __typename }}"])


async def _refusal_over(transport: str, server: ServerProcess, document: str) -> str:
    """What `transport` answers to `document`, unauthenticated: read until the refusal shows."""
    if transport.startswith("ws"):
        subprotocol = "graphql-ws" if transport == "ws-legacy" else "graphql-transport-ws"
        async with RawPeer(server.ws_url, subprotocol) as peer:
            await peer.init()
            start = "start" if transport == "ws-legacy" else "subscribe"
            await peer.send({"type": start, "id": "1", "payload": {"query": document}})
            return str(await peer.recv_type("error"))
    accept = {"sse": "text/event-stream", "multipart": "multipart/mixed;subscriptionSpec=1.0"}
    headers = {"accept": accept.get(transport.removeprefix("get-"), "application/json")}
    method = "GET" if transport.startswith("get") else "POST"
    body = {"params": {"query": document}} if method == "GET" else {"json": {"query": document}}
    received = ""
    async with (
        httpx.AsyncClient(timeout=5) as client,
        client.stream(method, server.http_url, headers=headers, **body) as response,  # type: ignore[arg-type]
    ):
        async for chunk in response.aiter_text():
            received += chunk
            if "BAD_USER_INPUT" in received:
                break
    return received


@pytest.mark.parametrize("transport", ["post", "get", "sse", "get-sse", "multipart", "ws", "ws-legacy"])
async def test_fragments_that_multiply_are_refused_at_once_on_every_transport(
    hostile_server: ServerProcess, bystander: Bystander, transport: str
) -> None:
    """A 944-byte document that expands to 2^23 fields froze the whole process for 27 s: now it
    costs one visit per fragment, on every transport, as a query and as a subscription."""
    for levels in (23, 60):
        for root, on in (("query", "Query"), ("subscription", "Subscription")):
            if transport in ("post", "get") and root != "query":
                continue  # refused for its type: subscriptions take a stream or a socket
            document = multiplying_fragments(levels, root, on)
            async with asyncio.timeout(2):
                answer = await _refusal_over(transport, hostile_server, document)
            assert "operation is too many fields" in answer, (transport, answer[:300])
            assert "BAD_USER_INPUT" in answer
            await bystander.check()
