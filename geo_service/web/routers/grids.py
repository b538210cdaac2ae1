"""Officers: which grid is this place in, who is responsible, what lies in it."""

from __future__ import annotations

import re
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Query, Request, Response

from geo_service.analysis.bulk import parse_points
from geo_service.core.errors import quote
from geo_service.core.snapshot import Snapshot
from geo_service.core.versions import etag
from geo_service.web import jsonbody
from geo_service.web.deps import (
    POINT_QUERY_OPENAPI,
    BBoxDep,
    HeavyDep,
    Page,
    PageDep,
    QueryPoint,
    SettingsDep,
    SnapshotDep,
    get_store,
    parse_point_query,
)
from geo_service.web.errors import bad_request, not_found
from geo_service.web.geojson import collection, feature, geometries_json, grid_feature
from geo_service.web.links import public_url
from geo_service.web.models import (
    BulkLocateRequest,
    BulkLocateResponse,
    Feature,
    FeatureCollection,
    LocateResponse,
)
from geo_service.web.openapi import ETAG_HEADER
from geo_service.web.params import GRID_CODE
from geo_service.web.responses import GeoJSONResponse, JSONResponse, dumps

router = APIRouter(prefix="/api/v1/grids", tags=["grids (officers)"])
INLINE_PARSE_BYTES = 64 * 1024  # smaller bodies parse in well under a millisecond


@router.get(
    "/locate",
    response_model=LocateResponse,
    summary="The grid containing a point",
    openapi_extra={"parameters": POINT_QUERY_OPENAPI},
)
async def locate(request: Request) -> JSONResponse:
    """Which grid is this place in, and who is responsible? A point on a shared edge belongs to
    the grid with the smallest code. When no grid contains the point, ``nearest`` says which grid
    is nearest and how far its edge is (geodesic metres)."""
    # Served by ``web.fastlane`` in the running app (the hottest endpoint); this route is the
    # same answer through FastAPI, and what the OpenAPI document describes.
    return JSONResponse(
        locate_body(get_store(request).get(), parse_point_query(request.query_params))
    )


def locate_body(snap: Snapshot, point: QueryPoint) -> dict[str, Any]:
    """The answer of GET locate: the grid containing the point, or the nearest and how far."""
    grids = snap.grids
    i = grids.index.locate_point(point.wgs_lon, point.wgs_lat)
    nearest = None
    if i < 0 and len(grids):
        j, d = grids.index.nearest_point(point.wgs_lon, point.wgs_lat)
        if j >= 0:
            nearest = {"grid": grids.properties[j], "distance_m": round(d, 1)}
    return {
        "point": point.echo(),
        "grid": grids.properties[i] if i >= 0 else None,
        "nearest": nearest,
    }


@router.post(
    "/locate",
    response_model=BulkLocateResponse,
    summary="Grid codes for many points at once",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": BulkLocateRequest.model_json_schema(),
                    "example": {"points": [[119.16, 36.71], [119.1, 36.7]], "crs": "wgs84"},
                }
            },
        }
    },
)
async def locate_bulk(
    request: Request, snap: SnapshotDep, settings: SettingsDep, heavy: HeavyDep
) -> Response:
    """``{"points": [[lon, lat], ...], "crs": "wgs84"}`` → ``{"codes": [...]}`` in input order
    (null where no grid contains the point). Parsed with orjson and located in one vectorised
    pass, so a request may carry hundreds of thousands of points."""
    raw = await request.body()

    def answer() -> bytes:
        body = jsonbody.loads(raw, settings.max_json_depth)
        lon, lat = parse_points(body, max_points=settings.max_bulk_points)
        idx = snap.grids.index.locate(lon, lat)
        with_none = np.append(snap.grids.codes, np.array([None], dtype=object))
        codes = with_none[idx]  # -1 picks the trailing None
        return dumps({"codes": codes.tolist(), "located": int((idx >= 0).sum())})

    # Many points take tens to hundreds of milliseconds to parse, locate and encode: in the
    # heavy pool, never on the event loop; a few are answered inline.
    content = await heavy.run(answer) if len(raw) > INLINE_PARSE_BYTES else answer()
    return Response(content, media_type="application/json")


@router.get(
    "",
    response_model=FeatureCollection,
    response_class=GeoJSONResponse,
    summary="Grids in a box or administrative unit, paged",
    responses={404: {"description": "Unknown district, street or community code"}},
)
async def list_grids(
    request: Request,
    snap: SnapshotDep,
    heavy: HeavyDep,
    settings: SettingsDep,
    page: PageDep,
    bbox: BBoxDep,
    district: Annotated[str | None, Query(description="6-digit district code")] = None,
    street: Annotated[str | None, Query(description="9-digit street code")] = None,
    community: Annotated[str | None, Query(description="12-digit community code")] = None,
    officer: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Grids of an officer: part of the officer's name, or the officer's "
            "phone number (its digits, separators ignored: 0536-555-6982 = 05365556982)",
        ),
    ] = None,
) -> GeoJSONResponse:
    feats, hits = await heavy.run(
        grid_page, snap, page, bbox, (district, street, community), officer
    )
    return GeoJSONResponse(
        collection(
            feats, len(hits), public_url(request, settings.public_base_url), page.offset, page.limit
        )
    )


def grid_page(
    snap: Snapshot,
    page: Page,
    bbox: tuple[float, float, float, float] | None,
    units: tuple[str | None, str | None, str | None],
    officer: str | None = None,
) -> tuple[list[dict[str, Any]], npt.NDArray[np.intp]]:
    """The page of grid features, and every matching row (in the heavy pool: a 1,000-grid page
    takes tens of milliseconds)."""
    district, street, community = units
    frame = snap.grids.frame
    mask = np.ones(len(frame), dtype=bool)
    if bbox is not None:
        inbox = np.zeros(len(frame), dtype=bool)
        inbox[snap.grids.index.bbox(*bbox)] = True
        mask &= inbox
    for value, column in (
        (district, "district_code"),
        (street, "street_code"),
        (community, "community_code"),
    ):
        if value:
            col = frame[column].to_numpy()
            if not (col == value).any():
                raise not_found(f"unknown {column.removesuffix('_code')} code {quote(value)}")
            mask &= col == value
    if officer is not None and officer.strip():
        mask &= officer_mask(frame, officer.strip())
    hits = np.flatnonzero(mask)
    rows = hits[page.offset : page.offset + page.limit]
    geoms = geometries_json(frame.geometry.to_numpy()[rows])
    props = snap.grids.properties
    feats = [feature(props[i]["code"], g, props[i]) for i, g in zip(rows, geoms, strict=True)]
    return feats, hits


def officer_mask(frame: Any, officer: str) -> npt.NDArray[np.bool_]:
    """Grids whose officer's name contains ``officer``, or whose officer's phone has exactly
    the digits of ``officer`` (separators such as - and spaces ignored)."""
    names = frame.get("officer_name")
    phones = frame.get("officer_phone")
    mask = np.zeros(len(frame), dtype=bool)
    if names is not None:
        mask |= names.fillna("").astype(str).str.contains(officer, regex=False).to_numpy()
    digits = re.sub(r"\D", "", officer)
    if phones is not None and digits:
        phone_digits = phones.fillna("").astype(str).str.replace(r"\D", "", regex=True)
        mask |= (phone_digits == digits).to_numpy()
    return mask


@router.get(
    "/{code}",
    response_model=Feature,
    response_class=GeoJSONResponse,
    summary="One grid as a GeoJSON Feature",
    responses={200: ETAG_HEADER},
)
async def get_grid(code: Annotated[str, GRID_CODE], snap: SnapshotDep) -> GeoJSONResponse:
    """Geometry, GRID properties, and counts of stalls and vendor clusters inside."""
    if not (len(code) == 15 and code.isdigit()):
        raise bad_request(f"a grid code is 15 digits, got {quote(code)}", "code")
    i = snap.grids.position.get(code)
    if i is None:
        raise not_found(f"unknown grid code {quote(code)}")
    return GeoJSONResponse(grid_feature(snap, i), headers={"ETag": etag(snap.grids.properties[i])})
