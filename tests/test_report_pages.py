"""The 随手拍 phone pages (/report, /cases/{id}/page) in a real headless Chromium: a phone
viewport in WeChat's browser, an emulated location in Weifang, the service's CSP, and a network
that reaches nothing but the service (Amap tiles are aborted, or answered with a blank tile).

The pages talk to the REAL application (``create_app`` over a copy of data/ in a temporary
folder, served by uvicorn on a loopback port): seed cases are filed through Open311 with httpx,
and what the pages did is checked in the case store and through the public API.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import prcoords
import pyproj
import pytest
from fastapi import FastAPI
from PIL import Image
from playwright.sync_api import Browser, Page, Request, sync_playwright

from geo_service.core.cases import Case
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.storage.cases import CaseQuery
from geo_service.web.app import create_app
from tests.backends import copy_data
from tests.browser import CHROMIUM_ARGS, TILE, TILE_HOSTS
from tests.services import app_in_thread

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
GEOD = pyproj.Geod(ellps="WGS84")
PHONE = {"width": 390, "height": 844}
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; V2154A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
    "MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/4G Language/zh_CN"
)
HERE = {"longitude": 119.1575, "latitude": 36.7105, "accuracy": 20}  # 奎文区, WGS84 as GPS
HOSTILE = "<img src=x onerror=window.__xss=1>\"'><script>window.__xss=2</script>"
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber);
});
"""
INJECTED = """() => document.querySelectorAll('img[src="x"], [onerror], [onload]').length"""


def png(width: int = 64, height: int = 48) -> bytes:
    """A small RGB PNG (a photo stand-in)."""
    row = b"\x00" + b"\x30\x80\xc0" * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# ---- the real application on a loopback port ---------------------------------------------------


@dataclass
class Live:
    """The real app, served by uvicorn at ``base``, over its own copy of data/."""

    base: str
    app: FastAPI

    def cases(self, **query: Any) -> list[Case]:
        """Cases straight from the store (newest first)."""
        found, _ = self.app.state.runtime.cases.store.query(CaseQuery(limit=10_000, **query))
        return list(found)

    def case(self, case_id: str) -> Case:
        [c] = self.cases(ids=(case_id,))
        return c

    def file(self, **fields: Any) -> dict[str, Any]:
        """File a case as a resident would, through Open311; the acknowledgement."""
        data = {
            "service_code": "JM01",
            "description": "门口占道摆摊",
            "long": str(HERE["longitude"]),
            "lat": str(HERE["latitude"]),
            **fields,
        }
        r = httpx.post(f"{self.base}/open311/v2/requests.json", data=data, timeout=30)
        assert r.status_code == 201, r.text
        [ack] = r.json()
        return dict(ack)

    def request(self, case_id: str) -> dict[str, Any]:
        """The public Open311 answer for one case."""
        r = httpx.get(f"{self.base}/open311/v2/requests/{case_id}.json", timeout=30)
        assert r.status_code == 200, r.text
        [one] = r.json()
        return dict(one)


@contextmanager
def serve_real_app(snapshot: Snapshot, data_dir: Path) -> Iterator[Live]:
    """``create_app`` over a copy of data/ in ``data_dir``, served in a thread on a free port.
    The escalation timer is set far apart: tests that file overdue cases move the clock
    themselves and must not see them escalate under their feet."""

    def make(base: str) -> Any:
        settings = Settings(
            data_dir=copy_data(data_dir),
            public_base_url=base,
            rate_limit_enabled=False,
            database_url=None,
            case_escalation_poll_s=3600,
        )
        return create_app(settings, SnapshotStore(snapshot))

    with app_in_thread(make) as (base, app):
        yield Live(base, app)


@pytest.fixture(scope="module")
def live(snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve_real_app(snapshot, tmp_path_factory.mktemp("report-pages") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def base_url(live: Live) -> str:
    return live.base


def posted_form(request: Request) -> dict[str, Any]:
    """The fields of a multipart POST the page sent; a file as (content type, bytes), whose
    bytes Chromium does not hand to Playwright (compare what the service stored instead)."""
    body = request.post_data_buffer or b""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + body)
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename() is not None:
            out[str(name)] = (part.get_content_type(), payload)
        else:
            out[str(name)] = payload.decode("utf-8")  # type: ignore[union-attr]
    return out


def served_image(url: str) -> tuple[str, tuple[int, int]]:
    """The content type and pixel size of an image the service serves."""
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, url
    return r.headers["content-type"], Image.open(BytesIO(r.content)).size


# ---- browser, phone ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Phone:
    """A WeChat-sized phone on loopback only. ``tiles``: answer tile hosts with a blank tile
    (so the CSP is shown to allow them) instead of aborting them (tiles never arrive)."""

    def __init__(self, browser: Browser, tiles: bool = False, grant: bool = True) -> None:
        self.context = browser.new_context(
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
            user_agent=WECHAT_UA, locale="zh-CN", timezone_id="Asia/Shanghai",
            geolocation=HERE if grant else None, permissions=["geolocation"] if grant else [],
        )  # fmt: skip
        self.tiles_ok = tiles
        self.tiles = 0
        self.aborted: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context.add_init_script(WATCH_CSP)
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def _route(self, route: Any) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        elif self.tiles_ok and host.endswith(TILE_HOSTS):
            self.tiles += 1
            route.fulfill(status=200, body=TILE, content_type="image/png")
        else:
            self.aborted.append(route.request.url)
            route.abort()

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and (msg.location or {}).get("url", "") not in self.aborted:
            self.errors.append(f"{msg.text} @ {(msg.location or {}).get('url', '')}")

    def check(self, answered: str | None = None) -> None:
        """Nothing a safe, working page does not do. ``answered``: a status the test asked for
        (Chromium logs a 4xx answer to the page as a console error)."""
        page = self.page
        assert page.evaluate("window.__xss") is None, "an injected script ran"
        assert self.dialogs == []
        assert page.evaluate(INJECTED) == 0, "an injected element is in the DOM"
        assert page.evaluate("window.__csp") == [], "CSP violations"
        errors = [e for e in self.errors if not (answered and f"status of {answered}" in e)]
        assert errors == [], errors
        off = [u for u in self.aborted if not urlsplit(u).hostname.endswith(TILE_HOSTS)]  # type: ignore[union-attr]
        assert off == [], f"requests off the service: {off}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Phone]:
    p = Phone(browser)
    yield p
    p.close()


def open_report(phone: Phone, base_url: str, query: str = "") -> Page:
    page = phone.page
    response = page.goto(f"{base_url}/report{query}")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp, csp
    page.wait_for_selector("#service optgroup option", state="attached")
    return page


def tap_map(page: Page) -> None:
    page.wait_for_selector("#map.leaflet-container")
    page.locator("#map").click(position={"x": 180, "y": 100})
    page.wait_for_function(
        "() => document.querySelector('#where').textContent.includes('地图上点选')"
    )


# ---- tests --------------------------------------------------------------------------------------


def test_report_page_loads_under_csp_with_categories(
    browser: Browser, base_url: str, artifacts: Path
) -> None:
    services = httpx.get(f"{base_url}/open311/v2/services.json", timeout=30).json()
    phone = Phone(browser, tiles=True)
    try:
        page = open_report(phone, base_url)
        groups = page.eval_on_selector_all("#service optgroup", "gs => gs.map(g => g.label)")
        assert groups == ["街面秩序", "市容环境", "环境卫生", "设施", "小三修"]
        codes = page.eval_on_selector_all("#service optgroup option", "os => os.map(o => o.value)")
        assert codes == [s["service_code"] for s in services]
        assert "2 个工作时" in page.text_content("#service option[value=JM01]")
        page.select_option("#service", "SS01")
        assert "处置时限：4 小时" in page.text_content("#service-info")
        page.fill("#description", "路口井盖")
        assert page.text_content("#count") == "4"
        page.wait_for_selector("#map .leaflet-tile-loaded")
        page.screenshot(path=str(artifacts / "report-phone.png"), full_page=True)
        assert phone.tiles > 0, "the CSP let the Amap tiles in"
        phone.check()
    finally:
        phone.close()


def test_file_with_photo_and_map_tap_without_tiles(
    phone: Phone, live: Live, tmp_path: Path, artifacts: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png())
    page = open_report(phone, live.base)
    page.set_input_files("#photo", str(photo))
    page.wait_for_function("() => document.querySelector('#preview').naturalWidth === 64")
    assert page.locator("#photo-box").is_visible()
    tap_map(page)
    shown = page_coords(page)  # the page's own note of the tap, GCJ-02 to 5 decimals
    page.select_option("#service", "SR01")
    page.fill("#description", HOSTILE)
    page.fill("#phone", "138 0000 1234")
    page.fill("#address", "东风街<b>路口</b>")
    before = len(live.cases())
    with page.expect_request(lambda r: r.method == "POST" and "requests.json" in r.url) as sent:
        page.click("#submit")
    page.wait_for_url("**/cases/*/page")
    assert len(live.cases()) == before + 1
    case_id = page.url.rsplit("/", 2)[-2]
    form = posted_form(sent.value)
    assert form["crs"] == "gcj02" and form["media"][0] == "image/png"  # sent as it was
    assert len(sent.value.headers["idempotency-key"]) == 36
    # what the store holds: the tapped GCJ-02 point in WGS84 (prcoords' inverse as reference)
    case = live.case(case_id)
    assert case.crs == "gcj02" and case.service_code == "SR01"
    assert case.description == HOSTILE and case.phone == "138 0000 1234"
    assert case.address == "东风街<b>路口</b>"
    assert case.idempotency_key == sent.value.headers["idempotency-key"]
    tapped = prcoords.gcj_wgs_bored(prcoords.Coords(float(form["lat"]), float(form["long"])))
    assert (f"{float(form['lat']):.5f}", f"{float(form['long']):.5f}") == shown
    _, _, off = GEOD.inv(tapped.lon, tapped.lat, case.lon, case.lat)
    assert off < 1.0, f"the stored point is {off:.2f} m from the tapped one"
    # the photo arrived: re-encoded without metadata, the same pixels' size
    public = live.request(case_id)
    assert public["media_url"] and public["media_url"].startswith(f"{live.base}/media/")
    assert served_image(public["media_url"]) == ("image/png", (64, 48))
    # the case page, as the resident sees it after filing
    assert page.text_content("#case-id") == case_id
    assert page.text_content("#steps li.current") == "上报"
    assert page.text_content("#description") == HOSTILE
    assert case.officer and case.officer in page.text_content("#responsible")
    assert beijing_text(public["deadline"]) in page.text_content("#deadline")
    page.wait_for_function("() => document.querySelector('#photo').naturalWidth === 64")
    assert "0000 1234" not in page.content()  # the reporter's phone is never shown
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.screenshot(path=str(artifacts / "case-phone.png"), full_page=True)
    assert any("autonavi.com" in u for u in phone.aborted), "tiles were asked for and never came"
    phone.check()


def page_coords(page: Page) -> tuple[str, str]:
    """The (lat, lon) the page says it picked (#where, 5 decimals)."""
    m = re.search(r"（(-?\d+\.\d+), (-?\d+\.\d+)", page.text_content("#where") or "")
    assert m, page.text_content("#where")
    return m.group(1), m.group(2)


def beijing_text(iso: str) -> str:
    """``2026-12-02T11:30:00+08:00`` as the pages show it: ``2026-12-02 11:30``."""
    at = datetime.fromisoformat(iso).astimezone(ZoneInfo("Asia/Shanghai"))
    return at.strftime("%Y-%m-%d %H:%M")


def test_nearby_case_offered_and_joined(phone: Phone, live: Live) -> None:
    lon, lat, _ = GEOD.fwd(HERE["longitude"], HERE["latitude"], 45, 20)  # 20 m from the phone
    point = {"long": f"{lon:.7f}", "lat": f"{lat:.7f}"}
    seeded = live.file(service_code="JM01", description="人行道上摆摊 <b>不走</b>", **point)
    live.file(service_code="JM02", description="another category: not offered", **point)
    case_id = seeded["service_request_id"]
    filed = len(live.cases())
    page = open_report(phone, live.base, "?service_code=JM01")
    assert page.input_value("#service") == "JM01"
    assert page.locator("#nearby").is_hidden()
    page.click("#locate")
    page.wait_for_selector("#nearby:not([hidden])")
    assert "当前位置" in page.text_content("#where")
    assert page.text_content("#nearby-title") == "附近已有相同问题 1 条"
    item = page.locator(f"#nearby-list li[data-id='{case_id}']")
    assert "人行道上摆摊 <b>不走</b>" in item.text_content()
    assert "相距 20 米" in item.text_content()
    item.locator("button.join").click()
    page.wait_for_url(f"**/cases/{case_id}/page")
    assert len(live.cases()) == filed  # joined, not filed again
    assert live.case(case_id).reporters == 2
    assert [e["action_text"] for e in live.request(case_id)["history"]] == ["上报", "追加反映"]
    assert "追加反映" in page.text_content("#history")
    phone.check()


def test_double_tap_files_one_case(phone: Phone, live: Live) -> None:
    query = f"?lon={HERE['longitude']}&lat={HERE['latitude']}&crs=wgs84&service_code=HW01"
    page = open_report(phone, live.base, query)
    assert "链接带入的位置" in page.text_content("#where")
    assert page.input_value("#service") == "HW01"
    page.fill("#description", "垃圾桶满了")
    before = {c.id for c in live.cases()}
    page.locator("#submit").dblclick()
    page.wait_for_url("**/cases/*/page")
    page.wait_for_load_state("networkidle")
    new = [c for c in live.cases() if c.id not in before]
    assert [c.id for c in new] == [page.url.rsplit("/", 2)[-2]], "one tap, one case"
    [case] = new
    assert case.crs == "wgs84" and case.photo is None and case.service_code == "HW01"
    assert case.lat == pytest.approx(HERE["latitude"]) and case.lon == pytest.approx(
        HERE["longitude"]
    )
    phone.check()


def test_form_errors_are_chinese(phone: Phone, live: Live) -> None:
    query = f"?lon={HERE['longitude']}&lat={HERE['latitude']}&crs=wgs84"
    page = open_report(phone, live.base, query)
    page.click("#submit")
    assert "请选择问题类别" in page.text_content("#error")
    page.select_option("#service", "SS02")
    page.click("#submit")
    assert "请填写问题描述" in page.text_content("#error")
    page.fill("#description", "路灯不亮")
    page.fill("#phone", "call me")
    page.click("#submit")
    assert "联系电话格式不正确" in page.text_content("#error")
    page.fill("#phone", "")
    # the server's own refusal (a NUL character passes the page's checks, not the service's)
    page.fill("#description", "路灯不亮\x00")
    assert page.input_value("#description") == "路灯不亮\x00"
    filed = len(live.cases())
    page.click("#submit")
    page.wait_for_function(
        "() => document.querySelector('#error').textContent.includes('问题描述')"
    )
    assert "请填写问题描述（不超过 4000 字）" in page.text_content("#error")
    assert "NUL character" in page.text_content("#error .detail")
    assert len(live.cases()) == filed
    assert page.is_enabled("#submit")
    phone.check(answered="422")


def test_missing_case_is_a_chinese_404(phone: Phone, live: Live) -> None:
    page = phone.page
    for case_id in ("20991231-999999", "<img src=x onerror=window.__xss=1>"):
        response = page.goto(f"{live.base}/cases/{case_id}/page")
        assert response is not None and response.status == 404
        assert page.text_content("#missing h1") == "没有找到这个案件"
        assert case_id in page.text_content("#missing")
    known = live.file(service_code="SS02", description="查询用的案件")["service_request_id"]
    page.fill("#lookup-id", known)
    page.click("#lookup button")
    page.wait_for_url(f"**/cases/{known}/page")
    assert page.text_content("#case-id") == known
    phone.check(answered="404")


def test_big_photo_is_sent_as_a_smaller_jpeg(phone: Phone, live: Live, tmp_path: Path) -> None:
    photo = tmp_path / "big.png"
    photo.write_bytes(png(3000, 2000))
    query = f"?lon={HERE['longitude']}&lat={HERE['latitude']}&service_code=SR02"
    page = open_report(phone, live.base, query)
    page.set_input_files("#photo", str(photo))
    page.wait_for_function(
        "() => document.querySelector('#photo-info').textContent.includes('压缩')"
    )
    page.fill("#description", "墙上小广告")
    with page.expect_request(lambda r: r.method == "POST" and "requests.json" in r.url) as sent:
        page.click("#submit")
    page.wait_for_url("**/cases/*/page")
    assert posted_form(sent.value)["media"][0] == "image/jpeg"  # the PNG went as a JPEG
    public = live.request(page.url.rsplit("/", 2)[-2])
    assert served_image(public["media_url"]) == ("image/jpeg", (2048, 1365))
    phone.check()
