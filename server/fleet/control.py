"""Finding and changing a user's sessions, in this process or any other."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from switchboard.exceptions import NotFound, Unavailable
from switchboard.fleet.directory import Directory, SessionInfo
from switchboard.fleet.inbox import Inbox
from switchboard.layers.redis import RedisLayer
from switchboard.security.auth import User
from switchboard.sessions.registry import SessionRegistry
from switchboard.sessions.session import Session

log = logging.getLogger(__name__)

MAX_PENDING_DEPARTURES = 100_000  # sessions gone while Redis was away, removed when it is back


class SessionControl:
    """The one place sessions enter and leave the registry and the directory."""

    def __init__(
        self, registry: SessionRegistry, directory: Directory, layer: RedisLayer | None = None
    ) -> None:
        self.registry = registry
        self.directory = directory
        self._departed: dict[str, Session] = {}  # gone while the directory could not be written
        # Over Redis, other processes ask this one to change its sessions through its inbox.
        self.inbox = Inbox(layer, self._inbox_handlers()) if layer is not None else None

    async def start(self) -> None:
        await self.directory.start()
        if self.inbox is not None:
            self.inbox.start()

    async def close(self) -> None:
        if self.inbox is not None:
            await self.inbox.close()
        await self.directory.close()

    @property
    def process_id(self) -> str:
        return self.directory.process_id

    def _inbox_handlers(self) -> dict[str, Any]:
        return {"open_note": self._remote_open, "close_note": self._remote_close}

    async def connected(self, session: Session) -> None:
        """Publish a new session; raise Unavailable if the directory cannot be written."""
        await self.directory.register(session)
        self.registry.add(session)

    async def disconnected(self, session: Session) -> None:
        self.registry.remove(session)
        try:
            await self.directory.unregister(session)
        except Unavailable as exc:
            # Removed when Redis is back (reregister); if this process dies first, readers skip
            # it once its heartbeat expires (3 heartbeat intervals).
            log.warning("session %s not removed from the directory now: %s", session.id, exc)
            if len(self._departed) >= MAX_PENDING_DEPARTURES:
                self._departed.pop(next(iter(self._departed)))
            self._departed[session.id] = session

    async def reregister(self, restore: Callable[[Session], Awaitable[None]] | None = None) -> int:
        """Write every live session of this process to the directory again (and `restore` its
        presence): after Redis restarted empty, or dropped them while unreachable. Returns how
        many were written; one that fails is retried at the next reconnect. Sessions that left
        while Redis was away are removed first."""
        await self.flush_departures()
        written = 0
        for session in self.registry:
            try:
                await self.directory.register(session)
                if restore is not None:
                    await restore(session)
            except Unavailable as exc:
                log.warning("session %s not registered again: %s", session.id, exc)
                continue
            written += 1
        return written

    async def flush_departures(self) -> int:
        """Remove from the directory the sessions that left while it could not be written;
        how many remain (Redis still away)."""
        for session_id, session in list(self._departed.items()):
            try:
                await self.directory.unregister(session)
            except Unavailable:
                break
            self._departed.pop(session_id, None)
        return len(self._departed)

    async def changed(self, session: Session) -> None:
        try:
            await self.directory.update(session)
        except Unavailable as exc:
            log.warning("session %s groups not updated in the directory: %s", session.id, exc)

    def info(self, session: Session) -> SessionInfo:
        return SessionInfo.of(session, self.process_id)

    async def sessions_of(self, user: User) -> list[SessionInfo]:
        return await self.directory.of_user(user.id)

    async def open_note(self, user: User, session_id: str, note_id: str) -> SessionInfo:
        return await self._act(user, session_id, note_id, opening=True)

    async def close_note(self, user: User, session_id: str, note_id: str) -> SessionInfo:
        return await self._act(user, session_id, note_id, opening=False)

    async def _act(self, user: User, session_id: str, note_id: str, *, opening: bool) -> SessionInfo:
        local = self.registry.get(session_id)
        if local is not None:
            return await self._act_locally(user.id, session_id, note_id, opening=opening)
        info = await self.directory.locate(session_id)
        if info is None or info.user_id != user.id or self.inbox is None:
            raise NotFound(f"no session {session_id!r}")
        op = "open_note" if opening else "close_note"
        result = await self.inbox.call(info.process, op, session=session_id, note=note_id, user=user.id)
        return SessionInfo.from_dict(result)

    async def _act_locally(
        self, user_id: str, session_id: str, note_id: str, *, opening: bool
    ) -> SessionInfo:
        session = self.registry.get(session_id)
        if session is None or session.user_id != user_id:
            raise NotFound(f"no session {session_id!r}")
        if opening:
            await session.open_note(note_id)
        else:
            await session.close_note(note_id)
        await self.changed(session)
        return self.info(session)

    async def _remote_open(self, args: dict[str, Any]) -> dict[str, Any]:
        info = await self._act_locally(
            str(args["user"]), str(args["session"]), str(args["note"]), opening=True
        )
        return info.to_dict()

    async def _remote_close(self, args: dict[str, Any]) -> dict[str, Any]:
        info = await self._act_locally(
            str(args["user"]), str(args["session"]), str(args["note"]), opening=False
        )
        return info.to_dict()
