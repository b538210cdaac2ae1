"""QR codes decode (zxing-cpp, an independent decoder) to the stall's page URL, and each of the
stalls' codes opens that stall's page."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from fontTools.ttLib import TTCollection, TTFont
from PIL import Image
from typer.testing import CliRunner

from geo_service.cli.main import app as cli_app
from geo_service.core.snapshot import Snapshot
from geo_service.render import fonts
from geo_service.render.qr import write_all
from tests import rawdata

BASE = "https://weifang.example.cn/xlp"


def decode(png: bytes) -> list[str]:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return [r.text for r in found if r.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture(scope="module")
def written(snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qr")
    result = write_all(snapshot.stalls, BASE + "/", out, pdf=True)
    assert len(result.codes) == len(snapshot.stalls)
    assert result.sheet_pdf == out / "sheet.pdf" and not result.failed, result.failed
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
    # Always written: scripts/test-services.sh installs fonts-noto-cjk.
    data = (written / "sheet.pdf").read_bytes()
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


# --- the PDF sheet's font: found without matplotlib's cache, Chinese really in the PDF --------


def _pdf_objects(data: bytes) -> dict[int, bytes]:
    """Each indirect object's body (dictionary and raw stream), by number."""
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(rb"(?m)^(\d+) 0 obj\s(.*?)endobj", data, re.S)
    }


def _stream(body: bytes) -> bytes:
    raw = body.split(b"stream", 1)[1].lstrip(b"\r\n")
    return zlib.decompressobj().decompress(raw)  # ignores what follows the data


def _to_unicode_chars(cmap: bytes) -> set[str]:
    """The characters a ToUnicode CMap maps glyph codes to (what text extraction yields)."""
    chars: set[str] = set()
    text = cmap.decode("latin-1")
    for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, dst in re.findall(r"<(\w+)>\s*<(\w+)>\s*(\[[^\]]*\]|<\w+>)", block):
            if dst.startswith("["):
                chars |= {bytes.fromhex(h).decode("utf-16-be") for h in re.findall(r"<(\w+)>", dst)}
            else:
                start = int(dst.strip("<>"), 16)
                chars |= {chr(start + k) for k in range(int(hi, 16) - int(lo, 16) + 1)}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
        chars |= {
            bytes.fromhex(h).decode("utf-16-be") for _, h in re.findall(r"<(\w+)>\s*<(\w+)>", block)
        }
    return chars


def _font_faces(path: Path) -> list[TTFont]:
    if path.suffix.lower() in (".ttc", ".otc"):
        return list(TTCollection(str(path), lazy=True).fonts)
    return [TTFont(str(path), lazy=True)]


def _has_glyphs(path: Path, text: str) -> bool:
    """fontTools (not the code under test) says some face of the file maps every character."""
    try:
        return any(
            all(ord(ch) in (face.getBestCmap() or {}) for ch in text) for face in _font_faces(path)
        )
    except Exception:
        return False


@pytest.fixture(scope="module")
def cjk_files() -> set[Path]:
    """The CJK fonts installed here, found by fontTools over the system font folders."""
    suffixes = {".ttf", ".ttc", ".otf", ".otc"}
    found = {
        p.resolve()
        for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
        if root.is_dir()
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and _has_glyphs(p, "网格")
    }
    if not found:
        pytest.fail("no CJK font installed: scripts/test-services.sh installs fonts-noto-cjk")
    return found


STALE_CACHE = """
import json, sys
from pathlib import Path
import matplotlib
from matplotlib import font_manager as fm
cjk = set(json.loads(sys.argv[1]))
fm.fontManager.ttflist = [f for f in fm.fontManager.ttflist if f.fname not in cjk]
cache = Path(matplotlib.get_cachedir(), f"fontlist-v{fm.FontManager.__version__}.json")
assert cache.exists()
fm.json_dump(fm.fontManager, cache)
"""

LOOK_UP = """
import json
from matplotlib import font_manager as fm
known = sorted({f.fname for f in fm.fontManager.ttflist})
from geo_service.render.fonts import cjk_font
found = cjk_font()
path = fm.findfont(fm.FontProperties(family=found.family), fallback_to_default=False)
print(json.dumps({"known": known, "path": str(found.path), "family": found.family,
                  "findfont": str(path)}))
"""


def test_a_stale_matplotlib_cache_does_not_hide_the_installed_font(
    cjk_files: set[Path], tmp_path: Path
) -> None:
    """The bug: a font cache written before the CJK font was installed made ``qr`` say no CJK
    font was installed. Here the cache in a fresh MPLCONFIGDIR is made stale on purpose."""
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path)}
    env.pop("GEO_SERVICE_CJK_FONT", None)
    py = sys.executable
    arg = json.dumps(sorted(str(p) for p in cjk_files))
    subprocess.run([py, "-c", STALE_CACHE, arg], env=env, check=True, timeout=120)
    out = subprocess.run(
        [py, "-c", LOOK_UP], env=env, check=True, timeout=120, capture_output=True, text=True
    ).stdout
    got = json.loads(out)
    assert not {Path(p).resolve() for p in got["known"]} & cjk_files  # the cache is stale
    assert Path(got["path"]) in cjk_files
    assert Path(got["findfont"]).resolve() == Path(got["path"])  # registered with matplotlib


def test_font_folders_are_searched_without_fontconfig(
    cjk_files: set[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEO_SERVICE_CJK_FONT", raising=False)
    monkeypatch.setattr(fonts, "_fontconfig", list)  # as on a system without fc-list
    fonts.clear_cache()
    try:
        found = fonts.cjk_font()
        assert found is not None and found.source == "font folders"
        assert found.path in cjk_files and _has_glyphs(found.path, fonts.PROBE_TEXT)
    finally:
        fonts.clear_cache()


def test_override_names_the_font_or_is_refused(
    cjk_files: set[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = sorted(cjk_files)[-1]
    monkeypatch.setenv("GEO_SERVICE_CJK_FONT", str(chosen))
    found = fonts.cjk_font()
    assert found is not None and found.path == chosen and found.source == "env"
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_text("not a font", encoding="utf-8")
    monkeypatch.setenv("GEO_SERVICE_CJK_FONT", str(not_a_font))
    assert fonts.cjk_font_path() is None
    assert "GEO_SERVICE_CJK_FONT" in fonts.missing_font_message()
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if latin.exists():  # a real font without Chinese glyphs is refused too
        monkeypatch.setenv("GEO_SERVICE_CJK_FONT", str(latin))
        assert fonts.cjk_font_path() is None


def test_pdf_sheet_holds_the_chinese_names_as_text_and_glyphs(
    written: Path, snapshot: Snapshot, cjk_files: set[Path]
) -> None:
    data = (written / "sheet.pdf").read_bytes()
    objects = _pdf_objects(data)
    chars: set[str] = set()
    gids: set[int] = set()
    base_fonts: set[str] = set()
    for body in objects.values():
        font = re.search(rb"/Type /Font\b.*?/BaseFont /(?:[A-Z]{6}\+)?([\w-]+)", body, re.S)
        if font is None:
            continue
        base_fonts.add(font.group(1).decode())
        ref = re.search(rb"/ToUnicode (\d+) 0 R", body)
        if ref:
            chars |= _to_unicode_chars(_stream(objects[int(ref.group(1))]))
        gids |= {int(h, 16) for h in re.findall(rb"/uni([0-9a-f]{8})", body)}
    text = "".join(r["name"] + r["code"] for r in snapshot.stalls.records)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)
    assert set(text) - {" "} <= chars, sorted(set(text) - chars)[:10]
    # The embedded font is an installed CJK font, and holds the glyphs of those characters.
    faces = {
        face["name"].getDebugName(6): (path, face)
        for path in cjk_files
        for face in _font_faces(path)
    }
    cjk_used = [name for name in base_fonts if name in faces]
    assert cjk_used, base_fonts
    _, face = faces[cjk_used[0]]
    cmap = face.getBestCmap()
    hanzi = {ch for ch in text if "\u4e00" <= ch <= "\u9fff"}
    assert {face.getGlyphID(cmap[ord(ch)]) for ch in hanzi} <= gids


@pytest.fixture
def few_stalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled dataset with only three stalls (the qr command writes one file per stall)."""
    data = tmp_path / "data"
    shutil.copytree(rawdata.DATA_DIR, data)
    fc = json.loads((data / "stalls.geojson").read_text(encoding="utf-8"))
    fc["features"] = fc["features"][:3]
    (data / "stalls.geojson").write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(data))
    monkeypatch.setenv("GEO_SERVICE_PUBLIC_BASE_URL", "https://cli.example")
    monkeypatch.delenv("GEO_SERVICE_CJK_FONT", raising=False)
    return tmp_path / "qr"


def test_cli_qr_writes_the_pdf_and_exits_0(few_stalls: Path) -> None:
    res = CliRunner().invoke(cli_app, ["qr", "--out", str(few_stalls)])
    assert res.exit_code == 0, res.output
    assert (few_stalls / "sheet.pdf").read_bytes().startswith(b"%PDF")
    assert "sheet.pdf" in res.stdout and "not written" not in res.stderr


def test_cli_qr_exits_1_when_a_requested_output_is_not_written(
    few_stalls: Path, tmp_path: Path
) -> None:
    not_a_font = tmp_path / "font.ttc"
    not_a_font.write_bytes(b"\0" * 64)
    res = CliRunner().invoke(
        cli_app, ["qr", "--out", str(few_stalls)], env={"GEO_SERVICE_CJK_FONT": str(not_a_font)}
    )
    assert res.exit_code == 1, res.output
    err = " ".join(res.stderr.split())
    assert "未写出 / not written" in err and "sheet.pdf" in err and "GEO_SERVICE_CJK_FONT" in err
    assert not (few_stalls / "sheet.pdf").exists()
    # What could be written still is: each code and the HTML sheet.
    assert len(list((few_stalls / "png").glob("*.png"))) == 3
    assert (few_stalls / "sheet.html").exists()
    # An output folder that cannot be created: exit 1 with the reason, no traceback.
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    res = CliRunner().invoke(cli_app, ["qr", "--out", str(blocker), "--no-pdf"])
    assert res.exit_code == 1 and "未写出 / not written" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)
