"""The coverage report as a printable A4 PDF (reportlab): the same title, explanations, tables
and bars as the HTML page, and the static map.

Chinese text: a TrueType font found by ``geo_service.render.fonts`` is embedded (subset) when
reportlab can read it; reportlab cannot embed CFF-outline fonts such as Noto Sans CJK, and a
machine may have no CJK font at all, so otherwise the PDF uses Adobe's standard CID font
STSong-Light, which needs no file: the text is stored as Unicode (searchable, extractable) and
every PDF viewer draws it with its own Song/Ming face. Either way the PDF is always written.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.shapes import Drawing, Rect
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)

from geo_service.render.coverage_tables import Bar, Kind, ReportContent, Table, pct
from geo_service.render.fonts import cjk_font

CID_FONT = "STSong-Light"
EMBEDDED_FONT = "GeoServiceCJK"
MARGIN = 15 * mm
BAR_WIDTH = 150.0
HEAD_BG = colors.HexColor("#eceff1")
POP_BAR = colors.HexColor("#1e88e5")
AREA_BAR = colors.HexColor("#90caf9")


@functools.cache
def _register(path: str, face: int) -> str:
    if path:
        try:
            pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, path, subfontIndex=face))
            return EMBEDDED_FONT
        except (TTFError, OSError, ValueError):
            pass  # CFF outlines (Noto CJK) or an unreadable file: the CID font below
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
    return CID_FONT


def pdf_font() -> str:
    """Name of a registered font that writes Chinese: an embedded TrueType one, or STSong-Light."""
    found = cjk_font()
    return _register(str(found.path) if found else "", found.face if found else 0)


def _styles(font: str) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=font, fontSize=8.5, leading=12, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", base, fontSize=16, leading=22, spaceAfter=4),
        "sub": ParagraphStyle("sub", base, fontSize=8, textColor=colors.HexColor("#555555")),
        "h2": ParagraphStyle("h2", base, fontSize=12, leading=16, spaceBefore=10, spaceAfter=5),
        "body": base,
        "note": ParagraphStyle("note", base, fontSize=7.5, textColor=colors.HexColor("#555555")),
        "cell": ParagraphStyle("cell", base, fontSize=7.5, leading=9.5),
        "code": ParagraphStyle("code", base, fontSize=6, leading=8, textColor=colors.grey),
        "num": ParagraphStyle("num", base, fontSize=7.5, leading=9.5, alignment=TA_RIGHT),
        "head": ParagraphStyle("head", base, fontSize=7.5, leading=9.5),
    }


def _table_style(font: str) -> TableStyle:
    return TableStyle(
        [
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("BACKGROUND", (0, 0), (-1, 0), HEAD_BG),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#cfd8dc")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]
    )


def _column_styles(table: Table) -> list[tuple[Any, ...]]:
    """Body cells are plain strings (a Paragraph per cell made 1,355 rows take seconds):
    figures right-aligned, codes small and grey."""
    out: list[tuple[Any, ...]] = [
        ("FONTSIZE", (0, 1), (-1, -1), 7.5),
        ("LEADING", (0, 1), (-1, -1), 9.5),
    ]
    for i, col in enumerate(table.columns):
        if col.kind is Kind.num:
            out.append(("ALIGN", (i, 1), (i, -1), "RIGHT"))
        elif col.kind is Kind.text:  # viewers may draw the CID font a little wider
            out.append(("RIGHTPADDING", (i, 0), (i, -1), 8))
        elif col.kind is Kind.code:
            out += [
                ("FONTSIZE", (i, 1), (i, -1), 6),
                ("TEXTCOLOR", (i, 1), (i, -1), colors.grey),
            ]
    return out


def _table(table: Table, font: str, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    head = [Paragraph(escape(c.title), styles["head"]) for c in table.columns]
    out: list[Flowable] = [Paragraph(escape(table.title), styles["h2"])]
    if table.rows:
        t = LongTable([head, *map(list, table.rows)], repeatRows=1, hAlign="LEFT")
        t.setStyle(_table_style(font))
        t.setStyle(TableStyle(_column_styles(table)))
        out.append(t)
    else:
        out.append(Paragraph("（无）", styles["body"]))
    if table.note:
        out += [Spacer(1, 3), Paragraph(escape(table.note), styles["note"])]
    return out


def _bar(bar: Bar) -> Drawing:
    d = Drawing(BAR_WIDTH, 10)
    d.add(Rect(0, 0, BAR_WIDTH, 10, fillColor=colors.HexColor("#f5f5f5"), strokeColor=None))
    d.add(Rect(0, 5, BAR_WIDTH * bar.population_ratio, 5, fillColor=POP_BAR, strokeColor=None))
    d.add(Rect(0, 0, BAR_WIDTH * bar.area_ratio, 5, fillColor=AREA_BAR, strokeColor=None))
    return d


def _bars(content: ReportContent, font: str, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    head = [
        Paragraph(escape(t), styles["head"])
        for t in ("名称", "代码", "覆盖率（深：人口，浅：面积）", "人口覆盖率", "面积覆盖率")
    ]
    rows = [
        [
            Paragraph(escape(b.name), styles["cell"]),
            Paragraph(escape(b.code), styles["code"]),
            _bar(b),
            Paragraph(pct(b.population_ratio), styles["num"]),
            Paragraph(pct(b.area_ratio), styles["num"]),
        ]
        for b in content.bars
    ]
    t = LongTable([head, *rows], repeatRows=1, hAlign="LEFT")
    t.setStyle(_table_style(font))
    return [Paragraph(escape(content.bars_title), styles["h2"]), t]


def write_pdf(
    content: ReportContent, path: Path, map_drawing: Drawing, legend: Drawing, font: str
) -> None:
    """Write the report to ``path`` (atomically: a partial file never takes its place)."""
    styles = _styles(font)
    story: list[Flowable] = [
        Paragraph(escape(content.title), styles["title"]),
        Paragraph(escape(content.subtitle), styles["sub"]),
        Spacer(1, 4),
        *_table(content.summary, font, styles),
        Paragraph("说明", styles["h2"]),
        *[
            Paragraph(f"{k}. {escape(t)}", styles["body"])
            for k, t in enumerate(content.explanations, 1)
        ],
        KeepTogether(
            [
                Paragraph("覆盖范围与未覆盖片区", styles["h2"]),
                map_drawing,
                Spacer(1, 3),
                legend,
            ]
        ),
        *_bars(content, font, styles),
        *_table(content.gaps, font, styles),
        *_table(content.units, font, styles),
    ]
    tmp = path.with_suffix(".pdf.tmp")
    doc = SimpleDocTemplate(
        str(tmp),
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=content.title,
        author="geo_service",
        lang="zh-CN",
    )

    def footer(canvas: object, doc_: SimpleDocTemplate) -> None:
        from reportlab.pdfgen.canvas import Canvas

        assert isinstance(canvas, Canvas)
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(MARGIN, 8 * mm, content.title)
        canvas.drawRightString(A4[0] - MARGIN, 8 * mm, f"第 {doc_.page} 页")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    tmp.replace(path)
