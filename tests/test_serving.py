"""The serving model: heavy work never blocks the event loop, a full pool answers 503, pages are
cached on their declared parameters, the shipped `serve`, and the defects the foundation issue
found (each test here failed on the code before it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot
from geo_service.core.versions import IfMatch
from geo_service.domain.editing import update
from geo_service.storage.base import Backend
from geo_service.web.app import create_app
from geo_service.web.offload import Busy, HeavyPool
from geo_service.web.pagecache import PageCache
from tests import rawdata
from tests.keys import key_for
from tests.services import REPO, child_env, free_port, service, stop, wait_ready

KNOWN = ("/api/v1/grids/locate?lon=119.16&lat=36.71", "370705002012002")


# --- the bounded pool ---------------------------------------------------------------------------


def test_a_full_pool_refuses_at_once_and_frees_slots_only_when_work_ends() -> None:
    async def main() -> None:
        pool = HeavyPool(threads=1, queue=1, retry_after_s=7)
        release = threading.Event()
        running = [asyncio.ensure_future(pool.run(release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as refused:
            await pool.run(lambda: 1)
        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "7"}
        running[0].cancel()  # a client that went away: its thread is still busy
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await pool.run(lambda: 1)
        release.set()
        assert await running[1] is True
        for _ in range(100):  # the slot comes back once the job has really finished
            if pool.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert await pool.run(lambda: 41 + 1) == 42
        pool.close()

    asyncio.run(main())


def test_a_busy_service_answers_503_with_retry_after(client: TestClient) -> None:
    heavy = client.app.state.heavy  # type: ignore[attr-defined]
    saved = heavy.pending
    heavy.pending = heavy.limit  # as if every thread and queue place were taken
    try:
        r = client.get("/api/v1/coverage?layer=stalls&radius_m=777")
        assert r.status_code == 503
        assert int(r.headers["Retry-After"]) > 0
        assert "busy" in r.json()["detail"]
        ok = client.get(KNOWN[0])  # light requests are not queued behind heavy ones
        assert ok.status_code == 200 and ok.json()["grid"]["code"] == KNOWN[1]
    finally:
        heavy.pending = saved


def test_identical_page_requests_share_one_build() -> None:
    async def main() -> None:
        pool = HeavyPool(threads=2, queue=8)
        cache: PageCache[str] = PageCache(pool)
        snap = object.__new__(Snapshot)  # any weak-referenceable key object will do
        calls = []

        def build() -> str:
            calls.append(1)
            time.sleep(0.2)
            return "page"

        pages = await asyncio.gather(*(cache.get(snap, ("k",), build) for _ in range(5)))
        assert pages == ["page"] * 5 and len(calls) == 1 and cache.builds == 1
        assert await cache.get(snap, ("k",), build) == "page" and len(calls) == 1
        pool.close()

    asyncio.run(main())


def test_undeclared_query_parameters_do_not_rebuild_a_map(client: TestClient) -> None:
    pages = client.app.state.pages  # type: ignore[attr-defined]
    first = client.get("/maps/overview?basemap=osm")
    assert first.status_code == 200
    built = pages.builds
    for junk in ("x=1", "x=2", "utm_source=wechat", "basemap=osm&y=3"):
        r = client.get(f"/maps/overview?basemap=osm&{junk}")
        assert r.status_code == 200 and r.text == first.text
    assert pages.builds == built
    assert "x=1" not in client.get("/maps/overview?x=1").text  # links repeat declared ones only


# --- the event loop keeps answering while heavy pages are built ---------------------------------


def test_lookups_are_answered_while_heavy_maps_are_built(tmp_path: object) -> None:
    """Four different coverage maps (each a second or more of CPU) are requested at once; grid
    lookups sent meanwhile must be answered before the maps are done. With the maps built on
    the event loop no lookup could finish until every build had."""
    env = {"GEO_SERVICE_DATA_DIR": str(REPO / "data"), "GEO_SERVICE_HEAVY_THREADS": "2"}
    with service(env) as url, httpx.Client(timeout=120) as http:
        maps_done: list[float] = []

        def build(radius: int) -> None:
            r = http.get(f"{url}/maps/coverage?layer=stalls&radius_m={radius}&by=community")
            assert r.status_code in (200, 503)
            maps_done.append(time.monotonic())

        threads = [threading.Thread(target=build, args=(r,)) for r in (610, 720, 830, 940)]
        for t in threads:
            t.start()
        answered: list[float] = []
        while len(maps_done) < len(threads):
            r = http.get(f"{url}{KNOWN[0]}")
            assert r.status_code == 200 and r.json()["grid"]["code"] == KNOWN[1]
            answered.append(time.monotonic())
        for t in threads:
            t.join()
        assert answered and answered[0] < min(maps_done), "no lookup finished before any map"
        during = [t for t in answered if t < max(maps_done)]
        assert len(during) >= 3, f"only {len(during)} lookups answered while maps were built"


# --- defects found by the foundation issue ------------------------------------------------------


def test_what_if_map_with_a_site_outside_every_grid(client: TestClient) -> None:
    """Was a 500: a site outside every grid gave a NaN grid code that reached the encoder."""
    r = client.get("/maps/coverage?layer=stalls&add=119.1,36.7;119.2,36.8")
    assert r.status_code == 200, r.text[:300]
    assert "候选点" in r.text


def test_error_messages_quote_at_most_about_100_characters(client: TestClient) -> None:
    r = client.get("/api/v1/grids/locate", params={"lon": "9" * 30_000 + "x", "lat": "36.7"})
    assert r.status_code == 422
    assert len(r.content) < 1500, len(r.content)
    assert "30,001 chars" in r.json()["detail"]
    r = client.get(
        "/api/v1/stalls/nearest", params={"lon": 119.1, "lat": 36.7, "crs": "x" * 60_000}
    )
    assert r.status_code == 422 and len(r.content) < 3000


def test_deeply_nested_points_are_a_clear_4xx(client: TestClient) -> None:
    """Was a 500: RecursionError while quoting the bad item in the error message."""
    body = b'{"points": ' + b"[" * 1000 + b"119.1, 36.7" + b"]" * 1000 + b"}"
    r = client.post(
        "/api/v1/grids/locate", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["detail"]


@pytest.fixture
def api(backend: Backend, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, backend=backend)) as c:
        yield c


def test_unreadable_hours_are_refused_on_edit(api: TestClient, backend: Backend) -> None:
    """Was a 200: edits must validate exactly as `validate` does."""
    admin = key_for(backend, "admin-wang", Role.admin)
    code = sorted(rawdata.properties("stalls"))[0]
    before = api.get(f"/api/v1/stalls/{code}")
    r = api.patch(
        f"/api/v1/stalls/{code}",
        json={"hours": "garbage"},
        headers={"X-API-Key": admin, "If-Match": before.headers["ETag"]},
    )
    assert r.status_code == 422, r.text
    assert any(e["field"] == "hours" for e in r.json()["errors"])
    after = api.get(f"/api/v1/stalls/{code}")
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.json()["properties"]["hours"] == before.json()["properties"]["hours"]


def test_validate_rejects_unreadable_hours(tmp_path: object) -> None:
    from pathlib import Path

    feats = rawdata.features("stalls")
    feats[3] = {**feats[3], "properties": {**feats[3]["properties"], "hours": "whenever"}}
    path = Path(str(tmp_path)) / "stalls.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    result = CliRunner().invoke(cli_app, ["validate", str(path), "--layer", "stalls", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["rows_loaded"] == len(feats) - 1
    bad = [p for p in report["problems"] if p["field"] == "hours"]
    assert len(bad) == 1 and bad[0]["level"] == "error", bad


def test_cli_read_commands_answer_from_the_configured_backend(
    backend: Backend, backend_env: dict[str, str]
) -> None:
    """Was: `locate` read data/ even with GEO_SERVICE_DATABASE_URL set."""
    grid = KNOWN[1]
    rec = next(r for r in backend.load([LayerName.grids]).frames[LayerName.grids].itertuples()
               if r.code == grid)  # fmt: skip
    who = Principal(Role.admin, "test")
    mutation = update(LayerName.grids, who, {"name": "改过名的网格"}, None,
                      IfMatch(False, frozenset({int(rec.version or 1)})), lambda r: r.code)  # fmt: skip
    backend.modify(LayerName.grids, grid, mutation, who, "update")
    out = subprocess.run(
        [sys.executable, "-m", "geo_service.cli", "locate", "119.16", "36.71", "--json"],
        cwd=REPO, env=child_env(backend_env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["grid"]["name"] == "改过名的网格"


# --- the shipped `serve` ------------------------------------------------------------------------


@pytest.mark.parametrize("access_log", [False, True])
def test_serve_as_shipped(access_log: bool, tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "geo_service.cli", "serve", "--port", str(port), "--workers", "1"]
    if access_log:
        cmd.append("--access-log")
    env = child_env({"GEO_SERVICE_DATA_DIR": str(REPO / "data")})
    log = tmp_path / "serve.log"
    with log.open("w+b") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = wait_ready(proc, f"http://127.0.0.1:{port}", 60, out)
            for _ in range(3):
                r = httpx.get(f"{url}{KNOWN[0]}")
                assert r.json()["grid"]["code"] == KNOWN[1]
        finally:
            stop(proc, 30)
    output = log.read_text()
    logged = [line for line in output.splitlines() if "GET /api/v1/grids/locate" in line]
    assert len(logged) == (3 if access_log else 0), output[-2000:]
    assert "1 worker" in output


@pytest.mark.parametrize(
    "query",
    [
        "lon=119.16&lat=36.71",
        "lon=119.1659&lat=36.7104&crs=gcj02",
        "lon=36.71&lat=119.16",  # swapped: outside, with the nearest grid
        "lon=10&lat=10",
        "lon=119.16&lat=95",
        "lon=abc&lat=36.7",
        "lat=36.7",
        "lon=119.16&lat=36.71&crs=mars",
        "lon=119.16&lat=36.71&lon=119.2",  # repeated: the last value, as Starlette reads it
        "lon=%31%31%39.16&lat=36.71",
        "lon=119.16&lat=36.71&district=370702",  # unknown: 400 naming it (issue 12)
        "lon=119.16&lat=36.71&k=5&format=csv",  # several unknown
        "lon=abc&lat=36.71&x-unknown=1",  # the unknown parameter is named first
        "lon=119.16&lat=36.71&crs=",  # declared, blank
    ],
)
def test_the_fast_lane_answers_exactly_as_the_route(
    query: str, snapshot: Snapshot, settings: Settings, shared_backend: Backend
) -> None:
    """GET locate is served by web.fastlane; the FastAPI route is its documented twin."""
    from geo_service.core.snapshot import SnapshotStore

    plain = create_app(settings, SnapshotStore(snapshot), shared_backend)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls.__name__ != "LocateFastLane"]
    fast = create_app(settings, SnapshotStore(snapshot), shared_backend)
    assert any(m.cls.__name__ == "LocateFastLane" for m in fast.user_middleware)
    with TestClient(plain) as a, TestClient(fast) as b:
        ra, rb = a.get(f"/api/v1/grids/locate?{query}"), b.get(f"/api/v1/grids/locate?{query}")
    assert (ra.status_code, ra.json()) == (rb.status_code, rb.json())
    assert ra.headers["content-type"] == rb.headers["content-type"]
    assert rb.headers["x-content-type-options"] == "nosniff"  # outer middleware still applies
