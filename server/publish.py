"""Publishing from any server-side code: async, sync (Django views, Celery tasks) and Channels-style.

Needs only a group layer: neither Quart nor Strawberry is imported. Inside the server process the
app's own layer is used; elsewhere REDIS_URL (and SWITCHBOARD_PREFIX) must match the server's
(the rule is spelled out above send_to_group).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from switchboard.exceptions import LayerNotConfigured, Unavailable
from switchboard.layers import urls
from switchboard.layers.base import GroupLayer
from switchboard.layers.redis import REDIS_ERRORS, append_args, append_script, group_channel, history_keys
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import HARD_MAX_FIELDS_BYTES, build_envelope, revoke_envelope
from switchboard.settings import Settings

PUBLISH_TIMEOUT = 3.0


class Publisher:
    """Validates and sends events through one layer."""

    def __init__(self, layer: GroupLayer, max_bytes: int = HARD_MAX_FIELDS_BYTES) -> None:
        self._layer = layer
        self._max_bytes = max_bytes

    async def send(self, group: str, event: str, /, **fields: Any) -> Envelope:
        """Send `event` with `fields` to every session in `group`; return what was sent."""
        envelope = build_envelope(group, event, fields, max_bytes=self._max_bytes)
        await self._layer.group_send(group, envelope)  # the layer counts it, in its app's stats
        return envelope


class _InProcess:
    """Where this process publishes when not through REDIS_URL: a capture (tests), or the layer of
    the server running in this process and the loop it runs on."""

    capture: list[Envelope] | None = None
    # Every app serving in this process, newest last: publishing uses the newest, and stopping
    # one app leaves the others' attached (two apps in one test process).
    serving: list[tuple[GroupLayer, asyncio.AbstractEventLoop]] = []


def attach_server_layer(layer: GroupLayer) -> None:
    """Called by the app when it starts serving, so in-process publishers share its layer."""
    _InProcess.serving.append((layer, asyncio.get_running_loop()))


def detach_server_layer(layer: GroupLayer) -> None:
    """Called by the app when it stops serving."""
    _InProcess.serving[:] = [(a, loop) for a, loop in _InProcess.serving if a is not layer]


def _server_layer() -> tuple[GroupLayer, asyncio.AbstractEventLoop] | None:
    """The newest serving app's layer and loop, if an app serves in this process."""
    return _InProcess.serving[-1] if _InProcess.serving else None


def capture_into(events: list[Envelope] | None) -> None:
    """Record what this process publishes in `events` instead of sending it (None: stop)."""
    _InProcess.capture = events


# One rule for where both functions publish, first match wins:
#   1. a capture (switchboard.testing.captured_events), in tests;
#   2. the layer of the server running in this process: from its loop or from any other thread;
#   3. the Redis of REDIS_URL (and SWITCHBOARD_PREFIX), from any other process;
#   else LayerNotConfigured.


async def send_to_group(group: str, event: str, /, **fields: Any) -> Envelope:
    """Publish from async code: `await send_to_group("user_1", "notify", message="Hi")`."""
    return await _send(build_envelope(group, event, fields), history=True)


def send_to_group_sync(group: str, event: str, /, **fields: Any) -> Envelope:
    """Publish from non-async code such as a Django view or a Celery task."""
    return _send_sync(build_envelope(group, event, fields), history=True)


async def revoke(
    user_id: str, group: str, *, session_id: str | None = None, reason: str | None = None
) -> Envelope:
    """Take the user's sessions (`session_id`: only that one) out of `group`, in every server
    process, within one publish: they get no more of its events, and each of their streams gets
    a `RevokedEvent`. E.g. when the app removes a collaborator from a note (revoke its
    permission first, so the policy refuses opening it again). `all` and the user's own group
    cannot be revoked."""
    return await _send(revoke_envelope(user_id, group, session_id, reason), history=False)


def revoke_sync(
    user_id: str, group: str, *, session_id: str | None = None, reason: str | None = None
) -> Envelope:
    """`revoke` from non-async code (a Django view, a Celery task)."""
    return _send_sync(revoke_envelope(user_id, group, session_id, reason), history=False)


async def _send(envelope: Envelope, *, history: bool) -> Envelope:
    group = envelope.group
    if _InProcess.capture is not None:
        _InProcess.capture.append(envelope)
        return envelope
    if (server := _server_layer()) is not None:
        layer, loop = server
        sending = layer.group_send(group, envelope, history=history)
        if loop is asyncio.get_running_loop():
            await sending
        else:  # another thread's loop in the server's process
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(sending, loop))
        return envelope
    target = _target()
    if target is None:
        raise LayerNotConfigured("set REDIS_URL to publish from outside the server process")
    client = _async_client(target.redis_url)
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await _publish(client, target, group, envelope, history)
    except REDIS_ERRORS as exc:
        raise Unavailable(f"could not publish to Redis: {exc or type(exc).__name__}") from exc
    return envelope


def _send_sync(envelope: Envelope, *, history: bool) -> Envelope:
    group = envelope.group
    if _InProcess.capture is not None:
        _InProcess.capture.append(envelope)
        return envelope
    if (server := _server_layer()) is not None:
        layer, loop = server
        if _running_loop() is loop:
            raise RuntimeError("called on the server's event loop: await the async function instead")
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, envelope, history=history), loop)
        future.result(timeout=PUBLISH_TIMEOUT)
        return envelope
    target = _target()
    if target is None:
        raise LayerNotConfigured("set REDIS_URL to publish from outside the server process")
    try:
        _publish(_sync_client(target.redis_url), target, group, envelope, history)
    except REDIS_ERRORS as exc:
        raise Unavailable(f"could not publish to Redis: {exc or type(exc).__name__}") from exc
    return envelope


def send_to_socket_group(group_name: str, event: str, message: str, status: str = "info") -> Envelope:
    """Drop-in for the Channels helper of the same name: a notify to one group."""
    return send_to_group_sync(group_name, event, message=message, status=status)


# What a publisher outside the server needs from the environment; read on every publish (a
# test or a long-lived worker may change it), parsed and validated once per distinct value.
PUBLISH_ENV = ("REDIS_URL", "SWITCHBOARD_PREFIX", "SWITCHBOARD_HISTORY_SIZE", "SWITCHBOARD_HISTORY_TTL")


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and how to publish: the server's Redis, key prefix and history settings."""

    redis_url: str
    prefix: str
    sharded: bool
    history_size: int
    history_ttl: float


def _target() -> _Target | None:
    values = tuple(os.environ.get(name) for name in PUBLISH_ENV)
    if values[0] is None:  # no REDIS_URL in the environment: a Django project's settings, if any
        values = _from_django_settings() or values
    return _target_for(values)


def _from_django_settings() -> tuple[str | None, ...] | None:
    """REDIS_URL and PREFIX of the `SWITCHBOARD` setting, when this is a Django process whose
    settings are configured (Django is looked up among the loaded modules, never imported: this
    module needs neither Django nor anything else of the web stack). The environment wins."""
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None)
    if settings is None or not getattr(settings, "configured", False):
        return None
    own = getattr(settings, "SWITCHBOARD", None)
    if not isinstance(own, dict) or not own.get("REDIS_URL"):
        return None
    prefix = os.environ.get("SWITCHBOARD_PREFIX") or own.get("PREFIX")
    return (
        str(own["REDIS_URL"]),
        None if prefix is None else str(prefix),
        *(os.environ.get(name) for name in PUBLISH_ENV[2:]),
    )


@lru_cache(maxsize=16)
def _target_for(values: tuple[str | None, ...]) -> _Target | None:
    settings = Settings.from_env({k: v for k, v in zip(PUBLISH_ENV, values, strict=True) if v is not None})
    if not settings.redis_url:
        return None
    return _Target(
        redis_url=settings.redis_url,
        prefix=settings.prefix,
        sharded=urls.parse(settings.redis_url).kind == "cluster",
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
    )


def _publish(client: Any, target: _Target, group: str, envelope: Envelope, history: bool = True) -> Any:
    """The server's own way to send: PUBLISH, or append-and-publish when history is on.

    Returns what the client returns (a coroutine for an asyncio client)."""
    channel = group_channel(target.prefix, group, target.sharded)
    if target.history_size <= 0 or not history:
        publish = client.spublish if target.sharded else client.publish
        return publish(channel, envelope.encode())
    script = client.register_script(append_script(target.sharded))
    return script(
        keys=history_keys(target.prefix, group, target.sharded),
        args=append_args(channel, envelope.encode(), target.history_size, target.history_ttl),
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@lru_cache(maxsize=8)
def _sync_client(url: str) -> Any:
    # The pool is thread-safe, so one client serves every thread of a Django or Celery worker.
    return urls.sync_client(
        urls.parse(url), socket_connect_timeout=PUBLISH_TIMEOUT, socket_timeout=PUBLISH_TIMEOUT
    )


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_async_lock = threading.Lock()


def _async_client(url: str) -> Any:
    # An asyncio client belongs to the loop that made it, so keep one per loop.
    loop = asyncio.get_running_loop()
    with _async_lock:
        clients = _async_clients.setdefault(loop, {})
        client = clients.get(url)
        if client is None:
            client = urls.async_client(urls.parse(url), socket_connect_timeout=PUBLISH_TIMEOUT)
            clients[url] = client
        return client
