"""Built map pages, per snapshot, keyed on the declared parameters only.

Building a map page costs from a fraction of a second to seconds, so a page is built once per
snapshot and parameter set: a query parameter the endpoint does not declare never reaches the
key (``/maps/overview?x=1`` is the cached overview). Requests that arrive while the same page
is being built wait for that one build instead of starting their own. A reload swaps the
snapshot, and its pages go with it (weak keys). Everything here runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from geo_service.core.snapshot import Snapshot
from geo_service.web.offload import HeavyPool

T = TypeVar("T")


class PageCache(Generic[T]):
    def __init__(self, pool: HeavyPool, size: int = 64) -> None:
        self.pool = pool
        self.size = size
        self.builds = 0  # how many pages were built (tests and benchmarks read it)
        self._pages: weakref.WeakKeyDictionary[Snapshot, OrderedDict[Hashable, T]] = (
            weakref.WeakKeyDictionary()
        )
        self._building: dict[tuple[int, Hashable], asyncio.Task[T]] = {}

    async def get(self, snap: Snapshot, key: Hashable, build: Callable[[], T]) -> T:
        pages = self._pages.setdefault(snap, OrderedDict())
        if key in pages:
            pages.move_to_end(key)
            return pages[key]
        flight = (id(snap), key)
        task = self._building.get(flight)
        if task is None:
            task = asyncio.ensure_future(self._build(snap, key, build))
            self._building[flight] = task
            task.add_done_callback(lambda t: self._done(flight, t))
        return await asyncio.shield(task)  # one waiter going away does not stop the build

    async def _build(self, snap: Snapshot, key: Hashable, build: Callable[[], T]) -> T:
        page = await self.pool.run(build)
        self.builds += 1
        pages = self._pages.setdefault(snap, OrderedDict())
        pages[key] = page
        while len(pages) > self.size:
            pages.popitem(last=False)
        return page

    def _done(self, flight: tuple[int, Hashable], task: asyncio.Task[T]) -> None:
        self._building.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so an error nobody awaited is not logged twice
