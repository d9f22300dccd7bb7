"""Which GraphQL type renders which event type; the `Event` union is built from this table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from switchboard.messages.envelope import Envelope
from switchboard.messages.events import DATA, NOTIFY, PRESENCE, RESUME, REVOKED
from switchboard.schema.types import DataEvent, NotifyEvent, PresenceEvent, ResumeEvent, RevokedEvent


class EventType(Protocol):
    """A Strawberry type that can be built from an envelope."""

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> object: ...


DEFAULT_EVENT_TYPES: Mapping[str, type[EventType]] = {
    NOTIFY: NotifyEvent,
    DATA: DataEvent,
    PRESENCE: PresenceEvent,
    RESUME: ResumeEvent,
    REVOKED: RevokedEvent,
}
