"""``geo-service locate-file``: the grid, community, street and district of every point of a
CSV, GeoParquet or GeoPackage file of any size (a year of hotline cases, patrol GPS tracks),
streamed in partitions on local cores or a Dask cluster, with a progress bar on stderr."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from geo_service.analysis.locatefile import (
    DEFAULT_BATCH_ROWS,
    MAX_BATCH_ROWS,
    MAX_WORKERS,
    MIN_BATCH_ROWS,
    LocateFileError,
    LocateOptions,
    locate_file,
)
from geo_service.core.crs import PointCRS
from geo_service.core.settings import Settings
from geo_service.runtime import load_snapshot

console = Console()
err = Console(stderr=True)


def locate_file_cmd(
    points: Annotated[
        Path, typer.Argument(help="Points: .csv, .parquet/.geoparquet (file or folder), .gpkg")
    ],
    out: Annotated[
        Path,
        typer.Option(help="Output: .csv, .parquet or .gpkg (the input's columns plus the codes)"),
    ],
    lon: Annotated[
        str | None,
        typer.Option(help="Longitude column (CSV, plain Parquet); default lon, lng or x"),
    ] = None,
    lat: Annotated[
        str | None, typer.Option(help="Latitude column; default lat, latitude or y")
    ] = None,
    geometry: Annotated[
        str | None,
        typer.Option(help="Point geometry column (GeoParquet); default the file's primary one"),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="GeoPackage layer to read (default the first) and to write (default located)"
        ),
    ] = None,
    crs: Annotated[
        PointCRS,
        typer.Option(help="CRS of lon/lat points (files in a projected CRS are read in theirs)"),
    ] = PointCRS.wgs84,
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file (e.g. gbk)")] = "utf-8",
    batch_rows: Annotated[
        int,
        typer.Option(
            min=MIN_BATCH_ROWS, max=MAX_BATCH_ROWS, help="Rows per partition (memory per worker)"
        ),
    ] = DEFAULT_BATCH_ROWS,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Local processes (default: one per CPU but the one that reads and writes; 1: "
            "locate in this process)",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Locate on the Dask cluster of this scheduler (tcp://host:port)"),
    ] = None,
) -> None:
    """Locate every point of a file too large for memory, partition by partition, with the
    API's rule (the smallest code on shared edges), and write it out with grid_code,
    community_code, street_code and district_code (empty where no grid covers the point)."""
    options = LocateOptions(
        lon=lon,
        lat=lat,
        geometry=geometry,
        layer=layer,
        crs=crs,
        encoding=encoding,
        batch_rows=batch_rows,
        workers=workers or max((os.cpu_count() or 1) - 1, 1),
        scheduler=scheduler,
    )
    try:
        options.check()
        with err.status("读取网格 loading the grids"):
            snap = load_snapshot(Settings())
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        with Progress(
            *columns, console=err, transient=True, disable=not err.is_terminal
        ) as progress:
            task = progress.add_task("定位 locating", total=None)

            def advance(rows: int, fraction: float | None) -> None:
                progress.update(
                    task,
                    description=f"定位 locating: {rows:,} points",
                    total=1.0 if fraction is not None else None,
                    completed=min(fraction, 1.0) if fraction is not None else 0,
                )

            summary = locate_file(snap, points, out, options, advance)
    except LocateFileError as exc:
        flag = (exc.field or "").replace("_", "-")
        where = "" if not flag else "POINTS: " if flag == "points" else f"--{flag}: "
        err.print(f"[red]{where}{exc.message}[/]")
        raise typer.Exit(2) from None
    share = summary.located / summary.rows if summary.rows else 0.0
    console.print(
        f"located {summary.located:,} of {summary.rows:,} points ({share:.1%}) in "
        f"{summary.partitions:,} partitions, {summary.seconds:.1f} s "
        f"({summary.rows_per_s:,.0f} points/s, {summary.where}); wrote {out}",
        soft_wrap=True,
    )
