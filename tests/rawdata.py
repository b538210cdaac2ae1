"""The default dataset read with nothing but json and shapely: an independent view of data/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import shapely

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@cache
def features(layer: str) -> list[dict[str, Any]]:
    with open(DATA_DIR / f"{layer}.geojson", encoding="utf-8") as fh:
        return json.load(fh)["features"]  # type: ignore[no-any-return]


@cache
def geometries(layer: str) -> dict[str, shapely.Geometry]:
    return {f["properties"]["code"]: shapely.geometry.shape(f["geometry"]) for f in features(layer)}


def properties(layer: str) -> dict[str, dict[str, Any]]:
    return {f["properties"]["code"]: f["properties"] for f in features(layer)}
