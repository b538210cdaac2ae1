"""Two service processes on one backend agree after every edit.

PostGIS instances learn of a change through LISTEN/NOTIFY; embedded instances by watching the
files. Each edit goes through one instance; the other is polled (every 10 ms) until it serves
the change. The test asserts that the change arrives, within a generous ceiling that only a
broken reload would reach on a loaded machine; how fast it arrives is measured by
`python -m bench.bench_edits` (bench/RESULTS.md), and printed here for information.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from geo_service import runtime
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.core.versions import IfMatch
from geo_service.domain.editing import update
from geo_service.storage.base import Backend
from geo_service.storage.postgis import LISTENER_NAME, PostGISBackend
from geo_service.storage.synth import write_city
from geo_service.web.app import create_app
from tests import rawdata
from tests.backends import reset_postgis
from tests.keys import key_for
from tests.services import REPO, child_env, free_port, serve_command, service, stop

CEILING_S = 30.0  # "eventually": a lost change, not a slow one, fails the test


def wait_until(check: Callable[[], bool]) -> float | None:
    """Seconds until ``check()`` holds, or None if it did not within the ceiling."""
    t0 = time.monotonic()
    while True:
        if check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > CEILING_S:
            return None
        time.sleep(0.01)


def test_two_instances_agree_after_every_edit(
    backend: Backend, backend_env: dict[str, str]
) -> None:
    admin = key_for(backend, "admin-wang", Role.admin)
    grids = sorted(rawdata.properties("grids"))[:4]
    n_stalls = len(rawdata.features("stalls"))
    env = {**backend_env, "GEO_SERVICE_RELOAD_POLL_S": "0.2"}
    delays: list[float] = []
    with (
        service(env) as a,
        service(env) as b,
        httpx.Client(timeout=30, headers={"X-API-Key": admin}) as http,
    ):
        urls = (a, b)

        def meta(url: str) -> dict[str, object]:
            body: dict[str, object] = http.get(f"{url}/api/v1/meta").json()
            return body

        def agree(writer: str, reader: str, check: Callable[[], bool]) -> None:
            delay = wait_until(
                lambda: check() and meta(reader)["version"] == meta(writer)["version"]
            )
            assert delay is not None, (
                f"{reader} never served the change of {writer} ({CEILING_S:g} s)"
            )
            delays.append(delay)

        for i in range(12):
            writer, reader = urls[i % 2], urls[(i + 1) % 2]
            grid = grids[i % len(grids)]
            if i % 3 == 0:  # reassign a grid's officer
                etag = http.get(f"{writer}/api/v1/grids/{grid}").headers["ETag"]
                name = f"网格员{i}"
                r = http.patch(f"{writer}/api/v1/grids/{grid}", json={"officer_name": name},
                               headers={"If-Match": etag})  # fmt: skip
                assert r.status_code == 200, r.text
                new_etag = r.headers["ETag"]

                def officer_seen(
                    reader: str = reader, grid: str = grid, name: str = name, tag: str = new_etag
                ) -> bool:
                    got = http.get(f"{reader}/api/v1/grids/{grid}")
                    return (
                        got.headers["ETag"] == tag
                        and got.json()["properties"]["officer"]["name"] == name
                    )

                agree(writer, reader, officer_seen)
            else:  # a new stall in the grid: counted in it, and in the layer
                before = http.get(f"{writer}/api/v1/grids/{grid}").json()["properties"]
                p = rawdata.geometries("grids")[grid].representative_point()
                code = f"XLP-370799-{i + 1:03d}"
                body = {"code": code, "name": "新点", "services": ["修车"], "hours": "08:00-18:00",
                        "status": "active", "lon": p.x, "lat": p.y}  # fmt: skip
                r = http.post(f"{writer}/api/v1/stalls", json=body)
                assert r.status_code == 201, r.text
                want = before["counts"]["stalls"] + 1

                def stall_seen(reader: str = reader, grid: str = grid, want: int = want) -> bool:
                    got = http.get(f"{reader}/api/v1/grids/{grid}").json()["properties"]
                    return bool(got["counts"]["stalls"] == want)

                agree(writer, reader, stall_seen)
        added = sum(1 for i in range(12) if i % 3)
        assert meta(a)["layers"]["stalls"]["features"] == n_stalls + added  # type: ignore[index]

        # A whole new layer through one instance: the other serves it, too.
        feats = rawdata.features("stalls")[: n_stalls // 2]
        data = json.dumps({"type": "FeatureCollection", "features": feats}).encode()
        r = http.put(f"{a}/api/v1/layers/stalls", content=data)
        assert r.status_code == 200, r.text

        def layer_seen() -> bool:
            return meta(b)["layers"]["stalls"]["features"] == len(feats)  # type: ignore[index]

        agree(a, b, layer_seen)
    print(
        f"\n{type(backend).__name__}: {len(delays)} edits, the other instance served each after "
        f"median {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
        f"({', '.join(f'{d * 1000:.0f}' for d in delays)})"
    )


def test_an_instance_reconnects_its_listener_and_catches_up(
    rw_database: str, settings: Settings
) -> None:
    """Kill the LISTEN connection under a running instance: it reconnects, reloads what it
    missed, and serves later changes again."""
    reset_postgis(rw_database)
    backend = PostGISBackend(rw_database, pool_size=2)
    other = PostGISBackend(rw_database, pool_size=1)  # "another instance" writing directly
    admin = Principal(Role.admin, "elsewhere")
    grid = sorted(rawdata.properties("grids"))[0]

    def rename(name: str, version: int) -> None:
        mutation = update(
            LayerName.grids, admin, {"name": name}, None, IfMatch(False, frozenset({version})),
            lambda rec: rec.code,
        )  # fmt: skip
        other.modify(LayerName.grids, grid, mutation, admin, "update")

    try:
        with TestClient(create_app(settings, backend=backend)) as api:
            name_of = lambda: api.get(f"/api/v1/grids/{grid}").json()["properties"]["name"]  # noqa: E731
            rename("改名一", 1)
            assert wait_until(lambda: name_of() == "改名一") is not None
            with psycopg.connect(rw_database, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND datname = current_database()",
                    (LISTENER_NAME,),
                ).fetchall()
            assert killed == [(True,)]
            rename("改名二", 2)  # while the listener is down, or reconnecting
            caught_up = wait_until(lambda: name_of() == "改名二")
            assert caught_up is not None, "the instance never caught up"
            rename("改名三", 3)  # and it listens again
            assert wait_until(lambda: name_of() == "改名三") is not None
    finally:
        other.close()
        backend.close()


def _children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_serve_with_two_workers_loads_once_and_starts_every_worker(tmp_path: Path) -> None:
    """``serve --workers 2`` loads the data in the parent and forks: both workers finish their
    start-up, answer, and none is killed and restarted on the way."""
    data = tmp_path / "city"
    write_city(data, 400, 5, 5)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = serve_command(port, 2)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env({"GEO_SERVICE_DATA_DIR": str(data)}), stderr=log
        )
    try:
        started = lambda: log_path.read_text().count("Application startup complete")  # noqa: E731
        assert wait_until(lambda: proc.poll() is None and started() >= 2) is not None
        workers = _children(proc.pid)
        assert len(workers) == 2
        for _ in range(20):  # fresh connections, so both workers take some
            assert httpx.get(f"{url}/readyz", timeout=10).json() == {"status": "ready"}
            meta = httpx.get(f"{url}/api/v1/meta", timeout=10).json()
            assert meta["layers"]["grids"]["features"] == 400
        assert _children(proc.pid) == workers, "a worker was restarted"
        text = log_path.read_text()
        assert text.count("Booting worker") == 2 and "died" not in text, text
    finally:
        stop(proc, 15)


def test_a_preloaded_snapshot_is_served_and_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime opened after ``preload`` starts from that very snapshot (no second load) and
    catches up with a change made between the preload and its start."""
    monkeypatch.setattr(runtime, "_preloaded", None)
    data = tmp_path / "city"
    write_city(data, 100, 3, 3)
    settings = Settings(data_dir=data, reload_poll_s=0.05)
    first = runtime.preload(settings)
    write_city(data, 64, 3, 3, seed=1)  # the source changes before a worker starts
    rt = runtime.open_runtime(settings)
    try:
        assert rt.store.get() is first
        rt.start()
        assert wait_until(lambda: len(rt.store.get().grids) == 64) is not None
        assert rt.reloader.reloads == 1
    finally:
        rt.close()
