"""Command line: serve, locate, import, validate, synth (and more from other modules)."""

from __future__ import annotations

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
from geo_service.cli.coverage import coverage
from geo_service.cli.data import import_checked
from geo_service.cli.data import register as register_data_commands
from geo_service.cli.export import export_cmd
from geo_service.cli.locatefile import locate_file_cmd
from geo_service.cli.maps import maps_app
from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.principal import Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.domain.auth import new_key, revoked
from geo_service.domain.validation import validate_file
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
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies trusted to name the client in X-Forwarded-For (addresses or networks, "
            "comma-separated; default GEO_SERVICE_FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)"
        ),
    ] = None,
) -> None:
    """Run the HTTP service on the configured dataset: uvloop and httptools, one worker per
    CPU, no per-request access log unless asked (a reverse proxy usually keeps that log)."""
    import uvicorn

    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or os.cpu_count() or 1
    # Behind nginx the client is the proxy's X-Forwarded-For (rate limit, logs), but only from
    # these addresses. uvicorn takes it as an argument, gunicorn's workers from the environment.
    trusted = forwarded_allow_ips or settings.forwarded_allow_ips
    os.environ["FORWARDED_ALLOW_IPS"] = trusted
    console.print(
        f"geo_service on [bold]http://{host}:{port}[/] "
        f"(docs: http://{host}:{port}/docs, data: {backend_label(settings)}, "
        f"{workers} worker{'s' if workers > 1 else ''})"
    )
    if workers > 1:  # load once, then fork: workers start ready and share the snapshot
        from geo_service.cli.prefork import serve_preforked

        serve_preforked(settings, host, port, workers, access_log, serve_log_config())
        return
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
        proxy_headers=True,
        forwarded_allow_ips=trusted,
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


register_data_commands(app)  # validate, import, qr (cli/data.py)


keys_app = typer.Typer(
    help="API keys for officers and admins (stored hashed).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(cases_app, name="cases")
app.command(name="export")(export_cmd)
app.command(name="locate-file")(locate_file_cmd)


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
            import_checked(checked, path, force, settings, f"db load {path}")
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


app.command()(coverage)
app.add_typer(maps_app, name="maps")


if __name__ == "__main__":
    app()
