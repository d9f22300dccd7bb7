"""CORS on /graphql over HTTP, from SWITCHBOARD_ALLOWED_ORIGINS: the app's pages may call it, with
credentials; other sites' pages may not, not even blindly (a cross-site form POST is refused
before it is read). Checked with plain HTTP and with a real Chromium page on another origin."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from tests.conftest import token, unique
from tests.support.processes import ServerProcess, free_port
from tests.test_browser import browser  # noqa: F401 (the fixture: Debian's Chromium)

APP = "https://app.example"
QUERY = {"query": "{ me { id } }"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    started = ServerProcess({"SWITCHBOARD_MODE": "prod", "SWITCHBOARD_ALLOWED_ORIGINS": APP}).start()
    yield started
    started.stop()


async def test_the_apps_origin_may_call_with_credentials(server: ServerProcess) -> None:
    user = unique("u")
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            server.http_url,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == APP
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        reply = await client.post(
            server.http_url, json=QUERY, headers={"Origin": APP, "Authorization": f"Bearer {token(user)}"}
        )
    assert reply.json()["data"]["me"]["id"] == user
    assert reply.headers["access-control-allow-origin"] == APP
    assert reply.headers["vary"].lower().count("origin") >= 1


async def test_other_origins_are_refused_before_anything_reads_the_request(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            server.http_url,
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        blind = await client.post(
            server.http_url,
            content=b'{"query":"mutation { closeNote(noteId: \\"1\\") { id } }"}',
            headers={"Origin": "https://evil.example", "Content-Type": "text/plain", "Cookie": "sessionid=x"},
        )
        own = await client.post(
            server.http_url,
            json=QUERY,
            headers={"Origin": server.base_url, "Authorization": f"Bearer {token('me')}"},
        )
        plain = await client.post(
            server.http_url, json=QUERY, headers={"Authorization": f"Bearer {token('me')}"}
        )
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert blind.status_code == 403 and blind.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert own.status_code == 200  # same origin: always allowed
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers  # no browser


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[str]:
    """A second origin serving a page, as the app's own site would."""
    port = free_port()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


async def test_a_real_page_on_the_apps_origin_calls_graphql(browser: Browser, page_server: str) -> None:  # noqa: F811
    other = "http://localhost:1"  # an origin that is not allowed
    switchboard = ServerProcess(
        {"SWITCHBOARD_MODE": "prod", "SWITCHBOARD_ALLOWED_ORIGINS": page_server}
    ).start()
    user = unique("page")
    call = """async ([url, token]) => {
        const reply = await fetch(url, {method: "POST", credentials: "include",
          headers: {"content-type": "application/json", authorization: "Bearer " + token},
          body: JSON.stringify({query: "{ me { id } }"})});
        return (await reply.json()).data.me.id;
    }"""
    page = await browser.new_page()
    try:
        await page.goto(f"{page_server}/index.html")
        assert await page.evaluate(call, [switchboard.http_url, token(user)]) == user
        refused = ServerProcess({"SWITCHBOARD_MODE": "prod", "SWITCHBOARD_ALLOWED_ORIGINS": other}).start()
        try:
            with pytest.raises(Exception, match="Failed to fetch"):
                await page.evaluate(call, [refused.http_url, token(user)])
        finally:
            refused.stop()
    finally:
        await page.close()
        switchboard.stop()
