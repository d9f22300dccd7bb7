"""The README's "Adding an event type" example, served by a test."""

from __future__ import annotations

import strawberry

from switchboard.exceptions import InvalidEvent
from switchboard.messages.envelope import Envelope
from switchboard.schema import DEFAULT_EVENT_TYPES, build_schema
from switchboard.services import Services
from switchboard.sessions.session import Session
from switchboard.web.app import create_app


@strawberry.type
class ChatEvent:
    id: strawberry.ID
    group: str
    text: str

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> ChatEvent:
        return cls(id=strawberry.ID(envelope.id), group=envelope.group, text=envelope.fields["text"])


app = create_app(schema=build_schema({**DEFAULT_EVENT_TYPES, "chat": ChatEvent}))
services: Services = app.services


@services.handlers.handler("send_chat")
def send_chat(session: Session, message: Envelope) -> None:
    if not isinstance(message.fields.get("text"), str):
        raise InvalidEvent("chat needs a string 'text'")
    session.forward(message)
