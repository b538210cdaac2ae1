"""Residents' API: nearest stalls / vendor clusters against independent references (PostGIS KNN on
geography, pyproj.Geod brute force over the raw GeoJSON), filters, open-now, errors."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import numpy as np
import prcoords
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient

from tests import rawdata
from tests.pgref import load_table

NEAREST = "/api/v1/stalls/nearest"
STALLS = rawdata.points("stalls")
CLUSTERS = rawdata.points("vendor_clusters")
brute_force = rawdata.geodesic_ranking


def active(r: dict[str, Any]) -> bool:
    return r["status"] == "active"


def sample_points(n: int, seed: int) -> list[tuple[float, float]]:
    lons = [r["lon"] for r in STALLS]
    lats = [r["lat"] for r in STALLS]
    rng = np.random.default_rng(seed)
    xs = rng.uniform(min(lons) - 0.02, max(lons) + 0.02, n)
    ys = rng.uniform(min(lats) - 0.02, max(lats) + 0.02, n)
    return [(round(float(x), 6), round(float(y), 6)) for x, y in zip(xs, ys, strict=True)]


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    """Same codes in the same order, distances within 1 m (a swap only between near-ties)."""
    assert len(got) == len(want)
    for (gc, gd), (wc, wd) in zip(got, want, strict=True):
        assert abs(gd - wd) <= 1.0, (gc, gd, wc, wd)
        if gc != wc:  # only acceptable if the reference has the two at (almost) equal distance
            other = dict(want)
            assert gc in other and abs(other[gc] - wd) < 0.01, (got, want)


def api_ranking(body: dict[str, Any], key: str = "stall") -> list[tuple[str, float]]:
    return [(r[key]["code"], r["distance_m"]) for r in body["results"]]


@pytest.mark.parametrize(("lon", "lat"), sample_points(12, seed=3))
def test_nearest_matches_geodesic_brute_force(client: TestClient, lon: float, lat: float) -> None:
    r = client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 8})
    assert r.status_code == 200
    body = r.json()
    assert_same_ranking(api_ranking(body), brute_force(STALLS, lon, lat, active)[:8])
    assert all(x["stall"]["status"] == "active" for x in body["results"])


@pytest.mark.parametrize("service", ["修鞋", "修车", "修锁配钥匙"])
def test_nearest_with_service_matches_brute_force(client: TestClient, service: str) -> None:
    for lon, lat in sample_points(4, seed=11):
        r = client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 6, "service": service})
        want = brute_force(STALLS, lon, lat, lambda s: active(s) and service in s["services"])
        assert_same_ranking(api_ranking(r.json()), want[:6])
        assert all(service in x["stall"]["services"] for x in r.json()["results"])


def test_nearest_matches_postgis_knn_on_geography(
    client: TestClient, pg: psycopg.Connection
) -> None:
    act = [s for s in STALLS if active(s)]
    load_table(
        pg, "issue3_stalls", [s["code"] for s in act],
        shapely.points([s["lon"] for s in act], [s["lat"] for s in act]),
    )  # fmt: skip
    # PostGIS's KNN operator on geography measures on a sphere, which ranks near-ties up to
    # ~0.3% apart differently from the ellipsoid: take its 30 nearest as candidates, then rank
    # them by ST_Distance on the spheroid (PostGIS's default for geography).
    for lon, lat in sample_points(15, seed=7):
        rows = pg.execute(
            "WITH q AS (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography AS g), "
            "knn AS (SELECT code, geom FROM issue3_stalls, q "
            "        ORDER BY geom::geography <-> q.g LIMIT 30) "
            "SELECT code, ST_Distance(geom::geography, q.g) AS d FROM knn, q "
            "ORDER BY d, code LIMIT 10",
            (lon, lat),
        ).fetchall()
        want = [(c, float(d)) for c, d in rows]
        r = client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 10})
        assert_same_ranking(api_ranking(r.json()), want)


def test_point_in_gcj02_gives_the_same_answer(client: TestClient) -> None:
    lon, lat = 119.1612, 36.7083
    g = prcoords.wgs_gcj(prcoords.Coords(lat, lon))
    b = prcoords.wgs_bd(prcoords.Coords(lat, lon))
    base = api_ranking(client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 5}).json())
    for crs, p in (("gcj02", g), ("bd09", b)):
        body = client.get(NEAREST, params={"lon": p.lon, "lat": p.lat, "crs": crs, "k": 5}).json()
        assert body["point"]["received"]["crs"] == crs
        assert abs(body["point"]["wgs84"]["lon"] - lon) < 1e-5
        assert_same_ranking(api_ranking(body), base)
    # the same numbers read as WGS84 land ~500 m away, and the answer changes
    wrong = client.get(NEAREST, params={"lon": g.lon, "lat": g.lat, "k": 5}).json()
    assert api_ranking(wrong) != base


def test_walk_minutes_and_echo(client: TestClient, settings: Any) -> None:
    body = client.get(NEAREST, params={"lon": 119.16, "lat": 36.71, "k": 3}).json()
    assert body["walk"]["detour_factor"] == settings.walk_detour_factor
    for res in body["results"]:
        expected = res["distance_m"] * settings.walk_detour_factor / settings.walk_speed_m_per_min
        assert res["walk_minutes"] == pytest.approx(expected, abs=0.06)
        s = res["stall"]
        for key in ("code", "name", "services", "hours", "status", "address", "grid_code"):
            assert key in s
        assert isinstance(s["open_now"], bool) and s["hours_text"]


def test_max_distance_keeps_only_those_within(client: TestClient) -> None:
    lon, lat = 119.15, 36.70
    want = [t for t in brute_force(STALLS, lon, lat, active) if t[1] <= 1500]
    body = client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 100, "max_distance_m": 1500})
    assert_same_ranking(api_ranking(body.json()), want)
    assert want, "the test point should have stalls within 1.5 km"


def test_far_away_point_still_answers(client: TestClient) -> None:
    # lat/lon swapped: far outside the data, not an error; distances are thousands of km
    body = client.get(NEAREST, params={"lon": 36.71, "lat": 119.16 - 90, "k": 2}).json()
    want = brute_force(STALLS, 36.71, 29.16, active)[:2]
    assert_same_ranking(api_ranking(body), want)


def test_open_now_at_a_given_time(client: TestClient) -> None:
    """Sunday 10:00: the Mo-Sa stalls are closed, the daily ones open; Monday 00:30 only the
    stalls whose evening hours run past midnight are open."""
    lon, lat = 119.14, 36.71
    sunday = client.get(
        NEAREST,
        params={"lon": lon, "lat": lat, "k": 100, "open_now": "true", "at": "2025-03-09T10:00"},
    ).json()
    assert sunday["at"].startswith("2025-03-09T10:00:00+08:00")
    got = {x["stall"]["code"] for x in sunday["results"]}
    by_hours = {s["code"]: s["hours"] for s in STALLS if active(s)}
    # hand-read from the hours strings in the file
    open_sunday_10 = {
        c for c, h in by_hours.items()
        if h in ("08:00-18:00", "08:30-18:30", "07:00-19:00", "07:30-11:30,13:30-19:00",
                 "Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", "Mo-Sa 07:30-18:30; Su 09:00-15:00")
    }  # fmt: skip
    assert open_sunday_10 and got == open_sunday_10
    assert all(x["stall"]["open_now"] for x in sunday["results"])

    night = client.get(
        NEAREST,
        params={"lon": lon, "lat": lat, "k": 100, "open_now": "true", "at": "2025-03-10T00:20"},
    ).json()
    late = {c for c, h in by_hours.items() if h in ("18:00-02:00", "16:00-01:00", "17:00-00:30")}
    assert late and {x["stall"]["code"] for x in night["results"]} == late
    # an offset sign decoded to a space by a careless client still reads as +08:00
    r = client.get(NEAREST + "?lon=119.14&lat=36.71&at=2025-03-10T00:20:00+08:00")
    assert r.status_code == 200 and r.json()["at"].startswith("2025-03-10T00:20:00+08:00")


def test_inactive_stalls_only_on_request(client: TestClient) -> None:
    inactive = [s for s in STALLS if s["status"] != "active"]
    assert inactive
    s = inactive[0]
    default = client.get(NEAREST, params={"lon": s["lon"], "lat": s["lat"], "k": 1}).json()
    assert default["results"][0]["stall"]["code"] != s["code"]
    every = client.get(
        NEAREST, params={"lon": s["lon"], "lat": s["lat"], "k": 1, "include_inactive": "true"}
    ).json()
    first = every["results"][0]
    assert first["stall"]["code"] == s["code"] and first["distance_m"] < 0.5
    assert first["stall"]["open_now"] is False  # never open while not active


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"service": "修手机"}, "service", ["修鞋", "修车", "修锁配钥匙"]),
        ({"k": 101}, "k", ["100"]),
        ({"k": 0}, "k", []),
        ({"max_distance_m": 60000}, "max_distance_m", ["50000"]),
        ({"max_distance_m": -5}, "max_distance_m", []),
        ({"at": "tomorrow"}, "at", ["tomorrow"]),
        ({"at": "2025-02-30T10:00"}, "at", []),
        ({"at": "9999-12-31T23:59:59-12:00"}, "at", ["year"]),  # would overflow at +08:00
        ({"at": "0001-01-01T00:00:00+14:00"}, "at", ["year"]),
        ({"crs": "mars"}, "crs", []),
        ({"lat": 95}, "lat", []),
        ({"lon": "abc"}, "lon", []),
        ({"open_now": "maybe"}, "open_now", []),
    ],
)
def test_bad_input_is_a_clear_422(
    client: TestClient, params: dict[str, Any], field: str, words: list[str]
) -> None:
    q = {"lon": 119.16, "lat": 36.71, **params}
    r = client.get(NEAREST, params=q)
    assert r.status_code == 422
    body = r.json()
    assert field in body["detail"]
    for w in words:
        assert w in body["detail"]


def test_stall_by_code(client: TestClient) -> None:
    s = STALLS[5]
    r = client.get(f"/api/v1/stalls/{s['code']}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == s["code"]
    assert f["geometry"]["coordinates"] == pytest.approx([s["lon"], s["lat"]], abs=1e-7)
    for key in ("name", "hours", "status", "address", "services"):
        assert f["properties"][key] == s[key]
    assert client.get(f"/api/v1/stalls/{s['code'].lower()}").json()["id"] == s["code"]
    missing = client.get("/api/v1/stalls/XLP-370705-999")
    assert missing.status_code == 404 and "XLP-370705-999" in missing.json()["detail"]
    assert client.get("/api/v1/stalls/not-a-code").status_code == 422


def test_stall_listing_bbox_and_service(client: TestClient) -> None:
    bbox = (119.10, 36.68, 119.20, 36.74)
    want = sorted(
        s["code"] for s in STALLS
        if bbox[0] <= s["lon"] <= bbox[2] and bbox[1] <= s["lat"] <= bbox[3]
        and ("修车" in s["services"] or "修鞋" in s["services"])
    )  # fmt: skip
    q = {"bbox": ",".join(map(str, bbox)), "service": ["修车", "修鞋"], "limit": 7}
    got: list[str] = []
    url: str | None = "/api/v1/stalls"
    params: dict[str, Any] | None = q
    for _ in range(50):
        if url is None:
            break
        page = client.get(url, params=params).json()
        assert page["numberMatched"] == len(want)
        assert page["numberReturned"] <= 7
        got += [f["id"] for f in page["features"]]
        url, params = page["next"], None
    assert got == want
    every = client.get("/api/v1/stalls", params={"limit": 1000}).json()
    assert every["numberMatched"] == len(STALLS)
    assert client.get("/api/v1/stalls", params={"bbox": "1,2,3"}).status_code == 422
    assert client.get("/api/v1/stalls", params={"limit": 5000}).status_code == 422
    suspended = client.get("/api/v1/stalls", params={"status": "suspended"}).json()
    assert {f["id"] for f in suspended["features"]} == {
        s["code"] for s in STALLS if s["status"] == "suspended"
    }


def test_vendor_clusters_nearest_by_code_listing(client: TestClient) -> None:
    for lon, lat in sample_points(5, seed=5):
        body = client.get(
            "/api/v1/vendor-clusters/nearest", params={"lon": lon, "lat": lat, "k": 4}
        ).json()
        assert_same_ranking(
            api_ranking(body, "vendor_cluster"), brute_force(CLUSTERS, lon, lat, active)[:4]
        )
    body = client.get(
        "/api/v1/vendor-clusters/nearest",
        params={"lon": 119.16, "lat": 36.71, "k": 3, "kind": "夜市"},
    ).json()
    want = brute_force(CLUSTERS, 119.16, 36.71, lambda c: active(c) and c["kind"] == "夜市")
    assert_same_ranking(api_ranking(body, "vendor_cluster"), want[:3])
    bad = client.get("/api/v1/vendor-clusters/nearest", params={"lon": 1, "lat": 1, "kind": "x"})
    assert bad.status_code == 422 and "夜市" in bad.json()["detail"]
    c = CLUSTERS[0]
    f = client.get(f"/api/v1/vendor-clusters/{c['code']}").json()
    assert f["properties"]["kind"] == c["kind"] and f["properties"]["pitches"] == c["pitches"]
    listing = client.get("/api/v1/vendor-clusters", params={"kind": "早市"}).json()
    assert {x["id"] for x in listing["features"]} == {
        c["code"] for c in CLUSTERS if c["kind"] == "早市"
    }


def test_listing_open_now_uses_the_given_time(client: TestClient) -> None:
    at = "2025-03-05T06:30"  # a Wednesday morning
    body = client.get(
        "/api/v1/vendor-clusters", params={"open_now": "true", "at": at, "limit": 1000}
    ).json()
    moment = datetime(2025, 3, 5, 6, 30)
    want = set()
    now = moment.strftime("%H:%M")
    for c in CLUSTERS:  # hand evaluation of the forms in the file: "[days ]HH:MM-HH:MM[,...]"
        if c["status"] != "active":
            continue
        days, _, spans = c["hours"].rpartition(" ")
        assert days in ("", "Mo-Su") or re.fullmatch(r"(Mo|Tu|We|Th|Fr|Sa|Su)(,\w\w)*", days)
        if days and days != "Mo-Su" and "We" not in days.split(","):
            continue
        for span in spans.split(","):
            start, end = span.split("-")
            if (start <= now < end) if start < end else (now >= start or now < end):
                want.add(c["code"])
    # (a span past midnight from Tuesday would also count at 06:30 Wednesday; none runs so late)
    assert want and {f["id"] for f in body["features"]} == want


def test_openapi_describes_residents_endpoints(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for p in ("/api/v1/stalls/nearest", "/api/v1/stalls/{code}", "/api/v1/stalls",
              "/api/v1/vendor-clusters/nearest", "/api/v1/vendor-clusters/{code}",
              "/api/v1/vendor-clusters", "/api/v1/stalls/{code}/qr.svg",
              "/api/v1/stalls/{code}/qr.png"):  # fmt: skip
        assert p in paths, p
    nearest = paths["/api/v1/stalls/nearest"]["get"]
    assert "detour" in nearest["description"] and "70 m/min" in nearest["description"]
    names = {p["name"] for p in nearest["parameters"]}
    assert {"lon", "lat", "crs", "k", "service", "max_distance_m", "open_now", "at"} <= names
    schema = json.dumps(doc["components"]["schemas"]["NearestStallsResponse"])
    assert "walk_minutes" in schema or "NearestStall" in schema
