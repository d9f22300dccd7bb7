"""What every resolver gets: the process's services and the caller's identity and session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from switchboard.exceptions import RateLimited
from switchboard.security.auth import User
from switchboard.security.ratelimit import TokenBucket
from switchboard.services import Services
from switchboard.sessions.session import Session


@dataclass(slots=True)
class Context:
    """Per HTTP request or per WebSocket connection."""

    services: Services
    user: User | None = None
    session: Session | None = None
    # Set from the connection_init payload.
    connection_params: dict[str, Any] | None = None
    request: Any = None
    # Mutations spend from this; one per WebSocket connection, one per user (or address) over HTTP.
    bucket: TokenBucket | None = None

    def spend_mutation(self) -> None:
        """Raise RateLimited when the caller's mutation budget is spent."""
        if self.bucket is not None and not self.bucket.take():
            raise RateLimited("too many mutations: slow down")
