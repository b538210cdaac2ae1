"""The officers' queue phone page (/officer) in a real headless Chromium against the REAL app:
a grid officer's key, the queue overdue first, 立案 and 派遣 through the page, a community key
(which sees the grid cases of its community, as ``domain.cases.may_act`` allows a higher level
whose unit contains the case), a community elsewhere that sees nothing, hostile text shown as
text, and the API's refusals in Chinese."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from geo_service.core.cases import CaseStatus
from geo_service.core.principal import Role
from geo_service.core.snapshot import Snapshot
from geo_service.domain import casedesk
from tests.browser import CHROMIUM_ARGS
from tests.keys import key_for
from tests.test_report_pages import HERE, HOSTILE, Live, Phone, beijing_text, serve_real_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve_real_app(snapshot, tmp_path_factory.mktemp("officer-page") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Phone]:
    p = Phone(browser)
    yield p
    p.close()


@pytest.fixture(scope="module")
def filed(live: Live) -> dict[str, dict[str, str]]:
    """Three cases in the grid at HERE: one on time, one filed four days ago (overdue), and one
    whose description and address are hostile."""
    desk = live.app.state.runtime.cases
    fresh = live.file(service_code="JM01", description="门口占道摆摊", phone="138 0000 5678")
    desk.clock = lambda: datetime.now(UTC) - timedelta(days=4)
    try:
        late = live.file(service_code="HW01", description="垃圾桶满溢 四天没人管")
    finally:
        desk.clock = casedesk.utc_now
    hostile = live.file(
        service_code="SR01", description=HOSTILE, address_string="<b>东风街</b><script>x</script>"
    )
    assert fresh["grid_code"] == late["grid_code"] == hostile["grid_code"]
    assert fresh["officer"] and fresh["level"] == late["level"] == "grid"
    return {"fresh": fresh, "late": late, "hostile": hostile}


def open_queue(phone: Phone, live: Live, key: str) -> Page:
    page = phone.page
    response = page.goto(f"{live.base}/officer")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, csp
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#key", key)
    page.click("#login-form button")
    page.wait_for_selector("#desk:not([hidden])")
    page.wait_for_function("() => !document.querySelector('#summary').textContent.includes('加载')")
    return page


def ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#queue > li", "ls => ls.map(l => l.dataset.id)")


def row(page: Page, case_id: str) -> str:
    return page.text_content(f"#queue > li[data-id='{case_id}']") or ""


def test_grid_officer_sees_queue_and_acts(
    phone: Phone, live: Live, filed: dict[str, dict[str, str]], artifacts: Path
) -> None:
    backend = live.app.state.runtime.backend
    key = key_for(backend, "网格员", Role.officer, officer=filed["fresh"]["officer"])
    fresh, late = filed["fresh"]["service_request_id"], filed["late"]["service_request_id"]
    api = httpx.get(f"{live.base}/api/v1/cases/queue", headers={"X-API-Key": key}, timeout=30)
    want = [c["service_request_id"] for c in api.json()["cases"]]
    assert want[0] == late and {fresh, late} <= set(want)

    page = open_queue(phone, live, key)
    assert ids(page) == want  # in the API's order: overdue first, then by deadline
    late_row = page.locator(f"#queue > li[data-id='{late}']")
    assert late_row.locator(".badge.overdue").text_content() == "已超时"
    assert page.locator(f"#queue > li[data-id='{fresh}'] .badge.overdue").count() == 0
    text = row(page, fresh)
    assert fresh in text and "占道经营" in text and "门口占道摆摊" in text
    assert "上报" in text and "网格" in text and "1 人" in text
    assert beijing_text(filed["fresh"]["deadline"]) in text
    tel = page.locator(f"#queue > li[data-id='{fresh}'] a.tel")
    assert tel.text_content() == "138 0000 5678" and tel.get_attribute("href") == "tel:13800005678"
    link = page.locator(f"#queue > li[data-id='{fresh}'] a.name")
    assert link.get_attribute("href") == f"/cases/{fresh}/page"
    assert page.text_content("#summary") == "共 3 件待办，其中 1 件已超时"
    buttons = f"#queue > li[data-id='{fresh}'] .acts button"
    assert page.eval_on_selector_all(buttons, "bs => bs.map(b => b.textContent)") == [
        "立案", "退回", "延期",
    ]  # fmt: skip
    page.screenshot(path=str(artifacts / "officer-phone.png"), full_page=True)

    page.click(f"{buttons}[data-action=register]")
    page.wait_for_function(
        f"() => document.querySelector(\"#queue > li[data-id='{fresh}'] .status\")"
        ".textContent === '立案'"
    )
    assert live.request(fresh)["stage"] == "registered"
    page.click(f"{buttons}[data-action=dispatch]")
    page.wait_for_function(
        f"() => document.querySelector(\"#queue > li[data-id='{fresh}'] .status\")"
        ".textContent === '派遣'"
    )
    one = httpx.get(f"{live.base}/api/v1/cases/{fresh}", headers={"X-API-Key": key}, timeout=30)
    assert one.json()["stage"] == "dispatched" and one.json()["phone"] == "138 0000 5678"
    assert live.case(fresh).status is CaseStatus.dispatched
    assert [e.action.value for e in live.case(fresh).history] == ["file", "register", "dispatch"]
    assert page.eval_on_selector_all(buttons, "bs => bs.map(b => b.textContent)") == [
        "处置", "退回", "延期",
    ]  # fmt: skip
    # 退回 asks for a grid code and a reason in the page (no dialog), and refuses a bad code
    page.click(f"{buttons}[data-action=return]")
    form = page.locator(f"#queue > li[data-id='{fresh}'] form.ask")
    form.locator("input[name=grid_code]").fill("123")
    form.locator("input[name=reason]").fill("不属本网格")
    form.locator("button[type=submit]").click()
    assert page.text_content("#error") == "网格编码应为 15 位数字"
    assert live.case(fresh).status is CaseStatus.dispatched
    phone.check()


def test_stale_step_and_bad_key_are_chinese(
    phone: Phone, live: Live, filed: dict[str, dict[str, str]]
) -> None:
    backend = live.app.state.runtime.backend
    key = key_for(backend, "网格员", Role.officer, officer=filed["fresh"]["officer"])
    late = filed["late"]["service_request_id"]
    page = open_queue(phone, live, key)
    assert page.evaluate("localStorage.length") == 1  # kept for the next visit
    before = live.case(late).status
    assert before is CaseStatus.reported
    # someone else registers it while this page still shows 立案
    r = httpx.post(
        f"{live.base}/api/v1/cases/{late}/actions",
        json={"action": "register"},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    page.click(f"#queue > li[data-id='{late}'] .acts button[data-action=register]")
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error") == "案件状态已变化，请刷新"
    assert "立案" in row(page, late)  # refreshed: the case as it is now
    page.reload()
    page.wait_for_selector("#desk:not([hidden])")  # the key was remembered
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("localStorage.length") == 0
    page.fill("#key", "not-a-key")
    page.click("#login-form button")
    page.wait_for_function("() => document.querySelector('#error').textContent === '密钥无效'")
    assert page.locator("#login").is_visible() and page.locator("#queue").is_hidden()
    phone.errors[:] = [e for e in phone.errors if "status of 409" not in e]  # asked for above
    phone.check(answered="401")


def test_community_keys(phone: Phone, live: Live, filed: dict[str, dict[str, str]]) -> None:
    backend = live.app.state.runtime.backend
    case = live.case(filed["fresh"]["service_request_id"])
    assert case.community_code
    mine = key_for(backend, "社区", Role.community, grids=[case.community_code])
    # may_act: a community key acts on grid-level cases whose community is its own
    want = httpx.get(
        f"{live.base}/api/v1/cases/queue", headers={"X-API-Key": mine}, timeout=30
    ).json()
    got = {c["service_request_id"] for c in want["cases"]}
    assert {f["service_request_id"] for f in filed.values()} <= got
    page = open_queue(phone, live, mine)
    assert ids(page) == [c["service_request_id"] for c in want["cases"]]
    page.click("#logout")
    others = sorted(
        {str(g["community"]["code"]) for g in live.app.state.store.get().grids.properties}
        - {case.community_code}
    )
    elsewhere = key_for(backend, "别的社区", Role.community, grids=[others[0]])
    page.fill("#key", elsewhere)
    page.click("#login-form button")
    page.wait_for_selector("#empty:not([hidden])")
    assert ids(page) == [] and page.text_content("#summary") == "共 0 件待办"
    phone.check()


def test_hostile_text_is_shown_as_text(
    phone: Phone, live: Live, filed: dict[str, dict[str, str]]
) -> None:
    backend = live.app.state.runtime.backend
    key = key_for(backend, "网格员", Role.officer, officer=filed["fresh"]["officer"])
    hostile = filed["hostile"]["service_request_id"]
    page = open_queue(phone, live, key)
    item = page.locator(f"#queue > li[data-id='{hostile}']")
    assert item.locator(".desc").text_content() == HOSTILE
    assert item.locator(".addr").text_content() == "<b>东风街</b><script>x</script>"
    assert item.locator("script, b, img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    phone.check()


def test_here_is_in_a_grid(live: Live) -> None:
    """The cases above are grid cases: HERE is inside a grid (not snapped, not intake)."""
    r = httpx.get(
        f"{live.base}/api/v1/grids/locate",
        params={"lon": HERE["longitude"], "lat": HERE["latitude"]},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["grid"]["code"]
