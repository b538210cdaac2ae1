"""GIS clients (QGIS, ArcGIS Pro, GDAL): OGC API – Features, Parts 1–3, under ``/ogc``.

A thin layer over ``analysis.ogc``: it reads the query string (every parameter checked there, an
unknown one a 400), picks JSON or a Chinese HTML page (``f``, else the Accept header), and sends
what ``analysis.ogc.documents`` builds. Building a page (selection, reprojection, encoding) runs
in the heavy pool: a page of 10,000 grids is tens of milliseconds of CPU.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from geo_service.analysis.ogc import documents as docs
from geo_service.analysis.ogc.collections import SPECS, FeatureTable, spec_of, table_for
from geo_service.analysis.ogc.crsref import ServedCRS, parse_crs, served_crs
from geo_service.analysis.ogc.query import (
    FORMAT,
    ITEM_PARAMS,
    check_names,
    page,
    parse_format,
    parse_items_query,
)
from geo_service.core.errors import NotFoundError, quote
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot
from geo_service.web.deps import HeavyDep, SettingsDep, SnapshotDep, get_cases
from geo_service.web.ogcmodels import (
    CONTENT_CRS,
    FORMAT_PARAMETERS,
    ITEM_PARAMETERS,
    ITEMS_PARAMETERS,
    OGCCollection,
    OGCCollections,
    OGCConformance,
    OGCFeature,
    OGCFeatureCollection,
    OGCJsonSchema,
    OGCLandingPage,
)
from geo_service.web.pagekit import TEMPLATES
from geo_service.web.responses import GeoJSONResponse, JSONResponse, dumps

router = APIRouter(prefix="/ogc", tags=["OGC API – Features (GIS clients)"])

BAD: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter the resource does not take, or a bad value (named)"}
}
HTML_TOO: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
COLLECTION_ID = Path(
    description="Collection: " + ", ".join(f"{s.id} ({s.title})" for s in SPECS),
    examples=["grids"],
)
CollectionId = Annotated[str, COLLECTION_ID]
# Features: GeoJSON in the CRS the Content-Crs header names, or a Chinese page with ``f=html``.
FEATURES_OR_PAGE: dict[str, Any] = {
    "response_class": GeoJSONResponse,
    "responses": {200: {**HTML_TOO, "headers": CONTENT_CRS}, **BAD},
}
# A resource that answers JSON, or a Chinese page with ``f=html``, and takes no other parameter.
PAGE_OR_JSON: dict[str, Any] = {
    "responses": {200: HTML_TOO, **BAD},
    "openapi_extra": {"parameters": FORMAT_PARAMETERS},
}
FEATURE_ID = Path(description="The feature's code (a case's number)", examples=["370702001001001"])


# Pages of features are compressed here, in the heavy pool, at a level that costs a quarter of
# the CPU of Starlette's middleware (level 9) for pages 7% larger (a 1,000-grid page: 684 KB to
# 83 KB in 5 ms); the middleware passes an encoded answer through.
GZIP_LEVEL = 5
GZIP_MIN = 2048
GZIP_MAGIC = b"\x1f\x8b"


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        token, _, weight = part.partition(";")
        refused = weight.replace(" ", "").rstrip("0").rstrip(".") in ("q=0", "q=")
        if token.strip() in ("gzip", "*") and not refused:
            return True
    return False


class SchemaJSONResponse(JSONResponse):
    media_type = docs.SCHEMA


def _site(settings: Settings) -> docs.Site:
    return docs.Site(str(settings.public_base_url))


def _params(request: Request) -> list[tuple[str, str]]:
    return request.query_params.multi_items()


def _wants_html(request: Request, given: str | None) -> bool:
    """``f`` decides; without it, a browser (HTML accepted, JSON not) gets the page."""
    fmt = parse_format(given)
    if fmt is not None:
        return fmt == "html"
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "json" not in accept


def _format_only(request: Request, what: str) -> bool:
    given = check_names(_params(request), [FORMAT], what)
    return _wants_html(request, given.get(FORMAT))


def _page(
    request: Request,
    snap: Snapshot,
    kind: str,
    doc: dict[str, Any],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """The document as a Chinese page (``render/templates/ogc.html``, every value escaped)."""
    root = str(request.scope.get("root_path", ""))
    ctx = {
        "request": request,
        "root": root,
        "static": root + "/static",
        "dataset": snap.name,
        "kind": kind,
        "doc": doc,
        "links": [lk for lk in doc.get("links", []) if lk["rel"] not in ("self",)],
        **extra,
    }
    return TEMPLATES.TemplateResponse(request, "ogc.html", ctx, headers=headers)


def _content_crs(crs: ServedCRS) -> dict[str, str]:
    return {"Content-Crs": f"<{crs.uri}>"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "、".join(map(str, value))
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def _table(request: Request, snap: Snapshot, cid: str) -> Callable[[], FeatureTable]:
    """The collection's table, to build (or take from its cache) in the heavy pool; 404 now
    for an unknown collection."""
    spec_of(cid)
    desk = get_cases(request)
    base = str(request.app.state.settings.public_base_url)
    return lambda: table_for(cid, snap, desk, base)


@router.get("/", include_in_schema=False)  # clients that add a slash to the base URL
@router.get(
    "",
    response_model=OGCLandingPage,
    summary="Landing page: links to the API definition, conformance and the collections",
    **PAGE_OR_JSON,
)
async def landing(request: Request, snap: SnapshotDep, settings: SettingsDep) -> Response:
    """What QGIS, ArcGIS Pro and GDAL open first (`OAPIF:http://HOST/ogc`): `service-desc`
    (this OpenAPI document), `conformance` and `data` (the collections)."""
    html = _format_only(request, "the landing page")
    doc = docs.landing(_site(settings), snap.name, docs.HTML if html else docs.JSON)
    return _page(request, snap, "landing", doc) if html else JSONResponse(doc)


@router.get(
    "/conformance",
    response_model=OGCConformance,
    summary="The conformance classes this API implements",
    **PAGE_OR_JSON,
)
async def conformance(request: Request, snap: SnapshotDep, settings: SettingsDep) -> Response:
    html = _format_only(request, "conformance")
    doc = docs.conformance(_site(settings), docs.HTML if html else docs.JSON)
    return _page(request, snap, "conformance", doc) if html else JSONResponse(doc)


def _collection_doc(
    site: docs.Site, table: FeatureTable, snap: Snapshot, own: str
) -> dict[str, Any]:
    return docs.collection(site, table, served_crs(snap.projection.epsg), snap.bounds, own)


@router.get(
    "/collections",
    response_model=OGCCollections,
    summary="The collections (layers): grids, units, stalls, vendor clusters, cases",
    **PAGE_OR_JSON,
)
async def collections(
    request: Request, snap: SnapshotDep, settings: SettingsDep, heavy: HeavyDep
) -> Response:
    html = _format_only(request, "collections")
    own = docs.HTML if html else docs.JSON
    site = _site(settings)
    builders = [_table(request, snap, s.id) for s in SPECS]

    def answer() -> dict[str, Any]:
        items = [_collection_doc(site, build(), snap, docs.JSON) for build in builders]
        return docs.collections(site, items, served_crs(snap.projection.epsg), own)

    doc = await heavy.run(answer)
    return _page(request, snap, "collections", doc) if html else JSONResponse(doc)


@router.get(
    "/collections/{collectionId}",
    response_model=OGCCollection,
    summary="One collection: extent, CRSs, links to its items and queryables",
    **PAGE_OR_JSON,
)
async def collection(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    collectionId: CollectionId,  # the standard's name
) -> Response:
    build = _table(request, snap, collectionId)
    html = _format_only(request, f"collections/{collectionId}")
    own = docs.HTML if html else docs.JSON
    table = await heavy.run(build)
    doc = _collection_doc(_site(settings), table, snap, own)
    if html:
        queryables = [(q.name, q.title, q.type, q.format or "") for q in table.spec.queryables]
        return _page(request, snap, "collection", doc, queryables=queryables)
    return JSONResponse(doc)


@router.get(
    "/collections/{collectionId}/queryables",
    response_model=OGCJsonSchema,
    response_class=SchemaJSONResponse,
    summary="The properties a filter may name (JSON Schema)",
    **PAGE_OR_JSON,
)
async def queryables(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    collectionId: CollectionId,
) -> Response:
    spec = spec_of(collectionId)
    html = _format_only(request, f"collections/{collectionId}/queryables")
    doc = docs.queryables(_site(settings), spec)
    if html:
        rows = [
            (name, p.get("title", ""), p.get("type", ""), p.get("format", ""))
            for name, p in doc["properties"].items()
        ]
        site = _site(settings)
        back = [
            docs.link(
                site.url(f"/collections/{collectionId}", [("f", "html")]),
                "collection",
                docs.HTML,
                spec.title,
            ),
            docs.link(
                site.url(f"/collections/{collectionId}/queryables", [("f", "json")]),
                "alternate",
                docs.SCHEMA,
                "JSON Schema",
            ),
        ]
        return _page(request, snap, "queryables", {**doc, "links": back}, queryables=rows)
    return SchemaJSONResponse(doc)


@router.get(
    "/collections/{collectionId}/schema",
    response_model=OGCJsonSchema,
    response_class=SchemaJSONResponse,
    summary="The schema of one feature: every property with its type (JSON Schema)",
    responses=BAD,
)
async def schema(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    collectionId: CollectionId,
) -> Response:
    build = _table(request, snap, collectionId)
    check_names(_params(request), [], f"collections/{collectionId}/schema")
    table = await heavy.run(build)
    return SchemaJSONResponse(docs.schema(_site(settings), table))


@router.get(
    "/collections/{collectionId}/items",
    response_model=OGCFeatureCollection,
    summary="The features of a collection: paged, by bbox, datetime, properties, CQL2, in a CRS",
    **FEATURES_OR_PAGE,
    openapi_extra={"parameters": ITEMS_PARAMETERS},
)
async def items(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    collectionId: CollectionId,
) -> Response:
    """GeoJSON features (`numberMatched`, `numberReturned`, `next`/`prev` links typed
    application/geo+json), or a table page with `f=html`. Property filters are the queryables
    as parameters: `?district_name=潍城区`, `?services=修车` (a stall offering it)."""
    build = _table(request, snap, collectionId)
    params = _params(request)
    html = _wants_html(request, dict(params).get(FORMAT))
    served = served_crs(snap.projection.epsg)
    site = _site(settings)

    gz = _accepts_gzip(request)

    def answer() -> tuple[dict[str, Any], bytes | None, ServedCRS]:
        table = build()
        q = parse_items_query(params, table, served)
        rows, matched = page(table, q)
        doc = docs.items(site, table, q, rows, matched, docs.HTML if html else docs.GEOJSON)
        if html:
            return doc, None, q.crs
        body = dumps(doc)
        return doc, gzip.compress(body, GZIP_LEVEL) if gz and len(body) >= GZIP_MIN else body, q.crs

    doc, body, crs = await heavy.run(answer)
    headers = _content_crs(crs)
    if body is not None:
        if gz and body[:2] == GZIP_MAGIC:
            headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(body, media_type=docs.GEOJSON, headers=headers)
    spec = spec_of(collectionId)
    names = list(doc["features"][0]["properties"]) if doc["features"] else []
    columns = [(n, q.title if (q := spec.queryable(n)) else n) for n in names]
    rows = [[f["id"], *(_cell(v) for v in f["properties"].values())] for f in doc["features"]]
    return _page(
        request,
        snap,
        "items",
        doc,
        headers,
        columns=columns,
        rows=rows,
        cid=collectionId,
        title=spec.title,
        crs=crs.uri,
    )


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    response_model=OGCFeature,
    summary="One feature, by its code (a case by its number)",
    **FEATURES_OR_PAGE,
    openapi_extra={"parameters": ITEM_PARAMETERS},
)
async def item(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    collectionId: CollectionId,
    featureId: Annotated[str, FEATURE_ID],
) -> Response:
    build = _table(request, snap, collectionId)
    given = check_names(_params(request), ITEM_PARAMS, f"collections/{collectionId}/items/…")
    html = _wants_html(request, given.get(FORMAT))
    crs = parse_crs(given.get("crs"), served_crs(snap.projection.epsg), "crs")
    table = await heavy.run(build)
    i = table.position.get(featureId)
    if i is None:
        raise NotFoundError(f"no feature {quote(featureId)} in {collectionId}")
    doc = docs.item(_site(settings), table, i, crs, docs.HTML if html else docs.GEOJSON)
    headers = _content_crs(crs)
    if not html:
        return Response(dumps(doc), media_type=docs.GEOJSON, headers=headers)
    spec = table.spec
    rows = [
        [name, q.title if (q := spec.queryable(name)) else "", _cell(v)]
        for name, v in doc["properties"].items()
    ]
    geom = table.geometry[i]
    return _page(
        request,
        snap,
        "item",
        doc,
        headers,
        rows=rows,
        title=spec.title,
        crs=crs.uri,
        geometry=geom.geom_type,
    )
