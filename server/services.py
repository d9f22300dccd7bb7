"""The wiring: one function builds a process's services from its settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.fleet.control import SessionControl
from switchboard.fleet.directory import LocalDirectory, RedisDirectory
from switchboard.fleet.inbox import Inbox
from switchboard.fleet.presence import LocalPresenceStore, Presence, RedisPresenceStore
from switchboard.layers import RedisLayer, make_layer
from switchboard.layers.base import GroupLayer
from switchboard.publish import Publisher
from switchboard.security.policy import Authorizer, load_note_policy
from switchboard.security.ratelimit import TokenBucket
from switchboard.sessions.handlers import HandlerRegistry
from switchboard.sessions.registry import SessionRegistry
from switchboard.sessions.session import DEFAULT_HANDLERS
from switchboard.settings import Settings


@dataclass(slots=True)
class Services:
    """One per server process: configuration, the group layer and the live sessions."""

    settings: Settings
    layer: GroupLayer
    sessions: SessionRegistry
    control: SessionControl
    presence: Presence
    handlers: HandlerRegistry = field(default_factory=DEFAULT_HANDLERS.copy)
    authorizer: Authorizer = field(default_factory=Authorizer)

    @property
    def publisher(self) -> Publisher:
        return Publisher(self.layer, max_bytes=self.settings.max_payload_bytes)

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.settings.mutation_rate, self.settings.mutation_burst)


def build_services(settings: Settings, layer: GroupLayer | None = None) -> Services:
    """The services of one process: the layer of `settings` (or `layer`) and what sits on it.

    On a Redis layer the session directory, presence and the cross-process inbox live in Redis;
    on any other layer they are this process's own."""
    layer = layer if layer is not None else make_layer(settings)
    sessions = SessionRegistry()
    if isinstance(layer, RedisLayer):
        directory = RedisDirectory(
            layer.client, layer.prefix, layer.process_id, heartbeat=settings.heartbeat_interval
        )
        control = SessionControl(sessions, directory)
        control.inbox = Inbox(layer, control.inbox_handlers())
        store = RedisPresenceStore(directory, layer.prefix)
        presence = store.presence = Presence(layer, store)
    else:
        control = SessionControl(sessions, LocalDirectory(sessions))
        presence = Presence(layer, LocalPresenceStore(sessions))
    return Services(
        settings=settings,
        layer=layer,
        sessions=sessions,
        control=control,
        presence=presence,
        authorizer=Authorizer(load_note_policy(settings.note_policy)),
    )
