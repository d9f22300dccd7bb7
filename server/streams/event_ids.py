"""SSE event ids: where a stream stands in each of its groups, so that a reconnect with
`Last-Event-ID` (what EventSource sends by itself) resumes as `events(since:)` does.

An id lists `group=<cursor>` for every group the stream covers, separated by spaces, the event's
own group first (its cursor is the event's). A group with no history yet is `group=-`: resuming
it replays its history from the start, if one began meanwhile.
"""

from __future__ import annotations

from switchboard.exceptions import BadUserInput, SwitchboardError
from switchboard.layers.base import GroupLayer
from switchboard.layers.history import HISTORY_OFF, GroupHistory, parse_cursor
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.messages.groups import require_valid_group_name

NO_HISTORY = "-"
_PROBE = "-:999999999999999999"  # an epoch no history has: answers with the current cursor only


class EventIds:
    """A stream's position per group, advanced by every event it sends."""

    __slots__ = ("_encoded", "_positions")

    def __init__(self, positions: dict[str, str]) -> None:
        self._positions = positions
        self._encoded: dict[str, str] = {}  # own group -> id, until a position changes

    def advance(self, message: Envelope) -> str | None:
        """The id of `message` for this stream (None for events outside every history)."""
        group = message.group
        cursor = message.cursor
        if message.type == RESUME:
            # Recovered: the replayed events that follow advance the position one by one. Not
            # recovered: the client refetches, and the stream stands where the group is now.
            cursor = None if message.fields.get("recovered") else message.fields.get("cursor")
        if isinstance(cursor, str) and self._positions.get(group) != cursor and self._newer(group, cursor):
            self._positions[group] = cursor
            self._encoded.clear()
        if group not in self._positions:
            return None
        found = self._encoded.get(group)
        if found is None:
            rest = " ".join(f"{g}={c}" for g, c in self._positions.items() if g != group)
            found = f"{group}={self._positions[group]}" + (f" {rest}" if rest else "")
            self._encoded[group] = found
        return found

    def _newer(self, group: str, cursor: str) -> bool:
        held = self._positions.get(group)
        if held is None or held == NO_HISTORY:
            return True
        epoch, offset = cursor.rpartition(":")[::2]
        held_epoch, held_offset = held.rpartition(":")[::2]
        return epoch != held_epoch or int(offset) > int(held_offset)


def parse_last_event_id(text: str, limit: int) -> dict[str, str]:
    """The positions a `Last-Event-ID` names (group -> cursor or "-"); BadUserInput if it is not
    one of ours."""
    entries = text.split()
    if len(entries) > limit:
        raise BadUserInput(f"Last-Event-ID names at most {limit} groups")
    positions: dict[str, str] = {}
    for entry in entries:
        group, sep, cursor = entry.partition("=")
        if not sep:
            raise BadUserInput("Last-Event-ID is not one this server sent (group=cursor ...)")
        require_valid_group_name(group)
        if cursor != NO_HISTORY:
            parse_cursor(cursor)
        positions[group] = cursor
    return positions


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
    """The cursor to replay `group` from for a stream that stood at `position`; None if nothing
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
