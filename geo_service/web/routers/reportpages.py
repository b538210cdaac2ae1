"""Residents' 随手拍 phone pages (Chinese, opened inside WeChat): report a problem (``/report``)
and follow a case (``/cases/{case_id}/page``).

Both pages are thin clients of the public case API: ``/report`` is a form whose script reads
``/open311/v2/services.json``, ``/api/v1/cases/nearby`` and posts to
``/open311/v2/requests.json``; the case page is rendered here from the same public answer
(``domain.caseview.service_request``, as ``/open311/v2/requests/{id}.json`` gives it), so it never shows more than
the API gives anyone (the reporter's phone is not in it). A missing case is a Chinese 404.

As on ``/s/`` and ``/find``: everything comes from the service (Leaflet vendored); only Amap
tiles come from outside, drawn in GCJ-02, and the pages work when they never arrive. No inline
script or style (the CSP forbids them): page data reaches the scripts as ``data-*`` attributes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from geo_service.core.cases import CASE_ID, LEVEL_TEXT, STATUS_TEXT
from geo_service.core.errors import NotFoundError
from geo_service.core.workcalendar import SHANGHAI
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.caseview import service_request
from geo_service.web.deps import CasesDep, SnapshotDep
from geo_service.web.pagekit import AMAP_TILES, TEMPLATES, gcj

STEPS = tuple(STATUS_TEXT.values())  # 上报 立案 派遣 处置 核查 结案
LEVELS = {str(level): text for level, text in LEVEL_TEXT.items()}  # "grid" -> 网格
NO_STORE = {"Cache-Control": "no-cache"}  # a case moves on; the page must not be stale

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _base(request: Request) -> dict[str, Any]:
    root = _root(request)
    return {"request": request, "root": root, "static": root + "/static", "tiles": AMAP_TILES}


@router.get("/report", response_class=HTMLResponse)
async def report_page(request: Request, snap: SnapshotDep) -> Response:
    """The 随手拍 form. ``?lon=&lat=&crs=`` and ``?service_code=`` are read by its script."""
    minx, miny, maxx, maxy = snap.bounds
    ctx = _base(request)
    ctx.update(center=gcj((minx + maxx) / 2, (miny + maxy) / 2), dataset=snap.name)
    return TEMPLATES.TemplateResponse(request, "report.html", ctx, headers=NO_STORE)


def beijing(value: object) -> str:
    """An ISO 8601 time as Beijing wall-clock text (``2026-12-02 10:30``); '' if absent."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if at.tzinfo is None:  # the API sends offsets; a bare time is taken as Beijing time
        at = at.replace(tzinfo=SHANGHAI)
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def steps(case: dict[str, Any]) -> list[dict[str, str]]:
    """The step bar: each step done, current or to come, from the latest known status."""
    current = 0
    for event in case.get("history") or []:
        text = event.get("status_text")
        if text in STEPS:
            current = STEPS.index(text)
    if case.get("status") == "closed":
        current = len(STEPS)  # every step done
    return [
        {"text": s, "state": "done" if i < current else "current" if i == current else "todo"}
        for i, s in enumerate(STEPS)
    ]


def _public_case(request: Request, desk: CaseDesk, case_id: str) -> dict[str, Any] | None:
    """The public answer for ``case_id``, exactly what ``/open311/v2/requests/{id}.json``
    gives anyone (no phone); None if there is no such case."""
    try:
        case = desk.get(case_id)
    except NotFoundError:
        return None
    base = str(request.app.state.settings.public_base_url).rstrip("/")
    return service_request(case, desk.services, base, desk.clock())


@router.get("/cases/{case_id}/page", response_class=HTMLResponse)
async def case_page(
    request: Request, desk: CasesDep, case_id: Annotated[str, Path(max_length=40)]
) -> Response:
    """A case for the resident who filed it (or anyone with its number): where it stands."""
    ctx = _base(request)
    wanted = case_id.strip()
    case = None
    if CASE_ID.match(wanted):
        case = await run_in_threadpool(_public_case, request, desk, wanted)
    if case is None:
        ctx.update(case_id=case_id, case=None, failed=False)
        return TEMPLATES.TemplateResponse(request, "case.html", ctx, 404, NO_STORE)
    history = [{**e, "at_text": beijing(e.get("at"))} for e in case.get("history") or []]
    ctx.update(
        case_id=case.get("service_request_id") or wanted,
        case=case,
        steps=steps(case),
        history=list(reversed(history)),  # newest first
        level_text=LEVELS.get(str(case.get("level")), str(case.get("level") or "")),
        deadline_text=beijing(case.get("deadline") or case.get("expected_datetime")),
        requested_text=beijing(case.get("requested_datetime")),
        updated_text=beijing(case.get("updated_datetime")),
        has_point=all(isinstance(case.get(k), int | float) for k in ("lat", "long")),
        failed=False,
    )
    return TEMPLATES.TemplateResponse(request, "case.html", ctx, headers=NO_STORE)
