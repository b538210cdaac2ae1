"""Heavy work off the event loop, in a bounded pool: the loop only ever waits, never computes.

Map and report building, coverage, what-if, optimize and bulk locate each take from tens of
milliseconds to seconds of CPU. Run on the event loop they stall every other request of the
worker (a 2 ms grid lookup waited 3.4 s behind four coverage maps). Here they run in a small
thread pool; shapely and numpy release the GIL for most of that work, and the loop gets the GIL
back within the interpreter's switch interval. The pool is bounded twice: ``threads`` jobs run,
at most ``queue`` more wait, and a job beyond that is refused at once with 503 and
``Retry-After`` instead of piling up until the worker is killed.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from geo_service.web.errors import ApiError

T = TypeVar("T")

# The GIL is handed to a waiting thread after this long; the default 5 ms would add up to
# 5 ms to a lookup whenever a heavy job holds the GIL. 1 ms costs the heavy job little.
SWITCH_INTERVAL_S = 0.001


class Busy(ApiError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            503,
            "the service is busy with heavy requests; try again shortly",
            headers={"Retry-After": str(retry_after_s)},
        )


class HeavyPool:
    """At most ``threads`` heavy jobs at once and ``queue`` waiting, per worker process."""

    def __init__(self, threads: int, queue: int, retry_after_s: int = 5) -> None:
        self.threads = threads
        self.limit = threads + queue
        self.retry_after_s = retry_after_s
        self.pending = 0  # touched only on the event loop thread
        self._executor: ThreadPoolExecutor | None = None  # made on first use, again after close
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the pool; 503 (``Busy``) when the pool and queue are full.

        A job counts until it has really finished, even when its client went away: a cancelled
        request does not free a thread that is still computing."""
        if self.pending >= self.limit:
            raise Busy(self.retry_after_s)
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="geo-heavy")
        self.pending += 1
        job = self._executor.submit(functools.partial(fn, *args, **kwargs))
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(job)

    def _release(self) -> None:
        self.pending -= 1

    def close(self) -> None:
        """Stop the threads (at the app's shutdown); a later ``run`` starts new ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
