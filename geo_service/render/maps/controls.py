"""Folium elements for what the maps add on top of Leaflet (code in ``static/maps/geomaps.js``).

Data goes into the page as compact JSON (UTF-8, no ``\\uXXXX`` escapes for Chinese text), and the
markers and popups are built by one shared script instead of per-feature generated code, which
keeps a page with thousands of features small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from branca.element import Element, MacroElement
from folium.elements import JSCSSMixin
from folium.map import Layer
from folium.template import Template

from geo_service.render.maps.assets import LOCAL_PREFIX

# Where a legend lists the markers: the page script fills it with one row per marker style the
# page actually draws (``GeoMaps.markerLegend``), from the same table that styles the markers, so
# a legend cannot miss a colour. A legend without it gets the rows at its end.
MARKER_LEGEND = '<div class="gm-marker-rows"></div>'


def js_value(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


class PageSetup(JSCSSMixin):
    """Links the maps' own script and stylesheet and tells the script the page's CRS."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.setup({{ this._parent.get_name() }}, {{ this.options_js }});
        {% endmacro %}
        """
    )

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__()
        self._name = "PageSetup"
        self.default_js = [
            ("coords_js", LOCAL_PREFIX + "resident/coords.js"),
            ("geomaps_js", LOCAL_PREFIX + "maps/geomaps.js"),
        ]
        self.default_css = [("geomaps_css", LOCAL_PREFIX + "maps/geomaps.css")]
        self.options_js = js_value(dict(options))


class GeoJsonLayer(Layer):
    """An ``L.geoJSON`` layer whose features get popups/tooltips from ``GeoMaps.bindUnit``.

    ``style`` is a Leaflet path style, or the name of a feature property holding one.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJSON({{ this.data_js }}, {
            style: {{ this.style_js }},
            onEachFeature: {{ this.on_each_feature }}
        });
        {% endmacro %}
        """
    )

    def __init__(
        self,
        data: Mapping[str, Any],
        name: str,
        style: Mapping[str, Any] | str,
        show: bool = True,
        on_each_feature: str = "GeoMaps.bindUnit",
        control: bool = True,
    ) -> None:
        super().__init__(name=name, overlay=True, control=control, show=show)
        self._name = "GeoJsonLayer"
        self.data_js = js_value(data)
        self.count = len(data.get("features", []))
        if isinstance(style, str):
            self.style_js = f"function (f) {{ return f.properties[{js_value(style)}]; }}"
        else:
            self.style_js = js_value(dict(style))
        self.on_each_feature = on_each_feature


class PointsLayer(MacroElement):
    """Markers from rows of ``columns`` (with ``lat``/``lon`` in the page's CRS), added to the
    parent layer (a MarkerCluster or a FeatureGroup)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.addPoints({{ this._parent.get_name() }}, {{ this.kind_js }},
            {{ this.columns_js }}, {{ this.rows_js }});
        {% endmacro %}
        """
    )

    def __init__(self, kind: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        super().__init__()
        self._name = "PointsLayer"
        self.kind_js = js_value(kind)
        self.columns_js = js_value(list(columns))
        self.rows_js = js_value([list(r) for r in rows])
        self.count = len(rows)


class HtmlControl(MacroElement):
    """A Leaflet control holding ready-made HTML (legend, officer's card, basemap links)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.htmlControl({{ this._parent.get_name() }}, {{ this.position_js }},
            {{ this.html_js }}, {{ this.cls_js }});
        {% endmacro %}
        """
    )

    def __init__(self, html: str, position: str = "bottomleft", css_class: str = "") -> None:
        super().__init__()
        self._name = "HtmlControl"
        self.html_js = js_value(html)
        self.position_js = js_value(position)
        self.cls_js = js_value(css_class)


class RegisterLayers(MacroElement):
    """Names the page's layers for ``GeoMaps.count``/search (and for the browser tests)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {%- for name, element in this.layers.items() %}
        GeoMaps.register({{ name|tojson }}, {{ element.get_name() }});
        {%- endfor %}
        {% endmacro %}
        """
    )

    def __init__(self, layers: Mapping[str, Element]) -> None:
        super().__init__()
        self._name = "RegisterLayers"
        self.layers = dict(layers)


class SearchControl(MacroElement):
    """One box for grid codes and stall / vendor-cluster numbers."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.searchControl({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self) -> None:
        super().__init__()
        self._name = "SearchControl"


class UnitCases(MacroElement):
    """Fills the card's case line with the unit's open cases, read from the service when the
    page opens (``/api/v1/units/{code}/contents``): the page is cached, the cases are not."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.unitCases({{ this.url_js }}, {{ this.case_href_js }});
        {% endmacro %}
        """
    )

    def __init__(self, url: str, case_href: str) -> None:
        super().__init__()
        self._name = "UnitCases"
        self.url_js = js_value(url)
        self.case_href_js = js_value(case_href)  # a case's page, with {id}


class ViewportLoader(MacroElement):
    """Fills a GeoJsonLayer with the features in view, fetched from the service by bbox."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        GeoMaps.viewportLoader({{ this._parent.get_name() }}, {{ this.layer.get_name() }},
            {{ this.options_js }});
        {% endmacro %}
        """
    )

    def __init__(self, layer: Element, url: str, basemap: str, min_zoom: int, limit: int) -> None:
        super().__init__()
        self._name = "ViewportLoader"
        self.layer = layer
        self.options_js = js_value(
            {"url": url, "basemap": basemap, "minZoom": min_zoom, "limit": limit}
        )
