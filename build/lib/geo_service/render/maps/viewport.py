"""Grids for the part of a map in view, for cities too large to inline in one page.

A 100,000-grid city is tens of megabytes of polygons: the overview then inlines only districts,
streets and communities, and the page fetches the grids in view (from zoom ``MIN_ZOOM`` on) from
``/maps/data/grids?bbox=...``. The box and the answer are in the page's CRS (GCJ-02 on Amap), so
the conversion stays on the server, in the same tested code as every other overlay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.display import feature_collection
from geo_service.render.maps.units import grid_properties

MIN_ZOOM = 16
DEFAULT_LIMIT = 2000
# GCJ-02's shift changes by well under a metre across a viewport; pad the converted box anyway.
PAD_DEG = 1e-4


def wgs84_box(
    bbox: tuple[float, float, float, float], crs: PointCRS
) -> tuple[float, float, float, float]:
    """The WGS84 box that contains a box given in ``crs``."""
    minx, miny, maxx, maxy = bbox
    lon, lat = to_wgs84(np.array([minx, maxx, maxx, minx]), np.array([miny, miny, maxy, maxy]), crs)
    return (
        float(lon.min()) - PAD_DEG,
        float(lat.min()) - PAD_DEG,
        float(lon.max()) + PAD_DEG,
        float(lat.max()) + PAD_DEG,
    )


def grids_in_view(
    snapshot: Snapshot, bbox: tuple[float, float, float, float], crs: PointCRS, limit: int
) -> dict[str, Any]:
    """Grids intersecting ``bbox`` (given in ``crs``), at most ``limit``, in ``crs``."""
    hits = snapshot.grids.index.bbox(*wgs84_box(bbox, crs))
    page = hits[:limit]
    body = feature_collection(
        snapshot.grids.frame.geometry.to_numpy()[page], grid_properties(snapshot, page), crs
    )
    body["numberMatched"] = len(hits)
    body["truncated"] = len(hits) > len(page)
    return body


def grid_by_code(snapshot: Snapshot, code: str, crs: PointCRS) -> dict[str, Any]:
    """One grid as a FeatureCollection in ``crs`` (empty when the code is unknown)."""
    i = snapshot.grids.position.get(code)
    idx = np.array([] if i is None else [i], dtype=np.int64)
    body = feature_collection(
        snapshot.grids.frame.geometry.to_numpy()[idx], grid_properties(snapshot, idx), crs
    )
    body["numberMatched"] = len(idx)
    body["truncated"] = False
    return body
