"""Identity: HS256 JWT bearer tokens whose `sub` is the user id."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt

from switchboard.exceptions import BadUserInput, Unauthenticated
from switchboard.messages.groups import user_group
from switchboard.settings import DEFAULT_MAX_TOKEN_TTL

ALGORITHM = "HS256"
PUBLISHER_ROLE = "publisher"
DEFAULT_TOKEN_TTL = 24 * 3600
MAX_TOKEN_TTL = DEFAULT_MAX_TOKEN_TTL  # SWITCHBOARD_MAX_TOKEN_TTL's default
BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller."""

    id: str
    roles: frozenset[str] = frozenset()
    # When the credentials this user came with stop being valid (Unix time; None: never). A live
    # connection is refreshed or closed then (ws/connection.py).
    expires_at: float | None = field(default=None, compare=False)

    @property
    def is_publisher(self) -> bool:
        return PUBLISHER_ROLE in self.roles

    @property
    def group(self) -> str:
        """The `user_<id>` group every session of this user joins."""
        return user_group(self.id)


def mint_token(secret: str, user_id: str, *, publisher: bool = False, ttl: int = DEFAULT_TOKEN_TTL) -> str:
    """A signed token for `user_id`, valid for `ttl` seconds."""
    user_group(user_id)  # the id must make a valid group name
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl}
    if publisher:
        claims["roles"] = [PUBLISHER_ROLE]
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, max_ttl: int = MAX_TOKEN_TTL) -> User:
    """The user a token names; raise Unauthenticated for anything but a valid, unexpired HS256
    token whose lifetime (exp - iat, or what is left of it without iat) is at most `max_ttl`."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    issued = claims.get("iat")
    start = issued if isinstance(issued, int | float) else time.time()
    if claims["exp"] - start > max_ttl:
        raise Unauthenticated(f"token lifetime exceeds the server's maximum of {max_ttl} seconds")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("token subject must be a non-empty string")
    try:
        user_group(sub)
    except BadUserInput as exc:
        raise Unauthenticated(f"token subject is not a valid user id: {exc}") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthenticated("token roles must be a list of strings")
    return User(id=sub, roles=frozenset(roles), expires_at=float(claims["exp"]))


def token_from_header(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, None when absent."""
    if value is None or not value.strip():
        return None
    if not value.lower().startswith(BEARER):
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    token = value[len(BEARER) :].strip()
    if not token:
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token


def authenticate(secret: str, authorization: str | None, max_ttl: int = MAX_TOKEN_TTL) -> User | None:
    """The user behind an Authorization value; None for no value; raise for a bad one."""
    token = token_from_header(authorization)
    return None if token is None else verify_token(secret, token, max_ttl)


def authorization_from_params(params: Mapping[str, object] | None) -> str | None:
    """The authorization entry of a connection_init payload, any capitalisation."""
    if not params:
        return None
    for key, value in params.items():
        if key.lower() == "authorization":
            if not isinstance(value, str):
                raise Unauthenticated("authorization must be a string")
            return value
    return None
