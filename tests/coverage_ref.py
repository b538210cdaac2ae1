"""PostGIS reference for coverage: ST_Area(ST_Intersection(grid, ST_Union(ST_Buffer(point, r))))
in the metric CRS, per grid; used by the coverage tests and the benchmark."""

from __future__ import annotations

import numpy as np
import psycopg
import shapely

from geo_service.core.snapshot import Snapshot
from tests.pgref import load_table

REFERENCE_QUAD_SEGS = 64  # finer than the engine's 32, so it stands closer to the true circle


def load_coverage_tables(
    conn: psycopg.Connection,
    grid_codes: np.ndarray,
    grid_geoms: np.ndarray,
    point_codes: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    epsg: int,
    prefix: str = "cov",
) -> None:
    """WGS84 grids and points into ``{prefix}_grids`` / ``{prefix}_points``, transformed by
    PostGIS itself into ``epsg`` (so the projection is independent of the engine's pyproj)."""
    load_table(conn, f"{prefix}_grids_wgs", list(grid_codes), grid_geoms)
    load_table(conn, f"{prefix}_points_wgs", list(point_codes), shapely.points(lon, lat))
    for kind in ("grids", "points"):
        conn.execute(f"DROP TABLE IF EXISTS {prefix}_{kind}")
        conn.execute(
            f"CREATE TABLE {prefix}_{kind} AS SELECT code, ST_Transform(geom, {epsg}) AS geom "
            f"FROM {prefix}_{kind}_wgs"
        )
        conn.execute(f"CREATE INDEX ON {prefix}_{kind} USING gist (geom)")
        conn.execute(f"ANALYZE {prefix}_{kind}")


def load_snapshot(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    layer: str,
    keep: np.ndarray | None = None,
    prefix: str = "cov",
) -> None:
    """A snapshot's grids and one point layer (optionally only where ``keep``) into PostGIS."""
    points = snapshot.points(layer)
    sel = slice(None) if keep is None else keep
    load_coverage_tables(
        conn,
        snapshot.grids.codes,
        snapshot.grids.frame.geometry.to_numpy(),
        points.codes[sel],
        points.index.lon[sel],
        points.index.lat[sel],
        snapshot.projection.epsg,
        prefix,
    )


def reference_sql(
    radius_m: float, quad_segs: int = REFERENCE_QUAD_SEGS, prefix: str = "cov"
) -> str:
    r = float(radius_m)
    return f"""
        SELECT g.code, ST_Area(g.geom) AS area_m2,
               COALESCE(ST_Area(ST_Intersection(g.geom, u.geom)), 0) AS covered_m2
        FROM {prefix}_grids g
        LEFT JOIN LATERAL (
            SELECT ST_Union(ST_Buffer(p.geom, {r}, 'quad_segs={quad_segs}')) AS geom
            FROM {prefix}_points p WHERE ST_DWithin(p.geom, g.geom, {r})
        ) u ON true
        ORDER BY g.code
    """


def reference_coverage(
    conn: psycopg.Connection,
    radius_m: float,
    quad_segs: int = REFERENCE_QUAD_SEGS,
    prefix: str = "cov",
) -> dict[str, tuple[float, float]]:
    """code → (area_m2, covered_m2) from PostGIS."""
    rows = conn.execute(reference_sql(radius_m, quad_segs, prefix)).fetchall()
    return {code: (float(a), float(c)) for code, a, c in rows}


def reference_gap_pieces(
    conn: psycopg.Connection,
    radius_m: float,
    quad_segs: int = REFERENCE_QUAD_SEGS,
    prefix: str = "cov",
) -> list[tuple[str, float, float, shapely.Geometry, float]]:
    """Uncovered pieces from PostGIS: ST_Dump(ST_Difference(grid, union of buffers)) per grid,
    in the metric CRS; each (grid code, area m², perimeter m, a point on it, metres to the
    nearest point)."""
    r = float(radius_m)
    rows = conn.execute(
        f"""
        WITH parts AS (
            SELECT g.code, (ST_Dump(ST_Difference(
                g.geom, COALESCE(u.geom, ST_SetSRID('POLYGON EMPTY'::geometry, ST_SRID(g.geom)))
            ))).geom AS geom
            FROM {prefix}_grids g
            LEFT JOIN LATERAL (
                SELECT ST_Union(ST_Buffer(p.geom, {r}, 'quad_segs={quad_segs}')) AS geom
                FROM {prefix}_points p WHERE ST_DWithin(p.geom, g.geom, {r})
            ) u ON true
        )
        SELECT code, ST_Area(geom), ST_Perimeter(geom), ST_AsBinary(ST_PointOnSurface(geom)),
               (SELECT min(ST_Distance(parts.geom, p.geom)) FROM {prefix}_points p)
        FROM parts WHERE ST_Area(geom) > 0
        ORDER BY code
        """
    ).fetchall()
    return [
        (code, float(a), float(perim), shapely.from_wkb(bytes(pt)), float(d))
        for code, a, perim, pt, d in rows
    ]
