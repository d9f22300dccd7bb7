"""The GraphQL-over-HTTP spec: the `graphql-http` audit suite (npm, pinned in
client_examples/stock) against a live server passes with no warning, and the
`application/graphql-response+json` media type says request errors with 400."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx

from tests.conftest import token, unique
from tests.support.processes import ROOT, ServerProcess

STOCK = ROOT / "client_examples" / "stock"
MEDIA = "application/graphql-response+json"


async def test_the_graphql_http_audit_passes_with_no_warning(server: ServerProcess) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        ["node", "audit.mjs", server.http_url, token(unique("auditor"))],
        cwd=STOCK,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["warn"], result["notice"], result["error"]) == ([], [], []), result
    assert result["ok"] >= 61


async def test_request_errors_are_400_without_data_for_the_media_type(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {token(unique('u'))}"}
    async with httpx.AsyncClient() as client:

        async def ask(query: str, accept: str, **variables: object) -> httpx.Response:
            body = {"query": query, "variables": variables}
            return await client.post(server.http_url, json=body, headers={**auth, "Accept": accept})

        invalid = await ask("{ nope }", f"{MEDIA}, application/json")
        unparsable = await ask("{", MEDIA)
        coercion = await ask("query($n: Int!) { __typename }", MEDIA, n="x")
        fine = await ask("{ me { id } }", MEDIA)
        legacy = await ask("{ nope }", "application/json")
    for reply in (invalid, unparsable, coercion):
        assert reply.status_code == 400 and reply.headers["content-type"].startswith(MEDIA)
        assert "data" not in reply.json() and reply.json()["errors"]
    assert fine.status_code == 200 and fine.headers["content-type"].startswith(MEDIA)
    assert fine.json()["data"]["me"]["id"]
    assert legacy.status_code == 200 and legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["data"] is None  # clients of application/json see what they always saw


async def test_every_http_error_has_a_code_even_before_execution(server: ServerProcess) -> None:
    """A document that does not parse never reached the schema's error extension."""
    auth = {"Authorization": f"Bearer {token(unique('u'))}"}
    async with httpx.AsyncClient() as client:
        for query in ("{ __typename {", "{ " + "__typename " * 300 + "{", "{ nope }"):
            reply = await client.post(server.http_url, json={"query": query}, headers=auth)
            codes = [e.get("extensions", {}).get("code") for e in reply.json()["errors"]]
            assert codes and all(codes), (query[:20], reply.json())
