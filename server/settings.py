"""Configuration, read once from the environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from switchboard.exceptions import ConfigurationError

log = logging.getLogger(__name__)

Mode = Literal["dev", "prod"]

# Used only in development mode when SWITCHBOARD_SECRET is unset, so that the quick start works.
DEVELOPMENT_SECRET = "switchboard-development-secret-do-not-use-in-production"
MIN_SECRET_LENGTH = 32
DEFAULT_MAX_TOKEN_TTL = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server, the publish API and the CLI need to agree on."""

    mode: Mode = "dev"
    secret: str = DEVELOPMENT_SECRET
    secret_is_default: bool = True
    redis_url: str | None = None
    prefix: str = "switchboard"
    queue_size: int = 1024
    max_subscriptions: int = 32
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    max_message_bytes: int = 64 * 1024
    max_payload_bytes: int = 32 * 1024
    max_notes: int = 50
    mutation_rate: float = 10.0
    mutation_burst: int = 30
    graphiql: bool = True
    introspection: bool = True
    allow_anonymous: bool = True
    note_policy: str | None = None
    max_connections: int = 20_000
    init_timeout: float = 10.0
    ping_interval: float = 20.0
    heartbeat_interval: float = 5.0
    history_size: int = 100
    history_ttl: float = 300.0
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    metrics_dir: str | None = None  # set by `serve --workers N`: where workers share their metrics
    # permessage-deflate: off (declined) by default; on, without context takeover, so each
    # rendered frame is compressed once for all its subscribers and no socket keeps zlib state.
    max_token_ttl: int = DEFAULT_MAX_TOKEN_TTL  # tokens living longer are refused
    max_request_bytes: int = 64 * 1024  # HTTP request bodies
    max_variables_bytes: int = 4096  # a subscription's variables, encoded
    queue_bytes: int = 1 << 20  # a connection's outgoing queue, besides queue_size frames
    queue_bytes_total: int = 256 << 20  # every connection's queue together
    send_bytes_total: int = 32 << 20  # large frames being sent at once, every connection together
    operation_rate: float = 20.0  # operations of any kind per second, per user (or address)
    operation_burst: int = 60
    max_pending_connections: int = 2000  # accepted sockets not yet past connection_init
    max_pending_per_address: int = 200
    connect_rate: float = 100.0  # WebSocket handshakes per second per address (a whole office's NAT)
    connect_burst: int = 1000
    http_rate: float = 100.0  # HTTP requests to /graphql per second per address
    http_burst: int = 500
    ws_compression: bool = False
    # With compression on, "shared" (1): no context takeover, each frame compressed once for all its
    # subscribers; "window": the server's context kept (2 KiB windows), shared by the sockets that
    # were sent the same events, for about a quarter of the bytes of "shared" on small events.
    ws_compression_mode: Literal["shared", "window"] = "shared"
    ws_compression_min_bytes: int = 128
    ws_compression_context_bytes: int = 64 << 20  # window mode's contexts, every socket together
    # The app's own authentication and permissions (security/hooks.py, security/policy.py).
    auth_hook: str | None = None  # import path of hook(handshake) -> User | None
    connect_url: str | None = None  # the app's HTTP connect endpoint
    permission_url: str | None = None  # the app's HTTP note permission endpoint
    hook_timeout: float = 2.0  # seconds the app has to answer either endpoint
    hook_key: str | None = None  # sent as X-Switchboard-Key to the app's endpoints
    hook_concurrency: int = 32  # requests to one app endpoint at once (its pool holds as many)
    hook_queue: int = 256  # more waiting for a turn; past that refused at once (1013 / 503)
    # Peers whose Forwarded / X-Forwarded-For say who the client is (security/proxies.py).
    trusted_proxies: tuple[str, ...] = ()
    max_connections_per_user: int = 64  # WebSocket connections past connection_init, per user
    permission_cache_ttl: float = 5.0  # seconds an answer about (user, note) is reused; 0: never
    client_publish: str = "none"  # "none": publisher tokens only; "notes": members of a note too
    # Subscriptions over HTTP (streams/): SSE and multipart streams, and reservations.
    max_streams: int = 10_000  # open streams in the process (WebSockets are counted apart)
    max_streams_per_user: int = 16  # per user, or per address for anonymous streams
    stream_keepalive: float = 15.0  # seconds between keepalive comments on an idle stream

    @property
    def max_groups(self) -> int:
        """The most groups a session can be in: all, user_<id> and its notes."""
        return self.max_notes + 2

    @property
    def dev(self) -> bool:
        return self.mode == "dev"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from SWITCHBOARD_* variables and REDIS_URL."""
        env = os.environ if env is None else env
        mode = env.get("SWITCHBOARD_MODE", "dev").strip().lower()
        if mode not in ("dev", "prod"):
            raise ConfigurationError(f"SWITCHBOARD_MODE must be 'dev' or 'prod', not {mode!r}")
        secret = env.get("SWITCHBOARD_SECRET", "")
        if mode == "prod" and len(secret) < MIN_SECRET_LENGTH:
            raise ConfigurationError(
                f"production mode needs SWITCHBOARD_SECRET of at least {MIN_SECRET_LENGTH} characters"
            )
        if mode == "prod" and secret == DEVELOPMENT_SECRET:
            # It is in the source: anyone could mint a publisher token.
            raise ConfigurationError(
                "production mode refuses the development secret: set your own SWITCHBOARD_SECRET"
            )
        log_format = env.get("SWITCHBOARD_LOG_FORMAT", "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigurationError("SWITCHBOARD_LOG_FORMAT must be 'text' or 'json'")
        prefix = env.get("SWITCHBOARD_PREFIX", "switchboard")
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ConfigurationError("SWITCHBOARD_PREFIX must be a non-empty word")
        origins = tuple(o.strip() for o in env.get("SWITCHBOARD_ALLOWED_ORIGINS", "").split(",") if o.strip())
        auth_hook = env.get("SWITCHBOARD_AUTH_HOOK") or None
        connect_url = env.get("SWITCHBOARD_CONNECT_URL") or None
        if auth_hook and connect_url:
            raise ConfigurationError("set SWITCHBOARD_AUTH_HOOK or SWITCHBOARD_CONNECT_URL, not both")
        permission_url = env.get("SWITCHBOARD_PERMISSION_URL") or None
        if permission_url and env.get("SWITCHBOARD_NOTE_POLICY"):
            raise ConfigurationError("set SWITCHBOARD_NOTE_POLICY or SWITCHBOARD_PERMISSION_URL, not both")
        for name, url in (
            ("SWITCHBOARD_CONNECT_URL", connect_url),
            ("SWITCHBOARD_PERMISSION_URL", permission_url),
        ):
            if url and not url.startswith(("http://", "https://")):
                raise ConfigurationError(f"{name} must be an http:// or https:// URL")
        client_publish = env.get("SWITCHBOARD_CLIENT_PUBLISH", "none").strip().lower() or "none"
        if client_publish not in ("none", "notes"):
            raise ConfigurationError("SWITCHBOARD_CLIENT_PUBLISH must be 'none' or 'notes'")
        compression = env.get("SWITCHBOARD_WS_COMPRESSION", "").strip().lower() or "0"
        if compression in ("1", "true", "yes", "on", "shared"):
            compression = "shared"
        elif compression in ("false", "no", "off"):
            compression = "0"
        if compression not in ("0", "shared", "window"):
            raise ConfigurationError(
                f"SWITCHBOARD_WS_COMPRESSION must be 0, 1 (shared) or window, not {compression!r}"
            )
        return cls(
            mode="prod" if mode == "prod" else "dev",
            secret=secret or DEVELOPMENT_SECRET,
            secret_is_default=not secret,
            redis_url=env.get("REDIS_URL") or None,
            prefix=prefix,
            queue_size=_positive_int(env, "SWITCHBOARD_QUEUE_SIZE", 1024),
            max_subscriptions=_positive_int(env, "SWITCHBOARD_MAX_SUBSCRIPTIONS", 32),
            allowed_origins=origins,
            max_message_bytes=_positive_int(env, "SWITCHBOARD_MAX_MESSAGE_BYTES", 64 * 1024),
            max_payload_bytes=_positive_int(env, "SWITCHBOARD_MAX_PAYLOAD_BYTES", 32 * 1024),
            max_notes=_positive_int(env, "SWITCHBOARD_MAX_NOTES", 50),
            mutation_rate=_positive_float(env, "SWITCHBOARD_MUTATION_RATE", 10.0),
            mutation_burst=_positive_int(env, "SWITCHBOARD_MUTATION_BURST", 30),
            graphiql=_flag(env, "SWITCHBOARD_GRAPHIQL", default=mode == "dev"),
            introspection=_flag(env, "SWITCHBOARD_INTROSPECTION", default=mode == "dev"),
            allow_anonymous=_flag(env, "SWITCHBOARD_ANONYMOUS", default=mode == "dev"),
            note_policy=env.get("SWITCHBOARD_NOTE_POLICY") or None,
            max_connections=_positive_int(env, "SWITCHBOARD_MAX_CONNECTIONS", 20_000),
            init_timeout=_positive_float(env, "SWITCHBOARD_INIT_TIMEOUT", 10.0),
            ping_interval=_positive_float(env, "SWITCHBOARD_PING_INTERVAL", 20.0),
            heartbeat_interval=_positive_float(env, "SWITCHBOARD_HEARTBEAT_INTERVAL", 5.0),
            history_size=_whole(env, "SWITCHBOARD_HISTORY_SIZE", 100),
            history_ttl=_positive_float(env, "SWITCHBOARD_HISTORY_TTL", 300.0),
            log_format="json" if log_format == "json" else "text",
            log_level=env.get("SWITCHBOARD_LOG_LEVEL", "INFO").upper(),
            metrics_dir=env.get("SWITCHBOARD_METRICS_DIR") or None,
            max_request_bytes=_positive_int(env, "SWITCHBOARD_MAX_REQUEST_BYTES", 64 * 1024),
            max_variables_bytes=_positive_int(env, "SWITCHBOARD_MAX_VARIABLES_BYTES", 4096),
            queue_bytes=_positive_int(env, "SWITCHBOARD_QUEUE_BYTES", 1 << 20),
            queue_bytes_total=_positive_int(env, "SWITCHBOARD_QUEUE_BYTES_TOTAL", 256 << 20),
            send_bytes_total=_positive_int(env, "SWITCHBOARD_SEND_BYTES_TOTAL", 32 << 20),
            operation_rate=_positive_float(env, "SWITCHBOARD_OPERATION_RATE", 20.0),
            operation_burst=_positive_int(env, "SWITCHBOARD_OPERATION_BURST", 60),
            max_pending_connections=_positive_int(env, "SWITCHBOARD_MAX_PENDING_CONNECTIONS", 2000),
            max_pending_per_address=_positive_int(env, "SWITCHBOARD_MAX_PENDING_PER_ADDRESS", 200),
            connect_rate=_positive_float(env, "SWITCHBOARD_CONNECT_RATE", 100.0),
            connect_burst=_positive_int(env, "SWITCHBOARD_CONNECT_BURST", 1000),
            http_rate=_positive_float(env, "SWITCHBOARD_HTTP_RATE", 100.0),
            http_burst=_positive_int(env, "SWITCHBOARD_HTTP_BURST", 500),
            max_token_ttl=_positive_int(env, "SWITCHBOARD_MAX_TOKEN_TTL", DEFAULT_MAX_TOKEN_TTL),
            ws_compression=compression != "0",
            ws_compression_mode="window" if compression == "window" else "shared",
            ws_compression_min_bytes=_whole(env, "SWITCHBOARD_WS_COMPRESSION_MIN_BYTES", 128),
            ws_compression_context_bytes=_whole(env, "SWITCHBOARD_WS_COMPRESSION_CONTEXT_BYTES", 64 << 20),
            auth_hook=auth_hook,
            connect_url=connect_url,
            permission_url=permission_url,
            hook_timeout=_positive_float(env, "SWITCHBOARD_HOOK_TIMEOUT", 2.0),
            hook_key=env.get("SWITCHBOARD_HOOK_KEY") or None,
            hook_concurrency=_positive_int(env, "SWITCHBOARD_HOOK_CONCURRENCY", 32),
            hook_queue=_positive_int(env, "SWITCHBOARD_HOOK_QUEUE", 256),
            trusted_proxies=tuple(
                p.strip() for p in (env.get("SWITCHBOARD_TRUSTED_PROXIES") or "").split(",") if p.strip()
            ),
            max_connections_per_user=_positive_int(env, "SWITCHBOARD_MAX_CONNECTIONS_PER_USER", 64),
            permission_cache_ttl=float(_whole(env, "SWITCHBOARD_PERMISSION_CACHE_TTL", 5)),
            client_publish=client_publish,
            max_streams=_positive_int(env, "SWITCHBOARD_MAX_STREAMS", 10_000),
            max_streams_per_user=_positive_int(env, "SWITCHBOARD_MAX_STREAMS_PER_USER", 16),
            stream_keepalive=_positive_float(env, "SWITCHBOARD_STREAM_KEEPALIVE", 15.0),
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ConfigurationError(f"{name} must be positive")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (true/false), not {raw!r}")


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ConfigurationError(f"{name} must be a whole number (0 or more), not {raw!r}")
    return int(raw)
