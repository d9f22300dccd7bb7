"""Where a subscription stands in each group it covers: every group has a position from the
moment a subscription starts (a cursor, or "-" before any history), so a reconnect resumes from
there even when no event reached the group before the cut.

SSE carries the positions in its event ids (streams/event_ids.py); a WebSocket client that keeps
cursors (it sent `resume` in connection_init, even empty) gets them as ResumeEvents."""

from __future__ import annotations

from collections.abc import Iterable

from switchboard.exceptions import SwitchboardError
from switchboard.layers.base import GroupLayer
from switchboard.layers.history import HISTORY_OFF, NO_HISTORY, GroupHistory
from switchboard.messages.envelope import Envelope
from switchboard.messages.filters import EventFilter

_PROBE = "-:999999999999999999"  # an epoch no history has: answers with the current cursor only


def covered_groups(session_groups: Iterable[str], event_filter: EventFilter) -> list[str]:
    """The groups of the session a subscription with `event_filter` gets events of."""
    wanted = event_filter.groups
    return [g for g in session_groups if wanted is None or g in wanted]


async def current_cursor(layer: GroupLayer, group: str) -> str | None:
    """The group's newest cursor, NO_HISTORY if it has no history yet, None if the layer keeps
    none (or cannot be read now)."""
    if not isinstance(layer, GroupHistory):
        return None
    try:
        probe = await layer.history_since(group, _PROBE)
    except SwitchboardError:
        return None
    if probe.cursor is not None:
        return probe.cursor
    return None if probe.reason == HISTORY_OFF else NO_HISTORY


async def resume_point(layer: GroupLayer, group: str, position: str) -> str | None:
    """The cursor to replay `group` from for a client that stood at `position`; None if nothing
    can have been missed. A group that had no history then is replayed from the start of the one
    it has now."""
    if position != NO_HISTORY:
        return position
    now = await current_cursor(layer, group)
    if now == NO_HISTORY:
        return None  # still no history: nothing was published to it since
    if now is None:
        return f"{NO_HISTORY}:0"  # the history cannot tell: the replay says recovered: false
    return f"{now.rpartition(':')[0]}:0"


def start_position(cursor: str, group: str, held: Iterable[Envelope]) -> str:
    """The position of a subscription that read `cursor` while it already held live events: just
    before the first one it holds of the group (every held event is delivered after it)."""
    for event in held:
        if event.group == group and event.epoch is not None and event.offset is not None:
            return f"{event.epoch}:{event.offset - 1}"
    return cursor
