"""Mutations: open and close notes (group membership), and publish."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from switchboard.context import Context
from switchboard.messages.events import DATA, NOTIFY
from switchboard.messages.groups import note_group, require_valid_group_name
from switchboard.schema.context import context_of, own_session, require_user
from switchboard.schema.types import NotifyStatus, PublishResult, Session


async def _may_publish(context: Context, group: str) -> None:
    context.spend_mutation()
    require_valid_group_name(group)
    await context.services.authorizer.require_publish(context.user, group)


async def _change_note(info: Info, note_id: str, session_id: str | None, *, opening: bool) -> Session:
    """openNote/closeNote: the connection's own session, or one the caller owns in any process."""
    context = context_of(info)
    context.spend_mutation()
    user = require_user(context)
    note_group(note_id)  # a malformed id is BAD_USER_INPUT before anything else
    own = own_session(context, session_id)
    target = own.id if own is not None else str(session_id)
    control = context.services.control
    if opening:
        await context.services.authorizer.require_note(user, note_id)
        return Session.from_info(await control.open_note(user, target, note_id))
    return Session.from_info(await control.close_note(user, target, note_id))


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Join note_<noteId>. Over HTTP, name the session with sessionId; "
        "it may live in any server process."
    )
    async def open_note(
        self, info: Info, note_id: strawberry.ID, session_id: strawberry.ID | None = None
    ) -> Session:
        return await _change_note(info, note_id, session_id, opening=True)

    @strawberry.mutation(description="Leave note_<noteId>; a note that is not open is a no-op.")
    async def close_note(
        self, info: Info, note_id: strawberry.ID, session_id: strawberry.ID | None = None
    ) -> Session:
        return await _change_note(info, note_id, session_id, opening=False)

    @strawberry.mutation(
        description="Send a notification to every session in a group. "
        "Needs the publisher role, except for note groups the caller may open."
    )
    async def send_notify(
        self, info: Info, group: str, message: str, status: NotifyStatus = NotifyStatus.INFO
    ) -> PublishResult:
        context = context_of(info)
        await _may_publish(context, group)
        envelope = await context.services.publisher.send(group, NOTIFY, message=message, status=status.value)
        return PublishResult.from_envelope(envelope)

    @strawberry.mutation(
        description="Send a JSON payload to every session in a group. "
        "Needs the publisher role, except for note groups the caller may open."
    )
    async def send_data(self, info: Info, group: str, payload: JSON) -> PublishResult:
        context = context_of(info)
        await _may_publish(context, group)
        envelope = await context.services.publisher.send(group, DATA, payload=payload)
        return PublishResult.from_envelope(envelope)
