"""Every form of a subscription goes through the one delivery engine, on every transport: plain,
aliased, through a fragment, an inline fragment or a chain of fragments, with its arguments as
variables or literals, each joins the notes it declares and gets the same events. What the
engine does not serve (a directive on the root field, lists past their caps) is refused with a
code; GET never runs a mutation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ServerProcess
from tests.support.raw import RawPeer

SELECTION = "{ __typename ... on NotifyEvent { group message } }"
FORMS: dict[str, tuple[str, str]] = {
    # name: (document, the key of the root field in `data`)
    "plain": (f"subscription($n: [ID!]) {{ events(notes: $n) {SELECTION} }}", "events"),
    "aliased": (f"subscription($n: [ID!]) {{ mine: events(notes: $n) {SELECTION} }}", "mine"),
    "fragment": (
        "subscription($n: [ID!]) { ...Root } "
        f"fragment Root on Subscription {{ events(notes: $n) {SELECTION} }}",
        "events",
    ),
    "inline": (
        f"subscription($n: [ID!]) {{ ... on Subscription {{ events(notes: $n) {SELECTION} }} }}",
        "events",
    ),
    "chain": (
        "subscription($n: [ID!]) { ...A } fragment A on Subscription { ... on Subscription { ...B } } "
        f"fragment B on Subscription {{ e: events(notes: $n) {SELECTION} }}",
        "e",
    ),
    "literal": (f'subscription {{ events(notes: ["NOTE"]) {SELECTION} }}', "events"),
}
TRANSPORTS = ["graphql-transport-ws", "graphql-ws", "sse", "multipart"]
WAIT = 5.0

Results = AsyncIterator[dict[str, Any]]


@asynccontextmanager
async def subscribed(
    transport: str, server: ServerProcess, user: str, document: str, variables: dict[str, Any]
) -> AsyncIterator[Results]:
    """A subscription on `transport`; yields the payloads (data or errors) it receives."""
    if transport.startswith("graphql"):
        async with RawPeer(server.ws_url, transport) as peer:
            await peer.init({"authorization": f"Bearer {token(user)}"})
            start = "start" if transport == "graphql-ws" else "subscribe"
            payload = {"query": document, "variables": variables}
            await peer.send({"type": start, "id": "1", "payload": payload})

            async def frames() -> Results:
                while True:
                    message = await peer.recv(WAIT)
                    if message["type"] in ("next", "data"):
                        yield message["payload"]
                    elif message["type"] == "error":
                        payload = message["payload"]
                        yield {"errors": payload if isinstance(payload, list) else [payload]}
                    elif message["type"] == "ping":
                        await peer.send({"type": "pong"})

            yield frames()
        return
    accept = "text/event-stream" if transport == "sse" else "multipart/mixed;subscriptionSpec=1.0"
    headers = {"accept": accept, "authorization": f"Bearer {token(user)}"}
    async with (
        httpx.AsyncClient(timeout=WAIT) as client,
        client.stream(
            "POST", server.http_url, headers=headers, json={"query": document, "variables": variables}
        ) as response,
    ):
        yield (_sse if transport == "sse" else _multipart)(response)


async def _sse(response: httpx.Response) -> Results:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


async def _multipart(response: httpx.Response) -> Results:
    if response.headers["content-type"].startswith("application/json"):  # refused before streaming
        yield orjson.loads(await response.aread())
        return
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        *parts, buffer = buffer.split("\r\n--graphql")
        for part in parts:
            body = part.split("\r\n\r\n", 1)[-1].strip()
            if body.startswith("{") and body != "{}":
                message = orjson.loads(body)
                yield message.get("payload", message)


async def next_notify(results: Results, group: str) -> str:
    """The message of the next NotifyEvent of `group` (skipping everything else)."""
    async with asyncio.timeout(WAIT):
        async for payload in results:
            assert "errors" not in payload, payload
            (event,) = payload["data"].values()
            if event["__typename"] == "NotifyEvent" and event["group"] == group:
                return str(event["message"])
    raise AssertionError("the stream ended")


async def publish(server: ServerProcess, group: str, message: str) -> None:
    body = await http(
        server.http_url,
        "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }",
        token("svc-forms", publisher=True),
        g=group,
        m=message,
    )
    assert "errors" not in body, body


@pytest.fixture(scope="module")
def forms_server() -> Iterator[ServerProcess]:
    server = ServerProcess(
        {"SWITCHBOARD_MUTATION_RATE": "1000", "SWITCHBOARD_MUTATION_BURST": "1000"}
    ).start()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("form", list(FORMS))
async def test_every_form_joins_its_notes_and_gets_the_same_events(
    forms_server: ServerProcess, transport: str, form: str
) -> None:
    note = unique("f")
    document, key = FORMS[form]
    document = document.replace("NOTE", note)
    variables = {} if form == "literal" else {"n": [note]}
    async with subscribed(transport, forms_server, unique("u"), document, variables) as results:
        # The note is joined by the subscription itself: a probe reaches it once it is in.
        first = asyncio.ensure_future(_first_payload(results))
        for attempt in range(50):
            await publish(forms_server, f"note_{note}", f"probe-{attempt}")
            done, _ = await asyncio.wait({first}, timeout=0.1)
            if done:
                break
        payload = await asyncio.wait_for(first, WAIT)
        assert list(payload["data"]) == [key], payload
        for message in ("one", "two"):
            await publish(forms_server, f"note_{note}", message)
        got = []
        while len(got) < 2:
            message = await next_notify(results, f"note_{note}")
            if not message.startswith("probe-"):
                got.append(message)
        assert got == ["one", "two"]


async def _first_payload(results: Results) -> dict[str, Any]:
    async for payload in results:
        return payload
    raise AssertionError("the stream ended")


SKIP_INCLUDE = "must not use `@skip` or `@include`"
REFUSED: dict[str, tuple[str, dict[str, Any], str]] = {
    # The specification's own rule refuses these (GRAPHQL_VALIDATION_FAILED); the engine would too.
    "directive": (f"subscription {{ events @include(if: true) {SELECTION} }}", {}, SKIP_INCLUDE),
    "directive-on-fragment": (
        f"subscription {{ ...F @skip(if: false) }} fragment F on Subscription {{ events {SELECTION} }}",
        {},
        SKIP_INCLUDE,
    ),
    "two-root-fields": (  # the specification's rule, through fragments too
        f"subscription {{ ...A ...B }} fragment A on Subscription {{ events {SELECTION} }} "
        f"fragment B on Subscription {{ notify {{ id }} }}",
        {},
        "must select only one top level field",
    ),
    "literal-groups": (
        "subscription { events(groups: [" + ",".join(f'"g{i}"' for i in range(100)) + f"]) {SELECTION} }}",
        {},
        "take at most",
    ),
    "variable-groups": (
        f"subscription($g: [String!]) {{ events(groups: $g) {SELECTION} }}",
        {"g": [f"g{i}" for i in range(100)]},
        "take at most",
    ),
    "literal-notes": (
        "subscription { events(notes: [" + ",".join(f'"n{i}"' for i in range(100)) + f"]) {SELECTION} }}",
        {},
        "take at most",
    ),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(REFUSED))
async def test_what_the_engine_does_not_serve_is_refused_with_a_code(
    forms_server: ServerProcess, transport: str, case: str
) -> None:
    document, variables, words = REFUSED[case]
    async with subscribed(transport, forms_server, unique("u"), document, variables) as results:
        payload = await asyncio.wait_for(_first_payload(results), WAIT)
    validation = (SKIP_INCLUDE, "must select only one top level field")
    code = "GRAPHQL_VALIDATION_FAILED" if words in validation else "BAD_USER_INPUT"
    assert error_codes(payload) == [code], payload
    assert words in payload["errors"][0]["message"]


@pytest.mark.parametrize(
    "accept", ["application/json", "text/event-stream", "multipart/mixed;subscriptionSpec=1.0"]
)
async def test_get_never_runs_a_mutation(forms_server: ServerProcess, accept: str) -> None:
    """With the victim's cookie or token, a cross-site GET (no Origin) publishes nothing."""
    user = unique("u")
    async with WsClient(forms_server.ws_url, token(user)) as victim:
        events = await victim.events([f"user_{user}"])
        mutation = f'mutation {{ sendNotify(group: "user_{user}", message: "forged") {{ id }} }}'
        async with httpx.AsyncClient(timeout=WAIT) as client:
            response = await client.get(
                forms_server.http_url,
                params={"query": mutation},
                headers={"accept": accept, "authorization": f"Bearer {token(user, publisher=True)}"},
            )
        assert response.status_code == 405, response.text
        await events.nothing_within(0.5)
