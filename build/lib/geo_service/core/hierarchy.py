"""Communities, streets and districts, derived from the grids that make them up.

Grids are the only source of truth for boundaries: a community is the union of its grids,
so the levels can never disagree with each other.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_service.core.errors import quote
from geo_service.core.schema import LEVELS

LEVEL_NAMES = tuple(LEVELS)


def dissolve(grids: gpd.GeoDataFrame, level: str, area_m2: np.ndarray) -> gpd.GeoDataFrame:
    """One row per unit of ``level``: code, name, area_m2, households, population, geometry."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {quote(level)}; one of {', '.join(LEVELS)}")
    code_col, name_col = LEVELS[level]
    frame = pd.DataFrame(
        {
            "code": grids[code_col].to_numpy(),
            "name": grids[name_col].to_numpy(),
            "area_m2": area_m2,
            "population": grids["population"].fillna(0).astype("int64").to_numpy(),
            "households": grids["households"].fillna(0).astype("int64").to_numpy()
            if "households" in grids
            else 0,
        }
    )
    agg = frame.groupby("code", sort=True).agg(
        name=("name", "first"),
        area_m2=("area_m2", "sum"),
        population=("population", "sum"),
        households=("households", "sum"),
        grids=("name", "size"),
    )
    if level == "grid":
        geoms = grids.geometry.to_numpy()
        order = np.argsort(grids["code"].to_numpy(), kind="stable")
        geom = geoms[order]
    else:
        groups = frame.groupby("code", sort=True).indices
        all_geoms = grids.geometry.to_numpy()
        geom = np.array(
            [shapely.coverage_union_all(all_geoms[groups[c]]) for c in agg.index], dtype=object
        )
    out = gpd.GeoDataFrame(agg.reset_index(), geometry=gpd.GeoSeries(geom), crs=4326)
    return out
