"""Queries: who am I, and which session is this connection."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from switchboard.exceptions import BadUserInput, Forbidden
from switchboard.messages.groups import ALL, note_id_of, require_valid_group_name
from switchboard.schema.context import context_of, require_user
from switchboard.schema.types import Presence, PresenceUser, Session, User


@strawberry.type
class Query:
    @strawberry.field(description="Over WebSocket: the caller's own session. Over HTTP: null.")
    def session(self, info: Info) -> Session | None:
        session = context_of(info).session
        return None if session is None else Session.from_domain(session)

    @strawberry.field(description="The caller's own live sessions, in every server process.")
    async def sessions(self, info: Info) -> list[Session]:
        context = context_of(info)
        user = require_user(context)
        infos = await context.services.control.sessions_of(user)
        return [Session.from_info(i) for i in sorted(infos, key=lambda i: i.connected_at)]

    @strawberry.field(
        description="Who is in a group now, in every process: the caller's note groups (notes it may "
        "open) and its own user group; publishers may see any group but `all`."
    )
    async def presence(self, info: Info, group: str) -> Presence:
        context = context_of(info)
        user = require_user(context)
        require_valid_group_name(group)
        if group == ALL:
            raise BadUserInput("presence is not tracked for `all`: see the switchboard_sessions metric")
        note = note_id_of(group)
        allowed = user.is_publisher or group == user.group
        if not allowed and note is not None:
            allowed = await context.services.authorizer.may_open_note(user, note)
        if not allowed:
            raise Forbidden(f"you may not see who is in {group!r}")
        users, sessions = await context.services.presence.members(group)
        return Presence(
            group=group,
            users=[PresenceUser(user_id=strawberry.ID(uid), sessions=count) for uid, count in users],
            sessions=sessions,
        )

    @strawberry.field(description="The authenticated caller, or null for anonymous.")
    def me(self, info: Info) -> User | None:
        user = context_of(info).user
        return None if user is None else User(id=strawberry.ID(user.id))
