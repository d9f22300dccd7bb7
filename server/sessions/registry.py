"""The sessions of this process, by id, for HTTP callers that name a session."""

from __future__ import annotations

from collections.abc import Iterator

from switchboard.sessions.session import Session


class SessionRegistry:
    """Live sessions of this process."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def of_user(self, user_id: str) -> list[Session]:
        return [s for s in self._sessions.values() if s.user_id == user_id]

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))
