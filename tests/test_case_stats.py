"""随手拍 statistics (analysis/casestats.py), the cases map and their endpoints.

Cases are built here with their histories (no desk, no store), over the bundled snapshot, and
the figures of a few units are worked out by hand below, from the timelines in ``CASES``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from geo_service.analysis.casestats import case_frame, case_stats, stats_csv, summary
from geo_service.core.cases import (
    AWAITING_HANDLING,
    Action,
    Case,
    CaseEvent,
    CaseStatus,
    ServiceCatalogue,
    level_above,
    utc_iso,
)
from geo_service.core.schema import LayerName, Level
from geo_service.core.settings import BUNDLED_CASE_SERVICES, Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore, build_snapshot
from geo_service.domain.casedesk import CaseDesk
from geo_service.render.maps.cases import case_map, leaflet_heat_js
from geo_service.render.maps.controls import js_value
from geo_service.render.maps.page import PageOptions, render_html
from geo_service.storage.base import Backend
from geo_service.storage.cases import CaseQuery, Filed
from geo_service.web.app import create_app
from geo_service.web.routers import casestats
from geo_service.web.routers.casestats import CaseStatsResponse
from geo_service.web.security import inline_script_hashes
from tests.hostile import payload

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # Monday 08:00 in Shanghai
NOW = T0 + timedelta(hours=100)
START = datetime.fromisoformat("2025-03-01T00:00:00+08:00")
END = datetime.fromisoformat("2025-04-01T00:00:00+08:00")
SERVICES = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)

STATUS_AFTER = {
    Action.file: CaseStatus.reported,
    Action.register: CaseStatus.registered,
    Action.dispatch: CaseStatus.dispatched,
    Action.handle: CaseStatus.handled,
    Action.verify: CaseStatus.verified,
    Action.reject: CaseStatus.dispatched,
    Action.close: CaseStatus.closed,
}


def at(hours: float) -> str:
    return utc_iso(T0 + timedelta(hours=hours))


@dataclass(frozen=True)
class Place:
    grid: str | None
    community: str | None
    street: str | None
    district: str
    lon: float
    lat: float


def place_of(snapshot: Snapshot, pos: int) -> Place:
    row = snapshot.grids.frame.iloc[pos]
    p = row.geometry.representative_point()
    return Place(
        str(row["code"]),
        str(row["community_code"]),
        str(row["street_code"]),
        str(row["district_code"]),
        float(p.x),
        float(p.y),
    )


def make_case(
    n: int,
    where: Place,
    service: str,
    filed_h: float,
    due_h: float,
    steps: tuple[tuple[Any, ...], ...] = (),
    description: str = "路边有问题",
) -> Case:
    """A case filed at ``filed_h`` hours after T0, due at ``due_h``, then ``steps``:
    (action, hour) or, for extend / escalate, (action, hour, new deadline hour)."""
    level = Level.grid if where.grid else Level.district
    case = Case(
        id=f"20250303-{n:06d}",
        service_code=service,
        description=description,
        lon=where.lon,
        lat=where.lat,
        crs="wgs84",
        status=CaseStatus.reported,
        level=level,
        grid_code=where.grid,
        unit_code="",
        community_code=where.community,
        street_code=where.street,
        district_code=where.district,
        officer=None,
        deadline=at(due_h),
        requested=at(filed_h),
        updated=at(filed_h),
        version=0,
    )

    def event(action: Action, hour: float, status: CaseStatus, deadline: str | None) -> CaseEvent:
        return CaseEvent(
            at=at(hour),
            action=action,
            actor="test",
            role="admin",
            status=status,
            level=case.level,
            grid_code=case.grid_code,
            unit_code=where.grid or where.district,
            deadline=deadline,
        )

    case = case.after(event(Action.file, filed_h, CaseStatus.reported, at(due_h)))
    for action, hour, *rest in steps:
        if action is Action.extend:
            case = case.after(event(action, hour, case.status, at(rest[0])))
        elif action is Action.escalate:
            case = replace(case, level=level_above(case.level) or case.level)
            case = case.after(
                event(action, hour, case.status, at(rest[0])), escalations=case.escalations + 1
            )
        else:
            status = STATUS_AFTER[action]
            due = case.deadline if status in AWAITING_HANDLING else None
            case = case.after(event(action, hour, status, due))
    return case


R, G, D, H, V, C = (
    Action.register,
    Action.dispatch,
    Action.handle,
    Action.verify,
    Action.close,
    Action.reject,
)
CLOSE = Action.close


@dataclass(frozen=True)
class World:
    a: Place  # grid A and grid B share a community; C is in another district
    b: Place
    c: Place
    outside: Place  # outside every grid, routed to A's district
    cases: list[Case]


def build_world(snapshot: Snapshot) -> World:
    frame = snapshot.grids.frame
    a, b = place_of(snapshot, 0), place_of(snapshot, 1)
    assert a.community == b.community
    other = int(np.flatnonzero(frame["district_code"].to_numpy() != a.district)[0])
    c = place_of(snapshot, other)
    west = snapshot.bounds[0] - 0.1
    outside = Place(None, None, None, a.district, west, a.lat)
    cases = [
        # 1: A, on time (1.5 <= 2), closed after 3 h
        make_case(1, a, "JM01", 0, 2, ((R, 0.5), (G, 1), (D, 1.5), (H, 2), (CLOSE, 3))),
        # 2: A, late (5 > 3), closed after 8 h
        make_case(2, a, "JM01", 1, 3, ((R, 1.5), (G, 2), (D, 5), (H, 6), (CLOSE, 9))),
        # 3: A, dispatched, due 4 h: overdue at NOW (late, overdue_open)
        make_case(3, a, "SR01", 2, 4, ((R, 2.5), (G, 3))),
        # 4: A, reported, due at 200 h: neither judged nor overdue
        make_case(4, a, "SR01", 10, 200),
        # 5: A, extended to 10 h, handled at 8: on time, not closed
        make_case(5, a, "HW01", 3, 5, ((R, 3.5), (G, 4), (Action.extend, 4.5, 10), (D, 8))),
        # 12: A, handled at 2 (<= 6, the first 处置 counts), rejected, handled again, closed at 9
        make_case(
            12, a, "JM03", 0, 6, ((R, 0.5), (G, 1), (D, 2), (C, 3), (D, 7), (H, 8), (CLOSE, 9))
        ),
        # 6: B, escalated at 2 (deadline 6), handled at 5: on time; closed after 7 h
        make_case(
            6,
            b,
            "JM01",
            0,
            2,
            ((R, 0.5), (G, 1), (Action.escalate, 2, 6), (D, 5), (H, 5.5), (CLOSE, 7)),
        ),
        # 7: B, escalated twice, still reported, due 8 h: overdue (late)
        make_case(7, b, "JM02", 1, 2, ((Action.escalate, 2, 4), (Action.escalate, 4, 8))),
        # 8: C (another district), on time, closed after 2 h
        make_case(8, c, "JM01", 0, 2, ((R, 0.2), (G, 0.5), (D, 1), (H, 1.5), (CLOSE, 2))),
        # 9: outside every grid, handled on time (8 <= 9), not closed
        make_case(9, outside, "SS01", 5, 9, ((R, 6), (G, 7), (D, 8))),
        # 10: outside every grid, reported, due 8 h: overdue
        make_case(10, outside, "SS01", 6, 8),
        # 11: before START (2025-02-26): outside the period
        make_case(11, a, "JM01", -120, -118, ((R, -119), (G, -119), (D, -118.5))),
        # 13: requested exactly at END: outside the period (end is exclusive)
        make_case(13, a, "JM01", (END - T0).total_seconds() / 3600, 700),
        # 14: 40 days before NOW: outside the default period (the last 30 days)
        make_case(14, c, "JM01", -860, -858),
    ]
    return World(a, b, c, outside, cases)


@pytest.fixture(scope="module")
def world(snapshot: Snapshot) -> World:
    return build_world(snapshot)


@pytest.fixture(scope="module")
def frame(world: World) -> pd.DataFrame:
    return case_frame(world.cases)


def stats(frame: pd.DataFrame, snapshot: Snapshot, by: Level) -> pd.DataFrame:
    return case_stats(frame, snapshot, by, START, END, NOW, SERVICES)


def row(table: pd.DataFrame, code: str | None, name: str | None = None) -> dict[str, Any]:
    hit = table[table["code"] == code]
    if name is not None:
        hit = hit[hit["name"] == name]
    assert len(hit) == 1, (code, name, len(hit))
    return dict(hit.iloc[0])


def ts(hours: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + timedelta(hours=hours))


# -- the frame -------------------------------------------------------------------------------
def test_frame_reads_the_histories(frame: pd.DataFrame) -> None:
    f = frame.set_index("id")
    c1, c3, c5, c6, c12 = (f.loc[f"20250303-{n:06d}"] for n in (1, 3, 5, 6, 12))
    assert c1["handled_at"] == ts(1.5) and c1["deadline_at_handling"] == ts(2)
    assert c1["closed_at"] == ts(3)
    assert pd.isna(c3["handled_at"]) and pd.isna(c3["closed_at"]) and c3["deadline"] == ts(4)
    assert c5["deadline_at_handling"] == ts(10)  # after the extension
    assert c6["deadline_at_handling"] == ts(6) and c6["escalations"] == 1  # after escalation
    assert c12["handled_at"] == ts(2) and c12["closed_at"] == ts(9)  # the first 处置
    assert len(frame) == 14 and frame["id"].is_unique
    assert case_frame([]).empty


# -- the table, against hand-worked figures --------------------------------------------------
def test_grid_figures(frame: pd.DataFrame, snapshot: Snapshot, world: World) -> None:
    table = stats(frame, snapshot, Level.grid)
    assert len(table) == len(snapshot.grids) + 1  # every grid, and one 区受理 row
    a = row(table, world.a.grid)
    # cases 1 2 3 4 5 12: handled 1 2 5 12 (on time 1 5 12) + 3 overdue open = 5 judged
    assert a["name"] == snapshot.grids.frame["name"].iloc[0]
    assert a["total"] == 6
    assert (a["占道经营"], a["乱堆乱放"], a["暴露垃圾"], a["店外经营"], a["流动摊贩"]) == (
        2,
        2,
        1,
        1,
        0,
    )
    assert (a["上报"], a["立案"], a["派遣"], a["处置"], a["核查"], a["结案"]) == (1, 0, 1, 1, 0, 3)
    assert (a["judged"], a["on_time"]) == (5, 3)
    assert a["on_time_rate"] == pytest.approx(3 / 5)
    assert a["median_hours_to_close"] == pytest.approx(8.0)  # of 3, 8, 9
    assert (a["escalations"], a["overdue_open"]) == (0, 1)
    b = row(table, world.b.grid)
    # 6 handled at 5 <= 6 (escalated deadline), 7 overdue: 1 of 2; escalations 1 + 2
    assert (b["total"], b["judged"], b["on_time"], b["escalations"], b["overdue_open"]) == (
        2,
        2,
        1,
        3,
        1,
    )
    assert b["on_time_rate"] == pytest.approx(0.5)
    assert b["median_hours_to_close"] == pytest.approx(7.0)
    intake = row(table, world.a.district, "区受理")
    # 9 handled on time, 10 overdue; neither closed
    assert (intake["total"], intake["judged"], intake["on_time"], intake["overdue_open"]) == (
        2,
        2,
        1,
        1,
    )
    assert intake["井盖缺损"] == 2 and np.isnan(intake["median_hours_to_close"])
    assert intake["district_name"] == snapshot.grids.frame["district_name"].iloc[0]
    quiet = row(table, str(snapshot.grids.frame["code"].iloc[2]))
    assert quiet["total"] == 0 and np.isnan(quiet["on_time_rate"])
    assert int(table["total"].sum()) == 11  # 14 cases, 3 outside the period: none dropped


def test_community_and_district_figures(
    frame: pd.DataFrame, snapshot: Snapshot, world: World
) -> None:
    com = stats(frame, snapshot, Level.community)
    c1 = row(com, world.a.community)
    # A and B: 8 cases, judged 5 + 2, on time 3 + 1; closed after 3, 8, 9, 7 hours
    assert (c1["total"], c1["judged"], c1["on_time"], c1["escalations"]) == (8, 7, 4, 3)
    assert c1["on_time_rate"] == pytest.approx(4 / 7)
    assert c1["median_hours_to_close"] == pytest.approx(7.5)
    assert row(com, world.a.district, "区受理")["total"] == 2
    dist = stats(frame, snapshot, Level.district)
    assert len(dist) == len(snapshot.units("district"))  # intake counts in its district
    d = row(dist, world.a.district)
    # A, B and the two outside cases: 10 cases, judged 7 + 2, on time 4 + 1, overdue 2 + 1
    assert (d["total"], d["judged"], d["on_time"], d["overdue_open"]) == (10, 9, 5, 3)
    assert d["on_time_rate"] == pytest.approx(5 / 9)
    assert d["median_hours_to_close"] == pytest.approx(7.5)
    other = row(dist, world.c.district)
    assert (other["total"], other["on_time_rate"], other["median_hours_to_close"]) == (1, 1.0, 2.0)
    figures = summary(frame, START, END, NOW)
    assert figures["total"] == 11 and figures["outside_grids"] == 2
    assert figures["on_time_rate"] == pytest.approx(6 / 10)


def test_csv_for_excel(frame: pd.DataFrame, snapshot: Snapshot, world: World) -> None:
    data = stats_csv(stats(frame, snapshot, Level.community), Level.community)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    head = rows[0]
    assert head[:5] == ["社区编码", "名称", "所属区编码", "所属区", "案件总数"]
    for name in ("占道经营", "上报", "结案", "按时处置率（%）", "结案时长中位数（小时）"):
        assert name in head
    by_code = {r[0]: dict(zip(head, r, strict=True)) for r in rows[1:] if r[1] != "区受理"}
    c1 = by_code[str(world.a.community)]
    assert c1["按时处置率（%）"] == "57.1"  # 4 / 7
    assert c1["结案时长中位数（小时）"] == "7.5"
    assert c1["案件总数"] == "8" and c1["超期未处置"] == "2"
    empty = next(r for code, r in by_code.items() if r["案件总数"] == "0")
    assert empty["按时处置率（%）"] == "" and empty["结案时长中位数（小时）"] == ""


# -- endpoints -------------------------------------------------------------------------------
class MemoryCases:
    """A case store in memory (the stats read only ``query`` and ``revision``)."""

    def __init__(self, cases: list[Case]) -> None:
        self.cases = {c.id: c for c in cases}
        self.changes = 0

    def put(self, case: Case) -> None:
        self.cases[case.id] = case
        self.changes += 1

    def file(self, make: Any, idempotency_key: str | None, who: Any) -> Filed:
        raise NotImplementedError

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def update(self, case_id: str, mutation: Any, who: Any) -> Case:
        raise NotImplementedError

    def query(self, q: CaseQuery) -> tuple[list[Case], int]:
        hits = q.order([c for c in self.cases.values() if q.matches(c)])
        return hits[q.offset : q.offset + q.limit], len(hits)

    def due(self, now: datetime) -> list[str]:
        return []

    def revision(self) -> str:
        return f"mem{self.changes}"


def include_stats_router(app: FastAPI) -> None:
    """Put the router first unless app.py does already (cases' /{case_id} must not shadow it)."""
    if any(getattr(r, "path", None) == "/api/v1/cases/stats" for r in app.router.routes):
        return
    n = len(app.router.routes)
    app.include_router(casestats.router)
    added = app.router.routes[n:]
    del app.router.routes[n:]
    app.router.routes[0:0] = added


@pytest.fixture
def app_with_cases(
    snapshot: Snapshot, settings: Settings, shared_backend: Backend, world: World
) -> Iterator[tuple[TestClient, MemoryCases, FastAPI]]:
    app = create_app(settings, SnapshotStore(snapshot), shared_backend)
    include_stats_router(app)
    store = MemoryCases(world.cases)
    app.state.runtime.cases.close()
    app.state.runtime.cases = CaseDesk(
        store=store, services=SERVICES, snapshot=lambda: snapshot, clock=lambda: NOW
    )
    # No lifespan: nothing to load (the store holds the snapshot) and no escalation timer.
    client = TestClient(app)
    try:
        yield client, store, app
    finally:
        app.state.heavy.close()


PERIOD = {"start": START.isoformat(), "end": END.isoformat()}


def test_json_endpoint(app_with_cases: Any, world: World) -> None:
    client, _, _ = app_with_cases
    r = client.get("/api/v1/cases/stats", params={"by": "community", **PERIOD, "x": "1"})
    assert r.status_code == 400 and "'x'" in r.json()["detail"]  # unknown: refused (issue 12)
    r = client.get("/api/v1/cases/stats", params={"by": "community", **PERIOD})
    assert r.status_code == 200, r.text
    body = r.json()
    CaseStatsResponse.model_validate(body)  # what the OpenAPI document declares
    assert body["by"] == "community" and body["summary"]["total"] == 11
    c1 = next(u for u in body["units"] if u["code"] == world.a.community and u["name"] != "区受理")
    assert (c1["total"], c1["judged"], c1["on_time"], c1["结案"]) == (8, 7, 4, 4)
    assert c1["on_time_rate"] == pytest.approx(0.5714)
    intake = next(u for u in body["units"] if u["name"] == "区受理")
    assert intake["code"] == world.a.district and intake["on_time_rate"] == 0.5
    empty = next(u for u in body["units"] if u["total"] == 0)
    assert empty["on_time_rate"] is None and empty["median_hours_to_close"] is None
    # Default period: the last 30 days up to now (case 14, 40 days old, is left out).
    r = client.get("/api/v1/cases/stats", params={"by": "district"})
    assert r.status_code == 200
    assert r.json()["summary"]["total"] == 13
    # A '+' the URL decoded into a space still reads as an offset.
    r = client.get("/api/v1/cases/stats?by=district&start=2025-03-01T00:00:00 08:00")
    assert r.status_code == 200 and r.json()["start"] == "2025-03-01T00:00:00+08:00"


def test_csv_endpoint_and_bad_input(app_with_cases: Any) -> None:
    client, _, _ = app_with_cases
    r = client.get("/api/v1/cases/stats", params={"by": "grid", "format": "csv", **PERIOD})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    assert r.content.decode("utf-8-sig").splitlines()[0].startswith("网格编码,名称,")
    for params in (
        {"by": "planet"},
        {"start": "yesterday"},
        {"start": "2025-03-01T00:00:00"},  # no offset
        {"start": END.isoformat(), "end": START.isoformat()},
        {"format": "xlsx"},
        {"end": "0001-01-01T00:00:00+00:00"},
        {"start": "9999-12-31T23:59:59+14:00"},
    ):
        for path in ("/api/v1/cases/stats", "/maps/cases"):
            if path == "/maps/cases" and "format" in params:
                continue  # the page has no format: ignored like any undeclared parameter
            r = client.get(path, params=params)
            assert r.status_code == 422, (path, params)
            # The API names the problem in JSON, the map page in a Chinese error page.
            assert r.json()["detail"] if path.startswith("/api/") else "错误代码 422" in r.text


def test_map_page_is_served_and_cached_on_the_case_revision(
    app_with_cases: Any, world: World, snapshot: Snapshot
) -> None:
    client, store, app = app_with_cases
    params = {"by": "community", **PERIOD}
    r = client.get("/maps/cases", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    csp = r.headers["content-security-policy"]
    assert inline_script_hashes(page) and all(h in csp for h in inline_script_hashes(page))
    heat_js = f"<script>{leaflet_heat_js()}</script>"  # inline, hashed into the CSP
    assert heat_js in page and page.index("leaflet.js") < page.index(heat_js)
    units = snapshot.units("community")
    name = str(units.loc[units["code"] == world.a.community, "name"].iloc[0])
    assert js_value(html.escape(name))[1:-1] in page  # in its tooltip
    assert "L.heatLayer(" in page and "simpleheat" in page
    assert "cdn.jsdelivr" not in page and "unpkg" not in page
    heat = json.dumps("案件热力（11）")  # the layer control's label (folium writes \\uXXXX)
    assert heat in page
    builds = app.state.pages.builds
    assert client.get("/maps/cases", params={**params, "ignored": "1"}).text == page
    assert app.state.pages.builds == builds  # cached; undeclared parameters ignored
    store.put(make_case(99, world.a, "JM01", 20, 22))
    again = client.get("/maps/cases", params=params).text
    assert app.state.pages.builds == builds + 1
    assert json.dumps("案件热力（12）") in again


# -- the map builder, with hostile names -----------------------------------------------------
def test_map_escapes_hostile_names(shared_backend: Backend, world: World) -> None:
    loaded = shared_backend.load()
    frames = dict(loaded.frames)
    grids = frames[LayerName.grids].copy()
    first = grids["code"] == world.a.grid
    grids.loc[first, "name"] = payload(1)
    grids.loc[grids["community_code"] == world.a.community, "community_name"] = payload(2)
    grids.loc[grids["district_code"] == world.a.district, "district_name"] = payload(3)
    frames[LayerName.grids] = grids
    hostile = build_snapshot(frames, name=payload(4), version=loaded.version)
    cases = [*world.cases, make_case(50, world.a, "JM01", 1, 5, description=payload(5))]
    options = PageOptions()
    for by in (Level.grid, Level.community):
        m = case_map(hostile, options, case_frame(cases), SERVICES, NOW, by, START, END)
        page = render_html(m, options)
        for n in range(1, 6):
            assert payload(n) not in page
            assert f"window.__xss={n}</script>" not in page
            assert f"<svg onload=window.__xss={n}>" not in page
        assert "window.__xss=5" not in page  # descriptions never reach the map
        shown = payload(1) if by is Level.grid else payload(2)
        assert js_value(html.escape(shown))[1:-1] in page  # the tooltip, escaped
        assert html.escape(payload(4)) in page  # the <title>


# -- a large set -----------------------------------------------------------------------------
def test_twenty_thousand_cases(snapshot: Snapshot) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    grids = rng.integers(0, len(snapshot.grids), n)
    places = {int(i): place_of(snapshot, int(i)) for i in np.unique(grids)}
    outside = Place(None, None, None, places[int(grids[0])].district, 118.0, 36.0)
    codes = [s.code for s in SERVICES.services]
    plans: list[tuple[tuple[Any, ...], ...]] = [
        (),
        ((R, 1), (G, 2)),
        ((R, 1), (G, 2), (D, 3)),
        ((R, 1), (G, 2), (D, 30), (H, 31), (CLOSE, 40)),
        ((Action.escalate, 5, 12), (R, 6), (G, 7), (D, 8), (H, 9), (CLOSE, 10)),
    ]
    filed = rng.uniform(-600, 90, n)
    cases = [
        make_case(
            k,
            outside if k % 997 == 0 else places[int(grids[k])],
            codes[k % len(codes)],
            float(filed[k]),
            float(filed[k]) + 4,
            tuple((s[0], filed[k] + s[1], *(filed[k] + x for x in s[2:])) for s in plans[k % 5]),
        )
        for k in range(n)
    ]
    frame = case_frame(cases)
    assert len(frame) == n
    for by in Level:
        table = case_stats(frame, snapshot, by, None, None, NOW, SERVICES)
        assert int(table["total"].sum()) == n  # nothing dropped
        cats = [s.name for s in SERVICES.services]
        assert (table[cats].sum(axis=1) == table["total"]).all()
        assert (
            table[["上报", "立案", "派遣", "处置", "核查", "结案"]].sum(axis=1) == table["total"]
        ).all()
        rate = table["on_time_rate"].dropna()
        assert ((rate >= 0) & (rate <= 1)).all()
    data = stats_csv(case_stats(frame, snapshot, "street", START, END, NOW, SERVICES), "street")
    assert data.startswith(b"\xef\xbb\xbf")
    assert json.dumps(summary(frame, None, None, NOW))
