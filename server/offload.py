"""Work too long for the event loop, done beside it: parsing and validating large documents.

graphql-core parses about 50,000 tokens a second here, so a document at the 2000-token limit
holds the thread that parses it for about 40 ms; on the event loop that is 40 ms of no delivery
for every session of the process. Documents longer than OFF_LOOP_LENGTH are parsed and validated
in one worker thread instead: the interpreter switches threads every 5 ms, so the loop keeps
delivering while it runs. One thread, so that a crowd of large documents queues for it rather
than crowding the loop out of the interpreter lock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

OFF_LOOP_LENGTH = 2048
"""Documents up to this many characters are parsed on the loop (a few ms at most), and cached."""

P = ParamSpec("P")
T = TypeVar("T")

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-parse")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the worker thread; the loop runs meanwhile."""
    return await asyncio.get_running_loop().run_in_executor(_worker, functools.partial(fn, *args, **kwargs))
