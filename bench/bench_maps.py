"""Overview map: build time, HTML size and page-open time in headless Chromium, against a
baseline built in the same run: plain Folium with everything inlined (every layer's full-precision
GeoJSON with GeoJsonTooltip/GeoJsonPopup, a folium.Marker per point, a folium.Circle per vendor
cluster), for the default dataset and for a synthetic 100,000-grid city.

    python -m geo_service.cli.main synth --grids 100000 --out bench/out/city100k   # once
    python -m bench.bench_maps

Pages are served from a local HTTP server (the baseline's CDN links rewritten to the same vendored
Leaflet, its unvendored extras dropped) and tiles answered with a blank PNG, so only page weight
and script work are timed. "Open" is navigation start to the load event (folium's scripts run
inline before it), best of ``RUNS``. Appends its section to bench/RESULTS.md.
"""

from __future__ import annotations

import functools
import http.server
import math
import os
import platform
import re
import shutil
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import folium
import numpy as np
from folium.plugins import MarkerCluster
from playwright.sync_api import Browser, Route, sync_playwright

from geo_service.core.crs import PointCRS
from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.assets import copy_assets, localise
from geo_service.render.maps.overview import overview_map
from geo_service.render.maps.page import PageOptions, render_html
from geo_service.render.maps.viewport import MIN_ZOOM, grids_in_view
from geo_service.storage.dataset import load_dataset
from tests.browser import CHROMIUM_ARGS, TILE, TILE_HOSTS

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "maps"
CITY100K = ROOT / "bench" / "out" / "city100k"
RESULTS = ROOT / "bench" / "RESULTS.md"
COMMAND = "python -m bench.bench_maps"
RUNS = 3
OPEN_TIMEOUT_S = 180
CHROMIUM = os.environ.get("GEO_SERVICE_TEST_CHROMIUM", "/usr/bin/chromium")


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def baseline_html(snap: Snapshot) -> str:
    """What a first Folium attempt looks like: every layer inlined as-is."""
    m = folium.Map(location=[36.7, 119.15], zoom_start=12, tiles=None)
    folium.TileLayer(
        "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
        "&x={x}&y={y}&z={z}",
        attr="© 高德地图 AutoNavi",
        subdomains="1234",
        name="高德地图",
    ).add_to(m)
    grids = snap.grids.frame.drop(columns=["households"], errors="ignore")
    fields = ["code", "name", "community_name", "officer_name", "officer_phone", "population"]
    folium.GeoJson(
        grids[[*fields, "geometry"]],
        name="网格",
        tooltip=folium.GeoJsonTooltip(fields=["code", "name", "officer_name"]),
        popup=folium.GeoJsonPopup(fields=fields),
    ).add_to(m)
    for level in ("community", "street", "district"):
        units = snap.units(level)
        folium.GeoJson(
            units[["code", "name", "population", "geometry"]],
            name=level,
            tooltip=folium.GeoJsonTooltip(fields=["code", "name"]),
        ).add_to(m)
    cluster = MarkerCluster(name="小蓝棚").add_to(m)
    for rec in snap.stalls.records:
        folium.Marker(
            [rec["lat"], rec["lon"]], popup=f"{rec['code']} {rec['name']}", tooltip=rec["code"]
        ).add_to(cluster)
    for rec in snap.vendor_clusters.records:
        folium.Marker([rec["lat"], rec["lon"]], popup=f"{rec['code']} {rec['name']}").add_to(m)
        folium.Circle([rec["lat"], rec["lon"]], radius=1000).add_to(m)
    folium.LayerControl().add_to(m)
    localise(m.get_root(), "static/")
    return str(m.get_root().render())


def ours_html(snap: Snapshot) -> str:
    options = PageOptions(static_base="static/", grid_href="grids/{code}.html")
    return render_html(overview_map(snap, options), options)


@contextmanager
def file_server(folder: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


@contextmanager
def live_service(data_dir: Path) -> Iterator[str]:
    """``geo-service serve`` on ``data_dir`` in its own process, on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ, GEO_SERVICE_DATA_DIR=str(data_dir), GEO_SERVICE_RATE_LIMIT_ENABLED="false"
    )
    cmd = [sys.executable, "-m", "geo_service.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as res:
                    if res.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# Only requests leaving the machine are intercepted (tiles answered, anything else refused), so
# loopback traffic is not slowed down by a round trip through this process.
NOT_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")


def _route(route: Route) -> None:
    host = route.request.url.split("/")[2].split(":")[0]
    if host.endswith(TILE_HOSTS):
        route.fulfill(body=TILE, content_type="image/png")
    else:
        route.abort()


def open_seconds(browser: Browser, url: str, runs: int = RUNS) -> float | None:
    """Best time from navigation start to the load event; None if it timed out."""
    best = None
    for _ in range(runs):
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        page = ctx.new_page()
        page.route(NOT_LOOPBACK, _route)
        try:
            page.goto(url, wait_until="load", timeout=OPEN_TIMEOUT_S * 1000)
            ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            s = float(ms) / 1000.0
            best = s if best is None else min(best, s)
        except Exception as exc:  # a page too heavy to open in time
            print(f"  {url}: {type(exc).__name__}", file=sys.stderr)
            ctx.close()
            return best
        ctx.close()
    return best


def viewport_fetch(browser: Browser, base: str, snap: Snapshot) -> tuple[float, int]:
    """Open the live overview, zoom to MIN_ZOOM at the city centre, time the grid fetch."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.route(NOT_LOOPBACK, _route)
    page.goto(f"{base}/maps/overview?basemap=osm", wait_until="load", timeout=60_000)
    lon = (snap.bounds[0] + snap.bounds[2]) / 2
    lat = (snap.bounds[1] + snap.bounds[3]) / 2
    # Timed inside the page: from setView to the fetched grids being on the map.
    page.evaluate(
        "() => { const layer = GeoMaps.layers.grids; window.__t0 = performance.now();"
        " layer.once('layeradd', () => setTimeout(() => {"
        " window.__ms = performance.now() - window.__t0; }, 0));"
        f" GeoMaps.map.setView([{lat}, {lon}], {MIN_ZOOM}); }}"
    )
    page.wait_for_function("() => window.__ms !== undefined", timeout=30_000)  # no eval under CSP
    seconds = float(page.evaluate("window.__ms")) / 1000.0
    n = int(page.evaluate("GeoMaps.count('grids')"))
    ctx.close()
    return seconds, n


def ensure_city() -> None:
    if not (CITY100K / "grids.geojson").exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "geo_service.cli.main",
                "synth",
                "--grids",
                "100000",
                "--out",
                str(CITY100K),
            ],
            check=True,
        )


def fmt_s(v: float | None) -> str:
    return "timeout" if v is None else f"{v:.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def main() -> None:
    ensure_city()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    copy_assets(OUT)
    rows = []
    extra = ""
    with sync_playwright() as p, file_server(OUT) as files:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for label, folder in (("default dataset", ROOT / "data"), ("synthetic 100k", CITY100K)):
            snap = load_dataset(folder)
            runs = RUNS if len(snap.grids) < 10_000 else 1
            t_base, base = timed(lambda: baseline_html(snap), runs)  # noqa: B023
            t_ours, ours = timed(lambda: ours_html(snap), runs)  # noqa: B023
            slug = "default" if len(snap.grids) < 10_000 else "100k"
            (OUT / f"baseline-{slug}.html").write_text(base, encoding="utf-8")
            (OUT / f"ours-{slug}.html").write_text(ours, encoding="utf-8")
            size_b, size_o = len(base.encode()), len(ours.encode())
            open_b = open_seconds(browser, f"{files}/baseline-{slug}.html", runs)
            open_o = open_seconds(browser, f"{files}/ours-{slug}.html", runs)
            rows.append(
                f"| {label} ({len(snap.grids):,} grids) | build | {t_base:.2f} s | "
                f"{t_ours:.2f} s | {ratio(t_base, t_ours)} |"
            )
            rows.append(
                f"| | HTML size | {size_b / 1e6:.2f} MB | {size_o / 1e6:.2f} MB | "
                f"{ratio(size_b, size_o)} |"
            )
            rows.append(
                f"| | open in Chromium | {fmt_s(open_b)} | {fmt_s(open_o)} | "
                f"{ratio(open_b, open_o)} |"
            )
            print(rows[-3:], flush=True)
            if len(snap.grids) >= 10_000:
                with live_service(folder) as base_url:
                    fetch_s, n = viewport_fetch(browser, base_url, snap)
                per = []
                lon = (snap.bounds[0] + snap.bounds[2]) / 2
                lat = (snap.bounds[1] + snap.bounds[3]) / 2
                # The view of a 1280x860 window at zoom MIN_ZOOM (Web Mercator metres/pixel).
                mpp = 156543.03 * math.cos(math.radians(lat)) / 2**MIN_ZOOM
                dx, dy = 640 * mpp / (111320 * math.cos(math.radians(lat))), 430 * mpp / 110574
                box = (lon - dx, lat - dy, lon + dx, lat + dy)
                for _ in range(5):
                    t = time.perf_counter()
                    body = grids_in_view(snap, box, PointCRS.gcj02, 2000)
                    per.append(time.perf_counter() - t)
                extra = (
                    f"100k city, grids in view (service in its own process): zooming to "
                    f"{MIN_ZOOM} at the centre of a 1280x860 window loads {n:,} grids in "
                    f"{fetch_s:.2f} s (setView to features on the map, timed in the page); "
                    f"a zoom-{MIN_ZOOM} view ({2 * 640 * mpp / 1000:.1f} x "
                    f"{2 * 430 * mpp / 1000:.1f} km) answers {len(body['features']):,} "
                    f"grids in {statistics.median(per) * 1000:.0f} ms median on the server."
                )
        browser.close()
    write_results(rows, extra)


def write_results(rows: list[str], extra: str) -> None:
    load = os.getloadavg()[0]
    body = "\n".join(
        [
            "<!-- bench_maps:start -->",
            "## Maps: overview size and speed (issue 5)",
            "",
            f"Command: `{COMMAND}`  ",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, 2 cores shared "
            f"with other jobs (load average {load:.1f}); folium {folium.__version__}; best of "
            f"{RUNS} (one run for 100k). Baseline = plain Folium, everything inlined at full "
            "precision, same vendored Leaflet. Ours = `geo_service.render.maps.overview` (Amap, "
            "GCJ-02): grids simplified 2 m with `coverage_simplify`, 6 decimals, compact rows "
            "for markers; above 5,000 grids the grids are loaded by viewport from "
            "`/maps/data/grids?bbox=` (zoom >= 16) and only communities/streets/districts are "
            "inlined. Open = navigation start to load event, tiles answered locally.",
            "",
            "| data | measure | baseline (plain Folium) | ours | baseline / ours |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            extra,
            "<!-- bench_maps:end -->",
        ]
    )
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(r"<!-- bench_maps:start -->.*?<!-- bench_maps:end -->", re.S)
    text = pattern.sub(body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print(body)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
