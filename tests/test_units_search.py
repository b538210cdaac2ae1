"""Officers: what lies in a grid / community / street, grids by officer, and one search —
checked against data/ read with json and shapely (tests/rawdata.py), never the service's own
indexes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot
from geo_service.storage.base import Backend
from geo_service.storage.files import FilesBackend
from geo_service.web.app import create_app
from geo_service.web.models import UnitContents
from tests import rawdata


def containing_grid(lon: float, lat: float) -> str | None:
    """The grid covering the point, the smallest code on a shared edge (brute force)."""
    p = shapely.Point(lon, lat)
    codes = sorted(c for c, g in rawdata.geometries("grids").items() if g.covers(p))
    return codes[0] if codes else None


def expected_in(layer: str, code: str) -> dict[str, tuple[str, str]]:
    """code → (status, containing grid) of every point of ``layer`` inside the unit."""
    out = {}
    for row in rawdata.points(layer):
        g = containing_grid(row["lon"], row["lat"])
        if g is not None and g.startswith(code):
            out[row["code"]] = (row["status"], g)
    return out


def unit_name(code: str) -> str:
    col = {15: "name", 12: "community_name", 9: "street_name"}[len(code)]
    key = {15: "code", 12: "community_code", 9: "street_code"}[len(code)]
    [name] = {p[col] for p in rawdata.properties("grids").values() if p[key] == code}
    return name


RELOCATED = "XLP-370705-013"  # relocated in data/stalls.geojson


@pytest.mark.parametrize("cut,level", [(15, "grid"), (12, "community"), (9, "street")])
def test_contents_of_a_grid_community_street(client: TestClient, cut: int, level: str) -> None:
    stall = next(r for r in rawdata.points("stalls") if r["code"] == RELOCATED)
    assert stall["status"] == "relocated"
    code = containing_grid(stall["lon"], stall["lat"])[:cut]  # type: ignore[index]
    r = client.get(f"/api/v1/units/{code}/contents")
    assert r.status_code == 200, r.text
    body = r.json()
    UnitContents.model_validate(body)
    assert body["unit"] == {"code": code, "name": unit_name(code), "level": level}
    assert body["grids"] == sum(1 for c in rawdata.properties("grids") if c.startswith(code))
    for layer in ("stalls", "vendor_clusters"):
        got = {f["code"]: (f["status"], f["grid_code"]) for f in body[layer]}
        assert got == expected_in(layer, code)
        for f in body[layer]:
            assert f["relocated"] == (f["status"] == "relocated")
    assert {f["code"]: f["relocated"] for f in body["stalls"]}[RELOCATED] is True
    # data/ records no destination for it: moved_to is null, as for every stall not relocated
    assert all(f["moved_to"] is None for f in body["stalls"])
    # the shared dataset has no cases
    assert body["cases"] == {
        "open": 0, "overdue": 0, "limit": 100, "truncated": False, "items": []
    }  # fmt: skip


def test_a_street_holds_its_communities(client: TestClient) -> None:
    street = client.get("/api/v1/units/370705001/contents").json()
    comms = {p["community_code"] for p in rawdata.properties("grids").values()}
    total = 0
    for c in sorted(x for x in comms if x.startswith("370705001")):
        total += len(client.get(f"/api/v1/units/{c}/contents").json()["stalls"])
    assert total == len(street["stalls"]) == len(expected_in("stalls", "370705001"))


@pytest.mark.parametrize(
    "code,status",
    [("370705001999", 404), ("999999999", 404), ("370705001009001999", 422), ("3707a", 422)],
)
def test_unknown_or_malformed_unit(client: TestClient, code: str, status: int) -> None:
    r = client.get(f"/api/v1/units/{code}/contents")
    assert r.status_code == status
    assert "detail" in r.json()


def test_contents_refuse_unknown_parameters(client: TestClient) -> None:
    r = client.get("/api/v1/units/370705001/contents", params={"layer": "stalls"})
    assert r.status_code == 400


@pytest.fixture
def api(backend: Backend, settings: Settings) -> Iterator[TestClient]:
    s = settings.model_copy(update={"rate_limit_enabled": False})
    if isinstance(backend, FilesBackend):
        s = s.model_copy(update={"data_dir": backend.data_dir})
    else:
        import tempfile

        s = s.model_copy(update={"media_dir": Path(tempfile.mkdtemp(prefix="geo-media-"))})
    with TestClient(create_app(s, backend=backend)) as c:
        yield c


def test_open_cases_are_counted_in_grid_community_and_street(api: TestClient) -> None:
    grid = "370705001009001"  # 鸿福北社区第01网格
    p = shapely.point_on_surface(rawdata.geometries("grids")[grid])
    assert containing_grid(p.x, p.y) == grid
    r = api.post(
        "/open311/v2/requests.json",
        data={"service_code": "JM01", "description": "门口占道摆摊", "lat": p.y, "long": p.x},
    )
    assert r.status_code == 201, r.text
    case_id = r.json()[0]["service_request_id"]
    for code in (grid, grid[:12], grid[:9]):
        body = api.get(f"/api/v1/units/{code}/contents").json()
        UnitContents.model_validate(body)
        cases = body["cases"]
        assert (cases["open"], cases["overdue"], cases["truncated"]) == (1, 0, False)
        [item] = cases["items"]
        # public fields only: never the description, the reporter's phone or the photo
        assert set(item) == {
            "id", "service_code", "category", "status", "status_text", "deadline", "overdue",
            "lon", "lat",
        }  # fmt: skip
        assert item["id"] == case_id
        assert (item["service_code"], item["category"], item["status"]) == (
            "JM01", "占道经营", "reported"
        )  # fmt: skip
        assert (item["lon"], item["lat"]) == pytest.approx((p.x, p.y), abs=1e-7)
        assert item["overdue"] is False and item["deadline"].endswith("+08:00")
    other = next(c for c in rawdata.properties("grids") if not c.startswith(grid[:9]))
    cases = api.get(f"/api/v1/units/{other}/contents").json()["cases"]
    assert (cases["open"], cases["items"]) == (0, [])


def test_open_cases_overdue_first_capped_with_exact_counts(
    backend: Backend, snapshot: Snapshot
) -> None:
    """Five cases filed 30 days ago (long overdue: JM01 allows 2 working hours), three filed now
    and one handled (open, no deadline) in one grid, two in another street: the grid, its
    community and its street list them overdue first; a cap below the overdue count still
    counts every overdue case (the store is bisected, not read whole)."""
    from geo_service.analysis.unitcontents import open_cases
    from geo_service.core.cases import Action, ServiceCatalogue
    from geo_service.core.principal import Principal, Role
    from geo_service.core.settings import BUNDLED_CASE_SERVICES
    from geo_service.domain.casedesk import CaseDesk
    from geo_service.domain.cases import Report
    from geo_service.runtime import open_case_store

    store = open_case_store(backend)
    store.migrate()
    services = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
    now = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
    clock = {"at": now - timedelta(days=30)}
    desk = CaseDesk(store, services, lambda: snapshot, clock=lambda: clock["at"])
    grid = "370705001009001"
    p = shapely.point_on_surface(rawdata.geometries("grids")[grid])
    other = next(c for c in sorted(rawdata.properties("grids")) if not c.startswith(grid[:9]))
    q = shapely.point_on_surface(rawdata.geometries("grids")[other])

    def file(pt: Any, k: int) -> str:
        report = Report("JM01", f"占道 {k}", pt.x + k * 1e-6, pt.y, "wgs84")
        return desk.file(report).case.id

    late = [file(p, k) for k in range(5)]
    file(q, 0)
    clock["at"] = now - timedelta(minutes=5)
    fresh = [file(p, k) for k in range(5, 9)]
    file(q, 1)
    admin = Principal(Role.admin, "admin")
    for step in ("register", "dispatch", "handle"):
        desk.act(fresh[-1], Action(step), admin)
    clock["at"] = now
    for code in (grid, grid[:12], grid[:9]):
        full = open_cases(store, services, code, now, limit=50)
        ids = [c["id"] for c in full["items"]]
        assert (full["open"], full["overdue"], full["truncated"]) == (9, 5, False)
        assert set(ids[:5]) == set(late) and set(ids[5:8]) == set(fresh[:3])
        assert ids[8] == fresh[-1] and full["items"][8]["deadline"] is None
        assert [c["overdue"] for c in full["items"]] == [True] * 5 + [False] * 4
        deadlines = [c["deadline"] for c in full["items"][:8]]
        assert deadlines == sorted(deadlines)
        for cap in (2, 5, 6):
            some = open_cases(store, services, code, now, limit=cap)
            assert (some["open"], some["overdue"], some["limit"]) == (9, 5, cap)
            assert some["truncated"] and [c["id"] for c in some["items"]] == ids[:cap]
    everything_late = open_cases(store, services, grid, now + timedelta(days=60), limit=2)
    assert (everything_late["open"], everything_late["overdue"]) == (9, 8)
    assert open_cases(store, services, other, now, limit=1)["overdue"] == 1


def grid_codes(client: TestClient, **params: Any) -> tuple[list[str], int]:
    r = client.get("/api/v1/grids", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    return [f["id"] for f in body["features"]], body["numberMatched"]


def test_grids_by_officer_name_or_phone(client: TestClient) -> None:
    props = rawdata.properties("grids")
    some = props["370705001009001"]
    surname = some["officer_name"][0]
    want = sorted(c for c, p in props.items() if surname in (p.get("officer_name") or ""))
    assert 1 < len(want) < len(props)
    assert grid_codes(client, officer=surname) == (want, len(want))
    full = some["officer_name"]
    want_full = sorted(
        c
        for c, p in props.items()
        if p.get("officer_name") == full or full in (p.get("officer_name") or "")
    )
    assert grid_codes(client, officer=full)[0] == want_full
    phone = some["officer_phone"]
    by_phone = sorted(c for c, p in props.items() if p.get("officer_phone") == phone)
    assert "370705001009001" in by_phone
    assert grid_codes(client, officer=phone)[0] == by_phone
    assert grid_codes(client, officer=re.sub(r"\D", "", phone))[0] == by_phone
    assert grid_codes(client, officer=" ".join(re.findall(r"\d+", phone)))[0] == by_phone
    assert grid_codes(client, officer=re.sub(r"\D", "", phone)[:-1]) == ([], 0)  # exact only
    assert grid_codes(client, officer="没有这个人") == ([], 0)
    # combined with a unit filter
    street = grid_codes(client, officer=surname, street="370705001")[0]
    assert street == [c for c in want if c.startswith("370705001")]


def raw_names() -> list[tuple[str, str, str]]:
    """(kind, code, name) of every searchable feature, from the raw files."""
    grids = rawdata.properties("grids").values()
    out = [("grid", p["code"], p["name"]) for p in grids]
    out += sorted({("community", p["community_code"], p["community_name"]) for p in grids})
    out += sorted({("street", p["street_code"], p["street_name"]) for p in grids})
    out += [("stall", r["code"], r["name"]) for r in rawdata.points("stalls")]
    out += [("vendor_cluster", r["code"], r["name"]) for r in rawdata.points("vendor_clusters")]
    return out


def community_code(name: str) -> str:
    [code] = {
        p["community_code"]
        for p in rawdata.properties("grids").values()
        if p["community_name"] == name
    }
    return code


def find(client: TestClient, q: str, limit: int = 50) -> dict[str, Any]:
    r = client.get("/api/v1/search", params={"q": q, "limit": limit})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["白浪新村社区", "鸿福北"])
def test_search_by_chinese_name(client: TestClient, name: str) -> None:
    body = find(client, name)
    want = {(k, c) for k, c, n in raw_names() if name in n}
    assert body["total"] == len(want) > 1
    assert {(h["kind"], h["code"]) for h in body["results"]} == want
    first = body["results"][0]
    full = name if name.endswith("社区") else name + "社区"
    assert (first["kind"], first["code"], first["name"]) == (
        "community",
        community_code(full),
        full,
    )
    assert first["match"] == "name_prefix"
    for h in body["results"]:
        if h["kind"] == "grid":
            assert h["link"] == f"/maps/grids/{h['code']}"
            pt = shapely.Point(h["lon"], h["lat"])
            assert rawdata.geometries("grids")[h["code"]].covers(pt)


@pytest.mark.parametrize(
    "q,community,match",
    [
        ("bailangxincun", "白浪新村社区", "pinyin"),
        ("BaiLang XinCun", "白浪新村社区", "pinyin"),
        ("blxc", "白浪新村社区", "initials"),
        ("hongfubei", "鸿福北社区", "pinyin"),
        ("hfb", "鸿福北社区", "initials"),
    ],
)
def test_search_by_pinyin_and_initials(
    client: TestClient, q: str, community: str, match: str
) -> None:
    body = find(client, q)
    code = community_code(community)
    hits = {h["code"]: h for h in body["results"]}
    assert hits[code]["match"] == match and hits[code]["name"] == community
    # every grid of the community is found too
    grids = [c for c, p in rawdata.properties("grids").items() if p["community_code"] == code]
    assert set(grids) <= set(hits)


def test_search_by_code(client: TestClient) -> None:
    stall = rawdata.points("stalls")[5]
    body = find(client, stall["code"].lower())
    h = body["results"][0]
    assert (h["kind"], h["code"], h["match"]) == ("stall", stall["code"], "code")
    assert h["link"] == f"/s/{stall['code']}"
    assert (h["lon"], h["lat"]) == pytest.approx((stall["lon"], stall["lat"]), abs=1e-7)
    street = find(client, "370705001", limit=5)
    assert street["results"][0]["kind"] == "street" and street["results"][0]["code"] == "370705001"
    prefixed = {c for k, c, _ in raw_names() if c.startswith("370705001")}
    assert street["total"] == len(prefixed)
    assert len(street["results"]) == 5


def test_nonsense_finds_nothing_and_limit_is_bounded(client: TestClient) -> None:
    for q in ("qqqzzzxx", "不存在的地方", "999999999999999"):
        assert find(client, q) == {"query": q, "total": 0, "results": []}
    assert len(find(client, "社区", limit=3)["results"]) == 3
    assert client.get("/api/v1/search", params={"q": "社区", "limit": 51}).status_code == 422
    assert client.get("/api/v1/search", params={"q": "社区", "limit": 0}).status_code == 422
    assert client.get("/api/v1/search", params={"q": ""}).status_code == 422
    assert client.get("/api/v1/search", params={"q": "x" * 51}).status_code == 422
    assert client.get("/api/v1/search", params={"q": "社区", "kind": "grid"}).status_code == 400
