"""Residents' phone pages (Chinese, opened inside WeChat): the page a stall's QR code opens
(``/s/{code}``) and "find the nearest stall" (``/find``).

Everything a page needs is served by the service itself (Leaflet included); only the basemap
tiles come from Amap, and the pages show their content when tiles never arrive. Amap tiles are
drawn in GCJ-02, so every marker is converted to GCJ-02 before it is drawn.
"""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from geo_service.analysis import facilities
from geo_service.core import hours
from geo_service.core.crs import PointCRS, from_wgs84
from geo_service.core.schema import SCHEMAS, SERVICES, LayerName
from geo_service.core.settings import Settings
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.render.navigation import nav_links
from geo_service.web.deps import HeavyDep, SettingsDep, SnapshotDep

TEMPLATES = Jinja2Templates(
    directory=FsPath(__file__).resolve().parents[2] / "render" / "templates"
)
AMAP_TILES = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"
STATUS_TEXT = {
    "active": "正常营业",
    "suspended": "暂停营业",
    "relocated": "已迁址",
    "retired": "已撤销",
}
ALTERNATIVES = 3
NO_STORE = {"Cache-Control": "no-cache"}  # open-now badges change with the clock

router = APIRouter(include_in_schema=False)


def _gcj(lon: float, lat: float) -> list[float]:
    x, y = from_wgs84(lon, lat, PointCRS.gcj02)
    return [round(float(x), 7), round(float(y), 7)]


def _distance_text(metres: float) -> str:
    return f"{metres:.0f} 米" if metres < 1000 else f"{metres / 1000:.1f} 公里"


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
    idx, dist = facilities.nearest(layer, rec["lon"], rec["lat"], ALTERNATIVES, filters)
    out = []
    for j, d in zip(idx, dist, strict=True):
        alt = facilities.describe(layer, int(j), at)
        alt["distance_text"] = _distance_text(float(d))
        alt["distance_m"] = round(float(d), 1)
        alt["walk_minutes"] = facilities.walk_minutes(
            float(d), settings.walk_speed_m_per_min, settings.walk_detour_factor
        )
        alt["gcj"] = _gcj(alt["lon"], alt["lat"])
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
    stall["gcj"] = _gcj(stall["lon"], stall["lat"])
    ctx.update(
        status_text=STATUS_TEXT.get(stall["status"], stall["status"]),
        state_text=hours.state_text(stall["hours"], now)
        if stall["status"] == "active"
        else STATUS_TEXT.get(stall["status"], stall["status"]),
        grid=facilities.grid_of(snap, layer, i),
        nav=nav_links(stall["lon"], stall["lat"], stall["name"], stall.get("address")),
        map_data={
            "stall": {"name": stall["name"], "gcj": stall["gcj"]},
            "others": [
                {"name": a["name"], "code": a["code"], "gcj": a["gcj"]} for a in alternatives
            ],
            "tiles": AMAP_TILES,
        },
    )
    return TEMPLATES.TemplateResponse(request, "stall.html", ctx, headers=NO_STORE)


@router.get("/find", response_class=HTMLResponse)
async def find_page(request: Request, snap: SnapshotDep, heavy: HeavyDep) -> Response:
    """Nearest stalls to the phone's location, a tapped map point, or a picked community."""
    return await heavy.run(_find_response, request, snap)


def _find_response(request: Request, snap: Snapshot) -> Response:
    minx, miny, maxx, maxy = snap.bounds
    communities = facilities.community_points(snap)
    groups = [
        (f"{district} · {street}", list(items))
        for (district, street), items in groupby(
            communities, key=lambda c: (c["district"], c["street"])
        )
    ]
    ctx = _base(request, snap)
    ctx.update(
        groups=groups,
        services=SERVICES,
        title=SCHEMAS[LayerName.stalls].title,
        config={
            "api": request.scope.get("root_path", "") + "/api/v1/stalls/nearest",
            "page": request.scope.get("root_path", "") + "/s/",
            "center": _gcj((minx + maxx) / 2, (miny + maxy) / 2),
            "k": 10,
            "tiles": AMAP_TILES,
        },
    )
    return TEMPLATES.TemplateResponse(request, "find.html", ctx)
