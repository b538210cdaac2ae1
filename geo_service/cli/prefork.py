"""Several workers that start ready: load the snapshot once, then fork (gunicorn, preforked).

uvicorn's own supervisor spawns fresh interpreters, so every worker loaded the whole snapshot
itself, and with a large dataset its health check gave up on workers still loading. Here the
master process loads the data first; gunicorn forks the workers from it, so each one serves at
once and they share the loaded snapshot's memory copy-on-write until their first reload.
"""

from __future__ import annotations

import logging.config
from typing import Any, ClassVar

from gunicorn.app.base import BaseApplication
from uvicorn.importer import import_from_string
from uvicorn_worker import UvicornWorker

from geo_service.core.settings import Settings
from geo_service.runtime import preload

APP = "geo_service.web.app:create_app"  # by name, as uvicorn takes it: cli does not import web


class GeoWorker(UvicornWorker):
    """uvicorn in a gunicorn worker, on uvloop and httptools like a single-process serve."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "uvloop", "http": "httptools"}


class PreforkServer(BaseApplication):
    """gunicorn configured in code; each worker builds the app from the preloaded snapshot."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return import_from_string(APP)()


def serve_preforked(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    access_log: bool,
    log_config: dict[str, Any],
) -> None:
    """Load the data here, then run ``workers`` forked workers on ``host:port`` until stopped."""
    logging.config.dictConfig(log_config)
    preload(settings)
    import_from_string(APP)  # imported once here, shared by the workers

    PreforkServer(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": GeoWorker,
            "preload_app": False,  # the snapshot is preloaded; backends open after the fork
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-" if access_log else None,
            "loglevel": "info",
            "control_socket_disable": True,  # one per user home: two services would clash
        }
    ).run()
