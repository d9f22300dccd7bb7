"""The built-in event types and the checks on their fields, shared by publishers and sessions."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import orjson

from switchboard.exceptions import InvalidEvent, PayloadTooLarge
from switchboard.messages.envelope import Envelope
from switchboard.messages.groups import ALL, require_valid_group_name, user_group

NOTIFY = "notify"
DATA = "data"
PRESENCE = "presence"  # a session joined or left a note group (published by the server)
RESUME = "resume"  # made per subscriber when a stream resumes; never published
REVOKE = "revoke"  # to user_<id>: take that user's sessions (or one) out of a group (publish.revoke)
REVOKED = "revoked"  # made per session that a revoke took out of a group; never published

# Channels code names handlers after the method they call: `send_notify` is our `notify`.
_CHANNELS_PREFIX = "send_"


class NotifyStatus(enum.Enum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


def canonical_type(event: str) -> str:
    """`send_notify` and `notify` name the same event; Channels' `a.b` style becomes `a_b`."""
    if not isinstance(event, str) or not event:
        raise InvalidEvent("event type must be a non-empty string")
    name = event.replace(".", "_")
    if name.startswith(_CHANNELS_PREFIX) and len(name) > len(_CHANNELS_PREFIX):
        name = name[len(_CHANNELS_PREFIX) :]
    return name


def notify_fields(fields: Mapping[str, Any]) -> tuple[str, NotifyStatus]:
    """Check a notify event's fields; return its message and status."""
    message = fields.get("message")
    if not isinstance(message, str):
        raise InvalidEvent("notify needs a string 'message'")
    raw_status = fields.get("status", NotifyStatus.INFO.value)
    try:
        status = NotifyStatus(raw_status.lower() if isinstance(raw_status, str) else raw_status)
    except ValueError:
        allowed = ", ".join(s.value for s in NotifyStatus)
        raise InvalidEvent(f"notify status must be one of {allowed}") from None
    return message, status


def data_payload(fields: Mapping[str, Any]) -> Any:
    """Check a data event's fields; return its JSON payload."""
    if "payload" not in fields:
        raise InvalidEvent("data needs a 'payload'")
    return fields["payload"]


_CHECKS = {NOTIFY: notify_fields, DATA: data_payload}


HARD_MAX_FIELDS_BYTES = 1024 * 1024
"""No event's encoded fields may exceed this, whoever publishes it."""


def build_envelope(
    group: str, event: str, fields: Mapping[str, Any], *, max_bytes: int = HARD_MAX_FIELDS_BYTES
) -> Envelope:
    """Validate a publish at the edge and wrap it; unknown types pass for custom handlers."""
    require_valid_group_name(group)
    kind = canonical_type(event)
    if kind in (RESUME, REVOKED):
        raise InvalidEvent(f"{kind} events are made by the server, not published")
    if kind == REVOKE:
        raise InvalidEvent("revoke is sent by switchboard.publish.revoke, which checks its fields")
    clean = dict(fields)
    if kind == NOTIFY:
        message, status = notify_fields(clean)
        clean = {**clean, "message": message, "status": status.value}
    elif kind in _CHECKS:
        _CHECKS[kind](clean)
    try:
        size = len(orjson.dumps(clean))
    except TypeError as exc:
        raise InvalidEvent(f"event fields must be JSON-serialisable: {exc}") from None
    if size > max_bytes:
        raise PayloadTooLarge(f"event fields are {size} bytes encoded; the limit is {max_bytes}")
    return Envelope(type=kind, group=group, fields=clean)


def revoke_envelope(
    user_id: str, group: str, session_id: str | None = None, reason: str | None = None
) -> Envelope:
    """The request, sent to `user_<user_id>`, that takes that user's sessions (`session_id`: only
    that one) out of `group` in whichever process they are."""
    require_valid_group_name(group)
    if group == ALL or group == user_group(user_id):
        raise InvalidEvent(f"{group!r} cannot be revoked: end the user's sessions instead")
    if session_id is not None and not isinstance(session_id, str):
        raise InvalidEvent("session_id must be a string")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise InvalidEvent(f"reason must be a string of at most {MAX_REASON} characters")
    fields = {"group": group, "session": session_id, "reason": reason}
    return Envelope(type=REVOKE, group=user_group(user_id), fields=fields)


MAX_REASON = 512
