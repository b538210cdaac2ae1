"""The 随手拍 map: where cases are reported (a heat map) and how promptly each unit deals with
them (units coloured by on-time rate, ``geo_service.analysis.casestats``).

Like every map here, the page is drawn in its basemap's coordinate system: on Amap (GCJ-02) the
case points and the unit outlines are converted from WGS84 (``display.display_points`` /
``feature_collection``). Points are binned to about 10 m (identical rounded points merged into
one weighted point), which keeps a page of tens of thousands of cases small.

The heat layer is folium's ``HeatMap``. Its script (Leaflet.heat with simpleheat, BSD-2-Clause,
© Vladimir Agafonkin) is the copy folium itself ships (``folium/templates/leaflet_heat.min.js``)
and is written into the page as an inline script, after Leaflet, instead of folium's CDN link:
nothing is fetched from another host, and the page's CSP admits it by hash like the page's other
inline scripts (``web.security.map_policy``).

Unit names, service names and the dataset name reach the page through ``html.escape`` (the
tooltips are HTML strings); case descriptions and reporters' details never reach it at all.
"""

from __future__ import annotations

import html
from datetime import datetime
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any

import folium
import numpy as np
import numpy.typing as npt
import pandas as pd
from branca.colormap import LinearColormap, StepColormap
from branca.element import Element, Figure
from folium.plugins import HeatMap

from geo_service.analysis.casestats import (
    INTAKE_NAME,
    case_stats,
    in_period,
    summary,
)
from geo_service.core.cases import ServiceCatalogue
from geo_service.core.errors import InputError
from geo_service.core.schema import Level
from geo_service.core.snapshot import Snapshot
from geo_service.core.workcalendar import SHANGHAI
from geo_service.render.maps import overview
from geo_service.render.maps.controls import GeoJsonLayer, HtmlControl, RegisterLayers
from geo_service.render.maps.display import display_points, feature_collection
from geo_service.render.maps.page import PageOptions, legend, line_swatch, new_map
from geo_service.render.maps.units import LEVEL_TITLES, unit_features, unit_layer

RATE_STEPS = [i / 10 for i in range(11)]
RATE_COLORS: StepColormap = LinearColormap(
    ["#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850"], vmin=0.0, vmax=1.0
).to_step(index=RATE_STEPS)
NO_RATE_COLOR = "#bdbdbd"
HEAT_DECIMALS = 4  # about 10 m: points closer than that merge into one weighted point
HEAT_GRADIENT = {
    "0.4": "#2c7bb6",
    "0.6": "#00a6ca",
    "0.7": "#90eb9d",
    "0.85": "#f9d057",
    "1": "#d7191c",
}
# Folium writes ``onEachFeature: <this>`` verbatim: the tooltip is HTML built (and escaped) here.
BIND_TIP = (
    "function (f, l) { l.bindTooltip(f.properties.tip, {sticky: true}); "
    "l.bindPopup(f.properties.tip, {maxWidth: 320}); }"
)


class CaseMapError(InputError):
    """A case map that cannot be drawn as asked (e.g. too many grids for one page)."""


@cache
def leaflet_heat_js() -> str:
    """Leaflet.heat as folium ships it (installed with folium, never fetched)."""
    return (resources.files("folium") / "templates" / "leaflet_heat.min.js").read_text("utf-8")


class LocalHeatMap(HeatMap):
    """folium's HeatMap with its script inlined from the installed folium instead of a CDN
    link, and its points given as an array (no per-point Python validation)."""

    default_js: list[tuple[str, str]] = []  # noqa: RUF012  (folium's own class attribute)

    def __init__(self, points: npt.NDArray[np.float64], name: str, **options: Any) -> None:
        super().__init__([], name=name, **options)
        self.data = points.tolist()  # rows of [lat, lon, weight] in the page's CRS

    def render(self, **kwargs: Any) -> Any:
        figure = self.get_root()
        assert isinstance(figure, Figure)
        script = Element("<script>{{ this.code }}</script>")
        script.code = leaflet_heat_js()  # type: ignore[attr-defined]
        # Added while rendering, so after the Leaflet script the map linked a moment ago.
        figure.header.add_child(script, name="leaflet_heat_inline")
        return super().render(**kwargs)


def heat_points(frame: pd.DataFrame, options: PageOptions) -> npt.NDArray[np.float64]:
    """[lat, lon, weight] in the page's CRS, points within ``HEAT_DECIMALS`` merged."""
    ok = np.isfinite(frame["lon"].to_numpy()) & np.isfinite(frame["lat"].to_numpy())
    x, y = display_points(
        frame["lon"].to_numpy(dtype=np.float64)[ok],
        frame["lat"].to_numpy(dtype=np.float64)[ok],
        options.crs,
    )
    if not len(x):
        return np.zeros((0, 3))
    xy = np.round(np.column_stack([y, x]), HEAT_DECIMALS)
    cells, counts = np.unique(xy, axis=0, return_counts=True)
    return np.column_stack([cells, counts.astype(np.float64)])


def rate_colors(rate: npt.NDArray[np.float64]) -> list[str]:
    """Fill colour per unit: the step of its on-time rate, grey when it has none."""
    mids = np.array([(a + b) / 2 for a, b in pairwise(RATE_STEPS)])
    palette = np.array([RATE_COLORS.rgb_hex_str(v) for v in mids] + [NO_RATE_COLOR], dtype=object)
    step = np.clip(np.floor(np.nan_to_num(rate, nan=0.0) * 10), 0, 9).astype(np.int64)
    step[np.isnan(rate)] = len(mids)
    return [str(c) for c in palette[step]]


def _pct(value: float | None) -> str:
    return "—" if value is None or np.isnan(value) else f"{value * 100:.1f}%"


def _hours(value: float | None) -> str:
    return "—" if value is None or np.isnan(value) else f"{value:,.1f} 小时"


def _tip(level_text: str, row: dict[str, Any]) -> str:
    e = html.escape
    rows = [
        ("案件", f"{row['total']:,} 件（结案 {row['结案']:,}）"),
        ("按时处置率", f"{_pct(row['on_time_rate'])}（{row['on_time']:,}/{row['judged']:,}）"),
        ("结案时长中位数", _hours(row["median_hours_to_close"])),
        ("超期未处置", f"{row['overdue_open']:,} 件"),
        ("超时升级", f"{row['escalations']:,} 次"),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return (
        f'<div class="gm-popup"><b>{e(str(row["name"] or ""))}</b><br>'
        f"<small>{e(level_text)} {e(str(row['code']))}</small>"
        f'<table class="gm-table">{table}</table></div>'
    )


def _local(at: datetime | None) -> str:
    return "—" if at is None else at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _summary_card(
    title: str, figures: dict[str, Any], start: datetime | None, end: datetime | None
) -> str:
    e = html.escape
    rows = [
        ("时段", f"{_local(start)} 至 {_local(end)}"),
        ("案件", f"{figures['total']:,} 件（结案 {figures['closed']:,}）"),
        ("按时处置率", f"{_pct(figures['on_time_rate'])}"),
        ("结案时长中位数", _hours(figures["median_hours_to_close"])),
        ("超期未处置", f"{figures['overdue_open']:,} 件"),
        ("网格外（区受理）", f"{figures['outside_grids']:,} 件"),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    return f"<h4>{e(title)}</h4><table class='gm-table'>{table}</table>"


def _legend() -> str:
    mids = [(a + b) / 2 for a, b in pairwise(RATE_STEPS)]
    swatches = "".join(
        f'<span class="gm-swatch" title="{v - 0.05:.0%}–{v + 0.05:.0%}" '
        f'style="width:14px;background:{RATE_COLORS.rgb_hex_str(v)}"></span>'
        for v in mids
    )
    scale = (
        f'<div class="gm-row">{swatches}</div><div class="gm-row"><small>0%</small>'
        f'<small style="margin-left:auto">100%</small></div>'
    )
    heat = "".join(
        f'<span class="gm-swatch" style="width:14px;background:{c}"></span>'
        for c in HEAT_GRADIENT.values()
    )
    rows = [
        (line_swatch("#616161", 1, fill=NO_RATE_COLOR), "无已处置或超期案件"),
        (f"{heat}", "案件热力（少 → 多）"),
    ]
    note = "<small>按时处置率 = 按期处置数 ÷（已处置数 + 超期未处置数）</small>"
    return legend("按时处置率", rows, extra=note, head=scale)


def case_map(
    snapshot: Snapshot,
    options: PageOptions,
    frame: pd.DataFrame,
    services: ServiceCatalogue,
    now: datetime,
    by: Level | str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> folium.Map:
    """Cases (``casestats.case_frame``) requested in ``[start, end)``: a heat layer and the
    units of ``by`` (default grid; community for a city too large to draw every grid)
    coloured by on-time rate, with Chinese tooltips, a summary card and a legend."""
    limit = overview.INLINE_GRID_LIMIT
    too_many = len(snapshot.grids) > limit
    level = Level(by) if by else (Level.community if too_many else Level.grid)
    if level is Level.grid and too_many:
        raise CaseMapError(
            f"{len(snapshot.grids):,} grids are too many to draw on one page "
            f"(at most {limit:,}); use by=community, street or district",
            "by",
        )
    table = case_stats(frame, snapshot, level, start, end, now, services)
    shown = in_period(frame, start, end)
    figures = summary(frame, start, end, now)

    geoms, props = unit_features(snapshot, level.value)
    by_code = table.set_index("code", drop=False)
    unit_rows = by_code.loc[[p["code"] for p in props]]  # units are in code order in both
    level_text = LEVEL_TITLES[level.value]
    colors = rate_colors(unit_rows["on_time_rate"].to_numpy(dtype=np.float64))
    records = unit_rows.to_dict("records")
    features = [
        {
            "code": p["code"],
            "name": p["name"],
            "level": level.value,
            "rate": None if np.isnan(r["on_time_rate"]) else round(float(r["on_time_rate"]), 4),
            "total": int(r["total"]),
            "tip": _tip(level_text, r),
            "style": {"color": "#616161", "weight": 0.6, "fillColor": c, "fillOpacity": 0.55},
        }
        for p, r, c in zip(props, records, colors, strict=True)
    ]

    title = f"随手拍案件 · 按{level_text}"
    m = new_map(snapshot.bounds, options, f"{snapshot.name} {title}")
    layers: dict[str, Element] = {}
    layers["units"] = GeoJsonLayer(
        feature_collection(geoms, features, options.crs),
        f"{level_text}按时处置率（{len(features)}）",
        "style",
        on_each_feature=BIND_TIP,
    ).add_to(m)
    if level is not Level.district:
        layers["districts"] = unit_layer(snapshot, "district", options.crs, show=True).add_to(m)
    points = heat_points(shown, options)
    layers["heat"] = LocalHeatMap(
        points,
        name=f"案件热力（{figures['total']:,}）",
        radius=18,
        blur=15,
        min_opacity=0.3,
        max_zoom=17,
        gradient=HEAT_GRADIENT,
    ).add_to(m)
    RegisterLayers(layers).add_to(m)
    folium.LayerControl(position="topleft", collapsed=True).add_to(m)
    card = _summary_card(title, figures, start, end)
    intake = table[table["name"] == INTAKE_NAME]
    if len(intake):
        names = ", ".join(
            f"{html.escape(str(d or '未知区'))} {int(t):,} 件"
            for d, t in zip(intake["district_name"], intake["total"], strict=True)
        )
        card += f"<small>{html.escape(INTAKE_NAME)}：{names}</small>"
    HtmlControl(card, "topright", "gm-card").add_to(m)
    HtmlControl(_legend(), "bottomleft", "gm-legend").add_to(m)
    return m
