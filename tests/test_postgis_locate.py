"""10,000 random points: our grid codes agree with PostGIS ST_Covers on the same polygons."""

from __future__ import annotations

import numpy as np
import psycopg
import shapely

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
