"""Security headers on every response, and the Content-Security-Policy of each kind of page.

Every response gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy`` and
``X-Frame-Options`` (for browsers older than CSP's ``frame-ancestors``). HTML pages also get a
CSP; JSON and GeoJSON do not (a policy means nothing to ``fetch``), so the hot lookups pay one
scan of a few response headers and three pre-encoded tuples, nothing more.

Policies, all sharing ``default-src 'self'``, ``object-src 'none'``, ``base-uri 'self'``,
``frame-ancestors 'self'``, ``form-action 'self'`` and images from us, ``data:``/``blob:`` and the
basemap tile hosts:

- residents' pages (``/s/``, ``/find``) and any other HTML: scripts and styles only from us;
- Folium maps: their inline ``<script>`` blocks by SHA-256 hash (computed once when a page is
  built and cached with it, ``map_policy``), inline styles allowed (Folium writes ``<style>``
  blocks and ``style=`` attributes in legends);
- ``/docs`` and ``/redoc`` (pages FastAPI writes): the inline script is hashed here on the fly
  (the pages are small and rarely asked for), inline styles and a ``blob:`` worker (ReDoc).

A response that already carries a ``Content-Security-Policy`` (a map page) keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geo_service.render.maps.basemaps import TILE_HOSTS
from geo_service.web.links import route_path

CSP = b"content-security-policy"
CONTENT_TYPE = b"content-type"

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"SAMEORIGIN"),
)


def tile_sources(hosts: Iterable[str]) -> list[str]:
    """CSP sources for the tile hosts: numbered siblings (``webrd01..04.is.autonavi.com``,
    ``t0..t7.tianditu.gov.cn``) as one ``*.`` wildcard of their parent, other hosts as they
    are (so a lone host never widens to its whole domain)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for host in hosts:
        label, parent = host.split(".", 1)
        groups.setdefault((re.sub(r"\d+", "#", label), parent), []).append(host)
    out: list[str] = []
    for (_, parent), members in groups.items():
        sources = [f"https://*.{parent}"] if len(members) > 1 else [f"https://{members[0]}"]
        out += [src for src in sources if src not in out]
    return out


IMG_SRC = ("'self'", "data:", "blob:", *tile_sources(TILE_HOSTS))
_COMMON = (
    "default-src 'self'",
    "img-src " + " ".join(IMG_SRC),
    "object-src 'none'",
    "base-uri 'self'",
    "frame-ancestors 'self'",
    "form-action 'self'",
)

# The browser hashes a script's text after the HTML parser normalised its newlines.
_INLINE_SCRIPT = re.compile(
    r"<script\b(?![^>]*\ssrc\s*=)[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL
)


def policy(*directives: str) -> str:
    """A CSP header value: the common directives, then ``directives``."""
    return "; ".join((*_COMMON, *directives))


PAGE_POLICY = policy("script-src 'self'", "style-src 'self'")


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources (``'sha256-...'``) for each inline ``<script>`` of ``html``, in order."""
    out: list[str] = []
    for m in _INLINE_SCRIPT.finditer(html):
        text = m.group(1).replace("\r\n", "\n").replace("\r", "\n")
        digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
        source = f"'sha256-{digest}'"
        if source not in out:
            out.append(source)
    return out


def map_policy(html: str) -> str:
    """The CSP of a built Folium map page: its own inline scripts, nothing else inline."""
    return policy(
        "script-src 'self' " + " ".join(inline_script_hashes(html)),
        "style-src 'self' 'unsafe-inline'",
    )


def docs_policy(html: str) -> str:
    """The CSP of FastAPI's Swagger UI / ReDoc pages (self-hosted by fastapi_offline)."""
    return policy(
        "script-src 'self' " + " ".join(inline_script_hashes(html)),
        "style-src 'self' 'unsafe-inline'",
        "worker-src 'self' blob:",
    )


def _is_html(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, bool]:
    """(an HTML response, it already has a CSP)."""
    html = has_csp = False
    for k, v in headers:
        if k == CONTENT_TYPE:
            html = v.startswith(b"text/html")
        elif k == CSP:
            has_csp = True
    return html, has_csp


class SecurityHeadersMiddleware:
    """Pure ASGI: adds the headers to ``http.response.start``; buffers only the docs pages."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)
        self.page_csp = (CSP, PAGE_POLICY.encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.docs_paths and route_path(scope) in self.docs_paths:
            await self._hashed(scope, receive, send)
            return
        page_csp = self.page_csp

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html, has_csp = _is_html(headers)
                headers.extend(ALWAYS)
                if html and not has_csp:
                    headers.append(page_csp)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add_headers)

    async def _hashed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hold the (small) page back until its inline scripts are hashed into its CSP."""
        start: Message | None = None
        body: list[bytes] = []

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = b"".join(body)
            headers = list(start.get("headers", ()))
            html, has_csp = _is_html(headers)
            headers.extend(ALWAYS)
            if html and not has_csp:
                value = docs_policy(content.decode("utf-8", "replace"))
                headers.append((CSP, value.encode("ascii")))
            start["headers"] = headers
            await send(start)
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, collect)
