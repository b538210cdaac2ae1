"""What-if: coverage before and after adding candidate sites and/or removing facilities.

Only the grids within ``radius_m`` of a changed site can change, so only those are recomputed
(against the new facility set) on top of the cached per-grid coverage; the units reported are
those containing a recomputed grid whose covered area actually moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from geo_service.analysis.coverage import (
    CoverageInputError,
    FloatArray,
    GridCover,
    IntArray,
    aggregate,
    check_level,
    cover_grids,
    grid_cover,
    grid_population,
    overall_of,
)
from geo_service.analysis.places import describe_sites
from geo_service.core.schema import LEVELS
from geo_service.core.snapshot import Snapshot

CHANGE_TOLERANCE_M2 = 1e-6
"""A unit whose covered area moved by less than this has not changed (float noise)."""


@dataclass(frozen=True, eq=False)
class WhatIfResult:
    layer: str
    radius_m: float
    by: str
    service: str | None
    active_only: bool  # only active facilities counted (suspended/relocated left out)
    before: dict[str, float]
    after: dict[str, float]
    units: pd.DataFrame  # code, name, area_m2, population, {covered_m2, covered_population,
    #                      area_ratio, population_ratio}_{before,after}; changed units only
    added: pd.DataFrame  # lon, lat (WGS84), x, y (metric), then places.PLACE_COLUMNS
    removed: tuple[str, ...]
    grids: IntArray  # positions of the recomputed grids
    covered_after: FloatArray  # their covered area after the change

    @property
    def gain(self) -> dict[str, float]:
        return {
            k: self.after[k] - self.before[k]
            for k in ("covered_m2", "area_ratio", "covered_population", "population_ratio")
        }


def project_sites(
    snapshot: Snapshot, lon: npt.ArrayLike, lat: npt.ArrayLike, field: str = "add"
) -> tuple[FloatArray, FloatArray]:
    """WGS84 sites to metric coordinates; sites the metric CRS cannot represent are an error."""
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    x, y = snapshot.projection.forward(lon, lat)
    bad = ~(snapshot.projection.covers(lon, lat) & np.isfinite(x) & np.isfinite(y))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CoverageInputError(
            f"item {i} ({lon[i]:g}, {lat[i]:g}) is too far from the data for its metric CRS "
            f"EPSG:{snapshot.projection.epsg}",
            field,
        )
    return x, y


def removed_positions(snapshot: Snapshot, layer: str, codes: Sequence[str]) -> IntArray:
    points = snapshot.points(layer)
    unknown = [c for c in codes if c not in points.position]
    if unknown:
        raise CoverageInputError(f"unknown {layer} codes: {', '.join(map(str, unknown))}", "remove")
    return np.array(sorted({points.position[c] for c in codes}), dtype=np.int64)


def what_if(
    snapshot: Snapshot,
    layer: str,
    radius_m: float,
    add_lon: npt.ArrayLike = (),
    add_lat: npt.ArrayLike = (),
    remove: Sequence[str] = (),
    by: str = "grid",
    service: str | None = None,
    *,
    active_only: bool = False,
) -> WhatIfResult:
    """Coverage before and after adding sites (WGS84 lon/lat) and removing facility codes."""
    check_level(by)
    base = grid_cover(snapshot, layer, radius_m, service, active_only)
    ax, ay = (
        project_sites(snapshot, add_lon, add_lat)
        if np.size(add_lon)
        else (
            np.empty(0),
            np.empty(0),
        )
    )
    gone = removed_positions(snapshot, layer, remove)
    dropped = np.isin(base.facilities, gone)  # removing one outside the subset changes nothing
    changed_x = np.concatenate([ax, base.x[dropped]])
    changed_y = np.concatenate([ay, base.y[dropped]])
    after_cover = recompute(snapshot, base, changed_x, changed_y, keep=~dropped, add=(ax, ay))
    grids, covered_after = after_cover

    area = snapshot.grids.index.area_m2
    pop = grid_population(snapshot)
    covered = base.covered_m2.copy()
    covered[grids] = covered_after
    before = overall_of(area, base.covered_m2, pop)
    after = overall_of(area, covered, pop)
    units = changed_units(snapshot, base.covered_m2, covered, grids, by)

    alon = np.atleast_1d(np.asarray(add_lon, dtype=np.float64))
    alat = np.atleast_1d(np.asarray(add_lat, dtype=np.float64))
    added = pd.concat(
        [
            pd.DataFrame({"lon": alon, "lat": alat, "x": ax, "y": ay}),
            describe_sites(snapshot, alon, alat),
        ],
        axis=1,
    )
    return WhatIfResult(
        layer=base.layer,
        radius_m=base.radius_m,
        by=by,
        service=service,
        active_only=active_only,
        before=before,
        after=after,
        units=units,
        added=added,
        removed=tuple(remove),
        grids=grids,
        covered_after=covered_after,
    )


def recompute(
    snapshot: Snapshot,
    base: GridCover,
    changed_x: FloatArray,
    changed_y: FloatArray,
    keep: npt.NDArray[np.bool_],
    add: tuple[FloatArray, FloatArray],
) -> tuple[IntArray, FloatArray]:
    """Grids within the radius of a changed site, and their covered area with the new set."""
    if len(changed_x) == 0:
        return np.empty(0, np.int64), np.empty(0)
    tree = snapshot.grids.index.metric_tree
    _, hit = tree.query(
        shapely.points(changed_x, changed_y), predicate="dwithin", distance=base.radius_m
    )
    grids = np.unique(hit).astype(np.int64)
    x = np.concatenate([base.x[keep], add[0]])
    y = np.concatenate([base.y[keep], add[1]])
    covered, _ = cover_grids(snapshot.grids.index.metric[grids], x, y, base.radius_m)
    return grids, covered


def changed_units(
    snapshot: Snapshot,
    before: FloatArray,
    after: FloatArray,
    grids: IntArray,
    by: str,
) -> pd.DataFrame:
    """Before/after figures of the ``by`` units that contain a changed grid."""
    moved = grids[np.abs(after[grids] - before[grids]) > CHANGE_TOLERANCE_M2]
    if by == "grid":
        members = moved
    else:
        col = snapshot.grids.frame[LEVELS[by][0]].to_numpy(dtype=object)
        members = np.flatnonzero(np.isin(col, np.unique(col[moved]))) if len(moved) else moved
    b = aggregate(snapshot, before, by, members)
    a = aggregate(snapshot, after, by, members)
    out = b[["code", "name", "area_m2", "population"]].copy()
    for key in ("covered_m2", "area_ratio", "covered_population", "population_ratio"):
        out[f"{key}_before"] = b[key].to_numpy()
        out[f"{key}_after"] = a[key].to_numpy()
    return out.reset_index(drop=True)
