"""The overview map: the whole city for officers and planners.

Districts, streets, communities and grids are switchable layers with Chinese tooltips and popups;
stalls are clustered with an icon per service; vendor clusters have toggleable 1 km discs; a
legend, one search box for grid codes and stall numbers, and a "locate me" control.

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
    GeoJsonLayer,
    HtmlControl,
    RegisterLayers,
    SearchControl,
    ViewportLoader,
)
from geo_service.render.maps.page import (
    PageOptions,
    icon_swatch,
    legend,
    line_swatch,
    new_map,
    report_link,
)
from geo_service.render.maps.points import DISC_STYLE, disc_layer, marker_layer
from geo_service.render.maps.units import LEVEL_STYLES, LEVEL_TITLES, unit_layer
from geo_service.render.maps.viewport import DEFAULT_LIMIT, MIN_ZOOM

INLINE_GRID_LIMIT = 5000
CLUSTER_THRESHOLD = 200  # cluster a point layer once it has more markers than this
VENDOR_RADIUS_M = 1000.0


def _legend(radius_m: float, viewport: bool, options: PageOptions) -> str:
    rows = [
        (
            line_swatch(
                s["color"], s["weight"], bool(s.get("dashArray")), s.get("fillColor") and "#e3f2fd"
            ),
            LEVEL_TITLES[level],
        )
        for level, s in LEVEL_STYLES.items()
    ]
    rows += [
        (icon_swatch("gm-stall", "鞋"), "小蓝棚：修鞋"),
        (icon_swatch("gm-stall", "车"), "小蓝棚：修车"),
        (icon_swatch("gm-stall", "锁"), "小蓝棚：修锁配钥匙"),
        (icon_swatch("gm-inactive", "鞋"), "暂停 / 迁移 / 撤销"),
        (icon_swatch("gm-vendor", "集"), "便民摊点群"),
        (
            line_swatch(DISC_STYLE["color"], 1, fill="#ffe0b2"),
            f"摊点群 {radius_m / 1000:g} 公里范围",
        ),
    ]
    note = f"<small>网格在 {MIN_ZOOM} 级以上按视野加载</small>" if viewport else ""
    return legend("图例", rows, note + report_link(options))


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
    HtmlControl(_legend(radius_m, viewport, options), "bottomleft", "gm-legend").add_to(m)
    return m
