"""Grid and point indexes on hand-worked geometry; distances checked with pyproj.Geod; the cell
lookup table against GEOS ``covers`` of every point by every polygon (smallest index wins)."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_service.core.crs import MetricProjection
from geo_service.core.index import (
    LOOKUP_MIN_POINTS,
    MAX_CELLS,
    NOTHING,
    CellTable,
    PolygonIndex,
)
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


# --- the cell lookup table ---------------------------------------------------------------------


def brute_force(geoms: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> list[int]:
    """GEOS ``covers`` of every point by every polygon; the smallest index wins, -1 if none."""
    import shapely

    pts = shapely.points(np.nan_to_num(lon, nan=1e9), np.nan_to_num(lat, nan=1e9))
    hit = shapely.covers(geoms[None, :], pts[:, None])
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1).tolist()


def tricky_polygons() -> np.ndarray:
    """A 4x3 lattice of squares, a square with a hole, a two-part multipolygon, and triangles
    overlapping the lattice (overlaps: the smallest index must win there too)."""
    import shapely

    lattice = squares(n_cols=4, n_rows=3, size=0.004).geometry.to_numpy()
    holed = shapely.Polygon(
        [(119.12, 36.70), (119.13, 36.70), (119.13, 36.71), (119.12, 36.71)],
        [[(119.123, 36.703), (119.127, 36.703), (119.127, 36.707), (119.123, 36.707)]],
    )
    multi = shapely.MultiPolygon(
        [shapely.box(119.09, 36.69, 119.095, 36.695), shapely.box(119.131, 36.711, 119.135, 36.715)]
    )
    triangles = [
        shapely.Polygon([(119.101, 36.701), (119.109, 36.703), (119.104, 36.711)]),
        shapely.Polygon([(119.11, 36.70), (119.122, 36.7055), (119.111, 36.712)]),
    ]
    return np.array([*triangles[:1], *lattice, holed, multi, triangles[1]], dtype=object)


def probe_points(geoms: np.ndarray, table: CellTable, rng: np.random.Generator, n: int):  # type: ignore[no-untyped-def]
    """Random points, every vertex, edge midpoints, points on cell edges and cell corners,
    outside the lattice, NaN and infinity."""
    import shapely

    b = shapely.total_bounds(geoms)
    w, h = b[2] - b[0], b[3] - b[1]
    lon = rng.uniform(b[0] - 0.1 * w, b[2] + 0.1 * w, n)
    lat = rng.uniform(b[1] - 0.1 * h, b[3] + 0.1 * h, n)
    v = shapely.get_coordinates(geoms)
    mid = (v[:-1] + v[1:]) / 2
    i = rng.integers(0, table.nx + 1, 300)
    j = rng.integers(0, table.ny + 1, 300)
    cx, cy = table.x0 + i * table.dx, table.y0 + j * table.dy
    inner_x, inner_y = rng.uniform(b[0], b[2], 300), rng.uniform(b[1], b[3], 300)
    odd = np.array([[np.nan, 36.7], [119.1, np.nan], [np.inf, 36.7], [0.0, 0.0], [b[2], b[3]]])
    lon = np.concatenate([lon, v[:, 0], mid[:, 0], cx, cx, inner_x, odd[:, 0]])
    lat = np.concatenate([lat, v[:, 1], mid[:, 1], cy, inner_y, cy, odd[:, 1]])
    return lon, lat


@pytest.mark.parametrize(("per_grid", "max_cells"), [(8.0, MAX_CELLS), (2.5, MAX_CELLS), (8.0, 60)])
def test_cell_table_equals_geos_covers(per_grid: float, max_cells: int) -> None:
    geoms = tricky_polygons()
    index = PolygonIndex(geoms, MetricProjection(4549))
    table = CellTable.build(index.geoms, index.locate_tree, per_grid, max_cells)
    assert table.nx * table.ny <= max(max_cells, 16)
    lon, lat = probe_points(geoms, table, np.random.default_rng(3), 3000)
    ref = brute_force(geoms, lon, lat)
    assert table.locate(index.geoms, lon, lat).tolist() == ref
    one = [
        table.locate_point(index.geoms, x, y)
        for x, y in zip(lon.tolist(), lat.tolist(), strict=True)
    ]
    assert one == ref
    assert 0 < table.n_mixed < table.nx * table.ny
    if max_cells == MAX_CELLS:  # lookups answer points inside grids, not only exact tests
        assert (table.cells >= 0).any() and (table.cells == NOTHING).any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cols=st.integers(1, 5),
    rows=st.integers(1, 5),
    size=st.sampled_from([0.01, 0.0013, 0.0031]),
    per_grid=st.floats(0.5, 12.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_cell_table_random_layouts(
    cols: int, rows: int, size: float, per_grid: float, seed: int
) -> None:
    import shapely

    rng = np.random.default_rng(seed)
    lattice = squares(n_cols=cols, n_rows=rows, size=size).geometry.to_numpy()
    b = shapely.total_bounds(lattice)
    extra = [shapely.Polygon(rng.uniform(b[:2], b[2:], (3, 2))) for _ in range(rng.integers(0, 3))]
    geoms = np.array([*lattice, *extra], dtype=object)[rng.permutation(len(lattice) + len(extra))]
    index = PolygonIndex(geoms, MetricProjection(4549))
    table = CellTable.build(index.geoms, index.locate_tree, per_grid)
    lon, lat = probe_points(geoms, table, rng, 400)
    assert table.locate(index.geoms, lon, lat).tolist() == brute_force(geoms, lon, lat)


def test_bulk_locate_builds_the_table_once_in_the_background() -> None:
    geoms = squares(n_cols=30, n_rows=30, size=0.002).geometry.to_numpy()
    index = PolygonIndex(geoms, MetricProjection(4549))
    rng = np.random.default_rng(5)
    lon = rng.uniform(119.09, 119.17, LOOKUP_MIN_POINTS)
    lat = rng.uniform(36.69, 36.77, LOOKUP_MIN_POINTS)
    small = index.locate(lon[:100], lat[:100])
    assert index._cells is None and not index._cells_started  # a small batch: the tree alone
    ref = index.locate_tree(lon, lat)
    assert index.locate(lon, lat).tolist() == ref.tolist()  # starts building, in a thread
    assert index._cells_started
    table = index.cell_table()  # waits for that build
    assert table is not None and index.cell_table() is table  # built once
    assert index.locate(lon, lat).tolist() == ref.tolist()  # now through the table
    assert index.locate(lon[:100], lat[:100]).tolist() == small.tolist()
    assert (ref >= 0).sum() > LOOKUP_MIN_POINTS // 2 and (ref < 0).any()


def test_cell_table_built_in_chunks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A million grids are built a chunk of segments and polygons at a time: the same table."""
    import geo_service.core.index as index_module

    geoms = tricky_polygons()
    index = PolygonIndex(geoms, MetricProjection(4549))
    whole = CellTable.build(index.geoms, index.locate_tree)
    monkeypatch.setattr(index_module, "CHUNK", 5)
    chunked = CellTable.build(index.geoms, index.locate_tree)
    assert (chunked.cells == whole.cells).all()
    assert (chunked.indptr == whole.indptr).all()
    assert (chunked.candidates == whole.candidates).all()
