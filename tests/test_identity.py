"""Tokens: minted by the CLI, checked over HTTP and on the WebSocket (close 4403)."""

from __future__ import annotations

import subprocess
import sys

import jwt
import orjson
import pytest
import websockets

from switchboard.exceptions import Unauthenticated
from switchboard.security.auth import mint_token, verify_token
from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ROOT, TEST_SECRET, ServerProcess

BAD_TOKENS = {
    "garbage": "not-a-token",
    "expired": mint_token(TEST_SECRET, "1", ttl=-10),
    "wrong secret": mint_token("another-secret-that-is-long-enough-0123456789", "1"),
    "alg none": jwt.encode({"sub": "1", "exp": 9999999999}, key=None, algorithm="none"),
    "no exp": jwt.encode({"sub": "1"}, TEST_SECRET, algorithm="HS256"),
    "bad subject": jwt.encode({"sub": "a b", "exp": 9999999999}, TEST_SECRET, algorithm="HS256"),
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_verify_refuses_bad_tokens(kind: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(TEST_SECRET, BAD_TOKENS[kind])


def test_publisher_role_round_trips() -> None:
    assert verify_token(TEST_SECRET, mint_token(TEST_SECRET, "svc", publisher=True)).is_publisher
    assert not verify_token(TEST_SECRET, mint_token(TEST_SECRET, "u1")).is_publisher


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_over_http_is_unauthenticated(server: ServerProcess, kind: str) -> None:
    body = await http(server.http_url, "{ me { id } }", BAD_TOKENS[kind])
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None


async def ws_close_code(
    url: str, init_payload: dict[str, object], headers: dict[str, str] | None = None
) -> int:
    async with websockets.connect(
        url, subprotocols=["graphql-transport-ws"], additional_headers=headers
    ) as ws:
        await ws.send(orjson.dumps({"type": "connection_init", "payload": init_payload}).decode())
        try:
            async with __import__("asyncio").timeout(5):
                async for _ in ws:
                    pass
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code is not None
        return ws.close_code


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_token_on_websocket_is_closed_4403(server: ServerProcess, kind: str) -> None:
    code = await ws_close_code(server.ws_url, {"authorization": f"Bearer {BAD_TOKENS[kind]}"})
    assert code == 4403


async def test_handshake_authorization_header_works(server: ServerProcess) -> None:
    user = unique("u")
    async with websockets.connect(
        server.ws_url,
        subprotocols=["graphql-transport-ws"],
        additional_headers={"Authorization": f"Bearer {token(user)}"},
    ) as ws:
        await ws.send('{"type":"connection_init"}')
        ack = orjson.loads(await ws.recv())
        assert ack["type"] == "connection_ack"
        assert ack["payload"]["userId"] == user
    assert await ws_close_code(server.ws_url, {}, {"Authorization": "Bearer nope"}) == 4403


async def test_good_token_identifies_the_user(server: ServerProcess) -> None:
    user = unique("u")
    async with WsClient(server.ws_url, token(user)) as client:
        assert (await client.execute("{ me { id } }"))["me"] == {"id": user}
    body = await http(server.http_url, "{ me { id } }", token(user))
    assert body == {"data": {"me": {"id": user}}}


def test_cli_token_is_valid_for_the_configured_secret() -> None:
    env = {"SWITCHBOARD_SECRET": TEST_SECRET, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "token", "--user", "42", "--publisher"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    user = verify_token(TEST_SECRET, done.stdout.strip())
    assert user.id == "42" and user.is_publisher


def test_cli_prints_the_schema() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "schema"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "union Event = NotifyEvent | DataEvent" in done.stdout
    assert "openNote(noteId: ID!, sessionId: ID" in done.stdout


def test_committed_schema_file_matches_the_code() -> None:
    from switchboard.schema import schema

    committed = (ROOT / "schema.graphql").read_text()
    assert committed.strip() == schema.as_str().strip(), "schema.graphql drifted: run `make schema`"
