"""The session (consumer) on both layers: groups, dispatch by type, bounded streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchboard import close_codes
from switchboard.exceptions import InvalidGroupName, SessionClosed, Unauthenticated
from switchboard.layers import GroupLayer, InMemoryLayer
from switchboard.messages.envelope import Envelope
from switchboard.security.auth import User
from switchboard.sessions.handlers import HandlerRegistry
from switchboard.sessions.session import DEFAULT_HANDLERS, Session
from tests.conftest import unique
from tests.test_layers import make

TIMEOUT = 5.0


@pytest.fixture(params=["memory", "redis", "cluster"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[GroupLayer]:
    made = make(request.param, request)
    yield made
    await made.close()


async def take(stream: AsyncIterator[Envelope], count: int) -> list[Envelope]:
    async with asyncio.timeout(TIMEOUT):
        return [await anext(stream) for _ in range(count)]


async def test_connect_joins_all_and_user_group_disconnect_leaves_everything(
    layer: GroupLayer,
) -> None:
    user = User(id=unique("u"))
    session = Session(layer, user)
    await session.connect()
    await session.open_note("7")
    await session.add_group("custom.group-1")
    assert session.groups == ["all", f"user_{user.id}", "note_7", "custom.group-1"]
    await session.disconnect()
    assert session.groups == []
    # Nothing reaches it any more, on any of the groups it had, runtime ones included.
    probe = Session(layer, User(id=unique("u")))
    await probe.connect()
    await probe.open_note("7")
    stream = probe.stream()
    waiting = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0)
    for group in ("all", "note_7"):
        await layer.group_send(group, Envelope(type="notify", group=group, fields={"message": "x"}))
    (got,) = await waiting
    assert got.group == "all"
    assert session.stats.delivered == 0
    await stream.aclose()
    await probe.disconnect()
    with pytest.raises(SessionClosed):
        await session.add_group("late")


async def test_anonymous_is_refused_when_not_allowed(layer: GroupLayer) -> None:
    session = Session(layer, None)
    with pytest.raises(Unauthenticated):
        await session.connect(allow_anonymous=False)
    assert session.groups == []


async def test_invalid_group_names_are_refused(layer: GroupLayer) -> None:
    session = Session(layer, User(id="1"))
    for bad in ("", "a b", "ü", "x" * 100, "a/b", "a:b", "a\nb"):
        with pytest.raises(InvalidGroupName):
            await session.add_group(bad)
    await session.add_group("x" * 99)
    await session.disconnect()


async def test_dispatch_by_type_and_unknown_types_are_dropped(layer: GroupLayer) -> None:
    session = Session(layer, User(id=unique("u")))
    await session.connect()
    stream = session.stream()
    waiting = asyncio.ensure_future(take(stream, 2))
    await asyncio.sleep(0)
    group = session.groups[1]
    await layer.group_send(group, Envelope(type="no_such_type", group=group, fields={}))
    await layer.group_send(group, Envelope(type="notify", group=group, fields={"message": 5}))  # invalid
    ok1 = Envelope(type="notify", group=group, fields={"message": "hi", "status": "error"})
    ok2 = Envelope(type="data", group=group, fields={"payload": None})
    await layer.group_send(group, ok1)
    await layer.group_send(group, ok2)
    assert [m.id for m in await waiting] == [ok1.id, ok2.id]
    assert session.stats.unknown_type == 1
    assert session.stats.invalid == 1
    await stream.aclose()
    await session.disconnect()


async def test_custom_event_type_through_the_registry(layer: GroupLayer) -> None:
    handlers = DEFAULT_HANDLERS.copy()
    seen: list[str] = []

    @handlers.handler("send_chat")  # Channels-style name; canonical type is `chat`
    def chat(session: Session, message: Envelope) -> None:
        seen.append(message.fields["text"])
        session.forward(message)

    session = Session(layer, User(id=unique("u")), handlers=handlers)
    await session.connect()
    stream = session.stream(types={"chat"})
    waiting = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0)
    await layer.group_send("all", Envelope(type="notify", group="all", fields={"message": "not chat"}))
    sent = Envelope(type="chat", group="all", fields={"text": "hello"})
    await layer.group_send("all", sent)
    assert [m.id for m in await waiting] == [sent.id]
    assert seen == ["hello"]
    assert "chat" in handlers and "chat" not in DEFAULT_HANDLERS
    await stream.aclose()
    await session.disconnect()


async def test_a_failing_handler_does_not_kill_the_session(layer: GroupLayer) -> None:
    handlers = HandlerRegistry({"boom": lambda s, m: 1 / 0, "notify": Session.send_notify})
    session = Session(layer, User(id=unique("u")), handlers=handlers)
    await session.connect()
    stream = session.stream()
    waiting = asyncio.ensure_future(take(stream, 1))
    await asyncio.sleep(0)
    await layer.group_send("all", Envelope(type="boom", group="all"))
    after = Envelope(type="notify", group="all", fields={"message": "still here"})
    await layer.group_send("all", after)
    assert [m.id for m in await waiting] == [after.id]
    await stream.aclose()
    await session.disconnect()


async def test_streams_are_bounded_and_overflow_closes_as_slow_consumer() -> None:
    layer = InMemoryLayer()
    closed: list[tuple[int, str]] = []

    async def closer(code: int, reason: str) -> None:
        closed.append((code, reason))

    session = Session(layer, User(id="slow"), queue_size=3, closer=closer)
    await session.connect()
    stream = session.stream()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    for i in range(10):  # nobody reads: the queue must not grow past its bound
        await layer.group_send("all", Envelope(type="notify", group="all", fields={"message": str(i)}))
    await asyncio.sleep(0.01)
    assert session.stats.overflowed
    assert closed == [(close_codes.SLOW_CONSUMER, "slow consumer: outgoing queue overflowed")]
    # What was queued before the overflow is still readable, then the stream ends.
    got = [(await first).fields["message"]]
    got += [m.fields["message"] async for m in stream]
    assert got == ["0", "1", "2"]  # exactly the bound; the fourth overflowed
    await session.disconnect()


async def test_several_streams_draw_from_one_session(layer: GroupLayer) -> None:
    session = Session(layer, User(id=unique("u")))
    await session.connect()
    a, b = session.stream(), session.stream(groups={"all"})
    wa, wb = asyncio.ensure_future(take(a, 1)), asyncio.ensure_future(take(b, 1))
    await asyncio.sleep(0)
    assert session.stream_count == 2
    sent = Envelope(type="data", group="all", fields={"payload": 1})
    await layer.group_send("all", sent)
    assert (await wa)[0].id == (await wb)[0].id == sent.id
    await a.aclose()
    await b.aclose()
    assert session.stream_count == 0
    await session.disconnect()


async def test_a_disconnected_session_leaves_every_layer_group(layer: GroupLayer) -> None:
    """The layer itself no longer holds the session's receiver, in any group it was in."""
    user = User(id=unique("u"))
    session = Session(layer, user)
    before_all = layer.local_count("all")  # type: ignore[attr-defined]
    await session.connect()
    note, custom = unique("n"), unique("g")
    await session.open_note(note)
    await session.add_group(custom)
    groups = [user.group, f"note_{note}", custom]
    assert [layer.local_count(g) for g in groups] == [1, 1, 1]  # type: ignore[attr-defined]
    assert layer.local_count("all") == before_all + 1  # type: ignore[attr-defined]
    await session.disconnect()
    assert [layer.local_count(g) for g in groups] == [0, 0, 0]  # type: ignore[attr-defined]
    assert layer.local_count("all") == before_all  # type: ignore[attr-defined]


async def test_a_note_stays_open_while_anyone_holds_it(layer: GroupLayer) -> None:
    """openNote and a subscription that declared the note each hold it: closing one keeps it."""
    session = Session(layer, User(id=unique("u")))
    await session.connect()
    note, subscription = unique("n"), object()
    await session.open_note(note)  # openNote's hold
    await session.open_note(note, holder=subscription)
    await session.close_note(note)
    assert f"note_{note}" in session.groups
    await session.close_note(note, holder=subscription)
    assert f"note_{note}" not in session.groups
    assert layer.local_count(f"note_{note}") == 0  # type: ignore[attr-defined]
    await session.disconnect()
