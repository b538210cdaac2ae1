"""Interactive maps for officers, planners and residents (HTML built by ``geo_service.render.maps``).

Every page is drawn in one coordinate system, chosen by ``basemap``: ``amap`` (default, GCJ-02)
or ``osm`` / ``tianditu`` (WGS84); the page links to its other-basemap variants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from geo_service.core.crs import PointCRS
from geo_service.core.errors import quote
from geo_service.core.schema import Level
from geo_service.render.maps.basemaps import Basemap
from geo_service.render.maps.coverage import coverage_map
from geo_service.render.maps.grid import grid_map
from geo_service.render.maps.overview import overview_map
from geo_service.render.maps.page import PageOptions, render_html
from geo_service.render.maps.viewport import DEFAULT_LIMIT, grid_by_code, grids_in_view
from geo_service.web.deps import CRS_HELP, HeavyDep, SettingsDep, SnapshotDep, parse_bbox
from geo_service.web.errors import bad_request, not_found
from geo_service.web.mapoptions import page_options
from geo_service.web.models import MapGrids
from geo_service.web.pagecache import PageCache
from geo_service.web.params import GRID_CODE, CoverageQueryDep, parse_sites, sites_of
from geo_service.web.responses import GeoJSONResponse
from geo_service.web.security import map_policy

router = APIRouter(prefix="/maps", tags=["maps"])

BASEMAP_HELP = (
    "Basemap, and with it the page's coordinate system: amap (高德, GCJ-02; fast in China, no "
    "key), tianditu (天地图, WGS84; needs GEO_SERVICE_TIANDITU_KEY) or osm (WGS84)"
)
BasemapQuery = Annotated[Basemap | None, Query(description=BASEMAP_HELP)]

Declared = dict[str, str]


def get_pages(request: Request) -> PageCache[MapPage]:
    pages: PageCache[MapPage] = request.app.state.pages
    return pages


@dataclass(frozen=True)
class MapPage:
    """A built page and its CSP (hashes of its inline scripts, computed once per build)."""

    html: str
    csp: str

    @classmethod
    def of(cls, html: str) -> MapPage:
        return cls(html, map_policy(html))


PagesDep = Annotated[PageCache[MapPage], Depends(get_pages)]


def _page_key(kind: str, options: PageOptions, declared: Declared) -> tuple[str, ...]:
    """Cache key: the page kind, its declared parameters and the basemap (all the HTML
    depends on)."""
    return (
        kind,
        *(f"{k}={v}" for k, v in sorted(declared.items())),
        options.basemap.value,
        options.tianditu_key or "",
    )


def _html(page: MapPage) -> HTMLResponse:
    return HTMLResponse(
        page.html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": page.csp}
    )


@router.get("/overview", response_class=HTMLResponse, summary="The whole city")
async def overview(
    snap: SnapshotDep, settings: SettingsDep, pages: PagesDep, basemap: BasemapQuery = None
) -> HTMLResponse:
    """Districts, streets, communities and grids (switchable, with popups), stalls clustered
    with an icon per service, vendor clusters with 1 km discs, search and "locate me"."""
    options = page_options(settings, basemap, {})
    key = _page_key("overview", options, {})
    page = await pages.get(
        snap, key, lambda: MapPage.of(render_html(overview_map(snap, options), options))
    )
    return _html(page)


@router.get("/grids/{code}", response_class=HTMLResponse, summary="One grid and its officer")
async def grid(
    snap: SnapshotDep,
    settings: SettingsDep,
    pages: PagesDep,
    code: Annotated[str, GRID_CODE],
    basemap: BasemapQuery = None,
) -> HTMLResponse:
    """The grid's outline and neighbours, stalls and vendor clusters inside or within 1 km of its
    edge, and the officer's card."""
    if not (len(code) == 15 and code.isdigit()):
        raise bad_request(f"a grid code is 15 digits, got {quote(code)}", "code")
    if code not in snap.grids.position:
        raise not_found(f"unknown grid code {quote(code)}")
    options = page_options(settings, basemap, {})
    overview_href = f"/maps/overview?basemap={options.basemap.value}"

    def build() -> MapPage:
        html = render_html(grid_map(snap, code, options, overview_href=overview_href), options)
        return MapPage.of(html)

    return _html(await pages.get(snap, _page_key("grid", options, {"code": code}), build))


@router.get("/coverage", response_class=HTMLResponse, summary="Coverage, gaps and what-if sites")
async def coverage(
    snap: SnapshotDep,
    settings: SettingsDep,
    pages: PagesDep,
    q: CoverageQueryDep,
    by: Annotated[
        Level | None,
        Query(
            description="Units coloured by coverage ratio (default grid; community above "
            "5,000 grids)"
        ),
    ] = None,
    add: Annotated[
        str | None,
        Query(description="Candidate sites lon,lat;lon,lat (in `crs`) for a what-if"),
    ] = None,
    crs: Annotated[PointCRS, Query(description=CRS_HELP + " (applies to `add`)")] = (
        PointCRS.wgs84
    ),
    basemap: BasemapQuery = None,
) -> HTMLResponse:
    """Units coloured by the share of their population within ``radius_m`` of ``layer``
    (active facilities only unless ``include_inactive=true``), the covered area and the gap
    pieces; with ``add``, the situation after adding those sites."""
    lon, lat = sites_of(parse_sites(add), crs, "add")
    declared: Declared = {"layer": q.layer, "radius_m": f"{q.radius_m:g}"}
    if q.service:
        declared["service"] = q.service
    if not q.active_only:
        declared["include_inactive"] = "true"
    if by:
        declared["by"] = by.value
    if len(lon):  # the sites as converted to WGS84, so the link needs no crs
        declared["add"] = ";".join(f"{x:.7f},{y:.7f}" for x, y in zip(lon, lat, strict=True))
    options = page_options(settings, basemap, declared)
    key = _page_key("coverage", options, declared)

    def build() -> MapPage:
        m = coverage_map(
            snap,
            options,
            q.layer,
            q.radius_m,
            by.value if by else None,
            q.service,
            q.active_only,
            lon,
            lat,
        )
        return MapPage.of(render_html(m, options))

    return _html(await pages.get(snap, key, build))


@router.get(
    "/data/grids",
    response_model=MapGrids,
    response_class=GeoJSONResponse,
    summary="Grids in view, in the map page's coordinate system",
)
async def grids_data(
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    bbox: Annotated[
        str | None,
        Query(description="minlon,minlat,maxlon,maxlat in the basemap's CRS (GCJ-02 for amap)"),
    ] = None,
    code: Annotated[str | None, Query(description="One grid by its 15-digit code")] = None,
    basemap: BasemapQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = DEFAULT_LIMIT,
) -> GeoJSONResponse:
    """What an overview of a large city loads as the user pans: the grids in the box, converted to
    the basemap's CRS and rounded to 6 decimals (unlike ``/api/v1/grids``, which is WGS84).
    ``truncated`` says when more grids matched than ``limit``."""
    crs = PageOptions(basemap=Basemap(basemap or settings.basemap)).crs
    if code is not None:
        body = await heavy.run(grid_by_code, snap, code, crs)
    else:
        box = parse_bbox(bbox)
        if box is None:
            raise bad_request("give bbox=minlon,minlat,maxlon,maxlat or code", "bbox")
        body = await heavy.run(grids_in_view, snap, box, crs, limit)
    # Static maps written by `geo-service maps build` load this from file:// or another host.
    return GeoJSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})
