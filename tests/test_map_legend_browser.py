"""Issue 12, the officers' maps in a real headless Chromium: every marker style drawn is explained
by the legend (in Chinese), relocated / suspended / retired stalls say so on the card and in the
popups, popups give the hours as the phone pages do, and the grid card shows the grid's open cases.

One server for the module, on a copy of data/ in which one relocated stall records where it went,
a stall near it is suspended and another retired, and three cases lie in its grid (two filed 30
days ago, long overdue). References: the copied files read with json / pyproj.Geod, and the
phone page's own wording of the hours (``/s/{code}``).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pyproj
import pytest
import shapely
from playwright.sync_api import Browser, Page

from geo_service.core.settings import Settings
from geo_service.web.app import create_app
from tests import rawdata
from tests.browser import TILE, TILE_HOSTS, chromium
from tests.services import app_in_thread

pytestmark = pytest.mark.browser

GEOD = pyproj.Geod(ellps="WGS84")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _stalls_with_states(path: Path) -> dict[str, Any]:
    """Where active stalls stand closest together: one is relocated to its nearest neighbour (by
    code), the next two nearest are made suspended and retired; returns who is who."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    by_code = {f["properties"]["code"]: f for f in doc["features"]}
    rows = rawdata.points("stalls")
    active = [r for r in rows if r["status"] == "active"]

    def neighbours(r: dict[str, Any]) -> list[tuple[str, float]]:
        ranked = rawdata.geodesic_ranking(active, r["lon"], r["lat"])
        return [(c, d) for c, d in ranked if c != r["code"]][:3]

    old = min(active, key=lambda r: (neighbours(r)[-1][1], r["code"]))
    (target, _), (suspended, _), (retired, d) = neighbours(old)
    assert d < 1000  # all within the grid map's 1 km
    by_code[old["code"]]["properties"].update(status="relocated", moved_to_code=target)
    by_code[suspended]["properties"]["status"] = "suspended"
    by_code[retired]["properties"]["status"] = "retired"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    grid = min(
        c
        for c, g in rawdata.geometries("grids").items()
        if g.covers(shapely.Point(old["lon"], old["lat"]))
    )
    tgt = next(r for r in rows if r["code"] == target)
    far = GEOD.inv(old["lon"], old["lat"], tgt["lon"], tgt["lat"])[2]
    return {
        "grid": grid,
        "relocated": old["code"],
        "target": tgt,
        "far_m": far,
        "suspended": suspended,
        "retired": retired,
    }


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("legend-city")
    for name in ("grids.geojson", "stalls.geojson", "vendor_clusters.geojson"):
        shutil.copy(rawdata.DATA_DIR / name, data / name)
    shutil.copy(rawdata.DATA_DIR / "case_services.json", data / "case_services.json")
    facts = _stalls_with_states(data / "stalls.geojson")

    def make(base: str) -> Any:
        settings = Settings(
            data_dir=data,
            public_base_url=base,
            rate_limit_enabled=False,
            case_escalation_poll_s=3600,  # nothing escalates (and so moves) during the test
        )
        return create_app(settings)

    with app_in_thread(make) as (base, app):
        desk = app.state.runtime.cases
        real_clock = desk.clock
        p = shapely.point_on_surface(rawdata.geometries("grids")[facts["grid"]])
        ids = []
        for k, when in enumerate((timedelta(days=30), timedelta(days=30), timedelta(0))):
            at = datetime.now(UTC) - when
            desk.clock = lambda at=at: at
            r = httpx.post(
                f"{base}/open311/v2/requests.json",
                data={"service_code": "JM01", "description": f"占道 {k}",
                      "lat": p.y, "long": p.x + k * 1e-6},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            ids.append(r.json()[0]["service_request_id"])
        desk.clock = real_clock
        yield {**facts, "base": base, "cases": ids}


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with chromium(chromium_path) as b:
        yield b


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """The page on a network that reaches only loopback (tiles answered with a blank one)."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

    def route(r: Any) -> None:
        host = urlparse(r.request.url).hostname or ""
        if host in LOOPBACK:
            r.continue_()
        elif host.endswith(TILE_HOSTS):
            r.fulfill(status=200, body=TILE, content_type="image/png")
        else:
            errors.append(f"asked another host: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    page.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
    return page, errors


DRAWN_CLASSES = (
    "() => [...new Set([...document.querySelectorAll('.leaflet-marker-icon.gm-icon')]"
    ".map(e => [...e.classList].filter(c => c.startsWith('gm-')).sort().join(' ')))]"
)
# Every marker's icon, drawn or still inside a cluster (Leaflet's own record of it).
ICON_CLASSES = (
    "() => [...new Set(Object.values(GeoMaps.index).map(h => h.layer)"
    ".filter(l => l.options && l.options.icon)"
    ".map(l => l.options.icon.options.className.split(' ')"
    ".filter(c => c.startsWith('gm-')).sort().join(' ')))]"
)
LEGEND_CLASSES = (
    "() => [...document.querySelectorAll('.gm-legend .gm-icon')].map(e => [...e.classList]"
    ".filter(c => c.startsWith('gm-') && c !== 'gm-legend-icon').sort().join(' '))"
)


def assert_every_marker_explained(page: Page) -> set[str]:
    """Every marker style of the page (drawn or clustered) has a legend row in Chinese."""
    styles = set(page.evaluate(ICON_CLASSES))
    drawn = set(page.evaluate(DRAWN_CLASSES))
    explained = set(page.evaluate(LEGEND_CLASSES))
    assert styles and drawn <= styles, (styles, drawn)
    assert styles <= explained, (styles, explained)
    legend = page.locator(".gm-legend").inner_text()
    assert not re.search(r"[A-Za-z]{3,}", legend), legend  # Chinese only
    return styles


def phone_hours(base: str, code: str) -> str:
    m = re.search(r'<dd id="hours">([^<]*)</dd>', httpx.get(f"{base}/s/{code}").text)
    assert m
    return m.group(1)


def popup_text(page: Page, code: str) -> str:
    """The text of the marker's popup as Leaflet builds it when opened (no zooming about)."""
    return str(
        page.evaluate(
            "c => { const m = GeoMaps.find(c), d = document.createElement('div');"
            " d.innerHTML = m.getPopup().getContent()(m); return d.textContent; }",
            code,
        )
    )


def test_grid_map_card_popups_and_legend(
    browser: Browser, city: dict[str, Any], artifacts: Path
) -> None:
    base, target = city["base"], city["target"]
    page, errors = open_page(browser, f"{base}/maps/grids/{city['grid']}?basemap=osm")
    page.wait_for_function(
        "() => document.querySelector('.gm-cases-count').textContent.includes('未结案件')",
        timeout=10_000,
    )
    card = page.locator(".gm-card").inner_text()
    assert "未结案件 3 件，其中超期 2 件" in card
    links = page.eval_on_selector_all(".gm-cases li a", "els => els.map(e => e.pathname)")
    assert links == [f"/cases/{i}/page" for i in city["cases"]]  # overdue first, by deadline
    assert page.locator(".gm-cases li .gm-overdue").count() == 2
    m = re.search(
        rf"{city['relocated']} .*〔已迁至 {target['code']} {re.escape(target['name'])}.*"
        r"距原址约 ([\d,]+) 米〕",
        card,
    )
    assert m, card
    assert abs(float(m.group(1).replace(",", "")) - city["far_m"]) <= 1
    assert re.search(rf"{city['suspended']} .*〔暂停营业〕", card)
    assert re.search(rf"{city['retired']} .*〔已撤销〕", card)

    drawn = assert_every_marker_explained(page)
    assert page.locator(".leaflet-marker-icon.gm-icon").count() == page.evaluate(
        "GeoMaps.count('stalls') + GeoMaps.count('vendor_clusters')"
    )  # all drawn: the grid map does not cluster
    states = {
        "gm-icon gm-relocated gm-stall",
        "gm-icon gm-stall gm-suspended",
        "gm-icon gm-retired gm-stall",
    }
    assert states <= set(drawn)
    legend = page.locator(".gm-legend").inner_text()
    for words in ("暂停营业", "已迁址", "已撤销", "迁址：原址 → 新址", "鞋 = 修鞋"):
        assert words in legend, (words, legend)
    assert page.evaluate("GeoMaps.count('moves')") == 1
    page.screenshot(path=str(artifacts / "maps-grid-states.png"))

    text = popup_text(page, city["relocated"])
    assert f"已迁至 {target['code']}" in text
    assert phone_hours(base, city["relocated"]) in text and "Mo-" not in text
    text = popup_text(page, city["suspended"])
    assert "暂停营业" in text and phone_hours(base, city["suspended"]) in text
    assert errors == []
    page.context.close()


def test_overview_and_coverage_legends_explain_every_marker(
    browser: Browser, city: dict[str, Any], artifacts: Path
) -> None:
    base = city["base"]
    page, errors = open_page(browser, f"{base}/maps/overview?basemap=osm")
    legend = page.locator(".gm-legend").inner_text()
    for words in ("小蓝棚（正常营业）", "暂停营业", "已迁址", "已撤销", "便民摊点群（正常营业）",
                  "便民摊点群：暂停营业", "彩色圆圈", "迁址：原址 → 新址"):  # fmt: skip
        assert words in legend, (words, legend)
    assert page.locator(".gm-legend .gm-legend-bubble").count() == 1
    assert page.locator(".marker-cluster").count() > 0  # the bubbles the legend explains
    text = popup_text(page, city["relocated"])
    assert "已迁至" in text and phone_hours(base, city["relocated"]) in text
    assert_every_marker_explained(page)
    page.screenshot(path=str(artifacts / "maps-overview-states.png"))
    assert errors == []
    page.context.close()

    # The coverage map's legend (drawn elsewhere) gets the marker rows too.
    page, errors = open_page(browser, f"{base}/maps/coverage?layer=vendor_clusters&radius_m=500")
    drawn = assert_every_marker_explained(page)
    assert "gm-icon gm-vendor" in drawn
    cluster = next(r for r in rawdata.points("vendor_clusters") if r["status"] == "active")
    text = popup_text(page, cluster["code"])
    assert "营业时间" in text and not re.search(r"\b(Mo|Tu|We|Th|Fr|Sa|Su)\b", text)
    assert errors == []
    page.context.close()
