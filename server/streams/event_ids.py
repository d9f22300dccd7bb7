"""SSE event ids: where a stream stands in each of its groups, so that a reconnect with
`Last-Event-ID` (what EventSource sends by itself) resumes as `events(since:)` does.

An id lists `group=<cursor>` for every group the stream covers, separated by spaces, the event's
own group first (its cursor is the event's). A group with no history yet is `group=-`: resuming
it replays its history from the start, if one began meanwhile.
"""

from __future__ import annotations

from switchboard.exceptions import BadUserInput
from switchboard.layers.history import NO_HISTORY, parse_position
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.messages.groups import require_valid_group_name


class EventIds:
    """A stream's position per group, advanced by every event it sends (per stream per event:
    kept cheap, positions as (epoch, offset), the other groups' text cached)."""

    __slots__ = ("_positions", "_rest")

    def __init__(self, positions: dict[str, str]) -> None:
        self._positions: dict[str, tuple[str, int] | None] = {
            group: _split(cursor) for group, cursor in positions.items()
        }
        self._rest: dict[str, str] = {}  # group -> " other=cursor ..." while those stand still

    def advance(self, message: Envelope) -> str | None:
        """The id of `message` for this stream (None for events outside every history)."""
        group = message.group
        epoch, offset = message.epoch, message.offset
        if message.type == RESUME:
            # Recovered: the replayed events that follow advance the position one by one. Not
            # recovered: the client refetches, and the stream stands where the group is now.
            cursor = message.fields.get("cursor")
            at = None if message.fields.get("recovered") or not isinstance(cursor, str) else _split(cursor)
            epoch, offset = at if at is not None else (None, None)
        positions = self._positions
        if epoch is not None and offset is not None:
            held = positions.get(group)
            if held is None or held[0] != epoch or offset > held[1]:
                positions[group] = (epoch, offset)
                mine = self._rest.get(group)
                self._rest = {} if mine is None else {group: mine}  # the others' text changed
        if group not in positions:
            return None
        rest = self._rest.get(group)
        if rest is None:
            rest = self._rest[group] = "".join(f" {g}={_text(p)}" for g, p in positions.items() if g != group)
        return f"{group}={_text(positions[group])}{rest}"

    def current(self) -> str | None:
        """Every position as one id (None if there is none): sent alone when the stream starts,
        so that a client sees its positions before any event (a quiet group included)."""
        if not self._positions:
            return None
        return " ".join(f"{g}={_text(p)}" for g, p in self._positions.items())


def _split(cursor: str) -> tuple[str, int] | None:
    if cursor == NO_HISTORY:
        return None
    epoch, _, offset = cursor.rpartition(":")
    return epoch, int(offset)


def _text(position: tuple[str, int] | None) -> str:
    return NO_HISTORY if position is None else f"{position[0]}:{position[1]}"


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
        positions[group] = parse_position(cursor)
    return positions
