"""The Redis layer: one PUBLISH per group_send, one SUBSCRIBE per group per process.

Each process subscribes to a group's channel while it has at least one local member and
delivers locally, as Centrifugo and channels_redis' pub/sub layer do: Redis holds no
per-session state, so its load grows with groups and processes, not with sockets.
A redis+sentinel:// URL follows failovers (the connection pool asks Sentinel for the master on
every reconnect). How channels are carried is the transport's (layers/transport.py): plain
pub/sub, or sharded pub/sub on a Redis Cluster (layers/cluster.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from switchboard.exceptions import MalformedEnvelope, Unavailable
from switchboard.layers.base import LocalGroups, Receiver
from switchboard.layers.history import HISTORY_OFF, Recovery, decide, new_epoch, parse_cursor
from switchboard.layers.keyed_lock import KeyedLock
from switchboard.layers.transport import PubSubTransport, make_transport
from switchboard.messages.envelope import Envelope
from switchboard.messages.events import RESUME
from switchboard.observability.stats import Stats

log = logging.getLogger(__name__)

PUBSUB_POLL = 1.0  # seconds a read of the pub/sub connection waits before checking its health
PUBSUB_IDLE = 5.0  # seconds without traffic before the pub/sub connection is pinged
RECONNECT_BACKOFF_MIN = 0.1
RECONNECT_BACKOFF_MAX = 2.0
# Everything the Redis client raises when Redis or the way to it fails. uvloop says "the
# transport is closed" with a RuntimeError (after a reset, on a pooled connection): that too is
# Redis being unavailable, never the end of a background task.
REDIS_ERRORS = (RedisError, OSError, TimeoutError, RuntimeError)


def inbox_channel(prefix: str, process_id: str) -> str:
    """The Redis channel on which one server process takes requests from the others."""
    return f"{prefix}:inbox:{process_id}"


def group_channel(prefix: str, group: str, sharded: bool = False) -> str:
    """The Redis channel that carries `group`; shared with publishers outside the server.

    On a cluster the group name is a hash tag, so the channel and the group's history keys
    live in one slot and one script can append and SPUBLISH."""
    return f"{prefix}:group:{{{group}}}" if sharded else f"{prefix}:group:{group}"


# Append to the group's history and publish, in one step, so no subscriber can see an event the
# history lacks or the other way round. A missing epoch means a lost history: start a new one.
APPEND_AND_PUBLISH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[1], epoch)
  redis.call('DEL', KEYS[2], KEYS[3])
end
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], '0-' .. offset, 'e', ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
redis.call('PUBLISH', ARGV[1], 'H' .. epoch .. ' ' .. offset .. ' ' .. ARGV[2])
return offset
"""


def history_keys(prefix: str, group: str, sharded: bool = False) -> list[str]:
    """KEYS of APPEND_AND_PUBLISH: the group's epoch, last offset and log."""
    base = f"{prefix}:history:{{{group}}}" if sharded else f"{prefix}:history:{group}"
    return [f"{base}:epoch", f"{base}:seq", f"{base}:log"]


def append_args(channel: str, data: bytes, size: int, ttl_seconds: float) -> list[Any]:
    """ARGV of APPEND_AND_PUBLISH."""
    return [channel, data, size, int(ttl_seconds * 1000), new_epoch()]


APPEND_AND_SPUBLISH = APPEND_AND_PUBLISH.replace("'PUBLISH'", "'SPUBLISH'")


def append_script(sharded: bool) -> str:
    return APPEND_AND_SPUBLISH if sharded else APPEND_AND_PUBLISH


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    return Unavailable(f"{what}: {exc or type(exc).__name__}")


class RedisLayer:
    """Groups shared by every process connected to one Redis (or Sentinel-managed master)."""

    def __init__(
        self,
        url: str,
        prefix: str = "switchboard",
        *,
        timeout: float = 3.0,
        history_size: int = 0,
        history_ttl: float = 300.0,
        transport: PubSubTransport | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.stats = stats if stats is not None else Stats()
        self._timeout = timeout
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._transport = transport if transport is not None else make_transport(url, timeout)
        # The cluster transport: hash-tagged channels and keys, SPUBLISH.
        self.SHARDED = self._transport.sharded
        self._client: Any = self._transport.client
        self._append = self._client.register_script(append_script(self.SHARDED)) if history_size > 0 else None
        self._prefix = prefix
        self._channel_prefix = group_channel(prefix, "")
        # This process's inbox: requests from other processes (see server/inbox.py). It also keeps
        # the pub/sub connection subscribed to something, so the reader always has one to block on.
        self.process_id = uuid.uuid4().hex
        self._control_channel = inbox_channel(prefix, self.process_id)
        self._control_bytes = self._control_channel.encode()
        self._inbox: Callable[[bytes], None] | None = None
        self._groups = LocalGroups(self.stats)
        self._subscribed: set[str] = set()
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._locks = KeyedLock()
        self._start_lock = asyncio.Lock()
        self._started = False
        self._readers: set[asyncio.Task[None]] = set()
        # Per subscribed group: the history position of the last event delivered (taken when the
        # group was subscribed: None if it had no history then), so that after a lost pub/sub
        # connection every group's gap is filled from the history (or said to be lost), quiet
        # groups included.
        self._positions: dict[str, tuple[str, int] | None] = {}
        self._reconnect_hooks: list[Callable[[], Awaitable[object]]] = []
        self._read_pubsubs: weakref.WeakSet[PubSub] = weakref.WeakSet()  # those a reader runs on
        self._reconcile_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- the GroupLayer contract -----------------------------------------------------------------

    def channel(self, group: str) -> str:
        """The Redis channel that carries `group`."""
        return group_channel(self._prefix, group, self.SHARDED)

    def _group_of(self, channel: str) -> str | None:
        """The group a channel carries, None for channels that are not groups'."""
        if not channel.startswith(self._channel_prefix):
            return None
        group = channel[len(self._channel_prefix) :]
        if self.SHARDED and group.startswith("{") and group.endswith("}"):
            group = group[1:-1]
        return group

    async def group_add(self, group: str, receiver: Receiver) -> None:
        if self._closed:
            raise Unavailable("the group layer is closed")
        self._groups.add(group, receiver)
        try:
            await self._sync(group)
        except BaseException:
            self._groups.discard(group, receiver)
            with suppress(Unavailable):
                await self._sync(group)
            raise

    async def group_discard(self, group: str, receiver: Receiver) -> None:
        if self._groups.discard(group, receiver) and not self._closed:
            try:
                await self._sync(group)
            except Unavailable as exc:
                # Leaving must always succeed: the subscription is dropped when Redis is back.
                log.warning("could not unsubscribe %s now (%s); will after reconnecting", group, exc)

    async def group_send(self, group: str, message: Envelope, *, history: bool = True) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if self._append is None or not history:
                    await self._publish(self.channel(group), message.encode())
                else:
                    await self._append(
                        keys=history_keys(self._prefix, group, self.SHARDED),
                        args=append_args(
                            self.channel(group), message.encode(), self._history_size, self._history_ttl
                        ),
                    )
        except REDIS_ERRORS as exc:
            raise _unavailable("could not publish to Redis", exc) from exc
        self.stats.published[message.type] += 1

    async def history_since(self, group: str, cursor: str) -> Recovery:
        """What `group` published after `cursor`, or why that cannot be told."""
        if self._append is None:
            return Recovery(group, False, reason=HISTORY_OFF)
        epoch, offset = parse_cursor(cursor)
        epoch_key, seq_key, log_key = history_keys(self._prefix, group, self.SHARDED)
        try:
            async with asyncio.timeout(self._timeout):
                # One slot either way; a cluster pipeline cannot be a transaction.
                pipe = self._client.pipeline(transaction=not self.SHARDED)
                pipe.get(epoch_key)
                pipe.get(seq_key)
                pipe.xrange(log_key, min=f"(0-{offset}", max="+")
                current, last, entries = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise _unavailable("could not read the history", exc) from exc
        if current is None:
            return Recovery(group, False, reason="the history expired or was lost")
        current_epoch = current.decode()
        events = []
        for entry_id, fields in entries:
            try:
                events.append(Envelope.decode(fields[b"e"]).at(current_epoch, int(entry_id.split(b"-")[1])))
            except MalformedEnvelope:
                continue
        return decide(group, epoch, offset, current_epoch, int(last or 0), events)

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
        except REDIS_ERRORS as exc:
            raise _unavailable("Redis is not reachable", exc) from exc

    async def close(self) -> None:
        self._closed = True
        self._groups.clear()
        for task in (*self._readers, self._reconcile_task):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._readers.clear()
        self._reconcile_task = None
        await self._transport.close_pubsubs()
        for ack in self._acks.values():
            ack.cancel()
        self._acks.clear()
        await self._client.aclose()

    # -- what the rest of the server uses ------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        """The command connection pool, shared with the session directory."""
        return self._client  # type: ignore[no-any-return]

    @property
    def prefix(self) -> str:
        return self._prefix

    def on_reconnect(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run `hook` each time the pub/sub connection comes back (what lives in Redis beside
        the layer, such as the session directory, writes itself again)."""
        self._reconnect_hooks.append(hook)

    def listen_inbox(self, handler: Callable[[bytes], None] | None) -> None:
        """Hand messages sent to this process's inbox to `handler` (on the event loop); None
        drops them again."""
        self._inbox = handler

    async def start(self) -> None:
        """Subscribe the inbox now rather than on the first group_add."""
        try:
            await self._start()
        except REDIS_ERRORS as exc:
            raise _unavailable("could not subscribe in Redis", exc) from exc

    async def send_to_process(self, process_id: str, data: bytes) -> int:
        """PUBLISH to another process's inbox; return how many listened (0: that process is gone)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._publish(inbox_channel(self._prefix, process_id), data)
        except REDIS_ERRORS as exc:
            raise _unavailable(f"could not reach process {process_id}", exc) from exc

    def local_count(self, group: str) -> int:
        """Receivers of `group` in this process."""
        return self._groups.count(group)

    def subscribed_groups(self) -> frozenset[str]:
        """Groups this process holds a Redis subscription for."""
        return frozenset(self._subscribed)

    async def _publish(self, channel: str, data: bytes) -> int:
        return await self._transport.publish(channel, data)

    # -- shared machinery ------------------------------------------------------------------------

    async def _start(self) -> None:
        """Open the pub/sub side (inbox subscribed, reader running) on first use."""
        async with self._start_lock:
            if not self._started:
                await self._transport.open(self._control_channel, self._subscribe_on)
                self._started = True

    async def _sync(self, group: str, *, unsure: bool = False) -> None:
        """Make the Redis subscription of `group` match whether it has local members (`unsure`:
        whatever this process recorded, as after a SUBSCRIBE that was cut off half way)."""
        async with self._locks.hold(group):
            want, have = self._groups.has(group), group in self._subscribed
            if want == have and not (unsure and not want):
                return
            channel = self.channel(group)
            try:
                await self._start()
                if want:
                    # Where its history stands before the subscription: a gap after a later
                    # reconnect is filled from there even if no event came in between.
                    self._positions[group] = await self._position(group)
                    try:
                        await self._transport.subscribe(channel, self._subscribe_on)
                    except BaseException:
                        # Cancelled or failed, it may have reached Redis all the same: sync
                        # again, unsure, so no channel stays subscribed without a local member.
                        self._resync_later(group)
                        raise
                    self._subscribed.add(group)
                else:
                    self._subscribed.discard(group)
                    self._positions.pop(group, None)
                    async with asyncio.timeout(self._timeout):
                        await self._transport.unsubscribe(channel)
            except REDIS_ERRORS as exc:
                raise _unavailable("could not (un)subscribe in Redis", exc) from exc

    def _resync_later(self, group: str) -> None:
        """Sync `group` again in a task of its own (after a (un)subscribe that was cancelled or
        failed, possibly half done): no channel stays subscribed without a local member."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._resync(group), name="switchboard-redis-resync")
        self._readers.add(task)  # stopped with the readers on close
        task.add_done_callback(self._readers.discard)

    async def _resync(self, group: str) -> None:
        try:
            await self._sync(group, unsure=True)
        except Unavailable as exc:
            log.warning("could not sync the subscription of %s now (%s); will after reconnecting", group, exc)

    async def _position(self, group: str) -> tuple[str, int] | None:
        """The group's newest history position; None if it has none (or history is off)."""
        if self._append is None:
            return None
        epoch_key, seq_key, _ = history_keys(self._prefix, group, self.SHARDED)
        async with asyncio.timeout(self._timeout):
            pipe = self._client.pipeline(transaction=not self.SHARDED)
            pipe.get(epoch_key)
            pipe.get(seq_key)
            epoch, last = await pipe.execute()
        return None if epoch is None else (epoch.decode(), int(last or 0))

    async def _subscribe_on(
        self, pubsub: PubSub, channel: str, command: Callable[[str], Awaitable[Any]]
    ) -> None:
        """(S)SUBSCRIBE and wait for Redis to confirm, so a publish that follows reaches us.

        The pubsub's reader is started here, once it has a connection to read."""
        ack = asyncio.get_running_loop().create_future()
        self._acks[channel] = ack
        try:
            async with asyncio.timeout(self._timeout):
                await command(channel)
                self._ensure_reader(pubsub)
                await ack
        finally:
            if self._acks.get(channel) is ack:
                del self._acks[channel]

    def _ensure_reader(self, pubsub: PubSub) -> None:
        if pubsub not in self._read_pubsubs:
            self._read_pubsubs.add(pubsub)
            task = asyncio.get_running_loop().create_task(self._read(pubsub), name="switchboard-redis-reader")
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    async def _read(self, pubsub: PubSub) -> None:
        """Read one pub/sub connection until cancelled, reconnecting with backoff.

        A connection that goes silent (a black-holed route: no reset ever comes) is found by a
        PING after PUBSUB_IDLE seconds without traffic, unanswered within the layer's timeout;
        it is then dropped, so redis-py reconnects and resubscribes, and the gap is filled."""
        backoff = RECONNECT_BACKOFF_MIN
        lost = False
        loop = asyncio.get_running_loop()
        last_seen, pinged = loop.time(), 0.0
        while True:
            try:
                message = await pubsub.get_message(timeout=PUBSUB_POLL)
                now = loop.time()
                if message is None:
                    if pinged and now - pinged > self._timeout:
                        pinged = 0.0
                        if pubsub.connection is not None:
                            await pubsub.connection.disconnect()
                        raise RedisConnectionError("no answer to PING: the connection to Redis seems dead")
                    if not pinged and now - last_seen > PUBSUB_IDLE:
                        pinged = now
                        await pubsub.ping()
                    continue
                last_seen, pinged = now, 0.0
            except REDIS_ERRORS as exc:
                # redis-py reconnects on the next read and re-subscribes every channel itself.
                if not lost:
                    self.stats.redis_reconnects += 1
                    log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                lost = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
                continue
            if lost:
                lost = False
                backoff = RECONNECT_BACKOFF_MIN
                log.info("Redis pub/sub connection is back; %d groups resubscribed", len(self._subscribed))
                # Before anything more is delivered: what was published while we were away.
                await self._fill_gaps()
                self._start_reconcile()
            if message is not None:
                self._on_pubsub_message(message)

    def _start_reconcile(self) -> None:
        if self._reconcile_task is None or self._reconcile_task.done():
            self._reconcile_task = asyncio.get_running_loop().create_task(
                self._reconcile(), name="switchboard-redis-reconcile"
            )

    async def _reconcile(self) -> None:
        """After a reconnect: drop subscriptions of groups that lost their members meanwhile,
        then run the reconnect hooks."""
        await self._drop_stale_subscriptions()
        for hook in self._reconnect_hooks:
            try:
                await hook()
            except Exception:
                log.exception("a reconnect hook failed")

    async def _drop_stale_subscriptions(self) -> None:
        for channel in self._transport.channels():
            group = self._group_of(channel)
            if group is None:
                continue
            async with self._locks.hold(group):
                if self._groups.has(group):
                    continue
                self._subscribed.discard(group)
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._transport.unsubscribe(channel)
                except REDIS_ERRORS as exc:
                    log.warning("reconcile could not unsubscribe %s: %s", group, exc)

    def _on_pubsub_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel: bytes = message["channel"]
        if kind in ("message", "smessage"):
            if channel == self._control_bytes:
                if self._inbox is not None:
                    self._inbox(message["data"])
            else:
                self._on_message(channel, message["data"])
        elif kind in ("subscribe", "ssubscribe"):
            ack = self._acks.get(channel.decode())
            if ack is not None and not ack.done():
                ack.set_result(None)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        # No check against _subscribed: the confirmation and the first message can arrive in
        # one read, before _sync records the subscription. Local membership is what counts.
        group = self._group_of(channel.decode())
        if group is None:
            return
        try:
            if data[:1] == b"H":  # H<epoch> <offset> <envelope>: appended to the history too
                epoch, offset, body = data[1:].split(b" ", 2)
                envelope = Envelope.decode(body).at(epoch.decode(), int(offset))
            else:
                envelope = Envelope.decode(data)
        except (MalformedEnvelope, ValueError) as exc:
            log.warning("dropped a malformed message on %s: %s", channel.decode(errors="replace"), exc)
            return
        self._deliver(group, envelope)

    def _deliver(self, group: str, envelope: Envelope) -> None:
        """Hand on a group's event once: one the gap filling delivered already is skipped."""
        if envelope.epoch is not None and envelope.offset is not None and self._groups.has(group):
            seen = self._positions.get(group)
            if seen is not None and seen[0] == envelope.epoch and envelope.offset <= seen[1]:
                return  # the gap filling delivered it already
            self._positions[group] = (envelope.epoch, envelope.offset)
        self._groups.deliver(group, envelope)

    async def _fill_gaps(self) -> None:
        """After the pub/sub connection came back: per subscribed group with local members,
        whether or not it delivered anything before, every event appended to its history since
        its position, in order; or, where the history cannot tell (lost, trimmed, unreadable), a
        `resume` event with recovered: false, so nobody is left with a silent gap."""
        if self._append is None:
            return  # no history: nothing to fill from (documented: history off loses the gap)
        for group in list(self._subscribed):
            if not self._groups.has(group):
                self._positions.pop(group, None)
                continue
            try:
                position = self._positions.get(group)
                if position is None:  # no history when subscribed: from the start of one begun since
                    now = await self._position(group)
                    if now is None:
                        continue  # still none: nothing was published to it
                    position = (now[0], 0)
                recovery = await self.history_since(group, f"{position[0]}:{position[1]}")
            except (Unavailable, *REDIS_ERRORS) as exc:
                recovery = Recovery(group, False, reason=f"could not read the history: {exc}")
            if recovery.recovered:
                for event in recovery.events:
                    self._deliver(group, event)
                self.stats.redis_gap_events += len(recovery.events)
                continue
            self.stats.redis_gaps_lost += 1
            log.warning("events of %s may have been missed while Redis was away: %s", group, recovery.reason)
            if recovery.cursor is not None:
                now_epoch, _, now_offset = recovery.cursor.rpartition(":")
                self._positions[group] = (now_epoch, int(now_offset))
            fields = {
                "recovered": False,
                "reason": "events may have been missed while the server's Redis connection was down: refetch",
                "cursor": recovery.cursor,
            }
            self._groups.deliver(group, Envelope(type=RESUME, group=group, fields=fields))
