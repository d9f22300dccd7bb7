"""Narrow exceptions; each carries the GraphQL error code it maps to."""

from __future__ import annotations

from typing import ClassVar


class SwitchboardError(Exception):
    """Raised for a refusal the client should see, with a stable `code`."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"


class Unauthenticated(SwitchboardError):
    """Raised when a token is missing where one is required, malformed, expired or badly signed."""

    code = "UNAUTHENTICATED"


class Forbidden(SwitchboardError):
    """Raised when the caller is known but may not do what it asked."""

    code = "FORBIDDEN"


class NotFound(SwitchboardError):
    """Raised when a session (or another object) does not exist or is not the caller's."""

    code = "NOT_FOUND"


class BadUserInput(SwitchboardError):
    """Raised when an argument is malformed: a bad group name, note id or event field."""

    code = "BAD_USER_INPUT"


class InvalidGroupName(BadUserInput):
    """Raised when a group name breaks the Channels rule (ASCII letters, digits, -_. ; < 100 chars)."""


class InvalidEvent(BadUserInput):
    """Raised when an event's type or fields are not what its handler accepts."""


class MalformedEnvelope(InvalidEvent):
    """Raised when bytes read from a layer are not a Switchboard envelope."""


class BadRequest(SwitchboardError):
    """Raised when a request is not one its method or transport allows (a mutation over GET)."""

    code = "BAD_REQUEST"


class RateLimited(SwitchboardError):
    """Raised when a connection or user sends mutations faster than its token bucket allows."""

    code = "RATE_LIMITED"


class PayloadTooLarge(SwitchboardError):
    """Raised when an event's encoded fields exceed the publish size limit."""

    code = "PAYLOAD_TOO_LARGE"


class Unavailable(SwitchboardError):
    """Raised when the group layer cannot be reached."""

    code = "UNAVAILABLE"


class SessionClosed(SwitchboardError):
    """Raised when a session that has disconnected is asked to join a group."""

    code = "NOT_FOUND"


class ConfigurationError(Exception):
    """Raised at start-up when the environment holds an invalid setting."""


class LayerNotConfigured(ConfigurationError):
    """Raised when code publishes from outside the server without REDIS_URL."""
