"""Compression contexts shared by every socket that was sent the same frames (window mode).

With context takeover, a frame may refer back to the frames the socket was sent before it, which
is what makes small events cost a few bytes. Per socket that is a zlib state each, and every
event compressed again for every socket. But sockets that were sent the same payloads in the same
order hold the same history, so one context, and one compression of each event, serves them all.

Two things make histories equal where they would not be:

- A frame starts with its operation's id, a UUID per subscription from graphql-ws. A context is
  fed 0xFF in place of those bytes (the socket sends its own in a block of its own,
  `deflate_blocks`): UTF-8 never contains 0xFF, so no back-reference from a text payload points
  into them, and as UUIDs have one length, the references land at the same distances on every
  socket.
- A back-reference reaches at most a window back (2 KiB here). So a context is known by the last
  window's worth of what it was fed (its key), and any socket whose history ends with those
  frames may use it, however it got there: sockets that joined at different times, or that got
  an event of their own, meet again once a window of common events has gone by.

A `Context` is held by the sockets whose history it describes (`Seat`). Sending an event moves a
socket to the context after it; the first socket to take a step compresses it on a copy of the
context, and the others find the result in `Context.steps`. A fan-out does not reach every socket
in turn, though: a writer sends a socket everything queued for it, so the first sockets may be
several events ahead before the rest get the first. So a context no socket holds any more stays
while a step of a live context still leads to it (`cached`), up to half the budget of them
(`IDLE_SHARE`; at saturation the sockets of one fan-out are thousands of events apart), the
least recently left let go first; and a socket takes its own context along (no copy) only
when it is the one holder and no step leads there, as on a history of its own.

The count of live contexts is bounded (`Budget`): past it, a socket that would need a new one is
told so, sends its frame standalone, and starts again from the empty context."""

from __future__ import annotations

import zlib
from collections import OrderedDict

from switchboard.observability.stats import PROCESS
from switchboard.ws.deflate_blocks import TAIL

Step = tuple[int, bytes]
"""What one frame adds to a history: how many bytes of the socket's own come first, then the
payload every socket that is sent this frame shares."""
FILLER = 0xFF  # never in UTF-8, so never the target of a reference from a text payload
LEVEL = 1
MEM_LEVEL = 1  # with a 2 KiB window, about 15 KB of zlib state (15 bits, level 8: ~87 KB)
MAX_STEPS = 8  # steps remembered per context: how many ways its sockets can part at once
MAX_IDLE = 64  # contexts kept that no socket holds, for sockets still behind, at least (1 MB)
IDLE_SHARE = 2  # and up to 1/IDLE_SHARE of the budget: a saturated fan-out spreads sockets wide
CONTEXT_BYTES = 16 << 10  # what a context costs, resident (15.1 KB measured over 10,000 copies)


class Context:
    """A zlib compressor and the history it holds."""

    __slots__ = ("cached", "deflater", "holders", "key", "steps")

    def __init__(self, deflater: zlib._Compress, key: tuple[Step, ...]) -> None:
        self.deflater: zlib._Compress | None = deflater  # None once dead: no socket uses it again
        self.key = key
        self.holders = 0  # sockets whose history it is
        self.cached = 0  # steps of live contexts that lead here
        self.steps: dict[Step, tuple[bytes, Context]] = {}  # taken from here: the deflate data, where to


class Budget:
    """How many contexts may live at once, all window sizes together."""

    __slots__ = ("limit", "live")

    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(1, limit_bytes // CONTEXT_BYTES)
        self.live = 0

    def count(self, change: int) -> None:
        self.live += change
        PROCESS.ws_compression_contexts = self.live


class Contexts:
    """The live contexts of one window size, by key."""

    def __init__(self, window_bits: int, budget: Budget) -> None:
        self.window_bits = window_bits
        self._reach = 1 << window_bits  # no back-reference reaches further
        self._budget = budget
        self.empty = Context(self._deflater(), ())  # lives as long as this does
        self._by_key: dict[tuple[Step, ...], Context] = {}
        self._idle: OrderedDict[Context, None] = OrderedDict()  # held by no socket, least recent first
        self._max_idle = max(MAX_IDLE, budget.limit // IDLE_SHARE)

    def _deflater(self) -> zlib._Compress:
        return zlib.compressobj(LEVEL, zlib.DEFLATED, -self.window_bits, MEM_LEVEL)

    def step(self, context: Context, step: Step) -> tuple[bytes, Context] | None:
        """The deflate data of `step`'s payload sent from `context` (its sync flush left off), and
        the context the socket is in after it, for a step `context.steps` does not hold alive
        (`Seat.step` looks there first); None when a new context would be past the budget. The
        socket's holding moves along (`move`) only when the caller says so."""
        steps = context.steps
        steps.pop(step, None)  # a step whose context after it has died since
        own_it = context.holders == 1 and context.cached == 0 and context is not self.empty
        if own_it:  # a history no other socket has or will reach: no copy, the context goes along
            deflater = context.deflater
            self._kill(context)
        elif not self._room():
            return None
        else:
            assert context.deflater is not None  # a context a socket holds is alive
            deflater = context.deflater.copy()
        assert deflater is not None
        own, payload = step
        if own:
            deflater.compress(bytes([FILLER]) * own)
            deflater.flush(zlib.Z_SYNC_FLUSH)  # to a byte boundary; the socket sends its own bytes
        compressed = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[: -len(TAIL)]
        PROCESS.ws_compressions += 1
        PROCESS.ws_bytes_before_compression += len(payload)
        PROCESS.ws_bytes_after_compression += len(compressed)
        key = self._key(context.key, step)
        after = self._by_key.get(key)
        if after is None:
            after = self._by_key[key] = Context(deflater, key)
            self._budget.count(1)
        if not own_it:  # for the sockets still here, or still to come
            if len(steps) >= MAX_STEPS:
                self._uncache(steps.pop(next(iter(steps)))[1])  # the oldest
            steps[step] = (compressed, after)
            after.cached += 1
        return compressed, after

    def _key(self, key: tuple[Step, ...], step: Step) -> tuple[Step, ...]:
        """The shortest end of `key` + `step` that holds a window's worth of bytes (all of it
        when shorter): what a compressor that was fed it may refer to."""
        held = 0
        start = len(key) + 1
        for own, payload in (step, *reversed(key)):
            if held >= self._reach:
                break
            held += own + len(payload)
            start -= 1
        return (*key, step)[start:]

    def _room(self) -> bool:
        """Whether one more context fits the budget, letting the least recent idle one go if not."""
        if self._budget.live < self._budget.limit:
            return True
        if self._idle:
            self._kill(next(iter(self._idle)))
            return True
        return False

    def move(self, source: Context, target: Context) -> None:
        target.holders += 1
        if target.holders == 1:
            self._idle.pop(target, None)
        if source.holders > 1:  # leave's common case, without its call
            source.holders -= 1
        else:
            self.leave(source)

    def leave(self, context: Context) -> None:
        context.holders -= 1
        if context.holders > 0 or context.deflater is None:
            return
        if context is self.empty:  # a socket that comes to it later is sent later events
            for _, after in context.steps.values():
                self._uncache(after)
            context.steps.clear()
            return
        if context.cached == 0:  # nothing leads here: no socket can come back to it
            self._kill(context)
            return
        self._idle[context] = None
        if len(self._idle) > self._max_idle:
            self._kill(next(iter(self._idle)))

    def _unreachable(self, context: Context) -> bool:
        """No socket holds it and no step leads to it: no socket can use it again."""
        return context.cached == 0 and context.holders == 0 and context is not self.empty

    def _uncache(self, context: Context) -> None:
        context.cached -= 1
        if self._unreachable(context):
            self._kill(context)

    def _kill(self, context: Context) -> None:
        dead = [context]
        while dead:
            context = dead.pop()
            if context.deflater is None:
                continue
            if self._by_key.get(context.key) is context:
                del self._by_key[context.key]
            self._budget.count(-1)
            context.deflater = None
            self._idle.pop(context, None)
            for _, after in context.steps.values():
                after.cached -= 1
                if self._unreachable(after):
                    dead.append(after)  # here rather than by _uncache: no recursion down a chain
            context.steps.clear()


class Seat:
    """Where one socket is: the context its history ends with. Kept apart from the socket's
    extension so that a finalizer can release it when the extension goes."""

    __slots__ = ("context", "contexts")

    def __init__(self, contexts: Contexts) -> None:
        self.contexts = contexts
        self.context: Context | None = contexts.empty  # None once the socket has left
        contexts.empty.holders += 1

    def step(self, step: Step) -> bytes | None:
        """The deflate data of the step's payload; None when there is no context to spare (or
        the socket has left): its frame then goes standalone, and it starts again from the
        empty context (after a standalone frame, which refers to nothing before it, the empty
        history is still one its own ends with)."""
        contexts, context = self.contexts, self.context
        if context is None:
            return None
        found = context.steps.get(step)  # compressed already, for a socket that went this way
        if found is not None and found[1].deflater is not None:
            PROCESS.ws_compression_reused += 1
            compressed, after = found
            if after is not context:
                contexts.move(context, after)
                self.context = after
            return compressed
        done = contexts.step(context, step)
        if done is None:
            contexts.move(context, contexts.empty)
            self.context = contexts.empty
            return None
        compressed, after = done
        if after is not context:
            contexts.move(context, after)
            self.context = after
        return compressed

    def leave(self) -> None:
        if self.context is not None:
            self.contexts.leave(self.context)
            self.context = None


class ContextsByWindow:
    """The shared contexts of each window size (an offer may ask for a smaller one), in one budget."""

    def __init__(self, limit_bytes: int) -> None:
        self._budget = Budget(limit_bytes)
        self._by_bits: dict[int, Contexts] = {}

    def of(self, window_bits: int) -> Contexts:
        found = self._by_bits.get(window_bits)
        if found is None:
            found = self._by_bits[window_bits] = Contexts(window_bits, self._budget)
        return found
