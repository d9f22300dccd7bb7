"""Resuming a subscription: replay what each group published after the client's cursor, then
release the live events held meanwhile, without duplicates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from switchboard.engine.positions import resume_point
from switchboard.exceptions import BadUserInput, SwitchboardError, Unavailable
from switchboard.layers.base import GroupLayer
from switchboard.layers.history import GroupHistory, Recovery, parse_position
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.messages.groups import require_valid_group_name
from switchboard.sessions.session import Session

if TYPE_CHECKING:
    from switchboard.engine.subscription import Subscription

log = logging.getLogger(__name__)


async def recover(layer: GroupLayer, session: Session | None, group: str, position: str) -> Recovery:
    """What `group` published after `position` (a cursor, or "-") for this session, or why that
    cannot be told."""
    if session is None or group not in session.groups:
        return Recovery(group, False, reason="this session is not in that group")
    if not isinstance(layer, GroupHistory):
        return Recovery(group, False, reason="this layer keeps no history")
    try:
        cursor = await resume_point(layer, group, position)
        if cursor is None:
            return Recovery(group, True, cursor=position)  # still no history: nothing missed
        return await layer.history_since(group, cursor)
    except Unavailable as exc:
        log.warning("could not read the history of %s: %s", group, exc)  # Redis' words stay here
        return Recovery(group, False, reason="the history could not be read now: refetch")
    except SwitchboardError as exc:
        return Recovery(group, False, reason=str(exc))


def resume_cursors(payload: dict[str, Any] | None, limit: int) -> dict[str, str] | None:
    """The `resume` cursors of a connection_init payload (group -> cursor), checked."""
    resume = (payload or {}).get("resume")
    if resume is None:
        return None
    if not isinstance(resume, dict) or len(resume) > limit:
        raise BadUserInput(
            f"connection_init resume must be an object of at most {limit} group: cursor entries"
        )
    for group, cursor in resume.items():
        require_valid_group_name(group)
        if not isinstance(cursor, str):
            raise BadUserInput(f"connection_init resume: the cursor of {group!r} must be a string")
        parse_position(cursor)
    return dict(resume)


async def catch_up(
    subscription: Subscription,
    since: list[tuple[str, str]],
    layer: GroupLayer,
    session: Session | None,
    starts: Sequence[tuple[str, str]] = (),
) -> bool:
    """A ResumeEvent per group, its missed events, then the held live ones; False if the
    connection's queue overflowed on the way (the caller closes it as slow, 4008).

    `starts` are the positions of the groups the subscription covers and nothing resumes: each
    gets a ResumeEvent (`recovered: true`, its position as cursor) for the client to keep.

    A ResumeEvent's cursor is the client's position in the group after it, to keep: recovered,
    where the replay starts (each replayed event moves it on); not recovered, the group's newest
    (the client refetches and stands there). A group whose missed events would not fit the
    connection's queue is not replayed at all: its ResumeEvent says `recovered: false` ("too many
    missed events"). Never a partial replay called recovered."""
    replayed: dict[str, int] = {}
    for group, start in starts:
        fields = {"recovered": True, "reason": None, "cursor": start}
        if not subscription.emit(Envelope(type=RESUME, group=group, fields=fields)):
            return False
    for group, cursor in since:
        recovery = await recover(layer, session, group, cursor)
        wanted = [event for event in recovery.events if subscription.filter.accepts(event)]
        room = subscription.room() - 1  # the ResumeEvent itself takes a place
        if recovery.recovered and len(wanted) > room:
            recovery = Recovery(
                group,
                False,
                reason=f"too many missed events ({len(wanted)}) for the connection's queue: refetch",
                cursor=recovery.cursor,
            )
            wanted = []
        position: str | None = cursor if recovery.recovered else recovery.cursor
        if recovery.recovered and recovery.events and recovery.events[0].epoch is not None:
            position = f"{recovery.events[0].epoch}:{(recovery.events[0].offset or 1) - 1}"  # "-" resolved
        fields = {"recovered": recovery.recovered, "reason": recovery.reason, "cursor": position}
        if not subscription.emit(Envelope(type=RESUME, group=group, fields=fields)):
            return False
        for event in wanted:
            if not subscription.emit(event):
                return False
        if recovery.events:
            replayed[group] = recovery.events[-1].offset or 0
    held, subscription.held = subscription.held or [], None
    for event in held:
        if event.offset is not None and event.offset <= replayed.get(event.group, -1):
            continue  # already replayed from the history
        if not subscription.emit(event):
            return False
    return True
