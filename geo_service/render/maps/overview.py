"""The overview map: the whole city for officers and planners.

Districts, streets, communities and grids are switchable layers with Chinese tooltips and popups;
stalls are clustered with an icon per service (grey when suspended, dashed at the old spot of a
relocated one, with a line to where it went); vendor clusters have toggleable 1 km discs; a legend
that explains every marker style drawn, one search box for codes, names and pinyin, and a
"locate me" control.

Size: grids are simplified by 2 m (``coverage_simplify`` keeps shared edges shared) and written
with 6 decimals. Up to ``INLINE_GRID_LIMIT`` grids are inlined; a larger city inlines only the
higher levels and the page loads the grids in view from the service (``viewport.py``).
"""

from __future__ import annotations

import folium
from branca.element import Element
from folium.plugins import LocateControl

from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.controls import (
    MARKER_LEGEND,
    GeoJsonLayer,
    HtmlControl,
    RegisterLayers,
    SearchControl,
    ViewportLoader,
)
from geo_service.render.maps.page import (
    PageOptions,
    legend,
    line_swatch,
    new_map,
    report_link,
)
from geo_service.render.maps.points import (
    DISC_STYLE,
    MOVE_STYLE,
    disc_layer,
    marker_layer,
    relocation_layer,
)
from geo_service.render.maps.units import LEVEL_STYLES, LEVEL_TITLES, unit_layer
from geo_service.render.maps.viewport import DEFAULT_LIMIT, MIN_ZOOM

INLINE_GRID_LIMIT = 5000
CLUSTER_THRESHOLD = 200  # cluster a point layer once it has more markers than this
VENDOR_RADIUS_M = 1000.0


def _legend(radius_m: float, viewport: bool, moves: bool, options: PageOptions) -> str:
    """Unit outlines and shapes; the markers' rows are filled in by the page (``MARKER_LEGEND``)
    from the styles it draws."""
    rows = [
        (
            line_swatch(
                s["color"], s["weight"], bool(s.get("dashArray")), s.get("fillColor") and "#e3f2fd"
            ),
            LEVEL_TITLES[level],
        )
        for level, s in LEVEL_STYLES.items()
    ]
    rows.append(
        (
            line_swatch(DISC_STYLE["color"], 1, fill="#ffe0b2"),
            f"摊点群 {radius_m / 1000:g} 公里范围",
        )
    )
    if moves:
        rows.append((line_swatch(MOVE_STYLE["color"], 2, dash=True), "迁址：原址 → 新址"))
    note = f"<small>网格在 {MIN_ZOOM} 级以上按视野加载</small>" if viewport else ""
    return legend("图例", rows, MARKER_LEGEND + note + report_link(options))


def overview_map(
    snapshot: Snapshot,
    options: PageOptions,
    inline_grid_limit: int | None = None,
    radius_m: float = VENDOR_RADIUS_M,
) -> folium.Map:
    """The overview; grids are inlined up to ``inline_grid_limit`` (``INLINE_GRID_LIMIT``)."""
    crs = options.crs
    if inline_grid_limit is None:
        inline_grid_limit = INLINE_GRID_LIMIT
    m = new_map(snapshot.bounds, options, f"{snapshot.name} 网格总览")
    viewport = len(snapshot.grids) > inline_grid_limit
    if viewport:
        grids = GeoJsonLayer(
            {"type": "FeatureCollection", "features": []},
            f"网格（{len(snapshot.grids)}，按视野加载）",
            LEVEL_STYLES["grid"],
        )
    else:
        grids = unit_layer(snapshot, "grid", crs, show=True)
    layers: dict[str, Element] = {"grids": grids.add_to(m)}
    for level, key, show in (
        ("community", "communities", False),
        ("street", "streets", False),
        ("district", "districts", True),
    ):
        layers[key] = unit_layer(snapshot, level, crs, show=show).add_to(m)
    clusters = snapshot.vendor_clusters
    layers["vendor_cluster_discs"] = disc_layer(
        clusters, radius_m, snapshot.projection, crs, f"摊点群 {radius_m / 1000:g} 公里范围"
    ).add_to(m)
    layers["vendor_clusters"] = marker_layer(
        clusters, crs, f"便民摊点群（{len(clusters)}）", clustered=len(clusters) > CLUSTER_THRESHOLD
    ).add_to(m)
    layers["stalls"] = marker_layer(
        snapshot.stalls, crs, f"小蓝棚（{len(snapshot.stalls)}）"
    ).add_to(m)
    moves = relocation_layer(snapshot.stalls, crs, "小蓝棚迁址")
    if moves is not None:
        layers["moves"] = moves.add_to(m)
    if viewport:
        url = f"{options.api_base}/maps/data/grids"
        ViewportLoader(grids, url, options.basemap.value, MIN_ZOOM, DEFAULT_LIMIT).add_to(m)
    RegisterLayers(layers).add_to(m)
    SearchControl().add_to(m)
    LocateControl(
        position="topleft",
        strings={"title": "定位我的位置", "popup": "您在这里（误差 {distance} {unit}）"},
        keepCurrentZoomLevel=False,
        flyTo=False,
    ).add_to(m)
    folium.LayerControl(position="topright", collapsed=False).add_to(m)
    HtmlControl(
        _legend(radius_m, viewport, moves is not None, options), "bottomleft", "gm-legend"
    ).add_to(m)
    return m
