"""Officers: what lies in a grid, community or street (stalls, vendor clusters, open cases)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from geo_service.core.errors import quote
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.storage.cases import CaseQuery
from geo_service.web.deps import SnapshotDep
from geo_service.web.errors import bad_request, not_found
from geo_service.web.models import UnitContents
from geo_service.web.responses import JSONResponse

router = APIRouter(prefix="/api/v1/units", tags=["grids (officers)"])

# code length → (level, code column of the grids layer, name column)
LEVELS = {
    15: ("grid", "code", "name"),
    12: ("community", "community_code", "community_name"),
    9: ("street", "street_code", "street_name"),
}


def _facilities(layer: PointLayer, in_unit: np.ndarray, grid_codes: Any) -> list[dict[str, Any]]:
    gi = layer.grid_index
    rows = np.flatnonzero((gi >= 0) & in_unit[np.maximum(gi, 0)])
    out = []
    for i in rows:
        rec = layer.records[i]
        out.append(
            {
                "code": rec["code"],
                "name": rec["name"],
                "status": rec["status"],
                "relocated": rec["status"] == "relocated",
                "address": rec.get("address"),
                "grid_code": grid_codes[gi[i]],
                "lon": rec["lon"],
                "lat": rec["lat"],
            }
        )
    return out


def unit_contents(snap: Snapshot, code: str) -> tuple[dict[str, Any], np.ndarray]:
    """The unit, its stalls and vendor clusters (by the grid containing each point)."""
    if not code.isdigit() or len(code) not in LEVELS:
        raise bad_request(
            f"a unit code is 15 (grid), 12 (community) or 9 (street) digits, got {quote(code)}",
            "code",
        )
    level, code_col, name_col = LEVELS[len(code)]
    frame = snap.grids.frame
    in_unit = frame[code_col].to_numpy() == code
    if not in_unit.any():
        raise not_found(f"unknown {level} code {quote(code)}")
    name = str(frame[name_col].to_numpy()[np.argmax(in_unit)])
    codes = snap.grids.codes
    body = {
        "unit": {"code": code, "name": name, "level": level},
        "grids": int(in_unit.sum()),
        "stalls": _facilities(snap.stalls, in_unit, codes),
        "vendor_clusters": _facilities(snap.vendor_clusters, in_unit, codes),
    }
    return body, in_unit


@router.get(
    "/{code}/contents",
    response_model=UnitContents,
    summary="What lies in a grid, community or street",
    responses={404: {"description": "Unknown grid, community or street code"}},
)
async def contents(
    request: Request,
    snap: SnapshotDep,
    code: Annotated[
        str,
        Path(
            description="15-digit grid, 12-digit community or 9-digit street code",
            examples=["370705001009001", "370705001009", "370705001"],
        ),
    ],
) -> JSONResponse:
    """The unit (code, name, level), the stalls and vendor clusters whose point lies in one of
    its grids (a relocated one flagged: ``status`` relocated, ``relocated`` true), and how many
    cases routed to it (or a grid in it) are open."""
    body, _ = unit_contents(snap, code)
    store = request.app.state.runtime.cases.store
    _, total = await run_in_threadpool(
        store.query, CaseQuery(units=(code,), open_only=True, limit=1)
    )
    body["cases"] = {"open": int(total)}
    return JSONResponse(body)
