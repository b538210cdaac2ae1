"""Coverage benchmark (issue 4).

1. Coverage by grid of a synthetic city (100,000 grids, 1,000 facilities, 1 km): the engine
   (``compute_coverage``, cache cleared) against the PostGIS query
   ``ST_Area(ST_Intersection(grid, ST_Union(ST_Buffer(point, r))))`` per grid in EPSG:4549, on
   the same data in the same run, with discs of the same 128 vertices (quad_segs=32). Goal: ≥5x.
2. What-if latency on the default dataset: one added site (goal < 200 ms), one removed.
3. Accuracy of the disc polygon on the default dataset against PostGIS discs of 2,048 vertices
   (within 1 mm of the circle): the engine's equal-area 128-gon vs an inscribed 128-gon.
4. Siting (p = 3) time on the default dataset, for information.
5. Planners (issue 12), default dataset: `geo-service coverage`, `maps build`, `/maps/coverage`
   and `/api/v1/coverage/gaps` (cold and warm) against the same commands and routes of the
   commit before issue 12 (``BASELINE_COMMIT``, extracted with ``git archive``), run in the
   same run; and the gap pieces against their PostGIS equivalent. Goals: ``PLANNER_GOALS``.

Run from the repository root (needs PostGIS):
    GEO_SERVICE_TEST_DATABASE_URL=postgresql://... python -m bench.bench_coverage
    GEO_SERVICE_TEST_DATABASE_URL=postgresql://... python -m bench.bench_coverage --part planner
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psycopg
import shapely

from bench.results import machine, write_section
from bench.timing import best_of
from geo_service.analysis import coverage
from geo_service.analysis.coverage import compute_coverage
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, GapPieces, gap_pieces
from geo_service.analysis.siting import optimize_sites
from geo_service.analysis.whatif import what_if
from geo_service.core.snapshot import Snapshot
from geo_service.storage.dataset import load_dataset
from geo_service.storage.synth import write_city
from tests.coverage_ref import load_snapshot, reference_coverage, reference_gap_pieces
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def city(n_grids: int, n_fac: int) -> Path:
    out = ROOT / "bench" / "out" / f"city{n_grids // 1000}k-{n_fac}"
    if not (out / "grids.geojson").exists():
        write_city(out, n_grids, n_fac, n_fac, seed=0)
    return out


def bench_city(conn: psycopg.Connection, n_grids: int, n_fac: int, radius: float) -> list[str]:
    snap = load_dataset(city(n_grids, n_fac), "synthetic")
    pts = snap.stalls

    def ours() -> object:
        coverage.clear_cache()
        return compute_coverage(snap, "stalls", radius, "grid")

    t_ours, res = timed(ours, repeat=3)
    units = res.units  # type: ignore[attr-defined]
    load_snapshot(conn, snap, "stalls", prefix="bench")
    conn.execute("SET max_parallel_workers_per_gather = 0")  # one core each, like the engine
    t_pg, ref = timed(lambda: reference_coverage(conn, radius, quad_segs=32, prefix="bench"))
    ref_cov = np.array([ref[c][1] for c in units["code"]])  # type: ignore[index]
    err = np.abs(units["covered_m2"].to_numpy() - ref_cov) / units["area_m2"].to_numpy()
    ratio = t_pg / t_ours
    print(
        f"city {len(snap.grids):,} grids, {len(pts):,} stalls, {radius:g} m: engine "
        f"{t_ours:.2f} s, PostGIS {t_pg:.1f} s -> {ratio:.1f}x; max diff {err.max():.2e} of area"
    )
    return [
        f"| coverage by grid, {len(snap.grids):,} grids x {len(pts):,} facilities, {radius:g} m "
        f"| {t_ours:.2f} s | {t_pg:.1f} s | **{ratio:.1f}x** (goal ≥5x) |",
        f"| covered share; largest per-grid difference vs PostGIS (its discs inscribed, "
        f"the engine's equal-area: see the accuracy row) "
        f"| {res.overall['area_ratio']:.4f} | {ref_cov.sum() / units['area_m2'].sum():.4f} "  # type: ignore[attr-defined]
        f"| {err.max():.1e} of grid area (tolerance 5e-3) |",
    ]


def bench_default(conn: psycopg.Connection) -> list[str]:
    snap = load_dataset(ROOT / "data")
    rows = []
    coverage.clear_cache()
    t_cold, _ = timed(lambda: compute_coverage(snap, "vendor_clusters", 1000.0, "street"))
    rows.append(
        f"| default dataset ({len(snap.grids):,} grids): coverage by street, cold | "
        f"{t_cold * 1000:.0f} ms | | |"
    )
    for layer in ("vendor_clusters", "stalls"):
        compute_coverage(snap, layer, 1000.0)  # warm the per-grid cache, as a server would be
        rng = np.random.default_rng(7)
        minx, miny, maxx, maxy = snap.bounds
        lon, lat = rng.uniform(minx, maxx, 4000), rng.uniform(miny, maxy, 4000)
        inside = snap.grids.index.locate(lon, lat) >= 0
        lon, lat = lon[inside][:100], lat[inside][:100]
        times = np.zeros((3, len(lon)))  # each site three times: contention vs the algorithm
        for rep in range(3):
            for k, (x, y) in enumerate(zip(lon, lat, strict=True)):
                t = time.perf_counter()
                what_if(snap, layer, 1000.0, [x], [y], by="community")
                times[rep, k] = time.perf_counter() - t
        ms = times.ravel() * 1000
        worst_site = times.min(axis=0).max() * 1000
        removed = []
        for code in snap.points(layer).codes[:20]:
            t = time.perf_counter()
            what_if(snap, layer, 1000.0, remove=[code], by="community")
            removed.append(time.perf_counter() - t)
        print(
            f"what-if {layer}: add one median {np.median(ms):.1f} ms, p95 "
            f"{np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms, slowest site {worst_site:.1f} ms"
        )
        rows.append(
            f"| what-if, add one site ({layer}, 1 km, by community), {len(lon)} random sites x 3 "
            f"| median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max "
            f"{ms.max():.1f} ms; slowest site at its best of 3: {worst_site:.1f} ms "
            f"| | goal < 200 ms |"
        )
        rows.append(
            f"| what-if, remove one ({layer}), 20 facilities | median "
            f"{statistics.median(removed) * 1000:.1f} ms | | |"
        )
    t_site, site = timed(lambda: optimize_sites(snap, "vendor_clusters", 1000.0, 3))
    gain = site.result.gain["covered_population"]  # type: ignore[attr-defined]
    rows.append(
        f"| siting, p = 3, vendor clusters at 1 km (MCLP, exact gain {gain:,.0f} people) "
        f"| {t_site:.2f} s | | |"
    )
    rows += accuracy(conn, snap)
    return rows


def accuracy(conn: psycopg.Connection, snap: Snapshot) -> list[str]:
    load_snapshot(conn, snap, "stalls", prefix="acc")
    codes = snap.grids.codes
    truth = reference_coverage(conn, 1000.0, quad_segs=512, prefix="acc")
    inscribed = reference_coverage(conn, 1000.0, quad_segs=32, prefix="acc")
    t = np.array([truth[c][1] for c in codes])
    i = np.array([inscribed[c][1] for c in codes])
    ours = compute_coverage(snap, "stalls", 1000.0).grid.covered_m2
    print(
        f"disc accuracy: engine max {np.abs(ours - t).max():.1f} m2/grid, inscribed 128-gon "
        f"{np.abs(i - t).max():.1f} m2/grid"
    )
    return [
        f"| disc accuracy, stalls at 1 km, per grid vs a 2,048-gon: engine (equal-area 128-gon) "
        f"| max {np.abs(ours - t).max():.1f} m², city total {ours.sum() - t.sum():+.0f} m² "
        f"| inscribed 128-gon: max {np.abs(i - t).max():.0f} m², total {i.sum() - t.sum():+.0f} m² "
        f"| |"
    ]


def record(rows: list[str], command: str, conn: psycopg.Connection) -> None:
    (pg_version,) = conn.execute("SELECT postgis_full_version()").fetchone()  # type: ignore[misc]
    postgis = pg_version.split('"')[1] if '"' in pg_version else pg_version[:20]
    write_section(
        "bench_coverage",
        [
            "## Coverage (issue 4)",
            "",
            f"Command: `{command}`  ",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{os.cpu_count()} cores shared with other jobs (load average "
            f"{os.getloadavg()[0]:.1f} at the end); shapely {shapely.__version__} "
            f"(GEOS {shapely.geos_version_string}), PostGIS {postgis}, PostGIS with "
            "max_parallel_workers_per_gather = 0. Times are the best of 3 for the engine and one "
            "run for PostGIS; the PostGIS query is the LATERAL per-grid form "
            "(`tests/coverage_ref.py`), data loading not timed on either side.",
            "",
            "| measure | engine | PostGIS / reference | ratio / note |",
            "| --- | --- | --- | --- |",
            *rows,
        ],
    )


# --- planners (issue 12): the commands and pages as a planner uses them ----------------------

BASELINE_COMMIT = "c221756"
"""main before issue 12's planner work: merged gaps (one city-wide union), the report written on
every ``coverage`` run, grid pages rendered one after another."""
PLANNER_OUT = ROOT / "bench" / "out" / "planner"
PLANNER_GOALS = {
    "cli": 3.0,  # s, `geo-service coverage` end to end: a figure and a table while exploring
    "build": 30.0,  # s, `maps build`, every map: rebuilt after each data change, on 2 CPUs
    "map_cold": 1.0,  # s, /maps/coverage never built before
    # The page cache answers a repeat; what is left is gzip -9 of the ~1.5 MB page (~60 ms,
    # web/compression.py) and sending it.
    "map_warm": 0.1,
    "gaps_cold": 0.5,  # s, /api/v1/coverage/gaps, a radius never asked before
    "gaps_warm": 0.1,
}


def say(msg: str) -> None:
    print(f"[bench_coverage] {msg}", flush=True)


def baseline_tree() -> Path:
    """The baseline commit's source, extracted read-only from git (no checkout)."""
    tree = PLANNER_OUT / f"baseline-{BASELINE_COMMIT}"
    if not (tree / "geo_service" / "__init__.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", BASELINE_COMMIT], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def tree_env(tree: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "GEO_SERVICE_DATA_DIR": str(ROOT / "data"),
        "GEO_SERVICE_RATE_LIMIT_ENABLED": "false",
    }


def cli_run(tree: Path, args: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the command and the workers it waited for) of
    ``python -m geo_service.cli ARGS`` run from ``tree``'s source."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "geo_service.cli", *args],
        cwd=tree,
        env=tree_env(tree),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def alternating(
    runs: dict[str, tuple[Path, list[str]]], repeat: int
) -> dict[str, tuple[float, float]]:
    """Best wall time and best CPU time of each command, run in turn ``repeat`` times (a load
    spike on the shared machine then hits every command alike)."""
    best = dict.fromkeys(runs, (float("inf"), float("inf")))
    for _ in range(repeat):
        for name, (tree, args) in runs.items():
            wall, cpu = cli_run(tree, args)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


@contextmanager
def served(tree: Path, log: Path) -> Iterator[str]:
    """``geo-service serve --workers 1`` from ``tree``'s source; its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "geo_service.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=tree, env=tree_env(tree), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Application startup complete." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def request_seconds(url: str, paths: list[str]) -> list[float]:
    times = []
    with httpx.Client(timeout=120) as http:
        for path in paths:
            t = time.perf_counter()
            r = http.get(url + path)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    return times


def page_latencies(url: str, path: str, radius: float, samples: int) -> tuple[float, float]:
    """Best of ``samples`` cold requests (a radius never asked before each time: nothing
    cached) and of as many warm ones (the same request again)."""
    cold = [path.format(r=f"{radius + 0.1 * (k + 1):g}") for k in range(samples)]
    times = request_seconds(url, cold)
    warm = request_seconds(url, [cold[-1]] * samples)
    return min(times), min(warm)


def bench_planner(conn: psycopg.Connection) -> list[str]:
    PLANNER_OUT.mkdir(parents=True, exist_ok=True)
    old = baseline_tree()
    rows = []

    def goal(value: float, key: str) -> str:
        met = "met" if value <= PLANNER_GOALS[key] else "NOT met"
        return f"goal ≤ {PLANNER_GOALS[key]:g} s: {met}"

    # 1. `coverage`, end to end (Python start included): the old command always wrote the report.
    args = ["coverage", "--layer", "stalls", "--radius", "500"]
    t = alternating(
        {
            "old": (old, [*args, "--out", str(PLANNER_OUT / "old-report.html")]),
            "new": (ROOT, args),
            "report": (ROOT, [*args, "--out", str(PLANNER_OUT / "report.html")]),
        },
        3,
    )
    say(f"cli coverage (wall, cpu): {t}")
    (new, new_cpu), (was, was_cpu), (rep, rep_cpu) = t["new"], t["old"], t["report"]
    rows += [
        f"| `geo-service coverage --layer stalls --radius 500` (figures + gap pieces table), "
        f"best of 3: wall (CPU) | {new:.2f} s ({new_cpu:.2f} s) | {was:.2f} s ({was_cpu:.2f} s), "
        f"always wrote the report | **{was / new:.1f}x**; {goal(new, 'cli')} |",
        f"| ↳ the same with `--out report.html` (also writes the report of this tree: HTML, "
        f"PDF, map, CSV, GeoJSON) | {rep:.2f} s ({rep_cpu:.2f} s) | {was:.2f} s ({was_cpu:.2f} s) "
        f"| {was / rep:.1f}x |",
    ]
    # 2. `maps build`, every map.
    build = ["maps", "build", "--out"]
    t = alternating(
        {
            "old": (old, [*build, str(PLANNER_OUT / "maps-old")]),
            "new": (ROOT, [*build, str(PLANNER_OUT / "maps-new")]),
            "one": (ROOT, [*build, str(PLANNER_OUT / "maps-one"), "--workers", "1"]),
        },
        3,
    )
    say(f"maps build (wall, cpu): {t}")
    (new, new_cpu), (was, was_cpu), (one, one_cpu) = t["new"], t["old"], t["one"]
    rows += [
        f"| `geo-service maps build` (1,358 pages), best of 3: wall (CPU) | {new:.1f} s "
        f"({new_cpu:.1f} s), {os.cpu_count()} workers | {was:.1f} s ({was_cpu:.1f} s) "
        f"| **{was / new:.1f}x**; {goal(new, 'build')} |",
        f"| ↳ the same with `--workers 1` | {one:.1f} s ({one_cpu:.1f} s) | {was:.1f} s "
        f"({was_cpu:.1f} s) | {was / one:.1f}x |",
    ]
    # 3. The served pages and API, one worker each, the same requests to both.
    samples = 5
    measured: dict[str, dict[str, tuple[float, float]]] = {}
    for name, tree in (("old", old), ("new", ROOT)):
        with served(tree, PLANNER_OUT / f"serve-{name}.log") as url:
            measured[name] = {
                "map": page_latencies(url, "/maps/coverage?layer=stalls&radius_m={r}", 1000, samples),
                "map500": page_latencies(url, "/maps/coverage?layer=stalls&radius_m={r}", 500, samples),
                "gaps": page_latencies(url, "/api/v1/coverage/gaps?layer=stalls&radius_m={r}", 500, samples),
                "gaps1k": page_latencies(url, "/api/v1/coverage/gaps?layer=stalls&radius_m={r}", 1000, samples),
            }  # fmt: skip
    say(f"served: {measured}")
    for key, label, radius in (
        ("map", "`/maps/coverage?layer=stalls`", 1000),
        ("map500", "`/maps/coverage?layer=stalls`", 500),
        ("gaps", "`/api/v1/coverage/gaps?layer=stalls`", 500),
        ("gaps1k", "`/api/v1/coverage/gaps?layer=stalls`", 1000),
    ):
        (new_cold, new_warm), (old_cold, old_warm) = measured["new"][key], measured["old"][key]
        kind = "map" if key.startswith("map") else "gaps"
        rows += [
            f"| {label} at ~{radius} m, cold (a radius never asked), best of {samples} "
            f"| {new_cold * 1000:.0f} ms | {old_cold * 1000:.0f} ms "
            f"| **{old_cold / new_cold:.1f}x**; {goal(new_cold, kind + '_cold')} |",
            f"| ↳ warm (the same request again), best of {samples} | {new_warm * 1000:.1f} ms "
            f"| {old_warm * 1000:.1f} ms | {old_warm / new_warm:.1f}x; "
            f"{goal(new_warm, kind + '_warm')} |",
        ]
    # 4. The gap pieces against the PostGIS equivalent, in process.
    snap = load_dataset(ROOT / "data")
    active = snap.stalls.frame["status"].to_numpy() == "active"
    load_snapshot(conn, snap, "stalls", active, prefix="plan")

    def ours() -> GapPieces:
        coverage.clear_cache()
        res = compute_coverage(snap, "stalls", 500.0, active_only=True)
        return gap_pieces(snap, res.grid)

    t_ours, pieces = best_of(ours, 3)
    t_pg, ref = best_of(lambda: reference_gap_pieces(conn, 500.0, quad_segs=32, prefix="plan"))
    n_ref = sum(1 for r in ref if r[1] >= DEFAULT_MIN_GAP_M2)
    n_ours = len(pieces.frame)
    say(f"gap pieces: engine {t_ours:.3f} s ({n_ours}), PostGIS {t_pg:.3f} s ({n_ref})")
    rows.append(
        f"| gap pieces, stalls 500 m (coverage + pieces, cache cleared; {n_ours:,} pieces ≥ "
        f"1,000 m²), best of 3 | {t_ours * 1000:.0f} ms | PostGIS ST_Dump(ST_Difference(grid, "
        f"ST_Union(ST_Buffer))) per grid + distances: {t_pg * 1000:.0f} ms ({n_ref:,} parts ≥ "
        f"1,000 m²) | **{t_pg / t_ours:.1f}x** |"
    )
    return rows


def record_planner(rows: list[str], command: str) -> None:
    write_section(
        "bench_coverage_planner",
        [
            "## Coverage for planners: commands and pages (issue 12)",
            "",
            f"Command: `{command}`  ",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}. Default dataset (1,355 "
            f"grids, active stalls). Baseline: the same commands and routes of commit "
            f"`{BASELINE_COMMIT}` (before issue 12: merged gaps from one city-wide union, the "
            "report on every `coverage` run, grid pages one after another), its source "
            "extracted with `git archive` and run with the same Python, data and machine in the "
            "same run, in turn. Commands are timed end to end (Python start included), wall and "
            "CPU time (the command and its workers: steadier than wall time on a shared machine); "
            "pages and API through `geo-service serve --workers 1` of each tree, one tree after "
            "the other, gzip asked for (httpx's default).",
            "",
            "| measure | now | baseline | ratio / goal |",
            "| --- | --- | --- | --- |",
            *rows,
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--facilities", type=int, default=1000)
    parser.add_argument("--radius", type=float, default=1000.0)
    parser.add_argument(
        "--part",
        choices=("all", "engine", "planner"),
        default="all",
        help="engine: parts 1-4 (issue 4); planner: part 5 (issue 12)",
    )
    parser.add_argument("--no-record", action="store_true", help="Do not write RESULTS.md")
    args = parser.parse_args()
    url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    if not url:
        raise SystemExit("set GEO_SERVICE_TEST_DATABASE_URL to a PostGIS database")
    with psycopg.connect(url, autocommit=True) as conn:
        if args.part in ("all", "engine"):
            rows = bench_city(conn, args.grids, args.facilities, args.radius)
            rows += bench_default(conn)
            if not args.no_record:
                flags = (
                    ""
                    if (args.grids, args.facilities, args.radius) == (100_000, 1000, 1000.0)
                    else f" --grids {args.grids} --facilities {args.facilities} "
                    f"--radius {args.radius:g}"
                )
                record(rows, f"python -m bench.bench_coverage{flags}", conn)
        if args.part in ("all", "planner"):
            rows = bench_planner(conn)
            if not args.no_record:
                part = "" if args.part == "all" else f" --part {args.part}"
                record_planner(rows, f"python -m bench.bench_coverage{part}")


if __name__ == "__main__":
    main()
