"""Grids, communities, streets and districts as map layers (simplified, in the page's CRS)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from geo_service.core.crs import PointCRS
from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.controls import GeoJsonLayer
from geo_service.render.maps.display import GeomArray, feature_collection, simplify

LEVEL_TITLES = {"district": "区", "street": "街道", "community": "社区", "grid": "网格"}
LEVEL_STYLES: dict[str, dict[str, Any]] = {
    "district": {"color": "#6a1b9a", "weight": 3, "fill": False},
    "street": {"color": "#1565c0", "weight": 2, "dashArray": "6 4", "fill": False},
    "community": {"color": "#2e7d32", "weight": 1.5, "fill": False},
    "grid": {"color": "#546e7a", "weight": 0.8, "fillColor": "#90caf9", "fillOpacity": 0.08},
}
# Simplification tolerance in metres: finer for grids, which are read at street level.
TOLERANCE_M = {"grid": 2.0, "community": 3.0, "street": 5.0, "district": 10.0}


# Popup property -> grid column. Read for the selected grids only: a viewport of a 100k-grid
# city needs a few hundred, not a dict per grid of the whole city.
GRID_FIELDS = {
    "code": "code",
    "name": "name",
    "community": "community_name",
    "officer": "officer_name",
    "phone": "officer_phone",
    "population": "population",
}


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def grid_properties(snapshot: Snapshot, idx: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
    """What a grid's tooltip and popup show: code, name, community, officer, population."""
    frame = snapshot.grids.frame
    columns = {
        key: frame[col].to_numpy()[idx] if col in frame else np.full(len(idx), None)
        for key, col in GRID_FIELDS.items()
    }
    rows = zip(*columns.values(), strict=True)
    return [
        {"level": "grid", **{k: _plain(v) for k, v in zip(columns, row, strict=True)}}
        for row in rows
    ]


def unit_features(
    snapshot: Snapshot, level: str, simplified: bool = True
) -> tuple[GeomArray, list[dict[str, Any]]]:
    """Geometry (WGS84, simplified for display) and popup properties of every unit of
    ``level``, in code order."""
    tolerance = TOLERANCE_M[level] if simplified else 0.0
    if level == "grid":
        idx = np.arange(len(snapshot.grids), dtype=np.int64)
        geoms = snapshot.grids.frame.geometry.to_numpy()
        props = grid_properties(snapshot, idx)
    else:
        units = snapshot.units(level)
        geoms = units.geometry.to_numpy()
        props = [
            {
                "code": str(code),
                "name": str(name),
                "level": level,
                "population": int(pop),
                "grids": int(n),
            }
            for code, name, pop, n in zip(
                units["code"], units["name"], units["population"], units["grids"], strict=True
            )
        ]
    return simplify(geoms, snapshot.projection, tolerance), props


def unit_collection(snapshot: Snapshot, level: str, crs: PointCRS) -> dict[str, Any]:
    """All units of ``level`` as a FeatureCollection for the page."""
    return feature_collection(*unit_features(snapshot, level), crs)


def unit_layer(
    snapshot: Snapshot, level: str, crs: PointCRS, show: bool, name: str | None = None
) -> GeoJsonLayer:
    data = unit_collection(snapshot, level, crs)
    title = name or f"{LEVEL_TITLES[level]}（{len(data['features'])}）"
    return GeoJsonLayer(data, title, LEVEL_STYLES[level], show=show)
