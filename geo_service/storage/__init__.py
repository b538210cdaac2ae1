"""Where the data lives: embedded GeoJSON files (default) or PostGIS (``database_url``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geo_service.settings import Settings
    from geo_service.storage.base import Backend


def open_backend(settings: Settings) -> Backend:
    """The backend the settings choose: PostGIS when ``database_url`` is set, else the files."""
    if settings.database_url:
        from geo_service.storage.postgis import PostGISBackend

        return PostGISBackend(settings.database_url, pool_size=settings.db_pool_size)
    from geo_service.storage.files import FilesBackend

    return FilesBackend(settings.data_dir, poll_s=settings.reload_poll_s)
