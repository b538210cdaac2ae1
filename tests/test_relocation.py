"""A relocated stall records where it went, on both backends: officers write it (with the status,
in their own grids), edits refuse a relocation that does not say where, stored data without one
still loads (warned), and the API, the stall page and its navigation buttons send people to the
new place.

References are independent of the service: the raw GeoJSON (``tests.rawdata``), GCJ-02 / BD-09
from ``prcoords``, distances from ``pyproj.Geod``; what is stored is read back from the backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import prcoords
import psycopg
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.layers import validate_layer
from geo_service.core.principal import Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.storage.base import Backend
from geo_service.storage.postgis import PostGISBackend, layer_ddl
from geo_service.web.app import create_app
from tests import rawdata
from tests.backends import PgDatabases
from tests.keys import key_for

GEOD = pyproj.Geod(ellps="WGS84")
STALLS = rawdata.points("stalls")
BY_CODE = {s["code"]: s for s in STALLS}
GRIDS = rawdata.geometries("grids")


def grid_of(code: str) -> str:
    p = shapely.Point(BY_CODE[code]["lon"], BY_CODE[code]["lat"])
    return min(c for c, g in GRIDS.items() if g.covers(p))


ACTIVE = [s["code"] for s in STALLS if s["status"] == "active"]
OLD = ACTIVE[0]  # the stall that moves
NEW = next(c for c in ACTIVE[1:] if grid_of(c) != grid_of(OLD))  # the stall at the new place


@pytest.fixture
def api(backend: Backend, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, backend=backend)) as c:
        yield c


@pytest.fixture
def officer(backend: Backend) -> str:
    return key_for(backend, "officer-reloc", Role.officer, grids=[grid_of(OLD)])


@pytest.fixture
def admin(backend: Backend) -> str:
    return key_for(backend, "admin-reloc", Role.admin)


def hdr(key: str, version: int) -> dict[str, str]:
    return {"X-API-Key": key, "If-Match": f'W/"{version}"'}


def nav_points(html: str) -> dict[str, tuple[float, float]]:
    """(lon, lat) of each navigation button, in the system of its app."""
    out = {}
    for app, href in re.findall(r'<a class="btn" data-app="(\w+)"[^>]* href="([^"]+)"', html):
        q = parse_qs(urlsplit(unescape(href)).query)
        if app == "amap":
            assert q["coordinate"] == ["gaode"]
            lon, lat = map(float, q["position"][0].split(","))
        elif app == "baidu":
            assert q["coord_type"] == ["bd09ll"]
            lat, lon = map(float, q["location"][0].split(","))
        else:
            lat, lon = map(float, q["ll"][0].split(","))
        out[app] = (lon, lat)
    return out


def assert_navigates_to(html: str, lon: float, lat: float) -> None:
    """Every button puts the pin on (lon, lat) WGS84, converted by prcoords, within 0.5 m."""
    g = prcoords.wgs_gcj(prcoords.Coords(lat, lon))
    b = prcoords.wgs_bd(prcoords.Coords(lat, lon))
    want = {"amap": (g.lon, g.lat), "apple": (g.lon, g.lat), "baidu": (b.lon, b.lat)}
    got = nav_points(html)
    assert set(got) == set(want), got
    for app, (x, y) in got.items():
        assert GEOD.inv(x, y, *want[app])[2] < 0.5, (app, (x, y), want[app])


def test_officer_records_a_relocation_to_another_stall_and_everything_follows(
    api: TestClient, backend: Backend, officer: str
) -> None:
    # Saying "relocated" without where is refused, and nothing changes.
    r = api.patch(f"/api/v1/stalls/{OLD}", json={"status": "relocated"}, headers=hdr(officer, 1))
    assert r.status_code == 422, r.text
    assert "moved_to" in r.text
    assert backend.get(LayerName.stalls, OLD).properties["status"] == "active"  # type: ignore[union-attr]

    r = api.patch(f"/api/v1/stalls/{OLD}", json={"status": "relocated", "moved_to_code": NEW},
                  headers=hdr(officer, 1))  # fmt: skip
    assert r.status_code == 200, r.text
    stored = backend.get(LayerName.stalls, OLD)
    assert stored is not None
    assert (stored.properties["status"], stored.properties["moved_to_code"]) == ("relocated", NEW)

    new = BY_CODE[NEW]
    got = api.get(f"/api/v1/stalls/{OLD}").json()["properties"]
    assert got["moved_to"]["code"] == NEW
    assert (got["moved_to"]["lon"], got["moved_to"]["lat"]) == pytest.approx(
        (new["lon"], new["lat"]), abs=1e-7
    )
    # nearest: skipped by default; listed with include_inactive, saying where it went
    q = {"lon": BY_CODE[OLD]["lon"], "lat": BY_CODE[OLD]["lat"], "k": 5}
    codes = [
        x["stall"]["code"] for x in api.get("/api/v1/stalls/nearest", params=q).json()["results"]
    ]
    assert OLD not in codes
    res = api.get("/api/v1/stalls/nearest", params={**q, "include_inactive": "true"}).json()
    first = res["results"][0]["stall"]
    assert first["code"] == OLD and first["moved_to"]["code"] == NEW

    # the page: 已迁址, a link to the new stall's page, and every button goes to the new place
    html = api.get(f"/s/{OLD}").text
    assert "已迁址" in html and f'href="/s/{NEW}"' in html
    assert_navigates_to(html, new["lon"], new["lat"])


def test_admin_records_a_new_point_from_amap_and_the_page_navigates_there(
    api: TestClient, backend: Backend, admin: str
) -> None:
    # The new place picked on Amap (GCJ-02), 400 m east or so: stored in WGS84.
    old = BY_CODE[OLD]
    wlon, wlat, _ = GEOD.fwd(old["lon"], old["lat"], 90, 400)
    gcj = prcoords.wgs_gcj(prcoords.Coords(wlat, wlon))
    body = {"status": "relocated", "moved_to_lon": gcj.lon, "moved_to_lat": gcj.lat,
            "moved_to_address": "示例路 88 号", "crs": "gcj02"}  # fmt: skip
    r = api.patch(f"/api/v1/stalls/{OLD}", json=body, headers=hdr(admin, 1))
    assert r.status_code == 200, r.text
    props = backend.get(LayerName.stalls, OLD).properties  # type: ignore[union-attr]
    back = prcoords.gcj_wgs_bored(gcj)
    assert GEOD.inv(props["moved_to_lon"], props["moved_to_lat"], back.lon, back.lat)[2] < 0.05
    assert props["moved_to_address"] == "示例路 88 号"

    html = api.get(f"/s/{OLD}").text
    assert "已迁址" in html and "示例路 88 号" in html and "新址未登记" not in html
    assert_navigates_to(html, props["moved_to_lon"], props["moved_to_lat"])

    # back in business at the old spot: the destination is no longer read
    r = api.patch(f"/api/v1/stalls/{OLD}", json={"status": "active"}, headers=hdr(admin, 2))
    assert r.status_code == 200, r.text
    html = api.get(f"/s/{OLD}").text
    assert "已迁址" not in html
    assert_navigates_to(html, old["lon"], old["lat"])


@pytest.mark.parametrize(
    "body",
    [
        {"status": "relocated", "moved_to_lon": 119.16},  # lon without lat
        {"status": "relocated", "moved_to_lon": 119.16, "moved_to_lat": 136.7},  # not degrees
        {"status": "relocated", "moved_to_code": OLD},  # to itself
        {"status": "relocated", "moved_to_code": "not a code"},
        {"status": "relocated", "moved_to_address": "只有地址"},  # no place to navigate to
    ],
)
def test_bad_relocations_get_422_and_change_nothing(
    api: TestClient, backend: Backend, officer: str, body: dict[str, Any]
) -> None:
    rev = backend.revisions()
    r = api.patch(f"/api/v1/stalls/{OLD}", json=body, headers=hdr(officer, 1))
    assert r.status_code == 422, r.text
    assert backend.revisions() == rev


def test_officer_may_not_relocate_stalls_of_other_grids(
    api: TestClient, backend: Backend, officer: str
) -> None:
    other = next(c for c in ACTIVE if grid_of(c) != grid_of(OLD))
    r = api.patch(f"/api/v1/stalls/{other}", json={"status": "relocated", "moved_to_code": NEW},
                  headers=hdr(officer, 1))  # fmt: skip
    assert r.status_code == 403


def test_unrecorded_relocations_load_with_a_warning_and_say_so(client: TestClient) -> None:
    """The bundled data's relocated stalls have no destination: they still load (strict
    validation too, as `validate` and `import` run it), warned; their page says 新址未登记 and
    offers no button to the old spot."""
    relocated = [s["code"] for s in STALLS if s["status"] == "relocated"]
    assert relocated
    frame = gpd.read_file(rawdata.DATA_DIR / "stalls.geojson")
    for strict in (False, True):
        kept, report = validate_layer(frame, LayerName.stalls, strict=strict)
        assert len(kept) == len(frame) and report.ok
        warned = {
            p.code for p in report.problems if p.action == "warning" and "moved_to" in p.message
        }
        assert warned == set(relocated)
    for code in relocated:
        html = client.get(f"/s/{code}").text
        assert "已迁址" in html and "新址未登记" in html
        assert nav_points(html) == {}


def test_migrate_adds_the_relocation_columns_to_an_older_table(
    pg_databases: PgDatabases,
) -> None:
    url = pg_databases.create("reloc_migrate")
    from dataclasses import replace

    from geo_service.core.schema import MOVED_TO_FIELDS
    from geo_service.core.schema import STALLS as STALL_SCHEMA

    old = replace(
        STALL_SCHEMA, fields=tuple(f for f in STALL_SCHEMA.fields if f.name not in MOVED_TO_FIELDS)
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(layer_ddl(old))
        conn.execute(
            "INSERT INTO stalls (code, name, services, hours, status, geom) VALUES "
            "('XLP-370705-001', 'x', '{修鞋}', '08:00-18:00', 'relocated', "
            "ST_SetSRID(ST_MakePoint(119.16, 36.71), 4326))"
        )
    backend = PostGISBackend(url, pool_size=1)
    try:
        backend.migrate()
        with psycopg.connect(url) as conn:
            cols = {
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'stalls'"
                )
            }
            versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        assert set(MOVED_TO_FIELDS) <= cols and 2 in versions
        rec = backend.get(LayerName.stalls, "XLP-370705-001")
        assert rec is not None and rec.properties["moved_to_code"] is None
        loaded = backend.load([LayerName.stalls])
        assert len(loaded.frames[LayerName.stalls]) == 1  # kept, with a warning
    finally:
        backend.close()
