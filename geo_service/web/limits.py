"""Request body caps per route, enforced before a body is read whole.

A worker holds a request body in memory (or parses it) before a handler can judge it, so one
client sending 500 MB could exhaust it. Starlette has no body limit; this pure ASGI middleware
answers 413 at once when ``Content-Length`` exceeds the route's cap, and counts the bytes of a
body that comes without one (chunked) as the app reads it, answering 413 as soon as the count
passes the cap. Every 413, and every early answer to a request whose body was not read to the
end, closes the connection: the server never drains the rest of a large body it has refused.

A request with neither ``Content-Length`` nor ``Transfer-Encoding`` has no body (HTTP/1.1) and
passes straight through, so the GET lookups pay only a scan of their headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.core.settings import Settings, bulk_body_bytes, report_body_bytes
from geo_service.web.errors import ApiError, error_response

LARGE_REMAINDER = 64 * 1024  # an early answer with more than this still unread closes


@dataclass(frozen=True)
class BodyCap:
    """The largest body of the requests whose method and path match."""

    methods: frozenset[str]
    path: re.Pattern[str]
    limit: int
    what: str


def body_caps(settings: Settings) -> list[BodyCap]:
    """The routes with a cap of their own (first match wins; the rest get ``max_body_bytes``)."""

    def cap(methods: str, path: str, limit: int, what: str) -> BodyCap:
        return BodyCap(frozenset(methods.split()), re.compile(f"{path}/?"), limit, what)

    point_layers = r"/api/v1/(stalls|vendor-clusters)"
    return [
        cap("POST", "/api/v1/grids/locate", bulk_body_bytes(settings), "bulk locate"),
        cap(
            "POST",
            "/api/v1/coverage/(what-if|optimize)",
            settings.max_analysis_body_bytes,
            "coverage what-if/optimize",
        ),
        cap("PUT", "/api/v1/layers/[^/]+", settings.max_upload_bytes, "a layer upload"),
        cap("POST", point_layers, settings.max_edit_body_bytes, "a feature edit"),
        cap(
            "PATCH DELETE", f"{point_layers}/[^/]+", settings.max_edit_body_bytes, "a feature edit"
        ),
        cap("PATCH", "/api/v1/grids/[^/]+", settings.max_edit_body_bytes, "a feature edit"),
        cap("POST", "/open311/v2/requests.json", report_body_bytes(settings), "a report"),
    ]


class BodyTooLarge(Exception):
    """Raised into the app by ``receive`` once a body passes its cap."""


def _too_large(limit: int, what: str, received: int | None = None) -> ApiError:
    got = f"{received:,} bytes" if received is not None else "more than that"
    return ApiError(
        413,
        f"request body too large: {what} takes at most {limit:,} bytes, got {got}",
        "body",
        headers={"Connection": "close"},
        extra={"limit_bytes": limit},
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, caps: list[BodyCap], default_limit: int) -> None:
        self.app = app
        self.caps = caps
        self.default_limit = default_limit

    def cap_for(self, method: str, path: str) -> tuple[int, str]:
        for cap in self.caps:
            if method in cap.methods and cap.path.fullmatch(path):
                return cap.limit, cap.what
        return self.default_limit, f"{method} {path}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None  # the server refuses these before they get here
            elif key == b"transfer-encoding":
                chunked = True
        if not chunked and not length:
            await self.app(scope, receive, send)  # no body
            return
        limit, what = self.cap_for(scope["method"], scope["path"])
        if length is not None and length > limit:
            await error_response(_too_large(limit, what, length))(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit, what, length)

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, limit: int, what: str, length: int | None
    ) -> None:
        received = 0
        complete = False
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, complete, exceeded
            if exceeded:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body cut short: ours (413) goes instead
            if message["type"] == "http.response.start":
                started = True
                remainder = None if length is None else length - received
                if not complete and (remainder is None or remainder > LARGE_REMAINDER):
                    headers = [h for h in message.get("headers", []) if h[0] != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await error_response(_too_large(limit, what))(scope, receive, send)
