"""Geometry as a page draws it: simplified in metres, in the basemap's CRS, rounded.

Simplification runs in the metric CRS with ``shapely.coverage_simplify``, which moves the shared
edge of two neighbouring grids once, for both, so a simplified map still has no slivers or gaps
between grids. Coordinates are then converted to the page's CRS (GCJ-02 on Amap) and rounded to 6
decimals (about 0.1 m), which is what keeps the HTML small.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geo_service.core.crs import (
    FloatArray,
    MetricProjection,
    PointCRS,
    from_wgs84,
    transform_geometry,
)

DECIMALS = 6
GeomArray = npt.NDArray[np.object_]


def simplify(geoms: GeomArray, projection: MetricProjection, tolerance_m: float) -> GeomArray:
    """Simplify polygons by ``tolerance_m`` metres, keeping shared edges shared."""
    geoms = np.asarray(geoms, dtype=object)
    if tolerance_m <= 0 or len(geoms) == 0:
        return geoms
    metric = projection.project(geoms)
    if bool(shapely.coverage_is_valid(metric)):
        simple = shapely.coverage_simplify(metric, tolerance_m)
    else:  # overlapping input (a data error): simplify each polygon on its own
        simple = shapely.simplify(metric, tolerance_m, preserve_topology=True)
    return np.asarray(projection.unproject(simple), dtype=object)


def _round(coords: FloatArray) -> FloatArray:
    return np.round(coords, DECIMALS)


def to_display(geoms: Any, crs: PointCRS) -> Any:
    """WGS84 geometries -> the page's CRS, rounded to ``DECIMALS``."""
    if crs not in (PointCRS.wgs84, PointCRS.cgcs2000):
        geoms = transform_geometry(geoms, PointCRS.wgs84, crs)
    return shapely.transform(geoms, _round)


def display_points(lon: Any, lat: Any, crs: PointCRS) -> tuple[FloatArray, FloatArray]:
    x, y = from_wgs84(lon, lat, crs)
    return np.round(x, DECIMALS), np.round(y, DECIMALS)


def feature_collection(
    geoms: GeomArray, properties: list[dict[str, Any]], crs: PointCRS
) -> dict[str, Any]:
    """A FeatureCollection in the page's CRS; each feature's id is its ``code`` property."""
    shown = to_display(np.asarray(geoms, dtype=object), crs)
    texts = shapely.to_geojson(shown) if len(shown) else []
    features = [
        {"type": "Feature", "id": p["code"], "geometry": json.loads(g), "properties": p}
        for g, p in zip(texts, properties, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def discs(
    lon: FloatArray, lat: FloatArray, radius_m: float, projection: MetricProjection
) -> GeomArray:
    """Circles of ``radius_m`` metres drawn in the metric CRS (64 vertices: < 1.3 m off at 1 km),
    returned in WGS84: the same discs the coverage figures are computed from."""
    x, y = projection.forward(lon, lat)
    circles = shapely.buffer(shapely.points(x, y), radius_m, quad_segs=16)
    return np.asarray(projection.unproject(circles), dtype=object)
