"""Subscriptions: typed streams drawn from the connection's one session.

Strawberry's resolvers below only declare the fields: every subscription, on every transport
and in every form, is served by the delivery engine (switchboard.engine), which reads the
arguments through STREAM_FILTERS and engine.plan and renders each event once for every
subscriber with the same document (engine/render.py). One meaning per argument: if a resolver
is ever reached, it refuses rather than serve a subscription that ignores `notes` and `since`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Collection, Mapping
from typing import Annotated, Any, Union

import strawberry
from strawberry.types import Info

from switchboard.exceptions import BadUserInput
from switchboard.messages.events import DATA, NOTIFY
from switchboard.messages.filters import EventFilter
from switchboard.messages.groups import require_valid_group_name
from switchboard.schema.events import EventType
from switchboard.schema.types import DataEvent, NotifyEvent, SinceInput

FilterBuilder = Callable[[Mapping[str, Any], Collection[str]], EventFilter]


def _groups(groups: list[str] | None) -> frozenset[str] | None:
    return None if groups is None else frozenset(require_valid_group_name(g) for g in groups)


def _group(group: str | None) -> frozenset[str] | None:
    return None if group is None else frozenset((require_valid_group_name(group),))


def events_filter(args: Mapping[str, Any], event_types: Collection[str]) -> EventFilter:
    return EventFilter(groups=_groups(args.get("groups")), types=frozenset(event_types))


def notify_filter(args: Mapping[str, Any], event_types: Collection[str]) -> EventFilter:
    return EventFilter(groups=_group(args.get("group")), types=frozenset((NOTIFY,)))


def data_filter(args: Mapping[str, Any], event_types: Collection[str]) -> EventFilter:
    return EventFilter(groups=_group(args.get("group")), types=frozenset((DATA,)))


STREAM_FILTERS: Mapping[str, FilterBuilder] = {
    "events": events_filter,
    "notify": notify_filter,
    "data": data_filter,
}
"""Root subscription field -> the events it streams, given its arguments."""


_ENGINE_ONLY = BadUserInput(
    "subscriptions are served over WebSocket (graphql-transport-ws or graphql-ws), "
    "GraphQL over SSE or multipart, never by a resolver"
)


def make_subscription(event_types: Mapping[str, type[EventType]]) -> type:
    """The Subscription type, with an `Event` union of every registered event type."""
    members = tuple(event_types.values())
    event_union: Any = Annotated[Union[members], strawberry.union("Event")]  # noqa: UP007

    async def events(
        info: Info,
        groups: list[str] | None = None,
        since: list[SinceInput] | None = None,
        notes: list[strawberry.ID] | None = None,
    ) -> AsyncGenerator[Any, None]:
        raise _ENGINE_ONLY
        yield

    async def notify(info: Info, group: str | None = None) -> AsyncGenerator[NotifyEvent, None]:
        raise _ENGINE_ONLY
        yield

    async def data(info: Info, group: str | None = None) -> AsyncGenerator[DataEvent, None]:
        raise _ENGINE_ONLY
        yield

    events.__annotations__["return"] = AsyncGenerator[event_union, None]

    @strawberry.type
    class Subscription:
        events_field = strawberry.subscription(
            resolver=events,
            name="events",
            description="Everything delivered to this session, or only what comes from some of its groups. "
            "With `notes`, the session joins those notes for as long as this subscription runs (under the "
            "note policy, counted together with openNote), so a client that re-subscribes after a "
            "reconnect is back in its notes. With `since`, or the `resume` cursors of connection_init, "
            "first every event missed in those groups after the cursors (after a ResumeEvent per group "
            "saying whether the gap could be recovered), then live events.",
        )
        notify_field = strawberry.subscription(
            resolver=notify, name="notify", description="Notifications delivered to this session."
        )
        data_field = strawberry.subscription(
            resolver=data, name="data", description="Data events delivered to this session."
        )

    return Subscription
