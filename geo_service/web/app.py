"""Application factory: settings and a snapshot store in, a FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from geo_service import __version__
from geo_service.core.settings import Settings
from geo_service.core.snapshot import SnapshotStore
from geo_service.domain.auth import KeyVerifier
from geo_service.runtime import open_runtime
from geo_service.storage.base import Backend
from geo_service.web.compression import GZip
from geo_service.web.deps import reject_unknown_query
from geo_service.web.errors import install_error_handlers
from geo_service.web.fastlane import LocateFastLane
from geo_service.web.limits import BodyLimitMiddleware, body_caps
from geo_service.web.offload import HeavyPool
from geo_service.web.openapi import install_openapi
from geo_service.web.pagecache import PageCache
from geo_service.web.ratelimit import RateLimitMiddleware
from geo_service.web.responses import JSONResponse
from geo_service.web.routers import (
    cases,
    casestats,
    coverage,
    edits,
    grids,
    home,
    layers,
    maps,
    officerpages,
    ogc,
    open311,
    pages,
    reportpages,
    search,
    service,
    stalls,
    units,
)
from geo_service.web.security import SecurityHeadersMiddleware

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent.parent / "render" / "static"

DESCRIPTION = """
Grids (网格), repair stalls (小蓝棚) and vendor clusters (便民摊点群) for city management.

Every endpoint that takes a point accepts `crs` = `wgs84` (default), `cgcs2000`, `gcj02`
(Amap/Tencent/WeChat) or `bd09` (Baidu). Responses are WGS84, `[lon, lat]`; distances in
metres, areas in square metres.
"""


DOCS_URL = "/docs"
REDOC_URL = "/redoc"


def _docs_paths(app: FastAPI) -> list[str]:
    """FastAPI's own HTML pages with inline scripts (hashed into their CSP as they are sent)."""
    return [DOCS_URL, REDOC_URL, app.swagger_ui_oauth2_redirect_url or ""]


def create_app(
    settings: Settings | None = None,
    store: SnapshotStore | None = None,
    backend: Backend | None = None,
) -> FastAPI:
    """``backend`` defaults to the one ``settings`` choose (PostGIS if ``database_url``, else
    the files in ``data_dir``); a ``store`` that already holds a snapshot is served as is until
    the backend changes."""
    settings = settings or Settings()
    rt = open_runtime(settings, store, backend)
    heavy = HeavyPool(settings.heavy_threads, settings.heavy_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt.start()
        try:
            yield
        finally:
            heavy.close()
            rt.close()

    app = FastAPIOffline(
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        title="geo_service",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        static_url="/static/docs",
        # Every JSON API route refuses query parameters it does not declare (pages do not).
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.settings = settings
    app.state.runtime = rt
    app.state.heavy = heavy
    app.state.pages = PageCache[str](heavy)
    app.state.store = rt.store
    app.state.backend = rt.backend
    app.state.backend_name = rt.backend.name
    app.state.reloader = rt.reloader
    app.state.keys = KeyVerifier(rt.backend.get_key)
    # The last added runs first: refuse a client over its rate, then a body over its cap;
    # security headers run inside GZip, so they see (and may hash) uncompressed pages.
    app.add_middleware(LocateFastLane, store=rt.store)  # innermost: every layer above applies
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=_docs_paths(app))
    app.add_middleware(GZip, minimum_size=2048)
    app.add_middleware(
        BodyLimitMiddleware, caps=body_caps(settings), default_limit=settings.max_body_bytes
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limit=settings.rate_limit,
            storage=settings.rate_limit_storage,
            exempt=tuple(settings.rate_limit_exempt),
        )
    install_error_handlers(app)
    # Routes are matched in order: the hot lookups first, the catch-all static mount last.
    app.include_router(grids.router)
    app.include_router(units.router)
    app.include_router(search.router)
    app.include_router(service.router)
    app.include_router(stalls.router)
    app.include_router(pages.router)
    app.include_router(coverage.router)
    app.include_router(layers.router)
    app.include_router(maps.router)
    app.include_router(edits.router)
    app.include_router(open311.router)
    app.include_router(casestats.router)  # before cases: /api/v1/cases/stats is no case id
    app.include_router(cases.router)
    app.include_router(reportpages.router)
    app.include_router(officerpages.router)
    app.include_router(ogc.router)  # GIS clients: OGC API – Features under /ogc
    app.include_router(home.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_openapi(app)
    return app
