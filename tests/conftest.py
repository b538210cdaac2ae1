"""Shared fixtures: the default dataset, an API client, and the PostGIS / Chromium references.

Under `make test` (and CI) GEO_SERVICE_TEST_REQUIRE_SERVICES=1: a missing PostGIS or Chromium is
then a failure, not a skip, so a green run always means the references were really checked.

Tests run on both storage backends where the backend matters: every write test (``backend``,
a fresh copy of the default data per test) runs on files and on PostGIS (``backend_kind``).
Read-only tests use ``snapshot`` and ``client`` built from the files (``shared_backend``); that
a PostGIS-loaded snapshot is the same snapshot is checked once (tests/test_backend_parity.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.storage.base import Backend
from geo_service.storage.files import FilesBackend
from geo_service.storage.postgis import PostGISBackend
from geo_service.storage.reloader import snapshot_of
from geo_service.web.app import create_app
from tests.backends import PgDatabases, copy_data, reset_postgis, seed_postgis

# One client (TestClient, or 127.0.0.1) makes every request of a test run: only the tests of
# rate limiting (tests/test_limits.py) turn it on.
os.environ["GEO_SERVICE_RATE_LIMIT_ENABLED"] = "false"

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


BACKENDS = ("files", "postgis")


@pytest.fixture(scope="session", params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Which storage backend the data-touching fixtures use (every such test runs on both)."""
    return str(request.param)


@pytest.fixture(scope="session")
def pg_databases(pg_url: str) -> Iterator[PgDatabases]:
    dbs = PgDatabases(pg_url)
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def shared_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    """The default dataset in files, for tests that only read (never write to it)."""
    return FilesBackend(copy_data(tmp_path_factory.mktemp("data-shared")))


@pytest.fixture(scope="session")
def pg_shared_backend(pg_databases: PgDatabases) -> Iterator[Backend]:
    """The default dataset loaded into PostGIS as `geo-service db load` does, read-only."""
    url = pg_databases.create("shared")
    seed_postgis(url)
    backend = PostGISBackend(url, pool_size=4)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def snapshot(shared_backend: Backend) -> Snapshot:
    return snapshot_of(shared_backend.load(), "weifang-central")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(data_dir=DATA_DIR, public_base_url="http://testserver")


@pytest.fixture(scope="session")
def client(snapshot: Snapshot, settings: Settings, shared_backend: Backend) -> Iterator[TestClient]:
    app = create_app(settings, SnapshotStore(snapshot), shared_backend)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="session")
def rw_database(pg_databases: PgDatabases) -> str:
    """A PostGIS database seeded once with data/, reset before each write test."""
    url = pg_databases.create("rw")
    seed_postgis(url)
    return url


@pytest.fixture
def backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A fresh copy of the default data that this test may change."""
    if backend_kind == "files":
        yield FilesBackend(copy_data(tmp_path / "data"), poll_s=0.1)
        return
    url = request.getfixturevalue("rw_database")
    reset_postgis(url)
    pg_backend = PostGISBackend(url, pool_size=4)
    yield pg_backend
    pg_backend.close()


@pytest.fixture
def backend_env(backend: Backend) -> dict[str, str]:
    """Environment for a subprocess (service, CLI) that should use the same ``backend``."""
    if isinstance(backend, PostGISBackend):
        return {"GEO_SERVICE_DATABASE_URL": backend.url}
    assert isinstance(backend, FilesBackend)
    return {"GEO_SERVICE_DATA_DIR": str(backend.data_dir), "GEO_SERVICE_DATABASE_URL": ""}


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


@pytest.fixture(scope="session")
def pg_reference_url(pg_databases: PgDatabases) -> str:
    """This process's own database for reference tables (pytest-xdist workers don't share it)."""
    return pg_databases.create("ref")


@pytest.fixture
def pg(pg_reference_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_reference_url, autocommit=True) as conn:
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
    from tests.services import app_in_thread

    def make(base: str) -> Any:
        settings = Settings(data_dir=DATA_DIR, public_base_url=base)
        return create_app(settings, SnapshotStore(snapshot))

    with app_in_thread(make) as (base, _):
        yield base
