"""Coverage engine: hand-worked geometry, edge cases, and PostGIS on the default dataset."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely

from geo_service.analysis.coverage import (
    DISC_SEGMENTS,
    CoverageInputError,
    check_point,
    compute_coverage,
    disc_error_m,
    discs,
    grid_cover,
)
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, SNAP_M, gap_pieces
from geo_service.core.crs import geodesic_distance_m
from geo_service.core.schema import LEVELS
from geo_service.core.snapshot import Snapshot
from tests import gap_city
from tests.coverage_ref import load_snapshot, reference_coverage, reference_gap_pieces
from tests.handmade_city import Site, Square, build, to_lonlat

TOLERANCE = 0.005  # of each unit's area (issue 4)


def segment_area(r: float, d: float) -> float:
    """Area of the part of a disc of radius r beyond a line at distance d from its centre."""
    return r * r * math.acos(d / r) - d * math.sqrt(r * r - d * d)


def edge_bound(radius: float, arc_length: float) -> float:
    """Largest area error of the disc polygon along an arc: arc length × the largest deviation
    of the polygon from the circle (the polygon is equal-area, so errors mostly cancel)."""
    out, inside = disc_error_m(radius)
    return arc_length * max(out, -inside)


# --- the disc polygon ------------------------------------------------------------------------


def test_disc_polygon_has_the_circle_area_and_hugs_it() -> None:
    r = 1000.0
    d = discs(np.array([0.0]), np.array([0.0]), r)[0]
    assert shapely.area(d) == pytest.approx(math.pi * r * r, rel=1e-12)
    xy = shapely.get_coordinates(d)
    assert len(xy) == DISC_SEGMENTS + 1
    # Vertices just outside, edge midpoints just inside: within 0.2 m of the circle at 1 km.
    vertex = np.hypot(xy[:, 0], xy[:, 1])
    mid = np.hypot((xy[1:, 0] + xy[:-1, 0]) / 2, (xy[1:, 1] + xy[:-1, 1]) / 2)
    out, inside = disc_error_m(r)
    assert vertex.max() - r == pytest.approx(out, abs=1e-9)
    assert mid.min() - r == pytest.approx(inside, abs=1e-9)
    assert 0 < out < 0.21 and -0.11 < inside < 0


# --- hand-worked geometry --------------------------------------------------------------------


def test_one_disc_inside_a_square_covers_pi_r_squared() -> None:
    snap = build([Square(-1000, -1000, 1000, 1000, population=4000)], [Site(0, 0)])
    res = compute_coverage(snap, "stalls", 300)
    area = math.pi * 300**2
    unit = res.units.iloc[0]
    assert unit["area_m2"] == pytest.approx(4e6, rel=1e-9)
    assert unit["covered_m2"] == pytest.approx(area, rel=1e-9)
    assert unit["covered_population"] == pytest.approx(4000 * area / 4e6, rel=1e-9)
    assert res.overall["area_ratio"] == pytest.approx(area / 4e6, rel=1e-9)
    assert res.overall["population_ratio"] == pytest.approx(area / 4e6, rel=1e-9)


def test_disc_on_a_shared_corner_gives_each_grid_a_quarter() -> None:
    squares = [
        Square(-500, -500, 0, 0, 100),
        Square(0, -500, 500, 0, 100),
        Square(-500, 0, 0, 500, 100),
        Square(0, 0, 500, 500, 100),
    ]
    res = compute_coverage(build(squares, [Site(0, 0)]), "stalls", 200)
    quarter = math.pi * 200**2 / 4
    np.testing.assert_allclose(res.units["covered_m2"], quarter, rtol=1e-9)
    np.testing.assert_allclose(res.units["covered_population"], 100 * quarter / 250_000, rtol=1e-9)


def test_disc_crossing_a_grid_edge_off_centre() -> None:
    # Centre 100 m west of the grid: the grid gets the circular segment beyond x = 0.
    r, d = 400.0, 100.0
    snap = build([Square(0, -1000, 1000, 1000)], [Site(-d, 0)])
    got = compute_coverage(snap, "stalls", r).units["covered_m2"].iloc[0]
    want = segment_area(r, d)
    assert abs(got - want) <= edge_bound(r, 2 * r * math.acos(d / r))
    assert abs(got - want) / 2e6 < 1e-4


def test_overlapping_discs_are_counted_once() -> None:
    r, d = 300.0, 300.0
    snap = build([Square(-2000, -2000, 2000, 2000)], [Site(-d / 2, 0), Site(d / 2, 0)])
    got = compute_coverage(snap, "stalls", r).overall["covered_m2"]
    lens = 2 * r * r * math.acos(d / (2 * r)) - (d / 2) * math.sqrt(4 * r * r - d * d)
    want = 2 * math.pi * r * r - lens
    assert abs(got - want) <= edge_bound(r, 4 * math.pi * r)
    assert got == pytest.approx(want, rel=2e-4)


def test_overlapping_discs_across_two_grids() -> None:
    # Two discs straddling the edge x = 0, overlapping: each grid holds half of the union.
    r = 300.0
    squares = [Square(-1000, -1000, 0, 1000), Square(0, -1000, 1000, 1000)]
    snap = build(squares, [Site(0, -100), Site(0, 100)])
    units = compute_coverage(snap, "stalls", r).units
    union = 2 * math.pi * r * r - (
        2 * r * r * math.acos(200 / (2 * r)) - 100 * math.sqrt(4 * r * r - 200**2)
    )
    np.testing.assert_allclose(units["covered_m2"], union / 2, rtol=2e-4)
    assert units["covered_m2"].sum() == pytest.approx(union, rel=2e-4)


def test_disc_wholly_outside_covers_nothing() -> None:
    squares = [Square(0, 0, 500, 500, 300)]
    res = compute_coverage(build(squares, [Site(5000, 5000)]), "stalls", 1000)
    assert res.overall["covered_m2"] == 0
    assert res.overall["covered_population"] == 0
    assert res.covered.is_empty
    assert len(res.gaps) == 1
    assert res.gaps["area_m2"].iloc[0] == pytest.approx(250_000, rel=1e-9)
    assert res.gaps["population"].iloc[0] == pytest.approx(300, rel=1e-9)


def test_huge_radius_covers_everything() -> None:
    squares = [Square(0, 0, 500, 500, 10), Square(500, 0, 1000, 500, 20)]
    snap = build(squares, [Site(30_000, 0)])
    res = compute_coverage(snap, "stalls", 50_000)
    assert res.overall["area_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert res.overall["population_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert len(res.gaps) == 0
    pieces = gap_pieces(snap, res.grid)
    assert len(pieces.frame) == 0 and pieces.dropped == 0
    assert list(pieces.frame.columns) == PIECE_COLUMNS


@pytest.mark.parametrize("radius", [0, -1, -1000, math.nan, math.inf])
def test_bad_radius_is_refused(radius: float) -> None:
    snap = build([Square(0, 0, 100, 100)], [Site(0, 0)])
    with pytest.raises(CoverageInputError) as exc:
        compute_coverage(snap, "stalls", radius)
    assert exc.value.field == "radius_m"


def test_empty_layer_is_zero_coverage_not_an_error() -> None:
    snap = build([Square(0, 0, 400, 400, 50)], [Site(200, 200)], clusters=[])
    res = compute_coverage(snap, "vendor_clusters", 1000, "community")
    assert res.overall["covered_m2"] == 0
    assert res.overall["area_ratio"] == 0
    assert res.units["covered_population"].tolist() == [0.0]
    assert res.gaps["area_m2"].sum() == pytest.approx(160_000, rel=1e-9)


def test_units_sum_their_grids() -> None:
    squares = [
        Square(0, -500, 500, 500, 100, community=1),
        Square(500, -500, 1000, 500, 300, community=1),
        Square(1000, -500, 1500, 500, 700, community=2),
    ]
    snap = build(squares, [Site(500, 0), Site(1500, 0)])
    grids = compute_coverage(snap, "stalls", 300, "grid").units
    comm = compute_coverage(snap, "stalls", 300, "community").units
    half = math.pi * 300**2 / 2
    np.testing.assert_allclose(grids["covered_m2"], [half, half, half], rtol=2e-4)
    np.testing.assert_allclose(
        grids["covered_population"], np.array([100, 300, 700]) * half / 500_000, rtol=2e-4
    )
    assert comm["code"].tolist() == ["370705001001", "370705001002"]
    np.testing.assert_allclose(comm["area_m2"], [1_000_000, 500_000], rtol=1e-9)
    np.testing.assert_allclose(comm["covered_m2"], [2 * half, half], rtol=2e-4)
    np.testing.assert_allclose(comm["population_ratio"], [half / 500_000] * 2, rtol=2e-4)


def test_service_filter_and_active_only() -> None:
    squares = [Square(-2000, -2000, 2000, 2000)]
    stalls = [
        Site(-1000, 0, ("修鞋",)),
        Site(1000, 0, ("修车", "修锁配钥匙")),
        Site(0, 1000, ("修鞋", "修车"), status="suspended"),
    ]
    snap = build(squares, stalls)
    disc = math.pi * 200**2
    assert compute_coverage(snap, "stalls", 200).overall["covered_m2"] == pytest.approx(3 * disc)
    shoes = compute_coverage(snap, "stalls", 200, service="修鞋")
    assert shoes.overall["covered_m2"] == pytest.approx(2 * disc)
    active = compute_coverage(snap, "stalls", 200, service="修鞋", active_only=True)
    assert active.overall["covered_m2"] == pytest.approx(disc)
    with pytest.raises(CoverageInputError, match="service"):
        compute_coverage(snap, "stalls", 200, service="理发")
    with pytest.raises(CoverageInputError, match="stalls layer only"):
        compute_coverage(snap, "vendor_clusters", 200, service="修鞋")
    with pytest.raises(CoverageInputError) as exc:
        compute_coverage(snap, "grids", 200)
    assert exc.value.field == "layer"
    with pytest.raises(CoverageInputError) as exc:
        compute_coverage(snap, "stalls", 200, by="province")
    assert exc.value.field == "by"


def test_check_point_uses_geodesic_metres() -> None:
    snap = build([Square(-2000, -2000, 2000, 2000)], [Site(0, 0), Site(600, 0)])
    lon, lat = to_lonlat(250, 0)
    res = check_point(snap, "stalls", 300, lon, lat)
    assert res.covered
    want = geodesic_distance_m(lon, lat, snap.stalls.index.lon, snap.stalls.index.lat)
    assert res.within.tolist() == [0]  # 250 m and 350 m: only the first within 300
    assert res.distance_m[0] == pytest.approx(float(want[0]), abs=1e-6)
    far = check_point(snap, "stalls", 100, *to_lonlat(-1500, 0))
    assert not far.covered and far.nearest == 0
    assert far.nearest_m == pytest.approx(1500, rel=1e-3)


def test_results_are_cached_per_snapshot_and_parameters() -> None:
    snap = build([Square(0, 0, 500, 500)], [Site(0, 0)])
    a = grid_cover(snap, "stalls", 300)
    assert grid_cover(snap, "stalls", 300.0) is a
    assert grid_cover(snap, "stalls", 301) is not a
    other = build([Square(0, 0, 500, 500)], [Site(0, 0)])
    assert grid_cover(other, "stalls", 300) is not a


# --- the default dataset against PostGIS -----------------------------------------------------


CASES = [("stalls", 1000.0, None), ("vendor_clusters", 500.0, None), ("stalls", 300.0, "修鞋")]


@pytest.mark.postgis
@pytest.mark.parametrize(("layer", "radius", "service"), CASES)
def test_every_unit_agrees_with_postgis(
    pg: psycopg.Connection, snapshot: Snapshot, layer: str, radius: float, service: str | None
) -> None:
    points = snapshot.points(layer)
    keep = np.ones(len(points), dtype=bool)
    if service:
        keep = np.array([service in s for s in points.frame["services"]])
    grids = snapshot.grids
    load_snapshot(pg, snapshot, layer, keep)
    ref = reference_coverage(pg, radius)
    per_grid = pd.DataFrame(
        {
            "area": [ref[c][0] for c in grids.codes],
            "covered": [ref[c][1] for c in grids.codes],
            "population": grids.frame["population"].to_numpy(dtype=float),
        }
    )
    share = per_grid["covered"].sum() / per_grid["area"].sum()
    assert 0.05 < share < 0.98  # a real test: much covered, much not
    for level, (code_col, _) in LEVELS.items():
        res = compute_coverage(snapshot, layer, radius, level, service)
        frame = per_grid.assign(code=grids.frame[code_col].to_numpy())
        frame["covered_population"] = frame["population"] * frame["covered"] / frame["area"]
        want = frame.groupby("code", sort=True).sum(numeric_only=True)
        got = res.units.set_index("code")
        assert got.index.tolist() == want.index.tolist()
        np.testing.assert_allclose(got["area_m2"], want["area"], rtol=1e-9)
        err = np.abs(got["covered_m2"].to_numpy() - want["covered"].to_numpy())
        assert (err <= TOLERANCE * want["area"].to_numpy()).all(), (level, err.max())
        pop_err = np.abs(got["covered_population"] - want["covered_population"])
        assert (pop_err <= TOLERANCE * want["population"] + 1e-9).all()
    total = per_grid["covered"].sum()
    assert res.overall["covered_m2"] == pytest.approx(total, rel=1e-4)


@pytest.mark.postgis
def test_gaps_agree_with_postgis(pg: psycopg.Connection, snapshot: Snapshot) -> None:
    layer, radius = "vendor_clusters", 1000.0
    load_snapshot(pg, snapshot, layer)
    (uncovered,) = pg.execute(
        f"""SELECT ST_Area(ST_Difference(
                (SELECT ST_Union(geom) FROM cov_grids),
                (SELECT ST_Union(ST_Buffer(geom, {radius}, 'quad_segs=64')) FROM cov_points)))"""
    ).fetchone()  # type: ignore[misc]
    res = compute_coverage(snapshot, layer, radius)
    gaps = res.gaps
    assert len(gaps) > 0
    assert gaps["area_m2"].sum() == pytest.approx(uncovered, rel=1e-3)
    assert gaps["population"].sum() == pytest.approx(
        res.overall["population"] - res.overall["covered_population"], rel=1e-6
    )
    assert shapely.is_valid(gaps.geometry.to_numpy()).all() and shapely.is_valid(res.covered)
    # Gaps and the covered area do not overlap and together make the managed area.
    gap_union = shapely.union_all(gaps.geometry.to_numpy())
    metric_gaps = snapshot.projection.project(gap_union)
    metric_covered = snapshot.projection.project(res.covered)
    # (both went to lon/lat and back: a few m² of rounding along ~1,000 km of edges)
    assert shapely.area(shapely.intersection(metric_gaps, metric_covered)) < 20.0
    assert shapely.area(metric_covered) == pytest.approx(res.overall["covered_m2"], rel=1e-6)


# --- gap pieces ----------------------------------------------------------------------------------

PIECE_COLUMNS = [
    "gap_id",
    "grid_code",
    "community_code",
    "street_code",
    "district_code",
    "grid_name",
    "community_name",
    "street_name",
    "area_m2",
    "population",
    "nearest_m",
    "geometry",
]


def test_gap_pieces_are_hand_worked() -> None:
    """Active stall only (the default everywhere a user asks): the strip is cut in two, the
    block is whole, the thin strip's two ends are slivers; see tests/gap_city.py."""
    g = gap_city
    snap = g.city()
    res = compute_coverage(snap, "stalls", g.R, active_only=True)
    pieces = gap_pieces(snap, res.grid)
    frame = pieces.frame
    assert list(frame.columns) == PIECE_COLUMNS
    assert frame.crs.to_epsg() == 4326
    # Sorted by population: strip west (529.6), block (500), strip east (449.6).
    assert frame["gap_id"].tolist() == ["G0001", "G0002", "G0003"]
    codes = snap.grids.codes
    assert frame["grid_code"].tolist() == [codes[0], codes[1], codes[0]]
    arc = edge_bound(g.R, 2 * math.pi * g.R)
    want_area = [g.STRIP_WEST, g.BLOCK.area, g.STRIP_EAST]
    np.testing.assert_allclose(frame["area_m2"], want_area, atol=arc)
    want_pop = [1200 * g.STRIP_WEST / g.STRIP.area, 500, 1200 * g.STRIP_EAST / g.STRIP.area]
    np.testing.assert_allclose(frame["population"], want_pop, atol=1200 * arc / g.STRIP.area)
    out, inside = disc_error_m(g.R)
    for near in frame["nearest_m"].iloc[[0, 2]]:  # on the disc's edge
        assert g.R + inside - SNAP_M <= near <= g.R + out + SNAP_M
    assert frame["nearest_m"].iloc[1] == pytest.approx(g.BLOCK_NEAREST, abs=1e-3)
    assert frame["community_code"].tolist() == [c[:12] for c in frame["grid_code"]]
    assert frame["grid_name"].tolist() == ["网格1", "网格2", "网格1"]
    # The thin strip's two ends are slivers: dropped, counted, with their area and people.
    assert pieces.dropped == 2 and pieces.min_area_m2 == DEFAULT_MIN_GAP_M2
    ends = g.THIN_WEST + g.THIN_EAST
    assert pieces.dropped_area_m2 == pytest.approx(ends, abs=edge_bound(g.R, 20))
    assert pieces.dropped_population == pytest.approx(40 * ends / g.THIN.area, abs=0.01)
    # Pieces and slivers hold every uncovered person and square metre.
    o = res.overall
    uncovered = o["population"] - o["covered_population"]
    assert frame["population"].sum() + pieces.dropped_population == pytest.approx(uncovered)
    # (cut pieces are snapped to 1 mm: at most half a millimetre along ~9 km of edges)
    assert frame["area_m2"].sum() + pieces.dropped_area_m2 == pytest.approx(
        o["area_m2"] - o["covered_m2"], abs=9000 * SNAP_M / 2
    )
    # Each piece lies in its grid, and the two strip pieces lie either side of the stall.
    metric = snap.projection.project(frame.geometry.to_numpy())
    grids = snap.grids.index.metric[[snap.grids.position[c] for c in frame["grid_code"]]]
    inter = shapely.area(shapely.intersection(metric, grids))
    np.testing.assert_allclose(inter, shapely.area(metric), rtol=1e-6)
    x0 = float(
        shapely.get_x(
            shapely.centroid(snap.projection.project(snap.stalls.frame.geometry.to_numpy()[:1]))
        )[0]
    )
    west, east = shapely.bounds(metric[[0, 2]])
    assert west[2] < x0 < east[0]


def test_a_suspended_stall_changes_coverage_and_gaps() -> None:
    """Counting the suspended stall covers all of the block but its four corners (hand-worked
    area), which become slivers: the block leaves the list of pieces."""
    g = gap_city
    snap = g.city()
    active = compute_coverage(snap, "stalls", g.R, active_only=True)
    every = compute_coverage(snap, "stalls", g.R, active_only=False)
    assert len(active.grid.facilities) == 1 and len(every.grid.facilities) == 2
    gained = every.overall["covered_m2"] - active.overall["covered_m2"]
    assert gained == pytest.approx(
        g.BLOCK_COVERED_BY_SUSPENDED, abs=edge_bound(g.R, 2 * math.pi * g.R)
    )
    assert every.overall["covered_population"] - active.overall["covered_population"] == (
        pytest.approx(500 * g.BLOCK_COVERED_BY_SUSPENDED / g.BLOCK.area, abs=0.1)
    )
    pieces = gap_pieces(snap, every.grid)
    assert pieces.frame["grid_code"].tolist() == [snap.grids.codes[0]] * 2
    assert pieces.dropped == 2 + 4
    corners = pieces.dropped_area_m2 - (g.THIN_WEST + g.THIN_EAST)
    assert corners == pytest.approx(4 * g.BLOCK_CORNER, abs=edge_bound(g.R, 2 * math.pi * g.R))
    # With no threshold the corners are listed, each ~R from the suspended stall.
    every_piece = gap_pieces(snap, every.grid, 0).frame
    block = every_piece[every_piece["grid_code"] == snap.grids.codes[1]]
    assert len(block) == 4
    np.testing.assert_allclose(block["area_m2"], g.BLOCK_CORNER, atol=edge_bound(g.R, 200))
    np.testing.assert_allclose(block["nearest_m"], g.R, atol=max(disc_error_m(g.R), key=abs))


def test_gap_pieces_threshold_and_limits() -> None:
    snap = gap_city.city()
    cover = grid_cover(snap, "stalls", gap_city.R, active_only=True)
    assert len(gap_pieces(snap, cover, 0).frame) == 5  # every piece, slivers too
    big = gap_pieces(snap, cover, 480_000)
    assert big.frame["gap_id"].tolist() == ["G0001"] and big.dropped == 4
    assert gap_pieces(snap, cover) is gap_pieces(snap, cover, DEFAULT_MIN_GAP_M2)  # cached
    for bad in (-1, math.nan, math.inf, 1e9):
        with pytest.raises(CoverageInputError) as exc:
            gap_pieces(snap, cover, bad)
        assert exc.value.field == "min_area_m2"


def test_no_facility_leaves_whole_grids_with_no_distance() -> None:
    snap = build([Square(0, 0, 400, 400, 60)], [Site(200, 200)], clusters=[])
    pieces = gap_pieces(snap, grid_cover(snap, "vendor_clusters", 300))
    assert pieces.frame["area_m2"].tolist() == pytest.approx([160_000])
    assert pieces.frame["population"].tolist() == [60]
    assert math.isnan(pieces.frame["nearest_m"].iloc[0])


@pytest.mark.postgis
def test_gap_pieces_agree_with_postgis(pg: psycopg.Connection, snapshot: Snapshot) -> None:
    """Active stalls at 500 m on the default data: every piece matches a part of PostGIS'
    ST_Dump(ST_Difference(grid, ST_Union(ST_Buffer(...)))) in EPSG:4549, in area (within the
    two disc polygons' difference along its edge) and in distance to the nearest stall."""
    layer, radius = "stalls", 500.0
    active = snapshot.stalls.frame["status"].to_numpy() == "active"
    assert 0 < active.sum() < len(active)  # the suspended ones must not count
    load_snapshot(pg, snapshot, layer, active, prefix="gap")
    # (parts under 10 m² are overlay crumbs along grid edges, on either side)
    ref = [r for r in reference_gap_pieces(pg, radius, prefix="gap") if r[1] >= 10.0]
    res = compute_coverage(snapshot, layer, radius, active_only=True)
    pieces = gap_pieces(snapshot, res.grid)
    frame = pieces.frame
    assert len(frame) > 500 and pieces.dropped > 0
    assert frame["population"].is_monotonic_decreasing
    metric = snapshot.projection.project(frame.geometry.to_numpy())
    tree = shapely.STRtree(metric)
    ref_pt = np.array([r[3] for r in ref], dtype=object)
    ref_area = np.array([r[1] for r in ref])
    ref_perim = np.array([r[2] for r in ref])
    ref_near = np.array([r[4] for r in ref])
    ref_code = np.array([r[0] for r in ref], dtype=object)
    tol = 0.2 * ref_perim + 1.0  # both discs stay within 0.2 m of the circle at 500 m
    found, piece = tree.query(ref_pt, predicate="within")
    # Every PostGIS part clearly above the threshold is one of ours, in the same grid.
    must = np.flatnonzero(ref_area >= DEFAULT_MIN_GAP_M2 + tol)
    assert set(must) <= set(found.tolist())
    assert (frame["grid_code"].to_numpy()[piece] == ref_code[found]).all()
    assert len(set(piece.tolist())) == len(piece) == len(frame)  # one part each, and all of ours
    np.testing.assert_array_less(
        np.abs(frame["area_m2"].to_numpy()[piece] - ref_area[found]), tol[found]
    )
    np.testing.assert_allclose(frame["nearest_m"].to_numpy()[piece], ref_near[found], atol=0.25)
    grid_pop = snapshot.grids.frame.set_index("code")["population"]
    grid_area = pd.Series(snapshot.grids.index.area_m2, index=snapshot.grids.codes)
    want_pop = (
        grid_pop[ref_code[found]].to_numpy()
        * ref_area[found]
        / grid_area[ref_code[found]].to_numpy()
    )
    np.testing.assert_allclose(frame["population"].to_numpy()[piece], want_pop, rtol=2e-3, atol=0.5)
    assert frame["area_m2"].sum() + pieces.dropped_area_m2 == pytest.approx(
        ref_area.sum(), rel=1e-4
    )
