"""Data-handling commands: ``validate`` and ``import`` a layer file, print the stalls' ``qr`` signs.

``validate`` and ``import`` print one report (``domain.validation``): a table in row order with
errors (错误) and warnings (警告) told apart and counted, or the same as JSON with ``--json``.
Exit codes: 0 no errors (warnings allowed), 1 errors, 2 the file cannot be read at all.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from geo_service.core.layers import LayerFileError
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import SCHEMAS, LayerName
from geo_service.core.settings import Settings
from geo_service.domain.editing import replace_layer
from geo_service.domain.validation import KINDS, LEVELS, FileValidation, validate_file
from geo_service.runtime import backend_label, load_snapshot, open_backend

TABLE_LIMIT = 200  # rows the table shows by default; --json always has them all
_LEVEL_STYLE = {"error": "bold red", "warning": "yellow"}


def _consoles() -> tuple[Console, Console]:
    """Made per command, so the width and colour follow the terminal (or test) of that run.
    Soft wrap: a long path is never broken inside (people copy it)."""
    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


def report_table(checked: FileValidation, limit: int = TABLE_LIMIT) -> Table | None:
    """The findings as a table: 行号, 编码, 级别, 类别, 问题; None when there are none."""
    if not checked.findings:
        return None
    table = Table(title=f"{SCHEMAS[checked.layer].title}文件检查", title_justify="left")
    table.add_column("行号", justify="right", no_wrap=True)
    table.add_column("编码", no_wrap=True)
    table.add_column("级别", no_wrap=True)
    table.add_column("类别", no_wrap=True)
    table.add_column("问题", overflow="fold")
    for f in checked.findings[:limit]:
        table.add_row(
            "—" if f.row is None else str(f.row),
            f.code or "—",
            Text(LEVELS[f.level], style=_LEVEL_STYLE[f.level]),
            KINDS[f.kind],
            f.message,
        )
    return table


def summary_line(checked: FileValidation, file: Path) -> Text:
    """``文件：读取 n 行，有效 m 行；错误 e 个，警告 w 个 → 通过/未通过``."""
    load = checked.load
    text = Text(
        f"{file}：读取 {load.rows_read} 行，有效 {load.rows_loaded} 行；"
        f"错误 {checked.errors} 个，警告 {checked.warnings} 个 → "
    )
    if checked.errors:
        text.append("未通过", style="bold red")
    elif checked.warnings:
        text.append("通过（请查看警告）", style="yellow")
    else:
        text.append("通过", style="bold green")
    return text


def print_report(checked: FileValidation, file: Path, console: Console, limit: int) -> None:
    table = report_table(checked, limit)
    if table is not None:
        console.print(table)
        hidden = len(checked.findings) - limit
        if hidden > 0:
            console.print(f"另有 {hidden} 条未列出（--limit 调整，或 --json 查看全部）")
    console.print(summary_line(checked, file))


def check_file(file: Path, layer: LayerName, crs: str | None, err: Console) -> FileValidation:
    """Validate a file, or exit 2 with the reason when it cannot be read at all."""
    try:
        with err.status(f"正在检查 {file} …"):
            return validate_file(file, layer, crs)
    except LayerFileError as exc:
        err.print(Text(f"无法读取 / cannot read: {exc}", style="red"))
        raise typer.Exit(2) from None


def validate_cmd(
    file: Annotated[Path, typer.Argument(help="Layer file (GeoJSON, GeoPackage, Shapefile, CSV)")],
    layer: Annotated[LayerName, typer.Option(help="Which layer the file holds")] = LayerName.grids,
    crs: Annotated[str | None, typer.Option(help="CRS of the file if it does not say")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full report as JSON (schema: README)")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="Most table rows to print")] = TABLE_LIMIT,
) -> None:
    """Check a layer file: rows, geometry, duplicate codes, grids without an officer, and for
    grids the topology (overlaps and gaps with their area, codes that do not nest, grids
    outside their community). Exit 0 without errors (warnings allowed), 1 with errors."""
    console, err = _consoles()
    checked = check_file(file, layer, crs, err)
    if as_json:
        sys.stdout.write(json.dumps(checked.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print_report(checked, file, console, limit)
    raise typer.Exit(1 if checked.errors else 0)


def _cli_actor() -> Principal:
    return Principal(Role.admin, f"cli:{getpass.getuser()}")


def import_checked(
    checked: FileValidation, file: Path, force: bool, settings: Settings, source: str
) -> None:
    """Print the report, then store the checked layer through the configured backend, or exit
    1 on errors (unless ``force``: then the valid rows are stored)."""
    console, err = _consoles()
    print_report(checked, file, console, TABLE_LIMIT)
    if checked.errors and not force:
        err.print(
            Text(
                f"有 {checked.errors} 个错误，未导入任何数据（修正后重试，或用 --force 只导入 "
                f"{checked.load.rows_loaded} 行有效数据）/ nothing imported",
                style="red",
            )
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
    """Validate a file (the same report as `validate`) and replace a layer with it, atomically
    and audited (embedded files, or PostGIS when GEO_SERVICE_DATABASE_URL is set). A killed
    import leaves the old layer."""
    settings = Settings()
    _, err = _consoles()
    checked = check_file(file, layer, crs, err)
    import_checked(checked, file, force, settings, f"import {file.name}")


def qr_cmd(
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("qr"),
    base_url: Annotated[
        str | None,
        typer.Option(help="Base URL printed in the codes (default: GEO_SERVICE_PUBLIC_BASE_URL)"),
    ] = None,
    pdf: Annotated[
        bool, typer.Option(help="Also write sheet.pdf (needs a CJK font, see GEO_SERVICE_CJK_FONT)")
    ] = True,
) -> None:
    """Write every stall's QR code (svg/CODE.svg, png/CODE.png) and a printable A4 sheet with
    the electronic number and name under each code (sheet.html, sheet.pdf) for the sign-maker.
    Exits 1 when any requested output is not written."""
    from geo_service.render.qr import write_all

    console, err = _consoles()
    settings = Settings()
    base = base_url or settings.public_base_url
    snap = load_snapshot(settings)
    if base.startswith(("http://127.", "http://localhost")):
        err.print(
            f"[yellow]the codes will point at {base}, which phones cannot reach: set "
            "GEO_SERVICE_PUBLIC_BASE_URL or --base-url to the public address[/]"
        )
    try:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task(f"{len(snap.stalls)} stall codes", total=len(snap.stalls))
            result = write_all(
                snap.stalls, base, out, pdf=pdf, progress=lambda n: progress.advance(task, n)
            )
    except OSError as exc:
        err.print(Text(f"未写出 / not written: {exc.filename or out}: {exc.strerror}", style="red"))
        raise typer.Exit(1) from None
    for note in result.notes:
        err.print(Text(note, style="yellow"))
    sheets = ", ".join(str(p) for p in (result.sheet_html, result.sheet_pdf) if p)
    console.print(f"wrote {len(result.codes)} codes to {out}/svg and {out}/png; sheet: {sheets}")
    if len(result.codes) != len(snap.stalls):
        result.failed.append(f"{len(snap.stalls) - len(result.codes)} stall codes")
    for failed in result.failed:
        err.print(Text(f"未写出 / not written: {failed}", style="red"))
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``geo-service`` app."""
    app.command(name="validate")(validate_cmd)
    app.command(name="import")(import_cmd)
    app.command(name="qr")(qr_cmd)
