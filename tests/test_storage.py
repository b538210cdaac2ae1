"""Storage: both backends hold the same data; PostGIS schema and NOTIFY; the embedded files
survive a crash at any point of a write; concurrent clients lose no edit."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import psycopg
import pytest
import shapely
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.versions import IfMatch
from geo_service.domain.editing import update
from geo_service.storage import files
from geo_service.storage.audit import AuditQuery
from geo_service.storage.base import Backend
from geo_service.storage.dataset import load_dataset
from geo_service.storage.files import JOURNAL_FILE, TMP_SUFFIX, FilesBackend
from geo_service.storage.postgis import CHANNEL, PostGISBackend
from geo_service.storage.records import records_from_frame
from tests import rawdata
from tests.backends import PgDatabases, copy_data, reset_postgis
from tests.keys import key_for
from tests.services import child_env, service

ADMIN = Principal(Role.admin, "test-admin")
STALL = sorted(rawdata.properties("stalls"))[0]


def set_hours(hours: str, version: int = 1) -> Any:
    return update(
        LayerName.stalls, ADMIN, {"hours": hours}, None, IfMatch(False, frozenset({version})),
        lambda rec: None,
    )  # fmt: skip


def test_both_backends_hold_the_same_records(tmp_path: Path, rw_database: str) -> None:
    reset_postgis(rw_database)
    on_files = FilesBackend(copy_data(tmp_path / "d")).load()
    pg = PostGISBackend(rw_database, pool_size=2)
    try:
        on_pg = pg.load()
    finally:
        pg.close()
    for layer in LayerName:
        a = records_from_frame(layer, on_files.frames[layer])
        b = records_from_frame(layer, on_pg.frames[layer])
        assert a == b, layer
        # ... and both equal the raw files read with json + shapely (coordinates to 1e-7°).
        raw = rawdata.geometries(layer.value)
        assert [r.code for r in a] == sorted(raw)
        for rec in a:
            got = shapely.geometry.shape(rec.geometry)
            assert shapely.equals_exact(got, raw[rec.code], tolerance=1e-9), rec.code
            assert rec.version == 1


def test_postgis_schema_gist_indexes_srid_and_versions(rw_database: str) -> None:
    with psycopg.connect(rw_database) as conn:
        for table, kind in (
            ("grids", "geometry(Geometry,4326)"),  # Polygon or MultiPolygon (a CHECK)
            ("stalls", "geometry(Point,4326)"),
            ("vendor_clusters", "geometry(Point,4326)"),
        ):
            row = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'geom'",
                (table,),
            ).fetchone()
            assert row == (kind,)
            defs = [r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))]  # fmt: skip
            assert any("USING gist (geom)" in d for d in defs), defs
            nullable = conn.execute(
                "SELECT is_nullable FROM information_schema.columns "
                "WHERE table_name = %s AND column_name = 'version'",
                (table,),
            ).fetchone()
            assert nullable == ("NO",)
        # The database itself refuses what the schema forbids.
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO grids (code, name, community_code, community_name, street_code, "
                "street_name, district_code, district_name, population, geom) VALUES "
                "('x','x','x','x','x','x','x','x',1, 'SRID=4326;LINESTRING(119 36, 119.1 36.1)')"
            )


def test_db_migrate_and_load_commands(pg_databases: PgDatabases, monkeypatch: Any) -> None:
    url = pg_databases.create("cli")
    monkeypatch.setenv("GEO_SERVICE_DATABASE_URL", url)
    runner = CliRunner()
    res = runner.invoke(cli_app, ["db", "migrate"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli_app, ["db", "migrate"])  # idempotent
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli_app, ["db", "load", str(rawdata.DATA_DIR)])
    assert res.exit_code == 0, res.output
    with psycopg.connect(url) as conn:
        for layer in LayerName:
            n = conn.execute(f"SELECT count(*), max(version) FROM {layer.value}").fetchone()
            assert n == (len(rawdata.features(layer.value)), 1)
        audited = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'create'").fetchone()
        assert audited == (sum(len(rawdata.features(x.value)) for x in LayerName),)
    # Loading the same files again changes nothing: every feature keeps version 1.
    res = runner.invoke(cli_app, ["db", "load", str(rawdata.DATA_DIR)])
    assert res.exit_code == 0, res.output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT max(version) FROM stalls").fetchone() == (1,)
        actions = dict(conn.execute("SELECT action, count(*) FROM audit_log GROUP BY action"))
        assert actions == {"replace": 6, "create": audited[0]}
    # Keys made by the CLI work against the same database, and can be revoked.
    res = runner.invoke(cli_app, ["keys", "add", "ops-zhao", "--role", "admin"])
    assert res.exit_code == 0, res.output
    secret = res.stdout.strip().splitlines()[-1]
    pg = PostGISBackend(url, pool_size=1)
    try:
        from geo_service.domain.auth import KeyVerifier

        rec = KeyVerifier(pg.get_key).verify(secret)
        assert rec is not None and rec.name == "ops-zhao" and rec.role is Role.admin
        stored_hash = pg.get_key(rec.key_id)
        assert stored_hash is not None and secret not in str(stored_hash.to_dict())
        assert runner.invoke(cli_app, ["keys", "revoke", rec.key_id]).exit_code == 0
        assert KeyVerifier(pg.get_key).verify(secret) is None
    finally:
        pg.close()


def test_postgis_notifies_each_committed_change_once(rw_database: str) -> None:
    reset_postgis(rw_database)
    backend = PostGISBackend(rw_database, pool_size=2)
    try:
        with psycopg.connect(rw_database, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            backend.modify(LayerName.stalls, STALL, set_hours("06:00-20:00"), ADMIN, "update")
            got = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
            assert got == [f"{backend.revisions()[LayerName.stalls]} stalls"]
            # A refused change (stale version) commits nothing and says nothing.
            with pytest.raises(Exception, match="version 2"):
                backend.modify(LayerName.stalls, STALL, set_hours("x", 1), ADMIN, "update")
            assert list(listener.notifies(timeout=0.3)) == []
    finally:
        backend.close()


class Crash(BaseException):
    """Stands for the process dying at this point (not an Exception: nothing may catch it)."""


def test_files_crash_before_the_rename_leaves_the_old_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = copy_data(tmp_path / "d")
    old = (d / "stalls.geojson").read_bytes()
    real = files.atomic_write

    def dies_mid_write(path: Path, data: bytes) -> None:
        if path.name == "stalls.geojson":
            partial = path.with_name(f".{path.name}.1.1{TMP_SUFFIX}")
            partial.write_bytes(data[: len(data) // 2])
            raise Crash
        real(path, data)

    monkeypatch.setattr(files, "atomic_write", dies_mid_write)
    with pytest.raises(Crash):
        FilesBackend(d).modify(LayerName.stalls, STALL, set_hours("06:00-20:00"), ADMIN, "update")
    monkeypatch.undo()
    assert (d / "stalls.geojson").read_bytes() == old
    assert (d / JOURNAL_FILE).exists()  # the interrupted write's journal
    assert len(load_dataset(d).stalls) == len(rawdata.features("stalls"))  # loadable
    after = FilesBackend(d)
    assert after.audit(AuditQuery(limit=None)) == ([], 0)  # the journal was discarded
    assert not (d / JOURNAL_FILE).exists() and not list(d.glob(f".*{TMP_SUFFIX}"))
    change = after.modify(LayerName.stalls, STALL, set_hours("07:00-19:00"), ADMIN, "update")
    assert change.entry is not None and change.entry.id == 1


def test_files_crash_after_the_rename_completes_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = copy_data(tmp_path / "d")
    real = FilesBackend._append_audit

    def dies_mid_append(self: FilesBackend, entries: list[Any]) -> None:
        from geo_service.storage.audit import to_jsonl

        with open(self.audit_path, "ab") as fh:
            data = to_jsonl(entries)
            fh.write(data[: len(data) // 3])  # a torn line
        raise Crash

    monkeypatch.setattr(FilesBackend, "_append_audit", dies_mid_append)
    with pytest.raises(Crash):
        FilesBackend(d).modify(LayerName.stalls, STALL, set_hours("06:00-20:00"), ADMIN, "update")
    monkeypatch.setattr(FilesBackend, "_append_audit", real)
    # The data was replaced before the crash: the change happened, so it must be audited.
    after = FilesBackend(d)
    rec = after.get(LayerName.stalls, STALL)
    assert rec is not None and rec.properties["hours"] == "06:00-20:00" and rec.version == 2
    entries, total = after.audit(AuditQuery(limit=None))
    assert total == 1
    assert entries[0].after is not None and entries[0].after["properties"]["hours"] == "06:00-20:00"
    assert (entries[0].id, entries[0].version_after) == (1, 2)
    assert after.audit(AuditQuery(limit=None))[1] == 1  # completed once, not twice
    change = after.modify(LayerName.stalls, STALL, set_hours("07:00-19:00", 2), ADMIN, "update")
    assert change.entry is not None and change.entry.id == 2


def _big_stalls(path: Path, n: int) -> set[str]:
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = shapely.total_bounds(list(rawdata.geometries("grids").values()))
    codes = [f"XLP-{370100 + i // 9000:06d}-{i % 9000 + 1:04d}" for i in range(n)]
    frame = gpd.GeoDataFrame(
        {"code": codes, "name": [f"合成小蓝棚{i}" for i in range(n)], "services": "修鞋;修车",
         "hours": "08:00-18:00", "status": "active"},
        geometry=shapely.points(rng.uniform(minx, maxx, n), rng.uniform(miny, maxy, n)),
        crs=4326,
    )  # fmt: skip
    frame.to_file(path, driver="GeoJSON")
    return set(codes)


def _start_import(data_dir: Path, big: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-u", "-m", "geo_service.cli", "import", "stalls", str(big)]
    env = child_env({"GEO_SERVICE_DATA_DIR": str(data_dir)})
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _wait_for(proc: subprocess.Popen[bytes], prefix: bytes) -> float:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return time.monotonic()
    raise AssertionError(f"the import ended without printing {prefix!r}")


def test_a_killed_import_leaves_the_old_data_or_the_new_whole(tmp_path: Path) -> None:
    """SIGKILL an import of a big file at random moments while it writes: every time, the
    data is either the old layer or the new one, complete, loadable, and audited accordingly."""
    big = tmp_path / "big_stalls.geojson"
    new_codes = _big_stalls(big, 4000)
    old_codes = set(rawdata.properties("stalls"))
    old_bytes = (rawdata.DATA_DIR / "stalls.geojson").read_bytes()

    # One import that runs to the end: how long from "writing" until it is stored.
    d = copy_data(tmp_path / "full")
    proc = _start_import(d, big)
    started = _wait_for(proc, b"writing")
    write_s = _wait_for(proc, b"imported") - started
    assert proc.wait(timeout=120) == 0
    assert set(load_dataset(d).stalls.codes) == new_codes

    rng = random.Random(2024)
    outcomes = []
    runs = 4
    for run in range(runs):
        d = copy_data(tmp_path / f"killed{run}")
        proc = _start_import(d, big)
        _wait_for(proc, b"writing")
        # One random moment in each quarter of the writing phase (the last one reaching just
        # past its end), so kills land both before and around the moment the data is stored.
        delay = write_s * (run + rng.random()) / runs * 1.1
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        codes = set(load_dataset(d).stalls.codes)  # loadable, whatever happened
        backend = FilesBackend(d)
        entries, total = backend.audit(AuditQuery(limit=None, newest_first=False))
        if codes == old_codes:
            assert (d / "stalls.geojson").read_bytes() == old_bytes
            assert total == 0
            outcomes.append(f"{delay:.2f}s: old")
        else:
            assert codes == new_codes  # never a mixture
            assert total == 1 + len(new_codes) + len(old_codes)  # summary, creates, removes
            assert entries[0].action == "replace" and entries[0].detail is not None
            assert entries[0].detail["added"] == len(new_codes)
            outcomes.append(f"{delay:.2f}s: new")
        assert not (d / JOURNAL_FILE).exists() and not list(d.glob(f".*{TMP_SUFFIX}"))
    print(f"\nwriting phase {write_s:.2f}s; killed at: {', '.join(outcomes)}")


def test_concurrent_clients_lose_no_edit(backend: Backend, backend_env: dict[str, str]) -> None:
    """8 clients x 25 edits through two service processes on one backend: each client adds 1
    to the pitches of its own vendor cluster 13 times and, contending with all the others, 12
    times to those of one shared cluster (retrying on 409 with the current feature the 409
    carries). Counted afterwards in the backend: the sums must be exact."""
    admin = key_for(backend, "admin-wang", Role.admin)
    codes = sorted(rawdata.properties("vendor_clusters"))
    own_codes, shared = codes[:8], codes[8]
    start = {c: int(rawdata.properties("vendor_clusters")[c]["pitches"]) for c in codes[:9]}
    env = {**backend_env, "GEO_SERVICE_RELOAD_POLL_S": "0.1"}

    def client(i: int, urls: list[str]) -> tuple[int, int, int]:
        # What the client knows of each feature: (pitches, version), from the dataset it has.
        known = {c: (start[c], 1) for c in (own_codes[i], shared)}
        own_done = shared_done = conflicts = 0
        with httpx.Client(timeout=60, headers={"X-API-Key": admin}) as http:
            for k in range(25):
                code = own_codes[i] if k % 2 == 0 else shared
                base = urls[(i + k) % 2]
                for _ in range(500):
                    pitches, version = known[code]
                    r = http.patch(
                        f"{base}/api/v1/vendor-clusters/{code}",
                        json={"pitches": pitches + 1},
                        headers={"If-Match": f'W/"{version}"'},
                    )
                    props = (r.json().get("current") or r.json())["properties"]
                    known[code] = (props["pitches"], props["version"])
                    if r.status_code == 200:
                        break
                    assert r.status_code == 409, r.text
                    conflicts += 1
                else:
                    raise AssertionError("no progress after 500 conflicts")
                if code == shared:
                    shared_done += 1
                else:
                    own_done += 1
        return own_done, shared_done, conflicts

    t0 = time.monotonic()
    with service(env) as a, service(env) as b, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: client(i, [a, b]), range(8)))
    elapsed = time.monotonic() - t0
    n_shared = sum(r[1] for r in results)
    assert [r[0] for r in results] == [13] * 8 and n_shared == 8 * 12
    for c in own_codes:
        rec = backend.get(LayerName.vendor_clusters, c)
        assert rec is not None and rec.properties["pitches"] == start[c] + 13 and rec.version == 14
    rec = backend.get(LayerName.vendor_clusters, shared)
    assert rec is not None
    assert rec.properties["pitches"] == start[shared] + n_shared and rec.version == 1 + n_shared
    entries, total = backend.audit(AuditQuery(limit=None))
    assert total == 8 * 25
    steps = sorted((e.after or {})["properties"]["pitches"] for e in entries if e.code == shared)
    assert steps == list(range(start[shared] + 1, start[shared] + n_shared + 1))  # each once
    print(
        f"\n{type(backend).__name__}: 200 edits by 8 clients via 2 processes in {elapsed:.1f}s, "
        f"{sum(r[2] for r in results)} conflicts (409) retried, none lost"
    )


def test_stored_records_read_back_exactly_as_validated(backend: Backend) -> None:
    """The write path reads stored features without validating them again: the result must be
    the very record validation produces, on both backends (else no-op edits would bump)."""
    loaded = backend.load()
    for layer in LayerName:
        validated = records_from_frame(layer, loaded.frames[layer])
        for rec in validated[:: max(1, len(validated) // 60)]:
            assert backend.get(layer, rec.code) == rec
