"""Residents' phone pages (Chinese, opened inside WeChat): the page a stall's QR code opens
(``/s/{code}``) and "find the nearest stall" (``/find``).

Everything a page needs is served by the service itself (Leaflet included); only the basemap
tiles come from Amap, and the pages show their content when tiles never arrive. Amap tiles are
drawn in GCJ-02, so every marker is converted to GCJ-02 before it is drawn.
"""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from geo_service.analysis import facilities
from geo_service.core import hours
from geo_service.core.crs import PointCRS
from geo_service.core.schema import SCHEMAS, SERVICES, STATUS_TEXT, LayerName
from geo_service.core.settings import Settings
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.render.navigation import nav_links
from geo_service.web.deps import HeavyDep, SettingsDep, SnapshotDep
from geo_service.web.pagekit import AMAP_TILES, TEMPLATES, gcj

ALTERNATIVES = 3
NO_STORE = {"Cache-Control": "no-cache"}  # open-now badges change with the clock

router = APIRouter(include_in_schema=False)


def _distance_text(metres: float) -> str:
    return f"{metres:.0f} 米" if metres < 1000 else f"{metres / 1000:.1f} 公里"


def radius_text(metres: float) -> str:
    """The search radius as a page says it: "3 公里", "2.5 公里", "800 米"."""
    return f"{metres:.0f} 米" if metres < 1000 else f"{metres / 1000:g} 公里"


def find_url(root: str, lon: float, lat: float, code: str | None = None) -> str:
    """``/find`` starting from a WGS84 point (and saying it is this stall's)."""
    query = {"lon": f"{lon:.7f}", "lat": f"{lat:.7f}", "crs": PointCRS.wgs84.value}
    if code:
        query["stall"] = code
    return f"{root}/find?{urlencode(query)}"


def _base(request: Request, snap: Snapshot) -> dict[str, Any]:
    return {
        "request": request,
        "static": request.scope.get("root_path", "") + "/static",
        "dataset": snap.name,
        "tiles": AMAP_TILES,
    }


def _alternatives(
    snap: Snapshot, layer: PointLayer, i: int, at: datetime, settings: Settings
) -> list[dict[str, Any]]:
    """The nearest other active stalls offering any of this stall's services."""
    rec = layer.records[i]
    filters = facilities.Filters(
        offers=tuple(rec.get("services") or SERVICES), active_only=True, exclude=(i,)
    )
    idx, dist = facilities.nearest(
        layer, rec["lon"], rec["lat"], ALTERNATIVES, filters, settings.find_max_distance_m
    )
    out = []
    for j, d in zip(idx, dist, strict=True):
        alt = facilities.describe(layer, int(j), at)
        alt["distance_text"] = _distance_text(float(d))
        alt["distance_m"] = round(float(d), 1)
        alt["walk_minutes"] = facilities.walk_minutes(
            float(d), settings.walk_speed_m_per_min, settings.walk_detour_factor
        )
        alt["gcj"] = gcj(alt["lon"], alt["lat"])
        out.append(alt)
    return out


@router.get("/s/{code}", response_class=HTMLResponse)
async def stall_page(
    request: Request,
    code: Annotated[str, Path()],
    snap: SnapshotDep,
    settings: SettingsDep,
) -> Response:
    """The page a stall's QR code opens."""
    layer = snap.stalls
    wanted = code.strip().upper()
    if wanted != code and wanted in layer.position:
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/s/{wanted}", status_code=301)
    i = layer.position.get(wanted)
    ctx = _base(request, snap)
    ctx["radius_text"] = radius_text(settings.find_max_distance_m)
    if i is None:
        ctx.update(code=code, stall=None, alternatives=[])
        return TEMPLATES.TemplateResponse(request, "missing.html", ctx, 404, NO_STORE)
    now = hours.local_time()
    stall = facilities.describe(layer, i, now)
    alternatives = _alternatives(snap, layer, i, now, settings)
    ctx.update(stall=stall, alternatives=alternatives, now=now.strftime("%H:%M"))
    if stall["status"] == "retired":
        ctx["code"] = stall["code"]
        return TEMPLATES.TemplateResponse(request, "missing.html", ctx, 410, NO_STORE)
    stall["gcj"] = gcj(stall["lon"], stall["lat"])
    root = request.scope.get("root_path", "")
    relocated = stall["status"] == "relocated"
    moved = stall.get("moved_to") if relocated else None
    map_data: dict[str, Any] = {
        "stall": {"name": stall["name"], "gcj": stall["gcj"]},
        "others": [{"name": a["name"], "code": a["code"], "gcj": a["gcj"]} for a in alternatives],
        "tiles": AMAP_TILES,
    }
    if moved is not None:
        # Navigation goes to the new place: the old spot has nothing left to find.
        moved["gcj"] = gcj(moved["lon"], moved["lat"])
        moved["label"] = moved.get("name") or f"{stall['name']}（新址）"
        if moved.get("code") in layer.position and moved.get("status") != "retired":
            moved["page"] = f"{root}/s/{moved['code']}"
        nav = nav_links(moved["lon"], moved["lat"], moved["label"], moved.get("address"))
        map_data["moved_to"] = {"name": moved["label"], "gcj": moved["gcj"]}
    elif relocated:
        nav = []  # 新址未登记: no button may lead to the old, empty spot
    else:
        nav = nav_links(stall["lon"], stall["lat"], stall["name"], stall.get("address"))
    ctx.update(
        status_text=STATUS_TEXT.get(stall["status"], stall["status"]),
        state_text=hours.state_text(stall["hours"], now)
        if stall["status"] == "active"
        else STATUS_TEXT.get(stall["status"], stall["status"]),
        grid=facilities.grid_of(snap, layer, i),
        nav=nav,
        relocated=relocated,
        moved=moved,
        find_url=find_url(root, stall["lon"], stall["lat"], stall["code"]),
        map_data=map_data,
    )
    return TEMPLATES.TemplateResponse(request, "stall.html", ctx, headers=NO_STORE)


@router.get("/find", response_class=HTMLResponse)
async def find_page(
    request: Request,
    snap: SnapshotDep,
    settings: SettingsDep,
    heavy: HeavyDep,
    lon: Annotated[
        float | None, Query(ge=-180, le=180, allow_inf_nan=False, description="Start here")
    ] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False)] = None,
    crs: Annotated[PointCRS, Query(description="CRS of lon/lat")] = PointCRS.wgs84,
    community: Annotated[str | None, Query(description="Start from this community")] = None,
    stall: Annotated[
        str | None, Query(description="Start from this stall (its page's 查找更多)")
    ] = None,
) -> Response:
    """Nearest stalls to the phone's location, a tapped map point, a picked community, a place
    found by name or pinyin (``/api/v1/search``), or the point (and stall) a link starts from."""
    start: dict[str, Any] | None = None
    j = snap.stalls.position.get((stall or "").strip().upper())
    if j is not None:
        rec = snap.stalls.records[j]
        start = {"lon": rec["lon"], "lat": rec["lat"], "crs": "wgs84",
                 "label": f"{rec['name']}（{rec['code']}）", "code": rec["code"]}  # fmt: skip
    elif lon is not None and lat is not None:
        start = {"lon": lon, "lat": lat, "crs": crs.value, "label": "所选位置"}
    return await heavy.run(_find_response, request, snap, settings, start, community)


def _find_response(
    request: Request,
    snap: Snapshot,
    settings: Settings,
    start: dict[str, Any] | None,
    community: str | None,
) -> Response:
    minx, miny, maxx, maxy = snap.bounds
    communities = facilities.community_points(snap)
    groups = [
        (f"{district} · {street}", list(items))
        for (district, street), items in groupby(
            communities, key=lambda c: (c["district"], c["street"])
        )
    ]
    # Every active stall as a dot, so the map shows where stalls are before any location is
    # known (and without tiles): GCJ-02, as the tiles are drawn.
    layer = snap.stalls
    active = facilities.active_mask(layer)
    stalls = [
        [*gcj(r["lon"], r["lat"]), r["name"]]
        for r, on in zip(layer.records, active, strict=True)
        if on
    ]
    ctx = _base(request, snap)
    ctx.update(
        groups=groups,
        services=SERVICES,
        title=SCHEMAS[LayerName.stalls].title,
        radius_text=radius_text(settings.find_max_distance_m),
        config={
            "api": request.scope.get("root_path", "") + "/api/v1/stalls/nearest",
            "search": request.scope.get("root_path", "") + "/api/v1/search",
            "page": request.scope.get("root_path", "") + "/s/",
            "center": gcj((minx + maxx) / 2, (miny + maxy) / 2),
            "bounds": [gcj(minx, miny), gcj(maxx, maxy)],
            "k": 10,
            "max_distance_m": settings.find_max_distance_m,
            "radius_text": radius_text(settings.find_max_distance_m),
            "start": start,
            "community": community,
            "stalls": stalls,
            "tiles": AMAP_TILES,
        },
    )
    return TEMPLATES.TemplateResponse(request, "find.html", ctx)
