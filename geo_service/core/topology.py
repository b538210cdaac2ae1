"""Topology checks a GIS clerk must be told about: grids must tile the managed area exactly.

Grids may not overlap, may not leave holes inside the area, and must sit inside the community,
street and district their codes name (codes nest, and a community's grids form one piece).
Every finding names the grids involved, so a clerk can open them in a GIS and fix them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from geo_service.core.crs import MetricProjection

MIN_AREA_M2 = 0.01  # below this, overlaps and gaps are floating-point noise
AREA_DECIMALS = 1  # areas are reported to 0.1 m²: survey precision, not float noise


@dataclass(frozen=True)
class Overlap:
    """Two grids sharing area; ``inside`` when the second lies wholly within the first."""

    codes: tuple[str, str]
    area_m2: float
    at: tuple[float, float]  # lon, lat of a point inside the overlap
    inside: bool = False


@dataclass(frozen=True)
class Gap:
    """A hole in the union of the grids: area inside the managed area no grid covers."""

    area_m2: float
    at: tuple[float, float]
    codes: tuple[str, ...]  # the grids around it


@dataclass(frozen=True)
class Misfiled:
    """A grid whose code does not nest in its community, street and district codes."""

    code: str
    community_code: str
    street_code: str
    district_code: str


@dataclass(frozen=True)
class Detached:
    """A grid touching no other grid of its community: it lies outside the community."""

    code: str
    community_code: str


@dataclass
class TopologyReport:
    overlaps: list[Overlap] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    hierarchy: list[Misfiled] = field(default_factory=list)
    detached: list[Detached] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return len(self.overlaps) + len(self.gaps) + len(self.hierarchy) + len(self.detached)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each list of findings, plus the total overlapping and gap area."""
        return {
            "overlaps": [_plain(o) for o in self.overlaps],
            "gaps": [_plain(g) for g in self.gaps],
            "hierarchy": [_plain(h) for h in self.hierarchy],
            "detached": [_plain(d) for d in self.detached],
            "overlap_area_m2": _area(sum(o.area_m2 for o in self.overlaps)),
            "gap_area_m2": _area(sum(g.area_m2 for g in self.gaps)),
        }


def _plain(item: object) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(item).items()}  # type: ignore[call-overload]


def _area(value: float) -> float:
    return round(float(value), AREA_DECIMALS)


def _points(geoms: np.ndarray) -> list[tuple[float, float]]:
    """A lon/lat inside each geometry, to 6 decimals (about 0.1 m)."""
    if not len(geoms):
        return []
    xy = np.round(shapely.get_coordinates(shapely.point_on_surface(geoms)), 6)
    return [(float(x), float(y)) for x, y in xy]


def check_grids(grids: gpd.GeoDataFrame) -> TopologyReport:
    """Overlaps (with area), gaps (holes in the union), codes that do not nest, detached grids.

    ``grids`` are the valid rows of a grid layer in WGS84 (``validate_layer``'s output)."""
    report = TopologyReport()
    if len(grids) == 0:
        return report
    proj = MetricProjection.for_bounds(tuple(float(b) for b in grids.total_bounds))  # type: ignore[arg-type]
    # Topology is decided on the stored lon/lat geometry (as PostGIS would); only the sizes are
    # measured in the metric CRS. Projecting first would bend shared edges into slivers.
    geoms = grids.geometry.to_numpy()
    codes = grids["code"].to_numpy(dtype=str)
    tree = shapely.STRtree(geoms)

    a, b = tree.query(geoms, predicate="overlaps")
    keep = a < b
    a, b = a[keep], b[keep]
    inter = shapely.intersection(geoms[a], geoms[b])
    area = shapely.area(proj.project(inter)) if len(inter) else np.empty(0)
    big = area > MIN_AREA_M2
    for i, j, ar, at in zip(a[big], b[big], area[big], _points(inter[big]), strict=True):
        report.overlaps.append(Overlap((codes[i], codes[j]), _area(ar), at))
    # Containment too: a grid lying wholly inside another is an overlap "overlaps" misses.
    a, b = tree.query(geoms, predicate="contains")
    # Two equal grids contain each other: that pair is reported once.
    keep = (a != b) & ((a < b) | ~shapely.equals(geoms[a], geoms[b]))
    a, b = a[keep], b[keep]
    area = shapely.area(proj.project(geoms[b])) if len(b) else np.empty(0)
    for i, j, ar, at in zip(a, b, area, _points(geoms[b]), strict=True):
        report.overlaps.append(Overlap((codes[i], codes[j]), _area(ar), at, inside=True))

    report.gaps = _gaps(geoms, codes, tree, proj)

    cc = grids["community_code"].to_numpy(dtype=str)
    sc = grids["street_code"].to_numpy(dtype=str)
    dc = grids["district_code"].to_numpy(dtype=str)
    bad = (
        (np.char.ljust(codes, 12).astype("<U12") != cc)
        | (cc.astype("<U9") != sc)
        | (sc.astype("<U6") != dc)
    )
    report.hierarchy = [Misfiled(codes[i], cc[i], sc[i], dc[i]) for i in np.flatnonzero(bad)]

    # A grid that touches no other grid of its community lies outside it.
    for community, members in grids.groupby("community_code").indices.items():
        if len(members) < 2:
            continue
        members_geoms = geoms[members]
        x, y = shapely.STRtree(members_geoms).query(members_geoms, predicate="intersects")
        touching = np.bincount(x[x != y], minlength=len(members))
        report.detached.extend(
            Detached(codes[members[lone]], str(community)) for lone in np.flatnonzero(touching == 0)
        )
    return report


def _gaps(
    geoms: np.ndarray, codes: np.ndarray, tree: shapely.STRtree, proj: MetricProjection
) -> list[Gap]:
    """The interior rings of the union, largest first, each with the grids around it."""
    union = shapely.union_all(geoms)  # not coverage_union: the input may be no valid coverage
    polys = shapely.get_parts(union)
    n_rings = shapely.get_num_interior_rings(polys)
    if not n_rings.sum():
        return []
    owner = np.repeat(np.arange(len(polys)), n_rings)
    ring_no = np.concatenate([np.arange(n) for n in n_rings])
    holes = shapely.polygons(shapely.get_interior_ring(polys[owner], ring_no))
    area = shapely.area(proj.project(holes))
    holes, area = holes[area > MIN_AREA_M2], area[area > MIN_AREA_M2]
    hole_idx, grid_idx = tree.query(holes, predicate="intersects")
    around: list[list[str]] = [[] for _ in range(len(holes))]
    for h, g in zip(hole_idx, grid_idx, strict=True):
        around[h].append(str(codes[g]))
    gaps = [
        Gap(_area(ar), at, tuple(sorted(set(ring))))
        for ar, at, ring in zip(area, _points(holes), around, strict=True)
    ]
    return sorted(gaps, key=lambda g: -g.area_m2)
