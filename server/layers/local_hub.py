"""The local hub: what `switchboard serve --workers N` runs beside its workers when no REDIS_URL
is set, so that one host gets N cores with no service to install.

It speaks the part of the Redis protocol (RESP2) that the Redis layer and the session directory
use, over a loopback TCP port, and keeps everything in the serving parent process's memory: the
workers run the Redis layer unchanged against it (groups, per-group history and cursors,
sessions, presence, requests between workers). It is no Redis: one process, nothing on disk,
only those commands; anything else is answered with an error. The layer's one script (append to
a group's history and publish, `APPEND_AND_PUBLISH`) runs as the equivalent Python.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from switchboard.layers.redis import APPEND_AND_PUBLISH

log = logging.getLogger(__name__)

APPEND_SHA = hashlib.sha1(APPEND_AND_PUBLISH.encode()).hexdigest()  # how Redis names the script
MAX_REQUEST_ITEMS = 1_000_000  # the longest command array accepted (a pipeline is many commands)
MAX_BULK_BYTES = 64 * 1024 * 1024
SWEEP_INTERVAL = 1.0
MAX_SUBSCRIBER_BUFFER = 64 * 1024 * 1024  # bytes queued to one subscriber before it is cut off

Reply = Any  # None (nil), int, bytes, str (simple string), Exception (error), list


class Keyspace:
    """Keys of the kinds the layer uses (strings, hashes, sets, streams), with expiry."""

    def __init__(self) -> None:
        self.values: dict[bytes, Any] = {}
        self.deadlines: dict[bytes, float] = {}

    def get(self, key: bytes) -> Any:
        deadline = self.deadlines.get(key)
        if deadline is not None and time.monotonic() >= deadline:
            self.delete(key)
            return None
        return self.values.get(key)

    def set(self, key: bytes, value: Any, ttl: float | None = None) -> None:
        self.values[key] = value
        if ttl is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = time.monotonic() + ttl

    def delete(self, key: bytes) -> int:
        self.deadlines.pop(key, None)
        return 0 if self.values.pop(key, None) is None else 1

    def expire(self, key: bytes, ttl: float) -> int:
        if self.get(key) is None:
            return 0
        self.deadlines[key] = time.monotonic() + ttl
        return 1

    def sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, deadline in self.deadlines.items() if deadline <= now]:
            self.delete(key)


class Subscriber:
    """A connection in pub/sub mode: its channels, and where its messages go."""

    __slots__ = ("channels", "write")

    def __init__(self, write: Callable[[Reply], None]) -> None:
        self.channels: set[bytes] = set()
        self.write = write


class Hub:
    """The keyspace, the channels and the commands."""

    def __init__(self) -> None:
        self.keys = Keyspace()
        self.channels: dict[bytes, set[Subscriber]] = {}

    # -- pub/sub ---------------------------------------------------------------------------------

    def publish(self, channel: bytes, data: bytes) -> int:
        listeners = self.channels.get(channel, ())
        for subscriber in listeners:
            subscriber.write([b"message", channel, data])
        return len(listeners)

    def subscribe(self, subscriber: Subscriber, channels: list[bytes]) -> list[Reply]:
        replies: list[Reply] = []
        for channel in channels:
            subscriber.channels.add(channel)
            self.channels.setdefault(channel, set()).add(subscriber)
            replies.append([b"subscribe", channel, len(subscriber.channels)])
        return replies

    def unsubscribe(self, subscriber: Subscriber, channels: list[bytes]) -> list[Reply]:
        replies: list[Reply] = []
        for channel in channels or sorted(subscriber.channels):
            subscriber.channels.discard(channel)
            members = self.channels.get(channel)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self.channels[channel]
            replies.append([b"unsubscribe", channel, len(subscriber.channels)])
        return replies

    # -- commands --------------------------------------------------------------------------------

    def run(self, args: list[bytes]) -> Reply:
        name = args[0].upper().decode(errors="replace")
        command = _COMMANDS.get(name)
        if command is None:
            return ValueError(f"ERR unknown command '{name}' (the local hub is not Redis)")
        try:
            return command(self, args[1:])
        except (IndexError, ValueError, TypeError) as exc:
            return ValueError(f"ERR wrong arguments for '{name}': {exc}")

    def append_and_publish(self, keys: list[bytes], argv: list[bytes]) -> int:
        """APPEND_AND_PUBLISH in Python: keys epoch, seq, log; argv channel, data, size, ttl ms, epoch."""
        epoch_key, seq_key, log_key = keys
        channel, data, size, ttl_ms, new_epoch = argv
        ttl = int(ttl_ms) / 1000
        epoch = self.keys.get(epoch_key)
        if epoch is None:
            epoch = new_epoch
            self.keys.delete(seq_key)
            self.keys.delete(log_key)
        offset = int(self.keys.get(seq_key) or 0) + 1
        entries = self.keys.get(log_key)
        if entries is None:
            entries = deque(maxlen=int(size))
        entries.append((offset, data))
        self.keys.set(epoch_key, epoch, ttl)
        self.keys.set(seq_key, str(offset).encode(), ttl)
        self.keys.set(log_key, entries, ttl)
        self.publish(channel, b"H" + epoch + b" " + str(offset).encode() + b" " + data)
        return offset


def _ping(hub: Hub, args: list[bytes]) -> Reply:
    return args[0] if args else "PONG"


def _get(hub: Hub, args: list[bytes]) -> Reply:
    value = hub.keys.get(args[0])
    if value is not None and not isinstance(value, bytes):
        return ValueError("WRONGTYPE Operation against a key holding the wrong kind of value")
    return value


def _set(hub: Hub, args: list[bytes]) -> Reply:
    ttl = None
    options = [a.upper() for a in args[2:]]
    if b"PX" in options:
        ttl = int(args[2 + options.index(b"PX") + 1]) / 1000
    elif b"EX" in options:
        ttl = float(args[2 + options.index(b"EX") + 1])
    hub.keys.set(args[0], args[1], ttl)
    return "OK"


def _delete(hub: Hub, args: list[bytes]) -> Reply:
    return sum(hub.keys.delete(key) for key in args)


def _exists(hub: Hub, args: list[bytes]) -> Reply:
    return sum(1 for key in args if hub.keys.get(key) is not None)


def _expire(hub: Hub, args: list[bytes]) -> Reply:
    return hub.keys.expire(args[0], float(args[1]))


def _pexpire(hub: Hub, args: list[bytes]) -> Reply:
    return hub.keys.expire(args[0], int(args[1]) / 1000)


def _container(hub: Hub, key: bytes, kind: type[dict[bytes, bytes]] | type[set[bytes]], create: bool) -> Any:
    """The hash or set at `key` (made empty if `create` and missing); TypeError for another kind."""
    value = hub.keys.get(key)
    if value is None and create:
        value = kind()
        hub.keys.values[key] = value
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"not a {'hash' if kind is dict else 'set'}")
    return value


def _hash(hub: Hub, key: bytes, create: bool = False) -> dict[bytes, bytes] | None:
    found: dict[bytes, bytes] | None = _container(hub, key, dict, create)
    return found


def _hset(hub: Hub, args: list[bytes]) -> Reply:
    fields = _hash(hub, args[0], create=True)
    assert fields is not None
    pairs = args[1:]
    if not pairs or len(pairs) % 2:
        raise ValueError("HSET takes field value pairs")
    added = 0
    for i in range(0, len(pairs), 2):
        added += pairs[i] not in fields
        fields[pairs[i]] = pairs[i + 1]
    return added


def _hgetall(hub: Hub, args: list[bytes]) -> Reply:
    fields = _hash(hub, args[0]) or {}
    return [item for pair in fields.items() for item in pair]


def _hdel(hub: Hub, args: list[bytes]) -> Reply:
    fields = _hash(hub, args[0])
    if fields is None:
        return 0
    removed = sum(1 for field in args[1:] if fields.pop(field, None) is not None)
    if not fields:
        hub.keys.delete(args[0])
    return removed


def _members(hub: Hub, key: bytes, create: bool = False) -> set[bytes] | None:
    found: set[bytes] | None = _container(hub, key, set, create)
    return found


def _sadd(hub: Hub, args: list[bytes]) -> Reply:
    members = _members(hub, args[0], create=True)
    assert members is not None
    before = len(members)
    members.update(args[1:])
    return len(members) - before


def _srem(hub: Hub, args: list[bytes]) -> Reply:
    members = _members(hub, args[0])
    if members is None:
        return 0
    before = len(members)
    members.difference_update(args[1:])
    if not members:
        hub.keys.delete(args[0])
    return before - len(members)


def _smembers(hub: Hub, args: list[bytes]) -> Reply:
    return sorted(_members(hub, args[0]) or ())


def _xrange(hub: Hub, args: list[bytes]) -> Reply:
    """XRANGE log (0-N + : the entries after offset N, as the layer asks."""
    entries = hub.keys.get(args[0]) or ()
    low = args[1].decode()
    exclusive = low.startswith("(")
    after = int(low.lstrip("(").partition("-")[2] or 0) if low not in ("-", "(-") else 0
    return [
        [f"0-{offset}".encode(), [b"e", data]]
        for offset, data in entries
        if offset > after or (not exclusive and offset == after)
    ]


def _publish(hub: Hub, args: list[bytes]) -> Reply:
    return hub.publish(args[0], args[1])


def _evalsha(hub: Hub, args: list[bytes]) -> Reply:
    if args[0].decode().lower() != APPEND_SHA:
        return ValueError("NOSCRIPT No matching script (the local hub runs only the layer's own)")
    count = int(args[1])
    return hub.append_and_publish(args[2 : 2 + count], args[2 + count :])


def _eval(hub: Hub, args: list[bytes]) -> Reply:
    if args[0].decode() != APPEND_AND_PUBLISH:
        return ValueError("ERR the local hub runs only the layer's own script")
    return _evalsha(hub, [APPEND_SHA.encode(), *args[1:]])


def _script(hub: Hub, args: list[bytes]) -> Reply:
    if args[0].upper() == b"LOAD" and args[1].decode() == APPEND_AND_PUBLISH:
        return APPEND_SHA.encode()
    if args[0].upper() == b"EXISTS":
        return [int(a.decode().lower() == APPEND_SHA) for a in args[1:]]
    return ValueError("ERR the local hub runs only the layer's own script")


def _ok(hub: Hub, args: list[bytes]) -> Reply:
    return "OK"  # CLIENT SETINFO / SETNAME, SELECT 0: the client's greetings


_COMMANDS: dict[str, Callable[[Hub, list[bytes]], Reply]] = {
    "PING": _ping,
    "GET": _get,
    "SET": _set,
    "DEL": _delete,
    "EXISTS": _exists,
    "EXPIRE": _expire,
    "PEXPIRE": _pexpire,
    "HSET": _hset,
    "HGETALL": _hgetall,
    "HDEL": _hdel,
    "SADD": _sadd,
    "SREM": _srem,
    "SMEMBERS": _smembers,
    "XRANGE": _xrange,
    "PUBLISH": _publish,
    "EVALSHA": _evalsha,
    "EVAL": _eval,
    "SCRIPT": _script,
    "CLIENT": _ok,
    "SELECT": _ok,
}


# -- the wire ------------------------------------------------------------------------------------


def encode(reply: Reply) -> bytes:
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bool | int):
        return b":%d\r\n" % int(reply)
    if isinstance(reply, str):
        return b"+" + reply.encode() + b"\r\n"
    if isinstance(reply, bytes):
        return b"$%d\r\n%s\r\n" % (len(reply), reply)
    if isinstance(reply, Exception):
        return b"-" + str(reply).replace("\r\n", " ").encode() + b"\r\n"
    return b"*%d\r\n" % len(reply) + b"".join(encode(item) for item in reply)


async def read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command (an array of bulk strings, or an inline command); None at the end."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()  # inline (redis-cli style)
    count = int(line[1:])
    if not 0 <= count <= MAX_REQUEST_ITEMS:
        raise ValueError("command too long")
    args = []
    for _ in range(count):
        head = await reader.readline()
        if not head.startswith(b"$"):
            raise ValueError("expected a bulk string")
        size = int(head[1:])
        if not 0 <= size <= MAX_BULK_BYTES:
            raise ValueError("bulk string too long")
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


class LocalHub:
    """The hub served on 127.0.0.1 from a thread of its own (the serving parent's main thread
    only waits for its workers)."""

    def __init__(self, port: int = 0, password: str | None = None) -> None:
        self.hub = Hub()
        self.port = port  # 0: any free port
        # Loopback only, and a password all the same: other users of the host get nothing.
        self.password = password or secrets.token_urlsafe(24)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.url_with(self.password)

    def url_with(self, password: str) -> str:
        """The hub's URL with `password` in it (the real one, or a placeholder to print). RESP2,
        said up front: redis-py would otherwise ask for RESP3 (HELLO 3) and warn on every
        connection when told no."""
        return f"redis://:{quote(password, safe='<>')}@127.0.0.1:{self.port}/0?protocol=2"

    def start(self) -> LocalHub:
        self._thread = threading.Thread(target=self._run, name="switchboard-local-hub", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local hub did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="switchboard-hub-sweep")
        try:
            await self._stop.wait()
        finally:
            sweeper.cancel()
            server.close()
            await server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.hub.keys.sweep()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hub = self.hub

        def push(reply: Reply) -> None:
            # A worker that stopped reading its pub/sub connection is cut off rather than
            # buffered for without bound: it reconnects and fills its gap from the history.
            if writer.transport.get_write_buffer_size() > MAX_SUBSCRIBER_BUFFER:
                log.warning("local hub: a subscriber stopped reading; dropping its connection")
                writer.transport.abort()
                return
            writer.write(encode(reply))

        subscriber = Subscriber(push)
        queued: list[list[bytes]] | None = None  # MULTI .. EXEC
        authenticated = False
        password = self.password.encode()
        try:
            while (args := await read_command(reader)) is not None:
                if not args:
                    continue
                name = args[0].upper()
                reply: Reply
                if name == b"AUTH":
                    authenticated = hmac.compare_digest(args[-1], password)
                    reply = "OK" if authenticated else ValueError("WRONGPASS invalid password")
                elif not authenticated:
                    reply = ValueError("NOAUTH Authentication required.")
                elif name == b"MULTI":
                    queued, reply = [], "OK"
                elif name == b"EXEC":
                    reply = [hub.run(command) for command in (queued or [])]
                    queued = None
                elif queued is not None:
                    queued.append(args)
                    reply = "QUEUED"
                elif name == b"SUBSCRIBE":
                    for item in hub.subscribe(subscriber, args[1:]):
                        subscriber.write(item)
                    continue
                elif name == b"UNSUBSCRIBE":
                    for item in hub.unsubscribe(subscriber, args[1:]):
                        subscriber.write(item)
                    continue
                elif name == b"PING" and subscriber.channels:
                    reply = [b"pong", args[1] if len(args) > 1 else b""]
                else:
                    reply = hub.run(args)
                writer.write(encode(reply))
                if writer.transport.get_write_buffer_size() > 1024 * 1024:
                    await writer.drain()
        except (ValueError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("local hub connection ended: %s", exc)
        finally:
            hub.unsubscribe(subscriber, [])
            writer.close()
