"""Response shapes and query parameters of the OGC API – Features routes (``routers/ogc.py``), for
the OpenAPI document: the answers themselves are built by ``analysis.ogc.documents``.

The parameters are declared inline on each operation (clients and the fuzz tests read them
there) and once more under ``components/parameters`` (QGIS reads the page size of items from
``components/parameters/limit``: its default and maximum).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from geo_service.analysis.ogc.cql import FILTER_LANGS, MAX_FILTER_CHARS
from geo_service.analysis.ogc.crsref import CRS84
from geo_service.analysis.ogc.query import FORMATS, LIMIT_DEFAULT, LIMIT_MAX


class OGCLink(BaseModel):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class OGCLandingPage(BaseModel):
    title: str
    description: str
    links: list[OGCLink]


class OGCConformance(BaseModel):
    conformsTo: list[str]
    links: list[OGCLink] = []


class OGCSpatialExtent(BaseModel):
    bbox: list[list[float]] = Field(description="minlon, minlat, maxlon, maxlat (CRS84)")
    crs: str


class OGCTemporalExtent(BaseModel):
    interval: list[list[str | None]]
    trs: str


class OGCExtent(BaseModel):
    spatial: OGCSpatialExtent
    temporal: OGCTemporalExtent | None = None


class OGCCollection(BaseModel):
    id: str
    title: str
    description: str
    itemType: Literal["feature"]
    extent: OGCExtent
    crs: list[str] = Field(description="The CRSs features can be asked for in (Part 2)")
    storageCrs: str
    numberOfFeatures: int
    links: list[OGCLink]


class OGCCollections(BaseModel):
    links: list[OGCLink]
    crs: list[str]
    collections: list[OGCCollection]


class OGCJsonSchema(BaseModel):
    """A JSON Schema document (queryables, or the schema of a feature)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    schema_: str = Field(alias="$schema")
    id_: str = Field(alias="$id")
    type: Literal["object"]
    title: str
    properties: dict[str, dict[str, Any]]


class OGCFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None = Field(
        description="GeoJSON geometry, in `crs` (default CRS84, lon/lat)"
    )
    properties: dict[str, Any]
    links: list[OGCLink] = []


class OGCFeatureCollection(BaseModel):
    type: Literal["FeatureCollection"]
    timeStamp: str
    numberMatched: int
    numberReturned: int
    links: list[OGCLink]
    features: list[OGCFeature]


def _param(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": description,
        "schema": schema,
        **extra,
    }


CRS_SCHEMA = {"type": "string", "format": "uri", "maxLength": 200}
PARAMETERS: dict[str, dict[str, Any]] = {
    "f": _param(
        "f",
        "Representation: json (GeoJSON for features) or html (a Chinese page). Without it, the "
        "Accept header decides (a browser gets the page).",
        {"type": "string", "enum": list(FORMATS)},
    ),
    "limit": _param(
        "limit",
        f"Features per page (default {LIMIT_DEFAULT}); a larger value than {LIMIT_MAX:,} is "
        "answered with that many. Follow the `next` link for the following page.",
        {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_DEFAULT},
    ),
    "offset": _param(
        "offset",
        "Features to skip (the `next` and `prev` links carry it)",
        {"type": "integer", "minimum": 0, "default": 0},
    ),
    "bbox": _param(
        "bbox",
        "Only features intersecting this box: lower corner, upper corner, in `bbox-crs` and its "
        "axis order (CRS84: minlon,minlat,maxlon,maxlat; EPSG:4326 and EPSG:4490: "
        "minlat,minlon,maxlat,maxlon; EPSG:4549: minnorthing,mineasting,maxnorthing,maxeasting)",
        {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
    ),
    "bbox-crs": _param(
        "bbox-crs",
        f"CRS of `bbox` (default {CRS84}); one of the collection's `crs`",
        CRS_SCHEMA,
    ),
    "crs": _param(
        "crs",
        f"CRS of the geometries in the answer (default {CRS84}): one of the collection's "
        "`crs` (CRS84, EPSG:4326, EPSG:4490, the data's CGCS2000 Gauss-Kruger zone such as "
        "EPSG:4549), coordinates in that CRS's axis order; the answer's Content-Crs says which",
        CRS_SCHEMA,
    ),
    "datetime": _param(
        "datetime",
        "Cases reported at this instant or within this interval (RFC 3339; `..` or nothing for "
        "an open end; without an offset, Beijing time; a date alone is the whole day): "
        "2025-03-08, 2025-03-01T00:00:00Z/2025-03-31T23:59:59Z, 2025-03-01/..",
        {"type": "string", "maxLength": 100},
    ),
    "filter": _param(
        "filter",
        "CQL2 text: comparisons, AND/OR/NOT, LIKE, IN, BETWEEN, IS NULL, CASEI, S_INTERSECTS and "
        "the other spatial functions (geometries in `filter-crs`), on the collection's "
        "queryables: population > 1000 AND district_name = '潍城区'",
        {"type": "string", "maxLength": MAX_FILTER_CHARS},
    ),
    "filter-lang": _param(
        "filter-lang",
        "Language of `filter`",
        {"type": "string", "enum": list(FILTER_LANGS), "default": FILTER_LANGS[0]},
    ),
    "filter-crs": _param(
        "filter-crs",
        f"CRS of the geometries in `filter` (default {CRS84}), in its axis order",
        CRS_SCHEMA,
    ),
}
ITEMS_PARAMETERS = [PARAMETERS[n] for n in ("f", "limit", "offset", "bbox", "bbox-crs", "crs",
                                             "datetime", "filter", "filter-lang", "filter-crs")]  # fmt: skip
ITEM_PARAMETERS = [PARAMETERS["f"], PARAMETERS["crs"]]
FORMAT_PARAMETERS = [PARAMETERS["f"]]
CONTENT_CRS: dict[str, Any] = {
    "Content-Crs": {
        "description": "The CRS of the geometries, as <URI>",
        "required": True,
        "schema": {"type": "string"},
    }
}
