"""Grid locate on a synthetic city of 100,000 grids, against baselines measured in the same run.

- bulk: ``PolygonIndex.locate`` of 1,000,000 points vs a bare shapely STRtree predicate query on
  the same polygons (goal: at most 1.5x its time), vs rtree (bulk-loaded bounds + ``intersects_xy``)
  and vs PostGIS (GiST index, ``ST_Covers`` lateral join; goal: ours at least 5x faster), with
  the codes checked against PostGIS for every point;
- single point in-process: ``locate`` of one point, and the whole GET handler through the ASGI
  app, vs the bare STRtree query and a bare FastAPI endpoint (``bench/bare_app.py``);
- HTTP under load: the real service and the bare endpoint, each under uvicorn with 2 workers
  (uvloop, httptools, no access log), driven by ``wrk`` on 127.0.0.1 for a bounded time
  (goal: at least 80% of the bare endpoint's requests/s).

With ``--cells`` (issue 13) it measures the cell lookup table instead, and records it in a
section of its own: 1,000,000 points on 100,000 grids through the bare STRtree query (baseline),
the tree path (``PolygonIndex.locate_tree``, the previous bulk locate) and the cell table (goal:
at least 5x faster than the bare query), the codes against the tree path for every point and
against PostGIS ``ST_Covers`` for a sample; the table's build time and size at 100,000 and
1,000,000 grids; single-point ``locate_point`` before and after the table is built.

Run: ``python -m bench.bench_locate`` (``--help`` for sizes; PostGIS from
``GEO_SERVICE_TEST_DATABASE_URL``, skipped if unset); ``python -m bench.bench_locate --cells``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from rtree import index as rtree_index
from shapely import STRtree

from bench import bare_app
from bench.city import OUT, load_city
from bench.results import command, machine, markdown_table, print_table, stamp, write_section
from bench.timing import best_of, cpu_seconds
from geo_service.core.crs import MetricProjection
from geo_service.core.index import CELLS_PER_GRID, MAX_CELLS, PolygonIndex
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.storage.synth import synth_grids
from geo_service.web.app import create_app
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
SECTION = "Grid locate (issue 2)"
MARGIN = 0.05  # points spread 5% beyond the city's bounds on each side, so some miss
UVICORN_FLAGS = ["--workers", "2", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]


@dataclass
class Row:
    what: str
    ours: str
    baseline: str
    ratio: str
    goal: str = ""
    met: str = ""


def say(msg: str) -> None:
    print(f"[bench_locate] {msg}", flush=True)


def random_points(snap: Snapshot, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = snap.bounds
    dx, dy = (maxx - minx) * MARGIN, (maxy - miny) * MARGIN
    rng = np.random.default_rng(seed)
    return rng.uniform(minx - dx, maxx + dx, n), rng.uniform(miny - dy, maxy + dy, n)


# --- bulk -------------------------------------------------------------------------------------


def rtree_of(geoms: npt.NDArray[np.object_]) -> rtree_index.Index:
    b = shapely.bounds(geoms)
    props = rtree_index.Property()
    props.dimension = 2
    ids = np.arange(len(geoms), dtype=np.int64)
    mins, maxs = np.ascontiguousarray(b[:, :2]), np.ascontiguousarray(b[:, 2:])
    return rtree_index.Index((ids, mins, maxs), properties=props)


def rtree_locate(
    tree: rtree_index.Index, geoms: npt.NDArray[np.object_], lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bounding-box hits from rtree's bulk query, refined with ``intersects_xy``."""
    xy = np.column_stack([lon, lat])
    ids, counts = tree.intersection_v(xy, xy)
    pt = np.repeat(np.arange(len(lon)), counts.astype(np.int64))
    ids = ids.astype(np.int64)
    keep = shapely.intersects_xy(geoms[ids], lon[pt], lat[pt])
    return pt[keep], ids[keep]


def hits_to_index(n: int, pt: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Smallest polygon per point, -1 where none (to compare baselines with ours)."""
    out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, pt, poly)
    out[out == np.iinfo(np.int64).max] = -1
    return out


def bench_bulk(snap: Snapshot, lon: np.ndarray, lat: np.ndarray, repeats: int) -> list[Row]:
    index = snap.grids.index
    # The baseline gets its own tree over fresh copies of the polygons (not prepared by ours).
    geoms = shapely.from_wkb(shapely.to_wkb(index.geoms))
    t_strtree_build, bare = best_of(lambda: STRtree(geoms), 1)
    t_rtree_build, rtree = best_of(lambda: rtree_of(geoms), 1)
    n = len(lon)

    def ours() -> np.ndarray:
        return index.locate(lon, lat)

    def bare_query() -> tuple[np.ndarray, np.ndarray]:
        pt, poly = bare.query(shapely.points(lon, lat), predicate="intersects")
        return pt, poly

    def rtree_query() -> tuple[np.ndarray, np.ndarray]:
        return rtree_locate(rtree, geoms, lon, lat)

    times: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(repeats):  # interleaved, best of each: fairer on a shared machine
        for name, fn in (("ours", ours), ("bare", bare_query), ("rtree", rtree_query)):
            t, results[name] = best_of(fn, 1)
            times[name] = min(times.get(name, float("inf")), t)
    ours_idx = results["ours"]
    bare_idx = hits_to_index(n, *results["bare"])
    rtree_idx = hits_to_index(n, *results["rtree"])
    say(
        f"bulk {n:,} points: ours {times['ours']:.3f} s, bare STRtree {times['bare']:.3f} s, "
        f"rtree {times['rtree']:.3f} s; located {(ours_idx >= 0).sum():,}; "
        f"same grid as bare {int((bare_idx == ours_idx).sum()):,}, "
        f"as rtree {int((rtree_idx == ours_idx).sum()):,}"
    )
    ratio = times["ours"] / times["bare"]
    return [
        Row(
            f"bulk locate {n:,} points (s, best of {repeats})",
            f"{times['ours']:.3f}",
            f"bare STRtree query {times['bare']:.3f}",
            f"{ratio:.2f}x time",
            "≤ 1.5x",
            "yes" if ratio <= 1.5 else "NO",
        ),
        Row(
            "  same points: rtree bulk query + intersects_xy (s)",
            f"rtree {times['rtree']:.3f}",
            f"bare STRtree query {times['bare']:.3f}",
            f"{times['rtree'] / times['bare']:.2f}x time",
        ),
        Row(
            f"  index build, {len(geoms):,} polygons (s)",
            f"rtree {t_rtree_build:.3f}",
            f"STRtree {t_strtree_build:.3f}",
            f"{t_rtree_build / t_strtree_build:.2f}x time",
        ),
        Row(
            "  agreement with bare STRtree (smallest hit)",
            f"{int((bare_idx == ours_idx).sum()):,} / {n:,}",
            f"rtree: {int((rtree_idx == ours_idx).sum()):,} / {n:,}",
            "",
        ),
    ]


# --- PostGIS ----------------------------------------------------------------------------------

PG_QUERY = """
CREATE TEMP TABLE bench_located AS
SELECT p.id, g.code FROM {points} p
LEFT JOIN LATERAL (
    SELECT g.code FROM bench_grids g WHERE ST_Covers(g.geom, p.geom) ORDER BY g.code LIMIT 1
) g ON true
"""


def pg_points(conn: Any, table: str, lon: np.ndarray, lat: np.ndarray) -> None:
    """``table(id int, geom geometry(Point, 4326))`` from the arrays, via COPY."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE UNLOGGED TABLE {table}_stage (id int, lon float8, lat float8)")
    with conn.cursor().copy(f"COPY {table}_stage (id, lon, lat) FROM STDIN") as copy:
        for row in zip(range(len(lon)), lon.tolist(), lat.tolist(), strict=True):
            copy.write_row(row)
    conn.execute(
        f"CREATE TABLE {table} AS SELECT id, "
        f"ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS geom FROM {table}_stage"
    )
    conn.execute(f"DROP TABLE {table}_stage")
    conn.execute(f"ANALYZE {table}")


def pg_locate(conn: Any, table: str, n: int) -> tuple[np.ndarray, float]:
    """Codes (None outside) of the points in ``table`` by the ST_Covers join, and its time."""
    conn.execute("DROP TABLE IF EXISTS bench_located")
    t0 = time.perf_counter()
    conn.execute(PG_QUERY.format(points=table))
    seconds = time.perf_counter() - t0
    rows = conn.execute("SELECT id, code FROM bench_located").fetchall()
    conn.execute("DROP TABLE bench_located")
    codes = np.full(n, None, dtype=object)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    codes[ids] = [r[1] for r in rows]
    return codes, seconds


def shared_vertices(snap: Snapshot, n_grids: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Corners of random grids: each lies on 1-4 grids, so the smallest-code rule decides."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(snap.grids), min(n_grids, len(snap.grids)), replace=False)
    xy = np.unique(shapely.get_coordinates(snap.grids.index.geoms[pick]), axis=0)
    return xy[:, 0], xy[:, 1]


def agreement(snap: Snapshot, lon: np.ndarray, lat: np.ndarray, pg_codes: np.ndarray) -> int:
    ours = np.append(snap.grids.codes, None)[snap.grids.index.locate(lon, lat)]
    return int(sum(a == b for a, b in zip(ours, pg_codes, strict=True)))


def bench_postgis(
    snap: Snapshot, lon: np.ndarray, lat: np.ndarray, ours_s: float, max_points: int
) -> list[Row]:
    url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    if not url:
        say("PostGIS skipped: set GEO_SERVICE_TEST_DATABASE_URL (make bench does)")
        return [Row("PostGIS", "skipped", "GEO_SERVICE_TEST_DATABASE_URL unset", "", "≥ 5x", "?")]
    import psycopg

    from tests.pgref import load_table

    n_all = len(lon)
    n = min(max_points, n_all)
    lon, lat = lon[:n], lat[:n]
    vlon, vlat = shared_vertices(snap, 5000, seed=11)
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        load_table(conn, "bench_grids", snap.grids.codes.tolist(), snap.grids.index.geoms)
        pg_points(conn, "bench_pts", lon, lat)
        pg_points(conn, "bench_vertices", vlon, vlat)
        t_load = time.perf_counter() - t0
        say(f"PostGIS: loaded {len(snap.grids):,} grids, {n:,} points in {t_load:.1f} s")
        version, workers = conn.execute(
            "SELECT postgis_lib_version(), current_setting('max_parallel_workers_per_gather')"
        ).fetchone()
        pg_codes, t_pg = pg_locate(conn, "bench_pts", n)
        pg_vertex_codes, _ = pg_locate(conn, "bench_vertices", len(vlon))
        for table in ("bench_pts", "bench_vertices", "bench_grids"):
            conn.execute(f"DROP TABLE {table}")
    agree = agreement(snap, lon, lat, pg_codes)
    agree_v = agreement(snap, vlon, vlat, pg_vertex_codes)
    scaled = t_pg * n_all / n
    speedup = scaled / ours_s
    say(
        f"PostGIS ST_Covers lateral join, {n:,} points: {t_pg:.2f} s"
        + (f" (scaled to {n_all:,}: {scaled:.1f} s)" if n < n_all else "")
        + f"; codes agree for {agree:,} / {n:,} random points, "
        f"{agree_v:,} / {len(vlon):,} grid corners"
    )
    sub = "" if n == n_all else f", {n:,} points scaled x{n_all / n:g}"
    return [
        Row(
            f"bulk locate vs PostGIS GiST + ST_Covers (s{sub})",
            f"{ours_s:.3f}",
            f"PostGIS {version} {scaled:.2f} (parallel workers ≤ {workers})",
            f"{speedup:.1f}x faster",
            "≥ 5x faster",
            "yes" if speedup >= 5 else "NO",
        ),
        Row(
            "  codes agree with PostGIS, random points",
            f"{agree:,} / {n:,}",
            "",
            f"{agree / n:.2%}",
            "all",
            "yes" if agree == n else "NO",
        ),
        Row(
            "  codes agree with PostGIS, grid corners (edge rule)",
            f"{agree_v:,} / {len(vlon):,}",
            "",
            f"{agree_v / len(vlon):.2%}",
            "all",
            "yes" if agree_v == len(vlon) else "NO",
        ),
    ]


# --- single point in-process ------------------------------------------------------------------


def per_op_us(fns: dict[str, Callable[[int], Any]], n: int, repeats: int) -> dict[str, float]:
    """Microseconds per call of each function over ``n`` inputs, interleaved, best of repeats."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], (time.perf_counter() - t0) / n * 1e6)
    return best


async def asgi_get(app: Any, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI app in-process (no sockets, no HTTP parsing)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), (b"accept-encoding", b"gzip, deflate")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 12345),
    }
    status, body = 0, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


def asgi_us(apps: dict[str, tuple[Any, str]], queries: list[str], repeats: int) -> dict[str, float]:
    """Microseconds per GET of each (app, path) in-process, interleaved, best of repeats."""

    async def run() -> dict[str, float]:
        for app, path in apps.values():
            for q in queries[:50]:  # warm up (builds the middleware stack); check the answers
                status, body = await asgi_get(app, path, q)
                if status != 200:
                    raise RuntimeError(f"{path}?{q} -> {status}: {body[:200]!r}")
        best = dict.fromkeys(apps, float("inf"))
        for _ in range(repeats):
            for name, (app, path) in apps.items():
                t0 = time.perf_counter()
                for q in queries:
                    await asgi_get(app, path, q)
                best[name] = min(best[name], (time.perf_counter() - t0) / len(queries) * 1e6)
        return best

    return asyncio.run(run())


def bench_single(
    snap: Snapshot, data_dir: Path, lon: np.ndarray, lat: np.ndarray, n: int, repeats: int
) -> list[Row]:
    index = snap.grids.index
    geoms = shapely.from_wkb(shapely.to_wkb(index.geoms))
    bare = STRtree(geoms)
    xs, ys = lon[:n].tolist(), lat[:n].tolist()
    us = per_op_us(
        {
            "point": lambda i: index.locate_point(xs[i], ys[i]),
            "vector": lambda i: index.locate(xs[i], ys[i]),
            "bare": lambda i: bare.query(shapely.points(xs[i], ys[i]), predicate="intersects"),
        },
        n,
        repeats,
    )
    queries = [f"lon={x!r}&lat={y!r}" for x, y in zip(xs, ys, strict=True)]
    located = index.locate(lon[:n], lat[:n]) >= 0
    app = create_app(Settings(data_dir=data_dir), SnapshotStore(snap))
    bare_asgi = bare_app.create_app(codes=snap.grids.codes, geoms=geoms)
    get_us = asgi_us(
        {"ours": (app, "/api/v1/grids/locate"), "bare": (bare_asgi, "/locate")}, queries, repeats
    )
    say(
        f"single point: locate_point {us['point']:.1f} µs, locate {us['vector']:.1f} µs, "
        f"bare {us['bare']:.1f} µs; GET in-process {get_us['ours']:.1f} µs "
        f"vs bare endpoint {get_us['bare']:.1f} µs"
    )
    return [
        Row(
            f"single-point locate in-process, `locate_point` (µs/op, {n:,} points)",
            f"{us['point']:.1f}",
            f"bare STRtree query {us['bare']:.1f}",
            f"{us['point'] / us['bare']:.2f}x time",
        ),
        Row(
            "  same points through the bulk `locate` (µs/op)",
            f"{us['vector']:.1f}",
            f"bare STRtree query {us['bare']:.1f}",
            f"{us['vector'] / us['bare']:.2f}x time",
        ),
        Row(
            f"GET locate through the ASGI app in-process (µs/op, {located.mean():.0%} inside)",
            f"{get_us['ours']:.1f}",
            f"bare FastAPI endpoint {get_us['bare']:.1f}",
            f"{get_us['ours'] / get_us['bare']:.2f}x time",
        ),
    ]


# --- HTTP under load --------------------------------------------------------------------------


class Server:
    """A uvicorn server with 2 workers in its own process group, stopped on exit."""

    def __init__(
        self,
        app: str | None,
        data_dir: Path,
        log: Path,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``app``: a uvicorn factory started with ``UVICORN_FLAGS``; or ``argv``, a whole command
        in which ``{port}`` is replaced (e.g. the shipped ``geo-service serve``)."""
        self.port = free_port()
        if argv is not None:
            self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        else:
            assert app is not None
            self.argv = [
                sys.executable, "-m", "uvicorn", "--factory", app,
                "--host", "127.0.0.1", "--port", str(self.port), *UVICORN_FLAGS,
            ]  # fmt: skip
        self.data_dir = data_dir
        self.log = log
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        # One load generator is one client: the rate limit would refuse most of its requests.
        env = {
            **os.environ,
            "GEO_SERVICE_DATA_DIR": str(self.data_dir),
            "GEO_SERVICE_RATE_LIMIT_ENABLED": "false",
            **self.extra_env,
        }
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if text.count("Application startup complete.") >= 2:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{text[-3000:]}")
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"server not ready in 180 s:\n{self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: uvicorn and its 2 workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes (its session): robust to other load."""
        assert self.proc is not None
        return cpu_seconds({self.proc.pid})  # its own session: uvicorn and its workers


def wrk_script(paths: list[str], out: Path) -> Path:
    body = ",\n".join(f'"{p}"' for p in paths)
    out.write_text(
        "-- like phones, browsers and HTTP libraries, ask for gzip (small answers stay plain)\n"
        'wrk.headers["Accept-Encoding"] = "gzip, deflate"\n'
        f"local paths = {{\n{body}\n}}\nlocal i = 0\n"
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
    )
    return out


@dataclass
class Load:
    rps: float
    requests: int
    tool: str


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> Load:
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
    n = re.search(r"(\d+) requests in", out.stdout)
    if not (m and n):
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    errors = re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out.stdout)
    if errors:
        say(f"wrk reported: {'; '.join(errors)}")
    return Load(float(m.group(1)), int(n.group(1)), "wrk")


def run_httpx(url: str, paths: list[str], seconds: float, connections: int) -> Load:
    """Fallback load loop when wrk is missing: bounded in time, on loopback."""
    import httpx

    async def run() -> tuple[float, int]:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
            deadline = time.monotonic() + seconds
            done = 0

            async def worker(k: int) -> None:
                nonlocal done
                i = k
                while time.monotonic() < deadline:
                    r = await client.get(paths[i % len(paths)])
                    r.raise_for_status()
                    done += 1
                    i += connections

            t0 = time.monotonic()
            await asyncio.gather(*(worker(k) for k in range(connections)))
            return done / (time.monotonic() - t0), done

    rps, done = asyncio.run(run())
    return Load(rps, done, "python httpx loop (wrk missing)")


def load(
    srv: Server, paths: list[str], seconds: float, connections: int, tag: str
) -> tuple[Load, float]:
    """Requests/s under a bounded load, and the server's CPU seconds per request."""
    if shutil.which("wrk"):
        script = wrk_script(paths, OUT / f"wrk_{tag}.lua")

        def go(secs: float) -> Load:
            return run_wrk(srv.url, script, secs, connections)
    else:

        def go(secs: float) -> Load:
            return run_httpx(srv.url, paths, secs, connections)

    go(min(2.0, seconds))  # warm-up
    cpu0 = srv.cpu_seconds()
    res = go(seconds)
    return res, (srv.cpu_seconds() - cpu0) / max(res.requests, 1)


def check_servers(ours: Server, bare: Server, lon: np.ndarray, lat: np.ndarray) -> int:
    """Both servers answer the same code for the first points (content, not just status)."""
    import httpx

    same = 0
    for x, y in zip(lon[:20].tolist(), lat[:20].tolist(), strict=True):
        a = httpx.get(f"{ours.url}/api/v1/grids/locate", params={"lon": x, "lat": y}).json()
        b = httpx.get(f"{bare.url}/locate", params={"lon": x, "lat": y}).json()
        code = a["grid"]["code"] if a["grid"] else None
        if code != b["code"]:
            raise RuntimeError(f"servers disagree at {x}, {y}: {code} vs {b['code']}")
        if code is None and a["nearest"] is None:
            raise RuntimeError(f"no nearest grid for an outside point {x}, {y}")
        same += 1
    return same


SERVERS = {  # name: (uvicorn factory, path prefix of the locate URL)
    "ours": ("geo_service.web.app:create_app", "/api/v1/grids/locate"),
    "handler": ("bench.bare_app:create_handler_app", "/api/v1/grids/locate"),
    "bare": ("bench.bare_app:create_app", "/locate"),
}


def bench_http(
    data_dir: Path, lon: np.ndarray, lat: np.ndarray, seconds: float, connections: int, rounds: int
) -> tuple[list[Row], list[str]]:
    pts = list(zip(lon.tolist(), lat.tolist(), strict=True))
    paths = {k: [f"{p}?lon={x!r}&lat={y!r}" for x, y in pts] for k, (_, p) in SERVERS.items()}
    servers = {k: Server(app, data_dir, OUT / f"server_{k}.log") for k, (app, _) in SERVERS.items()}
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in SERVERS}  # (req/s, CPU s/req)
    tool = ""
    if not shutil.which("wrk"):
        say("wrk not found (Debian: apt-get install wrk); falling back to a Python httpx loop")
    with servers["ours"], servers["handler"], servers["bare"]:  # idle servers cost no CPU
        checked = check_servers(servers["ours"], servers["bare"], lon, lat)
        say(f"servers agree on {checked} sample points; {seconds:g} s x {rounds} rounds each")
        for _ in range(rounds):  # alternate, so that each round sees the same background load
            for name, srv in servers.items():
                res, cpu_per_req = load(srv, paths[name], seconds, connections, name)
                tool = res.tool
                say(f"{name}: {res.rps:,.0f} req/s, {cpu_per_req * 1e6:.0f} µs server CPU/request")
                runs[name].append((res.rps, cpu_per_req))
    rps = {k: max(r for r, _ in v) for k, v in runs.items()}
    cpu = {k: min(c for _, c in v) for k, v in runs.items()}
    per_round = [o[0] / b[0] for o, b in zip(runs["ours"], runs["bare"], strict=True)]
    ratio = rps["ours"] / rps["bare"]
    cpu_ratio = cpu["bare"] / cpu["ours"]
    cmds = [
        " ".join(["python", *srv.argv[1:]]).replace(str(srv.port), "PORT")
        for srv in servers.values()
    ]
    return [
        Row(
            f"HTTP GET locate, 2 workers each, {tool}, {connections} connections, "
            f"{seconds:g} s x {rounds} rounds (req/s, best round)",
            f"{rps['ours']:,.0f}",
            f"bare FastAPI endpoint {rps['bare']:,.0f}",
            f"{ratio:.0%} of bare (median of rounds {float(np.median(per_round)):.0%})",
            "≥ 80%",
            "yes" if ratio >= 0.8 else "NO",
        ),
        Row(
            "  server CPU per request under that load (µs, best round)",
            f"{cpu['ours'] * 1e6:.0f}",
            f"bare FastAPI endpoint {cpu['bare'] * 1e6:.0f}",
            f"{cpu_ratio:.0%} of bare's requests per CPU-second",
            "≥ 80%",
            "yes" if cpu_ratio >= 0.8 else "NO",
        ),
        Row(
            "  the same GET handler alone in a bare FastAPI app (µs CPU/request)",
            f"{cpu['handler'] * 1e6:.0f} ({rps['handler']:,.0f} req/s)",
            f"bare FastAPI endpoint {cpu['bare'] * 1e6:.0f}",
            f"{cpu['bare'] / cpu['handler']:.0%} of bare's requests per CPU-second",
        ),
    ], cmds


# --- main -------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bench_locate", description=__doc__)
    p.add_argument("--grids", type=int, default=100_000)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single", type=int, default=5_000, help="points for the single-point runs")
    p.add_argument("--pg-points", type=int, default=1_000_000, help="points sent to PostGIS")
    p.add_argument("--http-seconds", type=float, default=8.0)
    p.add_argument("--http-rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--http-points", type=int, default=10_000, help="distinct URLs for the load")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-postgis", action="store_true")
    p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    p.add_argument("--cells", action="store_true", help="the cell lookup table (issue 13) only")
    p.add_argument(
        "--big-grids", type=int, default=1_000_000, help="--cells: also build at this size (0: no)"
    )
    p.add_argument(
        "--pg-sample", type=int, default=200_000, help="--cells: random points sent to PostGIS"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.cells:
        cells_main(args, argv)
        return
    started = time.perf_counter()
    host = machine()
    data_dir, snap = load_city(args.grids, say)
    lon, lat = random_points(snap, args.points, seed=20240502)

    snap.grids.index.cell_table()  # built on the first large locate: not timed as a locate
    rows = bench_bulk(snap, lon, lat, args.repeats)
    ours_s = float(rows[0].ours)
    if not args.skip_postgis:
        rows += bench_postgis(snap, lon, lat, ours_s, args.pg_points)
    rows += bench_single(snap, data_dir, lon, lat, args.single, args.repeats)
    cmds: list[str] = []
    if not args.skip_http:
        hlon, hlat = random_points(snap, args.http_points, seed=7)
        http_rows, cmds = bench_http(
            data_dir, hlon, hlat, args.http_seconds, args.connections, args.http_rounds
        )
        rows += http_rows

    heads = ["measurement", "ours", "baseline", "ratio", "goal", "met"]
    cells = [[r.what, r.ours, r.baseline, r.ratio, r.goal, r.met] for r in rows]
    print_table(f"Grid locate, {len(snap.grids):,} synthetic grids", heads, cells)
    elapsed = time.perf_counter() - started
    say(f"done in {elapsed:.0f} s")
    if args.no_write:
        return
    located = float((snap.grids.index.locate(lon, lat) >= 0).mean())
    body = "\n".join(
        [
            f"- date: {stamp()}",
            f"- machine: {host}.",
            "- The machine is shared with other engineers' builds and tests, so absolute numbers "
            "are noisy; each ratio compares runs made in turn in the same process, best of "
            f"{args.repeats} (HTTP: best of {args.http_rounds} alternating rounds).",
            f"- command: `{command('bench.bench_locate', argv)}` (took {elapsed:.0f} s)",
            f"- data: `geo_service.storage.synth.write_city(bench/out/{data_dir.name}, {args.grids:,}, "
            f"1000, 1000)`; {args.points:,} uniform random points (seeded) over the bounds plus "
            f"{MARGIN:.0%} each side, {located:.1%} inside a grid.",
            "- bulk: ours = `snapshot.grids.index.locate(lon, lat)` (codes with the smallest-code "
            "edge rule); bare = `STRtree(polygons).query(shapely.points(lon, lat), "
            'predicate="intersects")` on unprepared copies; rtree = `rtree.index.Index` '
            "bulk-loaded from the bounds, `intersection_v`, then `shapely.intersects_xy`.",
            "- PostGIS: time of `CREATE TEMP TABLE AS` the `ST_Covers` lateral join below, "
            "server-side (loading and fetching excluded, which favours PostGIS); "
            "`bench_grids` has a GiST index.",
            "- HTTP: servers (ours = the service; handler = its GET locate handler alone in a "
            "bare FastAPI app; bare = `bench/bare_app.py`) started as"
            + "".join(f"\n  `{c}`" for c in cmds)
            + "\n  (GEO_SERVICE_DATA_DIR = the synthetic city), loaded with "
            f"`wrk -t1 -c{args.connections} -d{args.http_seconds:g}s` and a Lua script cycling "
            f"over {args.http_points:,} random points from the same distribution (the outside "
            "ones answered by ours with the nearest grid and its distance), sending "
            "`Accept-Encoding: gzip, deflate` like phones and HTTP libraries. wrk shares the 2 "
            "CPUs with the servers. Server CPU per request = user + system time of the "
            "server's processes (from /proc) over the requests served: on a shared machine it "
            "is steadier than requests/s, and at saturation requests/s is CPUs / CPU per request.",
            "- The GET handler answers the whole contract (CRS conversion and validation, the "
            "point echoed, the GRID with community, street, district and officer; for a miss "
            "the nearest grid and its geodesic distance); the bare endpoint returns a code only. "
            "ours minus handler = the application around it (middleware, docs, other routers).",
            "",
            markdown_table(heads, cells),
            "",
            "```sql" + PG_QUERY.format(points="bench_pts").rstrip() + "\n```",
        ]
    )
    write_section("grid_locate", [f"## {SECTION}", "", *body.splitlines()])


# --- the cell lookup table (issue 13) ---------------------------------------------------------

CELLS_SECTION = "Bulk locate through the cell lookup table (issue 13)"


def cell_share(index: PolygonIndex, lon: np.ndarray, lat: np.ndarray) -> float:
    """Share of the points answered by a lookup alone (in a cell inside one grid or none)."""
    table = index.cell_table()
    assert table is not None
    fx, fy = (lon - table.x0) / table.dx, (lat - table.y0) / table.dy
    ok = (fx >= 0) & (fx < table.nx) & (fy >= 0) & (fy < table.ny)
    cell = fy[ok].astype(np.int64) * table.nx + fx[ok].astype(np.int64)
    return float(1 - (table.cells[cell] <= -2).sum() / len(lon))


def table_facts(index: PolygonIndex) -> str:
    table = index.cell_table()
    assert table is not None
    n = table.nx * table.ny
    return (
        f"{table.nx:,} x {table.ny:,} = {n:,} cells, {table.n_mixed / n:.1%} crossed by an edge, "
        f"{len(table.candidates) / max(table.n_mixed, 1):.2f} candidates per such cell, "
        f"{table.nbytes / 1e6:,.0f} MB"
    )


def bulk_times(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    times: dict[str, float] = {}
    results: dict[str, Any] = {}
    for _ in range(repeats):  # interleaved, best of each: fairer on a shared machine
        for name, fn in fns.items():
            t, results[name] = best_of(fn, 1)
            times[name] = min(times.get(name, float("inf")), t)
    return times, results


def cells_postgis(
    snap: Snapshot, lon: np.ndarray, lat: np.ndarray, cells_idx: np.ndarray
) -> tuple[str, str]:
    """Codes of the cell path against the PostGIS ST_Covers join (smallest code)."""
    url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    if not url:
        return "skipped (GEO_SERVICE_TEST_DATABASE_URL unset)", "?"
    import psycopg

    from tests.pgref import load_table

    with psycopg.connect(url, autocommit=True) as conn:
        load_table(conn, "bench_grids", snap.grids.codes.tolist(), snap.grids.index.geoms)
        pg_points(conn, "bench_pts", lon, lat)
        pg_codes, t_pg = pg_locate(conn, "bench_pts", len(lon))
        for table in ("bench_pts", "bench_grids"):
            conn.execute(f"DROP TABLE {table}")
    ours = np.append(snap.grids.codes, None)[cells_idx]
    agree = int(sum(a == b for a, b in zip(ours, pg_codes, strict=True)))
    say(f"PostGIS: {agree:,} / {len(lon):,} codes agree ({t_pg:.1f} s for the join)")
    return f"{agree:,} / {len(lon):,}", "yes" if agree == len(lon) else "NO"


def edge_points(snap: Snapshot, n_grids: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid corners, edge midpoints, and points on the table's cell edges and corners."""
    vlon, vlat = shared_vertices(snap, n_grids, seed=11)
    table = snap.grids.index.cell_table()
    assert table is not None
    rng = np.random.default_rng(12)
    i, j = rng.integers(0, table.nx, n_cells), rng.integers(0, table.ny, n_cells)
    cx, cy = table.x0 + i * table.dx, table.y0 + j * table.dy
    minx, miny, maxx, maxy = snap.bounds
    ix, iy = rng.uniform(minx, maxx, n_cells), rng.uniform(miny, maxy, n_cells)
    mx, my = (vlon[:-1] + vlon[1:]) / 2, (vlat[:-1] + vlat[1:]) / 2
    return np.concatenate([vlon, mx, cx, cx, ix]), np.concatenate([vlat, my, cy, iy, cy])


def bench_cells_bulk(snap: Snapshot, lon: np.ndarray, lat: np.ndarray, args: Any) -> list[Row]:
    index = snap.grids.index
    n = len(lon)
    geoms = shapely.from_wkb(shapely.to_wkb(index.geoms))  # unprepared, for the bare query
    bare = STRtree(geoms)
    t_build, _ = best_of(index.cell_table, 1)
    facts = table_facts(index)
    say(f"cell table of {len(index):,} grids built in {t_build:.2f} s: {facts}")
    times, res = bulk_times(
        {
            "bare": lambda: bare.query(shapely.points(lon, lat), predicate="intersects"),
            "tree": lambda: index.locate_tree(lon, lat),
            "cells": lambda: index.locate(lon, lat),
        },
        args.repeats,
    )
    tree_idx, cells_idx = res["tree"], res["cells"]
    bare_idx = hits_to_index(n, *res["bare"])
    same_tree = int((tree_idx == cells_idx).sum())
    same_bare = int((bare_idx == cells_idx).sum())
    elon, elat = edge_points(snap, 5000, 20_000)
    e_cells, e_tree = index.locate(elon, elat), index.locate_tree(elon, elat)
    same_edges = int((e_cells == e_tree).sum())
    m = min(args.pg_sample, n)
    pg_lon, pg_lat = np.concatenate([lon[:m], elon]), np.concatenate([lat[:m], elat])
    pg_agree, pg_met = (
        ("skipped (--skip-postgis)", "?")
        if args.skip_postgis
        else cells_postgis(snap, pg_lon, pg_lat, index.locate(pg_lon, pg_lat))
    )
    speedup = times["bare"] / times["cells"]
    say(
        f"bulk {n:,}: bare {times['bare']:.3f} s, tree {times['tree']:.3f} s, "
        f"cells {times['cells']:.3f} s ({speedup:.1f}x faster than bare)"
    )
    return [
        Row(
            f"bulk locate {n:,} points, {len(index):,} grids (s, best of {args.repeats})",
            f"cell table {times['cells']:.3f}",
            f"bare STRtree query {times['bare']:.3f}",
            f"{speedup:.1f}x faster",
            "≥ 5x faster",
            "yes" if speedup >= 5 else "NO",
        ),
        Row(
            "  the previous path, `locate_tree` (tree + intersects_xy), same points",
            f"cell table {times['cells']:.3f}",
            f"tree path {times['tree']:.3f}",
            f"{times['tree'] / times['cells']:.1f}x faster",
        ),
        Row(
            "  points answered by a lookup alone (no polygon test)",
            f"{cell_share(index, lon, lat):.1%}",
            "",
            "",
        ),
        Row(
            f"  cell table build, {len(index):,} grids (s)",
            f"{t_build:.2f}",
            facts,
            "",
        ),
        Row(
            "  codes equal to the tree path (itself = PostGIS, issue 2), every point",
            f"{same_tree:,} / {n:,}",
            f"bare STRtree smallest hit: {same_bare:,} / {n:,}",
            "",
            "all",
            "yes" if same_tree == n else "NO",
        ),
        Row(
            "  the same, grid corners, edge midpoints, cell edges and corners",
            f"{same_edges:,} / {len(elon):,}",
            "",
            "",
            "all",
            "yes" if same_edges == len(elon) else "NO",
        ),
        Row(
            f"  codes equal to PostGIS ST_Covers (smallest code): {m:,} of the random points "
            "and all of the row above",
            pg_agree,
            "",
            "",
            "all",
            pg_met,
        ),
    ]


def bench_cells_single(snap: Snapshot, lon: np.ndarray, lat: np.ndarray, args: Any) -> list[Row]:
    with_table = snap.grids.index
    without = PolygonIndex(with_table.geoms, with_table.projection)  # its table never built
    bare = STRtree(shapely.from_wkb(shapely.to_wkb(with_table.geoms)))
    n = args.single
    xs, ys = lon[:n].tolist(), lat[:n].tolist()
    before = [without.locate_point(x, y) for x, y in zip(xs, ys, strict=True)]
    after = [with_table.locate_point(x, y) for x, y in zip(xs, ys, strict=True)]
    if before != after:
        raise RuntimeError("locate_point answers differ with and without the table")
    us = per_op_us(
        {
            "before": lambda i: without.locate_point(xs[i], ys[i]),
            "after": lambda i: with_table.locate_point(xs[i], ys[i]),
            "bare": lambda i: bare.query(shapely.points(xs[i], ys[i]), predicate="intersects"),
        },
        n,
        args.repeats,
    )
    say(f"single point: before {us['before']:.1f} µs, after {us['after']:.1f} µs")
    return [
        Row(
            f"single-point `locate_point` (µs/op, {n:,} points, same answers)",
            f"with the table {us['after']:.1f}",
            f"before (tree) {us['before']:.1f}",
            f"{us['before'] / us['after']:.1f}x faster",
            "no slower",
            "yes" if us["after"] <= us["before"] * 1.05 else "NO",
        ),
        Row(
            "  bare STRtree query of one point (µs/op)",
            "",
            f"{us['bare']:.1f}",
            "",
        ),
    ]


def bench_cells_big(n_grids: int, n_points: int) -> list[Row]:
    """Build time and size at ``n_grids`` (synthesised in memory), and one bulk run there."""
    t0 = time.perf_counter()
    geoms = synth_grids(n_grids).geometry.to_numpy()
    index = PolygonIndex(geoms, MetricProjection(4549))
    say(f"{len(index):,} grids synthesised and indexed in {time.perf_counter() - t0:.0f} s")
    t_build, _ = best_of(index.cell_table, 1)
    facts = table_facts(index)
    say(f"cell table of {len(index):,} grids built in {t_build:.2f} s: {facts}")
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    dx, dy = (maxx - minx) * MARGIN, (maxy - miny) * MARGIN
    rng = np.random.default_rng(20240502)
    lon = rng.uniform(minx - dx, maxx + dx, n_points)
    lat = rng.uniform(miny - dy, maxy + dy, n_points)
    bare = STRtree(shapely.from_wkb(shapely.to_wkb(geoms)))
    times, res = bulk_times(
        {
            "bare": lambda: bare.query(shapely.points(lon, lat), predicate="intersects"),
            "tree": lambda: index.locate_tree(lon, lat),
            "cells": lambda: index.locate(lon, lat),
        },
        1,
    )
    same = int((res["tree"] == res["cells"]).sum())
    speedup = times["bare"] / times["cells"]
    say(f"{n_grids:,} grids: bare {times['bare']:.3f} s, cells {times['cells']:.3f} s")
    return [
        Row(
            f"cell table build, {len(index):,} grids (s)",
            f"{t_build:.2f}",
            facts,
            "",
        ),
        Row(
            f"  bulk locate {n_points:,} points on these grids (s, one run)",
            f"cell table {times['cells']:.3f}",
            f"bare STRtree query {times['bare']:.3f}; tree path {times['tree']:.3f}",
            f"{speedup:.1f}x faster",
            "",
            "",
        ),
        Row(
            "  share answered by a lookup alone; codes equal to the tree path",
            f"{cell_share(index, lon, lat):.1%}",
            f"{same:,} / {n_points:,}",
            "",
            "all",
            "yes" if same == n_points else "NO",
        ),
    ]


def cells_main(args: Any, argv: list[str]) -> None:
    started = time.perf_counter()
    host = machine()
    data_dir, snap = load_city(args.grids, say)
    lon, lat = random_points(snap, args.points, seed=20240502)
    rows = bench_cells_bulk(snap, lon, lat, args)
    rows += bench_cells_single(snap, lon, lat, args)  # after the bulk part built the table
    if args.big_grids:
        del snap
        rows += bench_cells_big(args.big_grids, args.points)
    heads = ["measurement", "ours", "baseline", "ratio", "goal", "met"]
    cells = [[r.what, r.ours, r.baseline, r.ratio, r.goal, r.met] for r in rows]
    print_table("Bulk locate through the cell lookup table", heads, cells)
    elapsed = time.perf_counter() - started
    say(f"done in {elapsed:.0f} s")
    if args.no_write:
        return
    body = [
        f"## {CELLS_SECTION}",
        "",
        f"- date: {stamp()}; machine: {host}. The machine is shared (other builds and tests "
        "ran meanwhile): each ratio compares runs made in turn in one process, best of "
        f"{args.repeats}.",
        f"- command: `{command('bench.bench_locate', argv)}` (took {elapsed:.0f} s)",
        f"- data: `geo_service.storage.synth.write_city(bench/out/{data_dir.name}, "
        f"{args.grids:,}, 1000, 1000)` loaded as the service does; {args.points:,} uniform random "
        f"points (seeded, the same as issue 2's) over the bounds plus {MARGIN:.0%} each side. "
        f"The {args.big_grids:,}-grid rows: `synth_grids({args.big_grids:,})` in memory and "
        f"{args.points:,} points drawn the same way.",
        "- cell table = `PolygonIndex.locate` (`CellTable`, geo_service/core/index.py): a "
        f"lattice of cells of 1/{CELLS_PER_GRID} of the median grid's width and height (at "
        f"most {MAX_CELLS:,} cells), "
        "each inside one grid, outside all, or crossed by an edge (then its candidate grids, "
        "tested exactly with `intersects_xy`, smallest code first); not built with the "
        "snapshot: the first locate of 20,000+ points starts building it in a thread (that "
        "locate goes through the tree), here it is built first. bare = `STRtree(polygons).query("
        'shapely.points(lon, lat), predicate="intersects")` on unprepared copies; tree path = '
        "`PolygonIndex.locate_tree`, the bulk locate before this change.",
        "- PostGIS: the `ST_Covers` lateral join of issue 2 (below its table) on the sample.",
        "",
        markdown_table(heads, cells),
    ]
    write_section("grid_locate_cells", body)


if __name__ == "__main__":
    main()
