"""The planners' HTTP API: /api/v1/coverage, /gaps, /check, /what-if, /optimize."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.crs import from_wgs84
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.web.app import create_app
from tests import gap_city
from tests.handmade_city import Site, Square, build, to_lonlat

URL = "/api/v1/coverage"
GEOD = pyproj.Geod(ellps="WGS84")


def handmade_client(snap: Snapshot, data_dir: Path) -> TestClient:
    """The app on ``snap``, following an empty data folder: nothing there to reload, so the
    hand-made city is served throughout (on data/ it would be swapped for the default data)."""
    settings = Settings(max_radius_m=5000, data_dir=data_dir)
    return TestClient(create_app(settings, SnapshotStore(snap)))


def test_coverage_by_street_is_consistent(client: TestClient, snapshot: Snapshot) -> None:
    r = client.get(URL, params={"layer": "vendor_clusters", "radius_m": 1000, "by": "street"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["layer"] == "vendor_clusters" and body["radius_m"] == 1000 and body["by"] == "street"
    )
    # Active ones only by default (what serves residents today), as counted in the data itself.
    status = snapshot.vendor_clusters.frame["status"]
    assert body["include_inactive"] is False
    assert body["facilities"] == int((status == "active").sum()) < len(status)
    units = body["units"]
    assert len(units) == snapshot.grids.frame["street_code"].nunique()
    assert {
        "code",
        "name",
        "area_m2",
        "covered_m2",
        "area_ratio",
        "population",
        "covered_population",
    } <= set(units[0])
    overall = body["overall"]
    assert sum(u["area_m2"] for u in units) == pytest.approx(overall["area_m2"], abs=len(units))
    assert sum(u["covered_m2"] for u in units) == pytest.approx(
        overall["covered_m2"], abs=len(units)
    )
    assert overall["population"] == snapshot.grids.frame["population"].sum()
    assert overall["area_m2"] == pytest.approx(float(snapshot.grids.index.area_m2.sum()), abs=1)
    for u in units:
        assert 0 <= u["covered_m2"] <= u["area_m2"] + 0.1
        assert u["area_ratio"] == pytest.approx(u["covered_m2"] / u["area_m2"], abs=1e-6)
        assert u["population_ratio"] == pytest.approx(
            u["covered_population"] / u["population"], abs=1e-5
        )
    assert 0 < overall["area_ratio"] < 1


def test_preset_is_the_radius(client: TestClient) -> None:
    a = client.get(URL, params={"layer": "stalls", "preset": 500, "by": "district"}).json()
    b = client.get(URL, params={"layer": "stalls", "radius_m": 500, "by": "district"}).json()
    assert a["radius_m"] == 500 and a["overall"] == b["overall"] and a["units"] == b["units"]
    default = client.get(URL, params={"layer": "stalls", "by": "district"}).json()
    assert default["radius_m"] == 1000
    assert default["overall"]["covered_m2"] > a["overall"]["covered_m2"]


def test_service_filter_narrows_coverage(client: TestClient) -> None:
    q = {"layer": "stalls", "radius_m": 500, "by": "district"}
    everything = client.get(URL, params=q).json()
    shoes = client.get(URL, params={**q, "service": "修鞋"}).json()
    assert shoes["service"] == "修鞋"
    assert shoes["facilities"] < everything["facilities"]
    assert 0 < shoes["overall"]["covered_m2"] < everything["overall"]["covered_m2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"radius_m": 0}, "radius_m"),
        ({"radius_m": -100}, "radius_m"),
        ({"radius_m": 60_000}, "radius_m"),
        ({"radius_m": "nan"}, "radius_m"),
        ({"radius_m": "abc"}, "radius_m"),
        ({"radius_m": 400, "preset": 500}, "radius_m"),
        ({"preset": 700}, "preset"),
        ({"by": "province"}, "by"),
        ({"service": "理发"}, "service"),
        ({"layer": "vendor_clusters", "service": "修鞋"}, "service"),
        ({"layer": "grids"}, "layer"),
    ],
)
def test_bad_parameters_are_4xx(client: TestClient, params: dict, field: str) -> None:
    for path in ("", "/gaps", "/check"):
        q = {"layer": "stalls", **params}
        if path == "/check":  # the only one of the three that takes a point
            q = {"lon": 119.15, "lat": 36.7, **q}
        if path == "/gaps" or path == "/check":
            q.pop("by", None)
            if "by" in params:
                continue
        r = client.get(URL + path, params=q)
        assert r.status_code == 422, (path, params, r.text)
        body = r.json()
        assert field in body["detail"], body
        assert body["errors"][0]["field"] == field


def test_missing_layer_is_4xx(client: TestClient) -> None:
    r = client.get(URL, params={"radius_m": 500})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "layer"


def test_empty_layer_is_zero_coverage(tmp_path: Path) -> None:
    snap = build([Square(0, 0, 500, 500, 100)], [Site(250, 250)], clusters=[])
    with handmade_client(snap, tmp_path) as c:
        body = c.get(URL, params={"layer": "vendor_clusters", "radius_m": 300}).json()
        assert body["facilities"] == 0
        assert body["overall"]["covered_m2"] == 0 and body["overall"]["population_ratio"] == 0
        gaps = c.get(URL + "/gaps", params={"layer": "vendor_clusters", "radius_m": 300}).json()
        assert gaps["features"][0]["properties"]["area_m2"] == pytest.approx(250_000, abs=0.1)
        assert gaps["features"][0]["properties"]["population"] == 100
        check = c.get(
            URL + "/check",
            params={"layer": "vendor_clusters", "radius_m": 300, "lon": 119.1, "lat": 36.7},
        ).json()
        assert check["covered"] is False and check["within"] == [] and check["nearest"] is None


def test_handmade_coverage_over_http(tmp_path: Path) -> None:
    snap = build([Square(-1000, -1000, 1000, 1000, 4000)], [Site(0, 0)])
    with handmade_client(snap, tmp_path) as c:
        body = c.get(URL, params={"layer": "stalls", "radius_m": 300}).json()
    want = math.pi * 300**2
    assert body["units"][0]["covered_m2"] == pytest.approx(want, abs=0.1)
    assert body["units"][0]["covered_population"] == pytest.approx(4000 * want / 4e6, abs=0.1)


def test_gaps_feature_collection(client: TestClient, snapshot: Snapshot) -> None:
    r = client.get(URL + "/gaps", params={"layer": "vendor_clusters", "preset": 1000})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == len(fc["features"]) > 0
    props = [f["properties"] for f in fc["features"]]
    assert [f["id"] for f in fc["features"]] == [p["gap_id"] for p in props]
    assert [p["gap_id"] for p in props] == [f"G{i:04d}" for i in range(1, len(props) + 1)]
    pops = [p["population"] for p in props]
    assert pops == sorted(pops, reverse=True)
    grids = snapshot.grids.frame.set_index("code")
    for p in props[:20]:  # each piece names the one grid it lies in, and that grid's units
        row = grids.loc[p["grid_code"]]
        assert (p["community_code"], p["street_code"], p["district_code"]) == (
            row["community_code"],
            row["street_code"],
            row["district_code"],
        )
        assert (p["grid_name"], p["street_name"]) == (row["name"], row["street_name"])
        assert p["area_m2"] >= fc["min_area_m2"] == 1000
        assert p["nearest_m"] >= 1000 - 0.2  # out of reach of every counted facility
    overall = fc["overall"]
    assert fc["dropped"] > 0 and 0 < fc["dropped_area_m2"] < fc["dropped"] * 1000
    assert sum(pops) + fc["dropped_population"] == pytest.approx(
        overall["population"] - overall["covered_population"], abs=len(props)
    )
    assert sum(p["area_m2"] for p in props) + fc["dropped_area_m2"] == pytest.approx(
        overall["area_m2"] - overall["covered_m2"], rel=1e-5
    )
    everything = client.get(
        URL + "/gaps", params={"layer": "vendor_clusters", "preset": 1000, "min_area_m2": 0}
    ).json()
    assert everything["dropped"] == 0
    assert everything["numberReturned"] == fc["numberReturned"] + fc["dropped"]
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in fc["features"])
    lon, lat = shapely.get_coordinates(
        shapely.from_geojson(json.dumps(fc["features"][0]["geometry"]))
    ).T
    assert lon.min() > 118 and lon.max() < 121 and lat.min() > 36 and lat.max() < 37.5  # WGS84


def test_a_suspended_stall_counts_only_when_asked(tmp_path: Path) -> None:
    """tests/gap_city.py: one active stall and one suspended one; figures worked by hand."""
    g = gap_city
    snap = g.city()
    q = {"layer": "stalls", "radius_m": g.R}
    disc_tol = 2 * math.pi * g.R * 0.1  # the 128-gon strays < 0.1 m from the circle at 300 m
    with handmade_client(snap, tmp_path) as c:
        active = c.get(URL, params={**q, "by": "district"}).json()
        every = c.get(URL, params={**q, "by": "district", "include_inactive": "true"}).json()
        assert (active["include_inactive"], active["facilities"]) == (False, 1)
        assert (every["include_inactive"], every["facilities"]) == (True, 2)
        gained = every["overall"]["covered_m2"] - active["overall"]["covered_m2"]
        assert gained == pytest.approx(g.BLOCK_COVERED_BY_SUSPENDED, abs=disc_tol)

        gaps = c.get(URL + "/gaps", params=q).json()
        props = [f["properties"] for f in gaps["features"]]
        assert [p["gap_id"] for p in props] == ["G0001", "G0002", "G0003"]
        assert [p["area_m2"] for p in props] == pytest.approx(
            [g.STRIP_WEST, g.BLOCK.area, g.STRIP_EAST], abs=disc_tol
        )
        assert props[1]["nearest_m"] == pytest.approx(g.BLOCK_NEAREST, abs=0.1)
        assert props[1]["population"] == 500 and props[1]["grid_name"] == "网格2"
        assert gaps["dropped"] == 2
        assert gaps["dropped_area_m2"] == pytest.approx(g.THIN_WEST + g.THIN_EAST, abs=1)
        with_suspended = c.get(URL + "/gaps", params={**q, "include_inactive": "true"}).json()
        assert [f["properties"]["grid_name"] for f in with_suspended["features"]] == ["网格1"] * 2
        assert with_suspended["dropped"] == 2 + 4  # the block's four corners

        lon, lat = to_lonlat(*g.SUSPENDED)  # the block's centre, where the suspended stall is
        point = {**q, "lon": lon, "lat": lat}
        check = c.get(URL + "/check", params=point).json()
        assert check["covered"] is False and check["within"] == []
        far = GEOD.inv(lon, lat, *to_lonlat(*g.ACTIVE))[2]
        assert check["nearest"]["code"] == snap.stalls.codes[0]
        assert check["nearest"]["distance_m"] == pytest.approx(far, abs=0.1)
        check = c.get(URL + "/check", params={**point, "include_inactive": "true"}).json()
        assert check["covered"] is True and check["within"][0]["code"] == snap.stalls.codes[1]

        page = c.get("/maps/coverage", params=q).text
        assert "1 处在用（暂停、迁址 1 处未计入）" in page and "G0001" in page
        page = c.get("/maps/coverage", params={**q, "include_inactive": "true"}).text
        assert "2 处（含暂停、迁址，不含撤销）" in page and "G0003" not in page

        old = c.get(URL, params={**q, "active_only": "true"})
        assert old.status_code == 400 and "active_only" in old.json()["detail"]


@pytest.mark.parametrize("value", ["-1", "1e9", "nan", "abc"])
def test_bad_min_area_is_4xx(client: TestClient, value: str) -> None:
    r = client.get(URL + "/gaps", params={"layer": "stalls", "radius_m": 500, "min_area_m2": value})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "min_area_m2"


def test_check_a_point_in_every_crs(client: TestClient, snapshot: Snapshot) -> None:
    stall = snapshot.stalls.records[10]
    # 300 m due north of the stall: covered at 500 m by at least that stall.
    lon, lat = stall["lon"], stall["lat"] + 300 / 111_000
    d = GEOD.inv(lon, lat, stall["lon"], stall["lat"])[2]
    for crs in ("wgs84", "gcj02", "bd09"):
        x, y = from_wgs84(lon, lat, crs)
        q = {"layer": "stalls", "radius_m": 500, "lon": float(x), "lat": float(y), "crs": crs}
        body = client.get(URL + "/check", params=q).json()
        assert body["covered"] is True, crs
        hit = {w["code"]: w["distance_m"] for w in body["within"]}
        assert hit[stall["code"]] == pytest.approx(d, abs=0.2)
        dists = [w["distance_m"] for w in body["within"]]
        assert dists == sorted(dists) and max(dists) <= 500
        assert body["point"]["received"]["crs"] == crs
    far = client.get(
        URL + "/check", params={"layer": "stalls", "radius_m": 300, "lon": 119.5, "lat": 36.9}
    ).json()
    assert far["covered"] is False and far["grid_code"] is None
    nearest = far["nearest"]
    active = (snapshot.stalls.frame["status"] == "active").to_numpy()
    lons, lats = snapshot.stalls.index.lon[active], snapshot.stalls.index.lat[active]
    assert nearest["distance_m"] == pytest.approx(
        GEOD.inv(np.full(len(lons), 119.5), np.full(len(lons), 36.9), lons, lats)[2].min(),
        abs=0.2,
    )


def test_what_if_over_http(client: TestClient, snapshot: Snapshot) -> None:
    gaps = client.get(URL + "/gaps", params={"layer": "vendor_clusters", "radius_m": 1000}).json()
    # A point in the largest gap, sent in GCJ-02 as Amap would give it.
    from shapely.geometry import shape

    pt = shape(gaps["features"][0]["geometry"]).representative_point()
    gx, gy = from_wgs84(pt.x, pt.y, "gcj02")
    body = {
        "layer": "vendor_clusters",
        "radius_m": 1000,
        "by": "community",
        "add": [[float(gx), float(gy)]],
        "crs": "gcj02",
    }
    r = client.post(URL + "/what-if", json=body)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["added"][0]["lon"] == pytest.approx(pt.x, abs=5e-7)  # rounded to 6 decimals
    gain = res["gain"]["covered_population"]
    assert gain > 0
    assert res["after"]["covered_population"] - res["before"]["covered_population"] == (
        pytest.approx(gain, abs=0.2)
    )
    assert res["units"] and all(
        u["after"]["covered_m2"] > u["before"]["covered_m2"] for u in res["units"]
    )
    assert sum(
        u["after"]["covered_population"] - u["before"]["covered_population"] for u in res["units"]
    ) == pytest.approx(gain, abs=0.5)
    # Read as WGS84 the same numbers land ~500 m away: a different answer.
    wrong = client.post(URL + "/what-if", json={**body, "crs": "wgs84"}).json()
    assert wrong["gain"]["covered_population"] != pytest.approx(gain, abs=1)
    code = snapshot.vendor_clusters.codes[0]
    removed = client.post(
        URL + "/what-if", json={"layer": "vendor_clusters", "radius_m": 1000, "remove": [code]}
    ).json()
    assert removed["removed"] == [code] and removed["gain"]["covered_m2"] < 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"remove": ["NOPE-1"]}, "remove"),
        ({"add": [[119.1]]}, "add"),
        ({"add": [[119.1, 95]]}, "add"),
        ({"add": "119,36"}, "add"),
        ({"add": [[119.1, 36.7]], "crs": "utm"}, "crs"),
        ({"radius_m": 0}, "radius_m"),
        ({"radius_m": 1e9}, "radius_m"),
        ({"layer": "roads"}, "layer"),
    ],
)
def test_bad_what_if_is_4xx(client: TestClient, body: dict, field: str) -> None:
    r = client.post(URL + "/what-if", json={"layer": "stalls", "radius_m": 500, **body})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_malformed_json_is_4xx(client: TestClient) -> None:
    r = client.post(
        URL + "/what-if", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "JSON" in r.json()["detail"]


def test_optimize_over_http(client: TestClient) -> None:
    body = {"layer": "vendor_clusters", "radius_m": 1000, "p": 2, "by": "district"}
    r = client.post(URL + "/optimize", json=body)
    assert r.status_code == 200, r.text
    res = r.json()
    assert len(res["sites"]) == 2 and res["solver"]["status"] == "Optimal"
    gain = res["gain"]["covered_population"]
    assert gain > 0 and gain <= sum(s["gain_alone"] for s in res["sites"]) + 0.5
    assert res["after"]["covered_population"] - res["before"]["covered_population"] == (
        pytest.approx(gain, abs=0.2)
    )
    # Ruling out the district of the first site moves the choice elsewhere.
    banned = res["sites"][0]["grid_code"][:6]
    again = client.post(URL + "/optimize", json={**body, "exclude": [banned]}).json()
    assert all(not s["grid_code"].startswith(banned) for s in again["sites"])
    # Given candidates, in GCJ-02: the chosen one is echoed in WGS84.
    lon, lat = to_lonlat(0, 0)
    gx, gy = from_wgs84(lon, lat, "gcj02")
    given = client.post(
        URL + "/optimize",
        json={**body, "p": 1, "crs": "gcj02", "candidates": [[float(gx), float(gy)]]},
    ).json()
    assert given["candidates"] == 1
    assert given["sites"][0]["lon"] == pytest.approx(lon, abs=5e-7)  # rounded to 6 decimals


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"p": 0}, "p"),
        ({"p": 51}, "p"),
        ({"p": "2"}, "p"),
        ({"p": True}, "p"),
        ({"exclude": ["000"]}, "exclude"),
        ({"exclude_area": {"type": "Polygon", "coordinates": [[1, 2]]}}, "exclude_area"),
        ({"exclude_area": {"type": "Point", "coordinates": [119.1, 36.7]}}, "exclude_area"),
        ({"candidates": [[119.1, "x"]]}, "candidates"),
    ],
)
def test_bad_optimize_is_4xx(client: TestClient, body: dict, field: str) -> None:
    r = client.post(URL + "/optimize", json={"layer": "stalls", "radius_m": 500, "p": 2, **body})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_openapi_describes_the_planner_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("", "/gaps", "/check", "/what-if", "/optimize"):
        assert URL + p in paths
