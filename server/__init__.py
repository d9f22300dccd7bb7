"""Switchboard: Channels-style groups of WebSocket sessions behind a typed GraphQL API.

Publishing (`send_to_group`, `send_to_group_sync`, `send_to_socket_group`) and revoking a user's
membership of a group (`revoke`, `revoke_sync`) need only Redis and
imports nothing of the server, so a Django or Celery process can use it with the plain install.
`create_app` and `build_schema` need the server's extra: `pip install "switchboard-live[server]"`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchboard.messages.envelope import Envelope
from switchboard.publish import revoke, revoke_sync, send_to_group, send_to_group_sync, send_to_socket_group
from switchboard.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from switchboard.schema import EventType, QueryLimits, SwitchboardSchema
    from switchboard.web.app import Switchboard

__version__ = "0.1.0"

__all__ = [
    "Envelope",
    "Settings",
    "__version__",
    "build_schema",
    "create_app",
    "revoke",
    "revoke_sync",
    "send_to_group",
    "send_to_group_sync",
    "send_to_socket_group",
]


def create_app(settings: Settings | None = None, schema: Any = None) -> Switchboard:
    """The ASGI app (see `switchboard.web.app.create_app`); needs the `server` extra."""
    from switchboard.web.app import create_app as create

    return create(settings, schema)


def build_schema(
    event_types: Mapping[str, type[EventType]] | None = None, limits: QueryLimits | None = None
) -> SwitchboardSchema:
    """The GraphQL schema (see `switchboard.schema.build_schema`); needs the `server` extra."""
    from switchboard.schema import DEFAULT_EVENT_TYPES
    from switchboard.schema import build_schema as build

    return build(DEFAULT_EVENT_TYPES if event_types is None else event_types, limits)
