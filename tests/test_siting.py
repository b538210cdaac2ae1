"""Siting (MCLP): a hand-made case whose optimum is known and beats greedy, exclusions, the
default dataset against brute force over the same candidates, and suggested sites named and the
model's estimate told apart from the exact gain."""

from __future__ import annotations

import itertools

import numpy as np
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.analysis.coverage import CoverageInputError
from geo_service.analysis.siting import optimize_sites
from geo_service.analysis.whatif import what_if
from geo_service.core.snapshot import Snapshot
from tests.handmade_city import Square, build, to_lonlat
from tests.placeref import compass_point, nearest_landmark, postgis_units


def block(cx: float, cy: float, pop: int, community: int = 1) -> Square:
    return Square(cx - 50, cy - 50, cx + 50, cy + 50, pop, community)


# Four 100 m blocks of 300 people at the corners of an 800 m square, and 50 people just north
# of the top edge. T (top middle) reaches A, B and E: 650, the best single site. L and R (left
# and right middles) reach A+C and B+D: 600 each. With p = 2 greedy takes T then L (950);
# the optimum is L + R = 1,200. At 500 m every block is either wholly in reach or out of it.
A, B, C, D, E = (0, 0), (800, 0), (0, -800), (800, -800), (400, 300)
T, L, R = (400, 0), (0, -400), (800, -400)
RADIUS = 500.0


@pytest.fixture(scope="module")
def trap() -> Snapshot:
    squares = [block(*A, 300), block(*B, 300), block(*C, 300), block(*D, 300), block(*E, 50)]
    return build(squares)


def lonlat(*sites: tuple[float, float]) -> tuple[list[float], list[float]]:
    pts = [to_lonlat(*s) for s in sites]
    return [p[0] for p in pts], [p[1] for p in pts]


def test_the_hand_made_optimum_is_found(trap: Snapshot) -> None:
    # The premise: T alone is best, and greedy would go wrong.
    alone = {
        name: what_if(trap, "stalls", RADIUS, *lonlat(site)).gain["covered_population"]
        for name, site in (("T", T), ("L", L), ("R", R))
    }
    assert alone == pytest.approx({"T": 650, "L": 600, "R": 600})
    res = optimize_sites(trap, "stalls", RADIUS, 2, candidates=lonlat(T, L, R))
    assert res.status == "Optimal"
    assert sorted(res.sites["candidate"]) == ["candidate 1", "candidate 2"]  # L and R
    assert res.result.gain["covered_population"] == pytest.approx(1200, rel=1e-9)
    assert res.estimated_gain == pytest.approx(1200, rel=1e-9)
    assert res.sites["gain_alone"].tolist() == pytest.approx([600, 600])
    one = optimize_sites(trap, "stalls", RADIUS, 1, candidates=lonlat(T, L, R))
    assert one.sites["candidate"].tolist() == ["candidate 0"]


def test_existing_coverage_is_not_paid_for_twice() -> None:
    # An existing stall at L already covers A and C.
    squares = [block(*A, 300), block(*B, 300), block(*C, 300), block(*D, 300), block(*E, 50)]
    from tests.handmade_city import Site

    snap = build(squares, [Site(*L)])
    res = optimize_sites(snap, "stalls", RADIUS, 1, candidates=lonlat(T, L, R))
    # T newly covers B + E = 350; R newly covers B + D = 600; L covers nothing new.
    assert res.sites["candidate"].tolist() == ["candidate 2"]
    assert res.result.gain["covered_population"] == pytest.approx(600, rel=1e-9)


def test_default_candidates_and_exclusions() -> None:
    squares = [
        Square(0, 0, 200, 200, 900, community=1),
        Square(5000, 0, 5200, 200, 700, community=2),
        Square(10000, 0, 10200, 200, 400, community=3),
    ]
    snap = build(squares)
    res = optimize_sites(snap, "vendor_clusters", 300, 2)
    assert sorted(res.sites["grid_code"]) == ["370705001001001", "370705001002002"]
    assert res.result.gain["covered_population"] == pytest.approx(1600, rel=1e-9)
    ruled_out = optimize_sites(snap, "vendor_clusters", 300, 2, exclude=["370705001001"])
    assert sorted(ruled_out.sites["grid_code"]) == ["370705001002002", "370705001003003"]
    assert ruled_out.result.gain["covered_population"] == pytest.approx(1100, rel=1e-9)
    lon, lat = to_lonlat(5100, 100)
    area = shapely.box(lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
    fenced = optimize_sites(snap, "vendor_clusters", 300, 2, exclude_area=area)
    assert sorted(fenced.sites["grid_code"]) == ["370705001001001", "370705001003003"]
    with pytest.raises(CoverageInputError) as exc:
        optimize_sites(snap, "vendor_clusters", 300, 2, exclude=["999999"])
    assert exc.value.field == "exclude"


@pytest.mark.parametrize("p", [0, -1, 51, 2.5, True])
def test_bad_p(trap: Snapshot, p: object) -> None:
    with pytest.raises(CoverageInputError) as exc:
        optimize_sites(trap, "stalls", RADIUS, p)  # type: ignore[arg-type]
    assert exc.value.field == "p"


def test_nothing_left_to_cover() -> None:
    snap = build([block(0, 0, 100)])
    res = optimize_sites(snap, "stalls", 50_000, 3, candidates=lonlat((0, 0)))
    res_full = optimize_sites(build([block(0, 0, 0)]), "stalls", 500, 1)
    assert res.result.gain["covered_population"] == pytest.approx(100)
    assert res_full.sites.empty and res_full.result.gain["covered_population"] == 0


def test_default_dataset_matches_brute_force(snapshot: Snapshot) -> None:
    """p = 2 among 12 candidates in the gaps: MCLP on sampled demand must pick a pair whose exact
    gain is within 2% of the best of all 66 pairs, each measured exactly."""
    layer, radius = "vendor_clusters", 1000.0
    from geo_service.analysis.coverage import compute_coverage

    gaps = compute_coverage(snapshot, layer, radius).gaps
    area = shapely.union_all(gaps.geometry.to_numpy()[:6])
    rng = np.random.default_rng(4)
    minx, miny, maxx, maxy = area.bounds
    lon, lat = rng.uniform(minx, maxx, 2000), rng.uniform(miny, maxy, 2000)
    inside = shapely.contains_xy(area, lon, lat)
    lon, lat = lon[inside][:12], lat[inside][:12]
    best = max(
        what_if(snapshot, layer, radius, lon[list(pair)], lat[list(pair)]).gain[
            "covered_population"
        ]
        for pair in itertools.combinations(range(len(lon)), 2)
    )
    res = optimize_sites(snapshot, layer, radius, 2, candidates=(lon, lat))
    assert res.status == "Optimal"
    assert len(res.sites) == 2
    assert best > 1000
    assert res.result.gain["covered_population"] >= 0.98 * best


def test_suggested_sites_are_named_and_the_two_gains_explained(
    client: TestClient, pg: psycopg.Connection
) -> None:
    """Each suggested site: 6-decimal coordinates, the units containing it (PostGIS ST_Covers
    on the raw grids) and its nearest landmark (pyproj.Geod, brute force); the sampled model
    objective is told apart from the exact gain, in the answer and in the OpenAPI schema."""
    body = {"layer": "vendor_clusters", "radius_m": 1000, "p": 2, "exclude": ["370702"]}
    r = client.post("/api/v1/coverage/optimize", json=body)
    assert r.status_code == 200, r.text
    res = r.json()
    sites = res["sites"]
    assert len(sites) == 2
    units = postgis_units(pg, [s["lon"] for s in sites], [s["lat"] for s in sites])
    for site, unit in zip(sites, units, strict=True):
        assert unit is not None and not unit["code"].startswith("370702")
        assert site["grid_code"] == unit["code"] and site["candidate"] == unit["code"]
        assert (site["grid_name"], site["street_name"]) == (unit["name"], unit["street_name"])
        assert site["community_code"] == unit["community_code"]
        for v in (site["lon"], site["lat"]):
            assert v == round(v, 6)
        ref, dist, az = nearest_landmark(site["lon"], site["lat"])
        assert site["landmark"]["code"] == ref["code"]
        assert site["landmark"]["distance_m"] == pytest.approx(dist, abs=0.06)
        assert site["landmark"]["direction"] == compass_point(az)
        assert site["label"].startswith(unit["street_name"] + unit["name"] + "，" + ref["name"])
    exact, est = res["gain"]["covered_population"], res["estimated_gain"]
    assert exact > 0 and est > 0
    assert res["estimate_difference"] == pytest.approx((est - exact) / exact, abs=1e-4)
    zh, en = res["note"]["zh"], res["note"]["en"]
    for text in (zh, en):
        assert f"{exact:,.0f}" in text and f"{est:,.0f}" in text
        assert f"{abs(est - exact) / exact * 100:.1f}%" in text
        assert f"{res['demand_points']:,}" in text
    assert "为准" in zh and "Quote gain.covered_population" in en
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    fields = schema["OptimizeResponse"]["properties"]
    assert "gain.covered_population" in fields["estimated_gain"]["description"]
    assert "note" in fields and "label" in schema["ChosenSite"]["properties"]
