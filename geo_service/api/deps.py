"""Dependencies shared by the routers: the current snapshot, settings, a point with its CRS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from geo_service.api.errors import bad_request
from geo_service.crs import PointCRS, to_wgs84
from geo_service.settings import Settings
from geo_service.snapshot import Snapshot, SnapshotStore


def get_store(request: Request) -> SnapshotStore:
    store: SnapshotStore = request.app.state.store
    return store


def get_snapshot(request: Request) -> Snapshot:
    return get_store(request).get()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True)
class QueryPoint:
    lon: float
    lat: float
    crs: PointCRS
    wgs_lon: float
    wgs_lat: float

    @classmethod
    def make(cls, lon: float, lat: float, crs: PointCRS) -> QueryPoint:
        x, y = to_wgs84(lon, lat, crs)
        return cls(lon, lat, crs, float(x), float(y))

    def echo(self) -> dict[str, Any]:
        return {
            "received": {"lon": self.lon, "lat": self.lat, "crs": self.crs.value},
            "wgs84": {"lon": round(self.wgs_lon, 8), "lat": round(self.wgs_lat, 8)},
        }


CRS_HELP = (
    "Coordinate system of lon/lat: wgs84 (GPS, browser geolocation), cgcs2000 (surveys, "
    "Tianditu), gcj02 (Amap, Tencent, WeChat 'gcj02'), bd09 (Baidu)."
)


def point_params(
    lon: Annotated[
        float, Query(ge=-180, le=180, allow_inf_nan=False, description="Longitude, degrees")
    ],
    lat: Annotated[
        float, Query(ge=-90, le=90, allow_inf_nan=False, description="Latitude, degrees")
    ],
    crs: Annotated[PointCRS, Query(description=CRS_HELP)] = PointCRS.wgs84,
) -> QueryPoint:
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
        raise bad_request(f"not numbers: {bbox!r}", "bbox") from None
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


def bbox_param(
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


def page_params(
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
