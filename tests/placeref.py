"""Independent references for where a site is: the units containing it from PostGIS ST_Covers on
the raw grid polygons, and the nearest landmark by brute force with pyproj.Geod over the raw
point files (``tests.rawdata``), with its compass point worked out here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
import pyproj
import shapely

from tests import rawdata
from tests.pgref import load_table

UNIT_COLUMNS = (
    "community_code",
    "community_name",
    "street_code",
    "street_name",
    "district_code",
    "district_name",
)
# Sector boundaries (degrees clockwise from north) and the compass point of each sector.
SECTORS = [
    (-22.5, 22.5, "北"),
    (22.5, 67.5, "东北"),
    (67.5, 112.5, "东"),
    (112.5, 157.5, "东南"),
    (157.5, 180.0, "南"),
    (-180.0, -157.5, "南"),
    (-157.5, -112.5, "西南"),
    (-112.5, -67.5, "西"),
    (-67.5, -22.5, "西北"),
]


def postgis_units(
    pg: psycopg.Connection, lon: Sequence[float], lat: Sequence[float]
) -> list[dict[str, Any] | None]:
    """For each WGS84 point: the raw properties of the grid covering it (smallest code on a
    shared edge), or None outside every grid."""
    props = rawdata.properties("grids")
    geoms = rawdata.geometries("grids")
    codes = sorted(props)
    load_table(
        pg,
        "place_grids",
        codes,
        np.array([geoms[c] for c in codes], dtype=object),
        extra={"name": [props[c]["name"] for c in codes]}
        | {col: [props[c][col] for c in codes] for col in UNIT_COLUMNS},
    )
    ids = [str(i) for i in range(len(lon))]
    load_table(pg, "place_points", ids, shapely.points(np.asarray(lon), np.asarray(lat)))
    rows = pg.execute(
        "SELECT p.code::int, (SELECT min(g.code) FROM place_grids g "
        "WHERE ST_Covers(g.geom, p.geom)) FROM place_points p"
    ).fetchall()
    found: list[dict[str, Any] | None] = [None] * len(lon)
    for i, code in rows:
        found[i] = props[code] if code is not None else None
    return found


def landmark_rows() -> list[dict[str, Any]]:
    """Stalls and vendor clusters still in place (not retired or relocated), with a name."""
    rows = []
    for layer in ("stalls", "vendor_clusters"):
        for r in rawdata.points(layer):
            if r.get("status") not in ("retired", "relocated") and r.get("name"):
                rows.append({**r, "layer": layer})
    return rows


def nearest_landmark(lon: float, lat: float) -> tuple[dict[str, Any], float, float]:
    """The nearest landmark, its geodesic distance (m) and the azimuth from it to the point."""
    rows = landmark_rows()
    ranked = rawdata.geodesic_ranking(rows, lon, lat)
    code, dist = ranked[0]
    row = next(r for r in rows if r["code"] == code)
    az, _, _ = pyproj.Geod(ellps="WGS84").inv(row["lon"], row["lat"], lon, lat)
    return row, dist, float(az)


def compass_point(azimuth: float) -> str:
    az = (azimuth + 180.0) % 360.0 - 180.0  # to [-180, 180)
    return next(name for lo, hi, name in SECTORS if lo <= az < hi)
