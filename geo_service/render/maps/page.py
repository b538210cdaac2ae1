"""The frame every map shares: basemaps for one CRS, our script, links to other basemaps,
and rendering to self-contained HTML that links only self-hosted assets."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import folium
import numpy as np
from branca.element import Element, Figure

from geo_service.core.crs import PointCRS
from geo_service.render.maps.assets import UnvendoredAsset, external_links, localise
from geo_service.render.maps.basemaps import (
    BASEMAP_LABELS,
    Basemap,
    TileSource,
    base_layers,
    display_crs,
)
from geo_service.render.maps.controls import HtmlControl, PageSetup
from geo_service.render.maps.display import display_points


@dataclass(frozen=True)
class PageOptions:
    """How a page is built and where it finds the rest of the service.

    ``static_base``: URL of ``geo_service/static/`` as seen from the page (``/static/`` when
    served, a relative path for files written by ``geo-service maps build``).
    ``api_base``: prefix of the service's URLs for data loaded on demand ("" = same origin).
    ``grid_href``: link from a grid to its own map, with ``{code}`` (None: no link).
    ``variants``: the same page built for other basemaps (label links in the page).
    ``report_href``: the residents' report page (随手拍), linked from the legend (None: none).
    ``search_url``: the service's search (by name and pinyin) behind the search box, on
    ``api_base`` (None: the box finds the page's own codes only).
    """

    basemap: Basemap = Basemap.amap
    tianditu_key: str | None = None
    static_base: str = "/static/"
    api_base: str = ""
    grid_href: str | None = None
    variants: Mapping[Basemap, str] = field(default_factory=dict)
    report_href: str | None = None
    search_url: str | None = None

    @property
    def crs(self) -> PointCRS:
        return display_crs(self.basemap)


def _tile_layer(source: TileSource, name: str, show: bool, control: bool) -> folium.TileLayer:
    return folium.TileLayer(
        tiles=source.url,
        attr=source.attribution,
        name=name,
        subdomains=source.subdomains or "abc",
        max_zoom=19,
        max_native_zoom=source.max_zoom,
        overlay=False,
        show=show,
        control=control,
    )


def _basemap_links(options: PageOptions) -> str:
    parts = []
    for basemap in Basemap:
        label = html.escape(BASEMAP_LABELS[basemap])
        if basemap is options.basemap:
            parts.append(f"<b>{label}</b>")
        elif basemap in options.variants:
            parts.append(f'<a href="{html.escape(options.variants[basemap])}">{label}</a>')
    crs = "GCJ-02" if options.crs is PointCRS.gcj02 else "WGS84"
    return f"底图：{' '.join(parts)}<br><small>坐标系 {crs}</small>"


def new_map(
    bounds: Sequence[float], options: PageOptions, title: str, max_zoom: int = 17
) -> folium.Map:
    """An empty map fitted to WGS84 ``bounds`` (minlon, minlat, maxlon, maxlat) with the base
    layers of ``options.basemap``."""
    lon, lat = display_points(
        np.array([bounds[0], bounds[2]]), np.array([bounds[1], bounds[3]]), options.crs
    )
    m = folium.Map(
        location=[float(lat.mean()), float(lon.mean())],
        zoom_start=13,
        tiles=None,
        control_scale=True,
    )
    root = m.get_root()
    assert isinstance(root, Figure)
    root.header.add_child(Element(f"<title>{html.escape(title)}</title>"), name="title")
    # No favicon request (it would be the page's only 404).
    root.header.add_child(Element('<link rel="icon" href="data:,">'), name="favicon")
    corners = [[float(lat[0]), float(lon[0])], [float(lat[1]), float(lon[1])]]
    setup: dict[str, object] = {
        "crs": options.crs.value,
        "basemap": options.basemap.value,
        "bounds": corners,
        "maxZoom": max_zoom,
    }
    if options.grid_href:
        setup["gridHref"] = options.grid_href
    if options.search_url:
        setup["searchUrl"] = options.api_base + options.search_url
    PageSetup(setup).add_to(m)
    for i, layer in enumerate(base_layers(options.basemap, options.tianditu_key)):
        if len(layer.tiles) == 1:
            _tile_layer(layer.tiles[0], layer.label, i == 0, True).add_to(m)
        else:  # imagery + annotation drawn together as one base layer
            group = folium.FeatureGroup(name=layer.label, overlay=False, show=i == 0)
            for j, source in enumerate(layer.tiles):
                _tile_layer(source, f"{layer.label} {j}", True, False).add_to(group)
            group.add_to(m)
    HtmlControl(
        f'<div class="gm-title">{html.escape(title)}</div>{_basemap_links(options)}',
        "bottomright",
        "gm-basemaps",
    ).add_to(m)
    return m


def legend(title: str, rows: Sequence[tuple[str, str]], extra: str = "", head: str = "") -> str:
    """Legend HTML: ``head``, then (swatch HTML, label) rows, then ``extra``."""
    body = "".join(
        f'<div class="gm-row">{swatch}<span>{html.escape(label)}</span></div>'
        for swatch, label in rows
    )
    return f"<h4>{html.escape(title)}</h4>{head}{body}{extra}"


def report_link(options: PageOptions) -> str:
    """A legend line linking to the report page, when the page is served with one."""
    if not options.report_href:
        return ""
    href = html.escape(options.report_href, quote=True)
    return (
        f'<div class="gm-row"><a href="{href}" target="_top">随手拍：发现问题，拍照反映 ›</a></div>'
    )


def line_swatch(color: str, weight: float, dash: bool = False, fill: str | None = None) -> str:
    style = f"border:{max(weight, 1):.0f}px {'dashed' if dash else 'solid'} {color};"
    if fill:
        style += f"background:{fill};"
    return f'<span class="gm-swatch" style="{style}"></span>'


def icon_swatch(css_class: str, text: str) -> str:
    return (
        f'<span class="gm-icon {css_class}" style="display:inline-block;min-width:24px;'
        f'height:22px;padding:0 3px">{html.escape(text)}</span>'
    )


def render_html(m: folium.Map, options: PageOptions) -> str:
    """The page as HTML, with every script and stylesheet served from ``options.static_base``."""
    root = m.get_root()
    localise(root, options.static_base)
    text = root.render()
    bad = external_links(text)
    if bad:
        raise UnvendoredAsset(f"page links assets on other hosts: {bad}")
    return text
