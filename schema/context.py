"""Reading the Switchboard context out of Strawberry's Info, with the checks resolvers share."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from switchboard.context import Context
from switchboard.exceptions import BadUserInput, Unauthenticated
from switchboard.security.auth import User
from switchboard.sessions.session import Session


def context_of(info: Info[Any, Any]) -> Context:
    context = info.context
    if not isinstance(context, Context):
        raise TypeError("Switchboard resolvers need a switchboard.services.Context")
    return context


def require_user(context: Context) -> User:
    if context.user is None:
        raise Unauthenticated("this operation needs a token")
    return context.user


def own_session(context: Context, session_id: str | None) -> Session | None:
    """The connection's own session when the mutation means it, else None (look it up by id)."""
    if session_id is None:
        if context.session is None:
            raise BadUserInput("sessionId is required over HTTP")
        return context.session
    if context.session is not None and context.session.id == session_id:
        return context.session
    return None
