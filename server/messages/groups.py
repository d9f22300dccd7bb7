"""Group names: the Channels rule, checked once at the edge, and the well-known groups."""

from __future__ import annotations

import re

from switchboard.exceptions import BadUserInput, InvalidGroupName

MAX_GROUP_NAME_LENGTH = 100
_GROUP_NAME = re.compile(r"[A-Za-z0-9\-_.]+")
_ID = re.compile(r"[A-Za-z0-9\-_.]+")

ALL = "all"
USER_PREFIX = "user_"
NOTE_PREFIX = "note_"


def require_valid_group_name(name: object) -> str:
    """Return `name` if it is a valid group name, else raise InvalidGroupName."""
    if not isinstance(name, str):
        raise InvalidGroupName("group name must be a string")
    if len(name) >= MAX_GROUP_NAME_LENGTH:
        raise InvalidGroupName(f"group name must be shorter than {MAX_GROUP_NAME_LENGTH} characters")
    if not _GROUP_NAME.fullmatch(name):
        raise InvalidGroupName(
            "group name may hold only ASCII letters, digits, hyphens, underscores and periods"
        )
    return name


def _require_id(kind: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise BadUserInput(f"{kind} may hold only ASCII letters, digits, hyphens, underscores and periods")
    return value


def user_group(user_id: str) -> str:
    """The group every session of one user joins."""
    return require_valid_group_name(USER_PREFIX + _require_id("user id", user_id))


def note_group(note_id: str) -> str:
    """The group of everyone who has a note open."""
    return require_valid_group_name(NOTE_PREFIX + _require_id("note id", note_id))


def note_id_of(group: str) -> str | None:
    """The note id of a note group, or None for any other group."""
    return group[len(NOTE_PREFIX) :] if group.startswith(NOTE_PREFIX) else None
