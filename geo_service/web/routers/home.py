"""The landing page ``/`` (Chinese): each user's entry, residents, officers, planners and the
people who build on the API. A static page (no inline script or style: the CSP forbids them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from geo_service.web.deps import SnapshotDep
from geo_service.web.pagekit import TEMPLATES

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, snap: SnapshotDep) -> Response:
    """Where to start: 找修理点, 随手拍, 待办案件, the maps, coverage, the API documentation."""
    root = str(request.scope.get("root_path", ""))
    minx, miny, maxx, maxy = snap.bounds
    ctx: dict[str, Any] = {
        "request": request,
        "root": root,
        "static": root + "/static",
        "dataset": snap.name,
        # The grid lookup form starts from the middle of the data.
        "lon": f"{(minx + maxx) / 2:.5f}",
        "lat": f"{(miny + maxy) / 2:.5f}",
    }
    return TEMPLATES.TemplateResponse(request, "home.html", ctx)
