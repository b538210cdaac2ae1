"""Command line: serve, locate, import, validate, synth (and more from other modules)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from geo_service.cli.cases import cases_app
from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.layers import LayerFileError, Problem
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.domain.auth import new_key, revoked
from geo_service.domain.editing import replace_layer
from geo_service.domain.validation import FileValidation, validate_file
from geo_service.runtime import backend_label, load_snapshot, open_backend, open_case_store
from geo_service.storage.audit import AuditQuery, to_csv, to_jsonl
from geo_service.storage.dataset import layer_path

app = typer.Typer(
    help="geo_service: grids, repair stalls and vendor clusters for city management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: one per CPU)")
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (a plain one-line format; costs throughput)")
    ] = False,
) -> None:
    """Run the HTTP service on the configured dataset: uvloop and httptools, one worker per
    CPU, no per-request access log unless asked (a reverse proxy usually keeps that log)."""
    import uvicorn

    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or os.cpu_count() or 1
    console.print(
        f"geo_service on [bold]http://{host}:{port}[/] "
        f"(docs: http://{host}:{port}/docs, data: {backend_label(settings)}, "
        f"{workers} worker{'s' if workers > 1 else ''})"
    )
    uvicorn.run(
        "geo_service.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_config=serve_log_config(),
        log_level="info",
    )


def serve_log_config() -> dict[str, object]:
    """uvicorn's loggers with plain formatters (its default access formatter colours and looks
    up status phrases on every request)."""
    plain = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    access = {"format": "%(asctime)s %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": plain, "access": access},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "geo_service": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


@app.command()
def locate(
    lon: Annotated[float, typer.Argument(help="Longitude")],
    lat: Annotated[float, typer.Argument(help="Latitude")],
    crs: Annotated[PointCRS, typer.Option(help="CRS of the point")] = PointCRS.wgs84,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Which grid contains a point, and who is responsible for it."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        err.print("[red]lon must be within ±180 and lat within ±90[/]")
        raise typer.Exit(2)
    settings = Settings()
    snap = load_snapshot(settings)
    x, y = to_wgs84(lon, lat, crs)
    i = int(snap.grids.index.locate(x, y)[0])
    distance_m = None
    if i >= 0:
        grid = snap.grids.properties[i]
        result = {"grid": grid, "nearest": None}
    else:
        j, d = snap.grids.index.nearest(x, y)
        grid = snap.grids.properties[int(j[0])]
        distance_m = round(float(d[0]), 1)
        result = {"grid": None, "nearest": {"grid": grid, "distance_m": distance_m}}
    if as_json:
        console.print_json(json.dumps(result, ensure_ascii=False))
        return
    if i < 0:
        console.print(
            f"No grid contains this point; nearest is {grid['code']} "
            f"{grid['name']}, {distance_m} m away."
        )
        raise typer.Exit(1)
    table = Table(show_header=False)
    table.add_row("网格 grid", f"{grid['code']} {grid['name']}")
    table.add_row("社区 community", f"{grid['community']['code']} {grid['community']['name']}")
    table.add_row("街道 street", f"{grid['street']['code']} {grid['street']['name']}")
    table.add_row("区 district", f"{grid['district']['code']} {grid['district']['name']}")
    table.add_row("网格员 officer", f"{grid['officer']['name']} {grid['officer']['phone']}")
    table.add_row("面积 area", f"{grid['area_m2']:,.0f} m²")
    table.add_row("人口 population", str(grid["population"]))
    console.print(table)


def _print_problems(report_problems: list[Problem], limit: int = 50) -> None:
    for p in report_problems[:limit]:
        colour = "yellow" if p.action != "rejected" else "red"
        err.print(f"[{colour}]{p}[/]")
    if len(report_problems) > limit:
        err.print(f"... and {len(report_problems) - limit} more (use --json for all)")


def _check_file(file: Path, layer: LayerName, crs: str | None) -> FileValidation:
    """Validate a file, or exit 2 with the reason when it cannot be read at all."""
    try:
        with console.status("checking..."):
            return validate_file(file, layer, crs)
    except LayerFileError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


@app.command(name="validate")
def validate_cmd(
    file: Annotated[Path, typer.Argument(help="Grid file (GeoJSON, GeoPackage, Shapefile, CSV)")],
    layer: Annotated[LayerName, typer.Option(help="Which layer the file holds")] = LayerName.grids,
    crs: Annotated[str | None, typer.Option(help="CRS of the file if it does not say")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON")] = False,
) -> None:
    """Check a layer file: rows, geometry, duplicates, and for grids the topology
    (overlaps with their area, gaps, codes that do not nest, grids outside their community).
    Exits 1 when there are errors."""
    checked = _check_file(file, layer, crs)
    load, body, errors = checked.load, checked.to_dict(), checked.errors
    if as_json:
        sys.stdout.write(json.dumps(body, ensure_ascii=False, indent=2) + "\n")
    else:
        console.print(f"{file}: {load.rows_read} rows read, {load.rows_loaded} valid")
        _print_problems(load.problems)
        if layer is LayerName.grids:
            for key in ("overlaps", "gaps", "hierarchy", "detached"):
                items = body[key]
                colour = "red" if items else "green"
                console.print(f"[{colour}]{key}: {len(items)}[/]")
                for item in items[:20]:
                    console.print(f"  {item}")
        console.print("[green]OK[/]" if errors == 0 else f"[red]{errors} errors[/]")
    raise typer.Exit(1 if errors else 0)


def _cli_actor() -> Principal:
    return Principal(Role.admin, f"cli:{getpass.getuser()}")


def _import_checked(checked: FileValidation, force: bool, settings: Settings, source: str) -> None:
    """Store a checked layer file through the configured backend, or exit 1 on errors."""
    _print_problems(checked.load.problems)
    if checked.topology is not None:
        for key in ("overlaps", "gaps", "hierarchy", "detached"):
            for item in getattr(checked.topology, key)[:20]:
                err.print(f"[red]{key}: {item}[/]")
    if checked.errors and not force:
        err.print(
            f"[red]{checked.errors} errors: nothing imported (fix them, or --force to import "
            f"the {checked.load.rows_loaded} valid rows)[/]"
        )
        raise typer.Exit(1)
    backend = open_backend(settings)
    try:
        backend.migrate()
        # Scripts and tests watch for this line: from here on the old data is being replaced.
        console.print(f"writing {checked.load.rows_loaded} rows of {checked.layer.value}")
        result = replace_layer(backend, checked, _cli_actor(), source)
    finally:
        backend.close()
    console.print(
        f"[green]imported {checked.load.rows_loaded} of {checked.load.rows_read} rows into "
        f"{checked.layer.value} ({backend_label(settings)}): {result.summary}[/]"
    )


@app.command(name="import")
def import_cmd(
    layer: Annotated[LayerName, typer.Argument(help="grids, stalls or vendor_clusters")],
    file: Annotated[Path, typer.Argument(help="Any file pyogrio reads, or CSV with lon/lat")],
    crs: Annotated[
        str | None, typer.Option(help="wgs84, cgcs2000, gcj02, bd09 or EPSG:xxxx")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Import the valid rows even if some are rejected")
    ] = False,
) -> None:
    """Validate a file and replace a layer with it, atomically and audited (embedded files, or
    PostGIS when GEO_SERVICE_DATABASE_URL is set). A killed import leaves the old layer."""
    settings = Settings()
    checked = _check_file(file, layer, crs)
    _import_checked(checked, force, settings, f"import {file.name}")


keys_app = typer.Typer(
    help="API keys for officers and admins (stored hashed).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(cases_app, name="cases")


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="Who holds the key (shown in the audit log)")],
    role: Annotated[
        Role, typer.Option(help="officer (grid), community, street (case handling) or admin")
    ] = Role.officer,
    grids: Annotated[
        str | None,
        typer.Option(
            help="Officer: comma-separated grid codes they may edit; community / street: the "
            "community or street codes whose cases they handle"
        ),
    ] = None,
    officer: Annotated[
        str | None,
        typer.Option(help="Officer: edit every grid whose officer_name is this (follows changes)"),
    ] = None,
) -> None:
    """Make a key and print it once; only its salted hash is stored."""
    codes = [c.strip() for c in (grids or "").split(",") if c.strip()]
    try:
        secret, rec = new_key(name, role, codes, officer)
    except ValueError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    backend = open_backend(Settings())
    try:
        backend.migrate()
        backend.put_key(rec)
    finally:
        backend.close()
    err.print(f"key {rec.key_id} for {name} ({role.value}); it is shown only now:")
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
def keys_list() -> None:
    """The keys (never their secrets)."""
    backend = open_backend(Settings())
    try:
        keys = backend.list_keys()
    finally:
        backend.close()
    table = Table("key_id", "name", "role", "grids / officer", "created", "revoked")
    for k in keys:
        scope = ", ".join(k.grids) + (f" officer={k.officer}" if k.officer else "")
        table.add_row(k.key_id, k.name, k.role.value, scope, k.created, k.revoked or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (keys list)")]) -> None:
    """Revoke a key: it stops working at once, in every instance."""
    backend = open_backend(Settings())
    try:
        rec = backend.get_key(key_id)
        if rec is None:
            err.print(f"[red]no key {key_id}[/]")
            raise typer.Exit(1)
        backend.put_key(revoked(rec))
    finally:
        backend.close()
    console.print(f"revoked {key_id} ({rec.name})")


db_app = typer.Typer(help="The PostGIS backend (GEO_SERVICE_DATABASE_URL).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _postgis_settings() -> Settings:
    settings = Settings()
    if not settings.database_url:
        err.print("[red]set GEO_SERVICE_DATABASE_URL (postgresql://user:pass@host/db)[/]")
        raise typer.Exit(2)
    return settings


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the tables, GiST indexes, audit log, key and case tables."""
    backend = open_backend(_postgis_settings())
    try:
        backend.migrate()
        open_case_store(backend).migrate()
    finally:
        backend.close()
    console.print("[green]schema up to date[/]")


@db_app.command("load")
def db_load(
    folder: Annotated[
        Path, typer.Argument(help="Folder with grids/stalls/vendor_clusters.geojson")
    ],
    force: Annotated[
        bool, typer.Option(help="Load the valid rows even if some are rejected")
    ] = False,
) -> None:
    """Load a dataset folder (like data/) into PostGIS, layer by layer, validated and audited."""
    settings = _postgis_settings()
    present = [layer for layer in LayerName if layer_path(folder, layer).exists()]
    if LayerName.grids not in present:
        err.print(f"[red]{layer_path(folder, LayerName.grids)}: the grids layer is required[/]")
        raise typer.Exit(2)
    with Progress(console=console) as progress:
        task = progress.add_task("loading", total=len(present))
        for layer in present:
            path = layer_path(folder, layer)
            checked = validate_file(path, layer)
            _import_checked(checked, force, settings, f"db load {path}")
            progress.advance(task)


@app.command()
def audit(
    layer: Annotated[
        str | None, typer.Option(help="Only this layer: grids, stalls, vendor_clusters or cases")
    ] = None,
    code: Annotated[str | None, typer.Option(help="Only this feature (or case number)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
) -> None:
    """Export the audit log (oldest first): layer edits and every step of every case."""
    if fmt not in ("jsonl", "csv"):
        err.print("[red]--format is jsonl or csv[/]")
        raise typer.Exit(2)
    if layer is not None and layer not in {*LayerName, "cases"}:
        err.print("[red]--layer is grids, stalls, vendor_clusters or cases[/]")
        raise typer.Exit(2)
    backend = open_backend(Settings())
    try:
        entries, _ = backend.audit(
            AuditQuery(layer=layer, code=code, limit=None, newest_first=False)
        )
    finally:
        backend.close()
    data = to_jsonl(entries) if fmt == "jsonl" else to_csv(entries).encode()
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        err.print(f"wrote {len(entries)} entries to {out}")


@app.command()
def synth(
    grids: Annotated[int, typer.Option("--grids", min=1, max=1_000_000, help="Number of grids")],
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("bench/out/city"),
    stalls: Annotated[int | None, typer.Option(help="Stalls (default grids/100)")] = None,
    clusters: Annotated[
        int | None, typer.Option(help="Vendor clusters (default grids/100)")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a synthetic city of N grids plus stalls and vendor clusters, for benchmarks."""
    from geo_service.storage.synth import write_city

    n_stalls = stalls if stalls is not None else max(grids // 100, 10)
    n_clusters = clusters if clusters is not None else max(grids // 100, 10)
    with Progress(console=console) as progress:
        task = progress.add_task(f"synthesising {grids:,} grids", total=5)
        counts = write_city(
            out, grids, n_stalls, n_clusters, seed, progress=lambda n: progress.advance(task, n)
        )
    console.print(f"wrote {counts} to {out} (serve it with GEO_SERVICE_DATA_DIR={out})")


@app.command(name="qr")
def qr_cmd(
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("qr"),
    base_url: Annotated[
        str | None,
        typer.Option(help="Base URL printed in the codes (default: GEO_SERVICE_PUBLIC_BASE_URL)"),
    ] = None,
    pdf: Annotated[bool, typer.Option(help="Also write sheet.pdf (needs a CJK font)")] = True,
) -> None:
    """Write every stall's QR code (svg/CODE.svg, png/CODE.png) and a printable A4 sheet with
    the electronic number and name under each code (sheet.html, sheet.pdf) for the sign-maker."""
    from geo_service.render.qr import write_all

    settings = Settings()
    base = base_url or settings.public_base_url
    snap = load_snapshot(settings)
    if base.startswith(("http://127.", "http://localhost")):
        err.print(
            f"[yellow]the codes will point at {base}, which phones cannot reach: set "
            "GEO_SERVICE_PUBLIC_BASE_URL or --base-url to the public address[/]"
        )
    with Progress(console=console) as progress:
        task = progress.add_task(f"{len(snap.stalls)} stall codes", total=len(snap.stalls))
        result = write_all(
            snap.stalls, base, out, pdf=pdf, progress=lambda n: progress.advance(task, n)
        )
    for note in result.notes:
        err.print(f"[yellow]{note}[/]")
    sheets = ", ".join(str(p) for p in (result.sheet_html, result.sheet_pdf) if p)
    console.print(f"wrote {len(result.codes)} codes to {out}/svg and {out}/png; sheet: {sheets}")


@app.command()
def coverage(
    layer: Annotated[LayerName, typer.Option(help="stalls or vendor_clusters")],
    radius: Annotated[float, typer.Option(help="Radius in metres (300/500/1000: life circles)")],
    by: Annotated[str, typer.Option(help="grid, community, street or district")] = "grid",
    service: Annotated[
        str | None, typer.Option(help="Only stalls offering 修鞋, 修车 or 修锁配钥匙")
    ] = None,
    active_only: Annotated[bool, typer.Option(help="Only facilities with status active")] = False,
    out: Annotated[
        Path, typer.Option(help="Report path: writes .html, .csv, .geojson and -gaps.geojson")
    ] = Path("coverage.html"),
) -> None:
    """Coverage of a layer within a radius by grid, community, street or district: CSV and
    GeoJSON of the units, GeoJSON of the gaps, and an HTML report with a map and a bar chart."""
    from geo_service.analysis.coverage import CoverageInputError, check_radius, compute_coverage
    from geo_service.render.coverage_report import write_report

    settings = Settings()
    try:
        check_radius(radius, settings.max_radius_m)
    except CoverageInputError as exc:
        err.print(f"[red]--radius: {exc.message}[/]")
        raise typer.Exit(2) from None
    snap = load_snapshot(settings)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(f"coverage of {len(snap.grids):,} grids", total=len(snap.grids))
        try:
            result = compute_coverage(
                snap,
                layer.value,
                radius,
                by,
                service,
                active_only=active_only,
                progress=lambda n: progress.advance(task, n),
            )
        except CoverageInputError as exc:
            flag = (exc.field or "").replace("_m", "").replace("_", "-")
            err.print(f"[red]--{flag}: {exc.message}[/]")
            raise typer.Exit(2) from None
        progress.add_task("gaps and report", total=None)
        files = write_report(result, out, settings.dataset_name)
    o = result.overall
    console.print(
        f"{layer.value} within {radius:g} m: area {o['area_ratio']:.1%} "
        f"({o['covered_m2'] / 1e6:,.2f} of {o['area_m2'] / 1e6:,.2f} km²), population "
        f"{o['population_ratio']:.1%} ({o['covered_population']:,.0f} of {o['population']:,.0f}); "
        f"{len(result.gaps)} gaps"
    )
    for path in (files.html, files.csv, files.geojson, files.gaps):
        console.print(f"  wrote {path}")


maps_app = typer.Typer(
    help="Interactive HTML maps (Folium) with self-hosted assets.", no_args_is_help=True
)
app.add_typer(maps_app, name="maps")


@maps_app.command("build")
def maps_build(
    basemap: Annotated[
        str | None,
        typer.Option(help="amap (GCJ-02, default), tianditu (needs a key) or osm (WGS84)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("maps"),
    grids: Annotated[
        str, typer.Option(help="Grid pages: all, none, or comma-separated grid codes")
    ] = "all",
    radius: Annotated[
        list[float] | None, typer.Option(help="Coverage radius in metres (repeatable)")
    ] = None,
) -> None:
    """Write every map (overview, one page per grid, coverage) as static HTML to OUT, with the
    scripts and styles they need in OUT/static/ (no CDN)."""
    from geo_service.render.maps.basemaps import Basemap, BasemapUnavailable
    from geo_service.render.maps.build import build_maps, coverage_plan

    settings = Settings()
    try:
        chosen = Basemap(basemap or settings.basemap)
    except ValueError:
        err.print(f"[red]unknown basemap {basemap!r}: amap, tianditu or osm[/]")
        raise typer.Exit(2) from None
    snap = load_snapshot(settings)
    codes = None if grids == "all" else [c for c in grids.split(",") if c and grids != "none"]
    coverage = coverage_plan(radius or [1000.0])
    total = 1 + len(coverage) + (len(snap.grids) if codes is None else len(codes))
    with Progress(console=console) as progress:
        task = progress.add_task(f"maps ({chosen.value})", total=total)
        try:
            built = build_maps(
                snap,
                out,
                chosen,
                settings.tianditu_key,
                settings.public_base_url,
                codes,
                coverage,
                progress=lambda title: progress.advance(task),
            )
        except BasemapUnavailable as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        except KeyError as exc:
            err.print(f"[red]{exc.args[0]}[/]")
            raise typer.Exit(2) from None
    size = sum(b.size for b in built)
    console.print(
        f"wrote {len(built)} maps ({size / 1e6:,.1f} MB) to {out}/ (open {out}/index.html)"
    )


if __name__ == "__main__":
    app()
