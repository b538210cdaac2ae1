"""Test backends holding the default dataset: a copy of data/ for the files, a database for PostGIS.

PostGIS tests get their own databases next to the test database (the test user may CREATE
DATABASE), named after the test database and this process, and dropped at the end; each write
test starts from the seeded tables again (TRUNCATE + INSERT from seed copies: milliseconds).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from geo_service.core.principal import Principal, Role
from geo_service.core.schema import SCHEMAS, LayerName
from geo_service.domain.editing import replace_layer
from geo_service.domain.validation import validate_file
from geo_service.storage.dataset import LAYER_FILES, layer_path
from geo_service.storage.postgis import PostGISBackend

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
LOADER = Principal(Role.admin, "test-seed")
SEEDED = tuple(layer.value for layer in SCHEMAS)


def copy_data(dst: Path, src: Path = DATA_DIR) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in LAYER_FILES.values():
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    return dst


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PgDatabases:
    """Creates ``<testdb>_t<pid>_<suffix>`` databases with PostGIS, and drops them again."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.base = conninfo_to_dict(base_url)
        self.prefix = f"{self.base['dbname']}_t"
        self.created: list[str] = []
        self._drop_orphans()

    def url(self, dbname: str) -> str:
        return make_conninfo(**{**self.base, "dbname": dbname})

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.base_url, autocommit=True, connect_timeout=5)

    def _drop_orphans(self) -> None:
        """Databases left by test sessions that were killed (their process is gone)."""
        with self._admin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (self.prefix.replace("_", r"\_") + "%",),
                )
            ]
            for name in names:
                pid = name[len(self.prefix) :].split("_", 1)[0]
                if pid.isdigit() and not _alive(int(pid)):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )

    def create(self, suffix: str) -> str:
        name = f"{self.prefix}{os.getpid()}_{suffix}"
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = self.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return url

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.created:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self.created.clear()


def load_folder(backend: PostGISBackend, folder: Path = DATA_DIR) -> None:
    """What ``geo-service db load`` does: each layer file validated, then stored."""
    backend.migrate()
    for layer in LayerName:
        path = layer_path(folder, layer)
        if path.exists():
            checked = validate_file(path, layer)
            assert checked.ok, checked.to_dict()
            replace_layer(backend, checked, LOADER, f"seed {path.name}")


def seed_postgis(url: str) -> None:
    """Load data/ once and keep copies of the tables to reset from."""
    backend = PostGISBackend(url, pool_size=2)
    try:
        load_folder(backend)
    finally:
        backend.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in SEEDED:
            conn.execute(f"DROP TABLE IF EXISTS _seed_{table}")
            conn.execute(f"CREATE TABLE _seed_{table} AS TABLE {table}")
    reset_postgis(url)


def reset_postgis(url: str) -> None:
    """Back to the seeded data: no audit, no keys, a new revision (so every snapshot reloads)."""
    with psycopg.connect(url) as conn:
        conn.execute(f"TRUNCATE {', '.join(SEEDED)}, audit_log, api_keys")
        if conn.execute("SELECT to_regclass('cases')").fetchone() != (None,):
            conn.execute("TRUNCATE cases")
            conn.execute("ALTER SEQUENCE cases_seq RESTART")
        for table in SEEDED:
            conn.execute(f"INSERT INTO {table} SELECT * FROM _seed_{table}")
        row = conn.execute(
            "UPDATE dataset_state SET revision = revision + 1 RETURNING revision"
        ).fetchone()
        assert row is not None
        conn.execute("UPDATE layer_state SET revision = %s", (row[0],))
