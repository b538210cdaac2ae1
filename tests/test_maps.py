"""Map pages without a browser: assets, basemaps and their CRS, content, errors, the CLI.

References: the HTML is parsed with the standard library's parser; GCJ-02 positions come from
``prcoords``; neighbours and nearby facilities from PostGIS; counts from the raw GeoJSON files.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import numpy as np
import prcoords
import pytest
import shapely
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.crs import PointCRS
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.render.maps.grid import surroundings
from geo_service.render.maps.units import unit_collection
from geo_service.storage.synth import write_city
from geo_service.web.app import create_app
from tests import rawdata
from tests.pgref import load_table

STATIC = Path(__file__).resolve().parent.parent / "geo_service" / "render" / "static"
MB = 1024 * 1024
TK = "tk-test-0123456789"


class Links(HTMLParser):
    """Every script src and stylesheet href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(str(a["src"]))
        if tag == "link" and (a.get("rel") or "") == "stylesheet":
            self.styles.append(str(a["href"]))


def links(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def tk_client(snapshot: Snapshot) -> Iterator[TestClient]:
    """A service configured with a Tianditu key."""
    settings = Settings(data_dir=rawdata.DATA_DIR, tianditu_key=TK)
    with TestClient(create_app(settings, SnapshotStore(snapshot))) as c:
        yield c


def first_grid() -> str:
    return sorted(rawdata.geometries("grids"))[0]


PAGES = [
    "/maps/overview",
    "/maps/overview?basemap=osm",
    "/maps/grids/{grid}",
    "/maps/coverage?layer=stalls&radius_m=1000",
    "/maps/coverage?layer=vendor_clusters&radius_m=500&by=street&add=119.15,36.70",
]


@pytest.mark.parametrize("path", PAGES)
def test_pages_link_only_self_hosted_assets(client: TestClient, path: str) -> None:
    res = client.get(path.format(grid=first_grid()))
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/html")
    page = links(res.text)
    assert page.scripts and page.styles
    for url in page.scripts + page.styles:
        assert not urlparse(url).netloc and not urlparse(url).scheme, url
        assert url.startswith("/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert any(u.endswith("vendor/leaflet/leaflet.js") for u in page.scripts)
    # Nothing the maps do not use (folium's default jQuery / Bootstrap / Font Awesome).
    assert not re.search(r"jquery|bootstrap|fontawesome|awesome-markers", res.text, re.I)


def test_vendored_libraries_carry_their_licences() -> None:
    vendor = STATIC / "vendor"
    folders = [d for d in vendor.iterdir() if d.is_dir()]
    assert {d.name for d in folders} >= {
        "leaflet",
        "leaflet.markercluster",
        "leaflet.locatecontrol",
    }
    for d in folders:
        assert any(f.name.upper().startswith(("LICENSE", "MIT-LICEN")) for f in d.iterdir()), d
    head = (vendor / "leaflet" / "leaflet.js").read_text()[:200]
    assert "Leaflet 1.9.4" in head


def test_overview_stays_small_and_holds_every_feature(client: TestClient) -> None:
    res = client.get("/maps/overview")
    assert len(res.content) < 3 * MB
    html = res.text
    props = rawdata.properties("grids")
    for code in list(props)[:: max(len(props) // 50, 1)]:
        assert f'"{code}"' in html
    for code in rawdata.properties("stalls"):
        assert f'"{code}"' in html
    for code in rawdata.properties("vendor_clusters"):
        assert f'"{code}"' in html
    # Chinese labels are written as UTF-8, not \\uXXXX escapes (a third of the size).
    assert "网格员" in html or "officer" in html
    assert next(iter(props.values()))["officer_name"] in html


def test_simplified_grids_keep_shared_edges(snapshot: Snapshot) -> None:
    data = unit_collection(snapshot, "grid", PointCRS.wgs84)
    shown = np.array([shapely.geometry.shape(f["geometry"]) for f in data["features"]])
    raw = rawdata.geometries("grids")
    original = np.array([raw[f["id"]] for f in data["features"]])
    metric_shown = snapshot.projection.project(shown)
    metric_orig = snapshot.projection.project(original)
    # No overlaps introduced: the pieces add up to their union.
    total = float(shapely.area(metric_shown).sum())
    union = float(shapely.union_all(metric_shown).area)
    assert abs(total - union) < 1e-4 * union
    # Same footprint: the union moved by well under a tenth of a percent.
    assert abs(union - shapely.union_all(metric_orig).area) < 1e-3 * union
    # Every vertex within the 2 m tolerance (Hausdorff distance per grid).
    assert float(shapely.hausdorff_distance(metric_shown, metric_orig).max()) <= 2.0 + 1e-6
    # And 6 decimals at most.
    text = json.dumps(data["features"][0]["geometry"])
    assert not re.search(r"\d\.\d{7,}", text)


def _page_rows(html: str, kind: str) -> dict[str, dict[str, Any]]:
    """Markers the page builds: GeoMaps.addPoints(group, kind, columns, rows)."""
    m = re.search(
        r"GeoMaps\.addPoints\([^,]+,\s*\"" + kind + r"\",\s*(\[.*?\]),\s*(\[\[.*?\]\])\);",
        html,
        re.S,
    )
    assert m, kind
    columns, rows = json.loads(m.group(1)), json.loads(m.group(2))
    return {r[columns.index("code")]: dict(zip(columns, r, strict=True)) for r in rows}


def test_amap_pages_put_stalls_at_their_gcj02_position(client: TestClient) -> None:
    amap = _page_rows(client.get("/maps/overview?basemap=amap").text, "stall")
    osm = _page_rows(client.get("/maps/overview?basemap=osm").text, "stall")
    raw = rawdata.geometries("stalls")
    assert set(amap) == set(raw) == set(osm)
    for code, p in raw.items():
        ref = prcoords.wgs_gcj((p.y, p.x))
        assert (
            abs(amap[code]["lat"] - ref.lat) < 1.5e-6 and abs(amap[code]["lon"] - ref.lon) < 1.5e-6
        )
        assert abs(osm[code]["lat"] - p.y) < 1.5e-6 and abs(osm[code]["lon"] - p.x) < 1.5e-6


def tile_layers(html: str) -> dict[str, str]:
    """Tile URL template -> attribution, decoded from the page's L.tileLayer(...) calls."""
    found = re.findall(r"L\.tileLayer\(\s*(\"(?:[^\"\\]|\\.)*\")\s*,\s*\{(.*?)\}", html, re.S)
    out = {}
    for url, options in found:
        attr = re.search(r'"attribution":\s*("(?:[^"\\]|\\.)*")', options)
        out[json.loads(url)] = json.loads(attr.group(1)) if attr else ""
    return out


def test_basemaps_attribution_and_tianditu_key(client: TestClient, tk_client: TestClient) -> None:
    amap_page = client.get("/maps/overview").text  # the default
    amap = tile_layers(amap_page)
    assert len(amap) == 2 and all("autonavi.com/appmaptile" in u for u in amap)
    assert set(amap.values()) == {"© 高德地图 AutoNavi"}
    assert "坐标系 GCJ-02" in amap_page
    osm_page = client.get("/maps/overview?basemap=osm").text
    assert tile_layers(osm_page) == {
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png": "© OpenStreetMap contributors"
    }
    assert "tianditu" not in osm_page  # no key: not offered at all
    res = client.get("/maps/overview?basemap=tianditu")
    assert res.status_code == 422 and "key" in res.text.lower()  # a Chinese page with the detail
    tdt = tk_client.get("/maps/overview?basemap=tianditu").text
    tiles = tile_layers(tdt)
    tianditu = [u for u in tiles if "tianditu.gov.cn" in u]
    assert len(tianditu) == 4 and all(f"tk={TK}" in u for u in tianditu)
    assert all(tiles[u] == "© 天地图" for u in tianditu)
    assert "© OpenStreetMap contributors" in tiles.values()
    assert "坐标系 WGS84" in tdt
    # The Amap page links its WGS84 variants and vice versa.
    amap_tk = tk_client.get("/maps/overview").text
    assert "basemap=tianditu" in amap_tk and "basemap=osm" in amap_tk
    assert "basemap=amap" in tdt


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/maps/overview?basemap=google", 422, "basemap"),
        ("/maps/grids/12345", 422, "code"),
        ("/maps/grids/999999999999999", 404, None),
        ("/maps/coverage?layer=stalls&radius_m=-5", 422, "radius_m"),
        ("/maps/coverage?layer=grids&radius_m=500", 422, "layer"),
        ("/maps/coverage?layer=stalls&radius_m=1e9", 422, "radius_m"),
        ("/maps/coverage?layer=stalls&add=119.1", 422, "add"),
        ("/maps/coverage?layer=stalls&add=119.1,36.7;abc,1", 422, "add"),
        ("/maps/coverage?layer=stalls&add=36.7,119.1", 422, "add"),
        ("/maps/coverage?layer=stalls&add=119.1,36.7&crs=utm", 422, "crs"),
        ("/maps/coverage?layer=vendor_clusters&service=修鞋", 422, "service"),
        ("/maps/data/grids", 422, "bbox"),
        ("/maps/data/grids?bbox=1,2,3", 422, "bbox"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, path: str, status: int, field: str | None
) -> None:
    res = client.get(path)
    assert res.status_code == status, res.text
    if not path.startswith("/maps/data/"):  # a page: a Chinese error page naming the problem
        assert res.headers["content-type"].startswith("text/html")
        assert f"错误代码 {status}" in res.text
        if field:
            assert field in res.text
        return
    body = res.json()
    assert body["detail"]
    if field:
        assert field in body["detail"]


def test_grid_surroundings_match_postgis(snapshot: Snapshot, pg: Any) -> None:
    grids = rawdata.geometries("grids")
    codes = sorted(grids)
    load_table(pg, "m5_grids", codes, np.array([grids[c] for c in codes]))
    for layer in ("stalls", "vendor_clusters"):
        pts = rawdata.geometries(layer)
        pc = sorted(pts)
        load_table(pg, f"m5_{layer}", pc, np.array([pts[c] for c in pc]))
    sample = codes[:: max(len(codes) // 12, 1)]
    for code in sample:
        s = surroundings(snapshot, code, 1000.0)
        rows = pg.execute(
            "SELECT b.code FROM m5_grids a JOIN m5_grids b ON ST_Intersects(a.geom, b.geom) "
            "WHERE a.code = %s AND b.code <> a.code ORDER BY b.code",
            (code,),
        ).fetchall()
        assert list(snapshot.grids.codes[s.neighbours]) == [r[0] for r in rows]
        for layer, near in (("stalls", s.stalls), ("vendor_clusters", s.vendor_clusters)):
            got = dict(zip(snapshot.points(layer).codes[near.idx], near.distance_m, strict=True))
            ref = dict(
                pg.execute(
                    f"SELECT p.code, ST_Distance(g.geom::geography, p.geom::geography) "
                    f"FROM m5_grids g, m5_{layer} p WHERE g.code = %s "
                    f"AND ST_DWithin(g.geom::geography, p.geom::geography, 1010)",
                    (code,),
                ).fetchall()
            )
            # Metric-CRS and geodesic distances differ by ~0.1 m per km here: skip the rim.
            for c, d in ref.items():
                if d < 998.0:
                    assert c in got, (code, c, d)
                    assert abs(got[c] - d) < 1.0, (code, c, got[c], d)
                elif d > 1002.0:
                    assert c not in got
            assert set(got) <= set(ref)


def test_grid_page_shows_the_officer_and_neighbours(client: TestClient) -> None:
    code = first_grid()
    props = rawdata.properties("grids")[code]
    html = client.get(f"/maps/grids/{code}").text
    assert props["officer_name"] in html and props["officer_phone"] in html
    assert "网格员名片" in html
    neighbours = [
        c
        for c, g in rawdata.geometries("grids").items()
        if c != code and g.intersects(rawdata.geometries("grids")[code])
    ]
    for c in neighbours:
        assert f'"{c}"' in html


def test_viewport_grids_are_converted_and_selected(client: TestClient, snapshot: Snapshot) -> None:
    raw = rawdata.geometries("grids")
    code = first_grid()
    c = raw[code].representative_point()
    g = prcoords.wgs_gcj((c.y, c.x))
    box = f"{g.lon - 0.002},{g.lat - 0.002},{g.lon + 0.002},{g.lat + 0.002}"
    res = client.get(f"/maps/data/grids?bbox={box}&basemap=amap")
    assert res.status_code == 200 and res.headers["access-control-allow-origin"] == "*"
    body = res.json()
    got = {f["id"]: f for f in body["features"]}
    assert code in got and body["numberMatched"] == len(got) and not body["truncated"]
    # Independent selection: grids intersecting the box converted back to WGS84 by prcoords.
    corners = [
        prcoords.gcj_wgs((y, x))
        for x, y in ((g.lon - 0.002, g.lat - 0.002), (g.lon + 0.002, g.lat + 0.002))
    ]
    wgs_box = shapely.box(corners[0].lon, corners[0].lat, corners[1].lon, corners[1].lat)
    expected = {k for k, geom in raw.items() if geom.intersects(wgs_box)}
    assert expected <= set(got)
    assert len(got) - len(expected) <= 6  # the box is padded by ~10 m
    # Every vertex in GCJ-02.
    ring = np.array(got[code]["geometry"]["coordinates"][0])
    orig = np.array(raw[code].exterior.coords)
    assert len(ring) == len(orig)
    for (x, y), (ox, oy) in zip(ring, orig, strict=True):
        ref = prcoords.wgs_gcj((oy, ox))
        assert abs(x - ref.lon) < 1.5e-6 and abs(y - ref.lat) < 1.5e-6
    # Limit and lookup by code.
    small = client.get(f"/maps/data/grids?bbox={box}&basemap=osm&limit=1").json()
    assert small["truncated"] == (len(got) > 1) and len(small["features"]) == 1
    one = client.get(f"/maps/data/grids?code={code}&basemap=osm").json()
    assert [f["id"] for f in one["features"]] == [code]
    assert client.get("/maps/data/grids?code=000").json()["features"] == []


def coloured_units(html: str) -> list[dict[str, Any]]:
    """Features of the coverage page's units layer (the one styled per feature)."""
    m = re.search(r"L\.geoJSON\((\{.*?\}), \{\s*style: function", html, re.S)
    assert m
    return list(json.loads(m.group(1))["features"])


def test_coverage_page_summary_matches_the_api(client: TestClient) -> None:
    api = client.get("/api/v1/coverage?layer=stalls&radius_m=1000&by=community").json()
    html = client.get("/maps/coverage?layer=stalls&radius_m=1000&by=community").text
    assert f"{api['overall']['population_ratio'] * 100:.1f}%" in html
    feats = coloured_units(html)
    page = {f["id"]: f["properties"]["pop_ratio"] for f in feats}
    ref = {
        u["code"]: u["covered_population"] / u["population"]
        for u in api["units"]
        if u["population"]
    }
    assert set(ref) <= set(page)
    for k, v in ref.items():
        assert abs(page[k] - v) < 1e-3, k


# --- CLI -----------------------------------------------------------------------------------


def _local_assets_exist(page: Path) -> None:
    found = links(page.read_text(encoding="utf-8"))
    assert found.scripts
    for url in found.scripts + found.styles:
        assert not urlparse(url).scheme and not url.startswith("/"), url
        target = Path(urljoin(page.as_uri(), url).removeprefix("file://"))
        assert target.is_file(), (page, url)


@pytest.fixture(scope="module")
def small_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("city")
    write_city(d, 60, 12, 6, seed=3)
    return d


def test_cli_writes_every_map(
    small_city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(small_city))
    out = tmp_path / "maps"
    res = CliRunner().invoke(
        cli_app, ["maps", "build", "--basemap", "osm", "--out", str(out), "--radius", "500"]
    )
    assert res.exit_code == 0, res.output
    grids = json.loads((small_city / "grids.geojson").read_text())["features"]
    codes = {f["properties"]["code"] for f in grids}
    assert {p.stem for p in (out / "grids").glob("*.html")} == codes
    assert sorted(p.name for p in (out / "coverage").glob("*.html")) == [
        "stalls-500m.html",
        "vendor_clusters-500m.html",
    ]
    pages = [
        out / "overview.html",
        *(out / "coverage").glob("*.html"),
        *sorted((out / "grids").glob("*.html"))[:5],
    ]
    for page in pages:
        _local_assets_exist(page)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "overview.html" in index and f"grids/{min(codes)}.html" in index
    overview = (out / "overview.html").read_text(encoding="utf-8")
    assert "tile.openstreetmap.org" in overview and "grids/{code}.html" in overview


def test_cli_rejects_tianditu_without_key_and_unknown_codes(
    small_city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(small_city))
    monkeypatch.delenv("GEO_SERVICE_TIANDITU_KEY", raising=False)
    runner = CliRunner()
    res = runner.invoke(cli_app, ["maps", "build", "--basemap", "tianditu", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "key" in res.output.lower()
    res = runner.invoke(
        cli_app, ["maps", "build", "--grids", "123456789012345", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "123456789012345" in res.output
    res = runner.invoke(cli_app, ["maps", "build", "--basemap", "bing", "--out", str(tmp_path)])
    assert res.exit_code == 2


def test_static_maps_survive_a_copy(
    small_city: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative asset links: the folder works wherever it is moved to."""
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(small_city))
    out = tmp_path / "a"
    res = CliRunner().invoke(cli_app, ["maps", "build", "--grids", "none", "--out", str(out)])
    assert res.exit_code == 0, res.output
    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(out, moved)
    _local_assets_exist(moved / "overview.html")
    assert not (moved / "grids").exists()


def test_coverage_map_of_a_large_city_is_drawn_by_community(
    small_city: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the inline limit a grid-by-grid coverage page would be tens of megabytes."""
    from geo_service.render.maps import overview
    from geo_service.storage.dataset import load_dataset

    monkeypatch.setattr(overview, "INLINE_GRID_LIMIT", 20)
    snap = load_dataset(small_city)
    communities = len(
        {
            f["properties"]["community_code"]
            for f in json.loads((small_city / "grids.geojson").read_text())["features"]
        }
    )
    settings = Settings(data_dir=small_city)
    with TestClient(create_app(settings, SnapshotStore(snap))) as c:
        res = c.get("/maps/coverage?layer=stalls&radius_m=500&by=grid")
        assert res.status_code == 422 and "by" in res.text  # a Chinese page with the detail
        html = c.get("/maps/coverage?layer=stalls&radius_m=500").text
        units = coloured_units(html)
        assert len(units) == communities
        assert {u["properties"]["level"] for u in units} == {"community"}


# --- issue 12: what the officers' maps say -------------------------------------------------

OSM_DAYS = re.compile(r"\b(Mo|Tu|We|Th|Fr|Sa|Su)\b|\d\d:\d\d-\d\d:\d\d")


def phone_hours(client: TestClient, layer: str) -> dict[str, str]:
    """The hours as the phone pages word them (the API's ``hours_text``, which ``/s/{code}``
    shows), by code."""
    path = {"stalls": "/api/v1/stalls", "vendor_clusters": "/api/v1/vendor-clusters"}[layer]
    body = client.get(path, params={"limit": 1000}).json()
    return {f["properties"]["code"]: f["properties"]["hours_text"] for f in body["features"]}


def test_popups_show_the_hours_in_chinese_as_the_phone_pages_do(client: TestClient) -> None:
    """Issue 12: popups showed "Mo-Fr 08:00-17:30" where the phone pages say 周一至周五 …"""
    stalls, clusters = phone_hours(client, "stalls"), phone_hours(client, "vendor_clusters")
    assert set(stalls) == set(rawdata.properties("stalls"))
    assert any(OSM_DAYS.search(p["hours"]) for p in rawdata.properties("stalls").values())
    code = next(c for c, p in rawdata.properties("stalls").items() if "Mo-Fr" in p["hours"])
    page = client.get(f"/s/{code}").text
    assert f'<dd id="hours">{stalls[code]}</dd>' in page and "周一至周五" in stalls[code]
    grid = min(
        c for c, g in rawdata.geometries("grids").items()
        if g.covers(rawdata.geometries("stalls")[code])
    )  # fmt: skip
    pages = {  # every map that draws facilities (the pages PAGES above builds, cached)
        "/maps/overview": ("stall", "vendor_cluster"),
        f"/maps/grids/{grid}": ("stall", "vendor_cluster"),
        "/maps/coverage?layer=stalls&radius_m=1000": ("stall",),
    }
    for path, kinds in pages.items():
        html = client.get(path).text
        for kind in kinds:
            rows = _page_rows(html, kind)
            ref = stalls if kind == "stall" else clusters
            assert rows, (path, kind)
            for c, row in rows.items():
                assert "hours" not in row, (path, c)  # the raw string never reaches a popup
                assert row["hours_text"] == ref[c], (path, c)
                assert not OSM_DAYS.search(row["hours_text"]), (path, c)
        if "/grids/" in path:
            assert stalls[code] in json.dumps(_page_rows(html, "stall")[code], ensure_ascii=False)


def page_controls(html: str) -> dict[str, str]:
    """The HTML of each ``GeoMaps.htmlControl`` of a page, by CSS class."""
    found = re.findall(
        r'GeoMaps\.htmlControl\([^,]+,\s*"[a-z]+",\s*("(?:[^"\\]|\\.)*"),\s*"([^"]*)"\)', html
    )
    return {cls: json.loads(text) for text, cls in found}


def test_grid_card_and_popups_say_which_stalls_are_not_open_and_why(client: TestClient) -> None:
    """Issue 12: the officer's card listed a relocated stall without saying so."""
    props = rawdata.properties("stalls")
    relocated = [c for c, p in props.items() if p["status"] == "relocated"]
    suspended = [c for c, p in props.items() if p["status"] == "suspended"]
    grids = rawdata.geometries("grids")
    for code in relocated + suspended[:2]:
        grid = min(c for c, g in grids.items() if g.covers(rawdata.geometries("stalls")[code]))
        html = client.get(f"/maps/grids/{grid}").text
        card = page_controls(html)["gm-card"]
        item = re.search(rf"<li>{re.escape(code)} [^<]*— 网格内(.*?)</li>", card)
        assert item, (code, card)
        # data/ records no destination for its relocated stalls (moved_to_* are absent)
        want = "已迁址，新址未登记" if code in relocated else "暂停营业"
        assert f"〔{want}〕" in item.group(1), item.group(0)
        in_grid = [
            p["status"] for c, p in props.items()
            if min((g for g, s in grids.items() if s.covers(rawdata.geometries("stalls")[c])),
                   default=None) == grid
        ]  # fmt: skip
        row = re.search(r"<th>网格内小蓝棚</th><td>([^<]*)</td>", card)
        assert row and row.group(1).startswith(str(len(in_grid)))
        if code in relocated:
            assert f"已迁址 {in_grid.count('relocated')}" in row.group(1)
        popup = _page_rows(html, "stall")[code]
        assert popup["status_text"] == want
    # the active ones say nothing (the popup reads null as 正常营业)
    active = next(c for c, p in props.items() if p["status"] == "active")
    assert _page_rows(client.get("/maps/overview").text, "stall")[active]["status_text"] is None


def test_a_relocation_with_a_destination_is_drawn_and_named(snapshot: Snapshot) -> None:
    """已迁至 names the stall at the new place and how far it is (pyproj.Geod on the raw
    points); a dashed line joins the old spot to the new one (WGS84 on OSM)."""
    import pyproj

    from geo_service.core.snapshot import build_snapshot
    from geo_service.render.maps.basemaps import Basemap
    from geo_service.render.maps.grid import grid_map
    from geo_service.render.maps.page import PageOptions, render_html

    raw = {s["code"]: s for s in rawdata.points("stalls")}
    old = [c for c, s in raw.items() if s["status"] == "active"][3]
    new = next(  # the nearest other active stall: a move of some hundred metres
        c
        for c, _ in rawdata.geodesic_ranking(
            list(raw.values()), raw[old]["lon"], raw[old]["lat"], lambda s: s["status"] == "active"
        )
        if c != old
    )
    frame = snapshot.stalls.frame.copy()
    frame.loc[frame["code"] == old, ["status", "moved_to_code"]] = ["relocated", new]
    snap = build_snapshot(
        {"grids": snapshot.grids.frame, "stalls": frame,
         "vendor_clusters": snapshot.vendor_clusters.frame},  # type: ignore[dict-item]
        name="t", version="t", projection=snapshot.projection,
    )  # fmt: skip
    p = shapely.Point(raw[old]["lon"], raw[old]["lat"])
    grid = min(c for c, g in rawdata.geometries("grids").items() if g.covers(p))
    options = PageOptions(basemap=Basemap.osm)
    html = render_html(grid_map(snap, grid, options), options)
    far = pyproj.Geod(ellps="WGS84").inv(
        raw[old]["lon"], raw[old]["lat"], raw[new]["lon"], raw[new]["lat"]
    )[2]
    card = page_controls(html)["gm-card"]
    m = re.search(
        rf"<li>{re.escape(old)} [^<]*<span[^>]*>〔已迁至 {re.escape(new)} {re.escape(raw[new]['name'])}"
        r"（[^）]*），距原址约 ([\d.,]+) (米|公里)〕",
        card,
    )
    assert m, card
    shown = float(m.group(1).replace(",", "")) * (1000 if m.group(2) == "公里" else 1)
    assert abs(shown - far) <= (51 if m.group(2) == "公里" else 1)
    assert _page_rows(html, "stall")[old]["status_text"].startswith(f"已迁至 {new}")
    line = re.search(r'"id":"move:' + re.escape(old) + r'","geometry":(\{[^}]*\})', html)
    assert line, "the relocation is drawn"
    coords = json.loads(line.group(1))["coordinates"]
    ref = [[raw[old]["lon"], raw[old]["lat"]], [raw[new]["lon"], raw[new]["lat"]]]
    assert np.allclose(coords, ref, atol=1.5e-6)
    assert "迁址：原址 → 新址" in page_controls(html)["gm-legend"]
