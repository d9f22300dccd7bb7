"""Dispatch by type: a registry mapping an event type to the session handler that renders it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from switchboard.messages.envelope import Envelope
from switchboard.messages.events import canonical_type

if TYPE_CHECKING:
    from switchboard.sessions.session import Session

Handler = Callable[["Session", Envelope], None]
"""Runs on the event loop for each group message of its type; must not block."""


class HandlerRegistry:
    """Type name -> handler. Channels picks a method by name; we look it up in this table."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        for name, handler in (handlers or {}).items():
            self.register(name, handler)

    def register(self, event_type: str, handler: Handler) -> None:
        """Route events of `event_type` (`chat` or Channels' `send_chat`) to `handler`."""
        self._handlers[canonical_type(event_type)] = handler

    def handler(self, event_type: str) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(event_type, handler)
            return handler

        return decorate

    def get(self, event_type: str) -> Handler | None:
        return self._handlers.get(event_type)

    def copy(self) -> HandlerRegistry:
        return HandlerRegistry(self._handlers)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)
