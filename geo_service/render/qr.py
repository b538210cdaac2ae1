"""QR codes for the stall signs: each encodes ``{public_base_url}/s/{code}``, the stall's page.

Error correction level M (15% of the symbol may be lost) suits a sign outdoors that gets dirty
or scratched, while keeping the modules large enough for a phone camera at arm's length.
The printable sheet is a self-contained HTML file (inline SVG, A4 print CSS) and the same layout
as a vector PDF, drawn with the CJK font ``render.fonts`` finds (the PDF needs one; without it
the PDF is reported as not written, never silently skipped).
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import segno

from geo_service.core.snapshot import PointLayer
from geo_service.render.fonts import cjk_font, missing_font_message

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

ERROR_LEVEL = "m"
BORDER = 4  # quiet zone in modules, as the QR standard requires
PNG_SCALE = 10  # pixels per module: a 33-module code becomes ~410 px
SVG_SCALE = 4  # user units per module (the SVG scales without loss anyway)
PER_PAGE = (3, 4)  # columns, rows on A4


def page_url(base_url: str, code: str) -> str:
    """The stall page a sign's code opens."""
    return f"{base_url.rstrip('/')}/s/{quote(code, safe='')}"


def make(url: str) -> segno.QRCode:
    return segno.make(url, error=ERROR_LEVEL, boost_error=False, micro=False)


def svg_bytes(url: str, title: str | None = None, scale: int = SVG_SCALE) -> bytes:
    out = io.BytesIO()
    make(url).save(
        out, kind="svg", scale=scale, border=BORDER, title=title, xmldecl=False, svgns=True
    )
    return out.getvalue()


def png_bytes(url: str, scale: int = PNG_SCALE) -> bytes:
    out = io.BytesIO()
    make(url).save(out, kind="png", scale=scale, border=BORDER)
    return out.getvalue()


@dataclass
class QrOutput:
    folder: Path
    codes: list[str] = field(default_factory=list)
    sheet_html: Path | None = None
    sheet_pdf: Path | None = None
    notes: list[str] = field(default_factory=list)
    # Outputs that were asked for and not written, each with why: the CLI exits non-zero.
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sign:
    code: str
    name: str
    url: str


def signs(layer: PointLayer, base_url: str) -> list[Sign]:
    return [Sign(r["code"], r["name"], page_url(base_url, r["code"])) for r in layer.records]


def write_all(
    layer: PointLayer,
    base_url: str,
    out_dir: Path,
    pdf: bool = True,
    progress: Callable[[int], None] | None = None,
) -> QrOutput:
    """One SVG and one PNG per stall (named by code), plus the printable sheet(s)."""
    out_dir = Path(out_dir)
    (out_dir / "svg").mkdir(parents=True, exist_ok=True)
    (out_dir / "png").mkdir(parents=True, exist_ok=True)
    result = QrOutput(out_dir)
    items = signs(layer, base_url)
    for sign in items:
        (out_dir / "svg" / f"{sign.code}.svg").write_bytes(svg_bytes(sign.url, sign.name))
        (out_dir / "png" / f"{sign.code}.png").write_bytes(png_bytes(sign.url))
        result.codes.append(sign.code)
        if progress:
            progress(1)
    result.sheet_html = out_dir / "sheet.html"
    result.sheet_html.write_text(sheet_html(items, base_url), encoding="utf-8")
    if pdf:
        path = out_dir / "sheet.pdf"
        why = write_sheet_pdf(items, path)
        if why is None:
            result.sheet_pdf = path
        else:
            result.failed.append(f"{path}: {why}")
    return result


_SHEET_CSS = """
@page { size: A4; margin: 10mm; }
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 0; }
h1 { font-size: 14px; font-weight: normal; margin: 0 0 4mm; }
.grid { display: grid; grid-template-columns: repeat(3, 1fr); gap: 4mm; }
.sign { border: 1px dashed #999; padding: 3mm; text-align: center; break-inside: avoid;
        height: 62mm; box-sizing: border-box; }
.sign svg { width: 42mm; height: 42mm; }
.code { font-size: 15px; font-weight: bold; letter-spacing: 0.5px; margin-top: 1mm; }
.name { font-size: 11px; }
.hint { font-size: 9px; color: #555; }
@media print { h1 { display: none; } }
"""


def sheet_html(items: Iterable[Sign], base_url: str) -> str:
    """A4 sheet for the sign-maker: each code with the electronic number and name under it."""
    cells = []
    for s in items:
        svg = svg_bytes(s.url, s.name).decode("utf-8")
        cells.append(
            f'<div class="sign" id="{html.escape(s.code)}">{svg}'
            f'<div class="code">{html.escape(s.code)}</div>'
            f'<div class="name">{html.escape(s.name)}</div>'
            '<div class="hint">微信扫码 · 查找附近修理点</div></div>'
        )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>小蓝棚二维码 ({len(cells)})</title><style>{_SHEET_CSS}</style></head><body>"
        f"<h1>小蓝棚二维码 · {len(cells)} 个 · 指向 {html.escape(base_url)}/s/编号 · "
        "用 A4 纸打印，沿虚线裁开</h1>"
        f'<div class="grid">{"".join(cells)}</div></body></html>\n'
    )


def write_sheet_pdf(items: list[Sign], path: Path) -> str | None:
    """The same sheet as a vector PDF; returns why not when it cannot be written (no CJK font,
    or the file cannot be created), leaving no partial file behind."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.font_manager import FontProperties

    found = cjk_font()
    if found is None:
        return missing_font_message()
    font = FontProperties(family=found.family)
    cols, rows = PER_PAGE
    per_page = cols * rows
    try:
        with rc_context({"pdf.fonttype": 3}), PdfPages(path) as pdf:
            for start in range(0, len(items), per_page):
                pdf.savefig(_sheet_page(items[start : start + per_page], font, cols))
    except OSError as exc:
        path.unlink(missing_ok=True)
        return f"无法写入 / cannot write: {exc.strerror or exc}"
    return None


def _sheet_page(items: list[Sign], font: FontProperties, cols: int) -> Figure:
    """One A4 page of signs (a bare Figure, not pyplot: no global figure registry)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.27, 11.69))  # A4 in inches
    for j, s in enumerate(items):
        r, c = divmod(j, cols)
        x0, y0 = 0.06 + c * 0.30, 0.74 - r * 0.235
        ax = fig.add_axes((x0, y0, 0.28, 0.19))
        matrix = np.array(list(make(s.url).matrix_iter(border=BORDER)), dtype=np.uint8)
        # interpolation="none" embeds the module matrix as-is: viewers and printers
        # scale it without smoothing, so edges stay sharp at any size.
        ax.imshow(1 - matrix, cmap="gray", vmin=0, vmax=1, interpolation="none")
        ax.set_axis_off()
        cx = x0 + 0.14
        fig.text(cx, y0 - 0.012, s.code, ha="center", fontproperties=font, fontsize=12)
        fig.text(cx, y0 - 0.030, s.name, ha="center", fontproperties=font, fontsize=7)
    return fig
