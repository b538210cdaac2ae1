"""Response shapes of the contract (shared/API.md), for validation in tests and for OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


class CodeName(BaseModel):
    code: str
    name: str


class Officer(BaseModel):
    name: str | None
    phone: str | None


class Grid(BaseModel):
    code: str = Field(description="15 digits: county 6 + street 3 + community 3 + grid 3")
    name: str
    community: CodeName
    street: CodeName
    district: CodeName
    officer: Officer
    area_m2: float = Field(description="Area in square metres (metric CRS)")
    households: int | None = None
    population: int | None = None


class LonLat(BaseModel):
    lon: float
    lat: float


class ReceivedPoint(LonLat):
    crs: str


class PointEcho(BaseModel):
    received: ReceivedPoint = Field(description="The point as sent, in its declared CRS")
    wgs84: LonLat = Field(description="The same point converted to WGS84")


class NearestGrid(BaseModel):
    grid: Grid
    distance_m: float = Field(description="Geodesic distance to the grid's edge, metres")


class LocateResponse(BaseModel):
    point: PointEcho
    grid: Grid | None = Field(description="The grid containing the point, or null")
    nearest: NearestGrid | None = Field(description="Filled when no grid contains the point")


class BulkLocateRequest(BaseModel):
    points: list[tuple[float, float]] = Field(description="[[lon, lat], ...]")
    crs: Literal["wgs84", "cgcs2000", "gcj02", "bd09"] = "wgs84"


class BulkLocateResponse(BaseModel):
    codes: list[str | None] = Field(description="Grid code per input point, in input order")
    located: int = Field(description="How many points fell in a grid")


class Geometry(BaseModel):
    type: str
    coordinates: Any


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str | None = None
    geometry: Geometry | None
    properties: dict[str, Any]


class Link(BaseModel):
    rel: str
    href: str
    type: str | None = None


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    numberMatched: int | None = None
    numberReturned: int | None = None
    next: str | None = None
    links: list[Link] = []


class LayerMeta(BaseModel):
    features: int
    title: str


class Meta(BaseModel):
    dataset: str
    version: str
    loaded_at: str
    crs: dict[str, Any]
    bounds: list[float] = Field(description="[minlon, minlat, maxlon, maxlat], WGS84")
    layers: dict[str, LayerMeta]
    units: dict[str, int]
    load_problems: int
    backend: str


class Health(BaseModel):
    status: str


# --- residents: repair stalls (小蓝棚) and vendor clusters (便民摊点群) ---------------------------


class FacilityBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Unified electronic number (统一电子编号)")
    name: str
    hours: str = Field(description="Opening hours, OpenStreetMap opening_hours syntax")
    hours_text: str = Field(description="The hours in short Chinese, for display")
    status: Literal["active", "suspended", "relocated", "retired"]
    open_now: bool = Field(
        description="Open at the request's time (`at`, default now in Asia/Shanghai): status "
        "active and within the opening hours"
    )
    address: str | None = None
    operator: str | None = None
    grid_code: str | None = Field(None, description="Grid the facility belongs to")
    lon: float = Field(description="WGS84 longitude")
    lat: float = Field(description="WGS84 latitude")


class Stall(FacilityBase):
    services: list[Literal["修鞋", "修车", "修锁配钥匙"]]
    phone: str | None = None
    opened: str | None = None


class VendorCluster(FacilityBase):
    kind: str = Field(description="早市, 夜市, 便民市场, 农贸集市 or 小吃街")
    pitches: int | None = Field(None, description="Number of vendor pitches")


class WalkEstimate(BaseModel):
    speed_m_per_min: float
    detour_factor: float
    method: str


def _nearest_models(key: str, item: type[BaseModel]) -> tuple[type[BaseModel], type[BaseModel]]:
    """``{key: ITEM, distance_m, walk_minutes}`` and the response listing them, per layer."""
    result = create_model(
        f"Nearest{item.__name__}",
        **{key: (item, ...)},  # type: ignore[call-overload]
        distance_m=(
            float,
            Field(description="Geodesic (WGS84 ellipsoid) straight-line distance, metres"),
        ),
        walk_minutes=(float, Field(description="distance_m × detour_factor / speed_m_per_min")),
    )
    response = create_model(
        f"Nearest{item.__name__}sResponse",
        point=(PointEcho, ...),
        at=(str, Field(description="The moment open_now refers to (ISO 8601, Asia/Shanghai)")),
        walk=(WalkEstimate, ...),
        results=(list[result], Field(description="Nearest first")),
    )
    return result, response


NearestStall, NearestStallsResponse = _nearest_models("stall", Stall)
NearestVendorCluster, NearestVendorClustersResponse = _nearest_models(
    "vendor_cluster", VendorCluster
)
