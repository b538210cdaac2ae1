"""The snapshot a PostGIS instance serves is the snapshot an embedded instance serves.

Read-only tests run on the embedded files only; this is what makes that enough: the default
dataset loaded into PostGIS (as `geo-service db load` does) and read back gives the same
features, properties, versions and geometries (to the stored 7 decimals), so every read answer
computed from it is the same.
"""

from __future__ import annotations

import shapely

from geo_service.core.snapshot import Snapshot
from geo_service.storage.base import Backend
from geo_service.storage.reloader import snapshot_of


def test_postgis_snapshot_equals_the_files_snapshot(
    snapshot: Snapshot, pg_shared_backend: Backend
) -> None:
    pg = snapshot_of(pg_shared_backend.load(), "weifang-central")
    assert len(snapshot.grids) == len(pg.grids) > 1000
    assert list(pg.grids.codes) == list(snapshot.grids.codes)
    assert pg.grids.properties == snapshot.grids.properties
    same = shapely.equals_exact(
        pg.grids.frame.geometry.to_numpy(), snapshot.grids.frame.geometry.to_numpy(), 1e-7
    )
    assert same.all(), f"{(~same).sum()} grid geometries differ"
    for name in ("stalls", "vendor_clusters"):
        a, b = snapshot.points(name), pg.points(name)
        assert len(a) == len(b) > 10
        assert b.records == a.records
        assert (b.grid_index == a.grid_index).all()
    assert pg.projection.epsg == snapshot.projection.epsg
