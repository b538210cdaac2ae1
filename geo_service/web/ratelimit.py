"""Requests per client IP, counted by ``limits`` (fixed window), answered 429 past the limit.

The client is the connecting address (``scope["client"]``); behind a reverse proxy, uvicorn's
``--proxy-headers --forwarded-allow-ips`` makes that the real client. Counters live in the
``limits`` storage named by ``rate_limit_storage``: by default ``shm://`` (``web.ratestore``),
shared by every worker process of this server; redis or memcached URIs share them between
machines. Probes and static assets (``rate_limit_exempt``) are never counted. An allowed request
costs one counter increment (a few microseconds); only a refusal reads the window's reset.
"""

from __future__ import annotations

import math
import time
import urllib.parse

from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import FixedWindowRateLimiter as AsyncFixedWindowRateLimiter
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from geo_service.web import ratestore
from geo_service.web.errors import ApiError, error_response

LOCAL_SCHEMES = frozenset({"memory", *ratestore.SharedMemoryStorage.STORAGE_SCHEME})


class Limiter:
    """One limit over one storage: ``hit(client)`` is ``None`` when allowed, else the seconds
    until the client's window resets. Local storages are called inline (microseconds), network
    ones off the event loop (``async+`` URIs natively)."""

    def __init__(self, item: RateLimitItem, uri: str, name: str) -> None:
        self.item = item
        scheme = urllib.parse.urlparse(uri).scheme
        options: dict[str, float | str | bool] = {}
        if scheme in ratestore.SharedMemoryStorage.STORAGE_SCHEME:
            options["name"] = name
        storage = storage_from_string(uri, **options)
        self.storage = storage
        self.local = scheme in LOCAL_SCHEMES
        self._sync = FixedWindowRateLimiter(storage) if isinstance(storage, Storage) else None
        self._async = (
            AsyncFixedWindowRateLimiter(storage) if isinstance(storage, AsyncStorage) else None
        )

    def _hit_sync(self, client: str) -> float | None:
        assert self._sync is not None
        if self._sync.hit(self.item, client):
            return None
        return self._sync.get_window_stats(self.item, client).reset_time - time.time()

    async def hit(self, client: str) -> float | None:
        if self._async is not None:
            if await self._async.hit(self.item, client):
                return None
            stats = await self._async.get_window_stats(self.item, client)
            return stats.reset_time - time.time()
        if self.local:
            return self._hit_sync(client)
        return await run_in_threadpool(self._hit_sync, client)


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limit: str, storage: str, exempt: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.item = parse(limit)
        self.uri = storage
        self.exempt = exempt
        self.limiter: Limiter | None = None

    def _limiter(self, scope: Scope) -> Limiter:
        """Opened at the first request, when the listening port (the default ``shm://`` file's
        name, shared by this server's workers and no other server) is known."""
        if self.limiter is None:
            server = scope.get("server") or ("", 0)
            self.limiter = Limiter(self.item, self.uri, f"port{server[1]}")
        return self.limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = await self._limiter(scope).hit(client[0] if client else "unknown")
        if wait is None:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait))
        error = ApiError(
            429,
            f"too many requests: at most {self.item} per client; retry in {retry} s",
            headers={"Retry-After": str(retry)},
            extra={"retry_after_s": retry},
        )
        await error_response(error)(scope, receive, send)
