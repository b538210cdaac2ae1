"""``geo-service maps build``: every map as static HTML, with a progress bar on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from geo_service.cli.progress import stage_progress
from geo_service.core.settings import Settings
from geo_service.runtime import load_snapshot

maps_app = typer.Typer(
    help="Interactive HTML maps (Folium) with self-hosted assets.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


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
    include_inactive: Annotated[
        bool,
        typer.Option(
            "--include-inactive",
            help="Coverage maps also count suspended and relocated facilities",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes rendering pages (default: one per CPU, up to 8)"),
    ] = None,
) -> None:
    """Write every map (overview, one page per grid, coverage) as static HTML to OUT, with the
    scripts and styles they need in OUT/static/ (no CDN). Coverage maps count active
    facilities only unless --include-inactive."""
    from geo_service.analysis.coverage import CoverageInputError, check_radius
    from geo_service.render.maps.basemaps import Basemap, BasemapUnavailable
    from geo_service.render.maps.build import build_maps, coverage_plan

    settings = Settings()
    try:
        chosen = Basemap(basemap or settings.basemap)
    except ValueError:
        err.print(f"[red]unknown basemap {escape(repr(basemap))}: amap, tianditu or osm[/]")
        raise typer.Exit(2) from None
    try:
        radii = [check_radius(r, settings.max_radius_m) for r in radius or [1000.0]]
    except CoverageInputError as exc:
        err.print(f"[red]--radius: {escape(exc.message)}[/]")
        raise typer.Exit(2) from None
    coverage = coverage_plan(radii)
    with stage_progress(err) as stage:
        with stage("读取数据"):
            snap = load_snapshot(settings)
        codes = None if grids == "all" else [c for c in grids.split(",") if c and grids != "none"]
        total = 1 + len(coverage) + (len(snap.grids) if codes is None else len(codes))
        try:
            with stage(f"地图（{chosen.value}）", total) as advance:
                built = build_maps(
                    snap,
                    out,
                    chosen,
                    settings.tianditu_key,
                    settings.public_base_url,
                    codes,
                    coverage,
                    progress=lambda title: advance(1),
                    active_only=not include_inactive,
                    workers=workers,
                )
        except BasemapUnavailable as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(2) from None
        except KeyError as exc:
            err.print(f"[red]{escape(str(exc.args[0]))}[/]")
            raise typer.Exit(2) from None
    size = sum(b.size for b in built)
    console.print(
        f"已写出 {len(built)} 张地图（{size / 1e6:,.1f} MB）到 {out}/，打开 {out}/index.html",
        markup=False,
        highlight=False,
    )
