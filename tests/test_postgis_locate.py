"""Random points, grid corners and cell edges: our grid codes agree with PostGIS ST_Covers on the
same polygons, through the tree and through the cell lookup table."""

from __future__ import annotations

import numpy as np
import psycopg
import shapely

from geo_service.core.index import PolygonIndex
from geo_service.core.snapshot import Snapshot
from tests.pgref import load_table


def test_locate_agrees_with_postgis_st_covers(pg: psycopg.Connection, snapshot: Snapshot) -> None:
    grids = snapshot.grids
    load_table(pg, "ref_grids", list(grids.codes), grids.frame.geometry.to_numpy())
    rng = np.random.default_rng(2026)
    minx, miny, maxx, maxy = snapshot.bounds
    n = 10_000
    lon = rng.uniform(minx - 0.01, maxx + 0.01, n)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, n)
    # Add points exactly on shared vertices: the edge rule must match "smallest code".
    verts = shapely.get_coordinates(grids.frame.geometry.to_numpy()[:200])
    lon[:200], lat[:200] = verts[:200, 0], verts[:200, 1]
    ids = [str(i) for i in range(n)]
    load_table(pg, "ref_points", ids, shapely.points(lon, lat))
    rows = pg.execute(
        """
        SELECT p.code::int, (SELECT min(g.code) FROM ref_grids g WHERE ST_Covers(g.geom, p.geom))
        FROM ref_points p
        """
    ).fetchall()
    ref = np.empty(n, dtype=object)
    for i, code in rows:
        ref[i] = code
    ours = grids.index.locate(lon, lat)
    ours_codes = np.where(ours >= 0, grids.codes[np.maximum(ours, 0)], None)
    disagree = np.flatnonzero(ours_codes != ref)
    assert len(disagree) == 0, [(lon[i], lat[i], ours_codes[i], ref[i]) for i in disagree[:5]]
    assert (ref != None).sum() > n * 0.5  # noqa: E711 - most points are inside the city
    assert (ref == None).sum() > 0  # noqa: E711 - and some are not


def test_cell_table_agrees_with_postgis_st_covers(
    pg: psycopg.Connection, snapshot: Snapshot
) -> None:
    """The bulk path through the cell lookup table (a fresh index, so the shared snapshot keeps
    its own state): random points, every corner of 300 grids, edge midpoints, and points on the
    table's cell edges and corners, each against ST_Covers with the smallest code."""
    grids = snapshot.grids
    index = PolygonIndex(grids.index.geoms, grids.index.projection)
    table = index.cell_table()
    assert table is not None and table.n_mixed > 0
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = snapshot.bounds
    n = 3_000
    lon = rng.uniform(minx - 0.01, maxx + 0.01, n)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, n)
    corners = np.unique(shapely.get_coordinates(grids.index.geoms[:300]), axis=0)
    mids = (corners[:-1] + corners[1:]) / 2
    i, j = rng.integers(0, table.nx, 1_000), rng.integers(0, table.ny, 1_000)
    cell_x, cell_y = table.x0 + i * table.dx, table.y0 + j * table.dy
    inner_x, inner_y = rng.uniform(minx, maxx, 1_000), rng.uniform(miny, maxy, 1_000)
    lon = np.concatenate([lon, corners[:, 0], mids[:, 0], cell_x, cell_x, inner_x])
    lat = np.concatenate([lat, corners[:, 1], mids[:, 1], cell_y, inner_y, cell_y])
    load_table(pg, "ref_cell_grids", list(grids.codes), grids.frame.geometry.to_numpy())
    load_table(pg, "ref_cell_points", [str(k) for k in range(len(lon))], shapely.points(lon, lat))
    ref = np.empty(len(lon), dtype=object)
    for k, code in pg.execute(
        "SELECT p.code::int, (SELECT min(g.code) FROM ref_cell_grids g "
        "WHERE ST_Covers(g.geom, p.geom)) FROM ref_cell_points p"
    ).fetchall():
        ref[k] = code
    ours = table.locate(index.geoms, lon, lat)
    assert (ours == index.locate(lon, lat)).all()  # the bulk locate takes this path
    ours_codes = np.where(ours >= 0, grids.codes[np.maximum(ours, 0)], None)
    disagree = np.flatnonzero(ours_codes != ref)
    assert len(disagree) == 0, [(lon[k], lat[k], ours_codes[k], ref[k]) for k in disagree[:5]]
    one = [index.locate_point(x, y) for x, y in zip(lon.tolist(), lat.tolist(), strict=True)]
    assert one == ours.tolist()
    assert (ref != None).sum() > len(lon) * 0.5  # noqa: E711 - most points are inside the city
