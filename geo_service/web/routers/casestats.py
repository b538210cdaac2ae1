"""随手拍 statistics per unit (JSON or CSV for Excel) and the cases map page.

Both read the cases requested in ``[start, end)`` (ISO 8601 with an offset; default the last
30 days up to now) and judge them as ``geo_service.analysis.casestats`` documents. The work (the
store query, the frame, the table, the map) runs in the heavy pool. Map pages are cached like
the other map pages (per snapshot, on the declared parameters only: an unknown query parameter
is ignored, as everywhere else) and also on the case store's revision, so any change to a
case builds a new page; the clock enters the key in ``MAP_CLOCK_STEP`` steps, so overdue
figures on a cached page are at most that old.

Include this router before ``cases.router``: ``/api/v1/cases/{case_id}`` would otherwise take
``/api/v1/cases/stats`` (and answer 422 for the case number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from geo_service.analysis.casestats import (
    FrameCache,
    case_stats,
    stats_csv,
    stats_records,
    summary,
)
from geo_service.core.cases import parse_time
from geo_service.core.errors import InputError, quote
from geo_service.core.schema import Level
from geo_service.domain.casedesk import CaseDesk
from geo_service.render.maps.basemaps import Basemap
from geo_service.render.maps.cases import case_map
from geo_service.render.maps.page import render_html
from geo_service.web.deps import CasesDep, HeavyDep, SettingsDep, SnapshotDep
from geo_service.web.mapoptions import page_options
from geo_service.web.pagecache import PageCache
from geo_service.web.responses import JSONResponse
from geo_service.web.security import map_policy

router = APIRouter(tags=["Cases (随手拍)"])

DEFAULT_DAYS = 30
MAX_CASES = 10_000_000  # a query limit the store needs; far above any real period
MAP_CLOCK_STEP = timedelta(minutes=5)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # times outside these years are refused (422)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
TIME_HELP = (
    "ISO 8601 with an offset, e.g. 2025-03-01T00:00:00+08:00 (a space where the URL lost "
    "the '+' is read as '+')"
)
BY_HELP = "Units: grid, community, street or district"
BASEMAP_HELP = "Basemap and with it the page's coordinate system: amap (GCJ-02), tianditu, osm"

ByQuery = Annotated[Level | None, Query(description=BY_HELP)]
StartQuery = Annotated[
    str | None, Query(max_length=40, description="From (inclusive); " + TIME_HELP)
]
EndQuery = Annotated[
    str | None, Query(max_length=40, description="Until (exclusive); " + TIME_HELP)
]


class CaseStatsUnit(BaseModel):
    """One unit's row; besides these, one count per category (keyed by its Chinese name, see
    ``services``) and per status (上报 立案 派遣 处置 核查 结案)."""

    model_config = ConfigDict(extra="allow")

    code: str | None
    name: str | None
    district_code: str | None
    district_name: str | None
    total: int
    judged: int
    on_time: int
    on_time_rate: float | None
    median_hours_to_close: float | None
    escalations: int
    overdue_open: int


class CaseStatsSummary(BaseModel):
    total: int
    closed: int
    judged: int
    on_time: int
    on_time_rate: float | None
    median_hours_to_close: float | None
    escalations: int
    overdue_open: int
    outside_grids: int


class CaseStatsResponse(BaseModel):
    by: Level
    start: str
    end: str
    now: str
    summary: CaseStatsSummary
    services: dict[str, str]
    units: list[CaseStatsUnit]


def _time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if " " in text:  # "2025-03-01T00:00:00 08:00": a '+' decoded as a space
        head, _, tail = text.rpartition(" ")
        text = f"{head}+{tail}"
    try:
        at = parse_time(text)
    except ValueError:
        raise InputError(f"{quote(value)} is not an ISO 8601 date-time", name) from None
    if at.tzinfo is None:
        raise InputError("give a timezone offset (e.g. +08:00 or Z)", name)
    if not EARLIEST <= at < LATEST:
        raise InputError(f"{quote(value)} is outside {EARLIEST.year}..{LATEST.year - 1}", name)
    return at


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime | None  # None: up to now (no upper bound)
    shown_end: datetime  # ``end`` or now, for the answer


def period(start_text: str | None, end_text: str | None, now: datetime) -> Period:
    start, end = _time(start_text, "start"), _time(end_text, "end")
    if start is None:
        start = (end or now) - timedelta(days=DEFAULT_DAYS)
    if end is not None and end <= start:
        raise InputError("end must be after start", "end")
    return Period(start, end, end or now)


def _frame(request: Request, desk: CaseDesk) -> Any:
    """Every case as a frame, cached per store revision (the period is applied later)."""
    cache: FrameCache | None = getattr(request.app.state, "case_frames", None)
    if cache is None:
        cache = request.app.state.case_frames = FrameCache(MAX_CASES)
    return cache.get(desk.store)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


@router.get(
    "/api/v1/cases/stats",
    summary="Case statistics per grid, community, street or district",
    response_model=CaseStatsResponse,
    responses={
        200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
    },
)
async def stats(
    request: Request,
    desk: CasesDep,
    snap: SnapshotDep,
    heavy: HeavyDep,
    by: ByQuery = None,
    start: StartQuery = None,
    end: EndQuery = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="json, or csv (UTF-8 with BOM, for Excel)")
    ] = "json",
) -> Response:
    """Per unit over ``[start, end)`` (default: the last 30 days): cases in all, per category
    and per status, the on-time rate (handled by the deadline in force, among cases handled
    plus open cases already overdue), the median hours to close, escalations and open overdue
    cases. Cases outside every grid count in their district (a ``区受理`` row below district
    level)."""
    level = by or Level.grid
    now = desk.clock()
    p = period(start, end, now)

    def answer() -> Any:
        frame = _frame(request, desk)
        table = case_stats(frame, snap, level, p.start, p.end, now, desk.services)
        if format == "csv":
            return stats_csv(table, level)
        return {
            "by": level.value,
            "start": _iso(p.start),
            "end": _iso(p.shown_end),
            "now": _iso(now),
            "summary": summary(frame, p.start, p.end, now),
            "services": {s.code: s.name for s in desk.services.services},
            "units": stats_records(table),
        }

    body = await heavy.run(answer)
    if format == "csv":
        name = f"case-stats-{level.value}-{p.start:%Y%m%d}-{p.shown_end:%Y%m%d}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(body)


# -- the map page ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CasePage:
    """A built page and its CSP (the same shape the maps router caches)."""

    html: str
    csp: str


def _pages(request: Request) -> PageCache[CasePage]:
    pages: PageCache[CasePage] = request.app.state.pages
    return pages


def _step(now: datetime) -> datetime:
    """``now`` rounded down to ``MAP_CLOCK_STEP`` (the clock a cached page is judged at)."""
    step = MAP_CLOCK_STEP.total_seconds()
    return datetime.fromtimestamp(now.timestamp() // step * step, tz=now.tzinfo)


@router.get("/maps/cases", response_class=HTMLResponse, summary="随手拍 cases map")
async def cases_map(
    request: Request,
    desk: CasesDep,
    snap: SnapshotDep,
    settings: SettingsDep,
    by: ByQuery = None,
    start: StartQuery = None,
    end: EndQuery = None,
    basemap: Annotated[Basemap | None, Query(description=BASEMAP_HELP)] = None,
) -> HTMLResponse:
    """Cases over ``[start, end)`` (default: the last 30 days) as a heat map, and the units of
    ``by`` (default grid; community for a city of more grids than one page draws) coloured by
    on-time rate, with each unit's counts, rate and median hours to close."""
    now = _step(desk.clock())
    p = period(start, end, now)
    declared: dict[str, str] = {}
    if by:
        declared["by"] = by.value
    if start:
        declared["start"] = _iso(p.start)
    if end and p.end is not None:
        declared["end"] = _iso(p.end)
    options = page_options(settings, basemap, declared)
    revision = await run_in_threadpool(desk.store.revision)
    key = (
        "cases",
        *(f"{k}={v}" for k, v in sorted(declared.items())),
        f"start@{p.start.timestamp()}",
        f"end@{p.end.timestamp() if p.end else ''}",
        f"now@{now.timestamp()}",
        f"cases@{revision}",
        options.basemap.value,
        options.tianditu_key or "",
    )

    def build() -> CasePage:
        frame = _frame(request, desk)
        m = case_map(snap, options, frame, desk.services, now, by, p.start, p.end)
        html = render_html(m, options)
        return CasePage(html, map_policy(html))

    page = await _pages(request).get(snap, key, build)
    return HTMLResponse(
        page.html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": page.csp}
    )
