"""The GraphQL object types of the contract."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON

from switchboard.fleet.directory import SessionInfo
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import NotifyStatus as DomainNotifyStatus
from switchboard.messages.events import data_payload, notify_fields
from switchboard.sessions.session import Session as DomainSession

# Registered in place: the GraphQL enum is the domain enum, so values need no translation.
strawberry.enum(DomainNotifyStatus, name="NotifyStatus", description="How a notification should look.")
NotifyStatus = DomainNotifyStatus


CURSOR = "Where this event stands in its group's history (<epoch>:<offset>); null when history is off."


def _sent_at(envelope: Envelope) -> datetime:
    return datetime.fromtimestamp(envelope.sent_at, tz=UTC)


@strawberry.type(description="A message for people: a toast, a banner.")
class NotifyEvent:
    id: strawberry.ID
    group: str
    message: str
    status: NotifyStatus
    sent_at: datetime
    cursor: str | None = strawberry.field(description=CURSOR)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> NotifyEvent:
        message, status = notify_fields(envelope.fields)
        return cls(
            id=strawberry.ID(envelope.id),
            group=envelope.group,
            message=message,
            status=status,
            sent_at=_sent_at(envelope),
            cursor=envelope.cursor,
        )


@strawberry.type(description="Data for programs: any JSON payload.")
class DataEvent:
    id: strawberry.ID
    group: str
    payload: JSON
    sent_at: datetime
    cursor: str | None = strawberry.field(description=CURSOR)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> DataEvent:
        return cls(
            id=strawberry.ID(envelope.id),
            group=envelope.group,
            payload=data_payload(envelope.fields),
            sent_at=_sent_at(envelope),
            cursor=envelope.cursor,
        )


@strawberry.type(
    description="Sent first on a resumed subscription, once per group named in `since`: whether every "
    "missed event follows (recovered) or the history could not cover the gap (refetch your state)."
)
class ResumeEvent:
    group: str
    recovered: bool
    reason: str | None
    cursor: str | None = strawberry.field(description="The group's newest cursor when the history was read.")

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> ResumeEvent:
        fields = envelope.fields
        return cls(
            group=envelope.group,
            recovered=bool(fields.get("recovered")),
            reason=fields.get("reason"),
            cursor=fields.get("cursor"),
        )


@strawberry.type(
    description="This session was taken out of `group` by the server (switchboard.publish.revoke, e.g. "
    "the app removed the user from a note): no more events of it arrive; opening it again is up to the "
    "app's policy."
)
class RevokedEvent:
    id: strawberry.ID
    group: str
    reason: str | None
    sent_at: datetime
    cursor: str | None = strawberry.field(description="Always null: made for this session, never replayed.")

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> RevokedEvent:
        reason = envelope.fields.get("reason")
        return cls(
            id=strawberry.ID(envelope.id),
            group=envelope.group,
            reason=reason if isinstance(reason, str) else None,
            sent_at=_sent_at(envelope),
            cursor=None,
        )


@strawberry.enum(description="Whether someone came or went.")
class PresenceKind(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"


@strawberry.type(description="A session joined or left a note group.")
class PresenceEvent:
    id: strawberry.ID
    group: str
    kind: PresenceKind
    user_id: strawberry.ID
    session_id: strawberry.ID
    sent_at: datetime
    cursor: str | None = strawberry.field(
        description="Always null: join and leave are not kept in the history, so they are never replayed "
        "and never push a note's events out of its resume window (ask `presence` for who is there now)."
    )

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> PresenceEvent:
        fields = envelope.fields
        return cls(
            id=strawberry.ID(envelope.id),
            group=envelope.group,
            kind=PresenceKind(fields["kind"]),
            user_id=strawberry.ID(str(fields["user_id"])),
            session_id=strawberry.ID(str(fields["session_id"])),
            sent_at=_sent_at(envelope),
            cursor=envelope.cursor,
        )


@strawberry.type
class PresenceUser:
    user_id: strawberry.ID
    sessions: int


@strawberry.type(description="Who is in a group now, across every server process.")
class Presence:
    group: str
    users: list[PresenceUser]
    sessions: int


@strawberry.input(description="Resume a group's events after the cursor of the last one seen.")
class SinceInput:
    group: str
    cursor: str


@strawberry.type
class User:
    id: strawberry.ID


@strawberry.type(description="One WebSocket connection and the groups it is in.")
class Session:
    id: strawberry.ID
    user_id: strawberry.ID | None
    groups: list[str]
    connected_at: datetime
    subscription_count: int = strawberry.field(description="Subscriptions drawing from this session now.")

    @classmethod
    def from_domain(cls, session: DomainSession) -> Session:
        return cls(
            id=strawberry.ID(session.id),
            user_id=None if session.user_id is None else strawberry.ID(session.user_id),
            groups=session.groups,
            connected_at=datetime.fromtimestamp(session.connected_at, tz=UTC),
            subscription_count=session.stream_count,
        )

    @classmethod
    def from_info(cls, info: SessionInfo) -> Session:
        return cls(
            id=strawberry.ID(info.id),
            user_id=None if info.user_id is None else strawberry.ID(info.user_id),
            groups=list(info.groups),
            connected_at=datetime.fromtimestamp(info.connected_at, tz=UTC),
            subscription_count=info.subscription_count,
        )


@strawberry.type
class PublishResult:
    id: strawberry.ID
    group: str
    sent_at: datetime

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> PublishResult:
        return cls(id=strawberry.ID(envelope.id), group=envelope.group, sent_at=_sent_at(envelope))
