"""QR codes decode (zxing-cpp, an independent decoder) to the stall's page URL, and each of the
stalls' codes opens that stall's page."""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.snapshot import Snapshot
from geo_service.render.qr import write_all

BASE = "https://weifang.example.cn/xlp"


def decode(png: bytes) -> list[str]:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return [r.text for r in found if r.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture(scope="module")
def written(snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qr")
    result = write_all(snapshot.stalls, BASE + "/", out, pdf=True)
    assert len(result.codes) == len(snapshot.stalls)
    return out


def test_every_stall_png_decodes_to_its_page(written: Path, snapshot: Snapshot) -> None:
    codes = list(snapshot.stalls.codes)
    assert len(codes) == 128
    for code in codes:
        texts = decode((written / "png" / f"{code}.png").read_bytes())
        assert texts == [f"{BASE}/s/{code}"], code


def test_svgs_are_well_formed_with_the_stall_name(written: Path, snapshot: Snapshot) -> None:
    """(The browser test rasterises an SVG in Chromium and decodes it.)"""
    ns = "{http://www.w3.org/2000/svg}"
    for rec in snapshot.stalls.records[:10]:
        root = ET.fromstring((written / "svg" / f"{rec['code']}.svg").read_bytes())
        assert root.tag == f"{ns}svg"
        assert root.findtext(f"{ns}title") == rec["name"]
        assert root.find(f"{ns}path") is not None


def test_each_code_opens_its_stall_page(written: Path, client: TestClient) -> None:
    """Done-when: each of the 128 QR codes opens its stall's page (path of the decoded URL)."""
    for png in sorted((written / "png").glob("*.png")):
        (url,) = decode(png.read_bytes())
        path = url.removeprefix(BASE)
        r = client.get(path)
        code = png.stem
        assert r.status_code in (200, 410), (code, r.status_code)
        assert code in r.text and "<html" in r.text


def test_printable_sheet_has_number_and_name_under_each_code(
    written: Path, snapshot: Snapshot
) -> None:
    html = (written / "sheet.html").read_text(encoding="utf-8")
    assert html.count("<svg") == len(snapshot.stalls)
    for rec in snapshot.stalls.records:
        cell = re.search(
            rf'<div class="sign" id="{rec["code"]}"><svg.*?</svg>\s*'
            rf'<div class="code">{rec["code"]}</div><div class="name">([^<]*)</div>',
            html,
            re.S,
        )
        assert cell is not None, rec["code"]
        assert cell.group(1) == rec["name"].replace("&", "&amp;")
    pdf = written / "sheet.pdf"
    if pdf.exists():  # written when a CJK font is installed (fonts-noto-cjk under make test)
        data = pdf.read_bytes()
        pages = len(re.findall(rb"/Type\s*/Page\b", data))
        assert data.startswith(b"%PDF") and pages == math.ceil(len(snapshot.stalls) / 12)


def test_api_qr_png_and_svg(client: TestClient, snapshot: Snapshot, settings: object) -> None:
    code = snapshot.stalls.codes[10]
    r = client.get(f"/api/v1/stalls/{code}/qr.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    base = settings.public_base_url.rstrip("/")  # type: ignore[attr-defined]
    assert decode(r.content) == [f"{base}/s/{code}"]
    big = client.get(f"/api/v1/stalls/{code}/qr.png", params={"scale": 20})
    assert Image.open(io.BytesIO(big.content)).size[0] > Image.open(io.BytesIO(r.content)).size[0]
    svg = client.get(f"/api/v1/stalls/{code}/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg")
    assert client.get("/api/v1/stalls/XLP-370705-999/qr.png").status_code == 404
    assert client.get("/api/v1/stalls/nope/qr.svg").status_code == 422
    assert client.get(f"/api/v1/stalls/{code}/qr.png", params={"scale": 0}).status_code == 422


def test_base_url_comes_from_configuration(snapshot: Snapshot) -> None:
    from geo_service.core.settings import Settings
    from geo_service.core.snapshot import SnapshotStore
    from geo_service.web.app import create_app

    app = create_app(
        Settings(public_base_url="https://xlp.weifang.example/"), SnapshotStore(snapshot)
    )
    code = snapshot.stalls.codes[0]
    with TestClient(app) as c:
        png = c.get(f"/api/v1/stalls/{code}/qr.png").content
    assert decode(png) == [f"https://xlp.weifang.example/s/{code}"]


def test_cli_writes_codes_and_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEO_SERVICE_PUBLIC_BASE_URL", "https://cli.example")
    result = CliRunner().invoke(cli_app, ["qr", "--out", str(tmp_path), "--no-pdf"])
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 128 and len(list((tmp_path / "svg").glob("*.svg"))) == 128
    assert decode(pngs[0].read_bytes()) == [f"https://cli.example/s/{pngs[0].stem}"]
    assert (tmp_path / "sheet.html").exists() and not (tmp_path / "sheet.pdf").exists()
