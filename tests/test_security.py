"""Who may do what, production mode, origins and limits, each refusal with its documented code."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ROOT, ServerProcess
from tests.support.raw import RawPeer

OPEN = "mutation($n: ID!) { openNote(noteId: $n) { id groups } }"
NOTIFY = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
DATA = "mutation($g: String!, $p: JSON!) { sendData(group: $g, payload: $p) { id } }"
INTROSPECT = "{ __schema { types { name } } }"
PROD_ENV = {
    "SWITCHBOARD_MODE": "prod",
    "SWITCHBOARD_NOTE_POLICY": "tests.apps.policies:can_open_note",
    "SWITCHBOARD_ALLOWED_ORIGINS": "https://app.example",
    "SWITCHBOARD_MAX_NOTES": "3",
    "SWITCHBOARD_MAX_PAYLOAD_BYTES": "1024",
    "SWITCHBOARD_MUTATION_RATE": "0.5",
    "SWITCHBOARD_MUTATION_BURST": "4",
    "SWITCHBOARD_MAX_CONNECTIONS": "20",
}


@pytest.fixture(scope="module")
def prod() -> Iterator[ServerProcess]:
    server = ServerProcess(PROD_ENV).start()
    yield server
    server.stop()


# -- authorization ---------------------------------------------------------------------------


async def test_anonymous_cannot_connect_in_prod_or_open_notes_in_dev(
    prod: ServerProcess, memory_server: ServerProcess
) -> None:
    async with RawPeer(prod.ws_url) as peer:
        await peer.send({"type": "connection_init", "payload": {}})
        assert (await peer.closed_with())[0] == 4403
    async with WsClient(memory_server.ws_url) as anonymous:
        with pytest.raises(Exception, match="UNAUTHENTICATED"):
            await anonymous.execute(OPEN, n="1")
        assert (await anonymous.session_info())["groups"] == ["all"]


async def test_note_policy_decides_and_a_refusal_changes_nothing(prod: ServerProcess) -> None:
    async with WsClient(prod.ws_url, token(unique("u"))) as client:
        before = (await client.session_info())["groups"]
        with pytest.raises(Exception, match="FORBIDDEN"):
            await client.execute(OPEN, n="secret-plans")
        assert (await client.session_info())["groups"] == before
        opened = (await client.execute(OPEN, n="open-plans"))["openNote"]
        assert "note_open-plans" in opened["groups"]


async def test_unexpected_errors_are_masked_with_an_id_that_is_logged(prod: ServerProcess) -> None:
    body = await http(prod.http_url, "{ me { id } }", token("x"))
    assert body["data"]["me"]["id"] == "x"
    async with WsClient(prod.ws_url, token(unique("u"))) as client:
        sid = (await client.session_info())["id"]
    user = unique("u")
    async with WsClient(prod.ws_url, token(user)) as client:
        sid = (await client.session_info())["id"]
        body = await http(
            prod.http_url,
            OPEN.replace("$n: ID!)", "$n: ID!, $s: ID)").replace("noteId: $n", "noteId: $n, sessionId: $s"),
            token(user),
            n="explode",
            s=sid,
        )
        (error,) = body["errors"]
        assert error["message"] == "Internal server error"
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert "fire" not in str(body) and "Traceback" not in str(body)
        await asyncio.sleep(0.2)
        assert error["extensions"]["errorId"] in prod.log_path.read_text()
        assert "note_explode" not in (await client.session_info())["groups"]


@pytest.mark.parametrize(
    ("group", "publisher", "code"),
    [
        ("all", False, "FORBIDDEN"),
        ("user_someone-else", False, "FORBIDDEN"),
        ("user_me", False, "FORBIDDEN"),
        ("custom.group", False, "FORBIDDEN"),
        ("note_secret-1", False, "FORBIDDEN"),
        ("note_shared", False, "FORBIDDEN"),  # clients publish nothing unless CLIENT_PUBLISH says so
        ("all", True, None),
        ("note_secret-1", True, None),
        ("bad group", True, "BAD_USER_INPUT"),
    ],
)
async def test_who_may_publish_where(
    prod: ServerProcess, group: str, publisher: bool, code: str | None
) -> None:
    # A user per case: each has its own mutation budget (4 at once in this prod configuration).
    me = unique("me")
    group = group.replace("user_me", f"user_{me}")
    body = await http(prod.http_url, NOTIFY, token(me, publisher=publisher), g=group, m="hi")
    assert error_codes(body) == ([code] if code else [])


async def test_with_client_publish_notes_members_publish_to_their_notes_only() -> None:
    server = ServerProcess({**PROD_ENV, "SWITCHBOARD_CLIENT_PUBLISH": "notes"}).start()
    try:
        outcomes = {}
        for group in ("note_shared", "note_secret-1", "all", "user_x"):
            body = await http(server.http_url, NOTIFY, token(unique("me")), g=group, m="hi")
            outcomes[group] = error_codes(body)
        assert outcomes == {
            "note_shared": [],
            "note_secret-1": ["FORBIDDEN"],
            "all": ["FORBIDDEN"],
            "user_x": ["FORBIDDEN"],
        }
    finally:
        server.stop()


async def test_a_refused_publish_delivers_nothing(prod: ServerProcess) -> None:
    async with WsClient(prod.ws_url, token(unique("u"))) as client:
        events = await client.events()
        refused = await http(prod.http_url, NOTIFY, token(unique("u")), g="all", m="sneaky")
        assert error_codes(refused) == ["FORBIDDEN"]
        await events.nothing_within(0.5)


# -- production mode and origins --------------------------------------------------------------


async def test_prod_serves_no_graphiql_and_no_introspection(prod: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(prod.http_url, headers={"Accept": "text/html"})
    assert "graphiql" not in page.text.lower()
    for _ in range(2):  # the second time from the parse cache, refused all the same
        body = await http(prod.http_url, INTROSPECT, token("x"))
        assert set(error_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    async with WsClient(prod.ws_url, token("x")) as ws:
        with pytest.raises(Exception, match="introspection"):
            await ws.execute(INTROSPECT)
        assert (await ws.session_info())["userId"] == "x"  # the connection survives the refusal


async def test_dev_serves_graphiql_and_introspection(memory_server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(memory_server.http_url, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    body = await http(memory_server.http_url, INTROSPECT)
    assert "errors" not in body and body["data"]["__schema"]["types"]


async def test_prod_switches_turn_on_one_by_one() -> None:
    server = ServerProcess({**PROD_ENV, "SWITCHBOARD_GRAPHIQL": "1"}).start()
    try:
        async with httpx.AsyncClient() as client:
            page = await client.get(server.http_url, headers={"Accept": "text/html"})
        assert "graphiql" in page.text.lower()
        codes = error_codes(await http(server.http_url, INTROSPECT, token("x")))
        assert set(codes) == {"GRAPHQL_VALIDATION_FAILED"}
    finally:
        server.stop()


@pytest.mark.parametrize("secret", [None, "short"])
def test_prod_refuses_to_start_without_a_strong_secret(secret: str | None) -> None:
    env = {k: v for k, v in ServerProcess().env.items() if k != "SWITCHBOARD_SECRET"}
    env["SWITCHBOARD_MODE"] = "prod"
    if secret:
        env["SWITCHBOARD_SECRET"] = secret
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "serve", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "SWITCHBOARD_SECRET" in done.stderr


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("https://app.example", True),
        ("https://APP.example:443", True),
        ("https://evil.example", False),
        ("http://app.example", False),
        ("null", False),
        ("same", True),
    ],
)
async def test_origin_allowlist_in_prod(prod: ServerProcess, origin: str | None, allowed: bool) -> None:
    headers = (
        {} if origin is None else {"Origin": f"http://127.0.0.1:{prod.port}" if origin == "same" else origin}
    )
    try:
        async with RawPeer(prod.ws_url, additional_headers=headers) as peer:
            ack = await peer.init({"authorization": f"Bearer {token('o')}"})
            assert ack["payload"]["userId"] == "o"
        accepted = True
    except websockets.InvalidStatus as exc:
        assert exc.response.status_code == 403
        accepted = False
    assert accepted is allowed


# -- limits ------------------------------------------------------------------------------------


async def test_notes_per_session_are_limited(prod: ServerProcess) -> None:
    async with WsClient(prod.ws_url, token(unique("u"))) as client:
        for i in range(3):
            await client.execute(OPEN, n=f"n{i}")
        with pytest.raises(Exception, match="FORBIDDEN"):
            await client.execute(OPEN, n="one-too-many")
        assert len([g for g in (await client.session_info())["groups"] if g.startswith("note_")]) == 3


async def test_publish_payload_size_is_limited(prod: ServerProcess) -> None:
    async with WsClient(prod.ws_url, token(unique("u"))) as client:
        events = await client.events()
        body = await http(prod.http_url, DATA, token("pub", publisher=True), g="all", p={"x": "y" * 2000})
        assert error_codes(body) == ["PAYLOAD_TOO_LARGE"]
        await events.nothing_within(0.3)


SPREADS = "fragment S on Session { id groups userId connectedAt subscriptionCount } "
DEEP = "{ __schema { types { fields { type " + "{ ofType " * 9 + "{ name }" + " }" * 9 + " } } } }"


@pytest.mark.parametrize(
    ("name", "query", "words"),
    [
        ("aliases", "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }", "too many aliases"),
        ("fields", SPREADS + "{ session { " + "...S " * 41 + "} }", "too many fields"),
        ("tokens", "{ me { id } } " + "fragment F on Query { me { id } } " * 300, "tokens"),
        ("depth", DEEP, "too deep"),
    ],
)
async def test_query_cost_limits(memory_server: ServerProcess, name: str, query: str, words: str) -> None:
    for _ in range(2):  # the second time from the parse cache
        body = await http(memory_server.http_url, query, token("x"))
        assert any(words in e["message"] for e in body.get("errors", [])), (name, body)
    async with WsClient(memory_server.ws_url, token("x")) as ws:
        with pytest.raises(Exception, match=words):
            await ws.execute(query)
        assert (await ws.session_info())["userId"] == "x"


def _outcome(exc: Exception | None) -> str:
    if exc is None:
        return "ok"
    return "RATE_LIMITED" if "RATE_LIMITED" in str(exc) else repr(exc)  # gql's TransportQueryError


async def test_the_mutation_budget_is_the_users_across_connections(prod: ServerProcess) -> None:
    """Burst 4: two sockets of one user share it (a budget per connection would let each spend
    four), and another user's budget is untouched."""
    user = unique("u")
    async with WsClient(prod.ws_url, token(user)) as one, WsClient(prod.ws_url, token(user)) as two:
        results = []
        for i in range(6):
            try:
                await (one, two)[i % 2].execute(OPEN, n=f"r{i % 2}")
                results.append(_outcome(None))
            except Exception as exc:
                results.append(_outcome(exc))
        assert results == ["ok"] * 4 + ["RATE_LIMITED"] * 2
        body = await http(prod.http_url, NOTIFY, token(user, publisher=True), g=f"user_{user}", m="x")
        assert error_codes(body) == ["RATE_LIMITED"]  # over HTTP too: the same user's budget
    async with WsClient(prod.ws_url, token(unique("u"))) as other:
        await other.execute(OPEN, n="r0")


async def test_publishing_mutations_spend_the_budget(prod: ServerProcess) -> None:
    publisher = token(unique("pub"), publisher=True)
    codes = [error_codes(await http(prod.http_url, NOTIFY, publisher, g="all", m="x")) for _ in range(5)]
    codes += [error_codes(await http(prod.http_url, DATA, publisher, g="all", p={"x": 1}))]
    assert codes == [[]] * 4 + [["RATE_LIMITED"]] * 2


async def test_connections_per_process_are_limited() -> None:
    server = ServerProcess({"SWITCHBOARD_MAX_CONNECTIONS": "2"}).start()
    try:
        async with RawPeer(server.ws_url) as one, RawPeer(server.ws_url) as two:
            await one.init()
            await two.init()
            async with RawPeer(server.ws_url) as three:
                assert (await three.closed_with())[0] == 1013
            await one.send({"type": "ping"})
            assert (await one.recv_type("pong"))["type"] == "pong"
    finally:
        server.stop()
