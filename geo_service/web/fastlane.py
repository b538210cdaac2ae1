"""GET locate straight from ASGI: the one endpoint where the framework cost more than the work.

A grid lookup takes tens of microseconds; FastAPI's routing, dependency solving and exception
middleware around it took about as long again, and GET locate is what phones, officers' apps
and batch jobs call all day (bench/RESULTS.md, "Serving"). This middleware answers exactly
``GET /api/v1/grids/locate`` with the router's own ``locate_body`` and ``parse_point_query``,
so the answer, its validation and its errors are the route's; every other request goes on to
the application. It sits inside the rate limit, body caps, gzip and security headers, so those
apply as to any route; the FastAPI route stays as the documented form of the same answer.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from geo_service.core.errors import InputError
from geo_service.core.snapshot import SnapshotStore
from geo_service.web.deps import POINT_QUERY_OPENAPI, parse_point_query
from geo_service.web.errors import error_response, unknown_query
from geo_service.web.responses import dumps
from geo_service.web.routers.grids import locate_body

PATH = "/api/v1/grids/locate"
JSON = [(b"content-type", b"application/json")]
# The route's declared parameters: anything else is refused, as ``deps.reject_unknown_query``
# refuses it on every API route.
PARAMS = frozenset(p["name"] for p in POINT_QUERY_OPENAPI)


class LocateFastLane:
    def __init__(self, app: ASGIApp, store: SnapshotStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        # As Starlette's QueryParams reads it: latin-1 bytes, percent-decoded, last value wins.
        items = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        query = dict(items)
        try:
            if not PARAMS.issuperset(query):
                raise unknown_query(set(query) - PARAMS, PARAMS)
            body = dumps(locate_body(self.store.get(), parse_point_query(query)))
        except InputError as exc:
            await error_response(exc)(scope, receive, send)
            return
        headers = [*JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
