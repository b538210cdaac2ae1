"""Siting: choose ``p`` new sites that cover the most people not yet covered (MCLP).

Model. The maximal covering location problem (Church & ReVelle 1974) is solved with PySAL
``spopt.locate.MCLP`` and PuLP's bundled CBC (offline). spopt's ``from_cost_matrix`` writes a
term for every demand-candidate pair, zero or not (12 s just to build 3,000 x 800); the same
model is built here with only the pairs within the radius, then solved by spopt.

Demand. Weights are the *uncovered* population, so existing coverage is never paid for twice.
Grid centroids would be too coarse (a grid half covered already, or larger than the disc,
counts all or nothing), so each grid's uncovered part is sampled on a square lattice and its
uncovered population shared equally among its samples; a part too small to catch a lattice
point is represented by one interior point. The lattice spacing is a quarter of the radius,
widened if needed to keep at most ``MAX_DEMAND`` points. Demand points covered by exactly the
same candidates are merged (their weights summed), which shrinks the model without changing it.

Candidates are grid centroids (an interior point where the centroid falls outside a concave
grid) unless given, minus those in excluded units or areas.

Two figures, on purpose. The solver only sees the sampled demand: each lattice point stands for
a ``spacing`` × ``spacing`` cell and counts wholly in or wholly out of a disc, so its objective
(``estimated_gain``) is off by the cells cut by disc edges, a few percent either way. It serves
to choose among candidates. The gain reported for the chosen sites (``result.gain``) is then
measured exactly by the coverage engine (``what_if``: covered area × population density of each
grid); that is the figure to quote. ``SitingResult.note`` says so with the numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pulp
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry
from spopt.locate import MCLP
from spopt.locate.base import FacilityModelBuilder

from geo_service.analysis.coverage import (
    CoverageInputError,
    FloatArray,
    IntArray,
    grid_cover,
    grid_population,
    uncovered_parts,
)
from geo_service.analysis.places import describe_sites
from geo_service.analysis.whatif import WhatIfResult, project_sites, what_if
from geo_service.core.schema import LEVELS
from geo_service.core.snapshot import Snapshot

MAX_DEMAND = 6000
MAX_LATTICE = 400_000
MAX_P = 50
DEFAULT_TIME_LIMIT_S = 30.0


@dataclass(frozen=True, eq=False)
class SitingResult:
    p: int
    sites: pd.DataFrame  # lon, lat, candidate, gain_alone (population if only it), then
    #                      places.PLACE_COLUMNS (units containing it, landmark, label)
    result: WhatIfResult  # exact before/after with all chosen sites
    estimated_gain: float  # the MCLP objective on the sampled demand
    candidates: int  # candidates considered (after exclusions)
    demand_points: int  # sampled demand points (before merging)
    spacing_m: float
    status: str

    @property
    def gain(self) -> float:
        """People newly covered by all chosen sites, measured exactly: the figure to quote."""
        return float(self.result.gain["covered_population"])

    @property
    def estimate_difference(self) -> float:
        """``estimated_gain`` minus the exact gain, relative to the exact gain (0 when none)."""
        return (self.estimated_gain - self.gain) / self.gain if self.gain > 0 else 0.0

    def note(self) -> dict[str, str]:
        """Why two gains are reported, with this answer's numbers (Chinese and English)."""
        exact, est = self.gain, self.estimated_gain
        diff = self.estimate_difference * 100
        side_zh = "高" if diff >= 0 else "低"
        side_en = "above" if diff >= 0 else "below"
        return {
            "zh": (
                f"新增覆盖人口以 gain.covered_population（{exact:,.0f} 人）为准：它按新站点实际"
                "覆盖的面积和各网格人口密度精确计算。estimated_gain（"
                f"{est:,.0f} 人）是选址模型在 {self.demand_points:,} 个抽样需求点"
                f"（间距 {self.spacing_m:,.0f} 米，每点整体计入或不计入）上的目标值，只用于在"
                f"候选点之间比较取舍，比精确值{side_zh} {abs(diff):.1f}%。"
            ),
            "en": (
                f"Quote gain.covered_population ({exact:,.0f} people): it is measured exactly "
                "from the area the new sites cover and each grid's population density. "
                f"estimated_gain ({est:,.0f}) is the siting model's objective on "
                f"{self.demand_points:,} demand points sampled {self.spacing_m:,.0f} m apart "
                "(each counted wholly in or out), used only to choose among candidates; it is "
                f"{abs(diff):.1f}% {side_en} the exact figure."
            ),
        }


def default_candidates(snapshot: Snapshot) -> tuple[FloatArray, FloatArray]:
    """Grid centroids in WGS84 (an interior point where a concave grid's centroid is outside)."""
    geoms = snapshot.grids.index.metric
    if len(geoms) == 0:
        return np.empty(0), np.empty(0)
    pts = shapely.centroid(geoms)
    outside = ~shapely.contains(geoms, pts)
    pts[outside] = shapely.point_on_surface(geoms[outside])
    return snapshot.projection.inverse(shapely.get_x(pts), shapely.get_y(pts))


def excluded_grids(snapshot: Snapshot, codes: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Grids inside any of ``codes`` (grid, community, street or district codes)."""
    frame = snapshot.grids.frame
    wanted = set(codes)
    out = np.zeros(len(frame), dtype=bool)
    found: set[str] = set()
    for code_col, _ in LEVELS.values():
        col = frame[code_col].to_numpy(dtype=object)
        hit = np.isin(col, list(wanted))
        out |= hit
        found.update(col[hit].tolist())
    unknown = sorted(wanted - found)
    if unknown:
        raise CoverageInputError(f"unknown unit codes: {', '.join(unknown)}", "exclude")
    return out


def demand_points(
    snapshot: Snapshot, rest: npt.NDArray[np.object_], rest_pop: FloatArray, spacing: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Lattice samples (metric x, y, weight) of the uncovered parts; weights sum to rest_pop."""
    live = np.flatnonzero(~shapely.is_missing(rest) & (rest_pop > 0))
    if len(live) == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    pieces = rest[live]
    minx, miny, maxx, maxy = shapely.total_bounds(pieces)
    xs = np.arange(minx + spacing / 2, maxx, spacing)
    ys = np.arange(miny + spacing / 2, maxy, spacing)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    pi, ti = STRtree(pieces).query(shapely.points(gx, gy), predicate="within")
    pi, first = np.unique(pi, return_index=True)  # a point on a shared edge goes to one piece
    ti = ti[first]
    counts = np.bincount(ti, minlength=len(pieces))
    lone = np.flatnonzero(counts == 0)
    anchor = shapely.point_on_surface(pieces[lone])
    x = np.concatenate([gx[pi], shapely.get_x(anchor)])
    y = np.concatenate([gy[pi], shapely.get_y(anchor)])
    owner = np.concatenate([ti, lone])
    share = rest_pop[live] / np.maximum(counts, 1)
    return x, y, share[owner]


def lattice_spacing(
    radius_m: float, rest_area: float, bounds_area: float, spacing: float | None
) -> float:
    if spacing is not None:
        if not math.isfinite(spacing) or spacing <= 0:
            raise CoverageInputError("must be a positive number of metres", "spacing_m")
        return float(spacing)
    return max(
        radius_m / 4.0,
        math.sqrt(max(rest_area, 0.0) / MAX_DEMAND),
        math.sqrt(max(bounds_area, 0.0) / MAX_LATTICE),
    )


def solve_mclp(
    pairs_demand: IntArray,
    pairs_cand: IntArray,
    weights: FloatArray,
    n_cand: int,
    p: int,
    time_limit_s: float,
) -> tuple[IntArray, float, str]:
    """Chosen candidate positions, objective value and solver status of a sparse MCLP."""
    # Merge demand points covered by the same candidate set.
    order = np.lexsort((pairs_cand, pairs_demand))
    pairs_demand, pairs_cand = pairs_demand[order], pairs_cand[order]
    cuts = np.flatnonzero(np.diff(pairs_demand)) + 1
    groups: dict[bytes, float] = {}
    members: dict[bytes, IntArray] = {}
    for d_idx, cands in zip(np.split(pairs_demand, cuts), np.split(pairs_cand, cuts), strict=True):
        key = cands.tobytes()
        groups[key] = groups.get(key, 0.0) + float(weights[d_idx[0]])
        members.setdefault(key, cands)
    with warnings.catch_warnings():
        # PuLP 3 announces API changes for 4.0 (spopt's variables, the bundled CBC); the
        # bundled CBC is what keeps this working offline.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = pulp.LpProblem("mclp", pulp.LpMaximize)
        mclp = MCLP("mclp", model)
        FacilityModelBuilder.add_facility_integer_variable(mclp, range(n_cand), "x[{i}]")
        FacilityModelBuilder.add_client_integer_variable(mclp, range(len(groups)), "y[{i}]")
        x, y = mclp.fac_vars, mclp.cli_vars
        model += pulp.lpSum(w * y[i] for i, w in enumerate(groups.values()))
        for i, cands in enumerate(members.values()):
            model += pulp.lpSum(x[j] for j in cands.tolist()) >= y[i]
        FacilityModelBuilder.add_facility_constraint(mclp, p)
        mclp.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s), results=False)
    chosen = np.array([j for j, v in enumerate(x) if (v.value() or 0) > 0.5], dtype=np.int64)
    status = pulp.LpStatus[model.status]
    return chosen, float(pulp.value(model.objective) or 0.0), status


def optimize_sites(
    snapshot: Snapshot,
    layer: str,
    radius_m: float,
    p: int,
    candidates: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    exclude: Sequence[str] = (),
    exclude_area: BaseGeometry | None = None,
    service: str | None = None,
    *,
    by: str = "grid",
    active_only: bool = False,
    spacing_m: float | None = None,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
) -> SitingResult:
    """The ``p`` sites (from ``candidates`` WGS84 lon/lat, default grid centroids) that newly
    cover the most people, with the exact gain of adding them all and of each one alone."""
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 1 <= p <= MAX_P:
        raise CoverageInputError(f"must be a whole number from 1 to {MAX_P}", "p")
    base = grid_cover(snapshot, layer, radius_m, service, active_only)
    r = base.radius_m

    if candidates is None:
        clon, clat = default_candidates(snapshot)
        label = snapshot.grids.codes.astype(object)
    else:
        clon = np.atleast_1d(np.asarray(candidates[0], dtype=np.float64))
        clat = np.atleast_1d(np.asarray(candidates[1], dtype=np.float64))
        label = np.array([f"candidate {i}" for i in range(len(clon))], dtype=object)
    cx, cy = project_sites(snapshot, clon, clat, "candidates") if len(clon) else (clon, clat)
    cgrid = snapshot.grids.index.locate(clon, clat) if len(clon) else np.empty(0, np.int64)
    allowed = np.ones(len(clon), dtype=bool)
    if exclude:
        banned = excluded_grids(snapshot, exclude)
        allowed &= ~((cgrid >= 0) & banned[np.maximum(cgrid, 0)])
    if exclude_area is not None:
        allowed &= ~shapely.intersects(exclude_area, shapely.points(clon, clat))
    keep = np.flatnonzero(allowed)

    rest, rest_area = uncovered_parts(snapshot, base)
    area = snapshot.grids.index.area_m2
    rest_pop = grid_population(snapshot) * np.minimum(rest_area / np.where(area > 0, area, 1), 1)
    bounds = shapely.total_bounds(snapshot.grids.index.metric) if len(area) else np.zeros(4)
    spacing = lattice_spacing(
        r,
        float(rest_area.sum()),
        float((bounds[2] - bounds[0]) * (bounds[3] - bounds[1])),
        spacing_m,
    )
    dx, dy, dw = demand_points(snapshot, rest, rest_pop, spacing)

    chosen = np.empty(0, dtype=np.int64)
    objective, status = 0.0, "Nothing to cover"
    if len(dx) and len(keep):
        ci, di = STRtree(shapely.points(dx, dy)).query(
            shapely.points(cx[keep], cy[keep]), predicate="dwithin", distance=r
        )
        useful, local = np.unique(ci, return_inverse=True)
        if len(useful):
            picked, objective, status = solve_mclp(
                di, local.astype(np.int64), dw, len(useful), min(p, len(useful)), time_limit_s
            )
            chosen = keep[useful[picked]]

    result = what_if(
        snapshot,
        layer,
        r,
        clon[chosen],
        clat[chosen],
        by=by,
        service=service,
        active_only=active_only,
    )
    alone = [
        what_if(
            snapshot, layer, r, clon[[j]], clat[[j]], service=service, active_only=active_only
        ).gain["covered_population"]
        for j in chosen
    ]
    sites = pd.concat(
        [
            pd.DataFrame(
                {
                    "lon": clon[chosen],
                    "lat": clat[chosen],
                    "candidate": label[chosen],
                    "gain_alone": np.asarray(alone, dtype=np.float64),
                }
            ),
            describe_sites(snapshot, clon[chosen], clat[chosen]),
        ],
        axis=1,
    )
    return SitingResult(
        p=p,
        sites=sites,
        result=result,
        estimated_gain=objective,
        candidates=len(keep),
        demand_points=len(dx),
        spacing_m=spacing,
        status=status,
    )
