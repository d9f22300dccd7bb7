"""The one message envelope that travels from a publisher through a layer to every session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from switchboard.exceptions import MalformedEnvelope


def new_event_id() -> str:
    """A random, URL-safe, globally unique event id."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Envelope:
    """A typed group message: `type` picks the session handler, `fields` are its arguments."""

    type: str
    group: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_event_id)
    sent_at: float = field(default_factory=time.time)
    # Set when the event was appended to its group's history: where it stands in that history.
    offset: int | None = None
    epoch: str | None = None

    @property
    def cursor(self) -> str | None:
        """`<epoch>:<offset>`, what a client hands back to resume after this event."""
        return None if self.offset is None else f"{self.epoch}:{self.offset}"

    def at(self, epoch: str, offset: int) -> Envelope:
        return replace(self, epoch=epoch, offset=offset)

    def encode(self) -> bytes:
        """Serialise for a layer; the inverse of `decode`."""
        return orjson.dumps(
            {
                "type": self.type,
                "group": self.group,
                "id": self.id,
                "sent_at": self.sent_at,
                "fields": self.fields,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Envelope:
        """Parse what `encode` wrote; raise MalformedEnvelope for anything else."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedEnvelope(f"envelope is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedEnvelope("envelope must be a JSON object")
        kind, group, event_id, sent_at, fields = (
            data.get("type"),
            data.get("group"),
            data.get("id"),
            data.get("sent_at"),
            data.get("fields", {}),
        )
        if not isinstance(kind, str) or not isinstance(group, str) or not isinstance(event_id, str):
            raise MalformedEnvelope("envelope needs string 'type', 'group' and 'id'")
        if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
            raise MalformedEnvelope("envelope needs a numeric 'sent_at'")
        if not isinstance(fields, dict):
            raise MalformedEnvelope("envelope 'fields' must be an object")
        return cls(type=kind, group=group, fields=fields, id=event_id, sent_at=float(sent_at))
