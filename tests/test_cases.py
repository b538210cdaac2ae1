"""随手拍 cases: deadlines worked by hand, routing against PostGIS, the lifecycle with each
level's key, escalation with a moved clock (and a restart), idempotency and bad input."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import prcoords
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient
from PIL import Image

from geo_service.core.cases import CaseStatus, ServiceCatalogue
from geo_service.core.principal import Role
from geo_service.core.schema import Level
from geo_service.core.settings import BUNDLED_CASE_SERVICES, Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.core.workcalendar import SHANGHAI, LimitUnit, deadline
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.cases import Report
from geo_service.runtime import open_case_store
from geo_service.storage.audit import AuditQuery
from geo_service.storage.base import Backend
from geo_service.storage.files import FilesBackend
from geo_service.web.app import create_app
from tests.keys import key_for
from tests.pgref import load_table


def bj(*args: int) -> datetime:
    """A Beijing-time moment."""
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# -- deadlines, worked by hand (working periods 08:30-12:00, 13:30-17:30) ----------------------
@pytest.mark.parametrize(
    ("start", "value", "unit", "due"),
    [
        (bj(2026, 12, 2, 10, 0), 2, LimitUnit.working_hours, bj(2026, 12, 2, 12, 0)),
        (bj(2026, 12, 2, 11, 0), 2, LimitUnit.working_hours, bj(2026, 12, 2, 14, 30)),
        (bj(2026, 12, 2, 12, 40), 1, LimitUnit.working_hours, bj(2026, 12, 2, 14, 30)),
        (bj(2026, 12, 2, 6, 0), 1, LimitUnit.working_hours, bj(2026, 12, 2, 9, 30)),
        # Friday 17:00 + 5 h: 0.5 h on Friday, 3.5 h Monday morning, 1 h Monday afternoon
        (bj(2026, 12, 4, 17, 0), 5, LimitUnit.working_hours, bj(2026, 12, 7, 14, 30)),
        # Saturday: nothing counts until Monday 08:30
        (bj(2026, 12, 5, 9, 0), 2, LimitUnit.working_hours, bj(2026, 12, 7, 10, 30)),
        # one working day = 7.5 working hours: the same clock time the next working day
        (bj(2026, 12, 2, 10, 0), 1, LimitUnit.working_days, bj(2026, 12, 3, 10, 0)),
        # Spring Festival 2026: 15-23 Feb off; Sat 14 Feb and Sat 28 Feb are make-up workdays
        (bj(2026, 2, 13, 17, 0), 1, LimitUnit.working_hours, bj(2026, 2, 14, 9, 0)),
        (bj(2026, 2, 14, 17, 0), 1, LimitUnit.working_hours, bj(2026, 2, 24, 9, 0)),
        # round the clock
        (bj(2026, 12, 5, 23, 0), 4, LimitUnit.hours, bj(2026, 12, 6, 3, 0)),
    ],
)
def test_deadlines_in_working_time(
    start: datetime, value: float, unit: LimitUnit, due: datetime
) -> None:
    assert deadline(start, value, unit) == due.astimezone(UTC)


def test_the_bundled_categories() -> None:
    services = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
    names = {s.name for s in services.services}
    assert {
        "占道经营",
        "流动摊贩",
        "店外经营",
        "露天烧烤",
        "乱堆乱放",
        "暴露垃圾",
        "井盖缺损",
    } <= names
    assert services.get("JM01").limit_text == "2 个工作时"
    with pytest.raises(ValueError, match="unique"):
        ServiceCatalogue.from_dict({"services": [services.services[0].open311()] * 0})


# -- the HTTP loop on both backends ------------------------------------------------------------
@pytest.fixture
def api(backend: Backend, settings: Settings) -> Iterator[TestClient]:
    s = settings.model_copy(update={"rate_limit_enabled": False})
    if isinstance(backend, FilesBackend):
        s = s.model_copy(update={"data_dir": backend.data_dir})
    else:
        s = s.model_copy(update={"media_dir": Path(backend_media(backend))})
    app = create_app(s, backend=backend)
    with TestClient(app) as client:
        yield client


def backend_media(backend: Backend) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="geo-media-")


def desk_of(client: TestClient) -> CaseDesk:
    desk: CaseDesk = client.app.state.runtime.cases  # type: ignore[attr-defined]
    return desk


def file(client: TestClient, **fields: Any) -> dict[str, Any]:
    data = {"service_code": "JM01", "description": "门口占道摆摊", **fields}
    r = client.post("/open311/v2/requests.json", data=data)
    assert r.status_code == 201, r.text
    [ack] = r.json()
    return ack


def jpeg_with_gps() -> bytes:
    img = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (36.0, 42.0, 36.0), 3: "E", 4: (119.0, 9.0, 36.0)}
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def test_an_open311_round_trip_with_a_photo(api: TestClient) -> None:
    services = api.get("/open311/v2/services.json").json()
    assert {"service_code": "JM01", "service_name": "占道经营"}.items() <= services[0].items()
    raw = jpeg_with_gps()
    assert b"Exif" in raw
    r = api.post(
        "/open311/v2/requests.json",
        data={
            "service_code": "HW01",
            "lat": "36.71",
            "long": "119.16",
            "description": "垃圾桶满溢 <script>alert(1)</script>",
            "phone": "138 0000 0000",
        },
        files={"media": ("p.jpg", raw, "image/jpeg")},
    )
    assert r.status_code == 201, r.text
    [ack] = r.json()
    grid = api.get("/api/v1/grids/locate?lon=119.16&lat=36.71").json()["grid"]
    assert ack["grid_code"] == grid["code"]
    assert ack["officer"] == grid["officer"]["name"]
    assert ack["level"] == "grid"
    [req] = api.get(f"/open311/v2/requests/{ack['service_request_id']}.json").json()
    assert req["status"] == "open" and req["status_notes"] == "上报"
    assert req["service_name"] == "暴露垃圾"
    assert req["description"] == "垃圾桶满溢 <script>alert(1)</script>"
    assert "phone" not in req and "138" not in r.text + str(req)
    assert datetime.fromisoformat(req["requested_datetime"]).utcoffset() == timedelta(hours=8)
    photo = api.get(urlsplit(req["media_url"]).path)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert b"Exif" not in photo.content and b"GPS" not in photo.content
    assert Image.open(io.BytesIO(photo.content)).getexif() == {}
    listed = api.get("/open311/v2/requests.json", params={"service_code": "HW01"}).json()
    assert [x["service_request_id"] for x in listed] == [ack["service_request_id"]]
    assert api.get("/open311/v2/requests.json", params={"status": "closed"}).json() == []


def test_the_same_idempotency_key_files_one_case(api: TestClient) -> None:
    body = {"service_code": "JM02", "lat": "36.71", "long": "119.16", "description": "流动摊贩"}
    first = api.post("/open311/v2/requests.json", data=body, headers={"Idempotency-Key": "abc-1"})
    again = api.post("/open311/v2/requests.json", data=body, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]
    other = api.post("/open311/v2/requests.json", data=body, headers={"Idempotency-Key": "abc-2"})
    assert other.json()[0]["service_request_id"] != first.json()[0]["service_request_id"]
    assert len(api.get("/open311/v2/requests.json").json()) == 2


@pytest.mark.parametrize(
    ("fields", "files", "status", "names"),
    [
        ({"long": "119.16"}, None, 422, "lat"),
        ({"lat": "nan", "long": "119.16"}, None, 422, "lat"),
        ({"lat": "36.71", "long": "119.16", "service_code": "NOPE"}, None, 404, "service_code"),
        ({"lat": "36.71", "long": "119.16", "description": "x" * 4001}, None, 422, "description"),
        ({"lat": "36.71", "long": "119.16", "description": "  "}, None, 422, "description"),
        ({"lat": "36.71", "long": "119.16", "crs": "mars"}, None, 422, "crs"),
        ({"lat": "36.71", "long": "119.16", "phone": "call me"}, None, 422, "phone"),
        ({"lat": "36.71", "long": "119.16"}, {"media": ("x.jpg", b"GIF89a....")}, 415, "media"),
        (
            {"lat": "36.71", "long": "119.16"},
            {"media": ("x.jpg", b"\xff\xd8\xff" + b"0" * 99)},
            422,
            "media",
        ),
        ({"lat": "36.71", "long": "119.16", "colour": "red"}, None, 422, "colour"),
    ],
)
def test_bad_reports_are_a_clear_4xx_and_leave_nothing(
    api: TestClient, fields: dict[str, str], files: Any, status: int, names: str
) -> None:
    data = {"service_code": "JM01", "description": "占道", **fields}
    r = api.post("/open311/v2/requests.json", data=data, files=files)
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["field"] == names
    assert api.get("/open311/v2/requests.json").json() == []
    media = api.app.state.runtime.media.folder  # type: ignore[attr-defined]
    assert not any(p.is_file() for p in Path(media).rglob("*"))


def test_a_photo_over_the_cap_is_413(api: TestClient) -> None:
    cap = api.app.state.settings.max_photo_bytes  # type: ignore[attr-defined]
    body = {"service_code": "JM01", "lat": "36.71", "long": "119.16", "description": "x"}
    big = b"\xff\xd8\xff" + bytes(cap + 70 * 1024)
    r = api.post("/open311/v2/requests.json", data=body, files={"media": ("a.jpg", big)})
    assert r.status_code == 413
    assert api.get("/open311/v2/requests.json").json() == []


def test_nearby_open_cases_of_the_same_category_and_joining(api: TestClient) -> None:
    ack = file(api, lat="36.71", long="119.16")
    # 30 m north (1 degree of latitude is about 111 km): within 50 m
    near = api.get(
        "/api/v1/cases/nearby", params={"lon": 119.16, "lat": 36.71027, "service_code": "JM01"}
    ).json()
    assert [c["service_request_id"] for c in near["cases"]] == [ack["service_request_id"]]
    assert 28 < near["cases"][0]["distance_m"] < 32
    far = api.get("/api/v1/cases/nearby", params={"lon": 119.16, "lat": 36.7106}).json()
    assert far["cases"] == []  # about 67 m
    other = api.get(
        "/api/v1/cases/nearby", params={"lon": 119.16, "lat": 36.71, "service_code": "HW01"}
    ).json()
    assert other["cases"] == []
    joined = api.post(f"/api/v1/cases/{ack['service_request_id']}/join").json()
    assert joined["reporters"] == 2 and joined["history"][-1]["action_text"] == "追加反映"


def test_the_lifecycle_with_each_levels_key(api: TestClient, backend: Backend) -> None:
    ack = file(api, lat="36.71", long="119.16")
    cid = ack["service_request_id"]
    case = desk_of(api).get(cid)
    assert case.community_code and case.street_code
    grid_key = key_for(backend, "网格员", Role.officer, officer=ack["officer"])
    other_key = key_for(backend, "别的网格员", Role.officer, grids=["370702001001001"])
    community_key = key_for(backend, "社区", Role.community, grids=[case.community_code])
    street_key = key_for(backend, "街道", Role.street, grids=[case.street_code])

    def act(key: str | None, action: str, **extra: Any) -> Any:
        headers = {"X-API-Key": key} if key else {}
        return api.post(
            f"/api/v1/cases/{cid}/actions", json={"action": action, **extra}, headers=headers
        )

    assert act(None, "register").status_code == 401
    assert act(other_key, "register").status_code == 403
    assert act(grid_key, "dispatch").status_code == 409  # not yet registered
    assert act(grid_key, "register").json()["status_text"] == "立案"
    # 延期 needs the level above: the grid officer may not, the community may
    # a month from now, in Beijing time (later than any deadline the case can have)
    until = (datetime.now(SHANGHAI) + timedelta(days=30)).replace(microsecond=0).isoformat()
    assert act(grid_key, "extend", until=until, reason="需协调").status_code == 403
    assert act(community_key, "extend", until=until).status_code == 422  # no reason
    extended = act(community_key, "extend", until=until, reason="需协调城管中队").json()
    assert extended["deadline"] == until
    for action in ("dispatch", "handle"):
        assert act(grid_key, action).status_code == 200
    assert act(grid_key, "reject").status_code == 422  # a failed check needs a reason
    assert act(street_key, "reject", reason="现场仍有摊位").json()["status"] == "open"
    assert act(grid_key, "handle").json()["status_text"] == "处置"
    assert act(grid_key, "verify").json()["status_text"] == "核查"
    closed = act(grid_key, "close").json()
    assert closed["status"] == "closed" and closed["phone"] is None
    [public] = api.get(f"/open311/v2/requests/{cid}.json").json()
    assert public["status"] == "closed"
    assert [h["action"] for h in public["history"]] == [
        "file", "register", "extend", "dispatch", "handle", "reject", "handle", "verify", "close",
    ]  # fmt: skip
    entries, total = backend.audit(AuditQuery(layer="cases", code=cid))
    assert total == 9
    assert {e.action for e in entries} >= {"case.file", "case.close", "case.extend"}
    assert act(grid_key, "close").status_code == 409


def test_a_wrong_grid_is_sent_back_with_a_reason(api: TestClient, backend: Backend) -> None:
    ack = file(api, lat="36.71", long="119.16", phone="13800000000")
    cid = ack["service_request_id"]
    key = key_for(backend, "网格员", Role.officer, officer=ack["officer"])
    target = "370702001001001"
    r = api.post(
        f"/api/v1/cases/{cid}/actions", json={"action": "return", "grid_code": target},
        headers={"X-API-Key": key},
    )  # fmt: skip
    assert r.status_code == 422  # a reason is required
    r = api.post(
        f"/api/v1/cases/{cid}/actions",
        json={"action": "return", "grid_code": target, "reason": "位于隔壁网格"},
        headers={"X-API-Key": key},
    )
    moved = r.json()
    assert moved["grid_code"] == target and moved["history"][-1]["reason"] == "位于隔壁网格"
    grid = api.get(f"/api/v1/grids/{target}").json()["properties"]
    assert moved["officer"] == grid["officer"]["name"]
    # the old officer no longer sees the phone; the new one does
    old = api.get(f"/api/v1/cases/{cid}", headers={"X-API-Key": key}).json()
    assert "phone" not in old
    new_key = key_for(backend, "新网格员", Role.officer, grids=[target])
    assert api.get(f"/api/v1/cases/{cid}", headers={"X-API-Key": new_key}).json()["phone"]
    queue = api.get("/api/v1/cases/queue", headers={"X-API-Key": new_key}).json()
    assert [c["service_request_id"] for c in queue["cases"]] == [cid]


# -- escalation with a moved clock -----------------------------------------------------------
def test_escalation_timeline_worked_by_hand_with_a_restart(
    backend: Backend, snapshot: Snapshot, tmp_path: Path
) -> None:
    services = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
    clock = Clock(bj(2026, 12, 2, 10, 0))  # Wednesday

    def desk() -> CaseDesk:  # a fresh instance each time: a restart, or a second process
        return CaseDesk(migrated(backend), services, lambda: snapshot, clock=clock)

    report = Report("JM01", "占道经营", 119.16, 36.71, "wgs84")
    cid = desk().file(report).case.id
    handled_in_time = desk().file(Report("JM01", "另一处", 119.161, 36.711, "wgs84")).case.id
    first = desk()
    assert first.get(cid).deadline == "2026-12-02T04:00:00Z"  # 12:00 Beijing
    admin = key_principal()
    for a in ("register", "dispatch", "handle"):
        first.act(handled_in_time, _action(a), admin)

    clock.at = bj(2026, 12, 2, 11, 59)
    assert first.escalate_due() == []
    clock.at = bj(2026, 12, 2, 12, 1)
    [up] = first.escalate_due()
    assert (up.level, up.unit_code, up.officer) == (Level.community, up.community_code, None)
    # from the old deadline 12:00: 2 working hours are 13:30-15:30
    assert up.deadline == "2026-12-02T07:30:00Z"
    assert desk().escalate_due() == []  # another instance: nothing more to do
    # the service is stopped overnight; a new instance catches up on Thursday 11:00 Beijing
    clock.at = bj(2026, 12, 3, 11, 0)
    caught = desk().escalate_due()
    assert [c.level for c in caught] == [Level.street, Level.district]
    final = desk().get(cid)
    # street: from 15:30 + 2 h = 17:30; district: from 17:30 + 2 h = Thursday 10:30
    events = [(e.action.value, e.at, e.deadline) for e in final.history]
    assert events == [
        ("file", "2026-12-02T02:00:00Z", "2026-12-02T04:00:00Z"),
        ("escalate", "2026-12-02T04:00:00Z", "2026-12-02T07:30:00Z"),
        ("escalate", "2026-12-02T07:30:00Z", "2026-12-02T09:30:00Z"),
        ("escalate", "2026-12-02T09:30:00Z", "2026-12-03T02:30:00Z"),
    ]
    assert final.escalations == 3 and final.unit_code == final.district_code
    assert desk().escalate_due() == [] and desk().get(cid).escalations == 3  # the top
    assert desk().get(handled_in_time).escalations == 0
    assert desk().get(handled_in_time).status is CaseStatus.handled


def migrated(backend: Backend) -> Any:
    store = open_case_store(backend)
    store.migrate()
    return store


def key_principal() -> Any:
    from geo_service.core.principal import Principal

    return Principal(Role.admin, "admin")


def _action(name: str) -> Any:
    from geo_service.core.cases import Action

    return Action(name)


# -- routing against PostGIS ST_Covers -------------------------------------------------------
def _edge_points(snapshot: Snapshot, n: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """Points 0.5 m to either side of shared grid edges (in the metric CRS)."""
    geoms = snapshot.grids.frame.geometry.to_numpy()
    proj = snapshot.projection
    lon, lat = [], []
    for g in rng.choice(len(geoms), n, replace=False):
        ring = shapely.get_coordinates(shapely.get_exterior_ring(shapely.get_geometry(geoms[g], 0)))
        k = int(rng.integers(0, len(ring) - 1))
        (x0, y0), (x1, y1) = proj.forward(*ring[k]), proj.forward(*ring[k + 1])
        t = rng.uniform(0.2, 0.8)
        mx, my = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        nx, ny = -(y1 - y0), x1 - x0
        norm = float(np.hypot(nx, ny)) or 1.0
        side = 0.5 if rng.random() < 0.5 else -0.5
        plon, plat = proj.inverse(mx + side * nx / norm, my + side * ny / norm)
        lon.append(float(plon))
        lat.append(float(plat))
    return np.array(lon), np.array(lat)


@pytest.mark.postgis
def test_reports_land_where_postgis_says(
    api: TestClient, pg: psycopg.Connection, snapshot: Snapshot
) -> None:
    grids = snapshot.grids
    load_table(pg, "ref_case_grids", list(grids.codes), grids.frame.geometry.to_numpy())
    rng = np.random.default_rng(10)
    minx, miny, maxx, maxy = snapshot.bounds
    rl, ra = rng.uniform(minx, maxx, 40), rng.uniform(miny, maxy, 40)
    el, ea = _edge_points(snapshot, 40, rng)
    lon, lat = np.concatenate([rl, el]), np.concatenate([ra, ea])
    load_table(pg, "ref_case_points", [str(i) for i in range(len(lon))], shapely.points(lon, lat))
    ref = dict(
        pg.execute(
            "SELECT p.code::int, (SELECT min(g.code) FROM ref_case_grids g "
            "WHERE ST_Covers(g.geom, p.geom)) FROM ref_case_points p"
        ).fetchall()
    )
    crss = ("wgs84", "gcj02", "bd09")
    for i in range(len(lon)):
        crs = crss[i % 3]
        if crs == "wgs84":
            x, y = lon[i], lat[i]
        elif crs == "gcj02":
            y, x = prcoords.wgs_gcj((lat[i], lon[i]))
        else:
            y, x = prcoords.wgs_bd((lat[i], lon[i]))
        ack = file(api, lat=repr(float(y)), long=repr(float(x)), crs=crs)
        if ref[i] is not None:
            assert (ack["grid_code"], ack["level"]) == (ref[i], "grid"), (i, crs, lon[i], lat[i])
        else:  # outside every grid: snapped within 200 m, or the district intake queue
            assert ack["level"] in ("grid", "district"), ack


@pytest.mark.postgis
def test_outside_every_grid_nearest_within_reach_else_district(
    api: TestClient, pg: psycopg.Connection, snapshot: Snapshot
) -> None:
    grids = snapshot.grids
    load_table(pg, "ref_case_grids2", list(grids.codes), grids.frame.geometry.to_numpy())
    minx, miny, _, maxy = snapshot.bounds
    for lon, lat in ((minx - 0.0012, (miny + maxy) / 2), (minx - 0.05, (miny + maxy) / 2)):
        code, dist, district = pg.execute(
            "SELECT code, ST_Distance(geom::geography, ST_MakePoint(%s, %s)::geography), "
            "left(code, 6) FROM ref_case_grids2 "
            "ORDER BY geom::geography <-> ST_MakePoint(%s, %s)::geography LIMIT 1",
            (lon, lat, lon, lat),
        ).fetchone()
        ack = file(api, lat=repr(lat), long=repr(lon))
        case = desk_of(api).get(ack["service_request_id"])
        if dist <= 200:
            assert (ack["grid_code"], ack["level"]) == (code, "grid")
        else:
            assert (ack["grid_code"], ack["level"]) == (None, "district")
            assert case.unit_code == district
    assert {c["level"] for c in api.get("/open311/v2/requests.json").json()} == {
        "grid",
        "district",
    }


def test_grids_store_is_untouched_by_a_filing(api: TestClient, backend: Backend) -> None:
    before = backend.revisions()
    file(api, lat="36.71", long="119.16")
    assert backend.revisions() == before  # a case is not a layer edit: no snapshot rebuild


def test_the_store_survives_a_half_written_line(tmp_path: Path, snapshot: Snapshot) -> None:
    from tests.backends import copy_data

    backend = FilesBackend(copy_data(tmp_path / "data"))
    services = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
    desk = CaseDesk(open_case_store(backend), services, lambda: snapshot)
    first = desk.file(Report("JM01", "一", 119.16, 36.71, "wgs84")).case
    with open(backend.data_dir / "cases.jsonl", "ab") as fh:
        fh.write(b'{"id": "20261202-000002", "service_co')  # a crash mid-line: never acknowledged
    fresh = CaseDesk(open_case_store(backend), services, lambda: snapshot)
    assert fresh.get(first.id).description == "一"
    second = fresh.file(Report("JM01", "二", 119.16, 36.71, "wgs84")).case
    assert second.id.endswith("-000002")
    lines = (backend.data_dir / "cases.jsonl").read_bytes().splitlines()
    assert len(lines) == 2 and all(line.endswith(b"}") for line in lines)


def test_settings_can_point_at_another_category_list(tmp_path: Path, snapshot: Snapshot) -> None:
    custom = tmp_path / "cats.json"
    custom.write_text(
        '{"services": [{"code": "X1", "group": "其他", "name": "测试", '
        '"limit": {"value": 1, "unit": "hours"}, "level": "street"}]}',
        encoding="utf-8",
    )
    from tests.backends import copy_data

    data = copy_data(tmp_path / "data")
    app = create_app(
        Settings(data_dir=data, case_services_file=custom, rate_limit_enabled=False),
        SnapshotStore(snapshot),
    )
    with TestClient(app) as client:
        assert [s["service_code"] for s in client.get("/open311/v2/services.json").json()] == ["X1"]
        ack = file(client, service_code="X1", lat="36.71", long="119.16")
        assert ack["level"] == "street" and ack["officer"] is None


def test_cases_as_a_layer_in_a_box_or_a_unit(api: TestClient) -> None:
    a = file(api, lat="36.71", long="119.16")
    b = file(api, lat="36.70", long="119.10", service_code="HW01")
    grid_a = a["grid_code"]
    box = api.get("/api/v1/cases", params={"bbox": "119.15,36.705,119.17,36.715"}).json()
    assert [f["id"] for f in box["features"]] == [a["service_request_id"]]
    assert box["features"][0]["geometry"] == {"type": "Point", "coordinates": [119.16, 36.71]}
    assert "phone" not in box["features"][0]["properties"]
    unit = api.get("/api/v1/cases", params={"unit": grid_a[:12]}).json()  # its community
    assert a["service_request_id"] in [f["id"] for f in unit["features"]]
    assert b["service_request_id"] not in [f["id"] for f in unit["features"]]
    every = api.get("/api/v1/cases", params={"limit": 1}).json()
    assert every["numberMatched"] == 2 and every["numberReturned"] == 1 and every["next"]
    assert api.get("/api/v1/cases", params={"status": "closed"}).json()["numberMatched"] == 0
    assert api.get("/api/v1/cases", params={"unit": "12ab"}).status_code == 422


def test_a_50_mb_report_is_refused_before_it_is_read(api: TestClient) -> None:
    body = b"--x\r\n" + b"0" * (50 * 1024 * 1024)
    r = api.post(
        "/open311/v2/requests.json",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413 and "report" in r.json()["detail"]
    assert api.get("/open311/v2/requests.json").json() == []


def test_instances_escalating_at_once_escalate_and_notify_once(
    backend: Backend, snapshot: Snapshot
) -> None:
    import threading

    services = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
    clock = Clock(bj(2026, 12, 2, 10, 0))
    notices: list[tuple[str, str]] = []
    lock = threading.Lock()

    def notify(event: str, payload: dict[str, object]) -> None:
        with lock:
            notices.append((event, str(payload["level"])))

    desks = [
        CaseDesk(migrated(backend), services, lambda: snapshot, clock=clock, notify=notify)
        for _ in range(8)
    ]
    cid = desks[0].file(Report("JM01", "占道", 119.16, 36.71, "wgs84")).case.id
    clock.at = bj(2026, 12, 2, 12, 30)  # one level due
    start = threading.Barrier(len(desks))

    def run(d: CaseDesk) -> None:
        start.wait()
        d.escalate_due()

    threads = [threading.Thread(target=run, args=(d,)) for d in desks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert desks[0].get(cid).escalations == 1
    assert notices == [("case.assigned", "grid"), ("case.escalated", "community")]


def test_statistics_follow_every_new_case(api: TestClient) -> None:
    def total() -> int:
        body = api.get("/api/v1/cases/stats", params={"by": "district"}).json()
        return int(body["summary"]["total"])

    assert total() == 0
    file(api, lat="36.71", long="119.16")
    assert total() == 1  # the cached frame was rebuilt for the new revision
    file(api, lat="36.70", long="119.10")
    assert total() == 2


def test_a_database_outage_is_a_503_with_retry_after(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    store = desk_of(api).store

    def down(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(store, "file", down)
    body = {"service_code": "JM01", "lat": "36.71", "long": "119.16", "description": "占道"}
    r = api.post("/open311/v2/requests.json", data=body)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "nothing was changed" in r.json()["detail"]
