"""What every server-rendered page shares: the templates folder, the Amap tile URL the phone
pages draw on, and points converted to GCJ-02 for those tiles (routers do not import each
other, so the page routers and the error pages take these from here)."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

from geo_service.core.crs import PointCRS, from_wgs84

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "render" / "templates")
AMAP_TILES = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"


def gcj(lon: float, lat: float) -> list[float]:
    """A WGS84 point as ``[lon, lat]`` in GCJ-02 (Amap tiles), rounded to 7 decimals."""
    x, y = from_wgs84(lon, lat, PointCRS.gcj02)
    return [round(float(x), 7), round(float(y), 7)]
