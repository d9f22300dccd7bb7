"""Resuming a subscription: replay what each group published after the client's cursor, then
release the live events held meanwhile, without duplicates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from switchboard.exceptions import SwitchboardError
from switchboard.layers.base import GroupLayer
from switchboard.layers.history import GroupHistory, Recovery
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.sessions.session import Session

if TYPE_CHECKING:
    from switchboard.ws.subscription import WsSubscription


async def recover(layer: GroupLayer, session: Session | None, group: str, cursor: str) -> Recovery:
    """What `group` published after `cursor` for this session, or why that cannot be told."""
    if session is None or group not in session.groups:
        return Recovery(group, False, reason="this session is not in that group")
    if not isinstance(layer, GroupHistory):
        return Recovery(group, False, reason="this layer keeps no history")
    try:
        return await layer.history_since(group, cursor)
    except SwitchboardError as exc:
        return Recovery(group, False, reason=str(exc))


async def catch_up(
    subscription: WsSubscription, since: list[tuple[str, str]], layer: GroupLayer, session: Session | None
) -> bool:
    """A ResumeEvent per group, its missed events, then the held live ones; False if the
    connection's queue overflowed on the held ones (the caller closes it as slow)."""
    replayed: dict[str, int] = {}
    for group, cursor in since:
        recovery = await recover(layer, session, group, cursor)
        fields = {"recovered": recovery.recovered, "reason": recovery.reason, "cursor": recovery.cursor}
        subscription.emit(Envelope(type=RESUME, group=group, fields=fields))
        for event in recovery.events:
            if subscription.filter.accepts(event):
                subscription.emit(event)
            replayed[group] = event.offset or 0
    held, subscription.held = subscription.held or [], None
    for event in held:
        if event.offset is not None and event.offset <= replayed.get(event.group, -1):
            continue  # already replayed from the history
        if not subscription.emit(event):
            return False
    return True
