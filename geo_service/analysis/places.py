"""Where a site is, in words a planner can act on: the grid, community, street and district it
lies in (codes and Chinese names), and a label that places it against the nearest named
facility in the data, e.g. "北关街道清源园社区第01网格，北关早市便民摊点群东北方向约 320 米".

Why a facility and not an address: the data's ``address`` fields name a road crossing that is
not where the point is (see data/README.md), so quoting one would send people to the wrong
place. A stall's or vendor cluster's *position* is data, so "that many metres in that direction
from it" is honest. Retired and relocated facilities are no landmark (nothing is left there).
Distance and direction are geodesic (pyproj on the WGS84 ellipsoid), from the landmark to the
site, in eight compass points.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pyproj import Geod

from geo_service.core.crs import FloatArray
from geo_service.core.schema import LEVELS, LayerName, Status
from geo_service.core.snapshot import Snapshot

COMPASS = ("北", "东北", "东", "东南", "南", "西南", "西", "西北")
"""Eight compass points, clockwise from north (45° sectors centred on each)."""

BESIDE_M = 15.0
"""Closer than this a site is "next to" its landmark (no direction is meaningful)."""

LANDMARK_LAYERS = (LayerName.vendor_clusters, LayerName.stalls)
NOT_THERE = (Status.retired.value, Status.relocated.value)

PLACE_COLUMNS = (
    *(f"{level}_{part}" for level in LEVELS for part in ("code", "name")),
    "landmark_layer",
    "landmark_code",
    "landmark_name",
    "landmark_m",
    "landmark_direction",
    "label",
)

_GEOD = Geod(ellps="WGS84")


def compass(azimuth_deg: npt.ArrayLike) -> list[str]:
    """Chinese compass point of each azimuth (degrees clockwise from north)."""
    az = np.mod(np.asarray(azimuth_deg, dtype=np.float64), 360.0)
    return [COMPASS[i] for i in (np.floor((az + 22.5) / 45.0).astype(int) % 8)]


def distance_text(metres: float) -> str:
    """Rounded the way people say it: to 10 m below 1 km, to 0.1 km above."""
    if metres < 995:
        return f"{max(round(metres, -1), 10):.0f} 米"
    return f"{metres / 1000:.1f} 公里"


def _landmarks(snapshot: Snapshot) -> tuple[FloatArray, FloatArray, pd.DataFrame]:
    """Metric x, y and (layer, code, name, lon, lat) of every facility that can be a landmark."""
    xs, ys, rows = [], [], []
    for name in LANDMARK_LAYERS:
        layer = snapshot.points(name)
        frame = layer.frame
        keep = np.ones(len(frame), dtype=bool)
        if "status" in frame:
            keep &= ~np.isin(frame["status"].to_numpy(dtype=object), NOT_THERE)
        if "name" in frame:
            names = frame["name"].to_numpy(dtype=object)
            keep &= np.array([isinstance(n, str) and bool(n.strip()) for n in names], dtype=bool)
        else:
            keep[:] = False
        idx = np.flatnonzero(keep)
        xs.append(layer.index.x[idx])
        ys.append(layer.index.y[idx])
        rows.append(
            pd.DataFrame(
                {
                    "layer": name.value,
                    "code": layer.codes[idx],
                    "name": frame["name"].to_numpy(dtype=object)[idx] if len(idx) else [],
                    "lon": layer.index.lon[idx],
                    "lat": layer.index.lat[idx],
                }
            )
        )
    return np.concatenate(xs), np.concatenate(ys), pd.concat(rows, ignore_index=True)


def describe_sites(snapshot: Snapshot, lon: npt.ArrayLike, lat: npt.ArrayLike) -> pd.DataFrame:
    """One row per WGS84 site with ``PLACE_COLUMNS``: the units containing it (None outside
    every grid), the nearest landmark with its geodesic distance (m, 0.1) and compass point,
    and ``label``, the two in one Chinese phrase."""
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    n = len(lon)
    out: dict[str, list[object]] = {c: [None] * n for c in PLACE_COLUMNS}
    if n == 0:
        return pd.DataFrame(out, columns=list(PLACE_COLUMNS), dtype=object)
    where = snapshot.grids.index.locate(lon, lat)
    frame = snapshot.grids.frame
    inside = where >= 0
    for level, (code_col, name_col) in LEVELS.items():
        for part, col in (("code", code_col), ("name", name_col)):
            if col in frame:
                values = frame[col].to_numpy(dtype=object)[np.maximum(where, 0)]
                out[f"{level}_{part}"] = [
                    v if ok else None for v, ok in zip(values, inside, strict=True)
                ]

    lx, ly, marks = _landmarks(snapshot)
    if len(marks):
        x, y = snapshot.projection.forward(lon, lat)
        ok = np.isfinite(x) & np.isfinite(y)
        nearest = np.full(n, -1, dtype=np.int64)
        if ok.any():
            _, hit = shapely.STRtree(shapely.points(lx, ly)).query_nearest(
                shapely.points(x[ok], y[ok]), all_matches=False
            )
            nearest[ok] = hit
        found = nearest >= 0
        m = marks.iloc[np.maximum(nearest, 0)]
        az, _, dist = _GEOD.inv(m["lon"].to_numpy(), m["lat"].to_numpy(), lon, lat)
        dist = np.asarray(dist, dtype=np.float64)
        direction = compass(az)
        for key, values in (
            ("landmark_layer", m["layer"].tolist()),
            ("landmark_code", m["code"].tolist()),
            ("landmark_name", m["name"].tolist()),
            ("landmark_m", [round(float(d), 1) for d in dist]),
            (
                "landmark_direction",
                [None if d < BESIDE_M else c for d, c in zip(dist, direction, strict=True)],
            ),
        ):
            out[key] = [v if f else None for v, f in zip(values, found, strict=True)]
    out["label"] = [_label({k: out[k][i] for k in PLACE_COLUMNS}) for i in range(n)]
    return pd.DataFrame(out, columns=list(PLACE_COLUMNS), dtype=object)


def _label(row: dict[str, object]) -> str:
    grid = row["grid_name"] or row["grid_code"]
    if grid:
        street = row["street_name"] or ""
        where = f"{street}{grid}" if street and not str(grid).startswith(str(street)) else grid
    else:
        where = "不在任何网格内"
    name = row["landmark_name"]
    if not name:
        return str(where)
    metres = float(row["landmark_m"])  # type: ignore[arg-type]
    if row["landmark_direction"] is None:
        return f"{where}，紧邻{name}"
    return f"{where}，{name}{row['landmark_direction']}方向约 {distance_text(metres)}"
