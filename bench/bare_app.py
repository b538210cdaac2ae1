"""The baseline for HTTP locate: a bare FastAPI endpoint around a shapely STRtree query.

No CRS conversion, no validation beyond FastAPI's float parsing, no edge rule, no grid details:
just the code of the first polygon the tree finds. Serve it with
``uvicorn --factory bench.bare_app:create_app`` (polygons from ``GEO_SERVICE_DATA_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from fastapi import FastAPI
from shapely import STRtree


def read_grids(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Codes and polygons straight from ``grids.geojson``, without geo_service."""
    frame = pyogrio.read_dataframe(Path(data_dir) / "grids.geojson", columns=["code"])
    return frame["code"].to_numpy(dtype=object), frame.geometry.to_numpy()


def create_app(
    data_dir: Path | None = None,
    codes: np.ndarray | None = None,
    geoms: np.ndarray | None = None,
) -> FastAPI:
    if codes is None or geoms is None:
        codes, geoms = read_grids(data_dir or Path(os.environ["GEO_SERVICE_DATA_DIR"]))
    tree = STRtree(geoms)
    app = FastAPI()

    @app.get("/locate")
    async def locate(lon: float, lat: float) -> dict[str, str | None]:
        hits = tree.query(shapely.points(lon, lat), predicate="intersects")
        return {"code": codes[hits[0]] if len(hits) else None}

    return app


def create_handler_app(data_dir: Path | None = None) -> FastAPI:
    """geo_service's own GET locate handler alone in a bare FastAPI app (no docs, middleware or
    other routers): separates the cost of the handler from the cost of the full application."""
    from geo_service.core.snapshot import SnapshotStore
    from geo_service.storage.dataset import load_dataset
    from geo_service.web.responses import JSONResponse
    from geo_service.web.routers.grids import locate

    app = FastAPI(default_response_class=JSONResponse)
    app.state.store = SnapshotStore(
        load_dataset(data_dir or Path(os.environ["GEO_SERVICE_DATA_DIR"]))
    )
    app.add_api_route("/api/v1/grids/locate", locate, response_model=None)
    return app
