"""Shared fixtures: the default dataset, an API client, and the PostGIS / Chromium references.

Under `make test` (and CI) GEO_SERVICE_TEST_REQUIRE_SERVICES=1: a missing PostGIS or Chromium is
then a failure, not a skip, so a green run always means the references were really checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from geo_service.api.app import create_app
from geo_service.dataset import load_dataset
from geo_service.settings import Settings
from geo_service.snapshot import Snapshot, SnapshotStore

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
ARTIFACTS = REPO / "artifacts"


def require_services() -> bool:
    return os.environ.get("GEO_SERVICE_TEST_REQUIRE_SERVICES") == "1"


def missing(what: str) -> None:
    if require_services():
        pytest.fail(f"{what} is required under make test / CI but is not available")
    pytest.skip(f"{what} not available (run `make test` to install it)")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def snapshot() -> Snapshot:
    return load_dataset(DATA_DIR)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(data_dir=DATA_DIR, public_base_url="http://testserver")


@pytest.fixture(scope="session")
def client(snapshot: Snapshot, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, SnapshotStore(snapshot))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    if not url:
        missing("PostGIS (GEO_SERVICE_TEST_DATABASE_URL)")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT postgis_version()")
    except psycopg.Error as exc:
        missing(f"PostGIS at {url} ({exc})")
    return url  # type: ignore[return-value]


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("GEO_SERVICE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        missing(f"Chromium ({path})")
    return path


@pytest.fixture(scope="session")
def live_server(snapshot: Snapshot) -> Iterator[str]:
    """A real uvicorn server on a free loopback port (for browser tests); stopped at the end."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(Settings(data_dir=DATA_DIR, public_base_url=base), SnapshotStore(snapshot))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)
