"""Grid and point indexes on hand-worked geometry; distances checked with pyproj.Geod."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest

from geo_service.core.schema import LayerName
from geo_service.core.snapshot import build_snapshot
from tests.citybuilder import BASE, squares

GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def snap():  # type: ignore[no-untyped-def]
    # 2x2 squares of 0.01°: 001 NW, 002 NE, 003 SW, 004 SE; x 119.10-119.12, y 36.70-36.72.
    return build_snapshot({LayerName.grids: squares()}, name="t", version="1")


def codes(snap, lon, lat):  # type: ignore[no-untyped-def]
    idx = snap.grids.index.locate(lon, lat)
    return [snap.grids.codes[i] if i >= 0 else None for i in idx]


def test_inside_each_square(snap) -> None:  # type: ignore[no-untyped-def]
    got = codes(snap, [119.105, 119.115, 119.105, 119.115], [36.715, 36.715, 36.705, 36.705])
    assert got == [f"{BASE}001", f"{BASE}002", f"{BASE}003", f"{BASE}004"]


def test_shared_edges_and_corner_go_to_smallest_code(snap) -> None:  # type: ignore[no-untyped-def]
    # Vertical edge between 001|002, horizontal edge 001/003, centre corner of all four.
    got = codes(snap, [119.11, 119.105, 119.11, 119.115], [36.715, 36.71, 36.71, 36.71])
    assert got == [f"{BASE}001", f"{BASE}001", f"{BASE}001", f"{BASE}002"]
    # The same answer every time, whatever the order of the batch.
    again = codes(snap, [119.115, 119.11, 119.105, 119.11], [36.71, 36.71, 36.71, 36.715])
    assert again == [f"{BASE}002", f"{BASE}001", f"{BASE}001", f"{BASE}001"]


def test_outer_boundary_belongs_to_the_grid_and_outside_to_none(snap) -> None:  # type: ignore[no-untyped-def]
    got = codes(snap, [119.10, 119.12, 119.0999999, 119.13], [36.705, 36.70, 36.705, 36.73])
    assert got == [f"{BASE}003", f"{BASE}004", None, None]


def test_nearest_distance_is_geodesic_metres(snap) -> None:  # type: ignore[no-untyped-def]
    # 0.01° east of the east edge, on the latitude of 002's middle.
    lon, lat = 119.13, 36.715
    idx, dist = snap.grids.index.nearest(lon, lat)
    assert snap.grids.codes[idx[0]] == f"{BASE}002"
    expected = GEOD.inv(lon, lat, 119.12, 36.715)[2]  # nearest point: same latitude on the edge
    assert abs(dist[0] - expected) < 1.0
    assert 850 < dist[0] < 920  # ~893 m: 0.01° of longitude at 36.7°N, not "0.01"


def test_nearest_far_away_point_uses_geodesic_distance(snap) -> None:  # type: ignore[no-untyped-def]
    # Swapped coordinates: lon=36.7, lat=... lands in East Africa, thousands of km away.
    idx, dist = snap.grids.index.nearest(36.71, 19.16)
    assert idx[0] >= 0
    direct = GEOD.inv(36.71, 19.16, 119.10, 36.70)[2]
    assert abs(dist[0] - direct) / direct < 0.02


def test_bbox_query(snap) -> None:  # type: ignore[no-untyped-def]
    hit = snap.grids.index.bbox(119.101, 36.711, 119.102, 36.712)
    assert list(snap.grids.codes[hit]) == [f"{BASE}001"]
    assert len(snap.grids.index.bbox(120.0, 37.0, 120.1, 37.1)) == 0


def test_area_in_square_metres(snap) -> None:  # type: ignore[no-untyped-def]
    ref = abs(
        GEOD.polygon_area_perimeter([119.10, 119.11, 119.11, 119.10], [36.71, 36.71, 36.72, 36.72])[
            0
        ]
    )
    assert abs(snap.grids.index.area_m2[0] - ref) / ref < 1e-3  # ~0.99 km², not 1e-4 "degrees²"


def test_point_index_nearest_and_within_against_brute_force() -> None:
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(7)
    lon = rng.uniform(119.0, 119.3, 500)
    lat = rng.uniform(36.6, 36.8, 500)
    pts = gpd.GeoDataFrame(
        {"code": [f"XLP-370705-{i:04d}" for i in range(500)]},
        geometry=shapely.points(lon, lat),
        crs=4326,
    )
    snap = build_snapshot(
        {LayerName.grids: squares(), LayerName.stalls: pts}, name="t", version="1"
    )
    layer = snap.stalls
    q = (119.15, 36.7)
    ref = GEOD.inv(np.full(500, q[0]), np.full(500, q[1]), layer.index.lon, layer.index.lat)[2]
    order = np.argsort(ref, kind="stable")
    idx, dist = layer.index.nearest(*q, k=10)
    assert list(idx) == list(order[:10])
    assert np.allclose(dist, ref[order[:10]], atol=0.01)
    mask = np.zeros(500, dtype=bool)
    mask[::3] = True
    idx, _ = layer.index.nearest(*q, k=5, mask=mask)
    assert list(idx) == [i for i in order if mask[i]][:5]
    idx, dist = layer.index.within(*q, 2000.0)
    assert set(idx) == set(np.flatnonzero(ref <= 2000.0))
    assert np.all(np.diff(dist) >= 0)
    idx, dist = layer.index.nearest(*q, k=50, max_distance_m=1500.0)
    assert set(idx) == set(order[:50][ref[order[:50]] <= 1500.0])
