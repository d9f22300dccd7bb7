"""Where every live session is: which user, which process, which groups. Shared through Redis.

Keys (all under the prefix):
  session:<sid>          hash: user, process, groups (JSON), connected_at
  user:<uid>:sessions    set of session ids
  process:<pid>          a heartbeat with a TTL; a session whose process has no heartbeat is gone
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from switchboard.exceptions import Unavailable
from switchboard.layers.redis import REDIS_ERRORS
from switchboard.layers.urls import POOL_SIZE
from switchboard.sessions.registry import SessionRegistry
from switchboard.sessions.session import Session

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # a process silent for 3 intervals is dead
SESSION_KEY_TTL = 24 * 3600  # backstop for keys a dead process left behind


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as another process sees it."""

    id: str
    user_id: str | None
    groups: tuple[str, ...]
    connected_at: float
    process: str
    subscription_count: int = 0

    @classmethod
    def of(cls, session: Session, process: str) -> SessionInfo:
        return cls(
            session.id,
            session.user_id,
            tuple(session.groups),
            session.connected_at,
            process,
            session.stream_count,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "groups": list(self.groups),
            "connected_at": self.connected_at,
            "process": self.process,
            "subscription_count": self.subscription_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            str(data["id"]),
            data.get("user_id"),
            tuple(data.get("groups", ())),
            float(data.get("connected_at", 0.0)),
            str(data.get("process", "")),
            int(data.get("subscription_count", 0)),
        )

    def to_hash(self) -> dict[str, bytes]:
        """The record as a Redis hash: each field of to_dict, as JSON (one encoding for both)."""
        return {name: orjson.dumps(value) for name, value in self.to_dict().items()}

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> SessionInfo:
        return cls.from_dict({name.decode(): orjson.loads(value) for name, value in raw.items()})


class Directory(Protocol):
    process_id: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def register(self, session: Session) -> None: ...
    async def update(self, session: Session) -> None: ...
    async def unregister(self, session: Session) -> None: ...
    async def locate(self, session_id: str) -> SessionInfo | None: ...
    async def of_user(self, user_id: str) -> list[SessionInfo]: ...


class LocalDirectory:
    """One process: the directory is the process's own registry."""

    def __init__(self, registry: SessionRegistry, process_id: str = "local") -> None:
        self._registry = registry
        self.process_id = process_id

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def register(self, session: Session) -> None:
        return None

    async def update(self, session: Session) -> None:
        return None

    async def unregister(self, session: Session) -> None:
        return None

    async def locate(self, session_id: str) -> SessionInfo | None:
        session = self._registry.get(session_id)
        return None if session is None else SessionInfo.of(session, self.process_id)

    async def of_user(self, user_id: str) -> list[SessionInfo]:
        return [SessionInfo.of(s, self.process_id) for s in self._registry.of_user(user_id)]


class RedisDirectory:
    """Sessions of every process on one Redis, with process heartbeats to tell the dead."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        process_id: str,
        timeout: float = 3.0,
        heartbeat: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self._client = client
        self._interval = heartbeat
        self._ttl_ms = max(1, int(heartbeat * 3000))
        self._prefix = prefix
        self.process_id = process_id
        self._timeout = timeout
        self._heartbeat: asyncio.Task[None] | None = None
        self._after_beat: list[Callable[[], Awaitable[object]]] = []
        # Bounds pipelines in flight: a cluster client's pools raise rather than wait when full.
        self._in_flight = asyncio.Semaphore(POOL_SIZE)

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}:user:{user_id}:sessions"

    def _process_key(self, process_id: str) -> str:
        return f"{self._prefix}:process:{process_id}"

    async def start(self) -> None:
        await self.beat()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat_forever(), name="switchboard-heartbeat"
        )

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        with suppress(Unavailable):
            await self._run(lambda pipe: pipe.delete(self._process_key(self.process_id)))

    async def beat(self) -> None:
        """Write this process's heartbeat now."""
        await self._run(lambda pipe: pipe.set(self._process_key(self.process_id), "1", px=self._ttl_ms))

    def after_beat(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run `hook` after every heartbeat written (what Redis could not be told while it was
        away is told within one heartbeat interval of its return)."""
        self._after_beat.append(hook)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
                for hook in self._after_beat:
                    await hook()
            except Unavailable as exc:
                log.warning("heartbeat not written: %s", exc)
            except Exception:
                # The heartbeat must outlive anything one write can raise: without it, this
                # process's sessions would vanish from every other process's view.
                log.exception("heartbeat not written")

    async def alive(self, processes: set[str]) -> set[str]:
        """The processes among `processes` whose heartbeat has not expired."""
        ordered = sorted(processes)
        if not ordered:
            return set()
        flags = await self._run(lambda pipe: [pipe.exists(self._process_key(p)) for p in ordered])
        return {p for p, flag in zip(ordered, flags, strict=True) if flag}

    async def run(self, build: Any) -> list[Any]:
        """One pipeline of commands built by `build(pipe)`; Unavailable if Redis cannot answer."""
        return await self._run(build)

    async def _run(self, build: Any) -> list[Any]:
        try:
            async with self._in_flight, asyncio.timeout(self._timeout):
                pipe = self._client.pipeline(transaction=False)
                build(pipe)
                return list(await pipe.execute())
        except REDIS_ERRORS as exc:
            raise Unavailable(f"session directory unreachable: {exc or type(exc).__name__}") from exc

    async def register(self, session: Session) -> None:
        await self._write(session, new=True)

    async def update(self, session: Session) -> None:
        await self._write(session, new=False)

    async def _write(self, session: Session, *, new: bool) -> None:
        key = self._session_key(session.id)
        mapping = SessionInfo.of(session, self.process_id).to_hash()

        def build(pipe: Any) -> None:
            pipe.hset(key, mapping=mapping)
            if new:
                pipe.expire(key, SESSION_KEY_TTL)
                if session.user_id is not None:
                    pipe.sadd(self._user_key(session.user_id), session.id)
                    pipe.expire(self._user_key(session.user_id), SESSION_KEY_TTL)

        await self._run(build)

    async def unregister(self, session: Session) -> None:
        def build(pipe: Any) -> None:
            pipe.delete(self._session_key(session.id))
            if session.user_id is not None:
                pipe.srem(self._user_key(session.user_id), session.id)

        await self._run(build)

    async def locate(self, session_id: str) -> SessionInfo | None:
        (found,) = await self._run(lambda pipe: pipe.hgetall(self._session_key(session_id)))
        infos = await self._alive([(session_id, found)])
        return infos[0] if infos else None

    async def of_user(self, user_id: str) -> list[SessionInfo]:
        (ids,) = await self._run(lambda pipe: pipe.smembers(self._user_key(user_id)))
        session_ids = sorted(i.decode() for i in ids)

        def build(pipe: Any) -> None:
            for sid in session_ids:
                pipe.hgetall(self._session_key(sid))

        found = await self._run(build) if session_ids else []
        return await self._alive(list(zip(session_ids, found, strict=True)), user_id)

    async def _alive(
        self, entries: Iterable[tuple[str, dict[bytes, bytes]]], user_id: str | None = None
    ) -> list[SessionInfo]:
        """Decode entries, dropping (and cleaning up) those whose process has no heartbeat."""
        infos = []
        for sid, raw in entries:
            if not raw:
                if user_id is not None:
                    await self._run(lambda pipe, s=sid: pipe.srem(self._user_key(user_id), s))
                continue
            try:
                infos.append(SessionInfo.from_hash(raw))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("ignored a malformed directory record for session %s", sid)
        if not infos:
            return []
        processes = sorted({i.process for i in infos})
        alive_flags = await self._run(lambda pipe: [pipe.exists(self._process_key(p)) for p in processes])
        alive = {p for p, flag in zip(processes, alive_flags, strict=True) if flag}
        dead = [i for i in infos if i.process not in alive]
        if dead:

            def build(pipe: Any) -> None:
                for info in dead:
                    pipe.delete(self._session_key(info.id))
                    if info.user_id:
                        pipe.srem(self._user_key(info.user_id), info.id)

            await self._run(build)
        return [i for i in infos if i.process in alive]
