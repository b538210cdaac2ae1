"""Opens the data the way every entry point does: backend, snapshot store and reloader.

The HTTP service and the CLI read commands both come through here, so a command answers from
PostGIS when ``GEO_SERVICE_DATABASE_URL`` is set and from the embedded files otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from geo_service.core.cases import ServiceCatalogue
from geo_service.core.settings import (
    Settings,
    case_services_path,
    media_path,
    snapshot_cache_path,
)
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.domain.casedesk import CaseDesk, Escalator
from geo_service.domain.webhook import WebhookSender
from geo_service.storage.base import Backend
from geo_service.storage.cases import CaseStore
from geo_service.storage.media import MediaStore
from geo_service.storage.reloader import LoadedState, Reloader

log = logging.getLogger(__name__)


def open_backend(settings: Settings) -> Backend:
    """PostGIS when ``database_url`` is set, else the files in ``data_dir``."""
    if settings.database_url:
        from geo_service.storage.postgis import PostGISBackend

        return PostGISBackend(
            settings.database_url, pool_size=settings.db_pool_size, timeout_s=settings.db_timeout_s
        )
    from geo_service.storage.files import FilesBackend

    return FilesBackend(
        settings.data_dir, poll_s=settings.reload_poll_s, cache_dir=snapshot_cache_path(settings)
    )


def open_case_store(backend: Backend) -> CaseStore:
    """The cases beside the layers: ``cases.jsonl`` in the data folder, or the PostGIS tables."""
    from geo_service.storage.files import FilesBackend

    if isinstance(backend, FilesBackend):
        from geo_service.storage.cases import FilesCaseStore

        return FilesCaseStore(backend.data_dir, append_audit=backend.append_audit)
    from geo_service.storage.casepg import PostgisCaseStore

    return PostgisCaseStore(backend)  # type: ignore[arg-type]


def open_case_desk(settings: Settings, backend: Backend, store: SnapshotStore) -> CaseDesk:
    """Cases on ``backend``, photos in the media folder, notices to the webhook (if any)."""
    webhook = WebhookSender(settings.webhook_url, settings.webhook_secret)
    return CaseDesk(
        store=open_case_store(backend),
        services=ServiceCatalogue.load(case_services_path(settings)),
        snapshot=store.get,
        snap_m=settings.case_snap_m,
        duplicate_m=settings.case_duplicate_m,
        notify=webhook.send if settings.webhook_url else None,
        webhook=webhook,
        media=MediaStore(media_path(settings)),
        max_photo_bytes=settings.max_photo_bytes,
    )


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
    cases: CaseDesk
    escalator: Escalator | None = None

    @property
    def media(self) -> MediaStore | None:
        """Where report photos are kept (the case desk's)."""
        return self.cases.media

    def start(self, watch: bool = True) -> None:
        """Migrate (if configured), load the snapshot unless the store has one, and follow
        changes made elsewhere when ``watch``."""
        if self.settings.db_migrate_on_start:
            self.backend.migrate()
            self.cases.store.migrate()
        if not self.store.ready:
            self.reloader.load_now()
            if len(self.store.get().grids) == 0:
                log.warning(
                    "no grids in %s: load a dataset (geo-service db load data/)", self.backend.name
                )
        if watch:
            self.reloader.start()
            self.escalator = Escalator(self.cases, self.settings.case_escalation_poll_s)
            self.escalator.start()

    def close(self) -> None:
        if self.escalator is not None:
            self.escalator.stop()
        self.cases.close()
        self.reloader.stop()
        if self.owns_backend:
            self.backend.close()


# The data ``preload`` loaded in this process (inherited by the workers it forks), and the
# source it came from: a runtime opened on the same source starts from it.
_preloaded: tuple[tuple[str | None, str, str], LoadedState] | None = None


def _source(settings: Settings) -> tuple[str | None, str, str]:
    return (settings.database_url, str(settings.data_dir), settings.dataset_name)


def preload(settings: Settings) -> Snapshot:
    """Load the snapshot once, before worker processes fork, so they start ready and share
    its memory copy-on-write. Nothing of the backend (connections, threads) is kept open."""
    global _preloaded
    rt = open_runtime(settings)
    try:
        rt.start(watch=False)
        state = rt.reloader.state()
    finally:
        rt.close()
    _preloaded = (_source(settings), state)
    return state.snapshot


def open_runtime(
    settings: Settings, store: SnapshotStore | None = None, backend: Backend | None = None
) -> Runtime:
    """A runtime on ``settings``' backend (or ``backend``); without a ``store`` of its own it
    starts from the snapshot ``preload`` loaded in this process, if any, for the same source."""
    owned = backend is None
    backend = backend or open_backend(settings)
    seed = None
    if store is None and owned and _preloaded is not None and _preloaded[0] == _source(settings):
        seed = _preloaded[1]
    store = store if store is not None else SnapshotStore()
    reloader = Reloader(backend, store, settings.dataset_name)
    if seed is not None:
        reloader.seed(seed)
    return Runtime(
        settings, backend, store, reloader, owned, open_case_desk(settings, backend, store)
    )


def load_snapshot(settings: Settings) -> Snapshot:
    """One snapshot of the configured backend, for a command that reads and exits."""
    rt = open_runtime(settings)
    try:
        rt.start(watch=False)
        return rt.store.get()
    finally:
        rt.close()
