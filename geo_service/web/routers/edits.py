"""Officers and admins: change stalls, vendor clusters and grids, replace a layer, read the audit.

Every write needs an ``X-API-Key``; changes to an existing feature need ``If-Match`` with its
ETag (``W/"<version>"``). The change is made in the backend (the source of truth), then this
instance swaps in a rebuilt snapshot before answering, so the writer reads its own write; other
instances follow within about a second (NOTIFY or file polling).
"""

# No ``from __future__ import annotations``: the routes below are built per layer, and FastAPI
# must see their body models as objects, not as names to look up.

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from geo_service.core.crs import PointCRS
from geo_service.core.layers import LayerFileError
from geo_service.core.principal import Principal
from geo_service.core.schema import MOVED_TO_LAT, MOVED_TO_LON, LayerName
from geo_service.core.snapshot import Snapshot
from geo_service.core.versions import IfMatch, etag
from geo_service.domain import editing
from geo_service.domain.auth import check_admin
from geo_service.domain.validation import validate_file
from geo_service.storage.audit import ACTIONS, AuditQuery, to_csv, to_jsonl
from geo_service.storage.base import Backend, Mutation
from geo_service.storage.records import Record
from geo_service.storage.reloader import Reloader
from geo_service.web.deps import (
    BackendDep,
    HeavyDep,
    IfMatchDep,
    PrincipalDep,
    ReloaderDep,
    SnapshotDep,
    get_snapshot,
)
from geo_service.web.errors import ApiError, bad_request
from geo_service.web.geojson import grid_feature
from geo_service.web.jsonbody import JSONBodyRoute
from geo_service.web.models import (
    AuditPage,
    ConflictBody,
    Feature,
    RejectedUpload,
    ReplaceResponse,
    edit_body,
)
from geo_service.web.openapi import ETAG_HEADER
from geo_service.web.params import GRID_CODE
from geo_service.web.responses import GeoJSONResponse, JSONResponse

router = APIRouter(tags=["edits (officers, admins)"], route_class=JSONBodyRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, or an unknown or revoked key; nothing changed"},
    403: {"description": "The key does not allow this change; nothing changed"},
    404: {"description": "No such feature"},
    409: {
        "description": "If-Match names an older version (or the code exists); nothing changed",
        "model": ConflictBody,
    },
    422: {"description": "The values break the layer's schema; nothing changed"},
    428: {"description": "If-Match is missing"},
}
UPLOAD_SUFFIXES = {"geojson": ".geojson", "gpkg": ".gpkg", "csv": ".csv", "zip": ".zip"}


def point_feature(rec: Record) -> dict[str, Any]:
    """A point record as a Feature whose properties also carry lon/lat, like STALL."""
    feat = rec.feature()
    lon, lat = rec.geometry["coordinates"][:2]
    feat["properties"] = {**rec.properties, "lon": lon, "lat": lat}
    return feat


@dataclass(frozen=True)
class EditContext:
    """What every single-feature write needs: who asks, the version they change (If-Match),
    the snapshot they saw, the backend and this instance's reloader."""

    who: Principal
    if_match: IfMatch | None
    snap: Snapshot
    backend: Backend
    reloader: Reloader

    def apply(self, layer: LayerName, code: str, mutation: Mutation, action: str) -> Record:
        """Run the mutation in the backend, then serve the result here (read-your-writes)."""
        change = self.backend.modify(layer, code, mutation, self.who, action)
        assert change.after is not None
        self.reloader.refresh()
        return change.after

    def update(
        self, layer: LayerName, changes: dict[str, Any], geometry: dict[str, Any] | None
    ) -> Mutation:
        grid_of = editing.grid_locator(self.snap)
        return editing.update(layer, self.who, changes, geometry, self.if_match, grid_of)


def edit_context(
    who: PrincipalDep,
    if_match: IfMatchDep,
    snap: SnapshotDep,
    backend: BackendDep,
    reloader: ReloaderDep,
) -> EditContext:
    return EditContext(who, if_match, snap, backend, reloader)


EditDep = Annotated[EditContext, Depends(edit_context)]


def _answer(rec: Record, status: int = 200, **headers: str) -> Response:
    return GeoJSONResponse(
        point_feature(rec), status_code=status, headers={"ETag": etag(rec.version), **headers}
    )


def _split(body: BaseModel) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Properties sent, and the new point if lon/lat were sent (converted to WGS84)."""
    data = body.model_dump(exclude_unset=True)
    lon, lat = data.pop("lon", None), data.pop("lat", None)
    crs = data.pop("crs", PointCRS.wgs84)
    if (lon is None) != (lat is None):
        raise bad_request(
            "send both lon and lat to move a feature", "lat" if lat is None else "lon"
        )
    # A relocated stall's new point is given in the body's CRS too (an Amap pick is GCJ-02),
    # and stored in WGS84 like every point.
    mlon, mlat = data.get(MOVED_TO_LON), data.get(MOVED_TO_LAT)
    if mlon is not None and mlat is not None and crs != PointCRS.wgs84:
        x, y = editing.point_geometry(mlon, mlat, crs)["coordinates"]
        data[MOVED_TO_LON], data[MOVED_TO_LAT] = round(x, 7), round(y, 7)
    return data, None if lon is None else editing.point_geometry(lon, lat, crs)


def _point_routes(layer: LayerName, prefix: str) -> None:
    """POST, PATCH and DELETE (retire) for one point layer, on the read paths' URLs."""
    # One feature of the layer: "stall", "vendor cluster" (the layer's name is plural).
    title = {LayerName.stalls: "repair stall", LayerName.vendor_clusters: "vendor cluster"}[layer]
    Create = edit_body(layer, create=True)
    Change_ = edit_body(layer, create=False)

    def create(body: Create, ctx: EditDep) -> Response:  # type: ignore[valid-type]
        data, geometry = _split(body)
        assert geometry is not None  # lon/lat are required by the model
        mutation = editing.create(layer, ctx.who, data, geometry)
        rec = ctx.apply(layer, data["code"], mutation, "create")
        return _answer(rec, 201, Location=f"{prefix}/{rec.code}")

    def update(code: str, body: Change_, ctx: EditDep) -> Response:  # type: ignore[valid-type]
        changes, geometry = _split(body)
        return _answer(ctx.apply(layer, code, ctx.update(layer, changes, geometry), "update"))

    def retire(code: str, ctx: EditDep) -> Response:
        mutation = ctx.update(layer, {"status": "retired"}, None)
        return _answer(ctx.apply(layer, code, mutation, "retire"))

    one = f"{prefix}/{{code}}"
    routes: list[tuple[str, Callable[..., Response], str, str, str | None]] = [
        (prefix, create, "POST", f"Create a {title} (admin)",
         "Validated like an imported row; answers the new Feature with its ETag."),
        (one, update, "PATCH",
         f"Change a {title} (officer: status and hours in own grids; admin: anything)",
         "Send only the fields to change (and lon/lat/crs to move it), with `If-Match` set "
         "to the ETag you read. A stale ETag gets 409 and changes nothing."),
        (one, retire, "DELETE",
         f"Retire a {title} (status becomes retired; the record and its history stay)", None),
    ]  # fmt: skip
    for path, endpoint, method, summary, description in routes:
        status = 201 if method == "POST" else 200
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            status_code=status,
            summary=summary,
            description=description,
            responses={**ERRORS, status: ETAG_HEADER},
            response_model=Feature,
            response_class=GeoJSONResponse,
        )


_point_routes(LayerName.stalls, "/api/v1/stalls")
_point_routes(LayerName.vendor_clusters, "/api/v1/vendor-clusters")

GridChange = edit_body(LayerName.grids, create=False)


@router.patch(
    "/api/v1/grids/{code}",
    summary="Reassign a grid's officer or change its attributes (admin)",
    responses={**ERRORS, 200: ETAG_HEADER},
    response_model=Feature,
    response_class=GeoJSONResponse,
)
def update_grid(
    code: Annotated[str, GRID_CODE],
    body: GridChange,  # type: ignore[valid-type]
    request: Request,
    ctx: EditDep,
) -> Response:
    """Name, officer, households, population. Boundaries and codes change only with a new
    survey (`PUT /api/v1/layers/grids`), where the topology of all grids is checked together."""
    changes, _ = _split(body)  # a grid body has no lon/lat
    ctx.apply(LayerName.grids, code, ctx.update(LayerName.grids, changes, None), "update")
    fresh = get_snapshot(request)
    i = fresh.grids.position[code]
    return GeoJSONResponse(
        grid_feature(fresh, i), headers={"ETag": etag(fresh.grids.properties[i])}
    )


async def save_body(request: Request, path: Path) -> tuple[int, str]:
    """Stream the body to ``path`` chunk by chunk (its cap is checked as it arrives, see
    ``web.limits``); its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@router.put(
    "/api/v1/layers/{layer}",
    response_model=ReplaceResponse,
    summary="Replace a whole layer from an uploaded file (admin)",
    responses={
        **ERRORS,
        422: {
            "description": "The file has errors: nothing replaced; the body holds the report",
            "model": RejectedUpload,
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The file itself as the body (curl --data-binary @grids.geojson)",
            "content": {
                "application/geo+json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def replace_layer(
    layer: LayerName,
    request: Request,
    who: PrincipalDep,
    backend: BackendDep,
    reloader: ReloaderDep,
    heavy: HeavyDep,
    format: Annotated[
        Literal["geojson", "gpkg", "csv", "zip"],
        Query(description="File format; zip = a zipped shapefile"),
    ] = "geojson",
    crs: Annotated[
        str | None,
        Query(description="CRS if the file does not say: wgs84, cgcs2000, gcj02, bd09, EPSG:…"),
    ] = None,
) -> JSONResponse:
    """The file is checked exactly as `geo-service validate` checks it (rows, and for grids the
    topology). With any error the layer is left as it was and the answer is 422 with the full
    report. Otherwise the layer is replaced in one step: unchanged features keep their version,
    changed ones get the next, and every added, changed or removed feature is audited."""
    check_admin(who, "replacing a layer")

    def check_and_store(path: Path, source: str) -> tuple[Any, Any]:
        try:
            checked = validate_file(path, layer, crs)
        except LayerFileError as exc:
            raise bad_request(str(exc).replace(str(path), "upload"), "body") from None
        if not checked.ok:
            return checked, None
        result = editing.replace_layer(backend, checked, who, source)
        reloader.refresh()
        return checked, result

    with tempfile.TemporaryDirectory(prefix="geo_service-upload-") as tmp:
        path = Path(tmp) / f"upload{UPLOAD_SUFFIXES[format]}"
        size, digest = await save_body(request, path)
        if not size:
            raise bad_request("the request body must be the file", "body")
        source = f"upload {digest[:16]} ({size} bytes, {format})"
        checked, result = await heavy.run(check_and_store, path, source)
    report = checked.to_dict()
    if result is None:
        raise ApiError(
            422,
            f"{checked.errors} errors: nothing replaced (see report)",
            extra={"errors": checked.error_items(), "report": report},
        )
    body = {
        "layer": layer.value,
        **result.summary,
        "dataset_version": get_snapshot(request).version,
        "report": report,
    }
    return JSONResponse(body)


@router.get(
    "/api/v1/audit",
    response_model=AuditPage,
    summary="The audit log: who changed what, when, before and after (admin)",
    responses={
        **{k: v for k, v in ERRORS.items() if k in (401, 403)},
        200: {
            "content": {
                "application/json": {},
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            }
        },
    },
)
def audit(
    who: PrincipalDep,
    backend: BackendDep,
    layer: Annotated[LayerName | None, Query()] = None,
    code: Annotated[str | None, Query(description="Feature code")] = None,
    actor: Annotated[str | None, Query(description="Key name, or cli:<user>")] = None,
    action: Annotated[str | None, Query(description=", ".join(ACTIONS))] = None,
    since: Annotated[datetime | None, Query(description="From this time (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (ISO 8601)")] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="Page size (JSON default 100)")
    ] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    order: Annotated[Literal["desc", "asc"], Query(description="By entry id")] = "desc",
    format: Annotated[
        Literal["json", "csv", "jsonl"], Query(description="json pages; csv/jsonl export")
    ] = "json",
) -> Response:
    """Filters combine. `format=csv` or `format=jsonl` exports every matching entry (unless
    `limit` is given) as a download."""
    check_admin(who, "reading the audit log")
    if action is not None and action not in ACTIONS:
        raise bad_request(f"one of {', '.join(ACTIONS)}", "action")
    for name, t in (("since", since), ("until", until)):
        if t is not None and t.tzinfo is None:
            raise bad_request("give a time zone (e.g. 2025-01-31T08:00:00+08:00 or Z)", name)
    query = AuditQuery(
        layer=layer.value if layer else None,
        code=code,
        actor=actor,
        action=action,
        since=since,
        until=until,
        limit=limit if limit is not None or format != "json" else 100,
        offset=offset,
        newest_first=order == "desc",
    )
    entries, total = backend.audit(query)
    if format == "csv":
        return Response(
            to_csv(entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    if format == "jsonl":
        return Response(
            to_jsonl(entries),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="audit.jsonl"'},
        )
    rows = [e.to_dict() for e in entries]
    return JSONResponse({"total": total, "returned": len(rows), "entries": rows})
