"""Links that open a place in the map apps residents use, each in the coordinate system that app
expects, so the pin lands on the stall and not half a kilometre away.

- Amap (高德): its URI API takes GCJ-02 when told ``coordinate=gaode``.
- Baidu Maps: its web URI takes BD-09 when told ``coord_type=bd09ll``.
- Apple Maps: in mainland China Apple's map is AutoNavi's (Amap's) and is drawn in GCJ-02, and a
  ``ll=`` pin is placed on that map as given, so it gets GCJ-02 too (WGS84 would land ~530 m off
  in Weifang). Outside mainland China GCJ-02 is the identity, so nothing changes there.

All links are ``https://`` web URIs rather than app schemes (``iosamap://``, ``baidumap://``):
WeChat's browser blocks most custom schemes, while the web pages offer to open the installed app.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from geo_service.core.crs import PointCRS, from_wgs84

SOURCE = "geo_service"


@dataclass(frozen=True)
class NavLink:
    app: str  # amap, baidu, apple
    label: str  # button text on the page
    crs: PointCRS  # the coordinate system written in the link
    url: str


def _pair(lon: float, lat: float, crs: PointCRS) -> tuple[float, float]:
    x, y = from_wgs84(lon, lat, crs)
    return round(float(x), 7), round(float(y), 7)


def nav_links(lon: float, lat: float, name: str, address: str | None = None) -> list[NavLink]:
    """Amap, Baidu and Apple Maps links for a WGS84 point."""
    glon, glat = _pair(lon, lat, PointCRS.gcj02)
    blon, blat = _pair(lon, lat, PointCRS.bd09)
    amap = "https://uri.amap.com/marker?" + urlencode(
        {
            "position": f"{glon},{glat}",
            "name": name,
            "src": SOURCE,
            "coordinate": "gaode",
            "callnative": 1,
        }
    )
    baidu = "https://api.map.baidu.com/marker?" + urlencode(
        {
            "location": f"{blat},{blon}",
            "title": name,
            "content": address or name,
            "output": "html",
            "coord_type": "bd09ll",
            "src": f"webapp.{SOURCE}.resident",
        }
    )
    apple = "https://maps.apple.com/?" + urlencode({"ll": f"{glat},{glon}", "q": name})
    return [
        NavLink("amap", "高德地图", PointCRS.gcj02, amap),
        NavLink("baidu", "百度地图", PointCRS.bd09, baidu),
        NavLink("apple", "苹果地图", PointCRS.gcj02, apple),
    ]
