"""End to end over WebSocket and HTTP: groups, notes, typed events, on both layers."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import token, unique
from tests.support.client import EVENT_FIELDS, LEGACY_WS, TRANSPORT_WS, WsClient, error_codes, http
from tests.support.processes import ServerProcess

SEND_NOTIFY = """mutation($group: String!, $message: String!, $status: NotifyStatus!) {
  sendNotify(group: $group, message: $message, status: $status) { id group } }"""
SEND_DATA = (
    "mutation($group: String!, $payload: JSON!) { sendData(group: $group, payload: $payload) { id group } }"
)
OPEN_NOTE = "mutation($note: ID!, $sid: ID) { openNote(noteId: $note, sessionId: $sid) { id groups } }"
CLOSE_NOTE = "mutation($note: ID!, $sid: ID) { closeNote(noteId: $note, sessionId: $sid) { id groups } }"


async def notify(server: ServerProcess, group: str, message: str, status: str = "INFO") -> dict:
    body = await http(
        server.http_url,
        SEND_NOTIFY,
        token("publisher", publisher=True),
        group=group,
        message=message,
        status=status,
    )
    assert "errors" not in body, body
    return body["data"]["sendNotify"]


async def data(server: ServerProcess, group: str, payload: object) -> dict:
    body = await http(
        server.http_url, SEND_DATA, token("publisher", publisher=True), group=group, payload=payload
    )
    assert "errors" not in body, body
    return body["data"]["sendData"]


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_session_joins_all_and_its_user_group_on_connect(
    server: ServerProcess, subprotocol: str
) -> None:
    user = unique("u")
    async with WsClient(server.ws_url, token(user), subprotocol) as client:
        info = await client.session_info()
        assert info["userId"] == user
        assert info["groups"] == ["all", f"user_{user}"]
        events = await client.events()
        sent = await notify(server, f"user_{user}", "hello", "SUCCESS")
        got = (await events.next())["events"]
        assert got["__typename"] == "NotifyEvent"
        assert (got["id"], got["group"], got["message"], got["status"]) == (
            sent["id"],
            f"user_{user}",
            "hello",
            "SUCCESS",
        )


async def test_anonymous_session_joins_only_all_in_dev_mode(server: ServerProcess) -> None:
    async with WsClient(server.ws_url) as client:
        info = await client.session_info()
        assert info["userId"] is None
        assert info["groups"] == ["all"]
        me = await client.execute("{ me { id } }")
        assert me["me"] is None


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_open_and_close_note_over_websocket(server: ServerProcess, subprotocol: str) -> None:
    note = unique()
    async with WsClient(server.ws_url, token(unique("u")), subprotocol) as client:
        events = await client.events()
        opened = (await client.execute(OPEN_NOTE, note=note))["openNote"]
        assert f"note_{note}" in opened["groups"]
        await data(server, f"note_{note}", {"n": 1})
        got = (await events.next())["events"]
        assert got == {
            **got,
            "__typename": "DataEvent",
            "group": f"note_{note}",
            "payload": {"n": 1},
        }

        closed = (await client.execute(CLOSE_NOTE, note=note))["closeNote"]
        assert f"note_{note}" not in closed["groups"]
        await data(server, f"note_{note}", {"n": 2})
        await events.nothing_within(0.5)
        # Closing a note that is not open is a no-op.
        again = (await client.execute(CLOSE_NOTE, note=note))["closeNote"]
        assert again["groups"] == closed["groups"]


async def test_open_and_close_note_over_http_by_session_id(server: ServerProcess) -> None:
    user, note = unique("u"), unique()
    async with WsClient(server.ws_url, token(user)) as client:
        sid = (await client.session_info())["id"]
        events = await client.events()
        body = await http(server.http_url, OPEN_NOTE, token(user), note=note, sid=sid)
        assert "errors" not in body, body
        assert f"note_{note}" in body["data"]["openNote"]["groups"]
        sent = await notify(server, f"note_{note}", "over http")
        assert (await events.next())["events"]["id"] == sent["id"]

        body = await http(server.http_url, CLOSE_NOTE, token(user), note=note, sid=sid)
        assert f"note_{note}" not in body["data"]["closeNote"]["groups"]
        assert f"note_{note}" not in (await client.session_info())["groups"]


async def test_http_note_mutations_refuse_other_users_and_unknown_sessions_alike(
    server: ServerProcess,
) -> None:
    owner, stranger, note = unique("u"), unique("u"), unique()
    async with WsClient(server.ws_url, token(owner)) as client:
        sid = (await client.session_info())["id"]
        theirs = await http(server.http_url, OPEN_NOTE, token(stranger), note=note, sid=sid)
        unknown = await http(server.http_url, OPEN_NOTE, token(stranger), note=note, sid="0" * 32)
        assert error_codes(theirs) == error_codes(unknown) == ["NOT_FOUND"]
        assert theirs["errors"][0]["message"].replace(sid, "X") == unknown["errors"][0]["message"].replace(
            "0" * 32, "X"
        )
        missing = await http(server.http_url, OPEN_NOTE, token(owner), note=note)
        assert error_codes(missing) == ["BAD_USER_INPUT"]
        assert f"note_{note}" not in (await client.session_info())["groups"]


async def test_one_user_many_sessions_all_receive_user_events(server: ServerProcess) -> None:
    user = unique("u")
    async with (
        WsClient(server.ws_url, token(user)) as tab1,
        WsClient(server.ws_url, token(user)) as tab2,
    ):
        assert (await tab1.session_info())["id"] != (await tab2.session_info())["id"]
        subs = [await tab1.events(), await tab2.events()]
        sent = await notify(server, f"user_{user}", "both tabs")
        for sub in subs:
            assert (await sub.next())["events"]["id"] == sent["id"]


async def test_note_isolation(server: ServerProcess) -> None:
    note, other = unique(), unique()
    async with (
        WsClient(server.ws_url, token(unique("u"))) as inside,
        WsClient(server.ws_url, token(unique("u"))) as outside,
    ):
        await inside.execute(OPEN_NOTE, note=note)
        await outside.execute(OPEN_NOTE, note=other)
        in_events, out_events = await inside.events(), await outside.events()
        sent = await data(server, f"note_{note}", {"secret": True})
        assert (await in_events.next())["events"]["id"] == sent["id"]
        await out_events.nothing_within(0.5)


async def test_notify_and_data_subscriptions_are_typed(server: ServerProcess) -> None:
    note = unique()
    async with WsClient(server.ws_url, token(unique("u"))) as client:
        await client.execute(OPEN_NOTE, note=note)
        notifies = await client.subscribe("subscription { notify { id message status } }")
        datas = await client.subscribe(
            "subscription($g: String) { data(group: $g) { id payload group } }", g=f"note_{note}"
        )
        n = await notify(server, f"note_{note}", "typed", "WARNING")
        d = await data(server, f"note_{note}", [1, "two", {"three": 3}])
        assert (await notifies.next())["notify"] == {
            "id": n["id"],
            "message": "typed",
            "status": "WARNING",
        }
        assert (await datas.next())["data"] == {
            "id": d["id"],
            "payload": [1, "two", {"three": 3}],
            "group": f"note_{note}",
        }
        await notifies.nothing_within(0.3)
        await datas.nothing_within(0.3)


async def test_events_groups_filter(server: ServerProcess) -> None:
    user, note = unique("u"), unique()
    async with WsClient(server.ws_url, token(user)) as client:
        await client.execute(OPEN_NOTE, note=note)
        only_note = await client.events([f"note_{note}"])
        everything = await client.events()
        first = await notify(server, f"user_{user}", "to user")
        second = await data(server, f"note_{note}", {"to": "note"})
        assert (await everything.next())["events"]["id"] == first["id"]
        assert (await everything.next())["events"]["id"] == second["id"]
        assert (await only_note.next())["events"]["id"] == second["id"]
        await only_note.nothing_within(0.3)


async def test_events_filter_cannot_reach_other_users_groups(server: ServerProcess) -> None:
    me, other = unique("u"), unique("u")
    async with WsClient(server.ws_url, token(me)) as client:
        sneaky = await client.events([f"user_{other}"])
        await notify(server, f"user_{other}", "not for you")
        await sneaky.nothing_within(0.5)


async def test_publishing_to_an_empty_group_succeeds(server: ServerProcess) -> None:
    result = await notify(server, unique("nobody_"), "into the void")
    assert result["id"]


PRESENCE_EVENTS = """subscription($g: [String!]) { events(groups: $g) {
  __typename ... on PresenceEvent { group kind userId sessionId } } }"""


@pytest.mark.parametrize("transport", [TRANSPORT_WS, LEGACY_WS, "sse"])
async def test_disconnect_leaves_every_group_on_every_transport(
    server: ServerProcess, transport: str
) -> None:
    """A client that goes away leaves its notes (a LEAVE for its session, its id no longer
    found), whatever carried it: nothing of it stays in the group behind it."""
    user, note = unique("u"), unique()
    group = f"note_{note}"
    async with WsClient(server.ws_url, token(unique("w"))) as watcher:
        await watcher.execute(OPEN_NOTE, note=note)
        presence = await watcher.subscribe(PRESENCE_EVENTS, g=[group])
        if transport == "sse":
            async with (
                httpx.AsyncClient(timeout=5) as http_client,
                http_client.stream(
                    "POST",
                    server.http_url,
                    headers={"accept": "text/event-stream", "authorization": f"Bearer {token(user)}"},
                    json={
                        "query": PRESENCE_EVENTS.replace("(groups: $g)", "(notes: $n)").replace(
                            "($g: [String!])", "($n: [ID!])"
                        ),
                        "variables": {"n": [note]},
                    },
                ) as stream,
            ):
                sid = stream.headers["x-switchboard-session"]
                joined = (await presence.next())["events"]
        else:
            async with WsClient(server.ws_url, token(user), subprotocol=transport) as client:
                sid = (await client.session_info())["id"]
                await client.execute(OPEN_NOTE, note=note)
                joined = (await presence.next())["events"]
        assert (joined["kind"], joined["sessionId"]) == ("JOIN", sid)
        left = (await presence.next())["events"]
        assert (left["kind"], left["sessionId"], left["userId"]) == ("LEAVE", sid, user)
        body = await http(server.http_url, OPEN_NOTE, token(user), note=note, sid=sid)
        assert error_codes(body) == ["NOT_FOUND"]
        assert f"note_{note}" in (await watcher.session_info())["groups"]


async def test_query_session_over_http_is_null(server: ServerProcess) -> None:
    body = await http(server.http_url, "{ session { id } me { id } }", token("someone"))
    assert body["data"] == {"session": None, "me": {"id": "someone"}}


async def test_event_fields_document_is_valid(server: ServerProcess) -> None:
    body = await http(server.http_url, f"subscription {{ events {{ {EVENT_FIELDS} }} }}", token("x"))
    # Subscriptions over plain HTTP are refused with a clear code, not a crash.
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "WebSocket" in body["errors"][0]["message"]
