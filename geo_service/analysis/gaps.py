"""Coverage gaps as pieces a planner can act on: the uncovered part of each grid, split into
its connected parts. Every piece lies in exactly one grid, hence one community, street and
district, so it can be handed to the people responsible for it; a gap crossing three grids is
three pieces (``find_gaps`` in ``coverage`` still gives the merged areas).

Threshold: pieces smaller than ``DEFAULT_MIN_GAP_M2`` = 1,000 m² (about 30 m × 30 m) are
slivers, dropped from the list and counted (``dropped``, ``dropped_area_m2``,
``dropped_population``). Where a disc's edge runs close to a grid edge, or two discs nearly
meet, the overlay leaves strips of a few to a few hundred m² (default data, active stalls: at
1 km 20 slivers, median 209 m², 5,218 m² and 16 people in all; at 500 m 58 slivers holding 73
people, 0.01 % of the city). Nothing can be sited in them and a list full of them hides the
real gaps; 1,000 m² is still smaller than the plot of one residential building, so no place
where people live disappears from the list unseen: the slivers are counted. Callers can lower
it (0 keeps every piece).

Population of a piece is its grid's population apportioned by area, as the coverage figures
spread each grid's population evenly over it: the pieces' and the slivers' population add up to
``population - covered_population``. ``nearest_m`` is the shortest distance, in the metric CRS
(EPSG:4549 for Weifang), from the piece to a facility counted for this coverage (NaN when none);
a piece is never within ``radius_m`` of one, up to the disc polygon's 0.2 m.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from geo_service.analysis.coverage import (
    CoverageInputError,
    FloatArray,
    GridCover,
    ObjArray,
    grid_population,
    to_wgs84,
    uncovered_parts,
)
from geo_service.core.errors import quote
from geo_service.core.schema import LEVELS
from geo_service.core.snapshot import Snapshot

DEFAULT_MIN_GAP_M2 = 1000.0
"""Uncovered pieces smaller than this (m²) are slivers: dropped from the list and counted."""

MAX_MIN_GAP_M2 = 100_000_000.0
"""Largest threshold a caller may ask for (100 km², more than any grid)."""

SNAP_M = 0.001
"""Grid (m) the uncovered parts of cut grids are snapped to: removes overlay spikes."""

NAME_LEVELS = ("grid", "community", "street")
"""Levels whose names are given beside their codes (the district's code says enough)."""


@dataclass(frozen=True, eq=False)
class GapPieces:
    """Uncovered pieces, one row each (WGS84, most people first), and the slivers dropped.

    ``frame`` columns: gap_id ("G0001"… in this order), grid_code, community_code,
    street_code, district_code, grid_name, community_name, street_name (where the data has
    names), area_m2, population, nearest_m, geometry."""

    frame: gpd.GeoDataFrame
    dropped: int
    dropped_area_m2: float
    dropped_population: float
    min_area_m2: float


def check_min_area(min_area_m2: float) -> float:
    value = float(min_area_m2)
    if not math.isfinite(value) or value < 0:
        raise CoverageInputError(
            f"must be a number of m² ≥ 0, got {quote(min_area_m2)}", "min_area_m2"
        )
    if value > MAX_MIN_GAP_M2:
        raise CoverageInputError(f"at most {MAX_MIN_GAP_M2:,.0f} m², got {value:g}", "min_area_m2")
    return value


def gap_pieces(
    snapshot: Snapshot, cover: GridCover, min_area_m2: float = DEFAULT_MIN_GAP_M2
) -> GapPieces:
    """The uncovered part of each grid split into connected pieces, sorted by population
    (descending; then area, then grid code), with ids ``G0001``… in that order; pieces below
    ``min_area_m2`` dropped and counted. Cached per coverage and threshold."""
    min_area_m2 = check_min_area(min_area_m2)
    cached = _cache_get(cover, min_area_m2)
    if cached is None:
        cached = _pieces(snapshot, cover, min_area_m2)
        _cache_put(cover, min_area_m2, cached)
    return cached


def _pieces(snapshot: Snapshot, cover: GridCover, min_area_m2: float) -> GapPieces:
    rest, _ = uncovered_parts(snapshot, cover)
    # Where a grid was cut, the two overlays (grid ∩ discs, then grid − that) can leave
    # zero-width spikes out to the grid's corners; they hold no area but would put a piece
    # hundreds of metres nearer a facility than it is. Snapping to 1 mm removes them.
    cut = np.flatnonzero(~shapely.is_missing(rest) & ~shapely.is_missing(cover.parts))
    rest[cut] = shapely.set_precision(rest[cut], SNAP_M)
    have = np.flatnonzero(~(shapely.is_missing(rest) | shapely.is_empty(rest)))
    parts, owner = shapely.get_parts(rest[have], return_index=True)
    grid = have[owner].astype(np.int64)
    area = shapely.area(parts)
    grid_area = snapshot.grids.index.area_m2
    pop = grid_population(snapshot)[grid] * np.minimum(area / grid_area[grid], 1.0)
    small = area < min_area_m2
    dropped, dropped_area, dropped_pop = int(small.sum()), area[small].sum(), pop[small].sum()
    parts, grid, area, pop = parts[~small], grid[~small], area[~small], pop[~small]
    codes = snapshot.grids.codes[grid].astype(str)
    order = np.lexsort((codes, -area, -pop))
    parts, grid, area, pop = parts[order], grid[order], area[order], pop[order]
    frame = snapshot.grids.frame
    cols: dict[str, object] = {"gap_id": [f"G{i + 1:04d}" for i in range(len(parts))]}
    for level, (code_col, _) in LEVELS.items():
        cols[f"{level}_code"] = frame[code_col].to_numpy(dtype=object)[grid]
    for level in NAME_LEVELS:
        name_col = LEVELS[level][1]
        if name_col in frame:
            cols[f"{level}_name"] = frame[name_col].to_numpy(dtype=object)[grid]
    cols.update({"area_m2": area, "population": pop, "nearest_m": _nearest_m(parts, cover)})
    geoms = to_wgs84(snapshot, parts) if len(parts) else np.empty(0, dtype=object)
    out = gpd.GeoDataFrame(cols, geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326)
    return GapPieces(out, dropped, float(dropped_area), float(dropped_pop), min_area_m2)


def _nearest_m(parts: ObjArray, cover: GridCover) -> FloatArray:
    """Metric distance from each piece to the nearest counted facility (NaN when none)."""
    if len(parts) == 0 or len(cover.x) == 0:
        return np.full(len(parts), np.nan)
    tree = shapely.STRtree(shapely.points(cover.x, cover.y))
    (piece, _), dist = tree.query_nearest(parts, return_distance=True, all_matches=False)
    out = np.full(len(parts), np.nan)
    out[piece] = dist
    return out


# --- cache: per GridCover (itself cached per snapshot), a few thresholds each -------------------

THRESHOLDS_KEPT = 4
_CACHE: weakref.WeakKeyDictionary[GridCover, OrderedDict[float, GapPieces]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def _cache_get(cover: GridCover, min_area_m2: float) -> GapPieces | None:
    with _LOCK:
        entries = _CACHE.get(cover)
        if entries is None or min_area_m2 not in entries:
            return None
        entries.move_to_end(min_area_m2)
        return entries[min_area_m2]


def _cache_put(cover: GridCover, min_area_m2: float, value: GapPieces) -> None:
    with _LOCK:
        entries = _CACHE.setdefault(cover, OrderedDict())
        entries[min_area_m2] = value
        while len(entries) > THRESHOLDS_KEPT:
            entries.popitem(last=False)
