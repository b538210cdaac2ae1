"""The default dataset read with nothing but json and shapely: an independent view of data/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import shapely

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@cache
def _text(layer: str) -> str:
    return (DATA_DIR / f"{layer}.geojson").read_text(encoding="utf-8")


def features(layer: str) -> list[dict[str, Any]]:
    """A fresh list each call: a test may change what it gets without touching other tests."""
    return json.loads(_text(layer))["features"]  # type: ignore[no-any-return]


@cache
def geometries(layer: str) -> dict[str, shapely.Geometry]:
    return {f["properties"]["code"]: shapely.geometry.shape(f["geometry"]) for f in features(layer)}


def properties(layer: str) -> dict[str, dict[str, Any]]:
    return {f["properties"]["code"]: f["properties"] for f in features(layer)}


@cache
def points(layer: str) -> list[dict[str, Any]]:
    """A point layer's rows as written: properties plus lon/lat, ``services`` split to a list."""
    out = []
    for f in features(layer):
        row = dict(f["properties"])
        row["lon"], row["lat"] = f["geometry"]["coordinates"][:2]
        if isinstance(row.get("services"), str):
            row["services"] = [s for s in row["services"].split(";") if s]
        out.append(row)
    return out


def geodesic_ranking(
    rows: list[dict[str, Any]], lon: float, lat: float, keep: Any = lambda r: True
) -> list[tuple[str, float]]:
    """Brute force with pyproj.Geod: every row passing ``keep`` and its distance in metres on
    the WGS84 ellipsoid, nearest first (ties by code)."""
    import numpy as np
    import pyproj

    cand = [r for r in rows if keep(r)]
    _, _, d = pyproj.Geod(ellps="WGS84").inv(
        np.full(len(cand), lon),
        np.full(len(cand), lat),
        [r["lon"] for r in cand],
        [r["lat"] for r in cand],
    )
    ranked = ((r["code"], float(x)) for r, x in zip(cand, np.atleast_1d(d), strict=True))
    return sorted(ranked, key=lambda t: (t[1], t[0]))
