"""A synthetic city of N square grids with stalls and vendor clusters, for benchmarks.

Grids are ~110 m squares on a lattice around Weifang, grouped 10x10 into communities, 10x10
communities into streets, and streets into four districts, with codes that nest like real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from geo_service.core.crs import MetricProjection
from geo_service.core.schema import CLUSTER_KINDS, SERVICES

ORIGIN_LON, ORIGIN_LAT = 119.0, 36.6
CELL_M = 110.0
DISTRICTS = ("370702", "370703", "370704", "370705")
DISTRICT_NAMES = ("潍城区", "寒亭区", "坊子区", "奎文区")

Progress = Callable[[int], None]


def lattice_shape(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    return rows, cols


def synth_grids(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    rows, cols = lattice_shape(n)
    proj = MetricProjection(4549)
    x0, y0 = proj.forward(ORIGIN_LON, ORIGIN_LAT)
    k = np.arange(n)
    r, c = k // cols, k % cols
    minx, miny = float(x0) + c * CELL_M, float(y0) + (rows - 1 - r) * CELL_M
    # Build the lattice vertices once and project them together, so neighbours share
    # exactly the same coordinates (no gaps or overlaps from rounding).
    vx = float(x0) + np.arange(cols + 1) * CELL_M
    vy = float(y0) + np.arange(rows + 1) * CELL_M
    gx, gy = np.meshgrid(vx, vy)
    lon, lat = proj.inverse(gx.ravel(), gy.ravel())
    lon = np.round(lon, 7).reshape(gy.shape)
    lat = np.round(lat, 7).reshape(gy.shape)
    ci = ((minx - float(x0)) / CELL_M).round().astype(int)
    ri = ((miny - float(y0)) / CELL_M).round().astype(int)
    ring = np.stack(
        [
            np.stack([lon[ri, ci], lat[ri, ci]], -1),
            np.stack([lon[ri, ci + 1], lat[ri, ci + 1]], -1),
            np.stack([lon[ri + 1, ci + 1], lat[ri + 1, ci + 1]], -1),
            np.stack([lon[ri + 1, ci], lat[ri + 1, ci]], -1),
            np.stack([lon[ri, ci], lat[ri, ci]], -1),
        ],
        axis=1,
    )
    geoms = shapely.polygons(ring)

    comm_r, comm_c = r // 10, c // 10
    comm_cols = (cols + 9) // 10
    street_r, street_c = comm_r // 10, comm_c // 10
    street_cols = (comm_cols + 9) // 10
    # Quadrants make the four districts.
    half_r, half_c = max(rows // 2, 1), max(cols // 2, 1)
    d = (r >= half_r).astype(int) * 2 + (c >= half_c).astype(int)
    street_no = street_r * street_cols + street_c + 1
    comm_local = (comm_r % 10) * 10 + (comm_c % 10) + 1
    grid_local = (r % 10) * 10 + (c % 10) + 1
    dcode = np.array(DISTRICTS)[d]
    scode = np.char.add(dcode, np.char.zfill((street_no % 1000).astype(str), 3))
    ccode = np.char.add(scode, np.char.zfill(comm_local.astype(str), 3))
    gcode = np.char.add(ccode, np.char.zfill(grid_local.astype(str), 3))
    rng = np.random.default_rng(seed)
    households = rng.integers(150, 301, n)
    frame = gpd.GeoDataFrame(
        {
            "code": gcode,
            "name": np.char.add(np.char.add("合成网格", gcode.astype(str)), ""),
            "community_code": ccode,
            "community_name": np.char.add("合成社区", ccode),
            "street_code": scode,
            "street_name": np.char.add("合成街道", scode),
            "district_code": dcode,
            "district_name": np.array(DISTRICT_NAMES)[d],
            "officer_name": "示例网格员",
            "officer_phone": "0536-555-0000",
            "households": households,
            "population": np.round(households * rng.uniform(2.4, 3.0, n)).astype(int),
        },
        geometry=geoms,
        crs=4326,
    )
    # A street spanning two districts would break nesting: keep district in the street code.
    return frame.drop_duplicates("code").sort_values("code").reset_index(drop=True)


def synth_points(
    grids: gpd.GeoDataFrame, n: int, prefix: str, seed: int, kind: str
) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = grids.total_bounds
    lon = rng.uniform(minx, maxx, n)
    lat = rng.uniform(miny, maxy, n)
    serial = np.char.zfill((np.arange(n) + 1).astype(str), 4)
    codes = np.char.add(f"{prefix}-370705-", serial)
    data: dict[str, object] = {"code": codes, "name": np.char.add(f"合成{kind}", serial)}
    if prefix == "XLP":
        pick = rng.integers(1, 8, n)  # bit mask over the three services
        data["services"] = [
            ";".join(s for b, s in enumerate(SERVICES) if m & (1 << b)) for m in pick
        ]
        data["hours"] = "08:00-18:00"
        data["status"] = "active"
    else:
        data["kind"] = np.array(CLUSTER_KINDS)[rng.integers(0, len(CLUSTER_KINDS), n)]
        data["hours"] = "06:00-22:00"
        data["pitches"] = rng.integers(20, 300, n)
        data["status"] = "active"
    return gpd.GeoDataFrame(data, geometry=shapely.points(lon, lat), crs=4326)


def write_city(
    out_dir: Path,
    n_grids: int,
    n_stalls: int,
    n_clusters: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write grids/stalls/vendor_clusters GeoJSON files that ``load_dataset`` reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = synth_grids(n_grids, seed)
    if progress:
        progress(1)
    stalls = synth_points(grids, n_stalls, "XLP", seed + 1, "小蓝棚")
    clusters = synth_points(grids, n_clusters, "TDQ", seed + 2, "摊点群")
    if progress:
        progress(1)
    for name, frame in (("grids", grids), ("stalls", stalls), ("vendor_clusters", clusters)):
        path = out_dir / f"{name}.geojson"
        tmp = path.with_suffix(".geojson.tmp")
        pyogrio.write_dataframe(frame, tmp, driver="GeoJSON", COORDINATE_PRECISION=7)
        tmp.replace(path)
        if progress:
            progress(1)
    return {"grids": len(grids), "stalls": len(stalls), "vendor_clusters": len(clusters)}
