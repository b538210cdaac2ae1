"""The coverage map for planners: which places lie within ``radius_m`` of a stall or vendor
cluster (``geo_service.analysis.coverage``), where the gaps are, and what candidate sites would change.

Units (grids, communities, streets or districts) are coloured by the share of their population
within reach (population is spread evenly over its grid, so for grids this equals the area share);
with candidate sites the colours and the summary show the situation *after* adding them
(``geo_service.analysis.whatif``), the candidates and their discs are drawn, and changed units are outlined.
Only active facilities count unless asked otherwise (what serves residents today). The gaps are
the pieces of ``geo_service.analysis.gaps`` (one grid each, with an id, most people first).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import folium
import numpy as np
import numpy.typing as npt
import shapely
from branca.colormap import LinearColormap, StepColormap
from branca.element import Element

from geo_service.analysis.coverage import (
    CoverageInputError,
    aggregate,
    compute_coverage,
    facility_indices,
)
from geo_service.analysis.gaps import GapPieces, gap_pieces
from geo_service.analysis.whatif import WhatIfResult, what_if
from geo_service.core.crs import MetricProjection, PointCRS
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot
from geo_service.render.maps import overview
from geo_service.render.maps.controls import GeoJsonLayer, HtmlControl, PointsLayer, RegisterLayers
from geo_service.render.maps.display import discs, display_points, feature_collection
from geo_service.render.maps.page import PageOptions, icon_swatch, legend, line_swatch, new_map
from geo_service.render.maps.points import DISC_STYLE, TITLES, disc_layer, marker_layer
from geo_service.render.maps.units import LEVEL_TITLES, unit_features

RATIO_STEPS = [i / 10 for i in range(11)]
COLORMAP: StepColormap = LinearColormap(
    ["#d73027", "#fc8d59", "#fee08b", "#91cf60", "#1a9850"], vmin=0.0, vmax=1.0
).to_step(index=RATIO_STEPS)
SHAPE_TOLERANCE_M = 2.0  # covered area and gaps are simplified by this much for display
MAX_GAPS_DRAWN = 5000
"""Gap pieces drawn on one page, most people first (the default data has at most ~1,400; a
city of 100,000 grids could have as many pieces, tens of megabytes of page)."""
GAP_STYLE: dict[str, Any] = {
    "color": "#b71c1c",
    "weight": 1,
    "fillColor": "#e53935",
    "fillOpacity": 0.35,
}
COVERED_STYLE: dict[str, Any] = {
    "color": "#0d47a1",
    "weight": 1,
    "fillColor": "#42a5f5",
    "fillOpacity": 0.2,
}
CANDIDATE_DISC_STYLE: dict[str, Any] = {
    "color": "#2e7d32",
    "weight": 2,
    "dashArray": "5 4",
    "fillColor": "#a5d6a7",
    "fillOpacity": 0.15,
}


def _unit_style(ratio: float, changed: bool) -> dict[str, Any]:
    return {
        "color": "#1b5e20" if changed else "#616161",
        "weight": 3 if changed else 0.6,
        "fillColor": COLORMAP.rgb_hex_str(min(max(ratio, 0.0), 1.0)),
        "fillOpacity": 0.55,
    }


def _display_shapes(
    geoms: npt.NDArray[np.object_], projection: MetricProjection
) -> npt.NDArray[np.object_]:
    metric = shapely.simplify(projection.project(geoms), SHAPE_TOLERANCE_M, preserve_topology=True)
    return np.asarray(projection.unproject(metric), dtype=object)


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _figures_rows(overall: dict[str, float]) -> list[tuple[str, str]]:
    return [
        ("覆盖面积", f"{overall['covered_m2'] / 1e6:,.2f} / {overall['area_m2'] / 1e6:,.2f} km²"),
        ("面积覆盖率", _pct(overall["area_ratio"])),
        (
            "覆盖人口",
            f"{overall['covered_population']:,.0f} / {overall['population']:,.0f}",
        ),
        ("人口覆盖率", _pct(overall["population_ratio"])),
    ]


def _summary(
    title: str,
    overall: dict[str, float],
    wi: WhatIfResult | None,
    gaps: GapPieces,
    counted: str,
) -> str:
    e = html.escape
    rows = _figures_rows(overall)
    if wi is not None:
        after = dict(_figures_rows(wi.after))
        rows = [(k, f"{v} → <b>{after[k]}</b>") for k, v in rows]
        rows.append(("新增覆盖人口", f"{wi.gain['covered_population']:,.0f}"))
        rows.append(("受影响单元", str(len(wi.units))))
    pieces = gaps.frame
    rows.append(
        (
            "未覆盖片区（现状）",
            f"{len(pieces)} 处，{float(pieces['population'].sum()):,.0f} 人",
        )
    )
    if gaps.dropped:
        rows.append(
            (
                "未列出的碎片",
                f"{gaps.dropped} 处小于 {gaps.min_area_m2:,.0f} m²，"
                f"共 {gaps.dropped_area_m2:,.0f} m²",
            )
        )
    rows.append(("计入设施", e(counted)))
    table = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    note = "（现状 → 增加候选点后）" if wi is not None else ""
    return f"<h4>{e(title)}</h4><small>{note}</small><table class='gm-table'>{table}</table>"


def _gap_label(row: dict[str, Any]) -> str:
    """One gap piece as a planner reads it: id, where, how large, how many people, how far."""
    where = row.get("grid_name") or row["grid_code"]
    if row.get("street_name"):
        where = f"{row['street_name']} {where}"
    near = row["nearest_m"]
    far = f"，距最近设施 {near:,.0f} 米" if near == near else ""
    return (
        f"未覆盖片区 {row['gap_id']}：{where}，{row['area_m2']:,.0f} m²，"
        f"约 {row['population']:,.0f} 人{far}"
    )


def _legend(radius_m: float, what_if_on: bool) -> str:
    mids = [(a + b) / 2 for a, b in pairwise(RATIO_STEPS)]
    swatches = "".join(
        f'<span class="gm-swatch" title="{v - 0.05:.0%}–{v + 0.05:.0%}" '
        f'style="width:14px;background:{COLORMAP.rgb_hex_str(v)}"></span>'
        for v in mids
    )
    scale = (
        f'<div class="gm-row">{swatches}</div><div class="gm-row"><small>0%</small>'
        f'<small style="margin-left:auto">100%</small></div>'
    )
    rows = [
        (line_swatch(GAP_STYLE["color"], 1, fill="#ef9a9a"), "未覆盖片区"),
        (line_swatch(COVERED_STYLE["color"], 1, fill="#bbdefb"), "已覆盖范围"),
        (line_swatch(DISC_STYLE["color"], 1, fill="#ffe0b2"), f"设施 {radius_m:g} 米范围"),
    ]
    if what_if_on:
        rows += [
            (icon_swatch("gm-candidate", "＋"), "候选点"),
            (
                line_swatch(CANDIDATE_DISC_STYLE["color"], 2, dash=True, fill="#c8e6c9"),
                f"候选点 {radius_m:g} 米范围",
            ),
            (line_swatch("#1b5e20", 3), "覆盖率变化的单元"),
        ]
    return legend("人口覆盖率", rows, head=scale)


def coverage_map(
    snapshot: Snapshot,
    options: PageOptions,
    layer: str,
    radius_m: float,
    by: str | None = None,
    service: str | None = None,
    active_only: bool = True,
    add_lon: Sequence[float] | npt.NDArray[np.float64] = (),
    add_lat: Sequence[float] | npt.NDArray[np.float64] = (),
) -> folium.Map:
    """Coverage of ``layer`` within ``radius_m`` by ``by`` units (default: grids, or
    communities for a city too large to draw every grid), with candidate sites (WGS84) if any.
    Only active facilities count unless ``active_only=False``. Bad parameters raise
    ``geo_service.analysis.coverage.CoverageInputError``."""
    limit = overview.INLINE_GRID_LIMIT
    too_many = len(snapshot.grids) > limit
    by = by or ("community" if too_many else "grid")
    if by == "grid" and too_many:
        raise CoverageInputError(
            f"{len(snapshot.grids):,} grids are too many to draw on one page "
            f"(at most {limit:,}); use by=community, street or district",
            "by",
        )
    crs = options.crs
    result = compute_coverage(snapshot, layer, radius_m, by, service, active_only=active_only)
    points = snapshot.points(layer)
    wi: WhatIfResult | None = None
    table = result.units
    changed: set[str] = set()
    if len(add_lon):
        wi = what_if(
            snapshot,
            layer,
            radius_m,
            add_lon,
            add_lat,
            by=by,
            service=service,
            active_only=active_only,
        )
        covered = result.grid.covered_m2.copy()
        covered[wi.grids] = wi.covered_after
        table = aggregate(snapshot, covered, by)
        changed = set(wi.units["code"])
    geoms, props = unit_features(snapshot, by)
    codes = table["code"].to_numpy(dtype=object)
    if [p["code"] for p in props] != list(codes):
        raise RuntimeError("coverage units and map units disagree")  # both are in code order
    for p, area_r, pop_r, cpop in zip(
        props,
        table["area_ratio"],
        table["population_ratio"],
        table["covered_population"],
        strict=True,
    ):
        p["ratio"] = round(float(area_r), 4)
        p["pop_ratio"] = round(float(pop_r), 4)
        p["covered_population"] = round(float(cpop))
        p["style"] = _unit_style(float(pop_r), p["code"] in changed)

    what = TITLES[LayerName(layer)] + (f"（{service}）" if service else "")
    title = f"{what} {radius_m:g} 米覆盖分析 · 按{LEVEL_TITLES[by]}"
    bounds = snapshot.bounds
    m = new_map(bounds, options, title)
    units = GeoJsonLayer(
        feature_collection(geoms, props, crs), f"{LEVEL_TITLES[by]}覆盖率（{len(props)}）", "style"
    )
    layers: dict[str, Element] = {"units": units.add_to(m)}
    covered_geom = _display_shapes(np.array([result.covered], dtype=object), snapshot.projection)
    layers["covered"] = GeoJsonLayer(
        feature_collection(
            covered_geom,
            [{"code": "covered", "label": f"已覆盖 {result.overall['covered_m2'] / 1e6:,.2f} km²"}],
            crs,
        ),
        "已覆盖范围",
        COVERED_STYLE,
        show=False,
        on_each_feature="GeoMaps.bindLabel",
    ).add_to(m)
    gaps = gap_pieces(snapshot, result.grid)
    shown = gaps.frame.head(MAX_GAPS_DRAWN)
    gap_props = [
        {"code": row["gap_id"], "label": _gap_label(row)}
        for row in shown.drop(columns="geometry").to_dict("records")
    ]
    gap_title = (
        f"未覆盖片区（{len(shown)}）"
        if len(shown) == len(gaps.frame)
        else f"未覆盖片区（人口最多的 {len(shown):,} 处，共 {len(gaps.frame):,} 处）"
    )
    layers["gaps"] = GeoJsonLayer(
        feature_collection(
            _display_shapes(shown.geometry.to_numpy(), snapshot.projection), gap_props, crs
        ),
        gap_title,
        GAP_STYLE,
        on_each_feature="GeoMaps.bindLabel",
    ).add_to(m)
    fac = result.grid.facilities
    layers["discs"] = disc_layer(
        points, radius_m, snapshot.projection, crs, f"设施 {radius_m:g} 米范围", idx=fac
    ).add_to(m)
    layers["facilities"] = marker_layer(
        points, crs, f"{what}（{len(fac)}）", idx=fac, clustered=len(fac) > 100
    ).add_to(m)
    if wi is not None:
        layers.update(_candidate_layers(m, snapshot, wi, radius_m, crs))
    RegisterLayers(layers).add_to(m)
    folium.LayerControl(position="topleft", collapsed=True).add_to(m)
    counted = _counted(snapshot, layer, service, active_only, len(fac))
    HtmlControl(_summary(title, result.overall, wi, gaps, counted), "topright", "gm-card").add_to(m)
    HtmlControl(_legend(radius_m, wi is not None), "bottomleft", "gm-legend").add_to(m)
    return m


def _counted(snapshot: Snapshot, layer: str, service: str | None, active_only: bool, n: int) -> str:
    """Which facilities the figures count, and how many were left out."""
    if not active_only:
        return f"{n} 处（含暂停、迁址，不含撤销）"
    others = len(facility_indices(snapshot, layer, service, active_only=False)) - n
    return f"{n} 处在用" + (f"（暂停、迁址 {others} 处未计入）" if others else "")


def _candidate_layers(
    m: folium.Map, snapshot: Snapshot, wi: WhatIfResult, radius_m: float, crs: PointCRS
) -> dict[str, Element]:
    lon = wi.added["lon"].to_numpy(dtype=np.float64)
    lat = wi.added["lat"].to_numpy(dtype=np.float64)
    names = [f"候选{k + 1}" for k in range(len(lon))]
    circle = GeoJsonLayer(
        feature_collection(
            discs(lon, lat, radius_m, snapshot.projection),
            [{"code": n, "label": f"{n} {radius_m:g} 米范围"} for n in names],
            crs,
        ),
        f"候选点 {radius_m:g} 米范围",
        CANDIDATE_DISC_STYLE,
        on_each_feature="GeoMaps.bindLabel",
    ).add_to(m)
    x, y = display_points(lon, lat, crs)
    rows = [
        [float(y[k]), float(x[k]), names[k], round(float(lon[k]), 7), round(float(lat[k]), 7), g]
        for k, g in enumerate(wi.added["grid_code"])
    ]
    group = folium.FeatureGroup(name=f"候选点（{len(rows)}）")
    PointsLayer(
        "candidate", ["lat", "lon", "code", "lon_wgs84", "lat_wgs84", "grid_code"], rows
    ).add_to(group)
    return {"candidate_discs": circle, "candidates": group.add_to(m)}
