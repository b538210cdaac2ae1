"""The officers' 随手拍 phone page (``/officer``, Chinese): the queue of a grid, community or
street officer and the steps of handling, for the phone in their pocket.

A thin client of the officers' API: its script keeps the officer's API key in the phone's
``localStorage`` (退出 clears it), reads ``GET /api/v1/cases/queue`` with ``X-API-Key`` and posts
``/api/v1/cases/{id}/actions``. The page itself holds no data and no key (it is the same for
everyone); no inline script or style (the CSP forbids them): URLs reach the script as ``data-*``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from geo_service.web.deps import SnapshotDep
from geo_service.web.pagekit import TEMPLATES

NO_STORE = {"Cache-Control": "no-store"}  # the page is static, but a cached one may be stale

router = APIRouter(include_in_schema=False)


@router.get("/officer", response_class=HTMLResponse)
async def officer_page(request: Request, snap: SnapshotDep) -> Response:
    """The queue page: enter a key once, then see and act on the cases one is responsible for."""
    root = str(request.scope.get("root_path", ""))
    ctx: dict[str, Any] = {
        "request": request,
        "root": root,
        "static": root + "/static",
        "dataset": snap.name,
    }
    return TEMPLATES.TemplateResponse(request, "officer.html", ctx, headers=NO_STORE)
