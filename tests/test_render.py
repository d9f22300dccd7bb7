"""The multiplexing renderer: one execution per (event, document, variables), shared by every
subscriber, except for event types that declare their fields depend on the session."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import parse
from strawberry.types import Info

from switchboard.engine.render import Renderer
from switchboard.messages.envelope import Envelope
from switchboard.schema import DEFAULT_EVENT_TYPES, build_schema


@strawberry.type
class WhoSeesEvent:
    group: str

    @strawberry.field
    def seen_by(self, info: Info) -> str:
        return str(info.context["viewer"])

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> WhoSeesEvent:
        return cls(group=envelope.group)


@strawberry.type
class PerSessionEvent(WhoSeesEvent):
    per_session = True

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> PerSessionEvent:
        return cls(group=envelope.group)


schema: Any = build_schema({**DEFAULT_EVENT_TYPES, "shared": WhoSeesEvent, "mine": PerSessionEvent})
DOCUMENT = parse(
    "subscription { events { __typename ... on WhoSeesEvent { seenBy } ... on PerSessionEvent { seenBy } } }"
)


def render(renderer: Renderer, message: Envelope, session: str) -> str | None:
    return renderer.payload(message, "key", session, DOCUMENT, {}, None, {"viewer": session})


def test_one_execution_is_shared_by_every_subscriber() -> None:
    renderer = Renderer(schema)
    message = Envelope(type="shared", group="all")
    payloads = {render(renderer, message, f"s{i}") for i in range(100)}
    assert renderer.executions == 1
    assert payloads == {'{"data":{"events":{"__typename":"WhoSeesEvent","seenBy":"s0"}}}'}


def test_per_session_types_render_for_each_session() -> None:
    renderer = Renderer(schema)
    message = Envelope(type="mine", group="all")
    first, second, again = (render(renderer, message, s) for s in ("a", "b", "a"))
    assert renderer.executions == 2
    assert first == again and '"seenBy":"a"' in (first or "") and '"seenBy":"b"' in (second or "")


def test_a_new_event_is_rendered_anew() -> None:
    renderer = Renderer(schema)
    for n in range(3):
        render(renderer, Envelope(type="shared", group="all", fields={"n": n}), "s")
    assert renderer.executions == 3


RESUMING = """subscription($since: [SinceInput!], $groups: [String!], $show: Boolean!) {
  events(since: $since, groups: $groups) { __typename ... on NotifyEvent { message @include(if: $show) } }
}"""


def test_events_render_without_the_arguments_that_only_choose_them() -> None:
    """`since` and `groups` pick events; rendering one never needs them. They leave the render
    document (so a `since` of many cursors is not coerced again for every event), a variable the
    selection uses stays, and subscriptions differing only in cursors share a rendering."""
    from graphql import print_ast

    from switchboard.engine.plan import Multiplexed, plan
    from switchboard.engine.render import Prepared

    prepared = Prepared(RESUMING, parse(RESUMING))
    planned = [
        plan(
            schema,
            prepared,
            {
                "since": [{"group": f"note_{i}", "cursor": f"e:{n}"} for i in range(40)],
                "groups": None,
                "show": True,
            },
            None,
        )
        for n in (1, 2)
    ]
    assert all(isinstance(p, Multiplexed) for p in planned)
    first, second = planned
    assert isinstance(first, Multiplexed) and isinstance(second, Multiplexed)
    assert first.key == second.key and first.document is second.document
    assert first.variables == {"show": True}
    printed = print_ast(first.document)
    assert "since" not in printed and "groups" not in printed and "$show" in printed
    renderer = Renderer(schema)
    message = Envelope(type="notify", group="all", fields={"message": "hi", "status": "info"})
    payload = renderer.payload(message, first.key, "s", first.document, first.variables, None, {})
    assert payload == '{"data":{"events":{"__typename":"NotifyEvent","message":"hi"}}}'


SELECT = "{ __typename ... on NotifyEvent { message } }"
ONE_SUBSCRIPTION_IN_EVERY_FORM = [
    f"subscription {{ events {SELECT} }}",
    f"subscription($g: [String!]) {{ events(groups: $g) {SELECT} }}",
    "subscription { events(groups: [" + ", ".join(f'"g{i}"' for i in range(40)) + f"]) {SELECT} }}",
    f'subscription {{ events(since: [{{group: "all", cursor: "e:1"}}], notes: ["5"]) {SELECT} }}',
    f'subscription {{ ...R }} fragment R on Subscription {{ events(groups: ["all"]) {SELECT} }}',
    f"subscription {{ ... on Subscription {{ ...R }} }} fragment R on Subscription {{ events {SELECT} }}",
]


def test_every_form_of_one_subscription_renders_with_one_document() -> None:
    """Literal arguments choose events as variables do (a literal list of groups was coerced again
    for every event), and fragments around the root field are the same subscription: all of
    these render with the plain document, once per event for all of them."""
    from graphql import print_ast

    from switchboard.engine.plan import Multiplexed, plan
    from switchboard.engine.render import Prepared

    planned = [plan(schema, Prepared(q, parse(q)), {}, None) for q in ONE_SUBSCRIPTION_IN_EVERY_FORM]
    assert all(isinstance(p, Multiplexed) for p in planned), planned
    keys = {p.key for p in planned if isinstance(p, Multiplexed)}
    texts = {print_ast(p.document) for p in planned if isinstance(p, Multiplexed)}
    assert texts == {print_ast(parse(ONE_SUBSCRIPTION_IN_EVERY_FORM[0]))}
    assert len(keys) == 1
    renderer = Renderer(schema)
    message = Envelope(type="notify", group="all", fields={"message": "hi", "status": "info"})
    for p in planned:
        assert isinstance(p, Multiplexed)
        renderer.payload(message, p.key, "s", p.document, p.variables, None, {})
    assert renderer.executions == 1


def test_an_event_reaching_sessions_one_at_a_time_is_still_rendered_once() -> None:
    """Replays from the history decode a new Envelope per session, and other events are delivered
    in between; the rendering is kept by event id for the recent events."""
    renderer = Renderer(schema)
    event = Envelope(type="shared", group="note_1")
    for i in range(50):
        copy = Envelope(type="shared", group="note_1", id=event.id, sent_at=event.sent_at)
        render(renderer, copy, f"s{i}")
        render(renderer, Envelope(type="shared", group="all", fields={"i": i}), f"s{i}")  # in between
    assert renderer.executions == 1 + 50


def test_the_kept_renderings_are_bounded() -> None:
    from switchboard.engine.render import RECENT_EVENTS

    renderer = Renderer(schema)
    first = Envelope(type="shared", group="all")
    render(renderer, first, "s")
    for _ in range(RECENT_EVENTS):
        render(renderer, Envelope(type="shared", group="all"), "s")
    render(renderer, first, "s")  # forgotten by now: rendered again
    assert renderer.executions == RECENT_EVENTS + 2
