"""The officers' side of cases: one case in full, the steps of handling, a queue; and the
residents' duplicate check ("the same problem within 50 m") and "me too"; and report photos."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from geo_service.core.cases import Action, CaseStatus
from geo_service.core.errors import NotFoundError
from geo_service.core.principal import PUBLIC
from geo_service.domain.cases import may_act
from geo_service.domain.caseview import officer_view, service_request
from geo_service.storage.cases import CaseQuery
from geo_service.web.casemodels import Nearby, OfficerCase, Open311Request, Queue
from geo_service.web.deps import (
    BBoxDep,
    CasesDep,
    MediaDep,
    OptionalPrincipalDep,
    PageDep,
    PointDep,
    PrincipalDep,
    SettingsDep,
)
from geo_service.web.geojson import collection, feature
from geo_service.web.links import public_url
from geo_service.web.models import FeatureCollection
from geo_service.web.responses import GeoJSONResponse, JSONResponse

router = APIRouter(tags=["Cases (随手拍)"])
KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, or an unknown or revoked key"},
    403: {"description": "The key is not responsible for this case (or this step)"},
}
CASE_ID = Path(pattern=r"^\d{8}-\d{6,}$", description="Case number (service_request_id)")
STEP_ACTIONS = Literal[
    "register", "dispatch", "handle", "verify", "reject", "close", "return", "extend"
]


def _base(request: Request) -> str:
    return str(request.app.state.settings.public_base_url).rstrip("/")


@router.get(
    "/api/v1/cases/nearby",
    summary="Open cases of a category near a point (duplicates)",
    response_model=Nearby,
    responses={404: {"description": "Unknown service_code"}},
)
async def nearby(
    request: Request,
    desk: CasesDep,
    point: PointDep,
    service_code: Annotated[str | None, Query(max_length=32)] = None,
) -> JSONResponse:
    if service_code is not None:
        desk.services.get(service_code)

    def answer() -> list[dict[str, Any]]:
        now = desk.clock()
        out = []
        for c, d in desk.nearby(point.wgs_lon, point.wgs_lat, service_code):
            view = service_request(c, desk.services, _base(request), now)
            view["distance_m"] = round(d, 1)
            del view["history"]
            out.append(view)
        return out

    cases = await run_in_threadpool(answer)
    return JSONResponse({"radius_m": desk.duplicate_m, "cases": cases})


@router.get(
    "/api/v1/cases",
    summary="Cases as a layer: in a box or a unit, by category and status, paged (GeoJSON)",
    response_model=FeatureCollection,
    response_class=GeoJSONResponse,
)
async def listing(
    request: Request,
    desk: CasesDep,
    settings: SettingsDep,
    page: PageDep,
    bbox: BBoxDep,
    unit: Annotated[
        str | None,
        Query(
            pattern=r"^\d{6}(\d{3}){0,3}$",
            description="A grid, community, street or district code: the cases in it",
        ),
    ] = None,
    service_code: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[Literal["open", "closed"] | None, Query()] = None,
) -> GeoJSONResponse:
    """Public fields only (never the reporter's phone), newest first; WGS84 points."""
    q = CaseQuery(
        bbox=bbox,
        units=(unit,) if unit else (),
        service_codes=(service_code,) if service_code else (),
        statuses=(CaseStatus.closed,) if status == "closed" else (),
        open_only=status == "open",
        limit=page.limit,
        offset=page.offset,
    )
    cases, total = await run_in_threadpool(desk.store.query, q)
    now, base = desk.clock(), _base(request)
    feats = []
    for c in cases:
        props = service_request(c, desk.services, base, now)
        del props["history"]
        point = {"type": "Point", "coordinates": [c.lon, c.lat]}
        feats.append(feature(c.id, point, props))
    url = public_url(request, settings.public_base_url)
    return GeoJSONResponse(collection(feats, total, url, page.offset, page.limit))


@router.post(
    "/api/v1/cases/{case_id}/join",
    summary="“我也遇到了”: join an open case",
    response_model=Open311Request,
    responses={409: {"description": "The case is closed"}},
)
async def join(request: Request, desk: CasesDep, case_id: Annotated[str, CASE_ID]) -> JSONResponse:
    c = await run_in_threadpool(desk.join, case_id, PUBLIC)
    return JSONResponse(service_request(c, desk.services, _base(request), desk.clock()))


@router.get(
    "/api/v1/cases/queue",
    summary="The open cases the key's holder must act on",
    response_model=Queue,
    responses={401: KEY_ERRORS[401]},
)
async def queue(
    request: Request,
    desk: CasesDep,
    who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    cases, total = await run_in_threadpool(desk.queue, who, limit, offset)
    now = desk.clock()
    views = [officer_view(c, desk.services, _base(request), now) for c in cases]
    return JSONResponse({"numberMatched": total, "numberReturned": len(views), "cases": views})


@router.get(
    "/api/v1/cases/{case_id}",
    summary="One case (the reporter's phone for its officers)",
    response_model=OfficerCase,
    responses={401: KEY_ERRORS[401]},
)
async def get_case(
    request: Request, desk: CasesDep, who: OptionalPrincipalDep, case_id: Annotated[str, CASE_ID]
) -> JSONResponse:
    c = await run_in_threadpool(desk.get, case_id)
    view = officer_view if who is not None and may_act(who, c) else service_request
    return JSONResponse(view(c, desk.services, _base(request), desk.clock()))


class CaseAction(BaseModel):
    """One step: 立案 register, 派遣 dispatch, 处置 handle, 核查 verify / reject, 结案 close,
    退回 return (to ``grid_code``, with a reason), 延期 extend (``until``, by the level above)."""

    action: STEP_ACTIONS
    reason: str | None = Field(None, max_length=1000)
    grid_code: str | None = Field(None, pattern=r"^\d{15}$")
    until: datetime | None = None


@router.post(
    "/api/v1/cases/{case_id}/actions",
    summary="Take a step of handling",
    response_model=OfficerCase,
    responses={
        **KEY_ERRORS,
        409: {"description": "The step does not fit the case's status now"},
    },
)
async def act(
    request: Request,
    desk: CasesDep,
    who: PrincipalDep,
    body: CaseAction,
    case_id: Annotated[str, CASE_ID],
) -> JSONResponse:
    action = Action(body.action)
    c = await run_in_threadpool(
        desk.act, case_id, action, who, body.reason, body.grid_code, body.until
    )
    return JSONResponse(officer_view(c, desk.services, _base(request), desk.clock()))


@router.get(
    "/media/{shard}/{name}",
    summary="A report's photo (location metadata removed)",
    response_class=FileResponse,
)
async def photo(
    media: MediaDep,
    shard: Annotated[str, Path(pattern=r"^[0-9a-f]{2}$")],
    name: Annotated[str, Path(pattern=r"^[0-9a-f]{64}\.(jpg|png|webp)$")],
) -> FileResponse:
    ref = f"{shard}/{name}"
    path = media.path(ref)
    if not await run_in_threadpool(path.exists):
        raise NotFoundError("no such photo", field="name")
    return FileResponse(
        path,
        media_type=media.media_type(ref),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
