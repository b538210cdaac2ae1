"""How a served map page is built: the basemap chosen, links to its other basemaps, to grid
maps and to the report page. Shared by every router that serves Folium pages."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from geo_service.core.settings import Settings
from geo_service.render.maps.basemaps import Basemap, available, check_available
from geo_service.render.maps.page import PageOptions


def page_options(
    settings: Settings, basemap: Basemap | None, declared: Mapping[str, str]
) -> PageOptions:
    """Page options; the links to the other basemaps repeat only the declared parameters, so
    an undeclared one can neither reach the page nor its cache key."""
    chosen = Basemap(basemap or settings.basemap)
    check_available(chosen, settings.tianditu_key)
    # Relative links ("?...", declared parameters only): the cached page depends neither on the
    # host it was asked on nor on stray parameters.
    variants = {
        b: "?" + urlencode({**declared, "basemap": b.value})
        for b in available(settings.tianditu_key)
        if b is not chosen
    }
    return PageOptions(
        basemap=chosen,
        tianditu_key=settings.tianditu_key,
        static_base="/static/",
        grid_href=f"/maps/grids/{{code}}?basemap={chosen.value}",
        variants=variants,
        report_href="/report",
        search_url="/api/v1/search",
    )
