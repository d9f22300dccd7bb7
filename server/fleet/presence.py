"""Presence: who is in a group now, across every process, and join/leave events for notes.

Redis keeps one hash per group, session id -> "<user>|<process>". An entry whose process has
no heartbeat any more (a process killed without cleaning up) is dropped the next time the group
is read, and its LEAVE event is published then: presence converges within three heartbeats.
A session that leaves while Redis cannot be written is removed when it is back (the layer's
reconnect hook): presence is right again within seconds of Redis returning.

JOIN and LEAVE come in pairs: a LEAVE is announced only for a JOIN that was, and a session that
joined while Redis was away is announced when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Protocol

from switchboard.exceptions import Unavailable
from switchboard.fleet.directory import RedisDirectory
from switchboard.layers.base import GroupLayer
from switchboard.layers.keyed_lock import KeyedLock
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import PRESENCE
from switchboard.messages.groups import ALL, NOTE_PREFIX
from switchboard.sessions.registry import SessionRegistry
from switchboard.sessions.session import Session

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
PRESENCE_KEY_TTL = 24 * 3600  # a backstop only: entries live as long as their process's heartbeat
MAX_PENDING_LEAVES = 100_000  # departures kept for Redis' return (a few dozen bytes each)


class PresenceStore(Protocol):
    async def add(self, session: Session, group: str) -> None: ...
    async def remove(self, session_id: str, group: str) -> None: ...
    async def entries(self, group: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(session id, user id) of the live members, and of the dead ones it just forgot
        (members of a process that died without cleaning up)."""


class Presence:
    """Observes sessions joining and leaving groups (every group but `all`)."""

    def __init__(self, layer: GroupLayer, store: PresenceStore) -> None:
        self._layer = layer
        self._store = store
        self._announced: set[tuple[str, str]] = set()  # (session, group) whose JOIN went out
        self._order = KeyedLock()  # a session's JOIN and LEAVE of a group, one after the other
        # Departures Redis could not be told of: (session, group) -> (user, JOIN announced).
        self._pending: dict[tuple[str, str], tuple[str, bool]] = {}

    async def joined(self, session: Session, group: str) -> None:
        if group == ALL:
            return
        await run_to_end(self._joined_in_order(session, group))

    async def _joined_in_order(self, session: Session, group: str) -> None:
        async with self._order.hold(f"{session.id} {group}"):
            await self._joined(session, group)

    async def _joined(self, session: Session, group: str) -> None:
        earlier = self._pending.pop((session.id, group), None)
        try:
            if earlier is not None:  # its earlier departure first, LEAVE included
                await self._leave(session.id, group, *earlier)
                earlier = None
            await self._store.add(session, group)
            if session.closed or group not in session.groups:
                # It left while the entry was written: the removal may have gone first.
                await self._store.remove(session.id, group)
                return
            await self._announce_join(session, group)
        except Unavailable as exc:
            if earlier is not None:
                self._pending[(session.id, group)] = earlier
            log.warning(
                "presence of %s in %s not recorded: %s", session.id, group, exc, extra={"session": session.id}
            )

    async def left(self, session: Session, group: str) -> None:
        if group == ALL:
            return
        await run_to_end(self._left_in_order(session, group))

    async def _left_in_order(self, session: Session, group: str) -> None:
        async with self._order.hold(f"{session.id} {group}"):
            await self._left(session, group)

    async def _left(self, session: Session, group: str) -> None:
        user = session.user_id or ANONYMOUS
        announced = (session.id, group) in self._announced
        self._announced.discard((session.id, group))
        try:
            await self._leave(session.id, group, user, announced)
        except Unavailable as exc:
            log.warning(
                "presence of %s in %s not removed now (%s); will be when Redis is back",
                session.id,
                group,
                exc,
                extra={"session": session.id},
            )
            if len(self._pending) >= MAX_PENDING_LEAVES:
                self._pending.pop(next(iter(self._pending)))  # the oldest: its process's lease ends it
            self._pending[(session.id, group)] = (user, announced)

    async def _leave(self, session_id: str, group: str, user: str, announced: bool) -> None:
        await self._store.remove(session_id, group)
        if announced:  # a LEAVE only for a JOIN that went out
            await self._announce(group, "leave", user, session_id)

    async def restore(self, session: Session) -> None:
        """Write `session`'s presence again (after Redis lost it); announce the JOINs that could
        not go out while it was away (none twice)."""
        for group in session.groups:
            if group != ALL:
                async with self._order.hold(f"{session.id} {group}"):
                    await self._store.add(session, group)
                    await self._announce_join(session, group)

    async def flush_departures(self) -> int:
        """Remove the departures Redis could not be told of (when it is back); how many remain."""
        for key in list(self._pending):
            async with self._order.hold(f"{key[0]} {key[1]}"):
                found = self._pending.pop(key, None)
                if found is None:
                    continue  # the session joined again meanwhile, which sent it
                try:
                    await self._leave(key[0], key[1], *found)
                except Unavailable:
                    self._pending[key] = found
                    break  # still away: the next reconnect tries again
        return len(self._pending)

    async def _announce_join(self, session: Session, group: str) -> None:
        if not group.startswith(NOTE_PREFIX) or (session.id, group) in self._announced:
            return  # only notes have presence events
        if session.closed or group not in session.groups:
            return
        await self._announce(group, "join", session.user_id or ANONYMOUS, session.id)
        self._announced.add((session.id, group))

    async def members(self, group: str) -> tuple[list[tuple[str, int]], int]:
        """[(user id, sessions)] sorted by user id, and the number of sessions."""
        entries, dead = await self._store.entries(group)
        for session_id, user_id in dead:  # their process died: they left without a word
            await self._announce(group, "leave", user_id, session_id)
        users = Counter(user for _, user in entries)
        return sorted(users.items()), len(entries)

    async def _announce(self, group: str, kind: str, user_id: str, session_id: str) -> None:
        if group.startswith(NOTE_PREFIX):
            fields = {"kind": kind, "user_id": user_id, "session_id": session_id}
            # Not kept in the note's history (Centrifugo keeps join/leave out of it too): a
            # crowd opening and closing a note must not push its events out of the resume window.
            envelope = Envelope(type=PRESENCE, group=group, fields=fields)
            await self._layer.group_send(group, envelope, history=False)


async def run_to_end(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to its end even if the caller is cancelled meanwhile (the cancellation is
    raised once it is done). A JOIN published, then cancelled before it was recorded as sent,
    got no LEAVE: a subscription stopped while its note was being joined (test_churn)."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class LocalPresenceStore:
    """One process: the members are the registry's sessions in the group."""

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    async def add(self, session: Session, group: str) -> None:
        return None

    async def remove(self, session_id: str, group: str) -> None:
        return None

    async def entries(self, group: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return [(s.id, s.user_id or ANONYMOUS) for s in self._registry if group in s.groups], []


class RedisPresenceStore:
    def __init__(self, directory: RedisDirectory, prefix: str) -> None:
        self._directory = directory
        self._prefix = prefix

    def _key(self, group: str) -> str:
        return f"{self._prefix}:presence:{group}"

    async def add(self, session: Session, group: str) -> None:
        value = f"{session.user_id or ANONYMOUS}|{self._directory.process_id}"

        def build(pipe: Any) -> None:
            pipe.hset(self._key(group), session.id, value)
            pipe.expire(self._key(group), PRESENCE_KEY_TTL)

        await self._directory.run(build)

    async def remove(self, session_id: str, group: str) -> None:
        await self._directory.run(lambda pipe: pipe.hdel(self._key(group), session_id))

    async def entries(self, group: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        (raw,) = await self._directory.run(lambda pipe: pipe.hgetall(self._key(group)))
        parsed = []
        for sid, value in raw.items():
            user, _, process = value.decode().rpartition("|")
            parsed.append((sid.decode(), user, process))
        alive = await self._directory.alive({p for _, _, p in parsed})
        dead = [(sid, user) for sid, user, process in parsed if process not in alive]
        if dead:
            await self._directory.run(lambda pipe: pipe.hdel(self._key(group), *[sid for sid, _ in dead]))
        return [(sid, user) for sid, user, process in parsed if process in alive], dead
