"""Snapshots are swapped whole: a reader never sees a half-built index."""

from __future__ import annotations

import threading
import time

from geo_service.core.schema import LayerName
from geo_service.core.snapshot import SnapshotStore, build_snapshot
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
