"""Who may open which note and publish where.

The note rule is the app's: an import-path function (SWITCHBOARD_NOTE_POLICY, may be async) or
its HTTP permission endpoint (SWITCHBOARD_PERMISSION_URL). Answers are reused for
SWITCHBOARD_PERMISSION_CACHE_TTL seconds per (user, note), in a bounded table. Outcomes: allowed;
Forbidden (denied, or a note the app does not know); BadUserInput (the app says the id is
malformed, or its rule raised ValueError); Unavailable (the app could not answer: never
admitted); any other exception of an import-path rule is an internal error (a bug in it).
"""

from __future__ import annotations

import inspect
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from switchboard.exceptions import BadUserInput, Forbidden, SwitchboardError, Unauthenticated, Unavailable
from switchboard.messages.groups import note_id_of
from switchboard.security.app_endpoint import AppEndpoint
from switchboard.security.auth import User
from switchboard.security.hooks import load_callable
from switchboard.settings import Settings

NotePolicy = Callable[[User, str], bool | Awaitable[bool]]
"""`can_open_note(user, note_id)`: True to allow. May be async; may raise BadUserInput."""

CACHE_ENTRIES = 10_000


def any_authenticated_user(user: User, note_id: str) -> bool:
    """The default: every authenticated user may open every note."""
    return True


def load_note_policy(path: str | None) -> NotePolicy:
    """`module.path:function` (SWITCHBOARD_NOTE_POLICY), or the default."""
    if not path:
        return any_authenticated_user
    return load_callable(path, "SWITCHBOARD_NOTE_POLICY")


class HttpNotePolicy:
    """The app's permission endpoint: POST {user, roles, note_id} -> {"allowed": bool}.

    403 or 404 deny; 400 or 422 say the id is malformed; anything else is Unavailable."""

    def __init__(self, endpoint: AppEndpoint) -> None:
        self._endpoint = endpoint

    async def __call__(self, user: User, note_id: str) -> bool:
        body = {"user": user.id, "roles": sorted(user.roles), "note_id": note_id}
        status, answer = await self._endpoint.post(body)
        if status in (403, 404):
            return False
        if status in (400, 422):
            raise BadUserInput(f"note id {note_id!r} is not one the app knows how to read")
        allowed = answer.get("allowed") if isinstance(answer, dict) else None
        if status >= 300 or not isinstance(allowed, bool):
            raise Unavailable(
                f'the app answered {status} without {{"allowed": bool}} at {self._endpoint.url}'
            )
        return allowed

    async def close(self) -> None:
        await self._endpoint.close()


class Authorizer:
    """Anonymous opens nothing; the app's rule decides notes; publishing needs the role (or,
    with SWITCHBOARD_CLIENT_PUBLISH=notes, being allowed in the note)."""

    def __init__(
        self,
        note_policy: NotePolicy = any_authenticated_user,
        *,
        cache_ttl: float = 0.0,
        members_publish: bool = False,
    ) -> None:
        self._note_policy = note_policy
        self._cache_ttl = cache_ttl
        self._members_publish = members_publish
        self._answers: OrderedDict[tuple[str, str], tuple[float, bool]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> Authorizer:
        policy: NotePolicy
        if settings.permission_url:
            policy = HttpNotePolicy(AppEndpoint.from_settings(settings.permission_url, settings))
        else:
            policy = load_note_policy(settings.note_policy)
        return cls(
            policy,
            cache_ttl=settings.permission_cache_ttl,
            members_publish=settings.client_publish == "notes",
        )

    async def may_open_note(self, user: User | None, note_id: str) -> bool:
        if user is None:
            return False
        key, now = (user.id, note_id), time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        allowed = await self._ask(user, note_id)
        if self._cache_ttl > 0:
            self._answers[key] = (now + self._cache_ttl, allowed)
            self._answers.move_to_end(key)
            while len(self._answers) > CACHE_ENTRIES:
                self._answers.popitem(last=False)
        return allowed

    async def _ask(self, user: User, note_id: str) -> bool:
        try:
            allowed = self._note_policy(user, note_id)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except SwitchboardError:
            raise
        except ValueError as exc:  # int("abc") in the app's rule: the id, not the server
            raise BadUserInput(f"note id {note_id!r} is malformed: {exc}") from None
        # Anything else is a bug in the rule: an internal error, masked, with an id in the log.
        return bool(allowed)

    async def require_note(self, user: User | None, note_id: str) -> User:
        if user is None:
            raise Unauthenticated("opening a note needs a token")
        if not await self.may_open_note(user, note_id):
            raise Forbidden(f"you may not open note {note_id!r}")
        return user

    async def require_publish(self, user: User | None, group: str) -> User:
        """Publishers: any group. Others: nothing, or (members_publish) notes they may open."""
        if user is None:
            raise Unauthenticated("publishing needs a token")
        if user.is_publisher:
            return user
        note_id = note_id_of(group)
        if self._members_publish and note_id and await self.may_open_note(user, note_id):
            return user
        raise Forbidden(f"publishing to {group!r} needs the publisher role")

    async def close(self) -> None:
        close = getattr(self._note_policy, "close", None)
        if close is not None:
            await close()
