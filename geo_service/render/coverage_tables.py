"""The coverage report's figures as people read them, one definition for the HTML page, the PDF
and the CSV/GeoJSON files: Chinese headers, units by their Chinese names with the code in a
narrow column of its own, and rounded figures (percentages to 0.1, areas in km² to 0.01 or in
whole m², people and metres whole).

Rounding happens only here, at the end: the analysis keeps full precision, and a total is
rounded from the exact sum, not summed from rounded parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_service.analysis.coverage import CoverageResult
from geo_service.analysis.gaps import GapPieces
from geo_service.core.schema import LayerName
from geo_service.render.maps.points import TITLES
from geo_service.render.maps.units import LEVEL_TITLES

GAP_ROWS = 100
"""Gap pieces listed in the HTML and PDF (most people first); the files hold every one."""


class Kind(StrEnum):
    text = "text"  # a name or a sentence
    code = "code"  # a unit code, printed small beside its name
    num = "num"  # a figure, right-aligned


@dataclass(frozen=True)
class Column:
    title: str
    kind: Kind = Kind.num


@dataclass(frozen=True)
class Table:
    key: str  # html id, stable for tests and links
    title: str
    columns: tuple[Column, ...]
    rows: Sequence[tuple[str, ...]]
    note: str = ""


@dataclass(frozen=True)
class Bar:
    """One unit's coverage for the bar chart (ratios 0..1, labels already rounded)."""

    name: str
    code: str
    population_ratio: float
    area_ratio: float
    population: str
    covered_population: str


@dataclass(frozen=True)
class ReportContent:
    title: str
    subtitle: str
    explanations: list[str]
    summary: Table
    bars_title: str
    bars: list[Bar]
    gaps: Table
    units: Table
    meta: dict[str, str] = field(default_factory=dict)


# --- rounding -----------------------------------------------------------------------------


def pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def km2(m2: float) -> str:
    return f"{m2 / 1e6:,.2f}"


def whole(value: float) -> str:
    """People, m² or metres as a whole number with thousands separators ("—" when unknown)."""
    return f"{value:,.0f}" if math.isfinite(value) else "—"


def subject(result: CoverageResult) -> str:
    """What is measured, in Chinese: 小蓝棚（修鞋）."""
    what = TITLES[LayerName(result.layer)]
    return what + (f"（{result.service}）" if result.service else "")


def counted(result: CoverageResult, all_facilities: int) -> str:
    """Which facilities the figures count (only active ones by default), and the rest."""
    n = len(result.grid.facilities)
    if not result.grid.active_only:
        return f"{n:,} 处（含暂停、迁址，不含撤销）"
    others = all_facilities - n
    return f"{n:,} 处在用" + (f"（暂停、迁址的 {others:,} 处未计入）" if others else "")


# --- files (CSV, GeoJSON): machine keys, rounded values -------------------------------------

UNIT_FILE_COLUMNS = (
    "code",
    "name",
    "area_m2",
    "covered_m2",
    "area_pct",
    "population",
    "covered_population",
    "population_pct",
)
GAP_FILE_COLUMNS = (
    "gap_id",
    "grid_code",
    "grid_name",
    "community_code",
    "community_name",
    "street_code",
    "street_name",
    "district_code",
    "area_m2",
    "population",
    "nearest_m",
)
FILE_COLUMN_TITLES = {
    "code": "单元代码",
    "name": "单元名称",
    "area_m2": "面积（平方米）",
    "covered_m2": "覆盖面积（平方米）",
    "area_pct": "面积覆盖率（%）",
    "population": "人口",
    "covered_population": "覆盖人口",
    "population_pct": "人口覆盖率（%）",
    "gap_id": "片区编号",
    "grid_code": "网格代码",
    "grid_name": "网格名称",
    "community_code": "社区代码",
    "community_name": "社区名称",
    "street_code": "街道代码",
    "street_name": "街道名称",
    "district_code": "区代码",
    "nearest_m": "距最近设施（米）",
}


def _whole_ints(values: Any) -> pd.Series:
    """Whole numbers as nullable integers (an unknown distance stays empty, not NaN or inf)."""
    arr = np.asarray(values, dtype=np.float64)
    out = pd.array(np.where(np.isfinite(arr), np.round(arr), 0).astype(np.int64), dtype="Int64")
    out[~np.isfinite(arr)] = pd.NA
    return pd.Series(out)


def unit_file_frame(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The units' figures for the CSV and GeoJSON: m² and people whole, percentages to 0.1."""
    out = pd.DataFrame(
        {
            "code": units["code"].to_numpy(dtype=object),
            "name": units["name"].to_numpy(dtype=object),
            "area_m2": _whole_ints(units["area_m2"]),
            "covered_m2": _whole_ints(units["covered_m2"]),
            "area_pct": np.round(units["area_ratio"].to_numpy(dtype=float) * 100, 1),
            "population": _whole_ints(units["population"]),
            "covered_population": _whole_ints(units["covered_population"]),
            "population_pct": np.round(units["population_ratio"].to_numpy(dtype=float) * 100, 1),
        }
    )
    return gpd.GeoDataFrame(out, geometry=units.geometry.to_numpy(), crs=units.crs)


def gap_file_frame(pieces: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Every gap piece for the CSV and GeoJSON, figures whole (metres, m², people)."""
    cols: dict[str, Any] = {}
    for c in GAP_FILE_COLUMNS:
        if c in ("area_m2", "population", "nearest_m"):
            cols[c] = _whole_ints(pieces[c]) if len(pieces) else pd.Series([], dtype="Int64")
        else:
            cols[c] = (
                pieces[c].to_numpy(dtype=object) if c in pieces else np.full(len(pieces), None)
            )
    return gpd.GeoDataFrame(pd.DataFrame(cols), geometry=pieces.geometry.to_numpy(), crs=pieces.crs)


# --- what people read ----------------------------------------------------------------------


def _named(name: Any, code: Any) -> tuple[str, str]:
    code = "" if code is None else str(code)
    return (str(name) if isinstance(name, str) and name else code), code


def summary_table(result: CoverageResult, pieces: GapPieces, all_facilities: int) -> Table:
    o = result.overall
    frame = pieces.frame
    rows = [
        ("设施", subject(result)),
        ("计入设施", counted(result, all_facilities)),
        ("服务半径", f"{result.radius_m:,.0f} 米"),
        ("统计范围面积", f"{km2(o['area_m2'])} 平方公里"),
        ("已覆盖面积", f"{km2(o['covered_m2'])} 平方公里"),
        ("面积覆盖率", pct(o["area_ratio"])),
        ("常住人口", f"{whole(o['population'])} 人"),
        ("覆盖人口", f"{whole(o['covered_population'])} 人"),
        ("人口覆盖率", pct(o["population_ratio"])),
        (
            "未覆盖片区",
            f"{len(frame):,} 处，合计 {km2(float(frame['area_m2'].sum()))} 平方公里、"
            f"{whole(float(frame['population'].sum()))} 人",
        ),
        (
            "未列出的碎片",
            f"{pieces.dropped:,} 处（每处小于 {pieces.min_area_m2:,.0f} 平方米），"
            f"合计 {whole(pieces.dropped_area_m2)} 平方米",
        ),
    ]
    return Table("summary", "概况", (Column("指标", Kind.text), Column("数值", Kind.text)), rows)


def bars_of(units: pd.DataFrame) -> list[Bar]:
    """Units by population coverage, lowest first (where new sites help most)."""
    rows = units.sort_values(["population_ratio", "code"]).to_dict("records")
    return [
        Bar(
            *_named(r["name"], r["code"]),
            population_ratio=float(r["population_ratio"]),
            area_ratio=float(r["area_ratio"]),
            population=whole(float(r["population"])),
            covered_population=whole(float(r["covered_population"])),
        )
        for r in rows
    ]


def gap_table(pieces: GapPieces, limit: int = GAP_ROWS) -> Table:
    frame = pieces.frame
    shown = frame.head(limit)
    rows = []
    for r in shown.drop(columns="geometry").to_dict("records"):
        grid, code = _named(r.get("grid_name"), r["grid_code"])
        community, _ = _named(r.get("community_name"), r["community_code"])
        street, _ = _named(r.get("street_name"), r["street_code"])
        rows.append(
            (
                str(r["gap_id"]),
                grid,
                code,
                community,
                street,
                whole(float(r["area_m2"])),
                whole(float(r["population"])),
                whole(float(r["nearest_m"])),
            )
        )
    rest = frame.iloc[limit:]
    note = (
        f"按未覆盖人口从多到少列出前 {len(shown):,} 处，另有 {len(rest):,} 处"
        f"（合计 {km2(float(rest['area_m2'].sum()))} 平方公里、{whole(float(rest['population'].sum()))}"
        " 人）见片区文件。"
        if len(rest)
        else f"按未覆盖人口从多到少列出全部 {len(shown):,} 处。"
    )
    note += (
        f"小于 {pieces.min_area_m2:,.0f} 平方米的 {pieces.dropped:,} 处碎片"
        f"（合计 {whole(pieces.dropped_area_m2)} 平方米）未列出。"
    )
    columns = (
        Column("编号", Kind.text),
        Column("网格", Kind.text),
        Column("网格代码", Kind.code),
        Column("社区", Kind.text),
        Column("街道", Kind.text),
        Column("面积（平方米）"),
        Column("人口"),
        Column("距最近设施（米）"),
    )
    return Table("gaps", "未覆盖片区", columns, rows, note)


def unit_table(units: pd.DataFrame, by: str) -> Table:
    """Every unit of ``by``: areas in whole m² for grids (a few hectares), km² above."""
    small = by == "grid"
    area = (lambda v: whole(v)) if small else km2
    unit = "平方米" if small else "平方公里"
    level = LEVEL_TITLES[by]
    rows = []
    for r in units.drop(columns="geometry", errors="ignore").to_dict("records"):
        name, code = _named(r["name"], r["code"])
        rows.append(
            (
                name,
                code,
                area(float(r["area_m2"])),
                area(float(r["covered_m2"])),
                pct(float(r["area_ratio"])),
                whole(float(r["population"])),
                whole(float(r["covered_population"])),
                pct(float(r["population_ratio"])),
            )
        )
    columns = (
        Column(level, Kind.text),
        Column("代码", Kind.code),
        Column(f"面积（{unit}）"),
        Column(f"已覆盖（{unit}）"),
        Column("面积覆盖率"),
        Column("人口"),
        Column("覆盖人口"),
        Column("人口覆盖率"),
    )
    return Table("units", f"按{level}统计（{len(rows):,} 个）", columns, rows)


def explanations(result: CoverageResult, pieces: GapPieces, epsg: int) -> list[str]:
    r = f"{result.radius_m:,.0f}"
    counted_text = (
        "只计正常营业（在用）的设施：暂停营业、已迁址的不计入，撤销的从不计入。"
        if result.grid.active_only
        else "计入在用、暂停营业和已迁址的设施（撤销的不计入）。"
    )
    return [
        f"覆盖：与任一{subject(result)}的直线距离不超过 {r} 米的范围。{counted_text}",
        f"距离和面积在 EPSG:{epsg}（CGCS2000 高斯-克吕格 3 度带）平面坐标中以米计算，"
        "不用经纬度直接计算；设施范围取与圆面积相等的 128 边形。",
        "人口按网格均匀分布：一个网格被覆盖的人口 = 网格人口 × 被覆盖面积 / 网格面积。",
        f"未覆盖片区：每个网格内未被覆盖的连通部分，各有编号、所在网格/社区/街道、面积、"
        f"人口和到最近计入设施的距离，按人口从多到少排列；小于 {pieces.min_area_m2:,.0f} 平方米"
        "的碎片（网格边缘和相邻范围之间的细缝）不列出，只计数。",
        "百分比保留一位小数，面积以平方公里保留两位或以平方米取整，人口和距离取整。",
    ]
