"""Topology checks a GIS clerk must be told about: grids must tile the managed area exactly.

Grids may not overlap, may not leave holes inside the area, and must sit inside the community,
street and district their codes name (codes nest, and a community's grids form one piece).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

from geo_service.core.crs import MetricProjection
from geo_service.core.layers import LoadReport

MIN_AREA_M2 = 0.01  # below this, overlaps and gaps are floating-point noise


@dataclass
class TopologyReport:
    load: LoadReport
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    hierarchy: list[dict[str, Any]] = field(default_factory=list)
    detached: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return (
            len(self.load.rejected)
            + len(self.overlaps)
            + len(self.gaps)
            + len(self.hierarchy)
            + len(self.detached)
        )

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.error_count,
            "rows": self.load.to_dict(),
            "overlaps": self.overlaps,
            "gaps": self.gaps,
            "hierarchy": self.hierarchy,
            "detached": self.detached,
        }


def check_grids(grids: gpd.GeoDataFrame, load: LoadReport) -> TopologyReport:
    """Overlaps (with area), gaps (holes in the union), codes that do not nest, detached grids."""
    report = TopologyReport(load=load)
    if len(grids) == 0:
        return report
    proj = MetricProjection.for_bounds(tuple(float(b) for b in grids.total_bounds))  # type: ignore[arg-type]
    # Topology is decided on the stored lon/lat geometry (as PostGIS would); only the sizes are
    # measured in the metric CRS. Projecting first would bend shared edges into slivers.
    geoms = grids.geometry.to_numpy()
    codes = grids["code"].to_numpy(dtype=object)

    def lonlat(g: shapely.Geometry) -> list[float]:
        c = shapely.point_on_surface(g)
        return [round(float(shapely.get_x(c)), 6), round(float(shapely.get_y(c)), 6)]

    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="overlaps")
    keep = a < b
    a, b = a[keep], b[keep]
    inter = shapely.intersection(geoms[a], geoms[b])
    area = shapely.area(proj.project(inter)) if len(inter) else np.empty(0)
    for i, j, ar, g in zip(a, b, area, inter, strict=True):
        if ar > MIN_AREA_M2:
            report.overlaps.append(
                {"codes": [codes[i], codes[j]], "area_m2": round(float(ar), 2), "at": lonlat(g)}
            )
    # Containment too: a grid lying wholly inside another is an overlap "overlaps" misses.
    a, b = tree.query(geoms, predicate="contains")
    for i, j in zip(a, b, strict=True):
        if i != j:
            report.overlaps.append(
                {
                    "codes": [codes[i], codes[j]],
                    "area_m2": round(float(shapely.area(proj.project(geoms[j]))), 2),
                    "at": lonlat(geoms[j]),
                    "note": f"{codes[j]} lies inside {codes[i]}",
                }
            )

    union = shapely.union_all(geoms)  # not coverage_union: the input may be no valid coverage
    for poly in shapely.get_parts(union):
        for k in range(shapely.get_num_interior_rings(poly)):
            hole = shapely.Polygon(shapely.get_interior_ring(poly, k))
            ar = float(shapely.area(proj.project(hole)))
            if ar > MIN_AREA_M2:
                report.gaps.append({"area_m2": round(ar, 2), "at": lonlat(hole)})

    cc = grids["community_code"].astype(str).to_numpy()
    sc = grids["street_code"].astype(str).to_numpy()
    dc = grids["district_code"].astype(str).to_numpy()
    code_s = codes.astype(str)
    bad = (
        (np.char.ljust(code_s, 12).astype("<U12") != cc)
        | (cc.astype("<U9") != sc)
        | (sc.astype("<U6") != dc)
    )
    for i in np.flatnonzero(bad):
        report.hierarchy.append(
            {
                "code": codes[i],
                "message": f"code {codes[i]} does not nest in community {cc[i]}, "
                f"street {sc[i]}, district {dc[i]}",
            }
        )

    # A grid that touches no other grid of its community lies outside it.
    groups = grids.groupby("community_code").indices
    for community, members in groups.items():
        if len(members) < 2:
            continue
        members_geoms = geoms[members]
        t = shapely.STRtree(members_geoms)
        x, y = t.query(members_geoms, predicate="intersects")
        touching = np.bincount(x[x != y], minlength=len(members))
        for lone in np.flatnonzero(touching == 0):
            report.detached.append(
                {
                    "code": codes[members[lone]],
                    "message": f"touches no other grid of community {community}",
                }
            )
    return report
