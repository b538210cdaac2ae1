"""The map of one grid for its officer: the outline, the neighbouring grids, the stalls and vendor
clusters inside it or within 1 km of its edge, and the officer's card.

The card says of each facility that is not open for business why (暂停营业, 已撤销, 已迁至 … with
where it went), and, on a page the service serves, loads the grid's open 随手拍 cases (how many,
how many overdue) from ``/api/v1/units/{code}/contents`` when opened: the page itself is cached
per data version, the cases change by the minute.

Distances are measured in the metric CRS from the grid's edge (0 inside the grid).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import folium
import numpy as np
import numpy.typing as npt
import shapely
from branca.element import Element

from geo_service.core.schema import STATUS_TEXT, Status
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.render.maps.controls import (
    MARKER_LEGEND,
    GeoJsonLayer,
    HtmlControl,
    RegisterLayers,
    UnitCases,
)
from geo_service.render.maps.display import feature_collection
from geo_service.render.maps.page import (
    PageOptions,
    legend,
    line_swatch,
    new_map,
    report_link,
)
from geo_service.render.maps.points import (
    MOVE_STYLE,
    TITLES,
    marker_layer,
    relocation_layer,
    status_text,
)
from geo_service.render.maps.units import grid_properties

NEARBY_RADIUS_M = 1000.0
CONTENTS_PATH = "/api/v1/units/{code}/contents"  # the grid's open cases, read by the card
CASE_PAGE_PATH = "/cases/{id}/page"
# Neighbours share an edge; digitising noise may leave them a few centimetres apart.
NEIGHBOUR_TOLERANCE_M = 0.5
CARD_LIST_MAX = 12

TARGET_STYLE: dict[str, Any] = {
    "color": "#d32f2f",
    "weight": 4,
    "fillColor": "#ef9a9a",
    "fillOpacity": 0.15,
}
NEIGHBOUR_STYLE: dict[str, Any] = {
    "color": "#1565c0",
    "weight": 1.5,
    "fillColor": "#bbdefb",
    "fillOpacity": 0.1,
}
ZONE_STYLE: dict[str, Any] = {"color": "#6d4c41", "weight": 1.5, "dashArray": "6 6", "fill": False}


@dataclass(frozen=True)
class Nearby:
    """Facilities within the radius of a grid's edge, nearest first."""

    idx: npt.NDArray[np.int64]
    distance_m: npt.NDArray[np.float64]


@dataclass(frozen=True)
class GridSurroundings:
    index: int
    neighbours: npt.NDArray[np.int64]
    stalls: Nearby
    vendor_clusters: Nearby
    radius_m: float


def _nearby(layer: PointLayer, metric_grid: shapely.Geometry, radius_m: float) -> Nearby:
    cand = layer.index.tree.query(metric_grid, predicate="dwithin", distance=radius_m)
    dist = shapely.distance(metric_grid, layer.index.tree.geometries[cand])
    order = np.lexsort((cand, dist))
    return Nearby(cand[order].astype(np.int64), np.asarray(dist[order], dtype=np.float64))


def surroundings(
    snapshot: Snapshot, code: str, radius_m: float = NEARBY_RADIUS_M
) -> GridSurroundings:
    """Neighbours and nearby facilities of grid ``code`` (KeyError if unknown)."""
    i = snapshot.grids.position[code]
    index = snapshot.grids.index
    metric = index.metric[i]
    near = index.metric_tree.query(metric, predicate="dwithin", distance=NEIGHBOUR_TOLERANCE_M)
    neighbours = np.sort(near[near != i]).astype(np.int64)
    return GridSurroundings(
        index=i,
        neighbours=neighbours,
        stalls=_nearby(snapshot.stalls, metric, radius_m),
        vendor_clusters=_nearby(snapshot.vendor_clusters, metric, radius_m),
        radius_m=radius_m,
    )


def _facility_list(layer: PointLayer, nearby: Nearby) -> str:
    records = layer.records
    e = html.escape
    items = []
    for i, d in zip(nearby.idx[:CARD_LIST_MAX], nearby.distance_m[:CARD_LIST_MAX], strict=True):
        rec = records[int(i)]
        where = "网格内" if d == 0 else f"{d:,.0f} 米"
        state = ""
        status = str(rec.get("status") or "")
        if status != Status.active.value:
            state = (
                f' <span class="gm-state gm-state-{e(status)}">'
                f"〔{e(status_text(layer, int(i)))}〕</span>"
            )
        items.append(f"<li>{e(rec['code'])} {e(str(rec['name']))} — {where}{state}</li>")
    more = len(nearby.idx) - CARD_LIST_MAX
    if more > 0:
        items.append(f"<li>…另 {more} 个</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p>无</p>"


def _in_grid_count(layer: PointLayer, grid: int) -> str:
    """How many of ``layer`` stand in the grid, and how many of those are not open for business:
    "5（暂停营业 1，已迁址 1）"."""
    status = layer.frame["status"].to_numpy(dtype=object)[layer.grid_index == grid]
    names, counts = np.unique(status.astype(str), return_counts=True)
    by = dict(zip(names.tolist(), counts.tolist(), strict=True))
    notes = [
        f"{STATUS_TEXT[k]} {by[k]}"
        for k in (Status.suspended.value, Status.relocated.value, Status.retired.value)
        if by.get(k)
    ]
    return f"{len(status)}（{'，'.join(notes)}）" if notes else str(len(status))


def _card(
    snapshot: Snapshot, s: GridSurroundings, overview_href: str | None, cases: bool = False
) -> str:
    """The officer's card: who is responsible for this grid, and what lies around it; with
    ``cases``, a line the page fills with the grid's open cases (``GeoMaps.unitCases``)."""
    g: dict[str, Any] = snapshot.grids.properties[s.index]
    e = html.escape
    phone = g["officer"]["phone"]
    digits = "".join(ch for ch in phone or "" if ch.isdigit() or ch == "+")
    tel = f'<a href="tel:{e(digits)}">{e(phone)}</a>' if phone else "—"
    rows = [
        ("社区", f"{e(g['community']['name'])}（{e(g['community']['code'])}）"),
        ("街道", f"{e(g['street']['name'])}（{e(g['street']['code'])}）"),
        ("区", f"{e(g['district']['name'])}（{e(g['district']['code'])}）"),
        ("网格员", e(g["officer"]["name"] or "—")),
        ("电话", tel),
        ("面积", f"{g['area_m2'] / 10_000:,.2f} 公顷"),
        ("户数", "—" if g.get("households") is None else f"{g['households']:,}"),
        ("人口", "—" if g["population"] is None else f"{g['population']:,}"),
        ("网格内小蓝棚", _in_grid_count(snapshot.stalls, s.index)),
        ("网格内摊点群", _in_grid_count(snapshot.vendor_clusters, s.index)),
    ]
    if cases:
        rows.append(("随手拍", '<span class="gm-cases-count">正在读取未结案件…</span>'))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    km = f"{s.radius_m / 1000:g} 公里"
    back = f'<p><a href="{e(overview_href)}">‹ 网格总览</a></p>' if overview_href else ""
    return "".join(
        [
            f"<h4>网格员名片 · {e(g['code'])}</h4><b>{e(g['name'])}</b>",
            f'<table class="gm-table">{table}</table>',
            '<div class="gm-cases"></div>' if cases else "",
            f"<h4>{km}内小蓝棚（{len(s.stalls.idx)}）</h4>",
            _facility_list(snapshot.stalls, s.stalls),
            f"<h4>{km}内便民摊点群（{len(s.vendor_clusters.idx)}）</h4>",
            _facility_list(snapshot.vendor_clusters, s.vendor_clusters),
            back,
        ]
    )


def grid_map(
    snapshot: Snapshot,
    code: str,
    options: PageOptions,
    radius_m: float = NEARBY_RADIUS_M,
    overview_href: str | None = None,
) -> folium.Map:
    """The map of grid ``code`` (KeyError if unknown)."""
    s = surroundings(snapshot, code, radius_m)
    crs = options.crs
    geoms = snapshot.grids.frame.geometry.to_numpy()
    projection = snapshot.projection
    zone = projection.unproject(shapely.buffer(snapshot.grids.index.metric[s.index], radius_m))
    name = snapshot.grids.properties[s.index]["name"]
    m = new_map(shapely.bounds(zone).tolist(), options, f"网格 {code} {name}", max_zoom=18)
    km = f"{radius_m / 1000:g} 公里"
    zone_data = feature_collection(
        np.array([zone], dtype=object), [{"code": code, "label": f"网格外 {km}范围"}], crs
    )
    target = np.array([s.index], dtype=np.int64)
    layers: dict[str, Element] = {
        "zone": GeoJsonLayer(
            zone_data, f"{km}范围", ZONE_STYLE, on_each_feature="GeoMaps.bindLabel"
        ).add_to(m),
        "neighbours": GeoJsonLayer(
            feature_collection(geoms[s.neighbours], grid_properties(snapshot, s.neighbours), crs),
            f"相邻网格（{len(s.neighbours)}）",
            NEIGHBOUR_STYLE,
        ).add_to(m),
        "grid": GeoJsonLayer(
            feature_collection(geoms[target], grid_properties(snapshot, target), crs),
            f"网格 {code}",
            TARGET_STYLE,
        ).add_to(m),
    }
    for key, layer, nearby in (
        ("vendor_clusters", snapshot.vendor_clusters, s.vendor_clusters),
        ("stalls", snapshot.stalls, s.stalls),
    ):
        layers[key] = marker_layer(
            layer,
            crs,
            f"{TITLES[layer.name]}（{km}内 {len(nearby.idx)}）",
            nearby.idx,
            nearby.distance_m,
            clustered=False,
        ).add_to(m)
    moves = relocation_layer(snapshot.stalls, crs, "小蓝棚迁址", s.stalls.idx)
    if moves is not None:
        layers["moves"] = moves.add_to(m)
    RegisterLayers(layers).add_to(m)
    folium.LayerControl(position="topleft", collapsed=True).add_to(m)
    # Served by the service (it has an API behind the search box): the card asks it for cases.
    cases_url = options.api_base + CONTENTS_PATH.format(code=code) if options.search_url else None
    HtmlControl(
        _card(snapshot, s, overview_href, cases=cases_url is not None), "topright", "gm-card"
    ).add_to(m)
    if cases_url is not None:
        UnitCases(cases_url, options.api_base + CASE_PAGE_PATH).add_to(m)
    rows = [
        (line_swatch(TARGET_STYLE["color"], 4, fill="#ffcdd2"), "本网格"),
        (line_swatch(NEIGHBOUR_STYLE["color"], 2, fill="#e3f2fd"), "相邻网格"),
        (line_swatch(ZONE_STYLE["color"], 2, dash=True), f"网格外 {km}范围"),
    ]
    if moves is not None:
        rows.append((line_swatch(MOVE_STYLE["color"], 2, dash=True), "迁址：原址 → 新址"))
    HtmlControl(
        legend("图例", rows, MARKER_LEGEND + report_link(options)), "bottomleft", "gm-legend"
    ).add_to(m)
    return m
