"""Response shapes of the contract (shared/API.md), for validation in tests and for OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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
