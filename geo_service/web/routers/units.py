"""Officers: what lies in a grid, community or street (stalls, vendor clusters, open cases)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from geo_service.analysis.unitcontents import CASES_LIMIT, contents, open_cases
from geo_service.web.deps import CasesDep, SnapshotDep
from geo_service.web.models import UnitContents
from geo_service.web.responses import JSONResponse

router = APIRouter(prefix="/api/v1/units", tags=["grids (officers)"])


@router.get(
    "/{code}/contents",
    response_model=UnitContents,
    summary="What lies in a grid, community or street",
    responses={404: {"description": "Unknown grid, community or street code"}},
)
async def unit_contents(
    snap: SnapshotDep,
    desk: CasesDep,
    code: Annotated[
        str,
        Path(
            description="15-digit grid, 12-digit community or 9-digit street code",
            examples=["370705001009001", "370705001009", "370705001"],
        ),
    ],
) -> JSONResponse:
    """The unit (code, name, level), the stalls and vendor clusters whose point lies in one of
    its grids (a relocated one flagged: ``status`` relocated, ``relocated`` true, ``moved_to``
    where it went), and its open 随手拍 cases routed to it or a grid in it: how many, how many
    overdue, and the first ones (overdue first, then by deadline; public fields only)."""

    def answer() -> dict[str, Any]:  # a 404 for an unknown unit before the store is asked
        body = contents(snap, code)
        body["cases"] = open_cases(desk.store, desk.services, code, desk.clock(), CASES_LIMIT)
        return body

    return JSONResponse(await run_in_threadpool(answer))
