"""Security headers, CSP script hashes, links built on the public base URL (never the ``Host``
header), and server-side escaping of hostile stored text. The browser side (nothing runs, no
CSP violation) is tests/test_security_browser.py."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from geo_service.core.settings import Settings
from geo_service.render.maps.basemaps import TILE_HOSTS, Basemap, base_layers
from geo_service.web.app import create_app
from geo_service.web.routers.pages import AMAP_TILES
from geo_service.web.security import IMG_SRC, inline_script_hashes
from tests import rawdata
from tests.hostile import Hostile, write_hostile_data

BASE = "https://geo.example.cn/city"
HOSTILE_HOSTS = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
GRID = sorted(rawdata.geometries("grids"))[0]


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=rawdata.DATA_DIR, public_base_url=BASE))) as c:
        yield c


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return write_hostile_data(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def hostile_api(hostile: Hostile) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=hostile.data_dir, public_base_url=BASE))) as c:
        yield c


def directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


class _InlineScripts(HTMLParser):
    """The reference: the text of each inline script as Python's HTML parser reads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[str] = []
        self._in: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not dict(attrs).get("src"):
            self._in = []

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._in.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in is not None:
            self.scripts.append("".join(self._in))
            self._in = None


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/grids/locate?lon=119.15&lat=36.71",
        "/api/v1/grids?limit=1",
        "/api/v1/nope",
        "/static/resident/find.js",
        f"/api/v1/stalls/{rawdata.points('stalls')[0]['code']}/qr.svg",
        "/openapi.json",
    ],
)
def test_every_response_has_the_basic_headers_and_no_csp_unless_html(
    api: TestClient, path: str
) -> None:
    r = api.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert "content-security-policy" not in r.headers
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]  # added once


@pytest.mark.parametrize("path", ["/find", f"/s/{rawdata.points('stalls')[0]['code']}", "/s/NONE"])
def test_resident_pages_allow_no_inline_script_or_style(api: TestClient, path: str) -> None:
    r = api.get(path)
    assert r.headers["content-type"].startswith("text/html")
    d = directives(r.headers["content-security-policy"])
    assert d["default-src"] == ["'self'"] and d["script-src"] == ["'self'"]
    assert d["style-src"] == ["'self'"] and d["object-src"] == ["'none'"]
    assert d["base-uri"] == ["'self'"] and d["frame-ancestors"] == ["'self'"]
    assert {"'self'", "data:", "blob:"} <= set(d["img-src"])
    parser = _InlineScripts()
    parser.feed(r.text)
    assert all(s.lstrip().startswith("{") for s in parser.scripts)  # JSON data blocks only


@pytest.mark.parametrize(
    "path",
    [
        "/maps/overview",
        "/maps/overview?basemap=osm",
        f"/maps/grids/{GRID}",
        "/maps/coverage?layer=stalls&radius_m=500",
    ],
)
def test_map_pages_allow_exactly_their_inline_scripts(api: TestClient, path: str) -> None:
    r = api.get(path)
    csp = r.headers["content-security-policy"]
    d = directives(csp)
    parser = _InlineScripts()
    parser.feed(r.text)
    assert parser.scripts, "Folium pages have inline scripts"
    want = {sha256_source(s) for s in parser.scripts}
    assert set(d["script-src"]) == {"'self'", *want}
    assert "'unsafe-inline'" not in d["script-src"] and "'unsafe-eval'" not in d["script-src"]
    assert d["style-src"] == ["'self'", "'unsafe-inline'"]
    assert r.headers.get_list("content-security-policy") == [csp]  # the middleware kept it
    assert api.get(path).headers["content-security-policy"] == csp  # cached with the page


def test_docs_pages_hash_their_inline_script(api: TestClient) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = api.get(path)
        assert r.status_code == 200
        d = directives(r.headers["content-security-policy"])
        parser = _InlineScripts()
        parser.feed(r.text)
        assert set(d["script-src"]) == {"'self'", *(sha256_source(s) for s in parser.scripts)}
        assert "'unsafe-inline'" not in d["script-src"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert len(directives(api.get("/docs").headers["content-security-policy"])["script-src"]) == 2


def test_inline_script_hashes_follow_the_browser() -> None:
    page = (
        '<script src="/a.js"></script><script>a()</script>\r\n'
        '<SCRIPT type="module">b()\r\nc()</SCRIPT ><script>a()</script>'
        '<script type="application/json">{"x": 1}</script>'
    )
    assert inline_script_hashes(page) == [
        sha256_source("a()"),
        sha256_source("b()\nc()"),  # the HTML parser turns CRLF into LF before hashing
        sha256_source('{"x": 1}'),
    ]


def test_img_src_covers_every_tile_host() -> None:
    sources = [s.removeprefix("https://") for s in IMG_SRC if s.startswith("https://")]
    hosts = set(TILE_HOSTS)
    for basemap in Basemap:
        for layer in base_layers(basemap, "tk"):
            for tile in layer.tiles:
                for s in tile.subdomains or " ":
                    hosts.add(urlsplit(tile.url.replace("{s}", s)).hostname or "")
    hosts |= {urlsplit(AMAP_TILES.replace("{s}", s)).hostname or "" for s in "1234"}
    for host in hosts:
        assert any(fnmatch.fnmatchcase(host, s) for s in sources), host
    assert not any(fnmatch.fnmatchcase("evil.example", s) for s in sources)


# --- links on the public base ----------------------------------------------------------------


def test_listing_links_use_the_public_base_not_the_host_header(api: TestClient) -> None:
    junk = api.get("/api/v1/grids", params={"limit": 2, "junk": "<x>"}, headers=HOSTILE_HOSTS)
    assert junk.status_code == 400  # an undeclared parameter is refused, never reflected
    assert "evil" not in junk.text and "<x>" not in junk.text
    r = api.get(
        "/api/v1/grids",
        params={"limit": 2, "bbox": "119.1,36.6,119.3,36.8"},
        headers=HOSTILE_HOSTS,
    )
    body = r.json()
    links = {link["rel"]: link["href"] for link in body["links"]}
    assert body["next"] == links["next"]
    for href in links.values():
        assert href.startswith(BASE + "/api/v1/grids?"), href
        assert "evil" not in href and "junk" not in href  # undeclared parameters are dropped
    assert dict(parse_qsl(urlsplit(links["self"]).query)) == {
        "limit": "2",
        "bbox": "119.1,36.6,119.3,36.8",
    }
    assert dict(parse_qsl(urlsplit(links["next"]).query)) == {
        "bbox": "119.1,36.6,119.3,36.8",
        "offset": "2",
        "limit": "2",
    }
    # following `next` (its path and query, on this test client) gives the following page
    nxt = urlsplit(links["next"])
    second = api.get(nxt.path.removeprefix("/city") + "?" + nxt.query).json()
    assert second["features"][0]["id"] != body["features"][0]["id"]


def test_stall_listing_keeps_repeated_declared_parameters(api: TestClient) -> None:
    r = api.get(
        "/api/v1/stalls",
        params=[("service", "修车"), ("service", "修鞋"), ("limit", "3")],
        headers={"Host": "evil.example"},
    )
    nxt = r.json()["next"]
    assert nxt.startswith(BASE + "/api/v1/stalls?")
    q = parse_qsl(urlsplit(nxt).query)
    assert [v for k, v in q if k == "service"] == ["修车", "修鞋"]
    assert ("offset", "3") in q and {k for k, _ in q} == {"service", "limit", "offset"}


def test_links_under_a_root_path_do_not_repeat_it() -> None:
    app = create_app(Settings(data_dir=rawdata.DATA_DIR, public_base_url=BASE))
    with TestClient(app, root_path="/city") as c:
        body = c.get("/city/api/v1/grids?limit=1", headers={"Host": "evil.example"}).json()
    assert body["next"].startswith(BASE + "/api/v1/grids?")


def test_redirects_and_map_links_never_carry_the_host_header(api: TestClient) -> None:
    code = rawdata.points("stalls")[0]["code"]
    r = api.get(f"/s/{code.lower()}", headers=HOSTILE_HOSTS, follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == f"/s/{code}"  # path only
    page = api.get("/maps/overview?basemap=amap&junk=zzz", headers=HOSTILE_HOSTS).text
    assert "evil.example" not in page and "zzz" not in page
    assert r"href=\"?basemap=osm\"" in page  # the variant link: relative, declared only


# --- hostile stored text, server side --------------------------------------------------------


def test_hostile_text_reaches_html_escaped(hostile_api: TestClient, hostile: Hostile) -> None:
    raw = list(hostile.texts.values())
    pages = {
        "stall": hostile_api.get(f"/s/{hostile.stall}").text,
        "find": hostile_api.get("/find").text,
    }
    for name, html in pages.items():
        assert "<img src=x" not in html and "<script>window" not in html, name
        assert "<svg onload" not in html, name
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in pages["stall"]
    # the map pages carry the texts as JSON inside a script: no "<" may survive there
    for path in ("/maps/overview", f"/maps/grids/{hostile.grid}"):
        html = hostile_api.get(path).text
        for text in raw:
            assert text not in html, path
        assert "<script>window" not in html and "</script>'" not in html
    # the escaped text is there, once decoded: the payload is data, not markup
    assert (
        hostile.texts["grid.name"]
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace('"', '\\"')
        in hostile_api.get(f"/maps/grids/{hostile.grid}").text
    )


def test_hostile_stall_name_in_the_qr_svg_is_escaped(
    hostile_api: TestClient, hostile: Hostile
) -> None:
    svg = hostile_api.get(f"/api/v1/stalls/{hostile.stall}/qr.svg").text
    assert "<img" not in svg and "<script>" not in svg and "&lt;img" in svg
