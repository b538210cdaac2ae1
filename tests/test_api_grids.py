"""The officers' API on the default dataset, checked against the raw files read independently."""

from __future__ import annotations

import numpy as np
import prcoords
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.web.app import create_app
from tests import rawdata

KUIWEN = (119.16, 36.71)  # the point in the "done when"


def covering_codes(lon: float, lat: float) -> list[str]:
    p = shapely.Point(lon, lat)
    return sorted(c for c, g in rawdata.geometries("grids").items() if g.covers(p))


def test_locate_names_grid_community_street_district_officer(client: TestClient) -> None:
    r = client.get("/api/v1/grids/locate", params={"lon": KUIWEN[0], "lat": KUIWEN[1]})
    assert r.status_code == 200
    body = r.json()
    grid = body["grid"]
    assert grid["code"] == covering_codes(*KUIWEN)[0]
    raw = rawdata.properties("grids")[grid["code"]]
    assert grid["community"] == {"code": raw["community_code"], "name": raw["community_name"]}
    assert grid["street"] == {"code": raw["street_code"], "name": raw["street_name"]}
    assert grid["district"] == {"code": raw["district_code"], "name": raw["district_name"]}
    assert grid["officer"] == {"name": raw["officer_name"], "phone": raw["officer_phone"]}
    assert grid["population"] == raw["population"]
    assert grid["code"].startswith(grid["community"]["code"])
    assert body["nearest"] is None
    assert body["point"]["received"] == {"lon": 119.16, "lat": 36.71, "crs": "wgs84"}


@pytest.mark.parametrize(
    "crs,convert",
    [
        ("gcj02", lambda c: prcoords.wgs_gcj(c)),
        ("bd09", lambda c: prcoords.wgs_bd(c)),
        ("cgcs2000", lambda c: c),
    ],
)
def test_same_place_in_other_systems_lands_in_the_same_grid(
    client: TestClient, crs: str, convert
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    codes = list(rawdata.geometries("grids"))
    for code in rng.choice(codes, 25, replace=False):
        p = shapely.point_on_surface(rawdata.geometries("grids")[code])
        c = convert(prcoords.Coords(p.y, p.x))
        r = client.get("/api/v1/grids/locate", params={"lon": c.lon, "lat": c.lat, "crs": crs})
        assert r.status_code == 200
        assert r.json()["grid"]["code"] == code
        w = r.json()["point"]["wgs84"]
        assert abs(w["lon"] - p.x) < 1e-6 and abs(w["lat"] - p.y) < 1e-6


def test_gcj02_read_as_wgs84_would_be_half_a_kilometre_off(client: TestClient) -> None:
    """The trap the crs parameter exists for: the raw GCJ-02 numbers name another place."""
    c = prcoords.wgs_gcj(prcoords.Coords(KUIWEN[1], KUIWEN[0]))
    right = client.get("/api/v1/grids/locate", params={"lon": c.lon, "lat": c.lat, "crs": "gcj02"})
    wrong = client.get("/api/v1/grids/locate", params={"lon": c.lon, "lat": c.lat})
    assert right.json()["grid"]["code"] != wrong.json()["grid"]["code"]


def test_every_grid_locates_itself_in_bulk(client: TestClient) -> None:
    geoms = rawdata.geometries("grids")
    codes = list(geoms)
    pts = shapely.point_on_surface(list(geoms.values()))
    body = {"points": [[p.x, p.y] for p in pts]}
    r = client.post("/api/v1/grids/locate", json=body)
    assert r.status_code == 200
    assert r.json()["codes"] == codes
    assert r.json()["located"] == len(codes)


def test_bulk_keeps_input_order_and_nulls(client: TestClient) -> None:
    pts = [[KUIWEN[0], KUIWEN[1]], [0.0, 0.0], [KUIWEN[0], KUIWEN[1]]]
    r = client.post("/api/v1/grids/locate", json={"points": pts, "crs": "wgs84"})
    codes = r.json()["codes"]
    assert codes[1] is None and codes[0] == codes[2] == covering_codes(*KUIWEN)[0]


def test_bulk_accepts_100000_points_and_agrees_with_single_locate(
    client: TestClient, snapshot: Snapshot
) -> None:
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = snapshot.bounds
    lon = rng.uniform(minx, maxx, 100_000)
    lat = rng.uniform(miny, maxy, 100_000)
    r = client.post("/api/v1/grids/locate", json={"points": np.column_stack([lon, lat]).tolist()})
    assert r.status_code == 200
    codes = r.json()["codes"]
    assert len(codes) == 100_000
    for i in rng.choice(100_000, 30, replace=False):
        single = client.get("/api/v1/grids/locate", params={"lon": lon[i], "lat": lat[i]}).json()
        assert codes[i] == (single["grid"]["code"] if single["grid"] else None)


def test_bulk_over_the_cap_is_refused(snapshot: Snapshot) -> None:
    settings = Settings(max_bulk_points=100_000)
    with TestClient(create_app(settings, SnapshotStore(snapshot))) as c:
        r = c.post("/api/v1/grids/locate", json={"points": [[119.1, 36.7]] * 100_001})
    assert r.status_code == 422
    assert "too many points" in r.json()["detail"]


def test_swapped_coordinates_say_nothing_contains_it_and_how_far(client: TestClient) -> None:
    r = client.get("/api/v1/grids/locate", params={"lon": KUIWEN[1], "lat": 19.16})
    body = r.json()
    assert r.status_code == 200 and body["grid"] is None
    assert body["nearest"]["grid"]["code"] in rawdata.geometries("grids")
    assert body["nearest"]["distance_m"] > 5_000_000


def test_point_just_outside_reports_nearest_grid_and_metres(client: TestClient) -> None:
    import pyproj

    geod = pyproj.Geod(ellps="WGS84")
    union = shapely.union_all(list(rawdata.geometries("grids").values()))
    _, miny, maxx, maxy = union.bounds
    lon, lat = maxx + 0.01, (miny + maxy) / 2  # ~900 m east of the easternmost edge
    body = client.get("/api/v1/grids/locate", params={"lon": lon, "lat": lat}).json()
    assert body["grid"] is None
    nearest = body["nearest"]
    g = rawdata.geometries("grids")[nearest["grid"]["code"]]
    # Independent reference: geodesic distance to a dense sample of the grid's boundary.
    ring = shapely.segmentize(g.exterior, 0.00001)
    xy = np.asarray(ring.coords)
    ref = geod.inv(np.full(len(xy), lon), np.full(len(xy), lat), xy[:, 0], xy[:, 1])[2].min()
    assert abs(nearest["distance_m"] - ref) < 1.0
    all_refs = []
    for code, geom in rawdata.geometries("grids").items():
        if geom.distance(shapely.Point(lon, lat)) < 0.02:
            xy = np.asarray(shapely.segmentize(geom.exterior, 0.0001).coords)
            d = geod.inv(np.full(len(xy), lon), np.full(len(xy), lat), xy[:, 0], xy[:, 1])[2]
            all_refs.append((d.min(), code))
    assert min(all_refs)[0] >= ref - 5.0  # no other grid is meaningfully nearer


def test_grid_by_code_geometry_and_counts(client: TestClient) -> None:
    stalls = rawdata.geometries("stalls")
    clusters = rawdata.geometries("vendor_clusters")
    counts: dict[str, int] = {}
    for p in stalls.values():
        code = covering_codes(p.x, p.y)
        if code:
            counts[code[0]] = counts.get(code[0], 0) + 1
    code = max(counts, key=lambda k: counts[k])
    r = client.get(f"/api/v1/grids/{code}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    f = r.json()
    assert f["type"] == "Feature" and f["properties"]["code"] == code
    assert shapely.geometry.shape(f["geometry"]).equals_exact(
        rawdata.geometries("grids")[code], 1e-9
    )
    assert f["properties"]["counts"]["stalls"] == counts[code]
    n_clusters = sum(1 for p in clusters.values() if rawdata.geometries("grids")[code].covers(p))
    assert f["properties"]["counts"]["vendor_clusters"] == n_clusters


def test_grid_by_code_errors(client: TestClient) -> None:
    assert client.get("/api/v1/grids/370705999999999").status_code == 404
    r = client.get("/api/v1/grids/abc")
    assert r.status_code == 422 and "15 digits" in r.json()["detail"]


def test_listing_pages_cover_the_bbox_exactly_once(client: TestClient) -> None:
    bbox = (119.12, 36.69, 119.17, 36.72)
    box = shapely.box(*bbox)
    expected = sorted(c for c, g in rawdata.geometries("grids").items() if g.intersects(box))
    url = "/api/v1/grids?bbox=" + ",".join(map(str, bbox)) + "&limit=37"
    seen: list[str] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200
        body = r.json()
        assert body["numberMatched"] == len(expected)
        assert body["numberReturned"] == len(body["features"]) <= 37
        seen += [f["id"] for f in body["features"]]
        url = body["next"]
    assert seen == expected


def test_listing_filters_by_unit(client: TestClient) -> None:
    props = rawdata.properties("grids")
    street = sorted({p["street_code"] for p in props.values()})[3]
    expected = sorted(c for c, p in props.items() if p["street_code"] == street)
    r = client.get("/api/v1/grids", params={"street": street, "limit": 1000})
    assert [f["id"] for f in r.json()["features"]] == expected
    assert all(f["properties"]["street"]["code"] == street for f in r.json()["features"])
    assert client.get("/api/v1/grids", params={"district": "999999"}).status_code == 404


@pytest.mark.parametrize(
    "url,field",
    [
        ("/api/v1/grids/locate?lat=36.7", "lon"),
        ("/api/v1/grids/locate?lon=119.1", "lat"),
        ("/api/v1/grids/locate?lon=abc&lat=36.7", "lon"),
        ("/api/v1/grids/locate?lon=nan&lat=36.7", "lon"),
        ("/api/v1/grids/locate?lon=119&lat=inf", "lat"),
        ("/api/v1/grids/locate?lon=119&lat=90.5", "lat"),
        ("/api/v1/grids/locate?lon=-181&lat=36", "lon"),
        ("/api/v1/grids/locate?lon=119&lat=36&crs=epsg3857", "crs"),
        ("/api/v1/grids?bbox=1,2,3", "bbox"),
        ("/api/v1/grids?bbox=a,b,c,d", "bbox"),
        ("/api/v1/grids?bbox=119.2,36.7,119.1,36.8", "bbox"),
        ("/api/v1/grids?bbox=119,36,119.2,95", "bbox"),
        ("/api/v1/grids?limit=0", "limit"),
        ("/api/v1/grids?limit=100000", "limit"),
        ("/api/v1/grids?offset=-1", "offset"),
    ],
)
def test_bad_query_input_is_a_4xx_naming_the_field(
    client: TestClient, url: str, field: str
) -> None:
    r = client.get(url)
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body["detail"].startswith(field)
    assert any(e["field"] == field for e in body["errors"])


@pytest.mark.parametrize(
    "body,needle",
    [
        (b"{not json", "malformed JSON"),
        (b"[]", "JSON object"),
        (b"{}", "points"),
        (b'{"points": "x"}', "list"),
        (b'{"points": [[1, 2, 3]]}', "item 0"),
        (b'{"points": [[1, "a"]]}', "item 0"),
        (b'{"points": [[1, 2], [200, 1]]}', "item 1"),
        (b'{"points": [[1, 2], [1, 95]]}', "item 1"),
        (b'{"points": [[true, 2]]}', "numbers"),
        (b'{"points": [[1, 2]], "crs": "mars"}', "unknown crs"),
        (b'{"points": [[1, NaN]]}', "malformed JSON"),
    ],
)
def test_bad_bulk_input_is_a_4xx(client: TestClient, body: bytes, needle: str) -> None:
    r = client.post(
        "/api/v1/grids/locate", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


def test_unknown_path_is_a_json_404(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and "no such path" in r.json()["detail"]


def test_meta_health_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    meta = client.get("/api/v1/meta").json()
    assert meta["layers"]["grids"]["features"] == len(rawdata.features("grids"))
    assert meta["layers"]["stalls"]["features"] == len(rawdata.features("stalls"))
    assert meta["layers"]["vendor_clusters"]["features"] == len(rawdata.features("vendor_clusters"))
    assert meta["crs"]["metric"] == "EPSG:4549"
    union = shapely.union_all(list(rawdata.geometries("grids").values()))
    assert np.allclose(meta["bounds"], union.bounds)
    props = rawdata.properties("grids").values()
    assert meta["units"]["communities"] == len({p["community_code"] for p in props})


def test_openapi_describes_the_contract_and_docs_are_self_hosted(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/grids/locate",
        "/api/v1/grids/{code}",
        "/api/v1/grids",
        "/healthz",
        "/readyz",
        "/api/v1/meta",
    ):
        assert path in spec["paths"], path
    assert "post" in spec["paths"]["/api/v1/grids/locate"]
    docs = client.get("/docs").text
    assert "cdn" not in docs.lower() and "unpkg" not in docs
    import re

    for src in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs):
        assert src.startswith("/"), src
        assert client.get(src).status_code == 200
