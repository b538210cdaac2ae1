"""``geo-service coverage``: how much of the city, and of its people, lies within reach of the
stalls or vendor clusters, and the uncovered pieces a planner can act on (one grid each, most
people first). Progress goes to stderr, so ``--json`` output can be piped."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from geo_service.analysis.coverage import OVERALL_KEYS, CoverageInputError, CoverageResult
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, GapPieces
from geo_service.cli.progress import stage_progress
from geo_service.core.schema import SCHEMAS, LayerName
from geo_service.core.settings import Settings
from geo_service.runtime import load_snapshot

console = Console()
err = Console(stderr=True)

GAP_EXPORTS = (".geojson", ".csv")
GAP_COLUMNS_ZH = {
    "gap_id": "编号",
    "street_name": "街道",
    "grid_name": "网格",
    "area_m2": "面积（m²）",
    "population": "人口",
    "nearest_m": "最近设施（米）",
}


def coverage(
    layer: Annotated[LayerName, typer.Option(help="stalls or vendor_clusters")],
    radius: Annotated[float, typer.Option(help="Radius in metres (300/500/1000: life circles)")],
    by: Annotated[str, typer.Option(help="grid, community, street or district")] = "grid",
    service: Annotated[
        str | None, typer.Option(help="Only stalls offering 修鞋, 修车 or 修锁配钥匙")
    ] = None,
    include_inactive: Annotated[
        bool,
        typer.Option(
            "--include-inactive",
            help="Also count suspended and relocated facilities (default: active ones only)",
        ),
    ] = False,
    min_area: Annotated[
        float,
        typer.Option(
            help="Gap pieces smaller than this many m² are slivers: dropped and counted",
            min=0,
        ),
    ] = DEFAULT_MIN_GAP_M2,
    top: Annotated[int, typer.Option(min=0, help="Gap pieces listed (most people first)")] = 10,
    gaps: Annotated[
        Path | None,
        typer.Option(help="Write every gap piece to this .geojson or .csv file"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write the report: OUT (.html) and its .csv/.geojson files"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the figures and gap pieces as JSON")
    ] = False,
) -> None:
    """Coverage of a layer within a radius, by grid, community, street or district, counting
    active facilities unless --include-inactive; the uncovered pieces (one grid each) with the
    most people first. --gaps exports every piece, --out writes the report."""
    from geo_service.analysis.coverage import check_radius, compute_coverage
    from geo_service.analysis.gaps import check_min_area, gap_pieces

    settings = Settings()
    try:
        check_radius(radius, settings.max_radius_m)
        check_min_area(min_area)
    except CoverageInputError as exc:
        _fail(exc)
    if gaps is not None and gaps.suffix.lower() not in GAP_EXPORTS:
        err.print(f"[red]--gaps: a .geojson or .csv file, got {escape(repr(gaps.name))}[/]")
        raise typer.Exit(2)
    with stage_progress(err) as stage:
        with stage("读取数据"):
            snap = load_snapshot(settings)
        with stage(f"覆盖计算（{len(snap.grids):,} 个网格）", len(snap.grids)) as advance:
            try:
                result = compute_coverage(
                    snap,
                    layer.value,
                    radius,
                    by,
                    service,
                    active_only=not include_inactive,
                    progress=advance,
                )
            except CoverageInputError as exc:
                _fail(exc)
        with stage("未覆盖片区"):
            pieces = gap_pieces(snap, result.grid, min_area)
        if gaps is not None:
            with stage(f"写出 {gaps.name}"):
                write_gaps(pieces, gaps)
        files: list[Path] = []
        if out is not None:
            from geo_service.render.coverage_report import write_report

            with stage("写报告"):
                report = write_report(result, out, settings.dataset_name, pieces=pieces)
            files = list(report.paths())
    if as_json:
        body = summary_json(result, pieces)
        body["files"] = [str(p) for p in ([gaps] if gaps else []) + files]
        sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
        return
    print_summary(result, pieces, top)
    for path in ([gaps] if gaps else []) + files:
        console.print(f"  已写出 {path}", markup=False, highlight=False)


def _fail(exc: CoverageInputError) -> NoReturn:
    field = exc.field or ""
    flag = {"radius_m": "radius", "min_area_m2": "min-area"}.get(field, field.replace("_", "-"))
    err.print(f"[red]--{flag}: {escape(exc.message)}[/]")
    raise typer.Exit(2) from None


def counted_text(result: CoverageResult) -> str:
    title = SCHEMAS[LayerName(result.layer)].title
    what = f"{title}（{result.service}）" if result.service else title
    n = len(result.grid.facilities)
    scope = "在用" if result.grid.active_only else "在用、暂停、迁址"
    return f"{scope}{what} {n} 处"


def print_summary(result: CoverageResult, pieces: GapPieces, top: int) -> None:
    o = result.overall
    console.print(
        f"{counted_text(result)}，{result.radius_m:g} 米覆盖："
        f"面积 {o['area_ratio']:.1%}（{o['covered_m2'] / 1e6:,.2f} / {o['area_m2'] / 1e6:,.2f} km²），"
        f"人口 {o['population_ratio']:.1%}（{o['covered_population']:,.0f} / "
        f"{o['population']:,.0f} 人）"
    )
    frame = pieces.frame
    line = (
        f"未覆盖片区 {len(frame):,} 处，约 {float(frame['population'].sum()):,.0f} 人"
        f"（每处只在一个网格内；另有 {pieces.dropped:,} 处小于 {pieces.min_area_m2:,.0f} m² "
        f"的碎片，共 {pieces.dropped_area_m2:,.0f} m²，未列出）"
    )
    console.print(line)
    if top == 0 or len(frame) == 0:
        return
    cols = [c for c in GAP_COLUMNS_ZH if c in frame.columns]
    table = Table(title=f"人口最多的 {min(top, len(frame))} 处未覆盖片区")
    for col in cols:
        table.add_column(
            GAP_COLUMNS_ZH[col], justify="right" if col.endswith(("m2", "_m", "on")) else "left"
        )
    for row in frame.head(top).to_dict("records"):
        table.add_row(*(_cell(row[col]) for col in cols))
    console.print(table)


def _cell(value: Any) -> Text:
    """A table cell as plain text (names from the data are never read as rich markup)."""
    if isinstance(value, float):
        return Text("—" if math.isnan(value) else f"{value:,.0f}")
    return Text(str(value))


def piece_rows(pieces: GapPieces) -> list[dict[str, Any]]:
    """The pieces without geometry, figures rounded to 0.1 (m², people, m)."""
    frame = pieces.frame.drop(columns="geometry")
    rows = frame.to_dict("records")
    for row in rows:
        for key in ("area_m2", "population", "nearest_m"):
            v = float(row[key])
            row[key] = None if math.isnan(v) else round(v, 1)
    return rows


def summary_json(result: CoverageResult, pieces: GapPieces) -> dict[str, Any]:
    units = result.units.drop(columns="geometry")
    return {
        "layer": result.layer,
        "radius_m": result.radius_m,
        "by": result.by,
        "service": result.service,
        "include_inactive": not result.grid.active_only,
        "facilities": len(result.grid.facilities),
        "crs": f"EPSG:{result.snapshot.projection.epsg}",
        "overall": {k: _round(k, result.overall[k]) for k in OVERALL_KEYS},
        "units": [
            {"code": r["code"], "name": r["name"], **{k: _round(k, r[k]) for k in OVERALL_KEYS}}
            for r in units.to_dict("records")
        ],
        "gaps": {
            "min_area_m2": pieces.min_area_m2,
            "dropped": pieces.dropped,
            "dropped_area_m2": round(pieces.dropped_area_m2, 1),
            "dropped_population": round(pieces.dropped_population, 1),
            "pieces": piece_rows(pieces),
        },
    }


def _round(key: str, value: Any) -> float:
    return round(float(value), 6 if key.endswith("ratio") else 1)


def write_gaps(pieces: GapPieces, path: Path) -> None:
    """Every piece to GeoJSON (WGS84, 7 decimals ≈ 1 cm) or CSV (no geometry), figures
    rounded to 0.1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pieces.frame.round({"area_m2": 1, "population": 1, "nearest_m": 1})
    if path.suffix.lower() == ".csv":
        frame.drop(columns="geometry").to_csv(path, index=False, encoding="utf-8-sig")
    else:
        frame.to_file(path, driver="GeoJSON", engine="pyogrio", COORDINATE_PRECISION=7)
