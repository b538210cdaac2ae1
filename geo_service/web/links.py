"""Absolute links in responses, built from ``settings.public_base_url``, never from the request.

The ``Host`` header (and ``X-Forwarded-Host``) is whatever the client sent: a link built from
``request.url`` echoes ``Host: evil.example`` into ``next`` and ``self``, where a shared cache or
a client that follows links takes it for ours. Links here are the configured base + the route's
path + only the query parameters the route declares (anything else the client added is dropped,
so no stray parameter is reflected either).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import Scope

# Per route, computed on first use; keyed by id as routes are unhashable (the weak reference
# tells a live route from a dead one whose id was reused).
_declared: dict[int, tuple[weakref.ref[APIRoute], frozenset[str]]] = {}
_lock = threading.Lock()


def declared_query_params(request: Request) -> frozenset[str]:
    """Names (aliases) of the query parameters of the route that matched ``request``."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return frozenset()
    hit = _declared.get(id(route))
    if hit is not None and hit[0]() is route:
        return hit[1]
    names = frozenset(_query_names(route.dependant) | _documented_query_names(route))
    with _lock:
        _declared[id(route)] = (weakref.ref(route), names)
    return names


def _query_names(dependant: Dependant) -> set[str]:
    """Query parameters of an endpoint and of every dependency it pulls in."""
    names = {f.alias for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _documented_query_names(route: APIRoute) -> set[str]:
    """Query parameters a route reads by hand and documents in ``openapi_extra`` (GET locate)."""
    params = (route.openapi_extra or {}).get("parameters", [])
    return {p["name"] for p in params if isinstance(p, dict) and p.get("in") == "query"}


def route_path(scope: Scope) -> str:
    """The request's path below the app's ``root_path`` (the public base URL includes it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path


def declared_query(request: Request) -> list[tuple[str, str]]:
    """The request's query items whose names the route declares, in the order sent."""
    keep = declared_query_params(request)
    return [(k, v) for k, v in request.query_params.multi_items() if k in keep]


@dataclass(frozen=True)
class PublicURL:
    """A URL on the public base: ``base`` + ``path`` + ``query`` (items, repeats allowed)."""

    base: str
    path: str
    query: tuple[tuple[str, str], ...] = ()

    def with_params(self, **params: object) -> str:
        """This URL with ``params`` replacing any items of the same names."""
        items = [(k, v) for k, v in self.query if k not in params]
        items += [(k, str(v)) for k, v in params.items()]
        return _join(self.base, self.path, items)

    def __str__(self) -> str:
        return _join(self.base, self.path, self.query)


def _join(base: str, path: str, items: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(items))
    return f"{base}{path}?{query}" if query else f"{base}{path}"


def public_url(request: Request, base_url: str) -> PublicURL:
    """The request's own URL on ``base_url``, with only its declared query parameters."""
    return PublicURL(
        base_url.rstrip("/"), route_path(request.scope), tuple(declared_query(request))
    )


def relative_query(request: Request, changes: Mapping[str, str]) -> str:
    """``?query`` of this request (declared parameters only) with ``changes`` applied: a link
    to a variant of the same page that does not depend on the host it was asked on."""
    items = [(k, v) for k, v in declared_query(request) if k not in changes]
    return "?" + urlencode([*items, *changes.items()])
