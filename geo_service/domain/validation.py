"""Validating a whole layer file: rows against the schema, and for grids the topology too.

One function, so ``geo-service validate``, ``geo-service import`` and an upload through the API
judge a file identically, and one report: every finding is a ``Finding`` (row, code, level
error/warning, kind, Chinese message), in row order. Errors block an import; warnings (a grid
without an officer, a repaired geometry, what the file reader noticed) are shown and let through.

JSON form (``FileValidation.to_dict``, the body of ``validate --json`` and of an upload's
``report``)::

    {"ok": bool, "errors": int, "warnings": int,
     "layer": str, "source": str, "rows_read": int, "rows_loaded": int,
     "problems": [{"row": int|null, "code": str|null, "level": "error"|"warning",
                   "kind": str, "field": str|null, "message": str, "detail": str|null,
                   "codes": [str], "area_m2": float|null, "at": [lon, lat]|null}],
     "topology": null | {"overlaps": [...], "gaps": [...], "hierarchy": [...],
                         "detached": [...], "overlap_area_m2": float, "gap_area_m2": float}}

``kind`` is one of ``KINDS``; ``row`` is the 1-based feature/row number in the file (null for
whole-file findings and gaps); ``detail`` the original English message where one exists.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np

from geo_service.core.layers import (
    LayerFileError,
    LoadReport,
    Problem,
    read_file,
    validate_layer,
)
from geo_service.core.schema import LayerName, present
from geo_service.core.topology import TopologyReport, check_grids

Level = Literal["error", "warning"]

# Machine key -> the Chinese word the table shows. Stable: scripts filter on these keys.
KINDS: dict[str, str] = {
    "file": "文件",  # what the reader noticed, missing columns
    "value": "字段值",
    "geometry": "几何",
    "duplicate": "编码重复",
    "officer": "网格员",
    "overlap": "网格重叠",
    "gap": "网格间空隙",
    "hierarchy": "编码不嵌套",
    "detached": "脱离社区",
}
LEVELS: dict[str, str] = {"error": "错误", "warning": "警告"}

FIELD_LABELS: dict[str, str] = {
    "code": "编码",
    "name": "名称",
    "community_code": "社区编码",
    "community_name": "社区名称",
    "street_code": "街道编码",
    "street_name": "街道名称",
    "district_code": "区县编码",
    "district_name": "区县名称",
    "officer_name": "网格员姓名",
    "officer_phone": "网格员电话",
    "households": "户数",
    "population": "人口",
    "services": "服务项目",
    "hours": "营业时间",
    "status": "状态",
    "address": "地址",
    "operator": "经营者",
    "phone": "电话",
    "grid_code": "网格编码",
    "opened": "设立日期",
    "moved_to_code": "迁往编号",
    "moved_to_lon": "迁往经度",
    "moved_to_lat": "迁往纬度",
    "moved_to_address": "迁往地址",
    "kind": "类型",
    "pitches": "摊位数",
    "version": "版本",
    "geometry": "几何",
}

# The loader's English messages (core.layers) in Chinese; anything else is shown as written.
_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), chinese)
    for pattern, chinese in (
        (r"^missing required columns: (.+)$", r"缺少必需的列：\1"),
        (r"^missing required value$", "缺少必填值"),
        (r"^not a whole number$", "不是整数"),
        (r"^not a number$", "不是数字"),
        (r"^out of range$", "数值超出范围"),
        (r"^below (.+)$", r"不得小于 \1"),
        (r"^contains a NUL character$", "含有 NUL 字符"),
        (r"^does not match \^\\d\{(\d+)\}\$$", r"应为 \1 位数字"),
        (r"^does not match (.+)$", r"格式不符（应匹配 \1）"),
        (r"^not one of (.+)$", r"取值应为 \1 之一"),
        (r"^missing or empty geometry$", "缺少几何或几何为空"),
        (r"^geometry is not a polygon$", "几何不是面"),
        (r"^geometry is not a point$", "几何不是点"),
        (r"^coordinates outside lon .*$", "坐标超出经度 ±180 / 纬度 ±90：坐标系错误或未声明？"),
        (r"^invalid \((.+)\), not repairable$", r"几何无效（\1），无法修复"),
        (r"^invalid \((.+)\), repaired with make_valid$", r"几何无效（\1），已自动修复"),
        (r"^duplicate code \(first used on row (\d+)\)$", r"编码重复（第 \1 行已使用）"),
        (r"^not valid opening_hours syntax(.*)$", r"不是有效的 opening_hours 写法\1"),
        (r"^empty opening hours$", "营业时间为空"),
        (r"^must lie within (\S+) \(WGS84 degrees\)$", r"应在 \1 之间（WGS84 度）"),
        (r"^give both (\S+) and (\S+), or neither$", r"\1 与 \2 须同时填写或同时留空"),
        (r"^a stall cannot move to itself$", "不能迁往自身"),
        (
            r"^status relocated without .*$",
            "状态为已迁址，但未登记新址（moved_to_code 或 moved_to_lon/moved_to_lat），"
            "页面只能显示“新址未登记”",
        ),
    )
)

# Reader warnings that say nothing the report does not say better: mixed-type columns (the value
# check names each bad row), duplicate feature ids (rows are matched by code, not id).
_IRRELEVANT_WARNINGS = (
    re.compile(r"Could not parse column .* as JSON"),
    re.compile(r"Several features with id = .* have been found"),
)
_WARNINGS_LOCK = threading.Lock()  # warnings.catch_warnings swaps process-wide state
ROW_COLUMN = "__source_row__"


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    row: int | None  # 1-based row/feature number in the file
    code: str | None
    level: Level
    kind: str  # a key of KINDS
    message: str  # Chinese
    field: str | None = None
    detail: str | None = None  # the original (English) message, when translated
    codes: tuple[str, ...] = ()  # the grids involved (overlaps, gaps)
    area_m2: float | None = None
    at: tuple[float, float] | None = None  # lon, lat inside the overlap or gap

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "code": self.code,
            "level": self.level,
            "kind": self.kind,
            "field": self.field,
            "message": self.message,
            "detail": self.detail,
            "codes": list(self.codes),
            "area_m2": self.area_m2,
            "at": list(self.at) if self.at else None,
        }


@dataclass
class FileValidation:
    layer: LayerName
    frame: gpd.GeoDataFrame  # the valid rows
    load: LoadReport
    topology: TopologyReport | None  # grids only
    findings: list[Finding] = field(default_factory=list)  # in row order

    @property
    def errors(self) -> int:
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level == "warning" for f in self.findings)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (schema in the module docstring)."""
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "layer": self.layer.value,
            "source": self.load.source,
            "rows_read": self.load.rows_read,
            "rows_loaded": self.load.rows_loaded,
            "problems": [f.to_dict() for f in self.findings],
            "topology": self.topology.to_dict() if self.topology is not None else None,
        }

    def error_items(self, limit: int = 100) -> list[dict[str, Any]]:
        """The errors as an API answer lists them: field (or kind), message, row, code."""
        return [
            {
                "field": f.field or f.kind,
                "message": f.message,
                "detail": f.detail,
                "row": f.row,
                "code": f.code,
            }
            for f in self.findings
            if f.level == "error"
        ][:limit]


def validate_file(path: str | Path, layer: LayerName, crs: str | None = None) -> FileValidation:
    """Raises ``LayerFileError`` when the file cannot be read as a layer at all."""
    layer = LayerName(layer)
    noticed: list[str] = []
    try:
        with _reader_warnings() as noticed:
            raw = read_file(path, crs=crs)
            # Number the rows as the file has them, so findings on valid grids name theirs too.
            raw[ROW_COLUMN] = np.arange(1, len(raw) + 1)
            frame, load = validate_layer(raw, layer, source=str(path), strict=True)
            numbers = frame.pop(ROW_COLUMN) if ROW_COLUMN in frame else []
            rows = {str(c): int(r) for c, r in zip(frame["code"], numbers, strict=True)}
            topology = check_grids(frame) if layer is LayerName.grids else None
    except LayerFileError as exc:
        if not noticed:
            raise
        raise LayerFileError(f"{exc.message} ({'; '.join(noticed)})", exc.field) from exc
    findings = [
        *(_file_warning(text) for text in noticed),
        *(_from_problem(p) for p in load.problems),
        *(_officer_findings(frame, rows) if layer is LayerName.grids else ()),
        *(_topology_findings(topology, rows) if topology is not None else ()),
    ]
    return FileValidation(layer, frame, load, topology, sorted(findings, key=_order))


def _order(f: Finding) -> tuple[int, int, int, float]:
    """Whole-file findings first, then by row; gaps (no row) last, largest first."""
    if f.kind == "gap":
        return (2, 0, 0, -(f.area_m2 or 0.0))
    if f.row is None:
        return (0, 0, 0, 0.0)
    return (1, f.row, list(KINDS).index(f.kind), 0.0)


@contextmanager
def _reader_warnings() -> Iterator[list[str]]:
    """Collect what pyogrio/GDAL/shapely warn about while reading, instead of letting it leak
    to stderr: relevant ones become report lines, developer warnings and known noise vanish."""
    noticed: list[str] = []
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield noticed
        finally:
            for w in caught:
                if issubclass(w.category, DeprecationWarning | PendingDeprecationWarning):
                    continue
                if issubclass(w.category, FutureWarning):
                    continue
                text = str(w.message).strip()
                irrelevant = any(rx.search(text) for rx in _IRRELEVANT_WARNINGS)
                if text and not irrelevant and text not in noticed:
                    noticed.append(text)


def _file_warning(text: str) -> Finding:
    return Finding(None, None, "warning", "file", f"读取文件时的提示：{text}", detail=text)


def translate(message: str) -> str:
    """A loader message in Chinese (unchanged when it is not one of the known ones)."""
    for rx, chinese in _MESSAGES:
        if rx.match(message):
            return rx.sub(chinese, message)
    return message


def _from_problem(p: Problem) -> Finding:
    level: Level = "error" if p.action == "rejected" else "warning"
    if p.row is None:
        kind = "file"
    elif p.message.startswith("duplicate code"):
        kind = "duplicate"
    elif p.field == "geometry":
        kind = "geometry"
    else:
        kind = "value"
    chinese = translate(p.message)
    label = FIELD_LABELS.get(p.field or "", p.field)
    text = f"{label}：{chinese}" if label and kind != "geometry" else chinese
    return Finding(p.row, p.code, level, kind, text, p.field, p.message)


# (has name, has phone) -> field, Chinese message, English detail; {name} is the officer's name.
_OFFICER_MISSING: dict[tuple[bool, bool], tuple[str, str, str]] = {
    (False, False): ("officer_name", "未登记网格员（姓名、电话均为空）", "no officer"),
    (True, False): ("officer_phone", "网格员 {name} 未登记电话", "officer {name} has no phone"),
    (False, True): ("officer_name", "网格员电话已登记，但未登记姓名", "officer has no name"),
}


def _officer_findings(frame: gpd.GeoDataFrame, rows: dict[str, int]) -> list[Finding]:
    """A grid nobody is named for (or who cannot be called) is a warning: residents' reports
    routed to it reach no one until an officer is entered."""
    if not len(frame):
        return []
    has_name = frame["officer_name"].map(present).to_numpy(dtype=bool)
    has_phone = frame["officer_phone"].map(present).to_numpy(dtype=bool)
    out = []
    for i in np.flatnonzero(~(has_name & has_phone)):
        field_name, chinese, english = _OFFICER_MISSING[(bool(has_name[i]), bool(has_phone[i]))]
        name = str(frame["officer_name"].iloc[i]).strip()
        code = str(frame["code"].iloc[i])
        out.append(
            Finding(
                rows.get(code),
                code,
                "warning",
                "officer",
                chinese.format(name=name),
                field_name,
                english.format(name=name),
            )
        )
    return out


def _topology_findings(report: TopologyReport, rows: dict[str, int]) -> list[Finding]:
    out = []
    for o in report.overlaps:
        a, b = o.codes
        at = f"{o.at[0]:.6f}, {o.at[1]:.6f}"
        if o.inside:
            chinese = f"整个位于 {a} 之内，面积 {_m2(o.area_m2)}（位于 {at}）"
            english = f"lies inside {a}: {o.area_m2:,.1f} m² at {at}"
        else:
            chinese = f"与 {b} 重叠 {_m2(o.area_m2)}（位于 {at}）"
            english = f"overlaps {b} by {o.area_m2:,.1f} m² at {at}"
        subject = b if o.inside else a
        out.append(
            Finding(
                rows.get(subject),
                subject,
                "error",
                "overlap",
                chinese,
                "geometry",
                english,
                codes=o.codes,
                area_m2=o.area_m2,
                at=o.at,
            )
        )
    for g in report.gaps:
        at = f"{g.at[0]:.6f}, {g.at[1]:.6f}"
        around = "、".join(g.codes[:4]) + (f" 等 {len(g.codes)} 个网格" if len(g.codes) > 4 else "")
        out.append(
            Finding(
                None,
                None,
                "error",
                "gap",
                f"网格之间有空隙 {_m2(g.area_m2)}，周边网格 {around}（位于 {at}）",
                "geometry",
                f"gap of {g.area_m2:,.1f} m² between {', '.join(g.codes)} at {at}",
                codes=g.codes,
                area_m2=g.area_m2,
                at=g.at,
            )
        )
    for h in report.hierarchy:
        units = f"社区 {h.community_code}、街道 {h.street_code}、区县 {h.district_code}"
        out.append(
            Finding(
                rows.get(h.code),
                h.code,
                "error",
                "hierarchy",
                f"编码与所属{units}不嵌套（网格编码前 12 位是社区编码，前 9 位是街道编码，"
                "前 6 位是区县编码）",
                "code",
                f"code {h.code} does not nest in community {h.community_code}, "
                f"street {h.street_code}, district {h.district_code}",
            )
        )
    for d in report.detached:
        out.append(
            Finding(
                rows.get(d.code),
                d.code,
                "error",
                "detached",
                f"与社区 {d.community_code} 的其他网格都不相接：是否位于社区之外？",
                "geometry",
                f"touches no other grid of community {d.community_code}",
            )
        )
    return out


def _m2(area: float) -> str:
    return f"{area:,.0f} m²" if area >= 0.5 else "不足 1 m²"
