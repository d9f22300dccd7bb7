"""What every resolver gets: the process's services and the caller's identity and session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.auth import User
from server.control import SessionControl
from server.directory import LocalDirectory
from server.dispatch import HandlerRegistry
from server.exceptions import RateLimited
from server.layers.base import GroupLayer
from server.policy import Authorizer
from server.presence import LocalPresenceStore, Presence
from server.publish import Publisher
from server.ratelimit import TokenBucket
from server.registry import SessionRegistry
from server.session import DEFAULT_HANDLERS, Session
from server.settings import Settings


@dataclass(slots=True)
class Services:
    """One per server process: configuration, the group layer and the live sessions."""

    settings: Settings
    layer: GroupLayer
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    handlers: HandlerRegistry = field(default_factory=DEFAULT_HANDLERS.copy)
    authorizer: Authorizer = field(default_factory=Authorizer)
    control: SessionControl = field(init=False)
    presence: Presence = field(init=False)

    def __post_init__(self) -> None:
        self.control = SessionControl(self.sessions, LocalDirectory(self.sessions))
        self.presence = Presence(self.layer, LocalPresenceStore(self.sessions))

    @property
    def publisher(self) -> Publisher:
        return Publisher(self.layer, max_bytes=self.settings.max_payload_bytes)

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.settings.mutation_rate, self.settings.mutation_burst)


@dataclass(slots=True)
class Context:
    """Per HTTP request or per WebSocket connection."""

    services: Services
    user: User | None = None
    session: Session | None = None
    # Set by Strawberry from the connection_init payload.
    connection_params: dict[str, Any] | None = None
    request: Any = None
    # Mutations spend from this; one per WebSocket connection, one per user (or address) over HTTP.
    bucket: TokenBucket | None = None

    def spend_mutation(self) -> None:
        """Raise RateLimited when the caller's mutation budget is spent."""
        if self.bucket is not None and not self.bucket.take():
            raise RateLimited("too many mutations: slow down")
