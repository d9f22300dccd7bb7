"""Who the client is: Switchboard's own tokens, or the app's answer.

The app that owns users answers one of two ways (SWITCHBOARD_AUTH_HOOK or SWITCHBOARD_CONNECT_URL):
- an import-path hook, `hook(handshake) -> User | None` (may be async), raising Unauthenticated
  (or returning None where anonymous sessions are off) to refuse;
- its HTTP connect endpoint: Switchboard POSTs the handshake's origin, address and connection_init
  payload, forwarding the client's Cookie and Authorization headers, and reads back
  `{"user": "42", "roles": [...], "expires_in": 300}` (or `{"user": null}`); 401 or 403 refuse.
A bearer token signed with SWITCHBOARD_SECRET is accepted either way (publishers, scripts).
With a hook, a token that is not ours goes to the app instead of being refused.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.exceptions import ConfigurationError, Unauthenticated, Unavailable
from switchboard.messages.groups import user_group
from switchboard.security.app_endpoint import AppEndpoint
from switchboard.security.auth import User, authenticate, authorization_from_params
from switchboard.security.handshake import Handshake
from switchboard.settings import Settings

log = logging.getLogger(__name__)

AuthHook = Callable[[Handshake], Awaitable[User | None] | User | None]
FORWARDED = ("cookie", "authorization", "origin", "user-agent")


def load_callable(path: str, setting: str) -> Callable[..., Any]:
    """The function at `package.module:function`, named by `setting` in errors."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"{setting} must look like 'package.module:function'")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {setting} {path!r}: {exc}") from None
    if not callable(found):
        raise ConfigurationError(f"{setting} {path!r} is not callable")
    return found  # type: ignore[no-any-return]


class Authenticator:
    """Turns a handshake into a user; the same for WebSocket connections and HTTP requests."""

    def __init__(
        self, settings: Settings, hook: AuthHook | None = None, connect: AppEndpoint | None = None
    ) -> None:
        self._secret = settings.secret
        self._max_ttl = settings.max_token_ttl
        self._hook = hook
        self._connect = connect

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        hook = load_callable(settings.auth_hook, "SWITCHBOARD_AUTH_HOOK") if settings.auth_hook else None
        connect = AppEndpoint.from_settings(settings.connect_url, settings) if settings.connect_url else None
        return cls(settings, hook, connect)

    @property
    def delegates(self) -> bool:
        """Whether the app is asked (and can be asked again when credentials expire)."""
        return self._hook is not None or self._connect is not None

    async def authenticate(self, handshake: Handshake) -> User | None:
        """The user, None for none (anonymous), Unauthenticated to refuse, Unavailable when the
        app cannot answer now."""
        authorization = authorization_from_params(handshake.params) or handshake.header("authorization")
        if authorization:
            try:
                return authenticate(self._secret, authorization, self._max_ttl)
            except Unauthenticated:
                if not self.delegates:
                    raise
        if self._hook is not None:
            return await self._ask_hook(handshake)
        if self._connect is not None:
            if not _carries_credentials(handshake):
                # Nothing the app could name a user by: not worth a request (a flood of bare
                # connects would queue in front of every real login).
                return None
            return await self._ask_app(self._connect, handshake)
        return None

    async def _ask_hook(self, handshake: Handshake) -> User | None:
        assert self._hook is not None
        try:
            found = self._hook(handshake)
            if inspect.isawaitable(found):
                found = await found
        except (Unauthenticated, Unavailable):
            raise
        except Exception as exc:
            log.exception("SWITCHBOARD_AUTH_HOOK failed")
            raise Unavailable(f"the authentication hook failed: {type(exc).__name__}") from None
        if found is not None and not isinstance(found, User):
            log.error("SWITCHBOARD_AUTH_HOOK returned %r, not a User or None", type(found).__name__)
            raise Unavailable("the authentication hook returned something that is not a User")
        return found

    async def _ask_app(self, endpoint: AppEndpoint, handshake: Handshake) -> User | None:
        headers = {name: value for name in FORWARDED if (value := handshake.header(name)) is not None}
        if handshake.address:
            headers["x-forwarded-for"] = handshake.address
        params = {k: v for k, v in handshake.params.items() if k.lower() not in ("authorization", "resume")}
        body = {"transport": handshake.transport, "origin": handshake.origin, "params": params}
        status, answer = await endpoint.post(body, headers)
        if status in (401, 403):
            raise Unauthenticated("the app refused the connection")
        if status >= 300 or not isinstance(answer, dict):
            raise Unavailable(f"the app answered {status} without a JSON object at {endpoint.url}")
        return user_from_answer(answer, endpoint.url)

    async def close(self) -> None:
        if self._connect is not None:
            await self._connect.close()


def _carries_credentials(handshake: Handshake) -> bool:
    """Whether the client presented anything an app identifies users by: a cookie, an
    Authorization header, or connection_init parameters of its own."""
    own_params = any(k.lower() not in ("resume",) for k in handshake.params)
    return bool(handshake.header("cookie") or handshake.header("authorization") or own_params)


def user_from_answer(answer: dict[str, Any], url: str) -> User | None:
    """A connect endpoint's `{"user", "roles", "expires_in"}`; Unavailable if malformed."""
    user_id = answer.get("user")
    if user_id is None:
        return None
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    roles, expires_in = answer.get("roles", []), answer.get("expires_in")
    malformed = (
        not isinstance(user_id, str)
        or not isinstance(roles, list)
        or not all(isinstance(r, str) for r in roles)
        or not (expires_in is None or (isinstance(expires_in, int | float) and expires_in > 0))
    )
    if malformed:
        raise Unavailable(f"the app's answer at {url} is not {{user, roles, expires_in}}")
    try:
        user_group(str(user_id))
    except Exception:
        raise Unavailable(f"the app's answer at {url} names an invalid user id") from None
    expires_at = None if expires_in is None else time.time() + float(expires_in)
    return User(id=str(user_id), roles=frozenset(roles), expires_at=expires_at)
