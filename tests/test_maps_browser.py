"""Every map in a real headless Chromium on a network that reaches nothing but the service.

All requests to hosts other than loopback are aborted (and recorded), except tile requests to the
basemap hosts, which are answered with a blank local tile. A page passes when it raises no
console error, asked for nothing else, and Leaflet holds the expected features. References:
the raw GeoJSON files for counts, ``prcoords`` for GCJ-02 positions.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import prcoords
import pytest
import shapely
import uvicorn
from playwright.sync_api import Browser, Page, Route
from typer.testing import CliRunner

import geo_service.render.maps.overview as overview_module
from geo_service.cli.main import app as cli_app
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.render.maps.grid import surroundings
from geo_service.storage.dataset import load_dataset
from geo_service.storage.synth import write_city
from geo_service.web.app import create_app
from tests import rawdata
from tests.browser import TILE, TILE_HOSTS, chromium

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
TK = "tk-browser-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def serve() -> Iterator[Any]:
    """Start services on free loopback ports; all stopped at the end of the module."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(snapshot: Snapshot, settings: Settings) -> str:
        port = free_port()
        app = create_app(settings, SnapshotStore(snapshot))
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "the service did not start"
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(serve: Any, snapshot: Snapshot) -> str:
    return str(serve(snapshot, Settings(data_dir=rawdata.DATA_DIR, tianditu_key=TK)))


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with chromium(chromium_path) as b:
        yield b


@dataclass
class Watch:
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    tiles: int = 0

    def route(self, route: Route) -> None:
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("file", "data", "blob") or parsed.hostname in LOOPBACK:
            route.continue_()
        elif parsed.hostname and parsed.hostname.endswith(TILE_HOSTS):
            self.tiles += 1
            route.fulfill(status=200, body=TILE, content_type="image/png")
        else:
            self.blocked.append(url)
            route.abort()

    def check(self) -> None:
        assert self.errors == [], self.errors
        assert self.blocked == [], self.blocked
        assert self.tiles > 0


@dataclass
class Opened:
    page: Page
    watch: Watch
    seconds: float


def open_map(browser: Browser, url: str, **context: Any) -> Opened:
    """Open ``url``. Pages run under their CSP (no 'unsafe-eval'): predicates given to
    ``wait_for_function`` are functions (``"() => ..."``), which Playwright does not eval."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, **context)
    page = ctx.new_page()
    watch = Watch()
    page.on(
        "console", lambda m: watch.errors.append(m.text) if m.type in ("error", "assert") else None
    )
    page.on("pageerror", lambda e: watch.errors.append(f"pageerror: {e}"))
    page.route("**/*", watch.route)
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    page.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
    seconds = time.perf_counter() - t0
    page.wait_for_timeout(300)  # let tiles and deferred marker chunks settle
    return Opened(page, watch, seconds)


def counts(page: Page) -> dict[str, int]:
    return dict(
        page.evaluate(
            "Object.fromEntries(Object.keys(GeoMaps.layers).map(k => [k, GeoMaps.count(k)]))"
        )
    )


def svg_paths(page: Page) -> int:
    return int(page.evaluate("document.querySelectorAll('path.leaflet-interactive').length"))


def shot(opened: Opened, artifacts: Path, name: str) -> None:
    path = artifacts / f"maps-{name}.png"
    opened.page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    opened.page.context.close()


def raw_levels() -> dict[str, int]:
    props = rawdata.properties("grids").values()
    return {
        "grids": len(rawdata.features("grids")),
        "communities": len({p["community_code"] for p in props}),
        "streets": len({p["street_code"] for p in props}),
        "districts": len({p["district_code"] for p in props}),
        "stalls": len(rawdata.features("stalls")),
        "vendor_clusters": len(rawdata.features("vendor_clusters")),
    }


@pytest.mark.parametrize("basemap", ["amap", "osm", "tianditu"])
def test_overview_loads_with_every_feature(
    browser: Browser, base_url: str, artifacts: Path, basemap: str
) -> None:
    opened = open_map(browser, f"{base_url}/maps/overview?basemap={basemap}")
    opened.watch.check()
    expected = raw_levels()
    got = counts(opened.page)
    for key, n in expected.items():
        assert got[key] == n, (key, got[key], n)
    assert got["vendor_cluster_discs"] == expected["vendor_clusters"]
    # Drawn at opening: grids and districts (the other levels and the discs are switched off).
    assert svg_paths(opened.page) == expected["grids"] + expected["districts"]
    page = opened.page
    assert page.locator(".leaflet-control-layers").count() == 1
    assert page.locator(".gm-legend").count() == 1
    assert page.locator(".gm-search input").count() == 1
    assert page.locator(".leaflet-control-locate").count() == 1
    attribution = page.locator(".leaflet-control-attribution").inner_text()
    label = {"amap": "高德地图 AutoNavi", "osm": "OpenStreetMap contributors", "tianditu": "天地图"}
    assert label[basemap] in attribution
    assert page.evaluate("L.version") == "1.9.4"
    # On Amap a stall is drawn at its GCJ-02 position (~500 m from WGS84), elsewhere at WGS84.
    raw = rawdata.geometries("stalls")
    for code in sorted(raw)[:: max(len(raw) // 10, 1)]:
        lat, lon = page.evaluate(
            "c => { const ll = GeoMaps.find(c).getLatLng(); return [ll.lat, ll.lng]; }", code
        )
        p = raw[code]
        ref = prcoords.wgs_gcj((p.y, p.x)) if basemap == "amap" else prcoords.Coords(p.y, p.x)
        assert abs(lat - ref.lat) < 1.5e-6 and abs(lon - ref.lon) < 1.5e-6, (basemap, code)
        if basemap == "amap":
            assert shapely.Point(lon, lat).distance(p) > 0.003  # hundreds of metres
    print(f"overview {basemap}: opened in {opened.seconds:.2f} s")  # measured, not asserted
    shot(opened, artifacts, f"overview-{basemap}")


def test_locate_me_on_amap_lands_on_the_gcj02_position(browser: Browser, base_url: str) -> None:
    here = {"latitude": 36.7071, "longitude": 119.1617, "accuracy": 20}
    opened = open_map(
        browser,
        f"{base_url}/maps/overview?basemap=amap",
        geolocation=here,
        permissions=["geolocation"],
    )
    page = opened.page
    # (evaluate returns what the expression returns: never hand back the map itself)
    page.evaluate(
        "() => { GeoMaps.map.once('locationfound', "
        "e => { window.__loc = [e.latlng.lat, e.latlng.lng]; }); }"
    )
    page.locator(".leaflet-control-locate a").click()
    page.wait_for_function("() => window.__loc !== undefined", timeout=10_000)
    lat, lon = page.evaluate("window.__loc")
    ref = prcoords.wgs_gcj((here["latitude"], here["longitude"]))
    assert abs(lat - ref.lat) < 1e-8 and abs(lon - ref.lon) < 1e-8
    # The page's port of the transform agrees with prcoords across the city.
    pts = [(119.05 + 0.03 * i, 36.62 + 0.03 * j) for i in range(7) for j in range(6)]
    got = page.evaluate("ps => ps.map(p => GeoMaps.wgs84ToGcj02(p[0], p[1]))", pts)
    for (x, y), (gx, gy) in zip(pts, got, strict=True):
        ref = prcoords.wgs_gcj((y, x))
        assert abs(gx - ref.lon) < 1e-9 and abs(gy - ref.lat) < 1e-9
    opened.watch.check()
    page.context.close()


def test_search_finds_stalls_and_grids(browser: Browser, base_url: str, artifacts: Path) -> None:
    opened = open_map(browser, f"{base_url}/maps/overview")
    page = opened.page
    stall = sorted(rawdata.geometries("stalls"))[5]
    grid = sorted(rawdata.geometries("grids"))[-1]
    box = page.locator(".gm-search input")
    for code in (stall, grid.lower(), grid):
        box.fill(code)
        box.press("Enter")
        page.wait_for_function(
            "c => [...document.querySelectorAll('.leaflet-popup-content')]"
            ".some(e => e.textContent.includes(c))",
            arg=code.upper(),
            timeout=10_000,
        )
    # Names, pinyin and initials (issue 12: "白浪新村社区" and "鸿福北" gave 未找到), through the
    # service's search: each opens the community's popup (names from data/, read raw).
    communities = {p["community_name"] for p in rawdata.properties("grids").values()}
    assert {"白浪新村社区", "鸿福北社区"} <= communities
    for q, name in (
        ("白浪新村社区", "白浪新村社区"),
        ("hfb", "鸿福北社区"),
        ("bailangxincun", "白浪新村社区"),
        ("鸿福北", "鸿福北社区"),
        ("blxc", "白浪新村社区"),
    ):
        # Returns nothing: closePopup() returns the map, which Playwright would serialise (10 s).
        page.evaluate("() => { GeoMaps.map.closePopup(); }")
        box.fill(q)
        box.press("Enter")
        page.wait_for_function(
            "n => [...document.querySelectorAll('.leaflet-popup-content')]"
            ".some(e => e.textContent.includes(n))",
            arg=name,
            timeout=10_000,
        )
        assert page.locator(".gm-search-msg").text_content() == ""
    for q in ("XLP-000000-00", "qqqzzzxx"):
        page.evaluate("document.querySelector('.gm-search-msg').textContent = ''")
        box.fill(q)
        box.press("Enter")
        page.wait_for_function(
            "() => document.querySelector('.gm-search-msg').textContent.includes('未找到')"
        )
    opened.watch.check()
    shot(opened, artifacts, "overview-search")


def test_grid_map(browser: Browser, base_url: str, snapshot: Snapshot, artifacts: Path) -> None:
    grids = rawdata.geometries("grids")
    # The grid of a stall, so that the card lists at least one facility.
    stall = rawdata.geometries("stalls")[sorted(rawdata.geometries("stalls"))[3]]
    code = min(c for c, g in grids.items() if g.covers(stall))
    neighbours = [c for c, g in grids.items() if c != code and g.intersects(grids[code])]
    s = surroundings(snapshot, code)  # checked against PostGIS in test_maps.py
    opened = open_map(browser, f"{base_url}/maps/grids/{code}")
    got = counts(opened.page)
    assert got["grid"] == 1 and got["zone"] == 1
    assert got["neighbours"] == len(neighbours)
    assert got["stalls"] == len(s.stalls.idx) and got["vendor_clusters"] == len(
        s.vendor_clusters.idx
    )
    assert svg_paths(opened.page) == 2 + len(neighbours)
    card = opened.page.locator(".gm-card").inner_text()
    props = rawdata.properties("grids")[code]
    assert props["officer_name"] in card and props["officer_phone"] in card and code in card
    opened.watch.check()
    shot(opened, artifacts, "grid")


def test_coverage_map_with_candidates(
    browser: Browser, base_url: str, client: Any, artifacts: Path
) -> None:
    add = "119.15,36.70;119.10,36.72"
    opened = open_map(
        browser, f"{base_url}/maps/coverage?layer=stalls&radius_m=500&by=community&add={add}"
    )
    got = counts(opened.page)
    expected = raw_levels()
    gaps = client.get("/api/v1/coverage/gaps?layer=stalls&radius_m=500").json()
    assert got["units"] == expected["communities"]
    assert got["gaps"] == len(gaps["features"])
    # Coverage counts what serves residents today: active stalls only (include_inactive=false).
    serving = sum(p["status"] == "active" for p in rawdata.properties("stalls").values())
    assert got["facilities"] == serving and got["discs"] == serving
    assert got["candidates"] == 2 and got["candidate_discs"] == 2
    # Units are coloured after the what-if: compare with the API's answer for the same change.
    api = client.post(
        "/api/v1/coverage/what-if",
        json={
            "layer": "stalls",
            "radius_m": 500,
            "by": "community",
            "add": [[119.15, 36.70], [119.10, 36.72]],
        },
    ).json()
    ratios = opened.page.evaluate(
        "Object.fromEntries(GeoMaps.layers.units.getLayers()"
        ".map(l => [l.feature.properties.code, l.feature.properties.pop_ratio]))"
    )
    for unit in api["units"]:
        assert abs(ratios[unit["code"]] - unit["after"]["population_ratio"]) < 1e-3
    summary = opened.page.locator(".gm-card").inner_text()
    assert f"{api['after']['population_ratio'] * 100:.1f}%" in summary
    opened.watch.check()
    shot(opened, artifacts, "coverage-whatif")

    opened = open_map(browser, f"{base_url}/maps/coverage?layer=vendor_clusters&basemap=osm")
    got = counts(opened.page)
    serving = sum(p["status"] == "active" for p in rawdata.properties("vendor_clusters").values())
    assert got["units"] == expected["grids"] and got["facilities"] == serving
    opened.watch.check()
    shot(opened, artifacts, "coverage-vendor-clusters")


def test_large_city_loads_grids_in_view(
    browser: Browser,
    serve: Any,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    artifacts: Path,
) -> None:
    """Above the inline limit the overview fetches the grids in view from the service."""
    city = tmp_path_factory.mktemp("city400")
    write_city(city, 400, 8, 4, seed=5)
    snap = load_dataset(city)
    monkeypatch.setattr(overview_module, "INLINE_GRID_LIMIT", 100)
    url = serve(snap, Settings(data_dir=city))
    grids = {c: g for c, g in zip(snap.grids.codes, snap.grids.frame.geometry, strict=True)}
    for basemap in ("osm", "amap"):
        opened = open_map(browser, f"{url}/maps/overview?basemap={basemap}")
        page = opened.page
        assert counts(page)["grids"] == 0  # zoomed out: nothing fetched
        assert "放大到" in page.locator(".gm-hint").inner_text()
        c = next(iter(grids.values())).centroid
        centre = prcoords.wgs_gcj((c.y, c.x)) if basemap == "amap" else prcoords.Coords(c.y, c.x)
        page.evaluate(f"() => {{ GeoMaps.map.setView([{centre.lat}, {centre.lon}], 17); }}")
        page.wait_for_function("() => GeoMaps.count('grids') > 0", timeout=10_000)
        b = page.evaluate(
            "(() => { const b = GeoMaps.map.getBounds();"
            " return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]; })()"
        )
        if basemap == "amap":
            sw, ne = prcoords.gcj_wgs((b[1], b[0])), prcoords.gcj_wgs((b[3], b[2]))
            b = [sw.lon, sw.lat, ne.lon, ne.lat]
        view = shapely.box(*b)
        expected = {k for k, g in grids.items() if g.intersects(view)}
        loaded = set(
            page.evaluate("GeoMaps.layers.grids.getLayers().map(l => l.feature.properties.code)")
        )
        assert expected <= loaded and len(loaded - expected) <= 8
        # A grid far from the view is found by the search box (fetched by code).
        far = max(grids)
        box = page.locator(".gm-search input")
        box.fill(far)
        box.press("Enter")
        page.wait_for_function(
            "c => [...document.querySelectorAll('.leaflet-popup-content')]"
            ".some(e => e.textContent.includes(c))",
            arg=far,
            timeout=10_000,
        )
        # Moving there reloads the grids in view; the found grid stays open and loaded.
        page.wait_for_function(
            "c => GeoMaps.layers.grids.getLayers().length > 1"
            " && !document.querySelector('.gm-hint').textContent.includes('加载')"
            " && GeoMaps.find(c) && GeoMaps.find(c).isPopupOpen()",
            arg=far,
            timeout=10_000,
        )
        opened.watch.check()
        shot(opened, artifacts, f"overview-viewport-{basemap}")


def test_static_maps_open_from_disk(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    """`geo-service maps build` output works from file:// with no service and no CDN."""
    city = tmp_path / "city"
    write_city(city, 50, 6, 3, seed=7)
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(city))
    out = tmp_path / "maps"
    res = CliRunner().invoke(
        cli_app, ["maps", "build", "--basemap", "osm", "--out", str(out), "--radius", "800"]
    )
    assert res.exit_code == 0, res.output
    snap = load_dataset(city)
    code = str(snap.grids.codes[7])
    for name, layer, n in (
        ("overview.html", "grids", len(snap.grids)),
        (f"grids/{code}.html", "grid", 1),
        ("coverage/stalls-800m.html", "facilities", len(snap.stalls)),
    ):
        opened = open_map(browser, (out / name).as_uri())
        assert counts(opened.page)[layer] == n
        opened.watch.check()
        shot(opened, artifacts, "static-" + name.replace("/", "-").removesuffix(".html"))
