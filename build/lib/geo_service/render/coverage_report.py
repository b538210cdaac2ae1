"""A planner's coverage report: CSV and GeoJSON of the units, GeoJSON of the gaps, and one
self-contained HTML page (a map of covered areas and gaps, a bar chart of coverage by street or
district, and the tables). Figures are drawn with matplotlib into the page itself (PNG and SVG
as data), so the report opens offline, on an intranet, with no script or tile server."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyogrio
import shapely
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from geo_service.analysis.coverage import OVERALL_KEYS, CoverageResult, compute_coverage
from geo_service.core.snapshot import Snapshot

CJK_FONTS = ("Noto Sans CJK SC", "Noto Serif CJK SC", "WenQuanYi Zen Hei", "SimHei")
MAX_BARS = 40
TOP_GAPS = 20


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    geojson: Path
    gaps: Path
    html: Path


def report_paths(out: Path) -> ReportFiles:
    """``out`` may name the HTML file or a stem; the other files sit beside it."""
    stem = out.with_suffix("") if out.suffix.lower() in (".html", ".csv", ".geojson") else out
    return ReportFiles(
        csv=stem.with_suffix(".csv"),
        geojson=stem.with_suffix(".geojson"),
        gaps=stem.parent / f"{stem.name}-gaps.geojson",
        html=stem.with_suffix(".html"),
    )


def cjk_font() -> str | None:
    """A font that draws Chinese names, if one is installed (else the charts use codes)."""
    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in have), None)


def _image(fig: Figure, fmt: str) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
    if fmt == "svg":
        return "<svg" + buf.getvalue().decode("utf-8").split("<svg", 1)[1]
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="map" src="data:image/png;base64,{data}">'


def _patches(geoms: np.ndarray) -> list[PathPatch]:
    """Polygon patches (holes included) from metric shapely polygons."""
    out = []
    for poly in shapely.get_parts(geoms[~shapely.is_missing(geoms)]):
        if shapely.get_type_id(poly) != shapely.GeometryType.POLYGON or poly.is_empty:
            continue
        rings = [poly.exterior, *poly.interiors]
        verts = np.concatenate([np.asarray(r.coords) for r in rings])
        codes = np.concatenate(
            [
                [MplPath.MOVETO] + [MplPath.LINETO] * (len(r.coords) - 2) + [MplPath.CLOSEPOLY]
                for r in rings
            ]
        )
        out.append(PathPatch(MplPath(verts, codes)))
    return out


def _draw(ax: Axes, geoms: np.ndarray, **style: Any) -> None:
    ax.add_collection(PatchCollection(_patches(geoms), **style))


def map_figure(result: CoverageResult) -> Figure:
    """Covered areas (green), gaps (red) and facilities, in the metric CRS (metres)."""
    snap = result.snapshot
    fig = Figure(figsize=(9, 8))
    ax = fig.add_subplot()
    grids = snap.grids.index.metric
    project = snap.projection.project
    covered = np.array([project(result.covered)], dtype=object)
    gaps = project(result.gaps.geometry.to_numpy()) if len(result.gaps) else np.empty(0, object)
    _draw(ax, covered, facecolor="#4caf50", edgecolor="none", alpha=0.55)
    _draw(ax, gaps, facecolor="#e53935", edgecolor="#b71c1c", linewidth=0.4, alpha=0.55)
    _draw(ax, grids, facecolor="none", edgecolor="#607d8b", linewidth=0.15)
    cover = result.grid
    ax.scatter(
        cover.x, cover.y, s=6, c="#0d47a1", zorder=3, label=f"{result.layer} ({len(cover.x)})"
    )
    if len(grids):
        minx, miny, maxx, maxy = shapely.total_bounds(grids)
        pad = 0.02 * max(maxx - minx, maxy - miny, 1.0)
        ax.set_xlim(minx - pad, maxx + pad)
        ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x, m (EPSG:{snap.projection.epsg})")
    ax.set_ylabel("y, m")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    ax.set_title(f"covered (green) and gaps (red) within {result.radius_m:g} m")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def bar_figure(units: pd.DataFrame, level: str, font: str | None) -> Figure:
    """Area and population coverage ratio per unit, lowest population coverage first."""
    rows = units.sort_values("population_ratio").head(MAX_BARS)
    labels = [
        f"{n} {c}" if font else str(c) for c, n in zip(rows["code"], rows["name"], strict=True)
    ]
    fig = Figure(figsize=(9, 0.28 * len(rows) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, rows["population_ratio"] * 100, 0.4, label="population %", color="#1e88e5")
    ax.barh(y + 0.2, rows["area_ratio"] * 100, 0.4, label="area %", color="#90caf9")
    ax.set_yticks(y, labels, fontsize=7, fontfamily=font or "sans-serif")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("covered, %")
    ax.set_title(
        f"coverage by {level}" + (f" (lowest {MAX_BARS})" if len(units) > MAX_BARS else "")
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def chart_level(snapshot: Snapshot) -> str:
    """Streets when there are few enough to read as bars, else districts."""
    n_streets = snapshot.grids.frame["street_code"].nunique()
    return "street" if n_streets <= MAX_BARS else "district"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="t", float_format=lambda v: f"{v:,.2f}")


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole square metres and people, ratios as percentages to 0.01."""
    out = frame[[c for c in ("code", "name", *OVERALL_KEYS) if c in frame]].copy()
    for k in ("area_ratio", "population_ratio"):
        out[k] = (out[k] * 100).round(2)
    for k in ("area_m2", "covered_m2", "population", "covered_population"):
        out[k] = out[k].round(0).astype("int64")
    return out.rename(columns={"area_ratio": "area_%", "population_ratio": "population_%"})


def write_report(result: CoverageResult, out: Path, dataset: str) -> ReportFiles:
    files = report_paths(out)
    files.html.parent.mkdir(parents=True, exist_ok=True)
    units = result.units
    units.drop(columns="geometry").to_csv(files.csv, index=False, encoding="utf-8-sig")
    _write_geojson(units, files.geojson)
    _write_geojson(result.gaps, files.gaps)

    font = cjk_font()
    level = chart_level(result.snapshot)
    by_level = (
        units
        if result.by == level
        else compute_coverage(
            result.snapshot,
            result.layer,
            result.radius_m,
            level,
            result.service,
            active_only=result.grid.active_only,
        ).units
    )
    map_html = _image(map_figure(result), "png")
    bars_html = _image(bar_figure(by_level, level, font), "svg")
    overall = _display(pd.DataFrame([result.overall]))
    gaps = result.gaps.drop(columns="geometry").head(TOP_GAPS).round(0).astype("int64")
    title = f"Coverage of {result.layer} within {result.radius_m:g} m"
    if result.service:
        title += f" offering {result.service}"
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:2em;
max-width:1100px;color:#222}} h1{{font-size:1.5em}} h2{{font-size:1.15em;margin-top:1.6em}}
table.t{{border-collapse:collapse;font-size:.85em}} table.t td,table.t th{{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:right}} img,svg{{max-width:100%;height:auto}}
.meta{{color:#555;font-size:.9em}}
</style></head><body>
<h1>{html.escape(title)} — 覆盖分析</h1>
<p class="meta">Dataset {html.escape(dataset)}, version {html.escape(result.snapshot.version)};
{len(result.grid.x)} facilities; areas in EPSG:{result.snapshot.projection.epsg} (metres);
population spread evenly over each grid; generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.
Files: {html.escape(files.csv.name)}, {html.escape(files.geojson.name)},
{html.escape(files.gaps.name)}.</p>
<h2>Overall</h2>{_table(overall)}
<h2>Map: covered areas and gaps</h2>{map_html}
<h2>Coverage by {level}</h2>{bars_html}
<h2>Largest gaps (by area)</h2>{_table(gaps)}
<h2>Units by {html.escape(result.by)}</h2>{_table(_display(units))}
</body></html>
"""
    files.html.write_text(page, encoding="utf-8")
    return files


def _write_geojson(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pyogrio.write_dataframe(frame, tmp, driver="GeoJSON", COORDINATE_PRECISION=7)
    tmp.replace(path)
