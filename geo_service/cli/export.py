"""``geo-service export``: a layer, or coverage results, as a file for desktop GIS (the same
files as ``GET /api/v1/layers/{layer}`` and ``/api/v1/coverage/units|gap-pieces``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

from geo_service.analysis.coverage import CoverageInputError, check_radius
from geo_service.analysis.exports import (
    ExportLayer,
    coverage_units_export,
    gap_pieces_export,
    layer_export,
    parse_layer,
)
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2
from geo_service.core.errors import InputError
from geo_service.core.schema import Level, PointLayerName
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot
from geo_service.runtime import load_snapshot
from geo_service.storage.export import (
    CRS_HELP,
    FORMAT_HELP,
    Exportable,
    ExportError,
    ExportFormat,
    flat_frame,
    parse_crs,
    parse_format,
    write_export,
    write_shapefile,
)

console = Console()
err = Console(stderr=True)

COVERAGE_UNITS, COVERAGE_GAPS = "coverage-units", "coverage-gaps"
LAYERS = [*(x.value for x in ExportLayer), COVERAGE_UNITS, COVERAGE_GAPS]
SUFFIX_FORMATS = {
    ".gpkg": ExportFormat.gpkg,
    ".fgb": ExportFormat.fgb,
    ".shp": ExportFormat.shp,
    ".zip": ExportFormat.shp,
    ".geojson": ExportFormat.geojson,
    ".json": ExportFormat.geojson,
    ".csv": ExportFormat.csv,
    ".parquet": ExportFormat.parquet,
    ".geoparquet": ExportFormat.parquet,
}


def choose_format(fmt: str | None, out: Path | None) -> ExportFormat:
    """``--format``, else the one ``--out`` names by its suffix, else GeoPackage; they agree."""
    by_suffix = SUFFIX_FORMATS.get(out.suffix.lower()) if out is not None else None
    if fmt is None:
        return by_suffix or ExportFormat.gpkg
    chosen = parse_format(fmt)
    if out is not None and by_suffix is not chosen:
        raise ExportError(
            f"{out.name} names no {chosen.value} file: give it the format's suffix, or leave "
            "out --format",
            "out",
        )
    return chosen


def _fail(exc: InputError) -> typer.Exit:
    flag = (exc.field or "").replace("_m2", "").replace("_m", "").replace("_", "-")
    where = "LAYER: " if flag == "layer" else f"--{flag}: " if flag else ""
    err.print(f"[red]{where}{exc.message}[/]")
    return typer.Exit(2)


def _build(
    snap: Snapshot,
    layer: str,
    facilities: PointLayerName,
    radius: float,
    by: Level,
    service: str | None,
    active_only: bool,
    min_area: float,
) -> Exportable:
    if layer not in (COVERAGE_UNITS, COVERAGE_GAPS):
        return layer_export(snap, parse_layer(layer))
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"coverage of {len(snap.grids):,} grids", total=len(snap.grids))

        def advance(n: int) -> None:
            progress.advance(task, n)

        if layer == COVERAGE_UNITS:
            return coverage_units_export(
                snap, facilities.value, radius, by.value, service, active_only, advance
            )
        return gap_pieces_export(
            snap, facilities.value, radius, service, active_only, min_area, advance
        )


def _write(data: Exportable, fmt: ExportFormat, epsg: int, out: Path | None) -> tuple[Path, int]:
    """Write next to ``out`` (default: the file's own name here), then move into place."""
    folder = (out.parent if out is not None else Path.cwd()).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".geo_service-export-", dir=folder))
    try:
        if fmt is ExportFormat.shp and out is not None and out.suffix.lower() == ".shp":
            files = write_shapefile(flat_frame(data.frame, epsg), out.stem, tmp, data)
            for f in files:
                if f.name != "README.txt":  # the sidecar keeps the names; no stray README
                    os.replace(f, folder / f.name)
            return out, len(data.frame)
        exported = write_export(data, fmt, epsg, tmp)
        target = out if out is not None else folder / exported.filename
        os.replace(exported.path, target)
        return target, exported.features
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_cmd(
    layer: Annotated[str, typer.Argument(help=", ".join(LAYERS))],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help=f"{FORMAT_HELP}. Default: from --out, else gpkg"),
    ] = None,
    crs: Annotated[str | None, typer.Option(help=CRS_HELP)] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="File to write (default: the layer's name here). For shp: x.zip zips the "
            "files, x.shp writes x.shp/.shx/.dbf/.prj/.cpg and x.fields.csv side by side"
        ),
    ] = None,
    facilities: Annotated[
        PointLayerName, typer.Option(help="coverage-*: the facilities that cover")
    ] = PointLayerName.stalls,
    radius: Annotated[float | None, typer.Option(help="coverage-*: radius in metres")] = None,
    by: Annotated[Level, typer.Option(help="coverage-units: level of the units")] = Level.grid,
    service: Annotated[
        str | None, typer.Option(help="coverage-*: only stalls offering 修鞋, 修车 or 修锁配钥匙")
    ] = None,
    active_only: Annotated[
        bool,
        typer.Option(
            "--active-only/--include-inactive",
            help="coverage-*: only active facilities, or also suspended and relocated ones",
        ),
    ] = True,
    min_area: Annotated[
        float, typer.Option(help="coverage-gaps: pieces under this many m² are left out")
    ] = DEFAULT_MIN_GAP_M2,
) -> None:
    """A layer (grids, communities, streets, districts, stalls, vendor_clusters) or coverage
    results (coverage-units, coverage-gaps) as a GeoPackage, FlatGeobuf, Shapefile, GeoJSON,
    CSV or GeoParquet file for QGIS, ArcGIS Pro or SuperMap, in WGS84, CGCS2000 or metres."""
    settings = Settings()
    try:
        chosen = choose_format(fmt, out)
        if layer not in (COVERAGE_UNITS, COVERAGE_GAPS):
            parse_layer(layer)
        elif radius is None:
            raise ExportError(f"{layer} needs a radius in metres", "radius_m")
        else:
            check_radius(radius, settings.max_radius_m)
        snap = load_snapshot(settings)
        epsg = parse_crs(crs, snap.projection.epsg)
        data = _build(snap, layer, facilities, radius or 0.0, by, service, active_only, min_area)
    except (ExportError, CoverageInputError) as exc:
        raise _fail(exc) from None
    with err.status(f"writing {len(data.frame):,} features"):
        path, features = _write(data, chosen, epsg, out)
    console.print(
        f"wrote {features:,} features of {data.title} ({data.name}) as {chosen.value}, "
        f"EPSG:{epsg}, to {path}"
    )
