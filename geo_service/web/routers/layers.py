"""GIS staff: every layer, and coverage results, as a file QGIS, ArcGIS Pro or SuperMap opens.

The file is written to a temporary folder in the heavy pool (never on the event loop), streamed
from disk, and its folder removed once sent, or once the client has gone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from geo_service.analysis.exports import (
    ExportLayer,
    coverage_units_export,
    gap_pieces_export,
    layer_export,
    parse_layer,
)
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, MAX_MIN_GAP_M2
from geo_service.core.schema import Level
from geo_service.storage.export import (
    CRS_HELP,
    FORMAT_HELP,
    FORMATS,
    Exportable,
    ExportFile,
    ExportFormat,
    parse_crs,
    parse_format,
    write_export,
)
from geo_service.web.deps import HeavyDep, SnapshotDep
from geo_service.web.offload import HeavyPool
from geo_service.web.params import CoverageQueryDep

router = APIRouter(tags=["files (GIS staff)"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as an attachment (Content-Disposition names it)",
        "content": {
            info.media_type.split(";")[0]: (
                {"schema": {"$ref": "#/components/schemas/FeatureCollection"}}
                if fmt is ExportFormat.geojson
                else _BINARY
            )
            for fmt, info in FORMATS.items()
        },
    },
    400: {
        "description": "An unknown layer, format or crs, or a query parameter the endpoint "
        "does not take (named in the body)"
    },
}

FormatQuery = Annotated[
    str | None,
    Query(description=FORMAT_HELP, json_schema_extra={"enum": [f.value for f in ExportFormat]}),
]
CRSQuery = Annotated[str | None, Query(description=CRS_HELP, examples=["cgcs2000"])]


class TempFileResponse(FileResponse):
    """A file written for this answer: its folder is removed after sending, whatever happens."""

    def __init__(self, exported: ExportFile, folder: Path) -> None:
        super().__init__(exported.path, media_type=exported.media_type, filename=exported.filename)
        self.folder = folder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(shutil.rmtree, self.folder, True)


async def send_export(
    heavy: HeavyPool, build: Callable[[], Exportable], fmt: ExportFormat, epsg: int
) -> TempFileResponse:
    """Build and write the file in the heavy pool; answer it, or clean up on any failure."""
    folder = Path(tempfile.mkdtemp(prefix="geo_service-export-"))
    try:
        exported = await heavy.run(lambda: write_export(build(), fmt, epsg, folder))
    except BaseException:  # also a cancelled request: nothing may stay behind
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return TempFileResponse(exported, folder)


COVERAGE = "coverage (planners)"


def _file_route(path: str, summary: str, *tags: str) -> Callable[[Any], Any]:
    """A GET that answers a file (:func:`send_export`), documented as every format's file."""
    return router.get(
        path,
        summary=summary,
        response_class=FileResponse,
        responses=FILE_RESPONSES,
        tags=list(tags) or None,
    )


@_file_route("/api/v1/layers/{layer}", "A whole layer as a file for desktop GIS")
async def layer_file(
    snap: SnapshotDep,
    heavy: HeavyDep,
    layer: Annotated[
        str,
        PathParam(
            description=", ".join(x.value for x in ExportLayer),
            json_schema_extra={"enum": [x.value for x in ExportLayer]},
        ),
    ],
    format: FormatQuery = None,
    crs: CRSQuery = None,
) -> TempFileResponse:
    """Grids, stalls and vendor clusters exactly as stored (they import back unchanged, with
    `geo-service import` or `PUT /api/v1/layers/{layer}`); communities, streets and districts
    dissolved from the grids, with their area, population and parent units. Field names and
    values stay Chinese where they are; a Shapefile's names longer than 10 bytes are
    abbreviated (the zip's `.fields.csv` and README.txt list them)."""
    name = parse_layer(layer)
    fmt, epsg = parse_format(format), parse_crs(crs, snap.projection.epsg)
    return await send_export(heavy, lambda: layer_export(snap, name), fmt, epsg)


@_file_route("/api/v1/coverage/units", "Coverage of each unit as a file for desktop GIS", COVERAGE)
async def coverage_units_file(
    q: CoverageQueryDep,
    snap: SnapshotDep,
    heavy: HeavyDep,
    by: Annotated[Level, Query(description="Level of the units")] = Level.grid,
    format: FormatQuery = None,
    crs: CRSQuery = None,
) -> TempFileResponse:
    """The figures of `GET /api/v1/coverage` (area, covered area, population, covered
    population and both ratios) for each unit, with its outline and parent units."""
    fmt, epsg = parse_format(format), parse_crs(crs, snap.projection.epsg)

    def build() -> Exportable:
        return coverage_units_export(
            snap, q.layer, q.radius_m, by.value, q.service, active_only=q.active_only
        )

    return await send_export(heavy, build, fmt, epsg)


@_file_route(
    "/api/v1/coverage/gap-pieces",
    "Uncovered pieces of each grid as a file for desktop GIS",
    COVERAGE,
)
async def gap_pieces_file(
    q: CoverageQueryDep,
    snap: SnapshotDep,
    heavy: HeavyDep,
    min_area_m2: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_MIN_GAP_M2,
            allow_inf_nan=False,
            description="Pieces smaller than this (m²) are slivers, left out (counted in "
            "README.txt of a Shapefile, the GeoPackage's description)",
        ),
    ] = DEFAULT_MIN_GAP_M2,
    format: FormatQuery = None,
    crs: CRSQuery = None,
) -> TempFileResponse:
    """The uncovered part of each grid, split into its connected pieces, most people first:
    `gap_id`, the grid, community, street and district it lies in, `area_m2`, `population`
    (the grid's people by area) and `nearest_m` (metres to the nearest counted facility)."""
    fmt, epsg = parse_format(format), parse_crs(crs, snap.projection.epsg)

    def build() -> Exportable:
        return gap_pieces_export(
            snap, q.layer, q.radius_m, q.service, q.active_only, min_area_m2=min_area_m2
        )

    return await send_export(heavy, build, fmt, epsg)
