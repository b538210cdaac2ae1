"""Coverage: which share of each unit (grid, community, street, district), and of the people
living there, lies within ``radius_m`` metres of a facility layer.

Everything is measured in the snapshot's metric CRS (EPSG:4549 for Weifang), never in degrees.
Discs are regular polygons of ``DISC_SEGMENTS`` vertices whose radius is scaled so that each
polygon has exactly the area of the true circle (``DISC_AREA_SCALE``): the polygon edge then
lies within +0.20 m / -0.10 m of the circle at 1 km (an inscribed 128-gon would be always
inside, by up to 0.30 m, and short of the circle's area by 0.04 %). 128 vertices (quad_segs 32)
keep that error far below a square metre per grid while overlays stay cheap; see
``disc_error_m``. The Gauss-Kruger scale factor adds at most 0.01 % at 80 km from the central
meridian.

Speed: instead of unioning every disc over the city, each grid is intersected only with the
discs that reach it (disc boxes queried against an STRtree of grids, then a vectorised
box-distance test). A grid whose bounding box lies inside one
disc's inscribed circle is wholly covered with no overlay at all; the rest are clipped disc by
disc (vectorised ``shapely.intersection``) and the clipped pieces unioned per grid (vectorised
``shapely.union_all`` over a padded 2-D array). Per-grid results are kept (``GridCover``) so a
what-if only recomputes the grids near the changed sites, and higher levels are sums of grids
(population spread evenly over its grid).

Which facilities count: never the retired ones; with ``active_only`` only the active ones. The
CLI, the API and the maps ask for active ones unless told ``include_inactive`` (what serves
residents today). The gaps a planner acts on are ``geo_service.analysis.gaps.gap_pieces``;
``find_gaps`` merges them across grids.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

from geo_service.core.crs import FloatArray
from geo_service.core.errors import InputError, quote
from geo_service.core.schema import LEVELS, SERVICES, LayerName
from geo_service.core.snapshot import Snapshot

IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]
Progress = Callable[[int], None]


class Preset(IntEnum):
    """Life-circle tiers (GB 50180-2018), metres."""

    walk_5_min = 300
    walk_10_min = 500
    walk_15_min = 1000


PRESETS: dict[int, float] = {int(p): float(p) for p in Preset}
"""Life-circle tiers (GB 50180-2018): 5-minute ≈ 300 m, 10-minute ≈ 500 m, 15-minute ≈ 1 km."""

QUAD_SEGS = 32
DISC_SEGMENTS = 4 * QUAD_SEGS
_THETA = 2.0 * math.pi / DISC_SEGMENTS
DISC_AREA_SCALE = math.sqrt(_THETA / math.sin(_THETA))
"""Vertex radius / true radius that makes the regular polygon's area exactly πr²."""

GAP_MIN_AREA_M2 = 1.0
"""Uncovered slivers smaller than this (overlay noise along grid edges) are not reported."""

CHUNK_GRIDS = 20_000
PAIRS_PER_CHUNK = 4_000_000
OVERALL_KEYS = (
    "area_m2",
    "covered_m2",
    "area_ratio",
    "population",
    "covered_population",
    "population_ratio",
)


class CoverageInputError(InputError):
    """A coverage parameter the caller can fix; ``field`` names it."""


def disc_error_m(radius_m: float) -> tuple[float, float]:
    """How far the disc polygon's edge strays outside (+) and inside (-) the true circle."""
    vertex = radius_m * DISC_AREA_SCALE
    return vertex - radius_m, vertex * math.cos(_THETA / 2.0) - radius_m


def discs(x: FloatArray, y: FloatArray, radius_m: float) -> ObjArray:
    """Equal-area regular polygons around metric points (one template, translated)."""
    angles = np.arange(DISC_SEGMENTS + 1) * _THETA
    angles[-1] = 0.0  # close the ring exactly
    rho = radius_m * DISC_AREA_SCALE
    ring = np.stack([np.cos(angles) * rho, np.sin(angles) * rho], axis=-1)
    coords = ring[None, :, :] + np.stack([x, y], axis=-1)[:, None, :]
    return shapely.polygons(coords)


def check_radius(radius_m: float, max_radius_m: float | None = None) -> float:
    r = float(radius_m)
    if not math.isfinite(r) or r <= 0:
        raise CoverageInputError(
            f"must be a positive number of metres, got {quote(radius_m)}", "radius_m"
        )
    if max_radius_m is not None and r > max_radius_m:
        raise CoverageInputError(f"at most {max_radius_m:g} m, got {r:g}", "radius_m")
    return r


def check_level(by: str) -> str:
    if by not in LEVELS:
        raise CoverageInputError(f"unknown level {quote(by)}; one of {', '.join(LEVELS)}", "by")
    return by


def facility_indices(
    snapshot: Snapshot, layer: str, service: str | None = None, active_only: bool = False
) -> IntArray:
    """Positions (in ``snapshot.points(layer)``) of the facilities that provide coverage: with
    ``active_only`` (what every user-facing entry asks by default: what serves residents
    today) only active ones, else also the suspended and relocated ones (never the retired)."""
    try:
        points = snapshot.points(layer)
    except ValueError:
        names = ", ".join(n.value for n in LayerName if n is not LayerName.grids)
        raise CoverageInputError(f"unknown layer {quote(layer)}; one of {names}", "layer") from None
    keep = np.ones(len(points), dtype=bool)
    if service is not None:
        if points.name is not LayerName.stalls:
            raise CoverageInputError("service applies to the stalls layer only", "service")
        if service not in SERVICES:
            raise CoverageInputError(
                f"unknown service {quote(service)}; one of {', '.join(SERVICES)}", "service"
            )
        offered = points.frame.get("services", [])
        keep &= np.array([service in (s if s is not None else ()) for s in offered], dtype=bool)
    if "status" in points.frame:
        status = points.frame["status"].to_numpy(dtype=object)
        # A retired facility serves nobody; suspended or relocated ones count unless active_only.
        keep &= status != "retired"
        if active_only:
            keep &= status == "active"
    return np.flatnonzero(keep).astype(np.int64)


def _polygonal(geoms: ObjArray) -> ObjArray:
    """Drop the lines and points an overlay may return where shapes merely touch."""
    kinds = shapely.get_type_id(geoms)
    mixed = np.flatnonzero(kinds == shapely.GeometryType.GEOMETRYCOLLECTION)
    if len(mixed):
        out = geoms.copy()
        for i in mixed:
            parts = shapely.get_parts(geoms[i])
            polys = parts[shapely.get_dimensions(parts) == 2]
            out[i] = shapely.union_all(polys) if len(polys) else None
        return out
    return geoms


def _union_groups(pieces: ObjArray, group: IntArray, n_groups: int) -> ObjArray:
    """Union ``pieces`` by ``group`` (0..n_groups-1) with a vectorised, padded union_all."""
    out = np.full(n_groups, None, dtype=object)
    if len(pieces) == 0:
        return out
    order = np.argsort(group, kind="stable")
    pieces, group = pieces[order], group[order]
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(group)) - starts[group]
    single = counts == 1
    first = starts[single]
    out[single] = pieces[first]
    # Bucket the groups by size (powers of two) so the padding stays small.
    multi = np.flatnonzero(counts > 1)
    if len(multi):
        width = 2 ** np.ceil(np.log2(counts[multi])).astype(int)
        for w in np.unique(width):
            gs = multi[width == w]
            table = np.full((len(gs), int(w)), None, dtype=object)
            slot = np.full(n_groups, -1)
            slot[gs] = np.arange(len(gs))
            sel = slot[group] >= 0
            table[slot[group[sel]], rank[sel]] = pieces[sel]
            out[gs] = shapely.union_all(table, axis=1)
    return out


def cover_grids(
    grids: ObjArray,
    x: FloatArray,
    y: FloatArray,
    radius_m: float,
    progress: Progress | None = None,
) -> tuple[FloatArray, ObjArray]:
    """Covered area (m²) and covered part (metric geometry or None) of each metric grid polygon
    within ``radius_m`` of any of the metric points ``(x, y)``."""
    n = len(grids)
    covered = np.zeros(n)
    parts = np.full(n, None, dtype=object)
    if n == 0 or len(x) == 0:
        if progress:
            progress(n)
        return covered, parts
    disc = discs(x, y, radius_m)
    reach = shapely.box(x - radius_m, y - radius_m, x + radius_m, y + radius_m)
    apothem = radius_m * DISC_AREA_SCALE * math.cos(_THETA / 2.0)
    bounds = shapely.bounds(grids)
    # Grids per chunk: bounds the pair arrays when every disc reaches every grid (huge radius).
    step = int(np.clip(PAIRS_PER_CHUNK // len(x), 1000, CHUNK_GRIDS))
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        # A few disc boxes against a tree of this chunk's grids (far cheaper than a distance
        # query per grid), then keep pairs whose grid box lies within the radius.
        f, g = STRtree(grids[lo:hi]).query(reach)
        g = g + lo
        b = bounds[g]
        nx = np.maximum(np.maximum(b[:, 0] - x[f], x[f] - b[:, 2]), 0.0)
        ny = np.maximum(np.maximum(b[:, 1] - y[f], y[f] - b[:, 3]), 0.0)
        near = nx * nx + ny * ny <= radius_m * radius_m
        g, f, b = g[near], f[near], b[near]
        # Wholly inside one disc: the farthest corner of the grid's box is within the apothem.
        dx = np.maximum(np.abs(b[:, 0] - x[f]), np.abs(b[:, 2] - x[f]))
        dy = np.maximum(np.abs(b[:, 1] - y[f]), np.abs(b[:, 3] - y[f]))
        full = np.zeros(n, dtype=bool)
        full[g[dx * dx + dy * dy <= apothem * apothem]] = True
        whole = np.flatnonzero(full)
        parts[whole] = grids[whole]
        partial = ~full[g]
        g, f = g[partial], f[partial]
        if len(g):
            pieces = _polygonal(shapely.intersection(grids[g], disc[f]))
            ok = ~(shapely.is_missing(pieces) | shapely.is_empty(pieces))
            g, pieces = g[ok], pieces[ok]
            touched, local = np.unique(g, return_inverse=True)
            parts[touched] = _union_groups(pieces, local.astype(np.int64), len(touched))
        if progress:
            progress(hi - lo)
    have = ~shapely.is_missing(parts)
    covered[have] = shapely.area(parts[have])
    return covered, parts


@dataclass(frozen=True, eq=False)
class GridCover:
    """Per-grid coverage of one facility set at one radius (metric CRS), kept for what-ifs."""

    layer: str
    radius_m: float
    service: str | None
    active_only: bool
    facilities: IntArray  # positions in the point layer
    x: FloatArray  # their metric coordinates
    y: FloatArray
    covered_m2: FloatArray  # per grid, in snapshot.grids order
    parts: ObjArray  # covered part of each grid (metric), None when nothing


def grid_cover(
    snapshot: Snapshot,
    layer: str,
    radius_m: float,
    service: str | None = None,
    active_only: bool = False,
    progress: Progress | None = None,
) -> GridCover:
    """Per-grid coverage, cached per (snapshot, layer, radius, service, active_only)."""
    radius_m = check_radius(radius_m)
    fac = facility_indices(snapshot, layer, service, active_only)
    key = (str(LayerName(layer)), radius_m, service, active_only)
    cached = _cache_get(snapshot, key)
    if cached is not None:
        if progress:
            progress(len(snapshot.grids))
        return cached
    points = snapshot.points(layer)
    x, y = points.index.x[fac], points.index.y[fac]
    covered, parts = cover_grids(snapshot.grids.index.metric, x, y, radius_m, progress)
    result = GridCover(key[0], radius_m, service, active_only, fac, x, y, covered, parts)
    _cache_put(snapshot, key, result)
    return result


def grid_population(snapshot: Snapshot) -> FloatArray:
    return snapshot.grids.frame["population"].fillna(0).to_numpy(dtype=np.float64)


def ratios(area: Any, covered: Any, population: Any, covered_population: Any) -> dict[str, Any]:
    """The six coverage figures; ratios are 0 where the denominator is 0."""
    area, covered = np.asarray(area, float), np.asarray(covered, float)
    pop, cpop = np.asarray(population, float), np.asarray(covered_population, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        area_ratio = np.where(area > 0, covered / np.where(area > 0, area, 1), 0.0)
        pop_ratio = np.where(pop > 0, cpop / np.where(pop > 0, pop, 1), 0.0)
    return {
        "area_m2": area,
        "covered_m2": covered,
        "area_ratio": np.clip(area_ratio, 0.0, 1.0),
        "population": pop,
        "covered_population": cpop,
        "population_ratio": np.clip(pop_ratio, 0.0, 1.0),
    }


def overall_of(area: FloatArray, covered: FloatArray, pop: FloatArray) -> dict[str, float]:
    cpop = _covered_population(area, covered, pop)
    figs = ratios(area.sum(), covered.sum(), pop.sum(), cpop.sum())
    return {k: float(v) for k, v in figs.items()}


def _covered_population(area: FloatArray, covered: FloatArray, pop: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, np.minimum(covered / np.where(area > 0, area, 1), 1.0), 0.0)
    return pop * share


def aggregate(
    snapshot: Snapshot, covered_m2: FloatArray, by: str, grids: IntArray | None = None
) -> pd.DataFrame:
    """Per-unit figures of ``by`` from per-grid covered areas (no geometry), sorted by code;
    only over the grids at positions ``grids`` if given (a what-if's affected units). Sums
    with numpy bincount: a what-if needs this in a few milliseconds, pandas groupby took 10."""
    check_level(by)
    frame = snapshot.grids.frame
    code_col, name_col = LEVELS[by]
    sel = np.arange(len(frame)) if grids is None else np.asarray(grids, dtype=np.int64)
    area = snapshot.grids.index.area_m2[sel]
    pop = grid_population(snapshot)[sel]
    covered = covered_m2[sel]
    codes = frame[code_col].to_numpy(dtype=object)[sel]
    names = frame[name_col].to_numpy(dtype=object)[sel]
    units, first, group = np.unique(codes.astype(str), return_index=True, return_inverse=True)
    n = len(units)

    def total(values: FloatArray) -> FloatArray:
        return np.bincount(group, weights=values, minlength=n).astype(np.float64)

    figs = ratios(
        total(area), total(covered), total(pop), total(_covered_population(area, covered, pop))
    )
    return pd.DataFrame({"code": units.astype(object), "name": names[first], **figs})


@dataclass(frozen=True, eq=False)
class CoverageResult:
    """Coverage of one layer at one radius, by one level. ``covered`` and ``gaps`` are built
    on first use (a city-wide union is the slow part and the API's main query never needs it)."""

    layer: str
    radius_m: float
    by: str
    service: str | None
    overall: dict[str, float]
    units: gpd.GeoDataFrame
    grid: GridCover
    snapshot: Snapshot

    @cached_property
    def covered(self) -> BaseGeometry:
        """The covered part of the managed area (WGS84)."""
        parts = self.grid.parts[~shapely.is_missing(self.grid.parts)]
        metric = shapely.union_all(parts) if len(parts) else shapely.Polygon()
        return to_wgs84(self.snapshot, np.array([metric], dtype=object))[0]

    @cached_property
    def gaps(self) -> gpd.GeoDataFrame:
        """Uncovered parts (WGS84) with their area and the population living in them."""
        return find_gaps(self.snapshot, self.grid)


def compute_coverage(
    snapshot: Snapshot,
    layer: str,
    radius_m: float,
    by: str = "grid",
    service: str | None = None,
    *,
    active_only: bool = False,
    progress: Progress | None = None,
) -> CoverageResult:
    """Coverage of ``layer`` (optionally only stalls offering ``service``) at ``radius_m``,
    aggregated by grid, community, street or district; only active facilities with
    ``active_only`` (the CLI, API and maps ask for it unless told to include inactive ones).
    An empty layer covers nothing."""
    check_level(by)
    cover = grid_cover(snapshot, layer, radius_m, service, active_only, progress)
    table = aggregate(snapshot, cover.covered_m2, by)
    if by == "grid":
        geoms = snapshot.grids.frame.geometry.to_numpy()
    else:
        units = snapshot.units(by)
        geoms = units.set_index("code").geometry.reindex(table["code"]).to_numpy()
    frame = gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geoms, crs=4326), crs=4326)
    overall = overall_of(snapshot.grids.index.area_m2, cover.covered_m2, grid_population(snapshot))
    return CoverageResult(
        layer=cover.layer,
        radius_m=cover.radius_m,
        by=by,
        service=service,
        overall=overall,
        units=frame,
        grid=cover,
        snapshot=snapshot,
    )


def to_wgs84(snapshot: Snapshot, metric: ObjArray) -> ObjArray:
    """Metric polygons back to lon/lat, repaired where moving the vertices made two nearly
    touching rings cross (the metric originals are valid; the repair moves nothing visibly)."""
    out = snapshot.projection.unproject(metric)
    bad = np.flatnonzero(~shapely.is_valid(out))
    if len(bad):
        out[bad] = _polygonal(
            shapely.make_valid(out[bad], method="structure", keep_collapsed=False)
        )
    return out


def uncovered_parts(snapshot: Snapshot, cover: GridCover) -> tuple[ObjArray, FloatArray]:
    """Uncovered part of each grid (metric geometry, None when fully covered) and its area."""
    grids = snapshot.grids.index.metric
    have = ~shapely.is_missing(cover.parts)
    rest = grids.copy()
    rest[have] = _polygonal(shapely.difference(grids[have], cover.parts[have]))
    rest_area = np.zeros(len(grids))
    ok = ~(shapely.is_missing(rest) | shapely.is_empty(rest))
    rest[~ok] = None
    rest_area[ok] = shapely.area(rest[ok])
    return rest, rest_area


def find_gaps(snapshot: Snapshot, cover: GridCover) -> gpd.GeoDataFrame:
    """Connected uncovered areas merged across grids (one city-wide union; for a planner's list
    see ``gaps.gap_pieces``): geometry (WGS84), area_m2, population, grids (how many grids
    each touches). Population is summed from the uncovered share of each grid."""
    area = snapshot.grids.index.area_m2
    pop = grid_population(snapshot)
    rest, rest_area = uncovered_parts(snapshot, cover)
    ok = ~shapely.is_missing(rest)
    keep = np.flatnonzero(ok & (rest_area >= GAP_MIN_AREA_M2))
    empty = gpd.GeoDataFrame(
        {"area_m2": [], "population": [], "grids": []}, geometry=gpd.GeoSeries([]), crs=4326
    )
    if len(keep) == 0:
        return empty
    pieces = rest[keep]
    piece_pop = pop[keep] * np.minimum(rest_area[keep] / area[keep], 1.0)
    merged = shapely.get_parts(shapely.union_all(pieces))
    merged = merged[shapely.area(merged) >= GAP_MIN_AREA_M2]
    if len(merged) == 0:
        return empty
    # Each grid's uncovered piece may be split over several gaps: share its population by area.
    tree = STRtree(merged)
    pi, mi = tree.query(pieces, predicate="intersects")
    shared = shapely.area(shapely.intersection(pieces[pi], merged[mi]))
    weight = np.where(rest_area[keep][pi] > 0, shared / rest_area[keep][pi], 0.0)
    gap_pop = np.bincount(mi, weights=piece_pop[pi] * weight, minlength=len(merged))
    gap_grids = np.bincount(mi[shared > 0], minlength=len(merged))
    order = np.argsort(-shapely.area(merged), kind="stable")
    merged = merged[order]
    return gpd.GeoDataFrame(
        {
            "area_m2": shapely.area(merged),
            "population": gap_pop[order],
            "grids": gap_grids[order],
        },
        geometry=gpd.GeoSeries(to_wgs84(snapshot, merged), crs=4326),
        crs=4326,
    )


# --- cache: per snapshot, LRU over (layer, radius, service, active_only) ---------------------

CACHE_SIZE = 16
_CACHE: weakref.WeakKeyDictionary[Snapshot, OrderedDict[tuple[Any, ...], GridCover]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def _cache_get(snapshot: Snapshot, key: tuple[Any, ...]) -> GridCover | None:
    with _LOCK:
        entries = _CACHE.get(snapshot)
        if entries is None or key not in entries:
            return None
        entries.move_to_end(key)
        return entries[key]


def _cache_put(snapshot: Snapshot, key: tuple[Any, ...], value: GridCover) -> None:
    with _LOCK:
        entries = _CACHE.setdefault(snapshot, OrderedDict())
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > CACHE_SIZE:
            entries.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached per-grid coverage (benchmarks time cold runs with it)."""
    with _LOCK:
        _CACHE.clear()


@dataclass(frozen=True)
class PointCheck:
    covered: bool
    within: IntArray  # positions in the point layer, nearest first
    distance_m: FloatArray  # geodesic metres
    nearest: int | None  # nearest eligible facility when none is within reach
    nearest_m: float | None


def check_point(
    snapshot: Snapshot,
    layer: str,
    radius_m: float,
    lon: float,
    lat: float,
    service: str | None = None,
    *,
    active_only: bool = False,
) -> PointCheck:
    """Is a WGS84 point within ``radius_m`` (geodesic) of a facility, which ones and how far."""
    radius_m = check_radius(radius_m)
    fac = facility_indices(snapshot, layer, service, active_only)
    index = snapshot.points(layer).index
    mask = np.zeros(len(index), dtype=bool)
    mask[fac] = True
    idx, dist = index.within(lon, lat, radius_m, mask)
    nearest, nearest_m = None, None
    if len(idx) == 0 and len(fac):
        j, d = index.nearest(lon, lat, 1, mask)
        if len(j):
            nearest, nearest_m = int(j[0]), float(d[0])
    return PointCheck(len(idx) > 0, idx, dist, nearest, nearest_m)
