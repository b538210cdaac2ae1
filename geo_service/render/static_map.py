"""The coverage map for paper: a vector drawing (reportlab graphics) of the covered area, the gap
pieces, the facilities and the street and district boundaries with the streets' Chinese names,
a scale bar and a north arrow. The same drawing goes into the PDF and, as SVG, into the HTML
report's print view.

No basemap tiles: a printed report is made offline (CI, an intranet), so the streets and
districts of the data itself give the reader their bearings. Drawn in the metric CRS (a
conformal Gauss-Kruger projection, so shapes and the scale bar are true); north is grid north,
within a degree of true north for Weifang.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from reportlab.graphics import renderSVG
from reportlab.graphics.shapes import Circle, Drawing, Group, Line, Path, Polygon, Rect, String
from reportlab.lib import colors

from geo_service.analysis.coverage import CoverageResult
from geo_service.analysis.gaps import GapPieces
from geo_service.core.snapshot import Snapshot

GeomArray = npt.NDArray[np.object_]

COVERED = colors.HexColor("#bbdefb")
COVERED_EDGE = colors.HexColor("#64b5f6")
GAP = colors.HexColor("#ef9a9a")
GAP_EDGE = colors.HexColor("#b71c1c")
GRID_EDGE = colors.HexColor("#b0bec5")
STREET_EDGE = colors.HexColor("#1565c0")
DISTRICT_EDGE = colors.HexColor("#6a1b9a")
FACILITY = colors.HexColor("#0d47a1")
LABELLED_GAPS = 10
"""The first gap pieces (most people) are labelled with their ids, as in the table."""
SIMPLIFY_PT = 0.25
"""Shapes are simplified to a quarter point on paper (invisible; keeps the PDF small)."""
SVG_FONTS = "'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',sans-serif"
"""Inside a double-quoted style attribute: single quotes only."""

_MOVE, _LINE, _CLOSE = 0, 1, 3


class _Frame:
    """Metric coordinates -> drawing points (origin bottom left, y up)."""

    def __init__(self, bounds: Sequence[float], width: float, height: float, pad: float) -> None:
        minx, miny, maxx, maxy = bounds
        span_x, span_y = max(maxx - minx, 1.0), max(maxy - miny, 1.0)
        self.scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
        self.x0 = minx - (width / self.scale - span_x) / 2
        self.y0 = miny - (height / self.scale - span_y) / 2

    def points(self, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack(
            [(xy[:, 0] - self.x0) * self.scale, (xy[:, 1] - self.y0) * self.scale]
        )


def _paths(geoms: GeomArray, frame: _Frame, **style: Any) -> list[Path]:
    """One even-odd filled path per polygon (holes included) of the metric ``geoms``."""
    geoms = np.asarray(geoms, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        return []
    geoms = shapely.simplify(geoms, SIMPLIFY_PT / frame.scale, preserve_topology=True)
    polys = shapely.get_parts(geoms)
    polys = polys[shapely.get_type_id(polys) == shapely.GeometryType.POLYGON]
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    xy = frame.points(coords)
    # Drop each ring's closing vertex; the path closes it.
    last = np.r_[coord_ring[1:] != coord_ring[:-1], True]
    xy, coord_ring = xy[~last], coord_ring[~last]
    first = np.r_[True, coord_ring[1:] != coord_ring[:-1]]
    ops = np.where(first, _MOVE, _LINE)
    out = []
    starts = np.searchsorted(ring_poly[coord_ring], np.arange(len(polys) + 1))
    for p in range(len(polys)):
        a, b = starts[p], starts[p + 1]
        if b - a < 3:
            continue
        seg_ops = ops[a:b].tolist()
        # A close after every ring: before each move but the first, and at the end.
        with_close: list[int] = []
        for k, op in enumerate(seg_ops):
            if op == _MOVE and k:
                with_close.append(_CLOSE)
            with_close.append(op)
        with_close.append(_CLOSE)
        out.append(Path(points=xy[a:b].ravel().round(2).tolist(), operators=with_close, **style))
    return out


def _boundaries(geoms: GeomArray, frame: _Frame, color: colors.Color, width: float) -> list[Path]:
    return _paths(geoms, frame, fillColor=None, strokeColor=color, strokeWidth=width)


def _nice_length(metres: float) -> float:
    """The largest 1, 2 or 5 × 10^k metres not above ``metres``."""
    exp = 10 ** np.floor(np.log10(max(metres, 1.0)))
    return float(max(s * exp for s in (1, 2, 5) if s * exp <= metres))


def _scale_bar(frame: _Frame, width: float, font: str) -> Group:
    metres = _nice_length(width * 0.22 / frame.scale)
    length = metres * frame.scale
    x, y, h = 10.0, 10.0, 3.5
    g = Group()
    for k in range(2):
        g.add(
            Rect(
                x + k * length / 2,
                y,
                length / 2,
                h,
                fillColor=colors.black if k == 0 else colors.white,
                strokeColor=colors.black,
                strokeWidth=0.5,
            )
        )
    text = f"{metres / 1000:g} 公里" if metres >= 1000 else f"{metres:g} 米"
    g.add(String(x, y + h + 2.5, "0", fontName=font, fontSize=6))
    g.add(String(x + length, y + h + 2.5, text, fontName=font, fontSize=6, textAnchor="middle"))
    return g


def _north_arrow(width: float, height: float, font: str) -> Group:
    cx, top = width - 16.0, height - 10.0
    g = Group()
    g.add(
        Polygon(
            [cx, top, cx - 5, top - 16, cx, top - 12, cx + 5, top - 16],
            fillColor=colors.black,
            strokeColor=None,
        )
    )
    g.add(String(cx, top - 25, "北", fontName=font, fontSize=8, textAnchor="middle"))
    return g


def coverage_drawing(
    snapshot: Snapshot,
    result: CoverageResult,
    pieces: GapPieces,
    font: str,
    width: float = 480.0,
    max_height: float = 520.0,
) -> Drawing:
    """The map at ``width`` points (height from the city's shape, at most ``max_height``)."""
    project = snapshot.projection.project
    grids = snapshot.grids.index.metric
    bounds: list[float] = (
        shapely.total_bounds(grids).tolist() if len(grids) else [0.0, 0.0, 1.0, 1.0]
    )
    aspect = (bounds[3] - bounds[1]) / max(bounds[2] - bounds[0], 1.0)
    height = min(width * aspect, max_height)
    if height == max_height:
        width = height / max(aspect, 1e-9)
    height = max(height, 60.0)
    frame = _Frame(bounds, width, height, pad=6.0)
    d = Drawing(width, height)
    d.add(Rect(0, 0, width, height, fillColor=colors.white, strokeColor=colors.grey))
    covered = project(np.array([result.covered], dtype=object))
    for p in _paths(covered, frame, fillColor=COVERED, strokeColor=COVERED_EDGE, strokeWidth=0.2):
        d.add(p)
    gap_geoms = project(pieces.frame.geometry.to_numpy()) if len(pieces.frame) else []
    for p in _paths(
        np.asarray(gap_geoms, dtype=object),
        frame,
        fillColor=GAP,
        strokeColor=GAP_EDGE,
        strokeWidth=0.2,
    ):
        d.add(p)
    for p in _boundaries(grids, frame, GRID_EDGE, 0.1):
        d.add(p)
    streets = snapshot.units("street")
    street_geoms = project(streets.geometry.to_numpy())
    for p in _boundaries(street_geoms, frame, STREET_EDGE, 0.6):
        d.add(p)
    for p in _boundaries(
        project(snapshot.units("district").geometry.to_numpy()), frame, DISTRICT_EDGE, 1.2
    ):
        d.add(p)
    fx, fy = result.grid.x, result.grid.y
    if len(fx):
        pts = frame.points(np.column_stack([fx, fy]))
        for px, py in pts.round(2).tolist():
            d.add(
                Circle(px, py, 1.3, fillColor=FACILITY, strokeColor=colors.white, strokeWidth=0.3)
            )
    if len(pieces.frame):
        top = pieces.frame.head(LABELLED_GAPS)
        anchor = shapely.point_on_surface(project(top.geometry.to_numpy()))
        pts = frame.points(np.column_stack([shapely.get_x(anchor), shapely.get_y(anchor)]))
        for (px, py), gid in zip(pts.round(2).tolist(), top["gap_id"], strict=True):
            d.add(
                Circle(px, py, 1.6, fillColor=GAP_EDGE, strokeColor=colors.white, strokeWidth=0.3)
            )
            d.add(
                String(
                    px + 2.5, py + 1.5, str(gid), fontName=font, fontSize=5.5, fillColor=GAP_EDGE
                )
            )
    if len(streets):
        anchor = shapely.point_on_surface(street_geoms)
        pts = frame.points(np.column_stack([shapely.get_x(anchor), shapely.get_y(anchor)]))
        for (px, py), name in zip(pts.round(2).tolist(), streets["name"], strict=True):
            d.add(
                String(
                    px,
                    py - 2,
                    str(name),
                    fontName=font,
                    fontSize=6,
                    fillColor=STREET_EDGE,
                    textAnchor="middle",
                )
            )
    d.add(_scale_bar(frame, width, font))
    d.add(_north_arrow(width, height, font))
    return d


def legend_drawing(radius_m: float, font: str, width: float = 480.0) -> Drawing:
    """The key under the map: one swatch per kind of thing drawn."""
    items = [
        ("rect", COVERED, COVERED_EDGE, f"已覆盖范围（{radius_m:,.0f} 米内）"),
        ("rect", GAP, GAP_EDGE, "未覆盖片区（G 编号同下表）"),
        ("dot", FACILITY, colors.white, "计入的设施"),
        ("line", None, STREET_EDGE, "街道界线"),
        ("line", None, DISTRICT_EDGE, "区界"),
    ]
    d = Drawing(width, 16)
    x = 0.0
    for kind, fill, edge, label in items:
        if kind == "rect":
            d.add(Rect(x, 4, 12, 8, fillColor=fill, strokeColor=edge, strokeWidth=0.6))
        elif kind == "dot":
            d.add(Circle(x + 6, 8, 2.2, fillColor=fill, strokeColor=edge, strokeWidth=0.3))
        else:
            d.add(Line(x, 8, x + 12, 8, strokeColor=edge, strokeWidth=1.2))
        d.add(String(x + 15, 5, label, fontName=font, fontSize=7))
        x += 15 + len(label) * 7.2 + 10
    return d


def to_svg(drawing: Drawing) -> str:
    """Inline SVG of a drawing for an HTML page (no XML prolog; page fonts for the text)."""
    text = renderSVG.drawToString(drawing)
    svg = text[text.index("<svg") :]
    svg = re.sub(r"font-family: [^;]+;", f"font-family: {SVG_FONTS};", svg)
    # Each drawing's clip path gets its own id (several SVGs share a page).
    uid = f"clip{id(drawing):x}"
    return svg.replace('id="clip"', f'id="{uid}"').replace("url(#clip)", f"url(#{uid})")
