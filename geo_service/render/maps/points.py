"""Stalls and vendor clusters as map layers: compact rows in the page's CRS, markers built by the
page script (an icon per service for stalls), their radius discs, and where relocated ones went.

What a popup says is decided here, in Chinese, once for every map: the opening hours as the phone
pages read them (``core.hours.describe``, not the raw OSM string) and, for a facility that is not
open for business, why (暂停营业 / 已撤销 / 已迁至 … with where it went, ``facilities.destination``).
"""

from __future__ import annotations

from typing import Any

import folium
import numpy as np
import numpy.typing as npt
import shapely
from folium.plugins import MarkerCluster

from geo_service.analysis.facilities import destination
from geo_service.core import hours
from geo_service.core.crs import MetricProjection, PointCRS, geodesic_distance_m
from geo_service.core.schema import STATUS_TEXT, LayerName, Status, present
from geo_service.core.snapshot import PointLayer
from geo_service.render.maps.controls import GeoJsonLayer, PointsLayer
from geo_service.render.maps.display import discs, display_points, feature_collection

COLUMNS: dict[LayerName, tuple[str, ...]] = {
    LayerName.stalls: (
        "code",
        "name",
        "services",
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
MOVE_STYLE: dict[str, Any] = {"color": "#616161", "weight": 2, "dashArray": "4 6"}


def _distance_text(metres: float) -> str:
    return f"{metres:,.0f} 米" if metres < 1000 else f"{metres / 1000:.1f} 公里"


def moved_to_text(layer: PointLayer, i: int) -> str:
    """Where relocated facility ``i`` went, as an officer reads it: "已迁至 XLP-… 名称（地址），
    距原址约 600 米" (geodesic), or "已迁址，新址未登记" when the relocation does not say."""
    dest = destination(layer, i)
    if dest is None:
        return "已迁址，新址未登记"
    rec = layer.records[i]
    named = " ".join(str(dest[k]) for k in ("code", "name") if present(dest.get(k)))
    address = str(dest["address"]) if present(dest.get("address")) else ""
    where = f"{named}（{address}）" if named and address else named or address or "新址"
    far = float(geodesic_distance_m(rec["lon"], rec["lat"], dest["lon"], dest["lat"]))
    return f"已迁至 {where}，距原址约 {_distance_text(far)}"


def status_text(layer: PointLayer, i: int) -> str:
    """The facility's state in Chinese; a relocated one says where it went."""
    status = str(layer.records[i].get("status") or "")
    if status == Status.relocated.value:
        return moved_to_text(layer, i)
    return STATUS_TEXT.get(status, status)


def point_rows(
    layer: PointLayer,
    crs: PointCRS,
    idx: npt.NDArray[np.int64] | None = None,
    distance_m: npt.NDArray[np.float64] | None = None,
) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the facilities ``idx`` (all by default), lat/lon in ``crs``.

    ``hours_text`` is the Chinese reading of the hours; ``status_text`` is null for an active
    facility (the page says 正常营业) and the reason otherwise, with where a relocated one went.
    """
    if idx is None:
        idx = np.arange(len(layer), dtype=np.int64)
    lon, lat = display_points(layer.index.lon[idx], layer.index.lat[idx], crs)
    fields = [c for c in COLUMNS[layer.name] if c in layer.frame.columns]
    columns = ["lat", "lon", *fields, "hours_text", "status_text"]
    if distance_m is not None:
        columns.append("distance_m")
    records = layer.records
    texts: dict[Any, str] = {}  # a layer repeats a handful of distinct hours strings
    rows = []
    for k, i in enumerate(idx):
        rec = records[int(i)]
        raw = rec.get("hours")
        if raw not in texts:
            texts[raw] = hours.describe(raw if isinstance(raw, str) else None)
        active = rec.get("status") == Status.active.value
        row = [
            float(lat[k]),
            float(lon[k]),
            *(rec.get(f) for f in fields),
            texts[raw],
            None if active else status_text(layer, int(i)),
        ]
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


def relocation_layer(
    layer: PointLayer,
    crs: PointCRS,
    name: str,
    idx: npt.NDArray[np.int64] | None = None,
    show: bool = True,
) -> GeoJsonLayer | None:
    """Dashed lines from each relocated facility of ``idx`` to where it went (None when no
    relocation among them records a destination)."""
    if idx is None:
        idx = np.arange(len(layer), dtype=np.int64)
    status = layer.frame["status"].to_numpy(dtype=object)[idx]
    geoms, props = [], []
    for i in idx[status == Status.relocated.value]:
        dest = destination(layer, int(i))
        if dest is None:
            continue
        rec = layer.records[int(i)]
        geoms.append(shapely.LineString([(rec["lon"], rec["lat"]), (dest["lon"], dest["lat"])]))
        label = f"{rec['code']} {rec['name']} {moved_to_text(layer, int(i))}"
        # Not the facility's own code: GeoMaps.register keys markers by code.
        props.append({"code": f"move:{rec['code']}", "label": label})
    if not geoms:
        return None
    data = feature_collection(np.array(geoms, dtype=object), props, crs)
    return GeoJsonLayer(data, name, MOVE_STYLE, show=show, on_each_feature="GeoMaps.bindLabel")
