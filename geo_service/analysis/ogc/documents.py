"""The JSON documents of the OGC API (landing page, conformance, collections, a collection, its
queryables and schema, items, one item), with the links the standard requires.

Links are absolute, on the configured public base URL (never the request's ``Host``), and repeat
only parameters the query has already checked. The HTML pages are the same documents rendered
(``render/templates/ogc.html``): the links here name both representations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import orjson

from geo_service.analysis.ogc.collections import GEOMETRY, CollectionSpec, FeatureTable
from geo_service.analysis.ogc.crsref import CRS84, ServedCRS
from geo_service.analysis.ogc.query import ItemsQuery, geometry_json

PREFIX = "/ogc"
JSON = "application/json"
GEOJSON = "application/geo+json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA = "application/schema+json"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
TRS = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

FEATURES = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
CRS = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/"
FILTERING = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
CONFORMANCE: tuple[str, ...] = (
    FEATURES + "core",
    FEATURES + "oas30",
    FEATURES + "html",
    FEATURES + "geojson",
    CRS + "crs",
    FILTERING + "queryables",
    FILTERING + "queryables-query-parameters",
    FILTERING + "filter",
    FILTERING + "features-filter",
    CQL2 + "cql2-text",
    CQL2 + "basic-cql2",
    CQL2 + "advanced-comparison-operators",
    CQL2 + "case-insensitive-comparison",
    CQL2 + "basic-spatial-functions",
    CQL2 + "spatial-functions",
)
TITLE = "城市管理网格服务 · OGC API – Features"
DESCRIPTION = (
    "网格、社区、街道、区、小蓝棚、便民摊点群和随手拍案件，按 OGC API – Features 标准提供，"
    "QGIS、ArcGIS Pro、GDAL 等桌面 GIS 可直接添加为图层；支持 CGCS2000 坐标系（经纬度和高斯-"
    "克吕格投影）、按属性和 CQL2 表达式筛选。"
)
_FMT = {JSON: "json", GEOJSON: "json", HTML: "html", SCHEMA: "json"}


@dataclass(frozen=True)
class Site:
    """Where the API lives: the public base URL (links never echo the request's Host)."""

    base: str

    def url(self, path: str, params: Iterable[tuple[str, str]] = ()) -> str:
        query = urlencode(list(params))
        href = f"{self.base.rstrip('/')}{PREFIX}{path}"
        return f"{href}?{query}" if query else href


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, Any]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _self_links(
    site: Site,
    path: str,
    own: str,
    params: Sequence[tuple[str, str]] = (),
    json_type: str = JSON,
) -> list[dict[str, Any]]:
    """``self`` in the format asked for (``own``), ``alternate`` in the other one."""
    other = HTML if own != HTML else json_type
    fmt = [("f", _FMT[own])] if own == HTML else []
    return [
        link(site.url(path, [*params, *fmt]), "self", own, "本页"),
        link(
            site.url(path, [*params, ("f", _FMT[other])]),
            "alternate",
            other,
            "网页" if other == HTML else "JSON",
        ),
    ]


def landing(site: Site, dataset: str, own: str = JSON) -> dict[str, Any]:
    base = site.base.rstrip("/")
    return {
        "title": TITLE,
        "description": f"{DESCRIPTION}数据集：{dataset}。",
        "links": [
            *_self_links(site, "", own),
            link(f"{base}/openapi.json", "service-desc", OPENAPI, "接口定义（OpenAPI 3）"),
            link(f"{base}/docs", "service-doc", HTML, "接口文档"),
            link(site.url("/conformance"), "conformance", JSON, "符合的标准类别"),
            link(site.url("/collections"), "data", JSON, "图层（要素集合）"),
        ],
    }


def conformance(site: Site, own: str = JSON) -> dict[str, Any]:
    return {"conformsTo": list(CONFORMANCE), "links": _self_links(site, "/conformance", own)}


def collection(
    site: Site,
    table: FeatureTable,
    served: tuple[ServedCRS, ...],
    fallback_bounds: tuple[float, float, float, float],
    own: str = JSON,
) -> dict[str, Any]:
    spec = table.spec
    path = f"/collections/{spec.id}"
    bounds = table.bounds or fallback_bounds
    extent: dict[str, Any] = {
        "spatial": {"bbox": [[round(v, 7) for v in bounds]], "crs": CRS84},
    }
    if table.interval is not None:
        extent["temporal"] = {"interval": [list(table.interval)], "trs": TRS}
    return {
        "id": spec.id,
        "title": spec.title,
        "description": spec.description,
        "itemType": "feature",
        "extent": extent,
        "crs": [s.uri for s in served],
        "storageCrs": CRS84,
        "numberOfFeatures": len(table),
        "links": [
            *_self_links(site, path, own),
            link(site.url(f"{path}/items"), "items", GEOJSON, f"{spec.title}（GeoJSON）"),
            link(
                site.url(f"{path}/items", [("f", "html")]), "items", HTML, f"{spec.title}（网页）"
            ),
            link(site.url(f"{path}/queryables"), REL_QUERYABLES, SCHEMA, "可筛选属性"),
            link(site.url(f"{path}/schema"), "describedby", SCHEMA, "要素结构（JSON Schema）"),
        ],
    }


def collections(
    site: Site,
    docs: list[dict[str, Any]],
    served: tuple[ServedCRS, ...],
    own: str = JSON,
) -> dict[str, Any]:
    return {
        "links": _self_links(site, "/collections", own),
        "crs": [s.uri for s in served],
        "collections": docs,
    }


def queryables(site: Site, spec: CollectionSpec) -> dict[str, Any]:
    """Part 3's queryables: JSON Schema of the properties a filter may name."""
    props: dict[str, Any] = {
        GEOMETRY: {
            "title": "几何",
            "format": spec.geometry_format,
            "x-ogc-role": "primary-geometry",
        }
    }
    props.update({q.name: q.schema() for q in spec.queryables})
    return {
        "$schema": JSON_SCHEMA,
        "$id": site.url(f"/collections/{spec.id}/queryables"),
        "type": "object",
        "title": f"{spec.title} · 可筛选属性",
        "description": "CQL2 filter（filter-lang=cql2-text）和同名查询参数（如 ?name=…）可用的属性",
        "properties": props,
        "additionalProperties": False,
    }


def schema(site: Site, table: FeatureTable) -> dict[str, Any]:
    """JSON Schema of one feature of the collection: every property, typed (a client such as
    GDAL reads its fields' types from here rather than guessing them from a first page)."""
    spec = table.spec
    typed = {q.name: q for q in spec.queryables}
    props: dict[str, Any] = {}
    for name in table.values:
        q = typed.get(name)
        props[name] = q.schema() if q is not None else {"type": "string"}
    return {
        "$schema": JSON_SCHEMA,
        "$id": site.url(f"/collections/{spec.id}/schema"),
        "title": f"{spec.title} · 要素结构",
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"type": "object", "format": spec.geometry_format},
            "properties": {"type": "object", "properties": props},
        },
    }


def _feature(fid: Any, geometry: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": orjson.Fragment(geometry),
        "properties": props,
    }


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def items(
    site: Site,
    table: FeatureTable,
    q: ItemsQuery,
    rows: npt.NDArray[np.intp],
    matched: int,
    own: str = GEOJSON,
) -> dict[str, Any]:
    """A page of features, with ``next``/``prev`` links carrying the same selection."""
    spec = table.spec
    path = f"/collections/{spec.id}/items"
    fmt = [("f", "html")] if own == HTML else []
    kind = HTML if own == HTML else GEOJSON

    def at(offset: int, extra: Sequence[tuple[str, str]] = ()) -> str:
        paging = (
            [("limit", str(q.limit)), ("offset", str(offset))]
            if offset
            else [("limit", str(q.limit))]
        )
        return site.url(path, [*q.selection, *paging, *extra])

    other = [("f", "json")] if own == HTML else [("f", "html")]
    links = [
        link(at(q.offset, fmt), "self", kind, "本页"),
        link(
            at(q.offset, other),
            "alternate",
            GEOJSON if own == HTML else HTML,
            "GeoJSON" if own == HTML else "网页",
        ),
        link(site.url(f"/collections/{spec.id}"), "collection", JSON, spec.title),
    ]
    if q.offset + len(rows) < matched:
        links.append(link(at(q.offset + len(rows), fmt), "next", kind, "下一页"))
    if q.offset > 0:
        links.append(link(at(max(q.offset - q.limit, 0), fmt), "prev", kind, "上一页"))
    geoms = geometry_json(table.geometry[rows], q.crs)
    props = table.properties(rows)
    return {
        "type": "FeatureCollection",
        "timeStamp": now_stamp(),
        "numberMatched": matched,
        "numberReturned": len(rows),
        "links": links,
        "features": [
            _feature(fid, g, p) for fid, g, p in zip(table.ids[rows], geoms, props, strict=True)
        ],
    }


def item(
    site: Site, table: FeatureTable, i: int, crs: ServedCRS, own: str = GEOJSON
) -> dict[str, Any]:
    spec = table.spec
    fid = str(table.ids[i])
    path = f"/collections/{spec.id}/items/{url_quote(fid, safe='')}"
    crs_param = [] if crs.uri == CRS84 else [("crs", crs.uri)]
    rows = np.array([i], dtype=np.intp)
    doc = _feature(fid, geometry_json(table.geometry[rows], crs)[0], table.properties(rows)[0])
    doc["links"] = [
        *_self_links(site, path, HTML if own == HTML else GEOJSON, crs_param, GEOJSON),
        link(site.url(f"/collections/{spec.id}"), "collection", JSON, spec.title),
    ]
    return doc
