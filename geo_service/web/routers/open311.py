"""Open311 GeoReport v2 (JSON): the categories, filing a report, and reading reports back.

As the specification defines it (services.json, services/{code}.json, requests.json POST and
GET with its filters, requests/{id}.json; answers are arrays), with this service's extensions:
``crs`` on POST (wgs84 default, cgcs2000, gcj02 from WeChat/Amap, bd09 from Baidu), a photo as
a multipart ``media`` part, an ``Idempotency-Key`` header (or ``idempotency_key`` field), and
``grid_code``, ``officer``, ``level``, ``deadline`` and the history on each request.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from geo_service.core.cases import CaseError, CaseStatus, parse_time
from geo_service.core.crs import PointCRS
from geo_service.core.errors import InputError, quote
from geo_service.core.principal import PUBLIC
from geo_service.domain.cases import Report
from geo_service.domain.caseview import local_iso, service_request
from geo_service.storage.cases import CaseQuery
from geo_service.web.casemodels import (
    Open311Acks,
    Open311Requests,
    Open311ServiceDefinition,
    Open311Services,
)
from geo_service.web.deps import CasesDep, HeavyDep, QueryPoint
from geo_service.web.responses import JSONResponse


def jurisdiction(
    jurisdiction_id: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Open311's jurisdiction; accepted and ignored (this service is one)",
        ),
    ] = None,
) -> None:
    """GeoReport v2 clients send ``jurisdiction_id`` on every call: declared, so it is no
    unknown parameter (``deps.reject_unknown_query``)."""


router = APIRouter(
    prefix="/open311/v2",
    tags=["Open311 GeoReport v2 (随手拍)"],
    dependencies=[Depends(jurisdiction)],
)

CASE_ID_PATH = Path(pattern=r"^\d{8}-\d{6,}$", description="service_request_id")
FORM_FIELDS = frozenset(
    {
        "service_code", "lat", "long", "crs", "address_string", "address_id", "description",
        "phone", "email", "first_name", "last_name", "device_id", "account_id", "media_url",
        "media", "api_key", "jurisdiction_id", "idempotency_key", "attribute",
    }
)  # fmt: skip
MAX_IDEMPOTENCY_KEY = 128


@router.get(
    "/services.json",
    summary="The categories a resident can report",
    response_model=Open311Services,
)
async def services(desk: CasesDep) -> JSONResponse:
    return JSONResponse([s.open311() for s in desk.services.services])


@router.get(
    "/services/{service_code}.json",
    summary="One category's definition",
    response_model=Open311ServiceDefinition,
)
async def service_definition(
    desk: CasesDep, service_code: Annotated[str, Path(max_length=32)]
) -> JSONResponse:
    s = desk.services.get(service_code)
    return JSONResponse({"service_code": s.code, "attributes": []})


def _text(form: Any, name: str, limit: int = 10_000) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return None
    text = str(value)
    if len(text) > limit:
        raise CaseError(f"{name} is {len(text):,} characters; at most {limit:,}", field=name)
    return text.strip() or None


def _coordinate(form: Any, name: str, lo: float, hi: float) -> float:
    raw = _text(form, name, 64)
    if raw is None:
        raise CaseError("a report needs its location: lat and long", field=name)
    try:
        value = float(raw)
    except ValueError:
        raise CaseError(f"{name} {quote(raw)} is not a number", field=name) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CaseError(f"{name} {quote(raw)} is outside {lo:g}..{hi:g}", field=name)
    return value


@router.post(
    "/requests.json",
    summary="File a report (form or multipart with a photo in `media`)",
    status_code=201,
    response_model=Open311Acks,
    responses={
        200: {
            "description": "Filed before with the same Idempotency-Key: the first case",
            "model": Open311Acks,
        },
        404: {"description": "Unknown service_code"},
        413: {"description": "The photo (or the body) is too large"},
        415: {"description": "The photo is not a JPEG, PNG or WebP image"},
    },
)
async def post_request(
    request: Request,
    desk: CasesDep,
    heavy: HeavyDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_IDEMPOTENCY_KEY,
            description="The same key again returns the case the first request made",
        ),
    ] = None,
) -> JSONResponse:
    try:
        form = await request.form(max_files=1, max_fields=len(FORM_FIELDS) + 8)
    except ClientDisconnect:
        raise
    except Exception as exc:  # malformed multipart / too many parts
        raise CaseError(f"the form could not be read: {quote(str(exc))}", field="body") from None
    try:
        unknown = sorted(set(form.keys()) - FORM_FIELDS)
        if unknown:
            raise CaseError(f"unknown field {quote(unknown[0])}", field=unknown[0])
        service_code = _text(form, "service_code", 32)
        if service_code is None:
            raise CaseError("choose a category: service_code", field="service_code")
        desk.services.get(service_code)  # 404 before any work
        crs_text = _text(form, "crs", 16) or "wgs84"
        try:
            crs = PointCRS(crs_text)
        except ValueError:
            raise CaseError(
                f"crs {quote(crs_text)}: use wgs84, cgcs2000, gcj02 or bd09", field="crs"
            ) from None
        lat = _coordinate(form, "lat", -90, 90)
        lon = _coordinate(form, "long", -180, 180)
        point = QueryPoint.make(lon, lat, crs)
        key = idempotency_key or _text(form, "idempotency_key", MAX_IDEMPOTENCY_KEY)
        upload = form.get("media")
        photo_bytes = await upload.read() if isinstance(upload, UploadFile) else None
        report = Report(
            service_code=service_code,
            description=_text(form, "description", 100_000) or "",
            lon=point.wgs_lon,
            lat=point.wgs_lat,
            crs=crs.value,
            address=_text(form, "address_string", 1000),
            phone=_text(form, "phone", 64),
            idempotency_key=key,
        )
    finally:
        await form.close()

    # photo cleaning is CPU work: in the heavy pool
    filed = await heavy.run(desk.file, report, PUBLIC, photo_bytes)
    c = filed.case
    notice = (
        "已受理，请记住案件编号以便查询"
        if filed.created
        else "此前已提交过同一举报（同一 Idempotency-Key），返回原案件"
    )
    return JSONResponse(
        [
            {
                "service_request_id": c.id,
                "service_notice": notice,
                "account_id": None,
                "grid_code": c.grid_code,
                "officer": c.officer,
                "level": c.level.value,
                "deadline": local_iso(c.deadline),
            }
        ],
        status_code=201 if filed.created else 200,
    )


def _date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = parse_time(value)
    except ValueError:
        raise InputError(f"{name} {quote(value)} is not an ISO 8601 date-time", name) from None
    if at.tzinfo is None:
        raise InputError(f"{name} needs a timezone offset (for example +08:00)", name)
    return at


@router.get(
    "/requests.json",
    summary="Reports, newest first (default: the last 90 days)",
    response_model=Open311Requests,
)
async def get_requests(
    request: Request,
    desk: CasesDep,
    heavy: HeavyDep,
    service_request_id: Annotated[str | None, Query(max_length=2000)] = None,
    service_code: Annotated[str | None, Query(max_length=400)] = None,
    start_date: Annotated[str | None, Query(max_length=40)] = None,
    end_date: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(pattern="^(open|closed)(,(open|closed))?$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> JSONResponse:
    start, end = _date(start_date, "start_date"), _date(end_date, "end_date")
    ids = tuple(i.strip() for i in (service_request_id or "").split(",") if i.strip())
    if not ids and start is None and end is None:
        start = desk.clock() - timedelta(days=90)
    statuses: tuple[CaseStatus, ...] = ()
    wanted = set((status or "").split(",")) - {""}
    if wanted == {"closed"}:
        statuses = (CaseStatus.closed,)
    q = CaseQuery(
        ids=ids,
        service_codes=tuple(c for c in (service_code or "").split(",") if c),
        statuses=statuses,
        open_only=wanted == {"open"},
        start=start,
        end=end,
        limit=limit,
    )
    base = desk_base(request)

    def answer() -> list[dict[str, Any]]:
        cases, _ = desk.store.query(q)
        now = desk.clock()
        return [service_request(c, desk.services, base, now) for c in cases]

    return JSONResponse(await heavy.run(answer))


@router.get(
    "/requests/{service_request_id}.json",
    summary="One report and its history",
    response_model=Open311Requests,
)
async def get_request(
    request: Request,
    desk: CasesDep,
    service_request_id: Annotated[str, CASE_ID_PATH],
) -> JSONResponse:
    c = await run_in_threadpool(desk.get, service_request_id)
    return JSONResponse([service_request(c, desk.services, desk_base(request), desk.clock())])


def desk_base(request: Request) -> str:
    return str(request.app.state.settings.public_base_url).rstrip("/")
