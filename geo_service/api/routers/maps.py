"""Interactive maps for officers, planners and residents (HTML built by ``geo_service.maps``).

Every page is drawn in one coordinate system, chosen by ``basemap``: ``amap`` (default, GCJ-02)
or ``osm`` / ``tianditu`` (WGS84); the page links to its other-basemap variants.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from geo_service.api.deps import CRS_HELP, SettingsDep, SnapshotDep, parse_bbox
from geo_service.api.errors import bad_request, not_found
from geo_service.api.responses import GeoJSONResponse
from geo_service.api.routers.coverage import CoverageQueryDep, Level, core_errors, sites_of
from geo_service.coverage import CoverageInputError
from geo_service.crs import PointCRS
from geo_service.maps.basemaps import Basemap, BasemapUnavailable, available, check_available
from geo_service.maps.coverage import coverage_map
from geo_service.maps.grid import grid_map
from geo_service.maps.overview import overview_map
from geo_service.maps.page import PageOptions, render_html
from geo_service.maps.viewport import DEFAULT_LIMIT, grid_by_code, grids_in_view
from geo_service.settings import Settings
from geo_service.snapshot import Snapshot

router = APIRouter(prefix="/maps", tags=["maps"])

BASEMAP_HELP = (
    "Basemap, and with it the page's coordinate system: amap (高德, GCJ-02; fast in China, no "
    "key), tianditu (天地图, WGS84; needs GEO_SERVICE_TIANDITU_KEY) or osm (WGS84)"
)
BasemapQuery = Annotated[Basemap | None, Query(description=BASEMAP_HELP)]

# Built pages per snapshot: a reload swaps the snapshot, and its pages go with it.
_pages: weakref.WeakKeyDictionary[Snapshot, dict[tuple[str, ...], str]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()
MAX_CACHED_PAGES = 64


def _cached(snap: Snapshot, key: tuple[str, ...], build: Callable[[], str]) -> str:
    with _lock:
        page = _pages.get(snap, {}).get(key)
    if page is None:
        page = build()
        with _lock:
            pages = _pages.setdefault(snap, {})
            if len(pages) >= MAX_CACHED_PAGES:
                pages.pop(next(iter(pages)))
            pages[key] = page
    return page


def _options(request: Request, settings: Settings, basemap: Basemap | None) -> PageOptions:
    chosen = Basemap(basemap or settings.basemap)
    try:
        check_available(chosen, settings.tianditu_key)
    except BasemapUnavailable as exc:
        raise bad_request(str(exc), "basemap") from None
    # Relative links ("?..."): the cached page does not depend on the host it was asked on.
    variants = {
        b: "?" + str(request.url.include_query_params(basemap=b.value).query)
        for b in available(settings.tianditu_key)
        if b is not chosen
    }
    return PageOptions(
        basemap=chosen,
        tianditu_key=settings.tianditu_key,
        static_base="/static/",
        grid_href=f"/maps/grids/{{code}}?basemap={chosen.value}",
        variants=variants,
    )


def _page_key(kind: str, options: PageOptions, *parts: str) -> tuple[str, ...]:
    """Cache key: everything that changes the page's HTML."""
    links = tuple(f"{b.value}={url}" for b, url in sorted(options.variants.items()))
    return (kind, *parts, options.basemap.value, options.tianditu_key or "", *links)


def _html(page: str) -> HTMLResponse:
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@router.get("/overview", response_class=HTMLResponse, summary="The whole city")
async def overview(
    request: Request, snap: SnapshotDep, settings: SettingsDep, basemap: BasemapQuery = None
) -> HTMLResponse:
    """Districts, streets, communities and grids (switchable, with popups), stalls clustered
    with an icon per service, vendor clusters with 1 km discs, search and "locate me"."""
    options = _options(request, settings, basemap)
    key = _page_key("overview", options)
    return _html(_cached(snap, key, lambda: render_html(overview_map(snap, options), options)))


@router.get("/grids/{code}", response_class=HTMLResponse, summary="One grid and its officer")
async def grid(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    code: Annotated[str, Path(description="15-digit grid code", examples=["370705001001001"])],
    basemap: BasemapQuery = None,
) -> HTMLResponse:
    """The grid's outline and neighbours, stalls and vendor clusters inside or within 1 km of its
    edge, and the officer's card."""
    if not (len(code) == 15 and code.isdigit()):
        raise bad_request(f"a grid code is 15 digits, got {code!r}", "code")
    if code not in snap.grids.position:
        raise not_found(f"unknown grid code {code!r}")
    options = _options(request, settings, basemap)
    overview_href = f"/maps/overview?basemap={options.basemap.value}"

    def build() -> str:
        return render_html(grid_map(snap, code, options, overview_href=overview_href), options)

    return _html(_cached(snap, _page_key("grid", options, code), build))


def parse_sites(add: str | None) -> list[list[float]]:
    """``lon,lat;lon,lat`` -> [[lon, lat], ...] (ranges are checked by ``sites_of``)."""
    if not add:
        return []
    sites = []
    for k, item in enumerate(add.split(";")):
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            sites.append([float(parts[0]), float(parts[1])])
        except ValueError:
            raise bad_request(f"item {k} is not lon,lat: {item!r}", "add") from None
    return sites


@router.get("/coverage", response_class=HTMLResponse, summary="Coverage, gaps and what-if sites")
async def coverage(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
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
    """Units coloured by the share of their population within ``radius_m`` of ``layer``,
    the covered area and the gaps; with ``add``, the situation after adding those sites."""
    lon, lat = sites_of(parse_sites(add), crs, "add")
    options = _options(request, settings, basemap)
    sites = ";".join(f"{x:.7f},{y:.7f}" for x, y in zip(lon, lat, strict=True))
    key = _page_key(
        "coverage",
        options,
        q.layer,
        f"{q.radius_m:g}",
        str(q.service),
        str(q.active_only),
        by.value if by else "",
        sites,
    )

    def build() -> str:
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
        return render_html(m, options)

    try:
        page = _cached(snap, key, build)
    except CoverageInputError as exc:
        raise core_errors(exc) from None
    return _html(page)


@router.get(
    "/data/grids",
    response_class=GeoJSONResponse,
    summary="Grids in view, in the map page's coordinate system",
)
async def grids_data(
    snap: SnapshotDep,
    settings: SettingsDep,
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
        body = grid_by_code(snap, code, crs)
    else:
        box = parse_bbox(bbox)
        if box is None:
            raise bad_request("give bbox=minlon,minlat,maxlon,maxlat or code", "bbox")
        body = grids_in_view(snap, box, crs, limit)
    # Static maps written by `geo-service maps build` load this from file:// or another host.
    return GeoJSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})
