"""Small hand-made grid layers for tests whose answers can be worked out by hand."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

BASE = "370705001001"


def grid_row(code: str, geom: BaseGeometry, **over: Any) -> dict[str, Any]:
    row = {
        "code": code,
        "name": f"网格{code[-3:]}",
        "community_code": code[:12],
        "community_name": f"社区{code[9:12]}",
        "street_code": code[:9],
        "street_name": f"街道{code[6:9]}",
        "district_code": code[:6],
        "district_name": "奎文区",
        "officer_name": f"网格员{code[-3:]}",
        "officer_phone": "0536-555-0000",
        "households": 100,
        "population": 250,
        "geometry": geom,
    }
    row.update(over)
    return row


def squares(
    n_cols: int = 2, n_rows: int = 2, x0: float = 119.10, y0: float = 36.70, size: float = 0.01
) -> gpd.GeoDataFrame:
    """A lattice of squares, codes numbered west→east, north→south (like DB11/T 2157)."""
    # Edges come from one list of coordinates so that neighbours share them exactly.
    xs = [round(x0 + c * size, 9) for c in range(n_cols + 1)]
    ys = [round(y0 + r * size, 9) for r in range(n_rows + 1)]
    rows = []
    k = 1
    for r in range(n_rows):
        for c in range(n_cols):
            j = n_rows - 1 - r
            box = shapely.box(xs[c], ys[j], xs[c + 1], ys[j + 1])
            rows.append(grid_row(f"{BASE}{k:03d}", box))
            k += 1
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)
