"""OGC API – Features under /ogc: links and paging, CRSs and axis order (pyproj), CQL2 filters
against selections written here in pandas and against PostGIS, property filters, datetime on the
cases, 400s that name the parameter, and the Chinese HTML pages (escaped).

One app per module on a copy of the bundled data with nulls and hostile text written in
(tests/ogcdata.py); the references are read from the stored files, never from the service.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.settings import Settings
from geo_service.core.snapshot import SnapshotStore
from geo_service.storage.files import FilesBackend
from geo_service.storage.reloader import snapshot_of
from geo_service.web.app import create_app
from tests.ogcdata import CASES, HOSTILE, file_cases, ogc_dataset, stored_grids
from tests.pgref import load_table

BASE = "http://testserver"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
GEOJSON = "application/geo+json"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ogc_dataset(tmp_path_factory.mktemp("ogc") / "data")


@pytest.fixture(scope="module")
def api(data: Path) -> Iterator[tuple[TestClient, list[str]]]:
    backend = FilesBackend(data)
    settings = Settings(data_dir=data, public_base_url=BASE, case_escalation_poll_s=3600)
    snap = snapshot_of(backend.load(), "weifang-central")
    app = create_app(settings, SnapshotStore(snap), backend)
    with TestClient(app) as client:
        ids = file_cases(app.state.runtime.cases, snap)
        yield client, ids


@pytest.fixture(scope="module")
def client(api: tuple[TestClient, list[str]]) -> TestClient:
    return api[0]


@pytest.fixture(scope="module")
def grids(data: Path) -> gpd.GeoDataFrame:
    return stored_grids(data)


@pytest.fixture(scope="module")
def stalls(data: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(data / "stalls.geojson").sort_values("code").reset_index(drop=True)


def items(client: TestClient, cid: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"/ogc/collections/{cid}/items", params={"limit": 10000, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == GEOJSON
    body: dict[str, Any] = r.json()
    assert body["numberReturned"] == len(body["features"]) == body["numberMatched"]
    return body


def ids_of(body: dict[str, Any]) -> list[str]:
    return [f["id"] for f in body["features"]]


def rel(doc: dict[str, Any], name: str, type_: str | None = None) -> list[dict[str, Any]]:
    return [lk for lk in doc["links"] if lk["rel"] == name and type_ in (None, lk.get("type"))]


# -- links, paging, limits ------------------------------------------------------------------
def test_landing_page_has_what_qgis_needs(client: TestClient) -> None:
    landing = client.get("/ogc").json()
    [desc] = rel(landing, "service-desc")
    [data] = rel(landing, "data")
    [conf] = rel(landing, "conformance")
    assert rel(landing, "service-doc") and rel(landing, "self") and rel(landing, "alternate")
    for lk in (desc, data, conf):
        assert lk["href"].startswith(BASE + "/")
    spec = client.get(urlsplit(desc["href"]).path).json()
    assert spec["openapi"].startswith("3.")
    # QGIS's provider reads the page size from components/parameters/limit
    limit = spec["components"]["parameters"]["limit"]["schema"]
    assert (limit["default"], limit["maximum"]) == (10, 10000)
    op = spec["paths"]["/ogc/collections/{collectionId}/items"]["get"]
    [declared] = [p for p in op["parameters"] if p["name"] == "limit"]
    assert declared["schema"] == limit
    collections = client.get(urlsplit(data["href"]).path).json()["collections"]
    assert [c["id"] for c in collections] == [
        "grids", "communities", "streets", "districts", "stalls", "vendor_clusters", "cases",
    ]  # fmt: skip
    assert client.get(urlsplit(conf["href"]).path).json()["conformsTo"]


def test_paging_follows_next_links_through_every_grid(client: TestClient, grids: Any) -> None:
    first = client.get("/ogc/collections/grids/items").json()
    assert first["numberReturned"] == 10 and first["numberMatched"] == len(grids)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["timeStamp"])
    seen: list[str] = []
    url: str | None = "/ogc/collections/grids/items?limit=400"
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == GEOJSON
        page = r.json()
        seen += ids_of(page)
        assert page["numberMatched"] == len(grids)
        nxt = rel(page, "next")
        assert all(lk["type"] == GEOJSON for lk in nxt + rel(page, "prev"))
        if pages:
            [prev] = rel(page, "prev")
            back = parse_qs(urlsplit(prev["href"]).query).get("offset", ["0"])
            assert back == [str((pages - 1) * 400)]
        url = urlsplit(nxt[0]["href"])._replace(scheme="", netloc="").geturl() if nxt else None
        pages += 1
    assert pages == 4 and seen == grids["code"].tolist()


def test_a_limit_above_the_maximum_is_clamped(client: TestClient) -> None:
    body = client.get("/ogc/collections/grids/items", params={"limit": 50000}).json()
    assert body["numberReturned"] == body["numberMatched"] == 1355
    assert "limit=10000" in rel(body, "self")[0]["href"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"foo": "1"}, "foo"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"bbox": "119,36,120"}, "bbox"),
        ({"bbox": "119,36,120,x"}, "bbox"),
        ({"bbox": "36,119,37,120", "bbox-crs": EPSG + "4326", "crs": "EPSG:3857"}, "crs"),
        ({"bbox": "119,36,120,37", "bbox-crs": "EPSG:3857"}, "bbox-crs"),
        ({"bbox": "119,95,120,96"}, "bbox"),
        ({"datetime": "2026-03-01"}, "datetime"),
        ({"filter": "population >"}, "filter"),
        ({"filter": "popularity > 3"}, "filter"),
        ({"filter": "population > '3'"}, "filter"),
        ({"filter": "code = 370702001001001"}, "filter"),
        ({"filter": "population > 3", "filter-lang": "cql2-json"}, "filter-lang"),
        ({"filter": "T_AFTER(population, TIMESTAMP('2026-01-01T00:00:00Z'))"}, "filter"),
        ({"filter": "S_INTERSECTS(geometry, POINT(1 2)", "filter-crs": "EPSG:2000"}, "filter"),
        ({"f": "xml"}, "f"),
        ({"population": "many"}, "population"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    r = client.get("/ogc/collections/grids/items", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["errors"][0]["field"] == field and field in body["detail"]


def test_bad_datetime_on_cases_and_repeated_parameters(client: TestClient) -> None:
    for value in ("yesterday", "2026-03-09/2026-03-01", "../..", "2026-13-01"):
        r = client.get("/ogc/collections/cases/items", params={"datetime": value})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "datetime", value
    r = client.get("/ogc/collections/grids/items?limit=5&limit=6")
    assert r.status_code == 400 and "limit" in r.json()["detail"]
    assert client.get("/ogc/collections/roads/items").status_code == 404
    assert client.get("/ogc/collections/grids/items/999").status_code == 404
    assert client.get("/ogc/conformance?limit=3").status_code == 400


# -- CRS by reference, axis order -----------------------------------------------------------
def _coords(feature: dict[str, Any]) -> np.ndarray:
    return shapely.get_coordinates(shapely.geometry.shape(feature["geometry"]))


def test_crs_and_axis_order_follow_the_epsg_definitions(client: TestClient, grids: Any) -> None:
    code = grids["code"].iloc[42]
    stored = shapely.get_coordinates(grids.geometry.iloc[42])  # lon, lat
    answers = {}
    asked = {None: CRS84, "EPSG:4326": EPSG + "4326", EPSG + "4490": EPSG + "4490",
             EPSG + "4549": EPSG + "4549", "[EPSG:4549]": EPSG + "4549"}  # fmt: skip
    for crs, uri in asked.items():
        r = client.get(f"/ogc/collections/grids/items/{code}", params={"crs": crs} if crs else {})
        assert r.status_code == 200, r.text
        assert r.headers["content-crs"] == f"<{uri}>"
        answers[crs] = _coords(r.json())
    assert np.array_equal(answers[None], stored)
    assert np.array_equal(answers["EPSG:4326"], stored[:, ::-1])  # lat, lon
    assert np.abs(answers[EPSG + "4490"] - stored[:, ::-1]).max() < 1e-7
    e, n = pyproj.Transformer.from_crs(4326, 4549, always_xy=True).transform(*stored.T)
    assert np.abs(answers[EPSG + "4549"] - np.column_stack([n, e])).max() < 0.001  # N, E
    assert np.array_equal(answers["[EPSG:4549]"], answers[EPSG + "4549"])


def test_bbox_in_each_crs_selects_the_same_grids(client: TestClient, grids: Any) -> None:
    lon0, lat0, lon1, lat1 = 119.10, 36.68, 119.14, 36.71
    box = shapely.box(lon0, lat0, lon1, lat1)
    expected = grids.loc[grids.intersects(box), "code"].tolist()
    assert 10 < len(expected) < len(grids)
    crs84 = items(client, "grids", bbox=f"{lon0},{lat0},{lon1},{lat1}")
    latlon = items(
        client, "grids", bbox=f"{lat0},{lon0},{lat1},{lon1}", **{"bbox-crs": "EPSG:4326"}
    )
    assert ids_of(crs84) == ids_of(latlon) == expected
    # a box drawn in metres (northing, easting) around one grid selects it and its neighbours
    e, n = pyproj.Transformer.from_crs(4326, 4549, always_xy=True).transform(
        *shapely.get_coordinates(grids.geometry.iloc[42].centroid).T
    )
    metres = items(client, "grids", bbox=f"{n[0] - 5},{e[0] - 5},{n[0] + 5},{e[0] + 5}",
                   **{"bbox-crs": EPSG + "4549"})  # fmt: skip
    assert ids_of(metres) == [grids["code"].iloc[42]]


# -- CQL2 against selections written here ----------------------------------------------------
G = gpd.GeoDataFrame
GRID_FILTERS: list[tuple[str, Callable[[G], Any]]] = [
    ("population > 500 AND district_name = '潍城区'",
     lambda g: (g.population > 500) & (g.district_name == "潍城区")),
    ("NOT (population < 600) OR households >= 300",
     lambda g: (g.population >= 600) | (g.households.notna() & (g.households >= 300))),
    ("name LIKE '%第0_网格'", lambda g: g.name.str.fullmatch(r".*第0.网格")),
    ("street_name LIKE '北关%' AND NOT name LIKE '%1_网格'",
     lambda g: g.street_name.str.startswith("北关") & ~g.name.str.fullmatch(r".*1.网格")),
    ("code IN ('370702001001001', '370702001001003', '370705001009001')",
     lambda g: g.code.isin(["370702001001001", "370702001001003", "370705001009001"])),
    ("population BETWEEN 500 AND 520", lambda g: g.population.between(500, 520)),
    ("population NOT BETWEEN 400 AND 800", lambda g: ~g.population.between(400, 800)),
    ("households * 3 < population",
     lambda g: g.households.notna() & (g.households.astype(float) * 3 < g.population)),
    ("officer_name IS NULL", lambda g: g.officer_name.isna()),
    # three-valued logic: a null officer is neither LIKE nor NOT LIKE (SQL's answer)
    ("NOT (officer_name LIKE '王%')",
     lambda g: g.officer_name.notna() & ~g.officer_name.fillna("").str.startswith("王")),
    ("officer_name LIKE '王%' OR officer_phone IS NULL",
     lambda g: g.officer_name.fillna("").str.startswith("王") | g.officer_phone.isna()),
    ("(district_name = '奎文区' OR district_name = '潍城区') AND population + 100 > 800",
     lambda g: g.district_name.isin(["奎文区", "潍城区"]) & (g.population + 100 > 800)),
    ("CASEI(community_name) = CASEI('清源园社区')", lambda g: g.community_name == "清源园社区"),
]  # fmt: skip


@pytest.mark.parametrize(("cql", "reference"), GRID_FILTERS, ids=[f for f, _ in GRID_FILTERS])
def test_cql2_selects_what_pandas_selects(
    client: TestClient, grids: Any, cql: str, reference: Callable[[G], Any]
) -> None:
    expected = grids.loc[np.asarray(reference(grids), dtype=bool), "code"].tolist()
    assert ids_of(items(client, "grids", filter=cql)) == expected


STALL_FILTERS: list[tuple[str, Callable[[G], Any]]] = [
    ("CASEI(code) LIKE 'xlp-370705-%'", lambda s: s.code.str.lower().str.startswith("xlp-370705-")),
    ("status IN ('suspended', 'relocated') OR opened < DATE('2022-01-01')",
     lambda s: s.status.isin(["suspended", "relocated"]) | (pd.to_datetime(s.opened) < "2022-01-01")),
    ("opened >= '2023-06-01' AND status <> 'active'",
     lambda s: (pd.to_datetime(s.opened) >= "2023-06-01") & (s.status != "active")),
]  # fmt: skip


@pytest.mark.parametrize(("cql", "reference"), STALL_FILTERS, ids=[f for f, _ in STALL_FILTERS])
def test_cql2_on_stalls(
    client: TestClient, stalls: Any, cql: str, reference: Callable[[G], Any]
) -> None:
    expected = stalls.loc[np.asarray(reference(stalls), dtype=bool), "code"].tolist()
    assert expected and ids_of(items(client, "stalls", filter=cql)) == expected


# -- CQL2 spatial functions against PostGIS ---------------------------------------------------
POLY = "POLYGON((119.10 36.69, 119.13 36.69, 119.13 36.72, 119.10 36.72, 119.10 36.69))"
LINE = "LINESTRING(119.08 36.70, 119.20 36.73)"


@pytest.fixture(scope="module")
def pg_grids(pg_reference_url: str, grids: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_reference_url, autocommit=True) as conn:
        load_table(conn, "ogc_grids", grids["code"].tolist(), grids.geometry.to_numpy(),
                   extra={"officer_name": [None if pd.isna(v) else v for v in grids["officer_name"]],
                          "population": grids["population"].astype(str).tolist()})  # fmt: skip
        yield conn


def _pg(conn: psycopg.Connection, where: str) -> list[str]:
    rows = conn.execute(f"SELECT code FROM ogc_grids WHERE {where} ORDER BY code").fetchall()
    return [r[0] for r in rows]


@pytest.mark.postgis
@pytest.mark.parametrize(
    ("cql", "sql", "params"),
    [
        (f"S_INTERSECTS(geometry, {POLY})", f"ST_Intersects(geom, 'SRID=4326;{POLY}')", {}),
        (f"S_WITHIN(geometry, {POLY})", f"ST_Within(geom, 'SRID=4326;{POLY}')", {}),
        (f"S_DISJOINT(geometry, {POLY}) AND population > 800",
         f"ST_Disjoint(geom, 'SRID=4326;{POLY}') AND population::int > 800", {}),
        (f"S_CROSSES(geometry, {LINE})", f"ST_Crosses(geom, 'SRID=4326;{LINE}')", {}),
        (f"S_OVERLAPS(geometry, {POLY})", f"ST_Overlaps(geom, 'SRID=4326;{POLY}')", {}),
        ("S_CONTAINS(geometry, POINT(119.16 36.71))",
         "ST_Contains(geom, 'SRID=4326;POINT(119.16 36.71)')", {}),
        ("S_INTERSECTS(geometry, BBOX(119.10, 36.69, 119.13, 36.72))",
         "ST_Intersects(geom, ST_MakeEnvelope(119.10, 36.69, 119.13, 36.72, 4326))", {}),
        # the same box given lat,lon in EPSG:4326 and northing,easting in EPSG:4549
        ("S_INTERSECTS(geometry, POLYGON((36.69 119.10, 36.69 119.13, 36.72 119.13, "
         "36.72 119.10, 36.69 119.10)))",
         f"ST_Intersects(geom, 'SRID=4326;{POLY}')", {"filter-crs": EPSG + "4326"}),
        ("S_INTERSECTS(geometry, POLYGON((4064000 420000, 4064000 422500, 4066500 422500, "
         "4066500 420000, 4064000 420000)))",
         "ST_Intersects(geom, ST_Transform('SRID=4549;POLYGON((420000 4064000, 422500 4064000, "
         "422500 4066500, 420000 4066500, 420000 4064000))'::geometry, 4326))",
         {"filter-crs": "EPSG:4549"}),
        ("NOT (officer_name LIKE '%某%') AND S_INTERSECTS(geometry, " + POLY + ")",
         f"NOT (officer_name LIKE '%某%') AND ST_Intersects(geom, 'SRID=4326;{POLY}')", {}),
    ],
)  # fmt: skip
def test_cql2_selects_what_postgis_selects(
    client: TestClient, pg_grids: psycopg.Connection, cql: str, sql: str, params: dict[str, str]
) -> None:
    expected = _pg(pg_grids, sql)
    assert ids_of(items(client, "grids", filter=cql, **params)) == expected
    assert expected or "officer" in cql  # the references select something


# -- property filters (queryables as parameters) ---------------------------------------------
def test_property_filters(client: TestClient, grids: Any, stalls: Any) -> None:
    expected = grids.loc[grids.district_name == "奎文区", "code"].tolist()
    assert ids_of(items(client, "grids", district_name="奎文区")) == expected
    assert (
        ids_of(items(client, "grids", population="626"))
        == grids.loc[grids.population == 626, "code"].tolist()
    )
    bikes = stalls.loc[stalls.services.str.contains("修车"), "code"].tolist()
    assert bikes and ids_of(items(client, "stalls", services="修车")) == bikes
    day = pd.Timestamp(stalls.opened.iloc[0])
    assert (
        ids_of(items(client, "stalls", opened=day.date().isoformat()))
        == stalls.loc[pd.to_datetime(stalls.opened) == day, "code"].tolist()
    )


# -- cases: public fields, datetime ----------------------------------------------------------
def test_cases_have_the_public_fields_of_the_cases_listing(
    api: tuple[TestClient, list[str]],
) -> None:
    client, filed = api
    ogc = items(client, "cases")
    listing = client.get("/api/v1/cases", params={"limit": 1000}).json()
    assert ids_of(ogc) == ids_of(listing) == filed[::-1]  # newest first
    for mine, theirs in zip(ogc["features"], listing["features"], strict=True):
        assert mine["properties"] == theirs["properties"]
        assert mine["geometry"]["coordinates"] == theirs["geometry"]["coordinates"]
        assert "phone" not in mine["properties"]
    overdue = [f["properties"]["overdue"] for f in ogc["features"]]
    assert overdue == [False, True, True, True]  # only the last (4 h limit) is not yet due
    coll = client.get("/ogc/collections/cases").json()
    assert coll["extent"]["temporal"]["interval"] == [
        ["2026-03-02T01:00:00Z", "2026-03-10T02:00:00Z"]
    ]


@pytest.mark.parametrize(
    ("value", "which"),
    [
        ("2026-03-05", [1, 2]),  # the whole day, Beijing time
        ("2026-03-05T12:00:00+08:00/..", [1, 2, 3]),
        ("../2026-03-05T14:30:00+08:00", [0, 1]),  # closed at the end
        ("2026-03-02T01:00:00Z", [0]),  # an instant: 09:00 Beijing
        ("2026-03-06/2026-03-09", []),
        ("/2026-03-02", [0]),
    ],
)
def test_cases_by_datetime(api: tuple[TestClient, list[str]], value: str, which: list[int]) -> None:
    client, filed = api
    body = items(client, "cases", datetime=value)
    assert sorted(ids_of(body)) == sorted(filed[i] for i in which)


def test_cases_by_cql2_times_and_nulls(api: tuple[TestClient, list[str]]) -> None:
    client, filed = api
    later = items(client, "cases", filter="requested_datetime > TIMESTAMP('2026-03-05T06:30:00Z')")
    assert sorted(ids_of(later)) == sorted(filed[2:])
    with_address = [i for i, c in enumerate(CASES) if c.address is not None]
    body = items(client, "cases", filter="NOT (address = '东风街')")  # null addresses: unknown
    assert ids_of(body) == [filed[i] for i in with_address if CASES[i].address != "东风街"]
    assert ids_of(items(client, "cases", overdue="false")) == [filed[3]]


# -- the other documents, HTML ----------------------------------------------------------------
def test_collections_describe_extent_crs_and_queryables(client: TestClient, grids: Any) -> None:
    coll = client.get("/ogc/collections/grids").json()
    assert coll["storageCrs"] == CRS84 and coll["crs"][0] == CRS84
    assert {EPSG + "4326", EPSG + "4490", EPSG + "4549"} <= set(coll["crs"])
    assert np.allclose(coll["extent"]["spatial"]["bbox"][0], grids.total_bounds, atol=1e-7)
    for lk in rel(coll, "items") + rel(coll, "http://www.opengis.net/def/rel/ogc/1.0/queryables"):
        assert client.get(urlsplit(lk["href"]).path).status_code == 200
    q = client.get("/ogc/collections/grids/queryables")
    assert q.headers["content-type"] == "application/schema+json"
    props = q.json()["properties"]
    assert props["population"]["type"] == "integer" and props["geometry"]["x-ogc-role"]
    assert props["officer_name"]["title"] == "网格员"
    units = items(client, "communities")
    by_code = grids.groupby("community_code")["population"].sum()
    assert {f["id"]: f["properties"]["population"] for f in units["features"]} == by_code.to_dict()


def test_html_pages_by_accept_and_f_escape_the_data(client: TestClient) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/grids",
                 "/ogc/collections/grids/queryables", "/ogc/collections/grids/items"):  # fmt: skip
        page = client.get(path, headers=browser)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<html lang="zh-CN">' in page.text
        assert (
            client.get(path, headers=browser, params={"f": "json"})
            .headers["content-type"]
            .endswith("json")
        )
    page = client.get("/ogc/collections/grids/items", params={"f": "html", "limit": 3}).text
    assert "&lt;script&gt;alert(&#34;网格&#34;)&lt;/script&gt;&amp;" in page
    assert HOSTILE not in page
    cases = client.get("/ogc/collections/cases/items", params={"f": "html"}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cases and "<script>alert(1)" not in cases
    code = quote("370702001001001")
    one = client.get(f"/ogc/collections/grids/items/{code}", params={"f": "html"})
    assert "清源园社区第01网格" in one.text and one.headers["content-crs"] == f"<{CRS84}>"


# -- every conformance class claimed is served ------------------------------------------------
def _props(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [f["properties"] for f in body["features"]]


def _core(c: TestClient) -> None:
    coll = c.get("/ogc/collections/stalls").json()
    body = c.get(urlsplit(rel(coll, "items", GEOJSON)[0]["href"]).path).json()
    assert body["type"] == "FeatureCollection" and body["numberReturned"] == 10
    one = c.get(f"/ogc/collections/stalls/items/{body['features'][0]['id']}").json()
    assert one["id"] == body["features"][0]["id"] and rel(one, "collection")


def _oas30(c: TestClient) -> None:
    paths = c.get("/openapi.json").json()["paths"]
    assert {"/ogc", "/ogc/conformance", "/ogc/collections/{collectionId}/items/{featureId}"} <= set(
        paths
    )


def _html(c: TestClient) -> None:
    for path in ("/ogc", "/ogc/collections/stalls/items"):
        assert c.get(path, params={"f": "html"}).headers["content-type"].startswith("text/html")


def _geojson(c: TestClient) -> None:
    r = c.get("/ogc/collections/stalls/items/XLP-370702-001")
    assert r.headers["content-type"] == GEOJSON and r.json()["geometry"]["type"] == "Point"


def _crs(c: TestClient) -> None:
    r = c.get("/ogc/collections/stalls/items", params={"crs": EPSG + "4549", "limit": 1})
    assert r.headers["content-crs"] == f"<{EPSG}4549>"
    northing, easting = r.json()["features"][0]["geometry"]["coordinates"]
    assert 4.0e6 < northing < 4.2e6 and 3.0e5 < easting < 6.0e5  # CGCS2000 GK CM 120E, N first


def _queryables(c: TestClient) -> None:
    schema = c.get("/ogc/collections/vendor_clusters/queryables").json()
    assert schema["type"] == "object" and schema["properties"]["kind"]["enum"]


def _query_parameters(c: TestClient) -> None:
    kinds = {p["kind"] for p in _props(items(c, "vendor_clusters", kind="夜市"))}
    assert kinds == {"夜市"}


def _filter(c: TestClient) -> None:
    body = items(c, "vendor_clusters", filter="pitches > 60", **{"filter-lang": "cql2-text"})
    assert body["features"] and all(p["pitches"] > 60 for p in _props(body))


def _basic_cql2(c: TestClient) -> None:
    body = items(c, "grids", filter="population >= 800 AND NOT (officer_name IS NULL)")
    assert body["features"]
    assert all(p["population"] >= 800 and p["officer_name"] for p in _props(body))


def _advanced(c: TestClient) -> None:
    like = _props(items(c, "stalls", filter="name LIKE '%小蓝棚%'"))
    inn = _props(items(c, "stalls", filter="status IN ('suspended', 'relocated')"))
    between = _props(items(c, "vendor_clusters", filter="pitches BETWEEN 40 AND 60"))
    assert like and inn and between
    assert all("小蓝棚" in p["name"] for p in like)
    assert {p["status"] for p in inn} == {"suspended", "relocated"}
    assert all(40 <= p["pitches"] <= 60 for p in between)


def _casei(c: TestClient) -> None:
    body = items(c, "stalls", filter="CASEI(code) = CASEI('xlp-370702-001')")
    assert ids_of(body) == ["XLP-370702-001"]


def _s_intersects(c: TestClient) -> None:
    located = c.get("/api/v1/grids/locate", params={"lon": 119.16, "lat": 36.71}).json()
    body = items(c, "grids", filter="S_INTERSECTS(geometry, POINT(119.16 36.71))")
    assert ids_of(body) == [located["grid"]["code"]]


def _spatial_functions(c: TestClient) -> None:
    everything = "POLYGON((118 35, 121 35, 121 38, 118 38, 118 35))"
    assert len(items(c, "districts", filter=f"S_WITHIN(geometry, {everything})")["features"]) == 4
    assert not items(c, "districts", filter=f"S_DISJOINT(geometry, {everything})")["features"]
    assert not items(c, "districts", filter=f"S_CONTAINS(geometry, {everything})")["features"]
    assert not items(c, "districts", filter=f"S_OVERLAPS(geometry, {everything})")["features"]
    one = items(c, "districts")["features"][0]
    wkt = shapely.geometry.shape(one["geometry"]).wkt
    assert ids_of(items(c, "districts", filter=f"S_EQUALS(geometry, {wkt})")) == [one["id"]]
    touching = items(c, "districts", filter=f"S_TOUCHES(geometry, {wkt})")
    assert touching["features"] and one["id"] not in ids_of(touching)
    crossing = items(
        c, "grids", filter="S_CROSSES(geometry, LINESTRING(119.08 36.70, 119.2 36.73))"
    )
    assert crossing["features"]


CLASS_CHECKS: dict[str, Callable[[TestClient], None]] = {
    "ogcapi-features-1/1.0/conf/core": _core,
    "ogcapi-features-1/1.0/conf/oas30": _oas30,
    "ogcapi-features-1/1.0/conf/html": _html,
    "ogcapi-features-1/1.0/conf/geojson": _geojson,
    "ogcapi-features-2/1.0/conf/crs": _crs,
    "ogcapi-features-3/1.0/conf/queryables": _queryables,
    "ogcapi-features-3/1.0/conf/queryables-query-parameters": _query_parameters,
    "ogcapi-features-3/1.0/conf/filter": _filter,
    "ogcapi-features-3/1.0/conf/features-filter": _filter,
    "cql2/1.0/conf/cql2-text": _basic_cql2,
    "cql2/1.0/conf/basic-cql2": _basic_cql2,
    "cql2/1.0/conf/advanced-comparison-operators": _advanced,
    "cql2/1.0/conf/case-insensitive-comparison": _casei,
    "cql2/1.0/conf/basic-spatial-functions": _s_intersects,
    "cql2/1.0/conf/spatial-functions": _spatial_functions,
}


def test_every_conformance_class_claimed_is_served(client: TestClient) -> None:
    claimed = client.get("/ogc/conformance").json()["conformsTo"]
    assert all(uri.startswith("http://www.opengis.net/spec/") for uri in claimed)
    assert {uri.removeprefix("http://www.opengis.net/spec/") for uri in claimed} == set(
        CLASS_CHECKS
    )
    for name, check in CLASS_CHECKS.items():
        try:
            check(client)
        except AssertionError as exc:
            raise AssertionError(f"conformance class {name}: {exc}") from exc


@pytest.mark.postgis
def test_the_postgis_backend_answers_the_same(
    pg_shared_backend: Any, shared_backend: Any, tmp_path: Path
) -> None:
    """Filters run on the loaded snapshot, so both backends answer alike (the same data)."""
    queries = [
        ("grids", {"filter": "population > 700 AND S_INTERSECTS(geometry, " + POLY + ")"}),
        ("communities", {"filter": "population BETWEEN 3000 AND 6000", "crs": "EPSG:4549"}),
        ("stalls", {"services": "修鞋", "bbox": "36.68,119.10,36.73,119.17",
                    "bbox-crs": "EPSG:4326"}),
    ]  # fmt: skip
    answers = []
    for backend in (shared_backend, pg_shared_backend):
        settings = Settings(data_dir=tmp_path, public_base_url=BASE, case_escalation_poll_s=3600)
        store = SnapshotStore(snapshot_of(backend.load(), "weifang-central"))
        c = TestClient(create_app(settings, store, backend))  # no lifespan: only reads
        answers.append([items(c, cid, **params)["features"] for cid, params in queries])
    files, postgis = answers
    assert all(files) and files == postgis
