"""Gzip for the responses worth compressing, through Starlette's own ``GZipMiddleware``.

Starlette's middleware looks at every request and response before deciding that a few hundred
bytes are not worth compressing; for GET locate, whose answer is always about 500 bytes, that
decision cost about a tenth of the whole request (bench/RESULTS.md, "Serving"). Routes whose
answers are always small are listed here and pass straight through; every other request goes
through Starlette's middleware unchanged.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# (method, path) of answers that are always well below the minimum size.
ALWAYS_SMALL = frozenset({("GET", "/api/v1/grids/locate"), ("GET", "/healthz"), ("GET", "/readyz")})


class GZip:
    def __init__(self, app: ASGIApp, minimum_size: int = 2048) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in ALWAYS_SMALL:
            await self.app(scope, receive, send)
        else:
            await self.gzip(scope, receive, send)
