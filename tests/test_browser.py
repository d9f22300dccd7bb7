"""Real pages in headless Chromium (Debian's package, driven by Playwright), with every request
to anything but the server blocked: GraphiQL runs a subscription; the demo page shows events."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from tests.conftest import token, unique
from tests.support.processes import ROOT, ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `make screenshots` sets this to docs/ to refresh the committed screenshots.
SCREENSHOTS = os.environ.get("SWITCHBOARD_SCREENSHOTS")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 (once, at set-up)
        pytest.fail(
            "Debian's chromium is not installed (apt-get install chromium; `make test` does this)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
def server(redis_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return redis_servers[0]


async def offline_page(browser: Browser, server: ServerProcess) -> tuple[Page, list[str]]:
    """A page that may reach only the server; what it tried to fetch elsewhere is recorded."""
    context = await browser.new_context(viewport={"width": 1400, "height": 800})
    page = await context.new_page()
    blocked: list[str] = []
    local = f"127.0.0.1:{server.port}"

    async def guard(route: Route) -> None:
        if local in route.request.url:
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    await page.route("**/*", guard)
    return page, blocked


def publish_cli(server: ServerProcess, group: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "publish", "notify", "--group", group, "--message", message],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


async def publish_until_visible(page: Page, selector: str, server: ServerProcess, group: str) -> str:
    marker = unique("from-the-cli-")
    for _ in range(30):
        await asyncio.to_thread(publish_cli, server, group, marker)
        try:
            await page.wait_for_function(
                "([sel, text]) => [...document.querySelectorAll(sel)].some(e => e.innerText.includes(text))",
                arg=[selector, marker],
                timeout=700,
            )
            return marker
        except Exception:  # Playwright's TimeoutError: not shown yet, publish again
            continue
    raise AssertionError(f"{marker} never appeared in {selector}")


async def test_graphiql_runs_a_subscription_offline(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    if not (ROOT / "server" / "web" / "static" / "vendor" / "graphiql.min.js").exists():
        pytest.fail("GraphiQL assets are missing: run `make assets`", pytrace=False)
    user = unique("u")
    page, blocked = await offline_page(browser, server)
    query = (
        "subscription {\n  events {\n    __typename\n    ... on NotifyEvent { group message status }\n  }\n}"
    )
    await page.goto(f"{server.http_url}?token={token(user)}&q={quote(query)}")
    await page.wait_for_selector(".graphiql-execute-button", timeout=15000)
    await page.click(".graphiql-execute-button")
    marker = await publish_until_visible(page, ".graphiql-response", server, f"user_{user}")
    assert marker in await page.locator(".graphiql-response").inner_text()
    assert blocked == [], f"the page tried to reach beyond the server: {blocked}"
    await page.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "graphiql.png"))


async def test_demo_page_shows_events_and_opens_notes(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    user, note = unique("u"), unique()
    page, blocked = await offline_page(browser, server)
    await page.goto(f"{server.base_url}/demo?token={token(user)}")
    await page.wait_for_function("document.getElementById('status').innerText === 'connected'", timeout=15000)
    await page.fill("#note-id", note)
    await page.click("#open-note")
    await page.wait_for_function(
        f"document.getElementById('groups').innerText.includes('note_{note}')", timeout=5000
    )
    marker = await publish_until_visible(page, "#events li", server, f"note_{note}")
    assert f"[note_{note}] {marker}" in await page.locator("#events").inner_text()
    await page.click("#close-note")
    await page.wait_for_function(
        f"!document.getElementById('groups').innerText.includes('note_{note}')", timeout=5000
    )
    assert blocked == [], f"the page tried to reach beyond the server: {blocked}"
    await page.screenshot(path=str(Path(SCREENSHOTS or tmp_path) / "demo.png"))


def test_chromium_is_debians(browser: Browser) -> None:
    assert shutil.which("chromium") == CHROMIUM


SOCKET_SCRIPT = """
async ([url, token]) => {
  const ws = new WebSocket(url, "graphql-transport-ws");
  const messages = [];
  window.__switchboard = { ws, messages };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    messages.push(m);
  };
  ws.send(JSON.stringify({ type: "connection_init", payload: { authorization: "Bearer " + token } }));
  ws.send(JSON.stringify({ id: crypto.randomUUID(), type: "subscribe", payload: {  // as graphql-ws names it
    query: "subscription { events { ... on NotifyEvent { message } } }" } }));
  return ws.extensions;
}
"""


@pytest.fixture(scope="module")
def compressing_server() -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_WS_COMPRESSION": "1"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def window_server() -> Iterator[ServerProcess]:
    server = ServerProcess({"SWITCHBOARD_WS_COMPRESSION": "window"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("name", "extensions"),
    [
        ("memory_server", ""),
        ("compressing_server", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("window_server", "permessage-deflate; client_no_context_takeover"),
    ],
)
async def test_chromium_negotiates_what_each_mode_answers_and_gets_events(
    browser: Browser, request: pytest.FixtureRequest, name: str, extensions: str
) -> None:
    """Chromium offers permessage-deflate by itself: declined by default, no context takeover when on."""
    server: ServerProcess = request.getfixturevalue(name)
    user = unique("u")
    page, blocked = await offline_page(browser, server)
    await page.goto(f"{server.base_url}/healthz")
    negotiated = await page.evaluate(SOCKET_SCRIPT, [server.ws_url, token(user)])
    assert negotiated == extensions
    await page.wait_for_function("window.__switchboard.messages.some(m => m.type === 'connection_ack')")
    await asyncio.sleep(0.3)  # the subscription starts
    # Over the compression threshold, and enough that in `window` mode the later ones refer back to
    # those before them (the id as a back-reference to the frame before, the payload shared).
    sent = [f"a browser-sized event {i} " + "of some length " * 20 for i in range(20)]
    publish = "mutation($g: String!, $m: String!) { sendNotify(group: $g, message: $m) { id } }"
    publisher = token(unique("svc"), publisher=True)  # a rate-limit bucket of its own on a shared server
    async with httpx.AsyncClient() as client:
        for long_message in sent:
            reply = await client.post(
                server.http_url,
                json={"query": publish, "variables": {"g": f"user_{user}", "m": long_message}},
                headers={"Authorization": f"Bearer {publisher}"},
            )
            assert "errors" not in reply.json(), reply.text
    await page.wait_for_function(
        "(n) => window.__switchboard.messages.filter(m => m.type === 'next').length >= n",
        arg=len(sent),
        timeout=5000,
    )
    got = await page.evaluate(
        "window.__switchboard.messages.filter(m => m.type === 'next').map(m => m.payload.data.events.message)"
    )
    assert got == sent
    assert blocked == []
    await page.context.close()


@pytest.mark.parametrize(
    ("earlier", "stop"),
    [(True, "sigterm"), (False, "sigterm"), (False, "kill")],
    ids=["an-event-before", "nothing-before", "killed-nothing-before"],
)
async def test_the_demo_page_keeps_its_note_and_misses_nothing_across_a_restart(
    browser: Browser,
    redis_url: str,
    prefix: str,
    publishing: Callable[[str, str], None],
    earlier: bool,
    stop: str,
) -> None:
    """The shipped page as a user runs it: open a note, the server restarts while events are
    published to it; the page shows every event once, in order, and is in the note again."""
    own = ServerProcess({"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}).start()
    user, note = unique("u"), unique()
    group = f"note_{note}"
    try:
        page, blocked = await offline_page(browser, own)
        await page.goto(f"{own.base_url}/demo?token={token(user)}")
        await page.wait_for_function(
            "document.getElementById('status').innerText === 'connected'", timeout=15000
        )
        await page.fill("#note-id", note)
        await page.click("#open-note")
        await page.wait_for_function(
            f"document.getElementById('groups').innerText.includes('{group}')", timeout=5000
        )
        before = ["before-1"] if earlier else []
        for message in before:
            await asyncio.to_thread(publishing, group, message)
        shown = "([text]) => document.getElementById('events').innerText.includes(text)"
        if before:
            await page.wait_for_function(shown, arg=[f"[{group}] before-1"], timeout=5000)
        await asyncio.sleep(0.5)  # the page has seen the note's position

        if stop == "kill":
            own.stop(signal.SIGKILL)
        else:
            assert own.stop() == 0
        for message in ("during-1", "during-2"):
            await asyncio.to_thread(publishing, group, message)
        own = own.on_same_port().start()
        await page.wait_for_function(shown, arg=[f"[{group}] during-2"], timeout=15000)
        await page.wait_for_function(
            f"document.getElementById('groups').innerText.includes('{group}')", timeout=5000
        )
        await asyncio.to_thread(publishing, group, "after-1")
        await page.wait_for_function(shown, arg=[f"[{group}] after-1"], timeout=5000)
        lines = (await page.locator("#events").inner_text()).splitlines()
        assert blocked == []
    finally:
        own.stop()
    mine = [line.removeprefix(f"[{group}] ") for line in reversed(lines) if line.startswith(f"[{group}]")]
    assert mine == [*before, "during-1", "during-2", "after-1"]
