"""Gzip for large responses, with no per-response work for small ones.

Starlette's ``GZipMiddleware`` puts every response through a responder that parses its headers
and media type before deciding that a small body is not worth compressing; for the few hundred
bytes of a grid lookup that costs about as much as the lookup (bench/RESULTS.md). Here a response
that announces a ``Content-Length`` below ``minimum_size`` passes straight through, exactly as
Starlette would send it; every other response goes through Starlette's own responder unchanged
(gzip when the client accepts it, ``Vary: Accept-Encoding``, streaming, excluded media types).
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipResponder, IdentityResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class GZipMiddleware:
    def __init__(self, app: ASGIApp, minimum_size: int = 500, compresslevel: int = 9) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    def _responder(self, scope: Scope) -> IdentityResponder:
        accepts = any(k == b"accept-encoding" and b"gzip" in v for k, v in scope.get("headers", ()))
        if accepts:
            return GZipResponder(self.app, self.minimum_size, compresslevel=self.compresslevel)
        return IdentityResponder(self.app, self.minimum_size)

    def _small(self, message: Message) -> bool:
        for key, value in message.get("headers", ()):
            if key == b"content-length":
                return int(value) < self.minimum_size
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        responder: IdentityResponder | None = None
        passthrough = False

        async def route(message: Message) -> None:
            nonlocal responder, passthrough
            if passthrough:
                await send(message)
                return
            if responder is None:
                if message["type"] == "http.response.start" and self._small(message):
                    passthrough = True
                    await send(message)
                    return
                responder = self._responder(scope)
                responder.send = send  # what its __call__ would set before running the app
            await responder.send_with_compression(message)

        await self.app(scope, receive, route)
