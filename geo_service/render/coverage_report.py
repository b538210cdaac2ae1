"""A planner's coverage report, in Chinese, as files beside ``out``:

- ``report.html``: title, explanations, the overall figures, an interactive map (the service's
  coverage map in its own style: units coloured by coverage, covered area, gap pieces,
  facilities, Amap tiles with overlays shifted to GCJ-02) embedded as a self-contained page,
  coverage bars by street (or district) with names, the gap pieces and every unit; a print
  stylesheet swaps the interactive map for a static one;
- ``report.pdf``: the same tables and the static map, A4;
- ``report-map.html``: the interactive map alone, full screen, one file;
- ``report.csv`` / ``report.geojson``: figures per unit; ``report-gaps.csv`` /
  ``report-gaps.geojson``: every gap piece (``geo_service.analysis.gaps``).

Every figure a person reads or a file holds is rounded (``coverage_tables``); nothing but the
basemap tiles is fetched from anywhere, so the report opens offline and on an intranet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pandas as pd
import pyogrio

from geo_service.analysis.coverage import CoverageResult, aggregate, facility_indices
from geo_service.analysis.gaps import GapPieces, gap_pieces
from geo_service.core.snapshot import Snapshot
from geo_service.render import coverage_tables as tables
from geo_service.render.coverage_pdf import pdf_font, write_pdf
from geo_service.render.coverage_tables import ReportContent
from geo_service.render.maps.basemaps import Basemap
from geo_service.render.maps.coverage import coverage_map
from geo_service.render.maps.page import PageOptions
from geo_service.render.maps.units import LEVEL_TITLES
from geo_service.render.standalone import standalone_html
from geo_service.render.static_map import coverage_drawing, legend_drawing, to_svg

MAX_BARS = 40
TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
UNITS_GEOJSON_DECIMALS = 7  # the data's own precision: shared grid edges stay shared
GAPS_GEOJSON_DECIMALS = 6  # about 0.1 m

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pdf: Path
    map: Path
    csv: Path
    geojson: Path
    gaps: Path  # GeoJSON of the gap pieces
    gaps_csv: Path
    gap_pieces: int = 0  # how many gap pieces were listed
    gaps_dropped: int = 0  # slivers below the threshold, counted but not listed

    def paths(self) -> tuple[Path, ...]:
        return (self.html, self.pdf, self.map, self.csv, self.geojson, self.gaps_csv, self.gaps)


def report_paths(out: Path) -> ReportFiles:
    """``out`` may name the HTML file or a stem; the other files sit beside it."""
    known = (".html", ".csv", ".geojson", ".pdf")
    stem = out.with_suffix("") if out.suffix.lower() in known else out
    return ReportFiles(
        html=stem.with_suffix(".html"),
        pdf=stem.with_suffix(".pdf"),
        map=stem.parent / f"{stem.name}-map.html",
        csv=stem.with_suffix(".csv"),
        geojson=stem.with_suffix(".geojson"),
        gaps=stem.parent / f"{stem.name}-gaps.geojson",
        gaps_csv=stem.parent / f"{stem.name}-gaps.csv",
    )


def chart_level(snapshot: Snapshot) -> str:
    """Streets when there are few enough to read as bars, else districts."""
    n_streets = snapshot.grids.frame["street_code"].nunique()
    return "street" if n_streets <= MAX_BARS else "district"


def report_content(
    result: CoverageResult, pieces: GapPieces, dataset: str, made: datetime
) -> ReportContent:
    """Everything the HTML and the PDF say, once."""
    snap = result.snapshot
    level = chart_level(snap)
    by_level = aggregate(snap, result.grid.covered_m2, level)
    everyone = len(facility_indices(snap, result.layer, result.service, active_only=False))
    title = f"{tables.subject(result)} {result.radius_m:,.0f} 米覆盖分析报告"
    subtitle = (
        f"数据集 {dataset}（版本 {snap.version}）；按{LEVEL_TITLES[result.by]}统计；"
        f"生成于 {made:%Y-%m-%d %H:%M}（北京时间）"
    )
    return ReportContent(
        title=title,
        subtitle=subtitle,
        explanations=tables.explanations(result, pieces, snap.projection.epsg),
        summary=tables.summary_table(result, pieces, everyone),
        bars_title=f"各{LEVEL_TITLES[level]}覆盖率",
        bars=tables.bars_of(by_level),
        gaps=tables.gap_table(pieces),
        units=tables.unit_table(result.units, result.by),
    )


def write_report(
    result: CoverageResult,
    out: Path,
    dataset: str,
    *,
    basemap: Basemap = Basemap.amap,
    tianditu_key: str | None = None,
    pieces: GapPieces | None = None,
    made: datetime | None = None,
) -> ReportFiles:
    """Write the report's files beside ``out`` (see the module docstring); returns their paths.
    ``pieces``: the gap pieces if the caller has them (default: ``gap_pieces`` with its
    default sliver threshold)."""
    files = report_paths(out)
    files.html.parent.mkdir(parents=True, exist_ok=True)
    snap = result.snapshot
    if pieces is None:
        pieces = gap_pieces(snap, result.grid)
    made = made or datetime.now(LOCAL_TZ)

    units = tables.unit_file_frame(result.units)
    gaps = tables.gap_file_frame(pieces.frame)
    _write_csv(units.drop(columns="geometry"), files.csv)
    _write_csv(gaps.drop(columns="geometry"), files.gaps_csv)
    _write_geojson(units, files.geojson, UNITS_GEOJSON_DECIMALS)
    _write_geojson(gaps, files.gaps, GAPS_GEOJSON_DECIMALS)

    content = report_content(result, pieces, dataset, made)
    options = PageOptions(basemap=basemap, tianditu_key=tianditu_key)
    m = coverage_map(
        snap,
        options,
        result.layer,
        result.radius_m,
        service=result.service,
        active_only=result.grid.active_only,
    )
    map_html = standalone_html(m, options)
    _write_text(files.map, map_html)

    font = pdf_font()
    drawing = coverage_drawing(snap, result, pieces, font)
    legend = legend_drawing(result.radius_m, font)
    write_pdf(content, files.pdf, drawing, legend, font)

    page = _ENV.get_template("coverage_report.html").render(
        c=content,
        pct=tables.pct,
        map_html=map_html,
        static_map=to_svg(drawing),
        static_legend=to_svg(legend),
        files={
            k: getattr(files, k).name for k in ("pdf", "map", "csv", "geojson", "gaps", "gaps_csv")
        },
        level_title=LEVEL_TITLES[result.by],
        unit_columns=[(k, tables.FILE_COLUMN_TITLES[k]) for k in tables.UNIT_FILE_COLUMNS],
        gap_columns=[(k, tables.FILE_COLUMN_TITLES[k]) for k in tables.GAP_FILE_COLUMNS],
    )
    _write_text(files.html, page)
    return ReportFiles(
        **{
            k: getattr(files, k)
            for k in ("html", "pdf", "map", "csv", "geojson", "gaps", "gaps_csv")
        },
        gap_pieces=len(pieces.frame),
        gaps_dropped=pieces.dropped,
    )


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """UTF-8 with a byte-order mark, so Excel opens the Chinese names right."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False, encoding="utf-8-sig")
    tmp.replace(path)


def _write_geojson(frame: pd.DataFrame, path: Path, decimals: int) -> None:
    tmp = path.with_suffix(".tmp")
    pyogrio.write_dataframe(frame, tmp, driver="GeoJSON", COORDINATE_PRECISION=decimals)
    tmp.replace(path)
