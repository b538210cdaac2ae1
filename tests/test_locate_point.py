"""The one-point paths of the grid index (used by GET locate) keep the bulk paths' rules.

Hand-worked answers on a lattice of 0.01° squares, distances against pyproj.Geod, and the
bulk ``locate``/``nearest`` on random, corner and edge points of a larger lattice.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from geo_service.core.index import PolygonIndex
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, build_snapshot
from tests.citybuilder import BASE, squares

GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def small() -> Snapshot:
    # 2x2 squares of 0.01°: 001 NW, 002 NE, 003 SW, 004 SE; x 119.10-119.12, y 36.70-36.72.
    return build_snapshot({LayerName.grids: squares()}, name="t", version="1")


@pytest.fixture(scope="module")
def lattice() -> Snapshot:
    frame = squares(n_cols=20, n_rows=20, size=0.002)
    return build_snapshot({LayerName.grids: frame}, name="t", version="1")


def code(snap: Snapshot, i: int) -> str | None:
    return str(snap.grids.codes[i]) if i >= 0 else None


HAND_WORKED = [
    (119.105, 36.715, "001"),
    (119.115, 36.705, "004"),
    (119.11, 36.715, "001"),  # edge 001|002
    (119.115, 36.71, "002"),  # edge 002/004
    (119.11, 36.71, "001"),  # corner of all four
    (119.12, 36.70, "004"),  # outer corner
    (119.0999999, 36.705, None),
    (0.0, 0.0, None),
    (float("nan"), 36.705, None),
]


@pytest.mark.parametrize(("lon", "lat", "expected"), HAND_WORKED)
def test_locate_point_hand_worked(
    small: Snapshot, lon: float, lat: float, expected: str | None
) -> None:
    got = code(small, small.grids.index.locate_point(lon, lat))
    assert got == (None if expected is None else f"{BASE}{expected}")


@pytest.fixture(scope="module")
def small_with_table(small: Snapshot) -> PolygonIndex:
    """The same squares in an index of its own whose cell lookup table is built: the one-point
    path then looks the point's cell up, and tests only where a cell meets an edge."""
    index = PolygonIndex(small.grids.index.geoms, small.grids.index.projection)
    assert index.cell_table() is not None
    return index


@pytest.mark.parametrize(("lon", "lat", "expected"), HAND_WORKED)
def test_locate_point_through_the_cell_table(
    small: Snapshot, small_with_table: PolygonIndex, lon: float, lat: float, expected: str | None
) -> None:
    got = code(small, small_with_table.locate_point(lon, lat))
    assert got == (None if expected is None else f"{BASE}{expected}")


def test_nearest_point_is_geodesic_metres(small: Snapshot) -> None:
    j, d = small.grids.index.nearest_point(119.13, 36.715)
    assert code(small, j) == f"{BASE}002"
    assert abs(d - GEOD.inv(119.13, 36.715, 119.12, 36.715)[2]) < 1.0


def test_nearest_point_far_away_falls_back(small: Snapshot) -> None:
    j, d = small.grids.index.nearest_point(36.71, 19.16)  # lat/lon swapped: East Africa
    assert j >= 0
    assert d > 7_000_000
    assert d <= GEOD.inv(36.71, 19.16, 119.10, 36.70)[2] + 1.0


def test_one_point_paths_match_bulk_paths(lattice: Snapshot) -> None:
    index = lattice.grids.index
    rng = np.random.default_rng(2)
    minx, miny, maxx, maxy = lattice.bounds
    lon = rng.uniform(minx - 0.01, maxx + 0.01, 300)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, 300)
    corners = shapely.get_coordinates(index.geoms[rng.choice(len(index), 40, replace=False)])
    mids = (corners[:-1] + corners[1:]) / 2
    lon = np.concatenate([lon, corners[:, 0], mids[:, 0]])
    lat = np.concatenate([lat, corners[:, 1], mids[:, 1]])
    bulk = index.locate(lon, lat)
    one = [index.locate_point(x, y) for x, y in zip(lon.tolist(), lat.tolist(), strict=True)]
    assert one == bulk.tolist()
    assert (bulk >= 0).sum() > 300  # corners and edges are inside, some random points too
    out = bulk < 0
    assert out.any()
    nidx, ndist = index.nearest(lon[out], lat[out])
    for x, y, j, d in zip(lon[out], lat[out], nidx, ndist, strict=True):
        j1, d1 = index.nearest_point(float(x), float(y))
        assert j1 == j
        assert d1 == pytest.approx(d, abs=1e-6)
