"""Who may open which note and publish where. The note rule is pluggable by import path."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable

from switchboard.exceptions import ConfigurationError, Forbidden, Unauthenticated
from switchboard.messages.groups import note_id_of
from switchboard.security.auth import User

NotePolicy = Callable[[User, str], bool | Awaitable[bool]]
"""`can_open_note(user, note_id)`: True to allow. May be async."""


def any_authenticated_user(user: User, note_id: str) -> bool:
    """The default: every authenticated user may open every note."""
    return True


def load_note_policy(path: str | None) -> NotePolicy:
    """`module.path:function` (SWITCHBOARD_NOTE_POLICY), or the default."""
    if not path:
        return any_authenticated_user
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError("SWITCHBOARD_NOTE_POLICY must look like 'package.module:function'")
    try:
        policy = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load SWITCHBOARD_NOTE_POLICY {path!r}: {exc}") from None
    if not callable(policy):
        raise ConfigurationError(f"SWITCHBOARD_NOTE_POLICY {path!r} is not callable")
    return policy  # type: ignore[no-any-return]


class Authorizer:
    """The rules of issue 3: anonymous opens nothing; publishing beyond own notes needs the role."""

    def __init__(self, note_policy: NotePolicy = any_authenticated_user) -> None:
        self._note_policy = note_policy

    async def may_open_note(self, user: User | None, note_id: str) -> bool:
        if user is None:
            return False
        allowed = self._note_policy(user, note_id)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)

    async def require_note(self, user: User | None, note_id: str) -> User:
        if user is None:
            raise Unauthenticated("opening a note needs a token")
        if not await self.may_open_note(user, note_id):
            raise Forbidden(f"you may not open note {note_id!r}")
        return user

    async def require_publish(self, user: User | None, group: str) -> User:
        """Publishers: any group. Others: only note groups they may open."""
        if user is None:
            raise Unauthenticated("publishing needs a token")
        if user.is_publisher:
            return user
        note_id = note_id_of(group)
        if note_id and await self.may_open_note(user, note_id):
            return user
        raise Forbidden(f"publishing to {group!r} needs the publisher role")
