"""A real Chromium page subscribed with nothing but the browser's own EventSource: the server
(Redis layer) is stopped and started again while events are published, and the page, which
reconnects by itself with Last-Event-ID, gets every event exactly once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from switchboard.publish import send_to_group_sync
from tests.conftest import unique
from tests.support.processes import ServerProcess
from tests.test_browser import browser  # noqa: F401 (the fixture)

SUBSCRIBE = """() => {
  window.got = [];
  window.opens = 0;
  const query = `subscription { events(groups: ["all"]) {
    __typename ... on NotifyEvent { message cursor } ... on ResumeEvent { recovered reason }
  } }`;
  const source = new EventSource("/graphql?query=" + encodeURIComponent(query));
  source.onopen = () => { window.opens += 1; };
  source.addEventListener("next", (e) => {
    const event = JSON.parse(e.data).data.events;
    if (event.__typename !== "PresenceEvent") window.got.push(event);
  });
}"""


async def seen(page: Page) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.got"))


async def until(page: Page, predicate: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
    for _ in range(300):
        if predicate(await seen(page)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page never showed {what}: {await seen(page)}")


def has(message: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: any(e.get("message") == message for e in events)


@pytest.mark.parametrize("earlier", [True, False], ids=["events-before", "quiet-before"])
async def test_an_eventsource_page_gets_every_event_once_across_a_server_restart(
    browser: Browser,  # noqa: F811
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    earlier: bool,
) -> None:
    """With events before the cut, or none at all (the stream's first, data-less id gave
    EventSource its positions to send back)."""
    prefix = unique("es")  # its own `all`: no other test's broadcasts
    env = {"REDIS_URL": redis_url, "SWITCHBOARD_PREFIX": prefix}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SWITCHBOARD_HISTORY_SIZE", raising=False)

    async def publish(*messages: str) -> None:
        for message in messages:
            await asyncio.to_thread(send_to_group_sync, "all", "notify", message=message)

    server = ServerProcess(env).start()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{server.base_url}/healthz")  # the server's origin: no CORS involved
        await page.evaluate(SUBSCRIBE)
        before = ["before-1", "before-2"] if earlier else []
        if earlier:
            for attempt in range(50):  # until the stream is open and in `all`
                await publish(f"probe-{attempt}")
                await asyncio.sleep(0.1)
                if await seen(page):
                    break
            await publish(*before)
            await until(page, has("before-2"), "before-2")
        else:
            for _ in range(50):
                if await page.evaluate("window.opens"):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # its positions taken and sent

        assert server.stop() == 0  # SIGTERM: every stream ended; the page retries every second
        await publish("during-1", "during-2", "during-3")
        server = server.on_same_port().start()

        await until(page, has("during-3"), "the events published while the server was down")
        await publish("after-1")
        await until(page, has("after-1"), "after-1")
        events = await seen(page)
        opens = await page.evaluate("window.opens")
    finally:
        await context.close()
        server.stop()

    assert opens >= 2  # it did reconnect
    resumes = [e for e in events if e["__typename"] == "ResumeEvent"]
    assert resumes and all(e["recovered"] for e in resumes), resumes
    notified = [e["message"] for e in events if e["__typename"] == "NotifyEvent"]
    assert [m for m in notified if not m.startswith("probe-")] == [
        *before,
        "during-1",
        "during-2",
        "during-3",
        "after-1",
    ]
