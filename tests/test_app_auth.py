"""The app owns users and permissions: its connect endpoint or import-path hook names the user
(from the session cookie), its permission endpoint decides notes, expiry and logout end live
connections, and every failure to get an answer refuses (never admits), with a documented code.

The app is a real HTTP server of the test's own (tests/support/app_server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from switchboard.security.auth import mint_token
from tests.conftest import token, unique
from tests.support.app_server import AppServer
from tests.support.client import WsClient, http
from tests.support.processes import TEST_SECRET, ServerProcess, free_port

NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
EVENTS = "subscription { events { __typename ... on NotifyEvent { message } } }"


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    server = AppServer(expires_in=1).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def switchboard(app: AppServer) -> Iterator[ServerProcess]:
    server = ServerProcess(
        {
            "SWITCHBOARD_CONNECT_URL": f"{app.url}/connect",
            "SWITCHBOARD_PERMISSION_URL": f"{app.url}/permission",
            "SWITCHBOARD_HOOK_TIMEOUT": "0.5",
            "SWITCHBOARD_HOOK_KEY": "k3y",
            "SWITCHBOARD_ANONYMOUS": "0",
        }
    ).start()
    yield server
    server.stop()


class Peer:
    """A real websockets client that may send a Cookie, as a browser on the app's origin does."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.n = 0

    @classmethod
    async def connect(cls, url: str, cookie: str | None = None, params: dict[str, Any] | None = None) -> Any:
        """The Peer after connection_ack, or the close code the server answered with."""
        headers = {"Cookie": cookie} if cookie else None
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], additional_headers=headers)  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init", "payload": params or {}}).decode())
        try:
            async with asyncio.timeout(5):
                message = orjson.loads(await ws.recv())
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        assert message["type"] == "connection_ack", message
        peer = cls(ws)
        peer.ack = message["payload"]
        return peer

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        self.n += 1
        op = f"q{self.n}"
        payload = {"query": query, "variables": variables}
        await self.ws.send(orjson.dumps({"type": "subscribe", "id": op, "payload": payload}).decode())
        async with asyncio.timeout(5):
            while True:
                message = orjson.loads(await self.ws.recv())
                if message.get("id") == op and message["type"] in ("next", "error"):
                    return message

    async def closed_with(self, within: float) -> tuple[int | None, float]:
        """The close code, and how long it took, reading (and answering pings) meanwhile."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(within):
                async for raw in self.ws:
                    if orjson.loads(raw)["type"] == "ping":
                        await self.ws.send('{"type":"pong"}')
        except ConnectionClosed:
            pass
        return (self.ws.close_code, time.monotonic() - started)


OPEN = "mutation($n: ID!) { openNote(noteId: $n) { id } }"


def code_of(message: dict[str, Any]) -> str | None:
    if message["type"] == "error":
        return str(message["payload"][0]["extensions"]["code"])
    errors = message["payload"].get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


async def test_the_app_names_the_user_from_its_session_cookie(
    app: AppServer, switchboard: ServerProcess
) -> None:
    app.sessions["s-alice"] = user = unique("alice")
    peer = await Peer.connect(switchboard.ws_url, cookie="session=s-alice; theme=dark")
    assert isinstance(peer, Peer) and peer.ack["userId"] == user
    _, headers, body = next(r for r in reversed(app.requests) if r[0] == "/connect")
    assert "session=s-alice" in headers["cookie"] and headers["x-switchboard-key"] == "k3y"
    assert body["transport"] == "websocket"
    # HTTP requests from the app's pages carry the same cookie.
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            switchboard.http_url, json={"query": "{ me { id } }"}, headers={"Cookie": "session=s-alice"}
        )
    assert reply.json()["data"]["me"]["id"] == user
    # A token of ours still works beside the app's cookies (publishers, scripts).
    body = await http(
        switchboard.http_url, NOTIFY, token(unique("svc"), publisher=True), g=f"user_{user}", m="hi"
    )
    assert "errors" not in body
    await peer.ws.close()


async def test_no_session_or_one_the_app_refuses_is_closed_with_4403(
    app: AppServer, switchboard: ServerProcess
) -> None:
    assert await Peer.connect(switchboard.ws_url) == 4403
    assert await Peer.connect(switchboard.ws_url, cookie="session=nobody") == 4403
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            switchboard.http_url, json={"query": "{ me { id } }"}, headers={"Cookie": "session=x"}
        )
    assert reply.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_slow_or_unreachable_app_refuses_with_1013_and_admits_no_one(
    app: AppServer, switchboard: ServerProcess
) -> None:
    bystander_user = unique("b")
    async with WsClient(switchboard.ws_url, token(bystander_user)) as bystander:
        events = await bystander.events([f"user_{bystander_user}"])
        started = time.monotonic()
        assert await Peer.connect(switchboard.ws_url, cookie="session=slow") == 1013
        assert time.monotonic() - started < 2.0, "the hook timeout (0.5 s) was not applied"
        body = await http(
            switchboard.http_url,
            NOTIFY,
            token(unique("svc"), publisher=True),
            g=f"user_{bystander_user}",
            m="still here",
        )
        assert "errors" not in body
        assert (await events.next())["events"]["message"] == "still here"
    down = ServerProcess({"SWITCHBOARD_CONNECT_URL": f"http://127.0.0.1:{free_port()}/connect"}).start()
    try:
        assert await Peer.connect(down.ws_url, cookie="session=s-alice") == 1013
        async with httpx.AsyncClient() as client:
            reply = await client.post(
                down.http_url, json={"query": "{ me { id } }"}, headers={"Cookie": "session=a"}
            )
        assert reply.status_code == 503
        assert reply.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
        assert "127.0.0.1" not in reply.text  # the app's address stays in the log
    finally:
        down.stop()


async def test_the_app_decides_notes_with_clear_codes_and_short_caching(
    app: AppServer, switchboard: ServerProcess
) -> None:
    app.sessions["s-bob"] = unique("bob")
    peer = await Peer.connect(switchboard.ws_url, cookie="session=s-bob")
    assert isinstance(peer, Peer)
    outcomes = {
        note: code_of(await peer.execute(OPEN, n=note))
        for note in ("ok-1", "no-1", "bad-1", "boom-1", "slow-1")
    }
    assert outcomes == {
        "ok-1": None,
        "no-1": "FORBIDDEN",
        "bad-1": "BAD_USER_INPUT",
        "boom-1": "UNAVAILABLE",
        "slow-1": "UNAVAILABLE",
    }
    asked = sum(1 for path, _, body in app.requests if path == "/permission" and body["note_id"] == "ok-1")
    await peer.execute('mutation { closeNote(noteId: "ok-1") { id } }')
    assert code_of(await peer.execute(OPEN, n="ok-1")) is None
    again = sum(1 for path, _, body in app.requests if path == "/permission" and body["note_id"] == "ok-1")
    assert again == asked, "a fresh answer was not reused"
    await peer.ws.close()


async def test_logout_in_the_app_ends_the_connection_within_the_expiry(
    app: AppServer, switchboard: ServerProcess
) -> None:
    """The app's answer expires in 1 s: Switchboard asks again then (no client action); while the
    user is logged in the connection lives on and receives, after logout it is closed with 4403."""
    app.sessions["s-carol"] = user = unique("carol")
    peer = await Peer.connect(switchboard.ws_url, cookie="session=s-carol")
    assert isinstance(peer, Peer)
    await asyncio.sleep(3.0)  # three expiries, each refreshed
    publisher = token(unique("svc"), publisher=True)
    await peer.ws.send(orjson.dumps({"type": "subscribe", "id": "e", "payload": {"query": EVENTS}}).decode())
    await http(switchboard.http_url, NOTIFY, publisher, g=f"user_{user}", m="while logged in")
    async with asyncio.timeout(5):
        while (message := orjson.loads(await peer.ws.recv()))["type"] != "next":
            pass
    assert message["payload"]["data"]["events"]["message"] == "while logged in"
    # Logout just after Switchboard asked again: the worst case, a whole lifetime to the next ask.
    asked = len(app.requests)
    for _ in range(400):  # polls the app server's thread: no event to wait on
        if len(app.requests) > asked:
            break
        await asyncio.sleep(0.005)
    del app.sessions["s-carol"]  # logout
    code, took = await peer.closed_with(within=5)
    assert code == 4403 and took <= 1.0, (code, took)  # within the app's 1 s, not past it


async def test_an_expired_token_closes_the_connection_with_4403() -> None:
    server = ServerProcess().start()
    try:
        short = mint_token(TEST_SECRET, unique("dana"), ttl=2)
        peer = await Peer.connect(server.ws_url, params={"authorization": f"Bearer {short}"})
        assert isinstance(peer, Peer)
        code, took = await peer.closed_with(within=6)
        assert code == 4403 and 1.0 < took < 4.0, (code, took)
    finally:
        server.stop()


async def test_an_import_path_hook_reads_the_handshake() -> None:
    server = ServerProcess(
        {"SWITCHBOARD_AUTH_HOOK": "tests.apps.hooks:from_cookie", "SWITCHBOARD_ANONYMOUS": "0"}
    ).start()
    try:
        peer = await Peer.connect(server.ws_url, cookie="session=erin")
        assert isinstance(peer, Peer) and peer.ack["userId"] == "erin"
        await peer.ws.close()
        assert await Peer.connect(server.ws_url, cookie="session=intruder") == 4403
        assert await Peer.connect(server.ws_url) == 4403  # None, and anonymous sessions are off
        assert await Peer.connect(server.ws_url, cookie="session=broken") == 1013
        await asyncio.sleep(0.2)
        assert "the authentication hook failed" in server.log_path.read_text()
    finally:
        server.stop()


def test_the_dev_banner_prints_a_token_only_for_the_development_secret() -> None:
    from tests.support.processes import ServerProcess as Server

    real = Server({"SWITCHBOARD_SECRET": "a-real-secret-" + "x" * 40}).start()
    real.stop()
    banner = real.log_path.read_text()
    assert "Development token" not in banner and "?token=" not in banner
    assert "switchboard token --user" in banner
