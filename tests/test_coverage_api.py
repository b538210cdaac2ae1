"""The planners' HTTP API: /api/v1/coverage, /gaps, /check, /what-if, /optimize."""

from __future__ import annotations

import json
import math

import numpy as np
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.crs import from_wgs84
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.web.app import create_app
from tests.handmade_city import Site, Square, build, to_lonlat

URL = "/api/v1/coverage"
GEOD = pyproj.Geod(ellps="WGS84")


def handmade_client(snap: Snapshot) -> TestClient:
    return TestClient(create_app(Settings(max_radius_m=5000), SnapshotStore(snap)))


def test_coverage_by_street_is_consistent(client: TestClient, snapshot: Snapshot) -> None:
    r = client.get(URL, params={"layer": "vendor_clusters", "radius_m": 1000, "by": "street"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["layer"] == "vendor_clusters" and body["radius_m"] == 1000 and body["by"] == "street"
    )
    assert body["facilities"] == len(snapshot.vendor_clusters)
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


def test_empty_layer_is_zero_coverage() -> None:
    snap = build([Square(0, 0, 500, 500, 100)], [Site(250, 250)], clusters=[])
    with handmade_client(snap) as c:
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


def test_handmade_coverage_over_http() -> None:
    snap = build([Square(-1000, -1000, 1000, 1000, 4000)], [Site(0, 0)])
    with handmade_client(snap) as c:
        body = c.get(URL, params={"layer": "stalls", "radius_m": 300}).json()
    want = math.pi * 300**2
    assert body["units"][0]["covered_m2"] == pytest.approx(want, abs=0.1)
    assert body["units"][0]["covered_population"] == pytest.approx(4000 * want / 4e6, abs=0.1)


def test_gaps_feature_collection(client: TestClient) -> None:
    r = client.get(URL + "/gaps", params={"layer": "vendor_clusters", "preset": 1000})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == len(fc["features"]) > 0
    props = [f["properties"] for f in fc["features"]]
    overall = fc["overall"]
    assert sum(p["population"] for p in props) == pytest.approx(
        overall["population"] - overall["covered_population"], abs=len(props)
    )
    assert sum(p["area_m2"] for p in props) == pytest.approx(
        overall["area_m2"] - overall["covered_m2"], rel=1e-5
    )
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in fc["features"])
    lon, lat = shapely.get_coordinates(
        shapely.from_geojson(json.dumps(fc["features"][0]["geometry"]))
    ).T
    assert lon.min() > 118 and lon.max() < 121 and lat.min() > 36 and lat.max() < 37.5  # WGS84


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
    lons, lats = snapshot.stalls.index.lon, snapshot.stalls.index.lat
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
    assert res["added"][0]["lon"] == pytest.approx(pt.x, abs=1e-7)
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
    assert given["sites"][0]["lon"] == pytest.approx(lon, abs=1e-7)


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
