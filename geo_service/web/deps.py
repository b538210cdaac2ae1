"""Dependencies shared by the routers: the current snapshot, settings, a point with its CRS.

Dependencies that do not block are ``async def`` although they never await: FastAPI runs a plain
``def`` dependency in the thread pool, and that hop costs more than a whole grid lookup.
``get_snapshot``/``get_settings`` stay plain functions for direct calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import APIKeyHeader

from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.errors import NotFoundError, quote
from geo_service.core.principal import Principal
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.core.versions import IfMatch, parse_if_match
from geo_service.domain.auth import KeyVerifier, principal_for
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.editing import officer_grids
from geo_service.storage.base import Backend
from geo_service.storage.media import MediaStore
from geo_service.storage.reloader import Reloader
from geo_service.web.errors import bad_request, is_api_path, unauthorized, unknown_query
from geo_service.web.links import declared_query_params, route_path
from geo_service.web.offload import HeavyPool


def get_store(request: Request) -> SnapshotStore:
    store: SnapshotStore = request.app.state.store
    return store


def get_snapshot(request: Request) -> Snapshot:
    return get_store(request).get()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _snapshot_dependency(request: Request) -> Snapshot:
    return get_snapshot(request)


async def _settings_dependency(request: Request) -> Settings:
    return get_settings(request)


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


async def get_heavy(request: Request) -> HeavyPool:
    heavy: HeavyPool = request.app.state.heavy
    return heavy


SnapshotDep = Annotated[Snapshot, Depends(_snapshot_dependency)]
HeavyDep = Annotated[HeavyPool, Depends(get_heavy)]
SettingsDep = Annotated[Settings, Depends(_settings_dependency)]
BackendDep = Annotated[Backend, Depends(get_backend)]
ReloaderDep = Annotated[Reloader, Depends(get_reloader)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="An officer's or admin's key (`geo-service keys add`). Reads need no key.",
)


def get_principal(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> Principal:
    """The caller of a write: 401 without a valid key. (A sync dependency: scrypt blocks.)"""
    if not key:
        raise unauthorized("this change needs an API key in the X-API-Key header")
    verifier: KeyVerifier = request.app.state.keys
    rec = verifier.verify(key)
    if rec is None:
        raise unauthorized("unknown or revoked API key")
    snap = get_snapshot(request)
    return principal_for(rec, lambda name: officer_grids(snap, name))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_if_match(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description='ETag of the version you change (W/"3"), from a GET or an earlier write',
        ),
    ] = None,
) -> IfMatch | None:
    return None if if_match is None else parse_if_match(if_match)


IfMatchDep = Annotated[IfMatch | None, Depends(get_if_match)]


SAME_AS_WGS84 = frozenset({PointCRS.wgs84, PointCRS.cgcs2000})  # within a metre: crs.py


@dataclass(frozen=True)
class QueryPoint:
    lon: float
    lat: float
    crs: PointCRS
    wgs_lon: float
    wgs_lat: float

    @classmethod
    def make(cls, lon: float, lat: float, crs: PointCRS) -> QueryPoint:
        if crs in SAME_AS_WGS84:  # the common case, without the numpy round trip
            return cls(lon, lat, crs, lon, lat)
        wx, wy = to_wgs84(lon, lat, crs)
        x, y = float(wx), float(wy)
        # BD-09 shifts every point by about 0.0065°, so near ±180° / ±90° it names no WGS84
        # point at all (nothing converts to it); distances to it would come out as NaN.
        if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0):
            raise bad_request(
                f"no WGS84 point has these {crs.value} coordinates (they convert to "
                f"{x:.7f}, {y:.7f})",
                "lon" if not -180.0 <= x <= 180.0 else "lat",
            )
        return cls(lon, lat, crs, x, y)

    def echo(self) -> dict[str, Any]:
        return {
            "received": {"lon": self.lon, "lat": self.lat, "crs": self.crs.value},
            "wgs84": {"lon": round(self.wgs_lon, 8), "lat": round(self.wgs_lat, 8)},
        }


CRS_HELP = (
    "Coordinate system of lon/lat: wgs84 (GPS, browser geolocation), cgcs2000 (surveys, "
    "Tianditu), gcj02 (Amap, Tencent, WeChat 'gcj02'), bd09 (Baidu)."
)


# The three query parameters of a point, for a hot endpoint that declares them itself rather
# than through ``PointDep`` (each sub-dependency costs FastAPI a resolution pass per request).
LonQuery = Annotated[
    float, Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude, degrees")
]
LatQuery = Annotated[
    float, Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude, degrees")
]
CRSQuery = Annotated[PointCRS, Query(description=CRS_HELP)]


_LIMITS = {"lon": 180.0, "lat": 90.0}


def _coordinate(query: Mapping[str, str], name: str) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        raise bad_request("required but missing", name)
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"not a number (got {quote(raw)})", name) from None
    if not math.isfinite(value):
        raise bad_request(f"must be a finite number (got {quote(raw)})", name)
    limit = _LIMITS[name]
    if not -limit <= value <= limit:
        raise bad_request(f"must be between {-limit:g} and {limit:g} (got {quote(raw)})", name)
    return value


def parse_point_query(query: Mapping[str, str]) -> QueryPoint:
    """``lon``, ``lat``, ``crs`` straight from the query string.

    The same rules as ``point_params``, checked by hand: FastAPI's per-parameter machinery
    costs more than the whole grid lookup, and GET locate is the hottest endpoint
    (bench/RESULTS.md). Routes using it declare ``POINT_QUERY_OPENAPI`` for their docs.
    """
    lon = _coordinate(query, "lon")
    lat = _coordinate(query, "lat")
    raw_crs = query.get("crs") or PointCRS.wgs84.value
    try:
        crs = PointCRS(raw_crs)
    except ValueError:
        names = ", ".join(c.value for c in PointCRS)
        raise bad_request(
            f"unknown coordinate system {quote(raw_crs)}; one of {names}", "crs"
        ) from None
    return QueryPoint.make(lon, lat, crs)


POINT_QUERY_OPENAPI: list[dict[str, Any]] = [
    {
        "name": "lon",
        "in": "query",
        "required": True,
        "description": "Longitude, degrees",
        "schema": {"type": "number", "minimum": -180, "maximum": 180},
    },
    {
        "name": "lat",
        "in": "query",
        "required": True,
        "description": "Latitude, degrees",
        "schema": {"type": "number", "minimum": -90, "maximum": 90},
    },
    {
        "name": "crs",
        "in": "query",
        "required": False,
        "description": CRS_HELP,
        "schema": {"type": "string", "enum": [c.value for c in PointCRS], "default": "wgs84"},
    },
]


async def point_params(lon: LonQuery, lat: LatQuery, crs: CRSQuery = PointCRS.wgs84) -> QueryPoint:
    return QueryPoint.make(lon, lat, crs)


PointDep = Annotated[QueryPoint, Depends(point_params)]


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """``minlon,minlat,maxlon,maxlat`` in WGS84."""
    if bbox is None or bbox == "":
        return None
    parts = bbox.split(",")
    if len(parts) != 4:
        raise bad_request("needs four numbers: minlon,minlat,maxlon,maxlat", "bbox")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise bad_request(f"not numbers: {quote(bbox)}", "bbox") from None
    vals = (minx, miny, maxx, maxy)
    if any(v != v or v in (float("inf"), float("-inf")) for v in vals):
        raise bad_request("values must be finite numbers", "bbox")
    if not (
        -180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90
    ):
        raise bad_request("longitudes must lie within ±180 and latitudes within ±90", "bbox")
    if minx > maxx or miny > maxy:
        raise bad_request("min must not exceed max (minlon,minlat,maxlon,maxlat)", "bbox")
    return vals


BBOX_HELP = "Bounding box minlon,minlat,maxlon,maxlat in WGS84"


async def bbox_param(
    bbox: Annotated[
        str | None, Query(description=BBOX_HELP, examples=["119.1,36.68,119.2,36.74"])
    ] = None,
) -> tuple[float, float, float, float] | None:
    return parse_bbox(bbox)


BBoxDep = Annotated[tuple[float, float, float, float] | None, Depends(bbox_param)]


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


async def page_params(
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, description="Page size")] = None,
    offset: Annotated[int, Query(ge=0, description="Features to skip")] = 0,
) -> Page:
    """``limit`` (default and cap from the settings) and ``offset`` of a paged listing."""
    limit = settings.page_limit_default if limit is None else limit
    if limit > settings.page_limit_max:
        raise bad_request(f"at most {settings.page_limit_max}", "limit")
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(page_params)]


def get_cases(request: Request) -> CaseDesk:
    desk: CaseDesk = request.app.state.runtime.cases
    return desk


def get_media(request: Request) -> MediaStore:
    media = get_cases(request).media
    if media is None:
        raise NotFoundError("this service stores no photos", field="name")
    return media


async def _cases_dependency(request: Request) -> CaseDesk:
    return get_cases(request)


async def _media_dependency(request: Request) -> MediaStore:
    return get_media(request)


def get_optional_principal(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> Principal | None:
    """The caller if a key is given (401 if it is wrong), else None: for reads that show more
    to the responsible officers."""
    return get_principal(request, key) if key else None


CasesDep = Annotated[CaseDesk, Depends(_cases_dependency)]
MediaDep = Annotated[MediaStore, Depends(_media_dependency)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(get_optional_principal)]


async def reject_unknown_query(request: Request) -> None:
    """On the JSON API, a query parameter the route does not declare is a 400 naming it.

    Ignoring it silently answers a different question than the one asked (``?district=`` on a
    route without that filter returned every feature). Installed once, on the app; pages and
    maps stay tolerant (they are opened from links carrying tracking parameters).
    """
    if not request.scope.get("query_string") or not is_api_path(route_path(request.scope)):
        return
    known = declared_query_params(request)
    unknown = {k for k in request.query_params if k not in known}
    if unknown:
        raise unknown_query(unknown, known)
