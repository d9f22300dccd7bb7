"""Run a coroutine right away, and make a task of it only if it has to wait.

Reaches inside asyncio: a future yielded by a coroutine carries `_asyncio_future_blocking`,
which the task driving it clears (as `Task.__step` does). Tested with CPython 3.11-3.13;
Python 3.12's `asyncio.eager_task_factory` makes this module unnecessary once 3.11 is dropped.

Python 3.12's `asyncio.eager_task_factory` does this for every task; Switchboard supports 3.11,
and wants it for one thing only: a socket's writer. Delivering an event to 1000 idle sockets
otherwise creates 1000 tasks whose sends would all have completed without waiting (the ASGI
server writes to the transport, whose buffer has room). Those tasks cost time and, more, garbage
collections, which were the long tail of delivery latency.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from contextlib import suppress
from functools import partial
from typing import Any

log = logging.getLogger(__name__)


def start_eagerly(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
    """Run `coro` until it finishes or first waits. None if it finished (its exceptions
    propagate); otherwise a task that carries it on from where it waits."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.get_running_loop().create_task(_carry_on(coro, waiting_on), name=name)
    task.add_done_callback(partial(_end_unstarted, coro, waiting_on))
    return task


def _end_unstarted(coro: Coroutine[Any, Any, None], waiting_on: Any, task: asyncio.Task[None]) -> None:
    """A task cancelled before its first step never runs `_carry_on` (a coroutine thrown into
    before it starts just raises): end `coro` as a Task would, with a CancelledError where it
    waits, so its own clean-up runs now and the future it waits on is cancelled."""
    if inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED:  # finished, or closed by _carry_on
        return
    if waiting_on is not None and not waiting_on.done():
        waiting_on.cancel()
    try:
        coro.throw(asyncio.CancelledError())
    except (StopIteration, asyncio.CancelledError):
        return
    except Exception:
        log.exception("a cancelled writer failed while cleaning up")
        return
    coro.close()  # it waited again, and nothing can drive it any more


async def _carry_on(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Drive `coro` the way a Task would: wait for what it yielded, then resume it."""
    try:
        while True:
            if waiting_on is None:  # a bare yield: asyncio.sleep(0)
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError as exc:
                    waiting_on = coro.throw(exc)
                    continue
            else:
                # The coroutine reads the outcome itself when resumed (Future.__await__ returns
                # or raises its result). If this task is cancelled, Task.cancel() has cancelled
                # the future it waits on, so the coroutine sees a CancelledError, as in a Task.
                # As Task.__step does with what a coroutine yields: the coroutine marked it
                # "blocking" for the task that would receive it; that is us.
                waiting_on._asyncio_future_blocking = False
                with suppress(Exception, asyncio.CancelledError):
                    await waiting_on
                if not waiting_on.done():  # cancelled before the future could be cancelled
                    waiting_on.cancel()
            waiting_on = coro.send(None)
    except StopIteration:
        return
    finally:
        coro.close()
