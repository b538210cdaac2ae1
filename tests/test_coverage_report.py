"""The planners' coverage report: a Chinese HTML page (names, not codes; rounded figures; a
print stylesheet), CSV/GeoJSON with rounded figures, a PDF whose figures match PostGIS, and an
interactive map that loads in headless Chromium on a closed network.

References are independent of the engine: the raw GeoJSON files (``tests.rawdata``) for names
and codes, PostGIS (ST_Buffer, ST_Union, ST_Difference, ST_Dump in EPSG:4549) for every figure,
``prcoords`` for the GCJ-02 shift of the Amap page, pypdf to read the PDF back.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import prcoords
import psycopg
import pypdf
import pytest
import shapely
from bs4 import BeautifulSoup

from geo_service.analysis.coverage import compute_coverage
from geo_service.core.snapshot import Snapshot
from geo_service.render.coverage_report import ReportFiles, write_report
from geo_service.render.coverage_tables import GAP_FILE_COLUMNS, UNIT_FILE_COLUMNS
from tests import rawdata
from tests.browser import CHROMIUM_ARGS, TILE, TILE_HOSTS
from tests.coverage_ref import REFERENCE_QUAD_SEGS, load_coverage_tables, reference_coverage

LAYER, RADIUS, SERVICE, BY = "stalls", 500.0, "修鞋", "street"
MIN_GAP_M2 = 1000.0
CJK = re.compile(r"[\u4e00-\u9fff]")
LONG_DECIMALS = re.compile(r"\d\.\d{3,}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot) -> ReportFiles:
    result = compute_coverage(snapshot, LAYER, RADIUS, BY, SERVICE, active_only=True)
    out = tmp_path_factory.mktemp("coverage-report") / "report.html"
    return write_report(result, out, "weifang-central")


def street_names() -> dict[str, str]:
    return {p["street_code"]: p["street_name"] for p in rawdata.properties("grids").values()}


@dataclass(frozen=True)
class Reference:
    grids: pd.DataFrame  # code, street_code, population, area, covered
    pieces: pd.DataFrame  # grid_code, area, population: uncovered pieces ≥ MIN_GAP_M2

    def overall(self) -> dict[str, float]:
        g = self.grids
        return {
            "area": g["area"].sum(),
            "covered": g["covered"].sum(),
            "population": g["population"].sum(),
            "covered_population": (g["population"] * g["covered"] / g["area"]).sum(),
        }


@pytest.fixture(scope="module")
def reference(pg_reference_url: str, snapshot: Snapshot) -> Iterator[Reference]:
    """Coverage and gap pieces of the active shoe-repair stalls from PostGIS, raw files in."""
    props = rawdata.properties("grids")
    geoms = rawdata.geometries("grids")
    codes = sorted(props)
    stalls = [
        r for r in rawdata.points("stalls") if r["status"] == "active" and SERVICE in r["services"]
    ]
    with psycopg.connect(pg_reference_url, autocommit=True) as pg:
        load_coverage_tables(
            pg,
            np.array(codes, dtype=object),
            np.array([geoms[c] for c in codes], dtype=object),
            np.array([r["code"] for r in stalls], dtype=object),
            np.array([r["lon"] for r in stalls]),
            np.array([r["lat"] for r in stalls]),
            snapshot.projection.epsg,
            prefix="rpt",
        )
        ref = reference_coverage(pg, RADIUS, prefix="rpt")
        rows = pg.execute(
            f"""
            SELECT g.code, ST_Area(d.geom) FROM rpt_grids g
            LEFT JOIN LATERAL (
                SELECT ST_Union(ST_Buffer(p.geom, {RADIUS}, 'quad_segs={REFERENCE_QUAD_SEGS}'))
                    AS geom
                FROM rpt_points p WHERE ST_DWithin(p.geom, g.geom, {RADIUS})
            ) u ON true
            CROSS JOIN LATERAL ST_Dump(
                CASE WHEN u.geom IS NULL THEN g.geom ELSE ST_Difference(g.geom, u.geom) END
            ) d
            WHERE ST_Area(d.geom) >= {MIN_GAP_M2}
            """
        ).fetchall()
    grids = pd.DataFrame(
        {
            "code": codes,
            "street_code": [props[c]["street_code"] for c in codes],
            "population": [float(props[c]["population"]) for c in codes],
            "area": [ref[c][0] for c in codes],
            "covered": [ref[c][1] for c in codes],
        }
    )
    pieces = pd.DataFrame(rows, columns=["grid_code", "area"])
    per_grid = grids.set_index("code")
    pieces["population"] = (
        per_grid.loc[pieces["grid_code"], "population"].to_numpy()
        * pieces["area"].to_numpy()
        / per_grid.loc[pieces["grid_code"], "area"].to_numpy()
    )
    yield Reference(grids, pieces.sort_values("population", ascending=False, ignore_index=True))


def by_street(ref: Reference) -> pd.DataFrame:
    g = ref.grids.assign(
        covered_population=ref.grids["population"] * ref.grids["covered"] / ref.grids["area"]
    )
    return g.groupby("street_code").sum(numeric_only=True)


def number(text: str) -> float:
    return float(text.strip().rstrip("%").replace(",", ""))


# --- HTML ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soup(report: ReportFiles) -> BeautifulSoup:
    return BeautifulSoup(report.html.read_text(encoding="utf-8"), "html.parser")


def visible_text(soup: BeautifulSoup) -> str:
    """The text a reader sees on screen (not styles, scripts, the map's SVG or iframe)."""
    body = soup.body
    assert body is not None
    hidden = {"style", "script", "svg", "iframe", "text"}
    return " ".join(
        s for s in body.find_all(string=True) if not hidden & {p.name for p in s.parents}
    )


def test_html_is_a_chinese_report_with_names(report: ReportFiles, soup: BeautifulSoup) -> None:
    assert soup.html is not None and soup.html.get("lang") == "zh-CN"
    assert soup.title is not None and soup.title.text == "小蓝棚（修鞋） 500 米覆盖分析报告"
    headings = [h.get_text(strip=True) for h in soup.find_all("h2")]
    for want in ("概况", "说明", "覆盖范围与未覆盖片区", "各街道覆盖率", "未覆盖片区"):
        assert want in headings, headings
    assert "按街道统计（24 个）" in headings
    for th in soup.find_all("th"):
        assert CJK.search(th.get_text()), th  # every header is Chinese

    names = street_names()
    # Bars: one per street, labelled with its Chinese name, the code in its own small column.
    rows = soup.select("table.bars tbody tr")
    assert len(rows) == len(names)
    for tr in rows:
        name_td, code_td = (tr.select_one(f"td.{c}") for c in ("name", "code"))
        assert name_td is not None and code_td is not None
        assert names[code_td.get_text(strip=True)] == name_td.get_text(strip=True)
    # The units table: names first, codes beside them.
    for tr in soup.select("table.units tbody tr"):
        cells = [td.get_text(strip=True) for td in tr.find_all("td")]
        assert names[cells[1]] == cells[0]
    # The gaps table: grid, community and street by name.
    grids = rawdata.properties("grids")
    gap_rows = soup.select("table.gaps tbody tr")
    assert len(gap_rows) == min(100, report.gap_pieces)
    for tr in gap_rows:
        gid, grid, code, community, street, *_ = (
            td.get_text(strip=True) for td in tr.find_all("td")
        )
        assert re.fullmatch(r"G\d{4}", gid)
        p = grids[code]
        assert (grid, community, street) == (p["name"], p["community_name"], p["street_name"])

    text = visible_text(soup)
    assert not LONG_DECIMALS.search(text), LONG_DECIMALS.search(text)
    # Figures: percentages with one decimal, and nothing but Chinese prose (file names,
    # CRS names and the dataset name aside).
    assert re.search(r"人口覆盖率\s+\d+\.\d%", text)
    allowed = {"EPSG", "CGCS", "GCJ", "PDF", "CSV", "Excel", "UTF", "weifang", "central"}
    allowed |= {w for p in report.paths() for w in re.findall(r"[A-Za-z]{3,}", p.name)}
    allowed |= set(re.findall(r"[A-Za-z]{3,}", " ".join([*UNIT_FILE_COLUMNS, *GAP_FILE_COLUMNS])))
    words = set(re.findall(r"[A-Za-z]{3,}", text)) - allowed
    assert not words, words


def test_html_prints_a_static_map_and_embeds_the_interactive_one(
    report: ReportFiles, soup: BeautifulSoup
) -> None:
    page = report.html.read_text(encoding="utf-8")
    style = " ".join(s.get_text() for s in soup.find_all("style"))
    assert "@media print" in style and "@page" in style
    printed = soup.select_one("figure.print-only")
    assert printed is not None
    labels = {t.get_text() for t in printed.find_all("text")}
    assert set(street_names().values()) <= labels  # the static map names every street
    frame = soup.select_one("iframe.map")
    assert frame is not None
    assert frame["srcdoc"] == report.map.read_text(encoding="utf-8")  # the same map, inline
    # Self-contained: nothing is loaded from another host (tiles are the map's business).
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page)
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', frame["srcdoc"])


# --- files ---------------------------------------------------------------------------------


def test_csv_and_geojson_figures_are_rounded_and_right(
    report: ReportFiles, reference: Reference
) -> None:
    for path in (report.csv, report.gaps_csv):
        raw = path.read_text(encoding="utf-8-sig")
        assert not LONG_DECIMALS.search(raw), (path.name, LONG_DECIMALS.search(raw))
    with report.csv.open(encoding="utf-8-sig", newline="") as fh:
        units = list(csv.DictReader(fh))
    want = by_street(reference)
    names = street_names()
    assert [u["code"] for u in units] == sorted(names)
    for u in units:
        w = want.loc[u["code"]]
        assert u["name"] == names[u["code"]]
        assert re.fullmatch(r"\d+", u["area_m2"]) and re.fullmatch(r"\d+\.\d", u["area_pct"])
        assert abs(int(u["area_m2"]) - w["area"]) <= 1
        assert abs(int(u["covered_m2"]) - w["covered"]) <= 1e-3 * w["area"] + 1
        assert abs(float(u["area_pct"]) - 100 * w["covered"] / w["area"]) <= 0.1
        assert (
            abs(float(u["population_pct"]) - 100 * w["covered_population"] / w["population"]) <= 0.1
        )
        assert (
            abs(int(u["covered_population"]) - w["covered_population"])
            <= 1e-3 * w["population"] + 1
        )
    with report.gaps_csv.open(encoding="utf-8-sig", newline="") as fh:
        gaps = list(csv.DictReader(fh))
    assert len(gaps) == report.gap_pieces
    assert abs(len(gaps) - len(reference.pieces)) <= 3  # pieces near 1,000 m² may differ
    pops = [int(g["population"]) for g in gaps]
    assert pops == sorted(pops, reverse=True)
    assert sum(int(g["area_m2"]) for g in gaps) == pytest.approx(
        reference.pieces["area"].sum(), rel=1e-3
    )
    for g in gaps[:20]:
        cand = reference.pieces[reference.pieces["grid_code"] == g["grid_code"]]
        best = cand.iloc[int(np.argmin(np.abs(cand["area"] - int(g["area_m2"]))))]
        assert abs(int(g["area_m2"]) - best["area"]) <= max(5.0, 2e-3 * best["area"])
        assert abs(int(g["population"]) - best["population"]) <= 1
    for path, decimals in ((report.geojson, 7), (report.gaps, 6)):
        data = json.loads(path.read_text(encoding="utf-8"))
        feats = data["features"]
        assert feats
        for f in feats:
            for v in f["properties"].values():
                assert not isinstance(v, float) or round(v, 1) == v
        coords = shapely.get_coordinates(shapely.from_geojson(json.dumps(feats[0]["geometry"])))
        assert np.allclose(coords, np.round(coords, decimals), atol=1e-12)


# --- PDF -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_lines(report: ReportFiles) -> list[str]:
    reader = pypdf.PdfReader(report.pdf)
    assert len(reader.pages) >= 3
    text = "\n".join(page.extract_text() for page in reader.pages)
    return [line.strip() for line in text.splitlines() if line.strip()]


def after(lines: list[str], label: str, start: int = 0) -> str:
    return lines[lines.index(label, start) + 1]


def test_pdf_figures_match_postgis(pdf_lines: list[str], reference: Reference) -> None:
    lines = pdf_lines
    assert "小蓝棚（修鞋） 500 米覆盖分析报告" in lines
    o = reference.overall()
    assert abs(number(after(lines, "面积覆盖率")) - 100 * o["covered"] / o["area"]) <= 0.06
    assert (
        abs(number(after(lines, "人口覆盖率")) - 100 * o["covered_population"] / o["population"])
        <= 0.06
    )
    area = after(lines, "统计范围面积")
    assert area.endswith(" 平方公里") and abs(number(area.split()[0]) - o["area"] / 1e6) <= 0.006
    covered = after(lines, "已覆盖面积")
    assert abs(number(covered.split()[0]) - o["covered"] / 1e6) <= 0.01
    people = after(lines, "覆盖人口")
    assert people.endswith(" 人")
    assert abs(number(people.split()[0]) - o["covered_population"]) <= 1e-3 * o["population"]
    assert number(after(lines, "常住人口").split()[0]) == o["population"]

    # Every street in the table by street: name, code, then six rounded figures.
    want = by_street(reference)
    names = street_names()
    start = lines.index("按街道统计（24 个）")
    for code, w in want.iterrows():
        i = lines.index(code, start)
        assert lines[i - 1] == names[str(code)]
        area_km2, cov_km2, area_pct, pop, cov_pop, pop_pct = lines[i + 1 : i + 7]
        assert re.fullmatch(r"\d+\.\d\d", area_km2) and re.fullmatch(r"\d+\.\d%", pop_pct)
        assert abs(number(area_km2) - w["area"] / 1e6) <= 0.006
        assert abs(number(cov_km2) - w["covered"] / 1e6) <= 0.006 + 1e-3 * w["area"] / 1e6
        assert abs(number(area_pct) - 100 * w["covered"] / w["area"]) <= 0.1
        assert number(pop) == w["population"]
        assert abs(number(cov_pop) - w["covered_population"]) <= 1e-3 * w["population"] + 1
        assert abs(number(pop_pct) - 100 * w["covered_population"] / w["population"]) <= 0.1

    # The gap pieces with the most people, as PostGIS cuts them.
    start = lines.index("未覆盖片区", lines.index("区界"))
    for k in range(1, 11):
        i = lines.index(f"G{k:04d}", start)
        grid_code, area, pop = lines[i + 2], lines[i + 5], lines[i + 6]
        cand = reference.pieces[reference.pieces["grid_code"] == grid_code]
        best = cand.iloc[int(np.argmin(np.abs(cand["area"] - number(area))))]
        assert abs(number(area) - best["area"]) <= max(5.0, 2e-3 * best["area"])
        assert abs(number(pop) - best["population"]) <= 1
        assert rawdata.properties("grids")[grid_code]["name"] == lines[i + 1]


# --- the interactive map in a browser ------------------------------------------------------


@pytest.mark.browser
def test_interactive_map_loads_offline_in_chromium(
    report: ReportFiles, chromium_path: str, artifacts: Path
) -> None:
    from playwright.sync_api import Route, sync_playwright

    errors: list[str] = []
    blocked: list[str] = []
    tiles: list[str] = []

    def route(r: Route) -> None:
        url = urlparse(r.request.url)
        if url.scheme in ("file", "data", "about", "blob"):
            r.continue_()
        elif url.hostname and url.hostname.endswith(TILE_HOSTS):
            tiles.append(url.hostname)
            r.fulfill(status=200, body=TILE, content_type="image/png")
        else:
            blocked.append(r.request.url)
            r.abort()

    gaps = json.loads(report.gaps.read_text(encoding="utf-8"))["features"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console", lambda m: errors.append(m.text) if m.type in ("error", "assert") else None
        )
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.route("**/*", route)
        page.goto(report.html.as_uri(), wait_until="load")
        frame = page.frame_locator("iframe.map")
        frame.locator(".gm-card").wait_for(timeout=20_000)
        inner = next(f for f in page.frames if f != page.main_frame)
        inner.wait_for_function("() => window.GeoMaps && GeoMaps.map !== null", timeout=20_000)
        counts = inner.evaluate(
            "Object.fromEntries(Object.keys(GeoMaps.layers).map(k => [k, GeoMaps.count(k)]))"
        )
        assert counts["gaps"] == len(gaps) == report.gap_pieces
        assert counts["units"] == len(rawdata.features("grids"))
        # On Amap tiles the overlays are in GCJ-02 (~500 m from WGS84): the largest piece's
        # bounds sit where prcoords puts them.
        first = shapely.from_geojson(json.dumps(gaps[0]["geometry"]))
        minx, miny, maxx, maxy = first.bounds
        sw, ne = prcoords.wgs_gcj((miny, minx)), prcoords.wgs_gcj((maxy, maxx))
        got = inner.evaluate(
            "id => { const b = GeoMaps.layers.gaps.getLayers()"
            ".find(l => l.feature.properties.code === id).getBounds();"
            " return [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()]; }",
            gaps[0]["properties"]["gap_id"],
        )
        assert np.allclose(got, [sw.lat, sw.lon, ne.lat, ne.lon], atol=5e-5)  # ≈ 5 m
        assert "高德地图" in frame.locator(".leaflet-control-attribution").inner_text()
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts / "coverage-report.png"), full_page=False)
        # Printed: the static map instead of the interactive one.
        page.emulate_media(media="print")
        assert page.locator("iframe.map").is_hidden()
        assert page.locator("figure.print-only svg").first.is_visible()
        browser.close()
    assert errors == [], errors
    assert blocked == [], blocked
    assert tiles and all("autonavi.com" in t for t in tiles)
