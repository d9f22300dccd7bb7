"""The wiring: one function builds a process's services from its settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.fleet.control import SessionControl
from switchboard.fleet.directory import LocalDirectory, RedisDirectory
from switchboard.fleet.presence import LocalPresenceStore, Presence, RedisPresenceStore
from switchboard.layers import RedisLayer, make_layer
from switchboard.layers.base import GroupLayer
from switchboard.observability.stats import Stats
from switchboard.publish import Publisher
from switchboard.security.auth import User
from switchboard.security.hooks import Authenticator
from switchboard.security.policy import Authorizer
from switchboard.security.ratelimit import BucketTable, TokenBucket
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
    stats: Stats = field(default_factory=Stats)  # this app's counters (/metrics)
    handlers: HandlerRegistry = field(default_factory=DEFAULT_HANDLERS.copy)
    authorizer: Authorizer = field(default_factory=Authorizer)
    authenticator: Authenticator = field(init=False)  # from settings
    # Per caller (user, or address when anonymous), across all its connections and HTTP requests
    # in this process: mutations, and operations of any kind.
    mutation_buckets: BucketTable = field(init=False)
    operation_buckets: BucketTable = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.authenticator = Authenticator.from_settings(settings)
        self.mutation_buckets = BucketTable(settings.mutation_rate, settings.mutation_burst)
        self.operation_buckets = BucketTable(settings.operation_rate, settings.operation_burst)

    @property
    def publisher(self) -> Publisher:
        return Publisher(self.layer, max_bytes=self.settings.max_payload_bytes)

    def buckets_of(self, user: User | None, address: str | None) -> tuple[TokenBucket, TokenBucket]:
        """(mutations, operations) of a caller: one pair per user, or per address if anonymous."""
        key = f"user:{user.id}" if user is not None else f"addr:{address}"
        return self.mutation_buckets.get(key), self.operation_buckets.get(key)


def build_services(settings: Settings, layer: GroupLayer | None = None) -> Services:
    """The services of one process: the layer of `settings` (or `layer`) and what sits on it.

    On a Redis layer the session directory, presence and the cross-process inbox live in Redis;
    on any other layer they are this process's own. A layer made here counts what it carries in
    the services' stats; one given counts in its own."""
    stats = Stats()
    layer = layer if layer is not None else make_layer(settings, stats)
    sessions = SessionRegistry()
    if isinstance(layer, RedisLayer):
        directory = RedisDirectory(
            layer.client, layer.prefix, layer.process_id, heartbeat=settings.heartbeat_interval
        )
        control = SessionControl(sessions, directory, layer)
        presence = Presence(layer, RedisPresenceStore(directory, layer.prefix))

        async def reregister() -> None:  # Redis may have restarted empty, or expired them
            await directory.beat()  # first: without it, other processes count our sessions dead
            await control.reregister(presence.restore)
            await presence.flush_departures()

        async def flush_departures() -> None:  # those Redis could not be told of while away
            await control.flush_departures()
            await presence.flush_departures()

        layer.on_reconnect(reregister)
        directory.after_beat(flush_departures)
    else:
        control = SessionControl(sessions, LocalDirectory(sessions))
        presence = Presence(layer, LocalPresenceStore(sessions))
    return Services(
        settings=settings,
        layer=layer,
        sessions=sessions,
        control=control,
        presence=presence,
        stats=stats,
        authorizer=Authorizer.from_settings(settings),
    )
