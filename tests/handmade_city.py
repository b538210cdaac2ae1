"""Hand-made cities for coverage tests: squares and points laid out in metres (EPSG:4549) around
Weifang, stored in WGS84 like real data, so expected areas can be worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from geo_service.core.crs import MetricProjection
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, build_snapshot
from tests.citybuilder import grid_row

PROJ = MetricProjection(4549)
X0, Y0 = (float(v) for v in PROJ.forward(119.1, 36.7))


@dataclass(frozen=True)
class Square:
    minx: float
    miny: float
    maxx: float
    maxy: float
    population: int = 0
    community: int = 1  # community number within street 001

    @property
    def area(self) -> float:
        return (self.maxx - self.minx) * (self.maxy - self.miny)


@dataclass(frozen=True)
class Site:
    x: float
    y: float
    services: tuple[str, ...] = ("修鞋",)
    status: str = "active"


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    """Metric offsets from the origin to WGS84."""
    lon, lat = PROJ.inverse(X0 + x, Y0 + y)
    return float(lon), float(lat)


def grid_code(i: int, community: int = 1) -> str:
    return f"370705001{community:03d}{i + 1:03d}"


def build(
    squares: Sequence[Square], stalls: Sequence[Site] = (), clusters: Sequence[Site] = ()
) -> Snapshot:
    rings = []
    for s in squares:
        corners = [(s.minx, s.miny), (s.maxx, s.miny), (s.maxx, s.maxy), (s.minx, s.maxy)]
        rings.append([to_lonlat(x, y) for x, y in corners])
    rows = [
        grid_row(
            grid_code(i, s.community),
            shapely.Polygon(ring),
            name=f"网格{i + 1}",
            households=s.population // 3,
            population=s.population,
        )
        for i, (s, ring) in enumerate(zip(squares, rings, strict=True))
    ]
    grids = gpd.GeoDataFrame(rows, geometry="geometry", crs=4326)

    def points(sites: Sequence[Site], prefix: str) -> gpd.GeoDataFrame:
        lonlat = [to_lonlat(p.x, p.y) for p in sites]
        return gpd.GeoDataFrame(
            {
                "code": [f"{prefix}-370705-{i + 1:03d}" for i in range(len(sites))],
                "name": [f"{prefix}{i + 1}" for i in range(len(sites))],
                "services": [list(p.services) for p in sites],
                "status": [p.status for p in sites],
            },
            geometry=gpd.GeoSeries(
                shapely.points(np.array(lonlat).reshape(-1, 2)) if lonlat else [], crs=4326
            ),
            crs=4326,
        )

    frames = {
        LayerName.grids: grids,
        LayerName.stalls: points(stalls, "XLP"),
        LayerName.vendor_clusters: points(clusters, "TDQ"),
    }
    return build_snapshot(frames, name="handmade", version="1", projection=PROJ)
