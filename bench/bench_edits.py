"""Edits: latency of a write (backend + snapshot swap), spread to a second instance, throughput.

Two uvicorn processes on one backend (a copy of data/ for the embedded files; a fresh database
for PostGIS when GEO_SERVICE_TEST_DATABASE_URL is set). The baseline, measured in the same run
against the same process, is a read of the same feature (GET of one stall).

    python -m bench.bench_edits [--no-record]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.results import write_section
from bench.timing import get_latencies
from geo_service.core.principal import Role
from geo_service.storage.base import Backend
from geo_service.storage.files import FilesBackend
from geo_service.storage.postgis import PostGISBackend
from tests import rawdata
from tests.backends import PgDatabases, copy_data, seed_postgis
from tests.keys import key_for
from tests.services import service


def ms(seconds: list[float], q: float = 0.5) -> float:
    return 1000 * statistics.quantiles(seconds, n=100)[int(q * 100) - 1] if len(seconds) > 2 else 0


def bench_backend(backend: Backend, env: dict[str, str], name: str) -> list[str]:
    key = key_for(backend, "bench-admin", Role.admin)
    stall = sorted(rawdata.properties("stalls"))[0]
    grid = sorted(rawdata.properties("grids"))[0]
    clusters = sorted(rawdata.properties("vendor_clusters"))[:8]
    with (
        service(env) as a,
        service(env) as b,
        httpx.Client(timeout=60, headers={"X-API-Key": key}) as http,
    ):
        reads = get_latencies(http, f"{a}/api/v1/stalls/{stall}", 200)

        edits, spread = [], []
        version = 1
        for i in range(60):
            t = time.perf_counter()
            r = http.patch(
                f"{a}/api/v1/stalls/{stall}",
                json={"hours": f"08:{i % 60:02d}-18:00"},
                headers={"If-Match": f'W/"{version}"'},
            )
            r.raise_for_status()
            edits.append(time.perf_counter() - t)
            version = r.json()["properties"]["version"]
            tag = r.headers["ETag"]
            t = time.perf_counter()
            while http.get(f"{b}/api/v1/stalls/{stall}").headers["ETag"] != tag:
                if time.perf_counter() - t > 10:
                    raise RuntimeError("the second instance never caught up")
                time.sleep(0.005)
            spread.append(time.perf_counter() - t)

        grid_edits = []
        for i in range(20):
            etag = http.get(f"{a}/api/v1/grids/{grid}").headers["ETag"]
            t = time.perf_counter()
            http.patch(
                f"{a}/api/v1/grids/{grid}",
                json={"population": 1000 + i},
                headers={"If-Match": etag},
            ).raise_for_status()
            grid_edits.append(time.perf_counter() - t)

        def client(i: int) -> None:
            v = 1
            for k in range(25):
                r = http.patch(
                    f"{(a, b)[(i + k) % 2]}/api/v1/vendor-clusters/{clusters[i]}",
                    json={"pitches": 100 + k},
                    headers={"If-Match": f'W/"{v}"'},
                )
                r.raise_for_status()
                v = r.json()["properties"]["version"]

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        throughput = 200 / (time.perf_counter() - t)

    read_ms, edit_ms = ms(reads), ms(edits)
    row = (
        f"| {name} | {read_ms:.1f} | {edit_ms:.0f} (p95 {ms(edits, 0.95):.0f}) | "
        f"{edit_ms / read_ms:.0f}x | {ms(grid_edits):.0f} | {ms(spread):.0f} "
        f"(max {1000 * max(spread):.0f}) | {throughput:.1f} |"
    )
    print(row)
    return [row]


def record(rows: list[str], command: str) -> None:
    load = os.getloadavg()[0]
    write_section(
        "bench_edits",
        [
            "## Edits and live reload (issue 6)",
            "",
            f"Command: `{command}`  ",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs (load "
            f"average {load:.1f} at the end). Two uvicorn processes on one backend, one client "
            "on loopback. An edit's time includes storing it (journalled file write or PostGIS "
            "transaction), auditing it and swapping in this instance's rebuilt snapshot.",
            "",
            "| backend | read one stall, ms (baseline) | edit one stall, ms median | edit / read "
            "| edit one grid, ms | served by the other instance after, ms median | "
            "8 clients x 25 edits, edits/s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-record", action="store_true", help="Do not write RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = FilesBackend(copy_data(Path(tmp) / "data"))
        env = {"GEO_SERVICE_DATA_DIR": str(files.data_dir), "GEO_SERVICE_RELOAD_POLL_S": "0.1"}
        rows += bench_backend(files, env, "embedded files (poll 0.1 s)")
    url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    if url:
        dbs = PgDatabases(url)
        try:
            db = dbs.create("bench")
            seed_postgis(db)
            pg = PostGISBackend(db, pool_size=2)
            try:
                rows += bench_backend(pg, {"GEO_SERVICE_DATABASE_URL": db}, "PostGIS (NOTIFY)")
            finally:
                pg.close()
        finally:
            dbs.drop_all()
    if not args.no_record:
        record(rows, "python -m bench.bench_edits")


if __name__ == "__main__":
    main()
