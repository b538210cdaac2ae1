"""A copy of the default dataset whose free-text fields are script injections (stored XSS).

Each field gets its own number ``n``: a payload that runs sets ``window.__xss = n``, so a failing
test names the field that leaked. The payloads cover an element with an event handler, breaking
out of an attribute and then a ``<script>``, and a single-quoted attribute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import rawdata
from tests.backends import copy_data

# 奎文区, near 东风街 / 四平路 (as tests/test_pages_browser.py): the hostile stall is the
# nearest active stall to it, so /find lists and draws it first.
HERE = {"longitude": 119.1575, "latitude": 36.7105, "accuracy": 20}


def payload(n: int) -> str:
    return (
        f'<img src=x onerror="window.__xss={n}">'
        f'"><script>window.__xss={n}</script>'
        f"'><svg onload=window.__xss={n}>&amp;"
    )


@dataclass(frozen=True)
class Hostile:
    """Where the payloads sit: the codes to open and the text each field must show."""

    data_dir: Path
    stall: str
    grid: str
    community: str
    vendor_cluster: str
    texts: dict[str, str]


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def write_hostile_data(dst: Path) -> Hostile:
    """Copy data/ to ``dst`` and plant the payloads; returns what was planted where."""
    copy_data(dst)
    ranked = rawdata.geodesic_ranking(
        rawdata.points("stalls"),
        HERE["longitude"],
        HERE["latitude"],
        lambda s: s["status"] == "active",
    )
    stall = ranked[0][0]
    texts = {
        "stall.name": "坏名字" + payload(1),
        "stall.address": payload(2),
        "stall.operator": payload(3),
        "grid.name": payload(4),
        "grid.officer_name": payload(5),
        "community_name": payload(6),
        "vendor_cluster.name": payload(7),
    }
    stalls = json.loads((dst / "stalls.geojson").read_text(encoding="utf-8"))
    grid = ""
    for f in stalls["features"]:
        p = f["properties"]
        if p["code"] == stall:
            p["name"] = texts["stall.name"]
            p["address"] = texts["stall.address"]
            p["operator"] = texts["stall.operator"]
            grid = p["grid_code"]
    _write(dst / "stalls.geojson", stalls)
    grids = json.loads((dst / "grids.geojson").read_text(encoding="utf-8"))
    community = next(
        f["properties"]["community_code"]
        for f in grids["features"]
        if f["properties"]["code"] == grid
    )
    for f in grids["features"]:
        p = f["properties"]
        if p["code"] == grid:
            p["name"] = texts["grid.name"]
            p["officer_name"] = texts["grid.officer_name"]
        if p["community_code"] == community:
            p["community_name"] = texts["community_name"]
    _write(dst / "grids.geojson", grids)
    clusters = json.loads((dst / "vendor_clusters.geojson").read_text(encoding="utf-8"))
    near = rawdata.geodesic_ranking(
        rawdata.points("vendor_clusters"), HERE["longitude"], HERE["latitude"]
    )[0][0]
    for f in clusters["features"]:
        if f["properties"]["code"] == near:
            f["properties"]["name"] = texts["vendor_cluster.name"]
    _write(dst / "vendor_clusters.geojson", clusters)
    return Hostile(dst, stall, grid, community, near, texts)
