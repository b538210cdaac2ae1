"""What each exported file holds: a stored layer as it is stored (so it imports back as the
same layer), communities/streets/districts dissolved from the grids, and coverage results (the
figures of each unit, the uncovered pieces), each with its parent units' codes and names."""

from __future__ import annotations

from enum import StrEnum

import geopandas as gpd
import pandas as pd

from geo_service.analysis.coverage import Progress, compute_coverage, grid_cover
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, MAX_MIN_GAP_M2, gap_pieces
from geo_service.core.cases import LEVEL_TEXT
from geo_service.core.errors import quote
from geo_service.core.schema import LEVELS, SCHEMAS, LayerName, Level, Service
from geo_service.core.snapshot import Snapshot
from geo_service.storage.export import Exportable, ExportError


class ExportLayer(StrEnum):
    """The layers a file can be had of."""

    grids = "grids"
    communities = "communities"
    streets = "streets"
    districts = "districts"
    stalls = "stalls"
    vendor_clusters = "vendor_clusters"


UNIT_LEVELS: dict[ExportLayer, Level] = {
    ExportLayer.communities: Level.community,
    ExportLayer.streets: Level.street,
    ExportLayer.districts: Level.district,
}


def parse_layer(raw: str) -> ExportLayer:
    try:
        return ExportLayer(raw.strip().lower().replace("-", "_"))
    except ValueError:
        names = ", ".join(x.value for x in ExportLayer)
        raise ExportError(f"unknown layer {quote(raw)}; one of {names}", "layer") from None


def _title(layer: ExportLayer) -> str:
    if layer in UNIT_LEVELS:
        return LEVEL_TEXT[UNIT_LEVELS[layer]]
    return SCHEMAS[LayerName(layer.value)].title


def parents(snap: Snapshot, level: str, codes: pd.Series) -> pd.DataFrame:
    """Codes and names of the units that hold each unit of ``level`` (community → street,
    district), read off the first grid of each unit."""
    names = list(LEVELS)
    above = names[names.index(level) + 1 :]
    code_col = LEVELS[level][0]
    first = snap.grids.frame.drop_duplicates(code_col).set_index(code_col)
    cols = [c for lv in above for c in LEVELS[lv]]
    out = first.reindex(codes.to_numpy())[cols]
    out.columns = [f"{lv}_{part}" for lv in above for part in ("code", "name")]
    return out.reset_index(drop=True)


def _with_parents(frame: gpd.GeoDataFrame, snap: Snapshot, level: str) -> gpd.GeoDataFrame:
    head = frame[["code", "name"]].reset_index(drop=True)
    tail = frame.drop(columns=["code", "name"]).reset_index(drop=True)
    table = pd.concat([head, parents(snap, level, frame["code"]), tail], axis=1)
    return gpd.GeoDataFrame(table, geometry=frame.geometry.name, crs=frame.crs)


def layer_export(snap: Snapshot, layer: ExportLayer) -> Exportable:
    """A layer of the snapshot. Stored layers keep exactly their stored fields (with any
    extra columns and ``version``): a derived column would become an extra field on import."""
    if layer in UNIT_LEVELS:
        level = UNIT_LEVELS[layer].value
        frame = _with_parents(snap.units(level), snap, level)
    elif layer is ExportLayer.grids:
        frame = snap.grids.frame
    else:
        frame = snap.points(layer.value).frame
    return Exportable(frame, layer.value, _title(layer))


def _coverage_notes(
    facilities: str, radius_m: float, service: str | None, active_only: bool
) -> tuple[str, ...]:
    what = SCHEMAS[LayerName(facilities)].title
    status = "仅在用 active only" if active_only else "含暂停、迁移 incl. suspended, relocated"
    return (
        f"设施 facilities: {what} ({facilities}), 半径 radius: {radius_m:g} m, "
        f"服务 service: {service or '全部 all'}, {status}",
        "面积按米制坐标系计算 areas in m² of the metric CRS; 人口按面积比例分摊 population "
        "spread evenly over each grid",
    )


def _coverage_name(prefix: str, facilities: str, radius_m: float, service: str | None) -> str:
    name = f"{prefix}-{facilities.replace('_', '-')}-{radius_m:g}m"
    return f"{name}-{Service(service).name}" if service else name


def coverage_units_export(
    snap: Snapshot,
    facilities: str,
    radius_m: float,
    by: str,
    service: str | None = None,
    active_only: bool = False,
    progress: Progress | None = None,
) -> Exportable:
    """Coverage figures of each unit of ``by`` with its outline (what ``GET /coverage`` lists)."""
    res = compute_coverage(
        snap, facilities, radius_m, by, service, active_only=active_only, progress=progress
    )
    frame = _with_parents(res.units, snap, by)
    title = (
        f"{SCHEMAS[LayerName(facilities)].title} {radius_m:g} 米覆盖（按{LEVEL_TEXT[Level(by)]}）"
    )
    name = f"{_coverage_name('coverage', facilities, radius_m, service)}-{by}"
    return Exportable(
        frame, name, title, _coverage_notes(facilities, radius_m, service, active_only)
    )


def check_min_area(min_area_m2: float) -> float:
    value = float(min_area_m2)
    if not 0 <= value <= MAX_MIN_GAP_M2:
        raise ExportError(
            f"must lie within 0..{MAX_MIN_GAP_M2:g} m², got {quote(min_area_m2)}", "min_area_m2"
        )
    return value


def gap_pieces_export(
    snap: Snapshot,
    facilities: str,
    radius_m: float,
    service: str | None = None,
    active_only: bool = False,
    min_area_m2: float = DEFAULT_MIN_GAP_M2,
    progress: Progress | None = None,
) -> Exportable:
    """The uncovered pieces (one per grid part, most people first) with their units."""
    cover = grid_cover(snap, facilities, radius_m, service, active_only, progress)
    pieces = gap_pieces(snap, cover, check_min_area(min_area_m2))
    title = f"{SCHEMAS[LayerName(facilities)].title} {radius_m:g} 米覆盖缺口"
    notes = (
        *_coverage_notes(facilities, radius_m, service, active_only),
        f"小于 {pieces.min_area_m2:g} m² 的碎片未列出 slivers under {pieces.min_area_m2:g} m² "
        f"left out: {pieces.dropped} ({pieces.dropped_area_m2:,.0f} m²)",
    )
    name = _coverage_name("gaps", facilities, radius_m, service)
    return Exportable(pieces.frame, name, title, notes)
