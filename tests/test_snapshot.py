"""Snapshots are swapped whole: a reader never sees a half-built index."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from geopandas.testing import assert_geodataframe_equal

from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, SnapshotStore, build_snapshot
from geo_service.core.versions import IfMatch
from geo_service.domain.editing import grid_locator, point_geometry, update
from geo_service.storage.files import FilesBackend
from geo_service.storage.reloader import Reloader
from geo_service.storage.synth import write_city
from tests.citybuilder import squares


def test_readers_see_whole_snapshots_during_swaps() -> None:
    small = build_snapshot({LayerName.grids: squares(2, 2)}, name="t", version="small")
    big = build_snapshot({LayerName.grids: squares(6, 6)}, name="t", version="big")
    store = SnapshotStore(small)
    seen: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            snap = store.get()
            n = len(snap.grids)
            located = snap.grids.index.locate([119.105], [36.705])[0]
            expected = {"small": 4, "big": 36}[snap.version]
            if n != expected or len(snap.grids.properties) != n or located < 0:
                errors.append(f"{snap.version}: {n} grids, located {located}")
            seen.append(snap.version)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        store.swap(big if i % 2 == 0 else small)
        time.sleep(0.0005)  # let the readers run between swaps
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert {"small", "big"} <= set(seen)


def test_store_tells_listeners_and_reports_readiness() -> None:
    store = SnapshotStore()
    assert not store.ready
    got: list[str] = []
    store.subscribe(lambda s: got.append(s.version))
    snap = build_snapshot({LayerName.grids: squares()}, name="t", version="v1")
    assert store.swap(snap) is None
    assert store.ready and store.get() is snap and got == ["v1"]


def same_snapshot(a: Snapshot, b: Snapshot) -> None:
    """Every figure readers take from a snapshot agrees (hierarchy included)."""
    assert a.version == b.version
    assert a.grids.properties == b.grids.properties
    for name in (LayerName.stalls, LayerName.vendor_clusters):
        assert a.points(name).records == b.points(name).records
        np.testing.assert_array_equal(a.points(name).grid_index, b.points(name).grid_index)
        np.testing.assert_array_equal(a.counts_per_grid[name], b.counts_per_grid[name])
    for level in ("community", "street", "district"):
        assert_geodataframe_equal(a.units(level), b.units(level))


def test_an_incremental_snapshot_equals_a_full_rebuild_after_random_edits(
    tmp_path: Path,
) -> None:
    """Random edits of stalls, vendor clusters and grids through the files backend: after each,
    the reloader's snapshot (re-indexing only what changed) equals one loaded from scratch."""
    write_city(tmp_path, 144, 20, 20, seed=3)
    backend = FilesBackend(tmp_path)
    store = SnapshotStore()
    reloader = Reloader(backend, store, "t")
    reloader.load_now()
    rng = np.random.default_rng(7)
    admin = Principal(Role.admin, "snapshot-test")
    for step in range(6):
        before = store.get()
        layer = [LayerName.stalls, LayerName.vendor_clusters, LayerName.grids][step % 3]
        frame = before.points(layer).frame if layer is not LayerName.grids else before.grids.frame
        code = str(frame["code"].iloc[int(rng.integers(len(frame)))])
        version = int(frame.loc[frame["code"] == code, "version"].iloc[0])
        geometry = None
        changes: dict[str, object] = {"name": f"改名{step}"}
        if layer is not LayerName.grids:  # move it somewhere in the city (maybe another grid)
            x0, y0, x1, y1 = before.bounds
            lon, lat = rng.uniform(x0, x1), rng.uniform(y0, y1)
            geometry, changes = point_geometry(lon, lat, "wgs84"), {}
        mutation = update(
            layer, admin, changes, geometry, IfMatch(False, frozenset({version})),
            grid_locator(before),
        )  # fmt: skip
        backend.modify(layer, code, mutation, admin, "update")
        reloader.load_now()
        after = store.get()
        assert (after.grids is before.grids) == (layer is not LayerName.grids)
        fresh = Reloader(FilesBackend(tmp_path), SnapshotStore(), "t")
        fresh.load_now()
        same_snapshot(after, fresh.store.get())
