"""Issue 12, "Everyone": unknown query parameters are refused on the API (and only there), `/` is
a Chinese landing page, HTML routes answer errors with Chinese pages while API routes keep JSON,
and the documentation's summaries are English a reader can read."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from geo_service.web.errors import is_html_path

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
UNKNOWN = "no_such_param"


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every JSON API operation, path parameters filled with a placeholder."""
    spec = client.get("/openapi.json").json()
    out = []
    for path, item in spec["paths"].items():
        if not path.startswith(("/api/", "/open311/")):
            continue
        for method in item:
            out.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return out


# --- unknown query parameters -------------------------------------------------------------


def test_every_api_operation_refuses_an_unknown_parameter(client: TestClient) -> None:
    """Was: `/api/v1/stalls?district=370702` returned all 128 stalls, `format=csv` JSON."""
    routes = api_routes(client)
    assert len(routes) > 30
    for method, path in routes:
        r = client.request(method, f"{path}?{UNKNOWN}=1")
        assert r.status_code == 400, (method, path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert f"unknown query parameter '{UNKNOWN}'" in body["detail"], body
        assert body["errors"] == [{"field": UNKNOWN, "message": "unknown query parameter"}]


@pytest.mark.parametrize(
    ("url", "named", "takes"),
    [
        ("/api/v1/stalls?district=370702", "district", "bbox"),
        ("/api/v1/stalls?grid_code=370705002012002&limit=3", "grid_code", "service"),
        ("/api/v1/stalls/nearest?lon=119.16&lat=36.71&format=csv", "format", "open_now"),
        ("/api/v1/grids/locate?lon=119.16&lat=36.71&k=3", "k", "crs, lat, lon"),
        ("/api/v1/meta?verbose=1", "verbose", "no query parameters"),
        ("/open311/v2/services.json?lang=zh", "lang", "jurisdiction_id"),
    ],
)
def test_the_answer_names_the_parameter_and_what_the_route_takes(
    client: TestClient, url: str, named: str, takes: str
) -> None:
    r = client.get(url)
    assert r.status_code == 400, r.text
    assert f"'{named}'" in r.json()["detail"] and takes in r.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/stalls?bbox=119.1,36.68,119.2,36.74&service=修鞋&limit=5&offset=0",
        "/api/v1/grids/locate?lon=119.16&lat=36.71&crs=wgs84",
        "/api/v1/cases/stats?by=street&format=csv",  # routes that take `format` keep it
        "/open311/v2/services.json?jurisdiction_id=weifang",  # GeoReport v2 clients send it
        "/open311/v2/requests.json?status=open&jurisdiction_id=weifang",
        # Pages and maps are opened from links with tracking parameters: tolerated.
        "/?from=wechat",
        "/find?utm_source=poster",
        "/s/XLP-370705-005?from=qr",
        "/report?utm_source=x",
        "/officer?x=1",
        "/maps/grids/370705002012002?utm_source=x",
        "/healthz?probe=1",
        "/readyz?probe=1",
    ],
)
def test_declared_parameters_and_pages_are_accepted(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200, (url, r.text[:300])


def test_format_csv_is_csv_where_the_route_takes_it(client: TestClient) -> None:
    r = client.get("/api/v1/cases/stats?by=street&format=csv")
    assert r.headers["content-type"].startswith("text/csv")


def test_the_document_declares_the_400(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            declared = "400" in op["responses"]
            # /ogc refuses unknown parameters itself (Part 3 allows each collection's queryables)
            refuses = path.startswith(("/api/", "/open311/", "/ogc"))
            assert declared == (refuses or "requestBody" in op), (method, path)


# --- the landing page -----------------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline: list[str] = []
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if (tag == "script" and not a.get("src")) or tag == "style" or "style" in a:
            self.inline.append(tag)
        if any(k.startswith("on") for k in a):
            self.inline.append(f"{tag} handler")
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}})
        if tag in ("input", "select") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or "wgs84"


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_the_landing_page_points_each_user_to_their_entry(client: TestClient) -> None:
    """Was: `/` answered a 404 JSON."""
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    for words in ("市民", "找修理点", "随手拍", "网格员", "待办案件", "规划", "API 文档"):
        assert words in html
    page = parse(html)
    assert not page.inline, page.inline  # the CSP forbids inline script and style
    paths = {link.split("?")[0] for link in page.links}
    for entry in ("/find", "/report", "/officer", "/maps/overview", "/maps/coverage", "/docs"):
        assert entry in paths, entry
    assert "/openapi.json" in paths and "/api/v1/coverage" in paths
    for link in page.links:  # every entry opens
        got = client.get(link)
        assert got.status_code == 200, (link, got.status_code, got.text[:200])


def test_the_landing_page_grid_lookup_answers(client: TestClient) -> None:
    (form,) = parse(client.get("/").text).forms
    assert form["action"] == "/api/v1/grids/locate"
    r = client.get(f"{form['action']}?{urlencode(form['fields'])}")
    assert r.status_code == 200 and r.json()["grid"] is not None, r.text


# --- errors: pages for pages, JSON for the API ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status", "headers"),
    [
        ("/maps/grids/123", 422, None),  # not a grid code
        ("/maps/grids/370705999999999", 404, None),
        ("/maps/coverage?layer=nothing", 422, None),
        ("/maps/overview?basemap=google", 422, None),
        ("/no/such/page", 404, BROWSER),  # a browser on an unknown path
        ("/maps/no-such-map", 404, None),
    ],
)
def test_html_routes_answer_errors_with_a_chinese_page(
    client: TestClient, url: str, status: int, headers: dict[str, str] | None
) -> None:
    r = client.get(url, headers=headers)
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "content-security-policy" in r.headers
    html = r.text
    assert '<html lang="zh-CN">' in html and f"错误代码 {status}" in html
    assert re.search(r"<h1>[^<]*[\u4e00-\u9fff]", html), html  # a Chinese title
    page = parse(html)
    assert not page.inline
    assert "/" in page.links  # home


def test_a_wrong_method_on_a_page_is_a_page(client: TestClient) -> None:
    r = client.post("/officer")
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/grids/123", 422),
        ("/api/v1/stalls/XLP-370705-999", 404),
        ("/api/v1/no-such-route", 404),
        ("/open311/v2/services/NOPE.json", 404),
        ("/maps/data/grids?bbox=1,2", 422),
        ("/static/no-such-file.js", 404),
        ("/no/such/path", 404),  # curl and scripts (Accept */*) get JSON
    ],
)
def test_api_routes_keep_json_errors_even_for_a_browser(
    client: TestClient, url: str, status: int
) -> None:
    for headers in ({"accept": "*/*"}, BROWSER if url != "/no/such/path" else {}):
        r = client.get(url, headers=headers)
        assert r.status_code == status, (url, r.text[:300])
        assert r.headers["content-type"].startswith("application/json"), (url, headers)
        assert "detail" in r.json()


def test_the_html_path_rule() -> None:
    for path in ("/", "/find", "/report", "/officer", "/s/XLP-1", "/cases/1/page", "/maps/x"):
        assert is_html_path(path), path
    for path in ("/api/v1/stalls", "/open311/v2/x", "/maps/data/grids", "/healthz", "/static/a"):
        assert not is_html_path(path), path
    assert not is_html_path("/cases/1/photo") and not is_html_path("/findings")


# --- the documentation's English ------------------------------------------------------------

BROKEN = [
    r"\)s\b",  # "The nearest repair stall (小蓝棚)s"
    r"\b(a|an|one|One|A|An) (repair )?stalls\b",  # "Create a stalls"
    r"\b(a|an|one|One|A|An) vendor clusters\b",  # "Retire a vendor clusters"
    r"\b(a|an|one|One|A|An) grids\b",
    r"\b(a|an|one|One|A|An) cases\b",
    r"\w(ss|ies|ys)s\b",  # a plural pluralised again
]


def test_summaries_are_english_a_reader_can_read(client: TestClient) -> None:
    """Was: "Create a stalls", "Retire a vendor clusters", "The nearest repair stall (小蓝棚)s"."""
    spec = client.get("/openapi.json").json()
    texts = [
        (f"{method.upper()} {path}", op.get(key) or "")
        for path, item in spec["paths"].items()
        for method, op in item.items()
        for key in ("summary", "description")
    ]
    assert len(texts) > 60
    bad = [
        (where, text)
        for where, text in texts
        for pattern in BROKEN
        if re.search(pattern, text.replace("address", "").replace("process", ""))
    ]
    assert not bad, bad
    summaries = {
        f"{method.upper()} {path}": op["summary"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert summaries["POST /api/v1/stalls"].startswith("Create a repair stall")
    assert summaries["GET /api/v1/stalls"].startswith("Repair stalls (小蓝棚) in a box")
