"""Presence across processes: who has a note open, join/leave events, and convergence after a
process is killed without cleaning up."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.conftest import token, unique
from tests.support.client import WsClient, error_codes, http
from tests.support.processes import ServerProcess

OPEN = "mutation($n: ID!) { openNote(noteId: $n) { id } }"
CLOSE = "mutation($n: ID!) { closeNote(noteId: $n) { id } }"
PRESENCE = "query($g: String!) { presence(group: $g) { group sessions users { userId sessions } } }"
EVENTS = """subscription($g: [String!]) { events(groups: $g) {
  __typename ... on PresenceEvent { group kind userId sessionId } } }"""


async def presence(server: ServerProcess, group: str, user: str) -> dict:
    body = await http(server.http_url, PRESENCE, token(user), g=group)
    assert "errors" not in body, body
    return body["data"]["presence"]


async def test_presence_across_processes_and_after_a_kill(redis_url: str) -> None:
    env = {
        "REDIS_URL": redis_url,
        "SWITCHBOARD_PREFIX": unique("pr"),
        "SWITCHBOARD_HEARTBEAT_INTERVAL": "0.3",
    }
    a, b = ServerProcess(env).start(), ServerProcess(env).start()
    alice, bob, note = unique("alice"), unique("bob"), unique()
    group = f"note_{note}"
    try:
        async with WsClient(b.ws_url, token(bob)) as watcher:
            await watcher.execute(OPEN, n=note)
            events = await watcher.subscribe(EVENTS, g=[group])
            tabs = [WsClient(a.ws_url, token(alice)), WsClient(b.ws_url, token(alice))]
            for tab in tabs:
                await tab.__aenter__()
                await tab.execute(OPEN, n=note)
            joins = [(await events.next())["events"] for _ in tabs]
            assert {(e["kind"], e["userId"]) for e in joins} == {("JOIN", alice)}
            seen = await presence(a, group, alice)
            assert seen["sessions"] == 3
            assert seen["users"] == sorted(
                [{"userId": alice, "sessions": 2}, {"userId": bob, "sessions": 1}], key=lambda u: u["userId"]
            )
            await tabs[1].execute(CLOSE, n=note)
            left = (await events.next())["events"]
            assert (left["kind"], left["userId"]) == ("LEAVE", alice)
            assert (await presence(b, group, bob))["sessions"] == 2

            a.stop(signal.SIGKILL)  # alice's first tab dies with its process, uncleaned
            started = time.monotonic()
            while (await presence(b, group, bob))["sessions"] != 1:
                assert time.monotonic() - started < 3, "presence did not converge"
                await asyncio.sleep(0.1)
            assert (await presence(b, group, bob))["users"] == [{"userId": bob, "sessions": 1}]
            gone = (await events.next())["events"]
            assert (gone["kind"], gone["userId"]) == ("LEAVE", alice)
            await tabs[1].__aexit__(None, None, None)
            await tabs[0].__aexit__(None, None, None)
    finally:
        a.stop()
        b.stop()


async def test_who_may_see_presence(server: ServerProcess) -> None:
    me, other = unique("u"), unique("u")
    async with WsClient(server.ws_url, token(me)) as client:
        await client.execute(OPEN, n="shared")
        mine = await http(server.http_url, PRESENCE, token(me), g=f"user_{me}")
        assert mine["data"]["presence"]["users"] == [{"userId": me, "sessions": 1}]
        theirs = await http(server.http_url, PRESENCE, token(other), g=f"user_{me}")
        assert error_codes(theirs) == ["FORBIDDEN"]
        publisher = await http(server.http_url, PRESENCE, token("svc", publisher=True), g=f"user_{me}")
        assert publisher["data"]["presence"]["sessions"] == 1
        assert error_codes(await http(server.http_url, PRESENCE, token(me), g="all")) == ["BAD_USER_INPUT"]
        assert error_codes(await http(server.http_url, PRESENCE, None, g="note_shared")) == [
            "UNAUTHENTICATED"
        ]


async def test_presence_work_runs_to_its_end_when_its_caller_is_cancelled() -> None:
    """A JOIN published and then cancelled before it was recorded as sent got no LEAVE (a
    subscription stopped while its note was being joined: test_churn's hasty subscriptions).
    Presence's work now finishes whatever happens to its caller, which is cancelled after."""
    from switchboard.fleet.presence import run_to_end

    published = asyncio.Event()
    recorded: list[str] = []
    reply = asyncio.Event()

    async def announce() -> None:
        published.set()  # the JOIN out to Redis...
        await reply.wait()  # ...its reply still on the way
        recorded.append("JOIN")

    caller = asyncio.create_task(run_to_end(announce()))
    await asyncio.wait_for(published.wait(), 5)
    caller.cancel()
    await asyncio.sleep(0.05)
    assert not caller.done()  # the work is not finished: the caller waits for it
    reply.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)
    assert recorded == ["JOIN"]
