"""Revocation: server code takes a user's sessions (all, or one) out of a group, in every process;
each of their streams gets a RevokedEvent and nothing more of the group, while everyone else in
it goes on receiving. From Python (async and sync) and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from switchboard.exceptions import InvalidEvent
from switchboard.messages.events import build_envelope, revoke_envelope
from switchboard.publish import revoke, revoke_sync
from tests.conftest import token, unique
from tests.support.client import Subscription, WsClient, http
from tests.support.processes import ServerProcess

OPEN = "mutation($n: ID!) { openNote(noteId: $n) { id } }"
EVENTS = """subscription($n: [ID!], $g: [String!]) { events(notes: $n, groups: $g) { __typename
  ... on NotifyEvent { group message }
  ... on RevokedEvent { group reason } } }"""
PRESENCE = "query($g: String!) { presence(group: $g) { sessions } }"


async def next_event(sub: Subscription) -> dict:
    """The next event but presence (others joining the note)."""
    while (event := (await sub.next())["events"])["__typename"] == "PresenceEvent":
        pass
    return event  # type: ignore[no-any-return]


async def only_live(sub: Subscription, message: str) -> None:
    event = await next_event(sub)
    assert event == {"__typename": "NotifyEvent", "group": event["group"], "message": message}, event


@pytest.mark.parametrize("how", ["sync", "async", "cli"])
async def test_a_user_is_taken_out_of_a_note_in_every_process(
    how: str,
    redis_servers: tuple[ServerProcess, ServerProcess],
    publishing: Callable[[str, str], None],
) -> None:
    first, second = redis_servers
    user, other, note = unique("u"), unique("o"), unique("n")
    group = f"note_{note}"
    async with (
        WsClient(first.ws_url, token(user)) as opened,  # in the note by openNote
        WsClient(second.ws_url, token(user)) as declared,  # by its subscription's notes
        WsClient(first.ws_url, token(other)) as bystander,
    ):
        await opened.execute(OPEN, n=note)
        await bystander.execute(OPEN, n=note)
        subs = [
            await opened.subscribe(EVENTS, g=[group]),
            await declared.subscribe(EVENTS, n=[note]),
            await bystander.subscribe(EVENTS, g=[group]),
        ]
        await asyncio.to_thread(publishing, group, "before")
        for sub in subs:
            await only_live(sub, "before")

        if how == "sync":
            await asyncio.to_thread(revoke_sync, user, group, reason="removed from the note")
        elif how == "async":
            await revoke(user, group, reason="removed from the note")
        else:
            command = [sys.executable, "-m", "switchboard", "revoke", "--user", user, "--group", group]
            done = await asyncio.to_thread(
                subprocess.run,
                [*command, "--reason", "removed from the note"],
                env=dict(os.environ),
                capture_output=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
        for sub in subs[:2]:
            event = await next_event(sub)
            assert event == {"__typename": "RevokedEvent", "group": group, "reason": "removed from the note"}

        await asyncio.to_thread(publishing, group, "after")
        await only_live(subs[2], "after")  # the bystander goes on
        for sub in subs[:2]:
            await sub.nothing_within(0.5)
        assert group not in (await opened.session_info())["groups"]
        assert group not in (await declared.session_info())["groups"]
        present = await http(first.http_url, PRESENCE, token("svc", publisher=True), g=group)
        assert present["data"]["presence"]["sessions"] == 1  # the bystander only
        # One group was taken, not the session: the user's own group still reaches it.
        await asyncio.to_thread(publishing, f"user_{user}", "still here")
        mine = await opened.subscribe(EVENTS, g=[f"user_{user}"])
        await asyncio.to_thread(publishing, f"user_{user}", "still here")
        await only_live(mine, "still here")


async def test_one_session_only(
    redis_servers: tuple[ServerProcess, ServerProcess], publishing: Callable[[str, str], None]
) -> None:
    first, second = redis_servers
    user, note = unique("u"), unique("n")
    group = f"note_{note}"
    async with WsClient(first.ws_url, token(user)) as one, WsClient(second.ws_url, token(user)) as two:
        for client in (one, two):
            await client.execute(OPEN, n=note)
        subs = [await one.subscribe(EVENTS, g=[group]), await two.subscribe(EVENTS, g=[group])]
        await asyncio.to_thread(publishing, group, "warm")
        for sub in subs:
            await only_live(sub, "warm")
        target = (await one.session_info())["id"]
        await asyncio.to_thread(revoke_sync, user, group, session_id=target)
        assert (await next_event(subs[0]))["__typename"] == "RevokedEvent"
        await asyncio.to_thread(publishing, group, "after")
        await only_live(subs[1], "after")
        await subs[0].nothing_within(0.5)
        assert group in (await two.session_info())["groups"]


def test_what_cannot_be_revoked_or_published() -> None:
    for group in ("all", "user_u1"):
        with pytest.raises(InvalidEvent):
            revoke_envelope("u1", group)
    for kind in ("revoke", "revoked"):
        with pytest.raises(InvalidEvent):
            build_envelope("user_u1", kind, {"group": "note_1"})
    assert revoke_envelope("u1", "note_1", reason="r").group == "user_u1"
