"""Application factory: settings and a snapshot store in, a FastAPI app out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from geo_service import __version__
from geo_service.api.errors import install_error_handlers
from geo_service.api.responses import JSONResponse
from geo_service.api.routers import coverage, grids, maps, pages, service, stalls
from geo_service.dataset import load_dataset
from geo_service.settings import Settings
from geo_service.snapshot import SnapshotStore

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

DESCRIPTION = """
Grids (网格), repair stalls (小蓝棚) and vendor clusters (便民摊点群) for city management.

Every endpoint that takes a point accepts `crs` = `wgs84` (default), `cgcs2000`, `gcj02`
(Amap/Tencent/WeChat) or `bd09` (Baidu). Responses are WGS84, `[lon, lat]`; distances in
metres, areas in square metres.
"""


def create_app(settings: Settings | None = None, store: SnapshotStore | None = None) -> FastAPI:
    settings = settings or Settings()
    if store is None:
        store = SnapshotStore()
    backend_name = "embedded files"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not store.ready:
            store.swap(load_dataset(settings.data_dir, settings.dataset_name))
        yield

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
    app.state.backend_name = backend_name
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(service.router)
    app.include_router(grids.router)
    app.include_router(stalls.router)
    app.include_router(pages.router)
    app.include_router(coverage.router)
    app.include_router(maps.router)
    return app
