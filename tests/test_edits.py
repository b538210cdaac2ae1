"""Edits through the API, on both backends: roles, versions (ETag / If-Match), validation, audit.

References are independent of the service: which grid a stall lies in comes from the raw files
read with json + shapely (``tests.rawdata``), GCJ-02 conversions from ``prcoords``, and what is
stored is read back from the backend itself, not from the answer of the request that wrote it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.principal import Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.storage.audit import AuditQuery
from geo_service.storage.base import Backend
from geo_service.web.app import create_app
from tests import rawdata
from tests.keys import key_for


def stall_grid(code: str) -> str:
    """The grid a stall lies in, from the raw files (smallest code on a shared edge)."""
    p = rawdata.geometries("stalls")[code]
    return min(c for c, g in rawdata.geometries("grids").items() if g.covers(p))


def grid_officer(grid: str) -> str:
    return str(rawdata.properties("grids")[grid]["officer_name"])


STALLS = sorted(rawdata.properties("stalls"))
S1 = STALLS[0]
G1 = stall_grid(S1)
# A stall in a grid of another officer: outside both officer keys' rights.
S2 = next(s for s in STALLS if grid_officer(stall_grid(s)) != grid_officer(G1))
G2 = stall_grid(S2)


@pytest.fixture
def api(backend: Backend, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, backend=backend)) as c:
        yield c


@pytest.fixture
def keys(backend: Backend) -> dict[str, str]:
    return {
        "admin": key_for(backend, "admin-wang", Role.admin),
        "officer": key_for(backend, "officer-li", Role.officer, grids=[G1]),
        "named": key_for(backend, "officer-by-name", Role.officer, officer=grid_officer(G1)),
    }


def hdr(key: str | None = None, version: int | str | None = None) -> dict[str, str]:
    h = {}
    if key is not None:
        h["X-API-Key"] = key
    if version is not None:
        h["If-Match"] = version if isinstance(version, str) else f'W/"{version}"'
    return h


def stored(backend: Backend, layer: LayerName, code: str) -> dict[str, Any]:
    rec = backend.get(layer, code)
    assert rec is not None
    return {**rec.properties, "geometry": rec.geometry}


def audit_count(backend: Backend) -> int:
    return backend.audit(AuditQuery(limit=None))[1]


NEW_STALL = {"code": "XLP-370705-999", "name": "x", "services": ["修鞋"], "hours": "08:00-18:00",
             "status": "active", "lon": 119.16, "lat": 36.71}  # fmt: skip
WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v1/stalls", NEW_STALL),
    ("PATCH", f"/api/v1/stalls/{S1}", {"status": "suspended"}),
    ("DELETE", f"/api/v1/stalls/{S1}", None),
    ("PATCH", "/api/v1/vendor-clusters/TDQ-370702-01", {"hours": "06:00-09:00"}),
    ("DELETE", "/api/v1/vendor-clusters/TDQ-370702-01", None),
    ("PATCH", f"/api/v1/grids/{G1}", {"officer_name": "张三"}),
]  # fmt: skip


def test_no_key_or_a_wrong_key_gets_401_and_changes_nothing(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    before = {code: stored(backend, LayerName.stalls, code) for code in (S1,)}
    version = backend.revisions()
    admin = keys["admin"]
    key_id = admin.split("_")[1]
    wrong = [
        None,
        "not-a-key",
        f"gsk_{key_id}_{'x' * 32}",  # a real key's id with the wrong secret
        "gsk_0000000000_" + admin.split("_", 2)[2],  # a real secret under an unknown id
    ]
    for key in wrong:
        for method, path, body in WRITES:
            r = api.request(method, path, json=body, headers=hdr(key, 1))
            assert r.status_code == 401, (method, path, key, r.text)
            assert "X-API-Key" in r.json()["detail"] or "unknown" in r.json()["detail"]
        r = api.put("/api/v1/layers/stalls", content=b"{}", headers=hdr(key))
        assert r.status_code == 401
        assert api.get("/api/v1/audit", headers=hdr(key)).status_code == 401
    assert backend.revisions() == version
    assert {S1: stored(backend, LayerName.stalls, S1)} == before
    assert backend.get(LayerName.stalls, "XLP-370705-999") is None
    assert audit_count(backend) == 0


def test_officer_changes_status_and_hours_of_stalls_in_own_grids_only(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    officer = keys["officer"]
    r = api.patch(f"/api/v1/stalls/{S1}", json={"status": "suspended", "hours": "09:00-17:00"},
                  headers=hdr(officer, 1))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == 'W/"2"'
    got = stored(backend, LayerName.stalls, S1)
    assert (got["status"], got["hours"], got["version"]) == ("suspended", "09:00-17:00", 2)
    assert got["name"] == rawdata.properties("stalls")[S1]["name"]  # untouched fields stay

    refused = [
        ("PATCH", f"/api/v1/stalls/{S2}", {"status": "suspended"}, 1),  # another officer's grid
        ("PATCH", f"/api/v1/stalls/{S1}", {"name": "改名"}, 2),  # not status/hours
        ("PATCH", f"/api/v1/stalls/{S1}", {"lon": 119.1, "lat": 36.7}, 2),  # moving it
        ("DELETE", f"/api/v1/stalls/{S2}", None, 1),
        ("POST", "/api/v1/stalls", NEW_STALL, None),  # creating
        ("PATCH", f"/api/v1/grids/{G1}", {"officer_name": "张三"}, 1),  # grids: admin only
    ]
    rev = backend.revisions()
    for method, path, body, version in refused:
        r = api.request(method, path, json=body, headers=hdr(officer, version))
        assert r.status_code == 403, (method, path, r.text)
    assert backend.revisions() == rev
    assert (
        stored(backend, LayerName.stalls, S2)["status"]
        == rawdata.properties("stalls")[S2]["status"]
    )
    assert stored(backend, LayerName.stalls, S1)["version"] == 2
    assert audit_count(backend) == 1


def test_officer_bound_by_name_follows_a_reassigned_grid(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    named, admin = keys["named"], keys["admin"]
    r = api.patch(f"/api/v1/stalls/{S2}", json={"status": "suspended"}, headers=hdr(named, 1))
    assert r.status_code == 403
    # The admin hands grid G2 to the named officer: the right moves with it, at once.
    r = api.get(f"/api/v1/grids/{G2}")
    etag = r.headers["ETag"]
    r = api.patch(f"/api/v1/grids/{G2}", json={"officer_name": grid_officer(G1),
                  "officer_phone": "0536-555-0101"}, headers=hdr(admin, etag))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["officer"] == {"name": grid_officer(G1), "phone": "0536-555-0101"}
    r = api.patch(f"/api/v1/stalls/{S2}", json={"status": "suspended"}, headers=hdr(named, 1))
    assert r.status_code == 200, r.text
    assert stored(backend, LayerName.stalls, S2)["status"] == "suspended"


def test_admin_creates_moves_and_retires_a_stall(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    import prcoords

    admin = keys["admin"]
    # Sent in GCJ-02 (an Amap pick), stored in WGS84: compare with prcoords' inverse.
    wgs = shapely.Point(rawdata.geometries("grids")[G2].representative_point())
    gcj = prcoords.wgs_gcj((wgs.y, wgs.x))  # (lat, lon)
    body = {"code": "XLP-370705-901", "name": "新设小蓝棚", "services": "修鞋;修锁配钥匙",
            "hours": "08:00-18:00", "status": "active", "lon": gcj[1], "lat": gcj[0],
            "crs": "gcj02"}  # fmt: skip
    r = api.post("/api/v1/stalls", json=body, headers=hdr(admin))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/api/v1/stalls/XLP-370705-901"
    assert r.headers["ETag"] == 'W/"1"'
    got = stored(backend, LayerName.stalls, "XLP-370705-901")
    assert got["services"] == ["修鞋", "修锁配钥匙"] and got["version"] == 1
    lon, lat = got["geometry"]["coordinates"]
    back = prcoords.gcj_wgs_bored(gcj)  # precise inverse, independent implementation
    assert abs(lon - back[1]) < 1e-6 and abs(lat - back[0]) < 1e-6
    # Visible to reads at once (this instance swapped in a new snapshot): counted in G2.
    counts = api.get(f"/api/v1/grids/{G2}").json()["properties"]["counts"]
    raw_in_g2 = sum(stall_grid(s) == G2 for s in STALLS)
    assert counts["stalls"] == raw_in_g2 + 1

    assert api.post("/api/v1/stalls", json=body, headers=hdr(admin)).status_code == 409

    # Move it into G1 (WGS84 this time).
    p = rawdata.geometries("grids")[G1].representative_point()
    r = api.patch("/api/v1/stalls/XLP-370705-901", json={"lon": p.x, "lat": p.y},
                  headers=hdr(admin, 1))  # fmt: skip
    assert r.status_code == 200, r.text
    assert api.get(f"/api/v1/grids/{G2}").json()["properties"]["counts"]["stalls"] == raw_in_g2
    r = api.delete("/api/v1/stalls/XLP-370705-901", headers=hdr(admin, 2))
    assert r.status_code == 200, r.text
    got = stored(backend, LayerName.stalls, "XLP-370705-901")
    assert got["status"] == "retired" and got["version"] == 3
    assert got["geometry"]["coordinates"] == [round(p.x, 7), round(p.y, 7)]


def test_stale_if_match_gets_409_and_changes_nothing(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    admin = keys["admin"]
    code = "TDQ-370702-01"
    # Two clients read version 1; the first write wins, the second is refused.
    r1 = api.patch(f"/api/v1/vendor-clusters/{code}", json={"pitches": 90}, headers=hdr(admin, 1))
    assert r1.status_code == 200 and r1.headers["ETag"] == 'W/"2"'
    r2 = api.patch(f"/api/v1/vendor-clusters/{code}", json={"pitches": 70}, headers=hdr(admin, 1))
    assert r2.status_code == 409, r2.text
    body = r2.json()
    assert body["current_version"] == 2 and r2.headers["ETag"] == 'W/"2"'
    assert body["current"]["properties"]["pitches"] == 90
    got = stored(backend, LayerName.vendor_clusters, code)
    assert (got["pitches"], got["version"]) == (90, 2)
    # The same for grids, with the ETag the GET handed out, and for retiring.
    etag = api.get(f"/api/v1/grids/{G1}").headers["ETag"]
    assert api.patch(f"/api/v1/grids/{G1}", json={"population": 1},
                     headers=hdr(admin, etag)).status_code == 200  # fmt: skip
    r = api.patch(f"/api/v1/grids/{G1}", json={"population": 2}, headers=hdr(admin, etag))
    assert r.status_code == 409
    assert stored(backend, LayerName.grids, G1)["population"] == 1
    assert api.delete(f"/api/v1/stalls/{S1}", headers=hdr(admin, 7)).status_code == 409
    assert stored(backend, LayerName.stalls, S1)["status"] != "retired"
    assert audit_count(backend) == 2
    # Any of several tags, strong or weak, may match; "*" means whatever is current.
    r = api.patch(f"/api/v1/vendor-clusters/{code}", json={"pitches": 91},
                  headers=hdr(admin, 'W/"1", "2"'))  # fmt: skip
    assert r.status_code == 200
    r = api.patch(f"/api/v1/vendor-clusters/{code}", json={"pitches": 92}, headers=hdr(admin, "*"))
    assert r.status_code == 200 and r.headers["ETag"] == 'W/"4"'


def test_update_without_if_match_gets_428(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    for method, path, body in WRITES[1:]:
        r = api.request(method, path, json=body, headers=hdr(keys["admin"]))
        assert r.status_code == 428, (method, path, r.text)
        assert "If-Match" in r.json()["detail"]
    assert audit_count(backend) == 0


BAD_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"status": "open"}, "status"),
    ({"services": ["修鞋", "理发"]}, "services"),
    ({"name": None}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"grid_code": "12345"}, "grid_code"),
    ({"colour": "blue"}, "colour"),
    ({"lon": 119.1}, "lat"),
    ({"lon": 119.1, "lat": 95}, "lat"),
    ({"lon": 119.1, "lat": 36.7, "crs": "mars"}, "crs"),
]


def test_bad_values_get_422_and_change_nothing(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    for body, field in BAD_CHANGES:
        r = api.patch(f"/api/v1/stalls/{S1}", json=body, headers=hdr(keys["admin"], 1))
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["detail"], (body, r.text)
    r = api.post("/api/v1/stalls", json={**NEW_STALL, "code": "bad"}, headers=hdr(keys["admin"]))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "code"
    assert stored(backend, LayerName.stalls, S1)["version"] == 1
    assert audit_count(backend) == 0


def test_big_numbers_round_trip_or_are_refused(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    admin = keys["admin"]
    r = api.patch(f"/api/v1/grids/{G1}", json={"population": 10**12}, headers=hdr(admin, 1))
    assert r.status_code == 200, r.text
    assert stored(backend, LayerName.grids, G1)["population"] == 10**12
    assert api.get(f"/api/v1/grids/{G1}").json()["properties"]["population"] == 10**12
    code = sorted(rawdata.properties("vendor_clusters"))[0]
    for value in (10**30, 2**53 + 1):
        r = api.patch(f"/api/v1/vendor-clusters/{code}", json={"pitches": value},
                      headers=hdr(admin, 1))  # fmt: skip
        assert r.status_code == 422 and "out of range" in r.json()["detail"], r.text
    assert audit_count(backend) == 1


def test_audit_says_who_when_what_before_and_after(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    admin, officer = keys["admin"], keys["officer"]
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    api.patch(f"/api/v1/stalls/{S1}", json={"hours": "07:00-19:00"}, headers=hdr(officer, 1))
    api.patch(f"/api/v1/grids/{G1}", json={"officer_phone": "0536-555-0199"},
              headers=hdr(admin, 1))  # fmt: skip
    api.delete(f"/api/v1/stalls/{S1}", headers=hdr(admin, 2))
    t1 = datetime.now(UTC) + timedelta(seconds=1)

    assert api.get("/api/v1/audit", headers=hdr(officer)).status_code == 403
    r = api.get("/api/v1/audit", headers=hdr(admin))
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 3
    newest, middle, oldest = page["entries"]
    assert [e["action"] for e in (oldest, middle, newest)] == ["update", "update", "retire"]
    assert (oldest["actor"], oldest["role"]) == ("officer-li", "officer")
    assert oldest["key_id"] == officer.split("_")[1]
    assert (newest["actor"], newest["role"]) == ("admin-wang", "admin")
    for e in page["entries"]:
        assert t0 <= datetime.fromisoformat(e["at"]) <= t1
    raw = rawdata.properties("stalls")[S1]
    assert oldest["before"]["properties"]["hours"] == raw["hours"]
    assert oldest["after"]["properties"]["hours"] == "07:00-19:00"
    assert oldest["changed"] == ["hours"]
    assert (oldest["version_before"], oldest["version_after"]) == (1, 2)
    assert oldest["before"]["geometry"] == oldest["after"]["geometry"]
    assert middle["layer"] == "grids" and middle["code"] == G1
    assert (
        middle["before"]["properties"]["officer_phone"]
        == rawdata.properties("grids")[G1]["officer_phone"]
    )
    assert middle["after"]["properties"]["officer_phone"] == "0536-555-0199"
    assert newest["after"]["properties"]["status"] == "retired"

    # Filters.
    def codes(**params: str) -> list[str]:
        r = api.get("/api/v1/audit", params=params, headers=hdr(admin))
        assert r.status_code == 200, r.text
        return [e["code"] for e in r.json()["entries"]]

    assert codes(code=S1) == [S1, S1]
    assert codes(layer="grids") == [G1]
    assert codes(actor="officer-li") == [S1]
    assert codes(action="retire") == [S1]
    assert codes(since=t1.isoformat()) == []
    assert codes(until=t0.isoformat()) == []
    assert len(codes(limit="1", offset="1")) == 1
    assert api.get("/api/v1/audit?action=drop", headers=hdr(admin)).status_code == 422
    assert api.get("/api/v1/audit?since=2025-01-01T00:00", headers=hdr(admin)).status_code == 422

    # Exports hold the same entries, oldest first.
    r = api.get("/api/v1/audit?format=csv&order=asc", headers=hdr(admin))
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["action"] for row in rows] == ["update", "update", "retire"]
    assert json.loads(rows[0]["after"])["properties"]["hours"] == "07:00-19:00"
    assert rows[0]["changed"] == "hours" and rows[0]["actor"] == "officer-li"
    r = api.get("/api/v1/audit?format=jsonl&order=asc", headers=hdr(admin))
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert [x["id"] for x in lines] == sorted(e["id"] for e in page["entries"])
    assert lines[2]["before"]["properties"]["status"] == raw["status"]


def _grid_file(tmp_path: Any, mutate: Any) -> bytes:
    feats = [dict(f, properties=dict(f["properties"])) for f in rawdata.features("grids")]
    feats = mutate(feats)
    return json.dumps({"type": "FeatureCollection", "features": feats}).encode()


def test_a_layer_file_with_errors_is_rejected_whole_with_the_report(
    api: TestClient, backend: Backend, keys: dict[str, str], tmp_path: Any
) -> None:
    admin = keys["admin"]

    def overlap(feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Grow the first grid over its neighbours, and rename the second to a bad code.
        g = shapely.geometry.shape(feats[0]["geometry"]).buffer(0.0005, join_style="mitre")
        feats[0]["geometry"] = shapely.geometry.mapping(g)
        feats[1]["properties"]["code"] = "37070200100"
        feats[2]["properties"]["officer_name"] = "新网格员"  # a valid change among the errors
        return feats

    data = _grid_file(tmp_path, overlap)
    rev = backend.revisions()
    snapshot_version = api.get("/api/v1/meta").json()["version"]
    r = api.put("/api/v1/layers/grids", content=data, headers=hdr(admin))
    assert r.status_code == 422, r.text
    body = r.json()
    report = body["report"]
    assert not report["ok"] and report["topology"]["overlaps"]
    first = rawdata.features("grids")[0]["properties"]["code"]
    assert any(first in o["codes"] for o in report["topology"]["overlaps"])
    assert any(p["field"] == "code" for p in report["problems"])
    # The errors list names topology errors too (not only rejected rows).
    assert {"code", "geometry"} <= {e["field"] for e in body["errors"]}
    # The same report `geo-service validate --json` gives for the same file.
    path = tmp_path / "grids.geojson"
    path.write_bytes(data)
    res = CliRunner().invoke(cli_app, ["validate", str(path), "--json"])
    cli_report = json.loads(res.stdout)
    cli_report["source"] = report["source"]
    assert cli_report == report
    # Nothing changed anywhere.
    assert backend.revisions() == rev
    assert api.get("/api/v1/meta").json()["version"] == snapshot_version
    code2 = rawdata.features("grids")[2]["properties"]["code"]
    assert stored(backend, LayerName.grids, code2)["officer_name"] != "新网格员"
    assert audit_count(backend) == 0
    # Unreadable and empty files too.
    assert (
        api.put("/api/v1/layers/grids", content=b"nonsense", headers=hdr(admin)).status_code == 422
    )
    assert api.put("/api/v1/layers/grids", content=b"", headers=hdr(admin)).status_code == 422
    assert api.put("/api/v1/layers/roads", content=data, headers=hdr(admin)).status_code == 422
    officer = keys["officer"]
    assert api.put("/api/v1/layers/grids", content=data, headers=hdr(officer)).status_code == 403
    assert backend.revisions() == rev


def test_a_valid_layer_file_replaces_the_layer_with_versions_and_audit(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    admin = keys["admin"]
    feats = [dict(f, properties=dict(f["properties"])) for f in rawdata.features("stalls")]
    changed, removed = feats[0]["properties"]["code"], feats[1]["properties"]["code"]
    feats[0]["properties"]["hours"] = "10:00-16:00"
    del feats[1]
    added = dict(feats[2], properties={**feats[2]["properties"], "code": "XLP-370705-950"})
    feats.append(added)
    data = json.dumps({"type": "FeatureCollection", "features": feats}).encode()
    r = api.put("/api/v1/layers/stalls", content=data, headers=hdr(admin))
    assert r.status_code == 200, r.text
    body = r.json()
    n = len(rawdata.features("stalls"))
    assert {k: body[k] for k in ("rows", "added", "changed", "removed", "unchanged")} == {
        "rows": n, "added": 1, "changed": 1, "removed": 1, "unchanged": n - 2,
    }  # fmt: skip
    assert body["dataset_version"] == api.get("/api/v1/meta").json()["version"]
    assert stored(backend, LayerName.stalls, changed)["version"] == 2
    assert stored(backend, LayerName.stalls, "XLP-370705-950")["version"] == 1
    assert stored(backend, LayerName.stalls, feats[3]["properties"]["code"])["version"] == 1
    assert backend.get(LayerName.stalls, removed) is None
    # An ETag from before the new survey is stale now.
    r = api.patch(f"/api/v1/stalls/{changed}", json={"status": "active"}, headers=hdr(admin, 1))
    assert r.status_code == 409
    entries = api.get("/api/v1/audit?order=asc", headers=hdr(admin)).json()["entries"]
    assert [(e["action"], e["code"]) for e in entries] == [
        ("replace", None), ("update", changed), ("create", "XLP-370705-950"), ("remove", removed),
    ]  # fmt: skip
    assert entries[0]["detail"]["added"] == 1 and entries[0]["actor"] == "admin-wang"
    assert entries[3]["before"]["properties"]["code"] == removed and entries[3]["after"] is None


def test_get_of_one_feature_carries_its_version_as_etag(
    api: TestClient, keys: dict[str, str]
) -> None:
    """Read, change with the ETag read, read again: the ETag moved with the version."""
    cluster = sorted(rawdata.properties("vendor_clusters"))[0]
    cases = [
        (f"/api/v1/grids/{G1}", {"name": "新名"}),
        (f"/api/v1/stalls/{S1}", {"hours": "09:00-17:00"}),
        (f"/api/v1/vendor-clusters/{cluster}", {"hours": "05:00-09:00"}),
    ]
    for path, change in cases:
        r = api.get(path)
        assert r.headers["ETag"] == 'W/"1"' and r.json()["properties"]["version"] == 1, path
        w = api.patch(path, json=change, headers=hdr(keys["admin"], r.headers["ETag"]))
        assert w.status_code == 200 and w.headers["ETag"] == 'W/"2"', w.text
        r = api.get(path)
        assert r.headers["ETag"] == 'W/"2"', path
        (field, value) = next(iter(change.items()))
        assert r.json()["properties"][field] == value, path


def test_openapi_documents_the_key_and_the_edit_paths(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": doc["components"]["securitySchemes"]["ApiKey"]["description"],
    }  # fmt: skip
    for path, method in [
        ("/api/v1/stalls", "post"),
        ("/api/v1/stalls/{code}", "patch"),
        ("/api/v1/stalls/{code}", "delete"),
        ("/api/v1/vendor-clusters", "post"),
        ("/api/v1/vendor-clusters/{code}", "patch"),
        ("/api/v1/grids/{code}", "patch"),
        ("/api/v1/layers/{layer}", "put"),
        ("/api/v1/audit", "get"),
    ]:
        op = doc["paths"][path][method]
        assert op["security"] == [{"ApiKey": []}], (path, method)
        assert {"401", "403"} <= set(op["responses"]), (path, method)
    assert doc["paths"]["/api/v1/grids/{code}"]["get"].get("security") is None


JUNK_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
FIELDS = ["code", "name", "services", "hours", "status", "address", "grid_code", "pitches",
          "kind", "officer_name", "population", "households", "lon", "lat", "crs", "version",
          "geometry", "x"]  # fmt: skip


def test_writes_survive_junk_with_a_valid_key(
    api: TestClient, backend: Backend, keys: dict[str, str]
) -> None:
    """Junk bodies, codes and If-Match headers from an admin: 4xx or a valid change, never 5xx."""
    cluster = sorted(rawdata.properties("vendor_clusters"))[0]
    paths = [
        ("POST", "/api/v1/stalls"),
        ("POST", "/api/v1/vendor-clusters"),
        ("PATCH", f"/api/v1/stalls/{S1}"),
        ("PATCH", f"/api/v1/vendor-clusters/{cluster}"),
        ("PATCH", f"/api/v1/grids/{G1}"),
        ("DELETE", f"/api/v1/stalls/{S2}"),
        ("PATCH", "/api/v1/stalls/{junk}"),
        ("PUT", "/api/v1/layers/stalls"),
        ("GET", "/api/v1/audit"),
    ]

    @hypothesis_settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from(paths))
        path = path.replace("{junk}", quote(data.draw(st.text(min_size=1, max_size=20)), safe=""))
        headers = {"X-API-Key": keys["admin"]}
        if data.draw(st.booleans()):
            headers["If-Match"] = data.draw(
                st.sampled_from(['W/"1"', '"1"', "*", "", "W/", '"x"', "1, 2", 'W/"-1"'])
            )
        body = data.draw(st.dictionaries(st.sampled_from(FIELDS), JUNK_VALUES, max_size=6))
        if method == "PUT":
            raw = data.draw(st.sampled_from([b"{}", b"[]", b"\xff", json.dumps(body).encode()]))
            r = api.put(path, content=raw, headers=headers)
        elif method == "GET":
            params = {k: str(v) for k, v in body.items()}
            r = api.get(path, params=params, headers=headers)
        else:
            r = api.request(method, path, json=body, headers=headers)
        assert r.status_code < 500, (method, path, body, r.text[:300])

    run()
