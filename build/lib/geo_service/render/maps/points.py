"""Stalls and vendor clusters as map layers: compact rows in the page's CRS, markers built by the
page script (an icon per service for stalls), and their radius discs."""

from __future__ import annotations

from typing import Any

import folium
import numpy as np
import numpy.typing as npt
from folium.plugins import MarkerCluster

from geo_service.core.crs import MetricProjection, PointCRS
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import PointLayer
from geo_service.render.maps.controls import GeoJsonLayer, PointsLayer
from geo_service.render.maps.display import discs, display_points, feature_collection

COLUMNS: dict[LayerName, tuple[str, ...]] = {
    LayerName.stalls: (
        "code",
        "name",
        "services",
        "hours",
        "status",
        "address",
        "operator",
        "phone",
        "grid_code",
    ),
    LayerName.vendor_clusters: (
        "code",
        "name",
        "kind",
        "hours",
        "pitches",
        "status",
        "address",
        "operator",
        "grid_code",
    ),
}
KINDS: dict[LayerName, str] = {
    LayerName.stalls: "stall",
    LayerName.vendor_clusters: "vendor_cluster",
}
TITLES: dict[LayerName, str] = {LayerName.stalls: "小蓝棚", LayerName.vendor_clusters: "便民摊点群"}
DISC_STYLE: dict[str, Any] = {
    "color": "#ef6c00",
    "weight": 1,
    "fillColor": "#ffb74d",
    "fillOpacity": 0.12,
}


def point_rows(
    layer: PointLayer,
    crs: PointCRS,
    idx: npt.NDArray[np.int64] | None = None,
    distance_m: npt.NDArray[np.float64] | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the facilities ``idx`` (all by default), lat/lon in ``crs``."""
    if idx is None:
        idx = np.arange(len(layer), dtype=np.int64)
    lon, lat = display_points(layer.index.lon[idx], layer.index.lat[idx], crs)
    fields = [c for c in COLUMNS[layer.name] if c in layer.frame.columns]
    columns = ["lat", "lon", *fields]
    if distance_m is not None:
        columns.append("distance_m")
    records = layer.records
    rows = []
    for k, i in enumerate(idx):
        rec = records[int(i)]
        row = [float(lat[k]), float(lon[k]), *(rec.get(f) for f in fields)]
        if distance_m is not None:
            row.append(round(float(distance_m[k]), 1))
        rows.append(row)
    return columns, rows


def marker_layer(
    layer: PointLayer,
    crs: PointCRS,
    name: str,
    idx: npt.NDArray[np.int64] | None = None,
    distance_m: npt.NDArray[np.float64] | None = None,
    clustered: bool = True,
    show: bool = True,
) -> folium.FeatureGroup | MarkerCluster:
    group: folium.FeatureGroup | MarkerCluster
    if clustered:
        group = MarkerCluster(
            name=name, show=show, options={"disableClusteringAtZoom": 17, "chunkedLoading": True}
        )
    else:
        group = folium.FeatureGroup(name=name, show=show)
    columns, rows = point_rows(layer, crs, idx, distance_m)
    PointsLayer(KINDS[layer.name], columns, rows).add_to(group)
    return group


def disc_layer(
    layer: PointLayer,
    radius_m: float,
    projection: MetricProjection,
    crs: PointCRS,
    name: str,
    idx: npt.NDArray[np.int64] | None = None,
    show: bool = False,
) -> GeoJsonLayer:
    """Discs of ``radius_m`` metres around the facilities (drawn in the metric CRS)."""
    if idx is None:
        idx = np.arange(len(layer), dtype=np.int64)
    geoms = discs(layer.index.lon[idx], layer.index.lat[idx], radius_m, projection)
    records = layer.records
    props = [
        {
            "code": records[int(i)]["code"],
            "label": f"{records[int(i)]['code']} {records[int(i)]['name']} · {radius_m:g} 米范围",
        }
        for i in idx
    ]
    data = feature_collection(geoms, props, crs)
    return GeoJsonLayer(data, name, DISC_STYLE, show=show, on_each_feature="GeoMaps.bindLabel")
