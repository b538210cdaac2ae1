"""Stored XSS and the Content-Security-Policy, in a real headless Chromium.

The service runs on a dataset whose stall, grid, officer, community and vendor-cluster texts are
script injections (``tests/hostile.py``). Every page that shows them (the phone pages, the maps,
their tooltips and popups opened on purpose) must show them as text and run none of them: no
``window.__xss``, no dialog, no injected element. Every page also runs under the CSP the
service sends, with no violation reported (``securitypolicyviolation`` events and console
messages), and still draws: the same pages, and /docs and /redoc.

Network: loopback only; tile requests to the basemap hosts are answered with a blank tile (so a
tile request that arrives proves the CSP allowed it), anything else is aborted and recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from geo_service.core.settings import Settings
from geo_service.web.app import create_app
from tests.browser import CHROMIUM_ARGS, TILE, TILE_HOSTS
from tests.hostile import HERE, Hostile, write_hostile_data
from tests.services import app_in_thread

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Runs before any page script: records CSP violations as the page reports them.
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber);
});
"""
# An element a payload would have created (the pages' own inline scripts are not these).
INJECTED = """() => document.querySelectorAll('img[src="x"], svg[onload], [onerror], [onload]').length
    + [...document.scripts].filter(s => s.textContent.trim().startsWith('window.__xss')).length"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return write_hostile_data(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def base_url(hostile: Hostile) -> Iterator[str]:
    def make(base: str) -> Any:
        return create_app(Settings(data_dir=hostile.data_dir, public_base_url=base))

    with app_in_thread(make) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Guard:
    """One browser page and everything it did that a safe page does not do."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    csp_headers: dict[str, str] = field(default_factory=dict)
    tiles: int = 0

    def route(self, route: Route) -> None:
        url = route.request.url
        host = urlparse(url).hostname or ""
        if host in LOOPBACK:
            route.continue_()
        elif host.endswith(TILE_HOSTS):
            self.tiles += 1
            route.fulfill(status=200, body=TILE, content_type="image/png")
        else:
            self.blocked.append(url)
            route.abort()

    def check(self, refused: str | None = None) -> None:
        """``refused``: a URL prefix the CSP is meant to refuse (not a page fault)."""
        page = self.page
        assert page.evaluate("window.__xss") is None, "an injected script ran"
        assert self.dialogs == []
        assert page.evaluate(INJECTED) == 0, "an injected element is in the DOM"
        violations = [v for v in page.evaluate("window.__csp") if not _refused(v, refused)]
        assert violations == [], "CSP violations"
        errors = [e for e in self.errors if not (refused and refused in e)]
        assert errors == [], errors
        assert self.blocked == [], self.blocked


def _refused(violation: str, prefix: str | None) -> bool:
    return prefix is not None and violation.split(" ")[1].startswith(prefix)


def open_page(browser: Browser, url: str, **context: Any) -> Guard:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN", **context)
    ctx.add_init_script(WATCH_CSP)
    page = ctx.new_page()
    guard = Guard(page)
    page.route("**/*", guard.route)
    page.on("console", lambda m: guard.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: guard.errors.append(f"pageerror: {e}"))

    def dialog(d: Any) -> None:
        guard.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, url
    csp = response.headers.get("content-security-policy")
    assert csp and "frame-ancestors 'self'" in csp and "object-src 'none'" in csp, csp
    guard.csp_headers[url] = csp
    return guard


def hover_all(page: Page, selector: str) -> list[str]:
    """Hover every interactive vector in ``selector`` (a synthetic mouseover, as Leaflet
    listens for) and return the texts of the tooltips they opened."""
    return list(
        page.evaluate(
            """sel => {
                for (const p of document.querySelectorAll(sel)) {
                    p.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
                    p.dispatchEvent(new MouseEvent('mouseout', {bubbles: true}));
                }
                // closed tooltips fade out for 200 ms: every one opened is still here
                return [...document.querySelectorAll('.leaflet-tooltip')].map(t => t.textContent);
            }""",
            selector,
        )
    )


def test_stall_page_shows_hostile_text_as_text(
    browser: Browser, base_url: str, hostile: Hostile
) -> None:
    g = open_page(browser, f"{base_url}/s/{hostile.stall}")
    page, t = g.page, hostile.texts
    page.wait_for_selector("#map.leaflet-container path.leaflet-interactive")
    assert page.text_content("#stall-name") == t["stall.name"]
    assert page.title() == f"{t['stall.name']} · {hostile.stall}"
    facts = page.text_content(".facts") or ""
    assert t["stall.address"] in facts and t["stall.operator"] in facts
    officer = page.text_content("#officer") or ""
    assert t["grid.name"] in officer and t["grid.officer_name"] in officer
    assert t["community_name"] in officer
    tips = hover_all(page, "#map path.leaflet-interactive")
    assert t["stall.name"] in tips  # the stall's own marker
    assert g.tiles > 0  # Amap tiles were requested: img-src allowed them
    g.check()
    page.context.close()


def test_find_lists_and_draws_hostile_names_as_text(
    browser: Browser, base_url: str, hostile: Hostile
) -> None:
    g = open_page(browser, f"{base_url}/find", geolocation=HERE, permissions=["geolocation"])
    page, t = g.page, hostile.texts
    page.wait_for_selector("#results > li")
    first = page.locator("#results > li").first
    assert first.get_attribute("data-code") == hostile.stall
    assert first.locator("a.name").text_content() == t["stall.name"]
    page.wait_for_timeout(300)  # let Leaflet fit the markers
    tips = hover_all(page, "#map path.leaflet-interactive")
    assert t["stall.name"] in tips
    # The hostile community is offered by name, and picking it echoes the name as text.
    option = page.locator(f"#community option[value='{hostile.community}']")
    assert option.text_content() == t["community_name"]
    page.select_option("#community", hostile.community)
    page.wait_for_function(
        "n => document.querySelector('#summary').textContent.includes(n)", arg=t["community_name"]
    )
    assert t["community_name"] in (page.text_content("#where") or "")
    g.check()
    page.context.close()


def popup_text(page: Page, js: str, code: str) -> str:
    """Run ``js`` (opens the popup of ``code``) and return that popup's text (an earlier popup
    may still be fading out)."""
    page.evaluate(js, code)
    found = page.wait_for_function(
        """c => [...document.querySelectorAll('.leaflet-popup-content')]
                .map(e => e.textContent).find(t => t.includes(c))""",
        arg=code,
        timeout=10_000,
    )
    return str(found.json_value())


@pytest.mark.parametrize("basemap", ["amap", "osm"])
def test_overview_map_shows_hostile_text_as_text(
    browser: Browser, base_url: str, hostile: Hostile, basemap: str
) -> None:
    g = open_page(browser, f"{base_url}/maps/overview?basemap={basemap}")
    page, t = g.page, hostile.texts
    page.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
    page.wait_for_timeout(300)
    csp = g.csp_headers[f"{base_url}/maps/overview?basemap={basemap}"]
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]

    # the stall: popup (found by the search box's code path) and tooltip
    text = popup_text(page, "c => GeoMaps.search(c)", hostile.stall)
    assert t["stall.name"] in text and t["stall.address"] in text and t["stall.operator"] in text
    tip = page.evaluate(
        "c => { const m = GeoMaps.find(c); m.openTooltip(); return m.getTooltip().getElement()"
        ".textContent; }",
        hostile.stall,
    )
    assert t["stall.name"] in tip

    # the vendor cluster's popup
    text = popup_text(page, "c => GeoMaps.search(c)", hostile.vendor_cluster)
    assert t["vendor_cluster.name"] in text

    # the grid: popup and tooltip (name, officer, community)
    grid_tip = page.evaluate(
        """c => { const l = GeoMaps.find(c), at = l.getBounds().getCenter();
                  l.openPopup(at); l.openTooltip(at);
                  return [l.getPopup().getElement().textContent,
                          l.getTooltip().getElement().textContent]; }""",
        hostile.grid,
    )
    for part in ("grid.name", "grid.officer_name", "community_name"):
        assert t[part] in grid_tip[0], part
    assert t["grid.name"] in grid_tip[1] and t["grid.officer_name"] in grid_tip[1]

    # the community (a layer off by default) and the vendor clusters' radius discs
    labels = page.evaluate(
        """c => {
            const out = [];
            for (const name of ['communities', 'vendor_cluster_discs']) {
                const layer = GeoMaps.layers[name];
                GeoMaps.map.addLayer(layer);
                layer.eachLayer(l => {
                    const p = l.feature.properties;
                    if (p.code !== c[0] && p.code !== c[1]) return;
                    l.openTooltip(l.getBounds().getCenter());
                    out.push(l.getTooltip().getElement().textContent);
                });
            }
            return out;
        }""",
        [hostile.community, hostile.vendor_cluster],
    )
    assert len(labels) == 2
    assert t["community_name"] in labels[0] and t["vendor_cluster.name"] in labels[1]
    assert g.tiles > 0
    g.check()
    page.context.close()


def test_grid_map_shows_hostile_text_as_text(
    browser: Browser, base_url: str, hostile: Hostile
) -> None:
    g = open_page(browser, f"{base_url}/maps/grids/{hostile.grid}")
    page, t = g.page, hostile.texts
    page.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
    assert page.title() == f"网格 {hostile.grid} {t['grid.name']}"
    card = str(page.text_content(".gm-card"))
    for part in ("grid.name", "grid.officer_name", "community_name", "stall.name"):
        assert t[part] in card, part
    text = popup_text(
        page,
        "c => GeoMaps.find(c).openPopup(GeoMaps.find(c).getBounds().getCenter())",
        hostile.grid,
    )
    assert t["grid.name"] in text and t["grid.officer_name"] in text
    text = popup_text(page, "c => GeoMaps.find(c).openPopup()", hostile.stall)
    assert t["stall.name"] in text and t["stall.operator"] in text
    assert g.tiles > 0
    g.check()
    page.context.close()


def test_coverage_map_runs_under_its_csp(browser: Browser, base_url: str, hostile: Hostile) -> None:
    g = open_page(browser, f"{base_url}/maps/coverage?layer=stalls&radius_m=500&add=119.16,36.71")
    page = g.page
    page.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
    assert page.evaluate("GeoMaps.count('units')") > 0
    assert page.evaluate("GeoMaps.count('candidates')") == 1
    text = popup_text(page, "c => GeoMaps.search(c)", hostile.stall)
    assert hostile.texts["stall.name"] in text
    g.check()
    page.context.close()


def test_swagger_ui_and_redoc_run_under_their_csp(browser: Browser, base_url: str) -> None:
    g = open_page(browser, f"{base_url}/docs")
    g.page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert g.page.locator(".swagger-ui .opblock").count() > 10
    g.check()
    g.page.context.close()
    g = open_page(browser, f"{base_url}/redoc")
    g.page.wait_for_selector(".redoc-wrap .api-content h1", timeout=30_000)
    assert "geo_service" in (g.page.text_content(".redoc-wrap .api-content h1") or "")
    # ReDoc's "API docs by Redocly" logo is an image on its CDN: refused, as it should be
    # (a closed network cannot reach it anyway); nothing else may be.
    g.check(refused="https://cdn.redoc.ly/")
    g.page.context.close()


def test_pages_refuse_to_be_framed_by_other_origins(
    browser: Browser, base_url: str, hostile: Hostile, tmp_path: Path
) -> None:
    """``frame-ancestors 'self'``: a page on another origin cannot frame the stall page."""
    other = tmp_path / "frame.html"
    other.write_text(f'<iframe id="f" src="{base_url}/s/{hostile.stall}"></iframe>')
    ctx = browser.new_context()
    page = ctx.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(other.as_uri())
    page.wait_for_timeout(1000)
    frame = page.frame_locator("#f")
    assert frame.locator("#stall-name").count() == 0
    assert any("frame-ancestors" in m or "X-Frame-Options" in m for m in messages), messages
    ctx.close()
