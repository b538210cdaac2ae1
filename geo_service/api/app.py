"""Application factory: settings and a snapshot store in, a FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from geo_service import __version__
from geo_service.api.compression import GZipMiddleware
from geo_service.api.errors import install_error_handlers
from geo_service.api.responses import JSONResponse
from geo_service.api.routers import coverage, edits, grids, maps, pages, service, stalls
from geo_service.auth import KeyVerifier
from geo_service.reloader import Reloader
from geo_service.settings import Settings
from geo_service.snapshot import SnapshotStore
from geo_service.storage import open_backend
from geo_service.storage.base import Backend

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DESCRIPTION = """
Grids (网格), repair stalls (小蓝棚) and vendor clusters (便民摊点群) for city management.

Every endpoint that takes a point accepts `crs` = `wgs84` (default), `cgcs2000`, `gcj02`
(Amap/Tencent/WeChat) or `bd09` (Baidu). Responses are WGS84, `[lon, lat]`; distances in
metres, areas in square metres.
"""


def create_app(
    settings: Settings | None = None,
    store: SnapshotStore | None = None,
    backend: Backend | None = None,
) -> FastAPI:
    """``backend`` defaults to the one ``settings`` choose (PostGIS if ``database_url``, else
    the files in ``data_dir``); a ``store`` that already holds a snapshot is served as is until
    the backend changes."""
    settings = settings or Settings()
    if store is None:
        store = SnapshotStore()
    owned = backend is None
    backend = backend or open_backend(settings)
    reloader = Reloader(backend, store, settings.dataset_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.db_migrate_on_start:
            backend.migrate()
        if not store.ready:
            reloader.load_now()
            if len(store.get().grids) == 0:
                log.warning(
                    "no grids in %s: load a dataset (geo-service db load data/)", backend.name
                )
        reloader.start()
        try:
            yield
        finally:
            reloader.stop()
            if owned:
                backend.close()

    app = FastAPIOffline(
        title="geo_service",
        version=__version__,
        description=DESCRIPTION,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        static_url="/static/docs",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.backend = backend
    app.state.backend_name = backend.name
    app.state.reloader = reloader
    app.state.keys = KeyVerifier(backend.get_key)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    install_error_handlers(app)
    # Routes are matched in order: the hot lookups first, the catch-all static mount last.
    app.include_router(grids.router)
    app.include_router(service.router)
    app.include_router(stalls.router)
    app.include_router(pages.router)
    app.include_router(coverage.router)
    app.include_router(maps.router)
    app.include_router(edits.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
