"""Keeps the in-memory snapshot in step with the backend, in this process and across processes.

After a write here, the writer asks for a reload and waits for it (so it reads its own write);
when another process writes, the backend's subscription (LISTEN/NOTIFY, or polling the files)
asks for one too. One worker thread builds snapshots; requests that arrive while it builds are
served by the next build, so a burst of writes costs a few rebuilds, not one each. A rebuild
re-reads only the layers whose revision moved and re-indexes from those frames.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import geopandas as gpd

from geo_service.core.layers import LoadReport
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, SnapshotStore, build_snapshot
from geo_service.storage.base import Backend, Loaded, Revisions, Subscription

log = logging.getLogger(__name__)


def snapshot_of(loaded: Loaded, name: str) -> Snapshot:
    return build_snapshot(
        loaded.frames, name=name, version=loaded.version, reports=tuple(loaded.reports)
    )


@dataclass(frozen=True)
class LoadedState:
    """A loaded snapshot and what it was built from: what a worker forked from a process that
    loaded the data needs to go on following the backend without loading it again."""

    snapshot: Snapshot
    revisions: Revisions
    frames: dict[LayerName, gpd.GeoDataFrame]
    reports: dict[str, LoadReport]


class Reloader:
    def __init__(self, backend: Backend, store: SnapshotStore, name: str) -> None:
        self.backend = backend
        self.store = store
        self.name = name
        # What the current snapshot was built from, layer by layer (empty: nothing known yet).
        self.revisions: Revisions = {}
        self._frames: dict[LayerName, gpd.GeoDataFrame] = {}
        self._reports: dict[str, LoadReport] = {}
        self._built: Snapshot | None = None  # the last snapshot this reloader installed
        self.reloads = 0
        self.last_error: Exception | None = None
        self._cond = threading.Condition()
        self._loading = threading.Lock()
        self._wanted = 0
        self._done = 0
        self._stop = False
        self._worker: threading.Thread | None = None
        self._subscription: Subscription | None = None

    def state(self) -> LoadedState:
        """The current snapshot with what it was built from (after a load)."""
        with self._loading:
            return LoadedState(
                self.store.get(), dict(self.revisions), dict(self._frames), dict(self._reports)
            )

    def seed(self, state: LoadedState) -> None:
        """Start from ``state`` (loaded by a parent process) instead of loading everything."""
        with self._loading:
            self.revisions = dict(state.revisions)
            self._frames = dict(state.frames)
            self._reports = dict(state.reports)
            self.store.swap(state.snapshot)
            self._built = state.snapshot

    def stale_layers(self) -> list[LayerName]:
        now = self.backend.revisions()
        return [layer for layer in LayerName if now.get(layer) != self.revisions.get(layer)]

    def load_now(self) -> None:
        """Re-read the layers that changed, and install a new snapshot (in this thread)."""
        with self._loading:
            self._load()

    def _load(self) -> None:
        stale = self.stale_layers()
        if not stale and self.store.ready:
            return
        loaded = self.backend.load(stale)
        for layer in stale:
            self._frames.pop(layer, None)
        self._frames.update(loaded.frames)
        self._reports.update({r.layer: r for r in loaded.reports})
        snap = build_snapshot(
            dict(self._frames),
            name=self.name,
            version=loaded.version,
            reports=tuple(self._reports[k] for k in sorted(self._reports)),
            previous=self._built if self.store.ready and self.store.get() is self._built else None,
            changed=frozenset(stale),
        )
        self.store.swap(snap)
        self._built = snap
        self.revisions = {**self.revisions, **loaded.revisions}
        self.reloads += 1

    def start(self) -> None:
        self._worker = threading.Thread(target=self._run, name="geo-reloader", daemon=True)
        self._worker.start()
        self._subscription = self.backend.subscribe(self.changed)
        if self.revisions:  # a change between our load (or a seed) and the subscription;
            self.changed()  # a snapshot handed in by the caller is served until a change

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10)

    def changed(self) -> None:
        """Another process may have written: reload unless the snapshot is already current."""
        try:
            if not self.stale_layers():
                return
        except Exception:
            log.warning("cannot read the backend revision; reloading anyway", exc_info=True)
        self.request()

    def request(self) -> int:
        with self._cond:
            self._wanted += 1
            self._cond.notify_all()
            return self._wanted

    def refresh(self, timeout: float = 30.0) -> bool:
        """Reload and wait until a snapshot at least as new as the backend is installed."""
        if self._worker is None or not self._worker.is_alive():
            self.load_now()  # not started (no app lifespan): reload in this thread
            return True
        ticket = self.request()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._done < ticket and not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return self._done >= ticket

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._done >= self._wanted and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                target = self._wanted
            try:
                self.load_now()
                self.last_error = None
            except Exception as exc:  # keep serving the old snapshot; the next change retries
                self.last_error = exc
                log.exception("rebuilding the snapshot failed; still serving the previous one")
            with self._cond:
                self._done = target
                self._cond.notify_all()
