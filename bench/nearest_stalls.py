"""Nearest repair stall: the indexed query against a geodesic brute force measured in the same
run, on the Weifang stalls and on a synthetic layer 1,000 times larger, plus the full HTTP
request (filters, open-now, JSON) on the default data.

Run: python -m bench.nearest_stalls   (appends its section to bench/RESULTS.md)
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from geo_service.analysis import facilities
from geo_service.core.crs import MetricProjection, geodesic_distance_m
from geo_service.core.index import PointIndex
from geo_service.storage.dataset import load_dataset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## nearest_stalls"
COMMAND = "python -m bench.nearest_stalls"
K = 5
QUERIES = 400


def per_call_us(fn: Callable[[float, float], object], pts: np.ndarray, repeat: int = 3) -> float:
    """Best-of-``repeat`` mean time per call, microseconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for lon, lat in pts:
            fn(float(lon), float(lat))
        best = min(best, (time.perf_counter() - t) / len(pts))
    return best * 1e6


def brute(lon_all: np.ndarray, lat_all: np.ndarray) -> Callable[[float, float], object]:
    """Baseline: geodesic distance to every facility (vectorised pyproj), then a partial sort."""

    def run(lon: float, lat: float) -> object:
        d = geodesic_distance_m(lon, lat, lon_all, lat_all)
        part = np.argpartition(d, K)[:K]
        return part[np.argsort(d[part])]

    return run


def check_same(index: PointIndex, pts: np.ndarray) -> None:
    for lon, lat in pts[:50]:
        _, dist = index.nearest(float(lon), float(lat), K)
        ref = np.sort(geodesic_distance_m(lon, lat, index.lon, index.lat))[:K]
        assert np.allclose(dist, ref, atol=1e-6), (lon, lat)


def main() -> None:
    rng = np.random.default_rng(0)
    snap = load_dataset(ROOT / "data")
    minx, miny, maxx, maxy = snap.bounds
    pts = np.column_stack([rng.uniform(minx, maxx, QUERIES), rng.uniform(miny, maxy, QUERIES)])
    rows = []

    # 1. the real layer: 128 stalls
    layer = snap.stalls
    check_same(layer.index, pts)
    base = per_call_us(brute(layer.index.lon, layer.index.lat), pts)
    ours = per_call_us(lambda x, y: layer.index.nearest(x, y, K), pts)
    active = facilities.Filters(active_only=True, offers=("修车",))
    filt = per_call_us(lambda x, y: facilities.nearest(layer, x, y, K, active), pts)
    rows.append((f"Weifang, {len(layer)} stalls", base, ours, filt))

    # 2. a synthetic layer of 128,000 facilities over the same city
    n = len(layer) * 1000
    lon_all = rng.uniform(minx, maxx, n)
    lat_all = rng.uniform(miny, maxy, n)
    big = PointIndex(lon_all, lat_all, MetricProjection(snap.projection.epsg))
    check_same(big, pts)
    base_big = per_call_us(brute(lon_all, lat_all), pts[:20], repeat=1)
    ours_big = per_call_us(lambda x, y: big.nearest(x, y, K), pts)
    rows.append((f"synthetic, {n:,} points", base_big, ours_big, float("nan")))

    # 3. the whole HTTP request on the default data: a uvicorn server in its own process
    http_ms, http_p95 = http_latency(pts[:200])

    lines = [
        SECTION,
        "",
        f"`{COMMAND}` — {datetime.now().isoformat(timespec='minutes')}, Python "
        f"{platform.python_version()}, {platform.machine()}; k={K}, {QUERIES} random points "
        "over the city; results checked equal to the brute force (50 points each).",
        "",
        "| layer | brute force (geodesic to all) µs/query | index µs/query | speed-up "
        "| index + service/active filter µs/query |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, b, o, f in rows:
        ftxt = "–" if np.isnan(f) else f"{f:.0f}"
        lines.append(f"| {name} | {b:.0f} | {o:.0f} | {b / o:.1f}× | {ftxt} |")
    lines += [
        "",
        f"HTTP `GET /api/v1/stalls/nearest?k=5&service=修车&open_now=true` to a uvicorn "
        f"server on loopback (its own process, one client, 200 requests): median "
        f"{http_ms:.1f} ms, p95 {http_p95:.1f} ms.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_section(text)


def http_latency(pts: np.ndarray) -> tuple[float, float]:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "geo_service.web.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "GEO_SERVICE_RATE_LIMIT_ENABLED": "false"},  # one client
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(200):  # wait for it to load the data (at most ~20 s)
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            url = "/api/v1/stalls/nearest?lon={:.6f}&lat={:.6f}&k=5&service=修车&open_now=true"
            client.get(url.format(*pts[0]))
            times = []
            for lon, lat in pts:
                t = time.perf_counter()
                r = client.get(url.format(lon, lat))
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
    return statistics.median(times), float(np.percentile(times, 95))


def write_section(text: str) -> None:
    """Replace this benchmark's section of bench/RESULTS.md (other sections untouched)."""
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if nxt < 0 else old[nxt:])
    RESULTS.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
