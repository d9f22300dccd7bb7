"""The WebSocket protocols at the edges: each refusal has its documented close code or error,
and a client that stays connected meanwhile loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.conftest import token, unique
from tests.support.client import LEGACY_WS, WsClient, http
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer

SEND = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
SUB = {"query": "subscription { events { ... on NotifyEvent { message } } }"}


@pytest.fixture(scope="module")
def strict_server() -> Iterator[ServerProcess]:
    """Short timers and small limits so that each edge is reached quickly."""
    server = ServerProcess(
        {
            "SWITCHBOARD_INIT_TIMEOUT": "0.5",
            "SWITCHBOARD_PING_INTERVAL": "0.5",
            "SWITCHBOARD_MAX_MESSAGE_BYTES": "4096",
            "SWITCHBOARD_MAX_SUBSCRIPTIONS": "3",
            "SWITCHBOARD_QUEUE_SIZE": "50",
        }
    ).start()
    yield server
    server.stop()


@pytest.fixture
async def bystander(strict_server: ServerProcess) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A well-behaved client connected throughout; call it to check it got every event."""
    user = unique("u")
    async with WsClient(strict_server.ws_url, token(user)) as client:
        events = await client.events()
        sent: list[str] = []

        async def publish_and_check() -> None:
            body = await http(
                strict_server.http_url, SEND, token("pub", publisher=True), g=f"user_{user}", m=unique("m")
            )
            sent.append(body["data"]["sendNotify"]["id"])
            for expected in sent[len(sent) - 1 :]:
                assert (await events.next())["events"]["id"] == expected

        await publish_and_check()
        yield publish_and_check
        await publish_and_check()


async def _binary(peer: RawPeer) -> None:
    await peer.init()
    await peer.send(b'{"type":"ping"}')


async def _not_json(peer: RawPeer) -> None:
    await peer.send("{not json")


async def _not_object(peer: RawPeer) -> None:
    await peer.send("[1, 2, 3]")


async def _unknown_type(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "launch_missiles"})


async def _type_not_string(peer: RawPeer) -> None:
    await peer.send({"type": 42})


async def _subscribe_before_init(peer: RawPeer) -> None:
    await peer.send({"type": "subscribe", "id": "1", "payload": SUB})


async def _second_init(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "connection_init", "payload": {}})


async def _duplicate_id(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "subscribe", "id": "same", "payload": SUB})
    await peer.send({"type": "subscribe", "id": "same", "payload": SUB})


async def _huge_id(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "subscribe", "id": "x" * 1000, "payload": SUB})


async def _id_not_string(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "subscribe", "id": 7, "payload": SUB})


async def _payload_wrong_type(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "subscribe", "id": "1", "payload": {"query": 5}})


async def _init_payload_not_object(peer: RawPeer) -> None:
    await peer.send({"type": "connection_init", "payload": "hello"})


async def _too_big(peer: RawPeer) -> None:
    await peer.init()
    await peer.send({"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }" + " " * 5000}})


async def _no_init(peer: RawPeer) -> None:
    return None  # and wait for the init timeout


async def _bad_token(peer: RawPeer) -> None:
    await peer.send({"type": "connection_init", "payload": {"authorization": "Bearer nope"}})


async def _no_pong(peer: RawPeer) -> None:
    await peer.init()  # then never answer the server's pings


CASES: dict[str, tuple[Callable[[RawPeer], Awaitable[None]], int]] = {
    "binary frame": (_binary, 4400),
    "invalid JSON": (_not_json, 4400),
    "JSON that is not an object": (_not_object, 4400),
    "unknown message type": (_unknown_type, 4400),
    "type not a string": (_type_not_string, 4400),
    "subscribe before connection_init": (_subscribe_before_init, 4401),
    "second connection_init": (_second_init, 4429),
    "duplicate operation id": (_duplicate_id, 4409),
    "huge operation id": (_huge_id, 4400),
    "operation id not a string": (_id_not_string, 4400),
    "query not a string": (_payload_wrong_type, 4400),
    "init payload not an object": (_init_payload_not_object, 4400),
    "oversized frame": (_too_big, 1009),
    "no connection_init in time": (_no_init, 4408),
    "bad token": (_bad_token, 4403),
    "no pong to server pings": (_no_pong, 4408),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_protocol_violation_closes_with_its_code(
    strict_server: ServerProcess, bystander: Callable[[], Awaitable[None]], case: str
) -> None:
    act, code = CASES[case]
    async with RawPeer(strict_server.ws_url, ping_interval=None) as peer:
        await act(peer)
        closed_code, _ = await peer.closed_with()
    assert closed_code == code
    await bystander()


async def test_no_acceptable_subprotocol_is_4406(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url, subprotocol="mqtt") as peer:
        assert (await peer.closed_with())[0] == 4406


async def test_pings_are_answered_and_server_pings_keep_a_live_client(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url) as peer:
        await peer.init()
        await peer.send({"type": "ping"})
        assert (await peer.recv_type("pong"))["type"] == "pong"
        # Answer the server's pings for three intervals; the connection must still work after.
        pings = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.6):
                while True:
                    if (await peer.recv())["type"] == "ping":
                        pings += 1
                        await peer.send({"type": "pong"})
        assert pings >= 2
        await peer.send({"type": "subscribe", "id": "q", "payload": {"query": "{ session { id } }"}})
        assert (await peer.recv_type("next"))["payload"]["data"]["session"]["id"]


async def test_query_errors_are_operation_errors_not_closes(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url) as peer:
        await peer.init()
        await peer.send({"type": "subscribe", "id": "a", "payload": {"query": "subscription { events {"}})
        error = await peer.recv_type("error")
        assert error["id"] == "a" and error["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        await peer.send({"type": "subscribe", "id": "b", "payload": {"query": "{ nope }"}})
        assert (await peer.recv_type("error"))["id"] == "b"
        bad_group = {"query": 'subscription { events(groups: ["no spaces"]) { __typename } }'}
        await peer.send({"type": "subscribe", "id": "c", "payload": bad_group})
        error = await peer.recv_type("error")
        assert error["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await peer.send({"type": "subscribe", "id": "d", "payload": {"query": "{ me { id } }"}})
        assert (await peer.recv_type("next"))["id"] == "d"


async def test_operations_in_flight_are_limited(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url) as peer:
        await peer.init()
        for i in range(3):
            await peer.send({"type": "subscribe", "id": str(i), "payload": SUB})
        await peer.send({"type": "subscribe", "id": "one-too-many", "payload": SUB})
        error = await peer.recv_type("error")
        assert error["id"] == "one-too-many"
        assert error["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        await peer.send({"type": "complete", "id": "0"})
        await peer.send({"type": "subscribe", "id": "now-fits", "payload": {"query": "{ me { id } }"}})
        assert (await peer.recv_type("next"))["id"] == "now-fits"


async def test_legacy_protocol_keepalive_and_queries(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url, subprotocol=LEGACY_WS) as peer:
        await peer.send({"type": "connection_init", "payload": {}})
        assert (await peer.recv())["type"] == "connection_ack"
        assert (await peer.recv(2))["type"] == "ka"
        await peer.send({"type": "start", "id": "1", "payload": {"query": "{ session { groups } }"}})
        data = await peer.recv_type("data")
        assert data["payload"]["data"]["session"]["groups"] == ["all"]
        assert (await peer.recv_type("complete"))["id"] == "1"


async def test_legacy_bad_token_gets_connection_error_then_4403(strict_server: ServerProcess) -> None:
    async with RawPeer(strict_server.ws_url, subprotocol=LEGACY_WS) as peer:
        await peer.send({"type": "connection_init", "payload": {"authorization": "Bearer nope"}})
        error = await peer.recv()
        assert error["type"] == "connection_error"
        assert error["payload"]["code"] == "UNAUTHENTICATED"
        assert (await peer.closed_with())[0] == 4403


async def test_nothing_but_the_ack_answers_connection_init(redis_url: str) -> None:
    """Pings are due every 50 ms here, and joining groups through Redis takes a moment: still the
    first message after connection_init is connection_ack (gql and graphql-ws insist on it)."""
    server = ServerProcess(
        {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": unique("ack"), "SWITCHBOARD_PING_INTERVAL": "0.05"}
    ).start()
    try:
        for _ in range(30):
            async with RawPeer(server.ws_url) as peer:
                await peer.send(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {token(unique('u'))}"}}
                )
                assert (await peer.recv())["type"] == "connection_ack"
    finally:
        server.stop()
