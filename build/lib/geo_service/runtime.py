"""Opens the data the way every entry point does: backend, snapshot store and reloader.

The HTTP service and the CLI read commands both come through here, so a command answers from
PostGIS when ``GEO_SERVICE_DATABASE_URL`` is set and from the embedded files otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.storage.base import Backend
from geo_service.storage.reloader import Reloader

log = logging.getLogger(__name__)


def open_backend(settings: Settings) -> Backend:
    """PostGIS when ``database_url`` is set, else the files in ``data_dir``."""
    if settings.database_url:
        from geo_service.storage.postgis import PostGISBackend

        return PostGISBackend(settings.database_url, pool_size=settings.db_pool_size)
    from geo_service.storage.files import FilesBackend

    return FilesBackend(settings.data_dir, poll_s=settings.reload_poll_s)


def backend_label(settings: Settings) -> str:
    return "PostGIS" if settings.database_url else str(settings.data_dir)


@dataclass
class Runtime:
    """A backend, the store that holds the current snapshot, and the reloader between them."""

    settings: Settings
    backend: Backend
    store: SnapshotStore
    reloader: Reloader
    owns_backend: bool

    def start(self, watch: bool = True) -> None:
        """Migrate (if configured), load the snapshot unless the store has one, and follow
        changes made elsewhere when ``watch``."""
        if self.settings.db_migrate_on_start:
            self.backend.migrate()
        if not self.store.ready:
            self.reloader.load_now()
            if len(self.store.get().grids) == 0:
                log.warning(
                    "no grids in %s: load a dataset (geo-service db load data/)", self.backend.name
                )
        if watch:
            self.reloader.start()

    def close(self) -> None:
        self.reloader.stop()
        if self.owns_backend:
            self.backend.close()


def open_runtime(
    settings: Settings, store: SnapshotStore | None = None, backend: Backend | None = None
) -> Runtime:
    owned = backend is None
    backend = backend or open_backend(settings)
    store = store if store is not None else SnapshotStore()
    return Runtime(settings, backend, store, Reloader(backend, store, settings.dataset_name), owned)


def load_snapshot(settings: Settings) -> Snapshot:
    """One snapshot of the configured backend, for a command that reads and exits."""
    rt = open_runtime(settings)
    try:
        rt.start(watch=False)
        return rt.store.get()
    finally:
        rt.close()
