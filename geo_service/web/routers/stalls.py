"""Residents: the nearest repair stall (小蓝棚) or vendor cluster (便民摊点群), open now, and
the QR codes printed on the stall signs.

Both layers get the same three endpoints (nearest, by code, listing) from one definition; they
differ in the field residents filter on: a stall's ``service``, a cluster's ``kind``.
"""

# No ``from __future__ import annotations``: the endpoints are built in a function for each
# layer and FastAPI must see their real parameter types.

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from geo_service.analysis import facilities
from geo_service.core import hours
from geo_service.core.errors import quote
from geo_service.core.schema import SCHEMAS, ClusterKind, LayerName, Service, Status
from geo_service.core.settings import Settings
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.core.versions import etag
from geo_service.render import qr
from geo_service.web.deps import BBoxDep, HeavyDep, PageDep, PointDep, SettingsDep, SnapshotDep
from geo_service.web.errors import bad_request, not_found
from geo_service.web.geojson import collection, feature, geometries_json
from geo_service.web.links import public_url
from geo_service.web.models import (
    Feature,
    FeatureCollection,
    NearestStallsResponse,
    NearestVendorClustersResponse,
)
from geo_service.web.openapi import ETAG_HEADER
from geo_service.web.responses import GeoJSONResponse, JSONResponse

WALK_METHOD = (
    "straight-line geodesic distance (WGS84 ellipsoid) × detour_factor (streets are longer "
    "than the crow flies; about 1.3 in a city street grid) ÷ speed_m_per_min (70 m/min, "
    "4.2 km/h, an unhurried adult). An estimate, not a route."
)
AT_YEARS = (1900, 2199)
AT_HELP = (
    "The moment `open_now` refers to, ISO 8601 (`2025-03-08T19:00`, read as Asia/Shanghai "
    "time, or with an offset such as `+08:00`, URL-encoded as `%2B08:00`). Default: now."
)


def at_param(at: Annotated[str | None, Query(description=AT_HELP)] = None) -> datetime:
    """The evaluation time in Asia/Shanghai; a '+' turned into a space by URL decoding is
    taken back as the offset sign."""
    if at is None or at == "":
        return hours.local_time()
    text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", at.strip())
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"not an ISO 8601 date-time: {quote(at)}", "at") from None
    if not AT_YEARS[0] <= when.year <= AT_YEARS[1]:  # also keeps the +08:00 shift in range
        raise bad_request(f"year must lie within {AT_YEARS[0]}..{AT_YEARS[1]}: {quote(at)}", "at")
    return hours.local_time(when)


AtDep = Annotated[datetime, Depends(at_param)]


@dataclass(frozen=True)
class FacilityEndpoints:
    """How one point layer is exposed to residents."""

    layer: LayerName
    prefix: str
    tag: str
    noun: str  # one: "repair stall (小蓝棚)"
    plural: str  # several: "repair stalls (小蓝棚)" (the Chinese note stays after the noun)
    item_key: str  # key of each nearest result: "stall" / "vendor_cluster"
    filter_param: str  # query parameter residents filter with: "service" / "kind"
    filter_enum: type[StrEnum]
    nearest_model: type[BaseModel]
    example_code: str


def walk_info(settings: Settings) -> dict[str, Any]:
    return {
        "speed_m_per_min": settings.walk_speed_m_per_min,
        "detour_factor": settings.walk_detour_factor,
        "method": WALK_METHOD,
    }


def layer_code(snap: Snapshot, layer: PointLayer, code: str) -> int:
    """Row of a facility code (case-insensitive), 422 when malformed, 404 when unknown."""
    code = code.strip().upper()
    rx = SCHEMAS[layer.name].code_field.regex()
    if rx is not None and not rx.match(code):
        raise bad_request(f"not a {SCHEMAS[layer.name].title} code: {quote(code)}", "code")
    i = layer.position.get(code)
    if i is None:
        raise not_found(f"unknown {SCHEMAS[layer.name].title} code {quote(code)}")
    return i


def _check_bounds(k: int, max_distance_m: float | None, settings: Settings) -> None:
    if k > settings.max_k:
        raise bad_request(f"at most {settings.max_k}", "k")
    if max_distance_m is not None and max_distance_m > settings.max_radius_m:
        raise bad_request(f"at most {settings.max_radius_m:g} m", "max_distance_m")


def add_facility_routes(router: APIRouter, spec: FacilityEndpoints) -> None:
    """nearest, listing and by-code endpoints for one layer."""
    FilterEnum = spec.filter_enum
    filter_help = (
        f"Keep only those offering any of these (repeat the parameter for several): "
        f"{', '.join(e.value for e in FilterEnum)}"
    )
    FilterQuery = Annotated[
        list[FilterEnum] | None,  # type: ignore[valid-type]
        Query(alias=spec.filter_param, description=filter_help),
    ]

    def values(selected: list[StrEnum] | None) -> tuple[str, ...]:
        return tuple(v.value for v in selected or ())

    @router.get(
        f"{spec.prefix}/nearest",
        response_model=spec.nearest_model,
        tags=[spec.tag],
        summary=f"The nearest {spec.plural} to a point",
    )
    async def nearest(
        point: PointDep,
        snap: SnapshotDep,
        settings: SettingsDep,
        at: AtDep,
        offers: FilterQuery = None,
        k: Annotated[int, Query(ge=1, description="How many (at most `max_k`)")] = 5,
        max_distance_m: Annotated[
            float | None,
            Query(gt=0, allow_inf_nan=False, description="Search radius, metres (capped)"),
        ] = None,
        open_now: Annotated[
            bool, Query(description="Only those open at `at` (default now, Asia/Shanghai)")
        ] = False,
        include_inactive: Annotated[
            bool, Query(description="Also suspended, relocated and retired ones")
        ] = False,
    ) -> JSONResponse:
        _check_bounds(k, max_distance_m, settings)
        layer = snap.points(spec.layer)
        filters = facilities.Filters(
            offers=values(offers),
            active_only=not include_inactive,
            open_at=at if open_now else None,
        )
        idx, dist = facilities.nearest(
            layer, point.wgs_lon, point.wgs_lat, k, filters, max_distance_m
        )
        results = [
            {
                spec.item_key: facilities.describe(layer, int(i), at),
                "distance_m": round(float(d), 1),
                "walk_minutes": facilities.walk_minutes(
                    float(d), settings.walk_speed_m_per_min, settings.walk_detour_factor
                ),
            }
            for i, d in zip(idx, dist, strict=True)
        ]
        body = {
            "point": point.echo(),
            "at": at.isoformat(),
            "walk": walk_info(settings),
            "results": results,
        }
        return JSONResponse(body)

    nearest.__doc__ = (
        f"The `k` nearest {spec.plural}, nearest first, by geodesic distance in metres on the "
        f"WGS84 ellipsoid, each with `walk_minutes`: {WALK_METHOD} Only active ones unless "
        "`include_inactive`; `open_now=true` keeps those open at `at` (OpenStreetMap "
        "opening_hours evaluated in Asia/Shanghai, spans past midnight included); "
        "`max_distance_m` keeps those within that many metres. A relocated stall (listed only "
        "with `include_inactive`) carries `moved_to`: where it went, or null if not recorded."
    )

    @router.get(
        spec.prefix,
        response_model=FeatureCollection,
        response_class=GeoJSONResponse,
        tags=[spec.tag],
        summary=f"{spec.plural[0].upper()}{spec.plural[1:]} in a box, filtered, paged",
    )
    async def listing(
        request: Request,
        snap: SnapshotDep,
        settings: SettingsDep,
        page: PageDep,
        bbox: BBoxDep,
        at: AtDep,
        offers: FilterQuery = None,
        status: Annotated[
            list[Status] | None,
            Query(description="Keep only these statuses (repeatable)"),
        ] = None,
        open_now: Annotated[bool, Query(description="Only those open at `at`")] = False,
    ) -> GeoJSONResponse:
        layer = snap.points(spec.layer)
        filters = facilities.Filters(offers=values(offers), open_at=at if open_now else None)
        hits = facilities.in_bbox(layer, bbox, filters)
        if status:
            wanted = [s.value for s in status]
            hits = hits[np.isin(layer.frame["status"].to_numpy(dtype=object)[hits], wanted)]
        rows = hits[page.offset : page.offset + page.limit]
        geoms = geometries_json(layer.frame.geometry.to_numpy()[rows])
        feats = []
        for i, g in zip(rows, geoms, strict=True):
            props = facilities.describe(layer, int(i), at)
            feats.append(feature(props["code"], g, props))
        return GeoJSONResponse(
            collection(
                feats,
                len(hits),
                public_url(request, settings.public_base_url),
                page.offset,
                page.limit,
            )
        )

    @router.get(
        spec.prefix + "/{code}",
        response_model=Feature,
        response_class=GeoJSONResponse,
        tags=[spec.tag],
        summary=f"One {spec.noun} as a GeoJSON Feature",
        responses={200: ETAG_HEADER},
    )
    async def by_code(
        code: Annotated[str, Path(description="Electronic number", examples=[spec.example_code])],
        snap: SnapshotDep,
        at: AtDep,
    ) -> GeoJSONResponse:
        layer = snap.points(spec.layer)
        i = layer_code(snap, layer, code)
        props = facilities.describe(layer, i, at)
        geom = geometries_json(layer.frame.geometry.to_numpy()[[i]])[0]
        # The ETag names the version an edit must quote in If-Match (PATCH on this path).
        headers = {"ETag": etag(layer.records[i])}
        return GeoJSONResponse(feature(props["code"], geom, props), headers=headers)


router = APIRouter()

STALLS = FacilityEndpoints(
    layer=LayerName.stalls,
    prefix="/api/v1/stalls",
    tag="stalls (residents)",
    noun="repair stall (小蓝棚)",
    plural="repair stalls (小蓝棚)",
    item_key="stall",
    filter_param="service",
    filter_enum=Service,
    nearest_model=NearestStallsResponse,
    example_code="XLP-370705-001",
)
VENDOR_CLUSTERS = FacilityEndpoints(
    layer=LayerName.vendor_clusters,
    prefix="/api/v1/vendor-clusters",
    tag="vendor clusters (residents)",
    noun="vendor cluster (便民摊点群)",
    plural="vendor clusters (便民摊点群)",
    item_key="vendor_cluster",
    filter_param="kind",
    filter_enum=ClusterKind,
    nearest_model=NearestVendorClustersResponse,
    example_code="TDQ-370705-01",
)

QR_MEDIA = {"svg": "image/svg+xml", "png": "image/png"}
QR_SCHEMA = {"svg": {"type": "string"}, "png": {"type": "string", "format": "binary"}}
QR_CACHE = "public, max-age=86400"


def add_qr_route(router: APIRouter, kind: str) -> None:
    """``/api/v1/stalls/{code}/qr.svg`` and ``qr.png``: the code printed on the stall's sign."""

    async def stall_qr(
        code: Annotated[str, Path(examples=[STALLS.example_code])],
        snap: SnapshotDep,
        settings: SettingsDep,
        heavy: HeavyDep,
        scale: Annotated[int, Query(ge=1, le=40, description="Pixels per module")] = (
            qr.PNG_SCALE if kind == "png" else qr.SVG_SCALE
        ),
    ) -> Response:
        i = layer_code(snap, snap.stalls, code)
        rec = snap.stalls.records[i]
        url = qr.page_url(settings.public_base_url, rec["code"])
        if kind == "svg":
            body = await heavy.run(qr.svg_bytes, url, rec["name"], scale)
        else:
            body = await heavy.run(qr.png_bytes, url, scale)
        return Response(body, media_type=QR_MEDIA[kind], headers={"Cache-Control": QR_CACHE})

    router.add_api_route(
        f"/api/v1/stalls/{{code}}/qr.{kind}",
        stall_qr,
        methods=["GET"],
        name=f"stall_qr_{kind}",
        tags=[STALLS.tag],
        summary=f"The printable QR code of a stall's page, {kind.upper()}",
        description="Encodes `{public_base_url}/s/{code}` (error correction M), the page the "
        "sign opens.",
        response_class=Response,
        responses={200: {"content": {QR_MEDIA[kind]: {"schema": QR_SCHEMA[kind]}}}},
    )


# QR routes first: "/{code}/qr.svg" must not be read as a code.
for _kind in QR_MEDIA:
    add_qr_route(router, _kind)
add_facility_routes(router, STALLS)
add_facility_routes(router, VENDOR_CLUSTERS)
