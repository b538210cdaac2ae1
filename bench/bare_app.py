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
