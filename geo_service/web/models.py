"""Response shapes of the contract (shared/API.md), for validation in tests and for OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic import Field as PydanticField

from geo_service.core.crs import PointCRS
from geo_service.core.schema import SCHEMAS, FieldType, LayerName
from geo_service.domain.editing import editable_fields


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
    version: int | None = Field(
        None, description='Bumped by every change; the ETag is W/"<version>"'
    )


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


class MapGrids(BaseModel):
    """Grids in a map's view, in the basemap's CRS (not WGS84 on amap)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    numberMatched: int = Field(description="Grids in the box (or 1/0 for a code)")
    truncated: bool = Field(description="More grids matched than `limit`")


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


class ErrorItem(BaseModel):
    """One thing wrong with the request, named by the field (or row) it is about."""

    model_config = ConfigDict(extra="allow")

    field: str = Field(description="Parameter, body field or layer field the message is about")
    message: str
    row: int | None = Field(None, description="Row of an uploaded or stored file, when known")
    code: str | None = Field(None, description="Code of the feature the problem is in")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer (``web/errors.py``); some carry more keys (a 409 holds
    ``current_version`` and ``current``, a refused upload its ``report``)."""

    model_config = ConfigDict(extra="allow", title="ErrorBody")

    detail: str = Field(description="What is wrong, in one line")
    errors: list[ErrorItem] = Field(description="Each problem by field; may be empty")


class ConflictBody(ErrorBody):
    """409: the code exists already, or If-Match names an older version (then with the
    current feature, to re-apply the change without a GET)."""

    current_version: int | None = Field(None, description="Version now stored (stale If-Match)")
    current: dict[str, Any] | None = Field(None, description="The feature now stored (GeoJSON)")


class RejectedUpload(ErrorBody):
    """422 of a layer upload: nothing replaced; the validation report when the file was read."""

    report: dict[str, Any] | None = Field(
        None, description="The validation report, as `geo-service validate`"
    )


CRS_OF_BODY = (
    "CRS of lon/lat (and of a stall's moved_to_lon/moved_to_lat): wgs84 (default), cgcs2000, "
    "gcj02 (Amap, WeChat), bd09 (Baidu)"
)
_PY_TYPES: dict[FieldType, Any] = {
    FieldType.text: str,
    FieldType.integer: int,
    FieldType.number: float,
    FieldType.text_list: list[str] | str,
}


def edit_body(layer: LayerName, create: bool) -> type[BaseModel]:
    """The JSON body of a create (POST) or a change (PATCH), built from the layer's schema.

    Values are then validated exactly as an imported file is (patterns, choices, minimums);
    unknown fields are refused.
    """
    fields: dict[str, Any] = {}
    schema = SCHEMAS[layer]
    names = (["code"] if create else []) + editable_fields(layer)
    for f in schema.fields:
        if f.name not in names:
            continue
        typ = _PY_TYPES[f.type]
        required = create and f.required
        desc = f"one of {', '.join(f.choices)}" if f.choices else None
        if f.pattern:
            desc = f"matches {f.pattern}"
        fields[f.name] = (
            (typ, PydanticField(description=desc))
            if required
            else (typ | None, PydanticField(None, description=desc))
        )
    if schema.geometry == "point":
        coord: Any = float if create else float | None
        need = ... if create else None
        fields["lon"] = (coord, PydanticField(need, ge=-180, le=180, allow_inf_nan=False))
        fields["lat"] = (coord, PydanticField(need, ge=-90, le=90, allow_inf_nan=False))
        fields["crs"] = (PointCRS, PydanticField(PointCRS.wgs84, description=CRS_OF_BODY))
    name = f"{layer.value.title().replace('_', '')}{'Create' if create else 'Change'}"
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    return model


class ReplaceResponse(BaseModel):
    layer: str
    rows: int
    added: int
    changed: int
    removed: int
    unchanged: int
    dataset_version: str
    report: dict[str, Any] = Field(description="The validation report, as `geo-service validate`")


class AuditEntryModel(BaseModel):
    id: int
    at: str = Field(description="UTC, ISO 8601")
    actor: str = Field(description="Name of the key (or cli:<user>) that made the change")
    key_id: str | None
    role: str
    action: str = Field(description="create, update, retire, replace, remove")
    layer: str
    code: str | None
    version_before: int | None
    version_after: int | None
    changed: list[str]
    before: dict[str, Any] | None = Field(description="The feature before (GeoJSON)")
    after: dict[str, Any] | None = Field(description="The feature after (GeoJSON)")
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    total: int
    returned: int
    entries: list[AuditEntryModel]


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
    version: int | None = Field(
        None, description='Bumped by every change; the ETag is W/"<version>"'
    )


class MovedTo(BaseModel):
    code: str | None = Field(None, description="The stall at the new place, when it has one")
    name: str | None = None
    address: str | None = None
    status: str | None = Field(None, description="Status of the stall at the new place")
    lon: float = Field(description="WGS84 longitude of the new place")
    lat: float = Field(description="WGS84 latitude of the new place")


class Stall(FacilityBase):
    services: list[Literal["修鞋", "修车", "修锁配钥匙"]]
    phone: str | None = None
    opened: str | None = None
    moved_to_code: str | None = Field(None, description="Relocated: the stall at the new place")
    moved_to_lon: float | None = Field(None, description="Relocated: new point, WGS84")
    moved_to_lat: float | None = Field(None, description="Relocated: new point, WGS84")
    moved_to_address: str | None = Field(None, description="Relocated: the new address")
    moved_to: MovedTo | None = Field(
        None,
        description="Only when status is relocated: where it went (moved_to_code's stall, "
        "followed through later moves, else moved_to_lon/lat), null when not recorded. "
        "Navigate there, not to lon/lat.",
    )


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


# --- officers: what lies in a unit, search --------------------------------------------------


class UnitRef(BaseModel):
    code: str
    name: str
    level: Literal["grid", "community", "street"]


class UnitFacility(BaseModel):
    code: str
    name: str
    status: Literal["active", "suspended", "relocated", "retired"]
    relocated: bool = Field(description="True when status is relocated (it moved elsewhere)")
    moved_to: MovedTo | None = Field(
        None, description="Relocated: where it went (null when not recorded or not relocated)"
    )
    address: str | None = None
    grid_code: str = Field(description="The grid containing the point (spatial)")
    lon: float
    lat: float


class UnitCase(BaseModel):
    """A 随手拍 case as the unit listing shows it: public fields only."""

    id: str = Field(description="Case number (service_request_id)")
    service_code: str
    category: str = Field(description="The category's Chinese name")
    status: str
    status_text: str
    deadline: str | None = Field(description="Beijing time, ISO 8601; null once handled")
    overdue: bool = Field(description="Awaiting handling and past its deadline")
    lon: float = Field(description="WGS84 longitude")
    lat: float = Field(description="WGS84 latitude")


class UnitCases(BaseModel):
    open: int = Field(description="Open cases routed to this unit or a grid in it")
    overdue: int = Field(description="How many of them are overdue")
    limit: int = Field(description="Most cases listed in items")
    truncated: bool = Field(description="More open cases than listed")
    items: list[UnitCase] = Field(description="Overdue first, then by deadline")


class UnitContents(BaseModel):
    unit: UnitRef
    grids: int = Field(description="How many grids the unit holds")
    stalls: list[UnitFacility]
    vendor_clusters: list[UnitFacility]
    cases: UnitCases


class SearchHit(BaseModel):
    kind: Literal["grid", "community", "street", "stall", "vendor_cluster"]
    code: str
    name: str
    match: Literal["code", "name_prefix", "name", "pinyin", "initials"]
    lon: float = Field(description="WGS84: the point, or a point inside the unit")
    lat: float
    link: str = Field(description="A page for it: grid map or stall page (path)")


class SearchResponse(BaseModel):
    query: str
    total: int = Field(description="How many features match in all")
    results: list[SearchHit]
