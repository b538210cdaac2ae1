"""Tile providers for the maps, and the coordinate system each one is drawn in.

Amap (高德) is the default: its tiles load fast everywhere in China and need no key. Amap tiles
are drawn in GCJ-02, so an Amap page converts every overlay to GCJ-02; OpenStreetMap and Tianditu
(天地图, needs a ``tk`` key) are drawn in WGS84/CGCS2000 and keep the data as it is.

Overlay coordinates are fixed when a page is built, so a page uses ONE coordinate system: its base
layers are the providers drawn in that system (Amap road + satellite, or OSM + Tianditu), and the
other system is a link to the same map built for it (``?basemap=...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from geo_service.core.crs import PointCRS
from geo_service.core.errors import InputError


class Basemap(StrEnum):
    amap = "amap"
    tianditu = "tianditu"
    osm = "osm"


BASEMAP_LABELS: dict[Basemap, str] = {
    Basemap.amap: "高德地图",
    Basemap.tianditu: "天地图",
    Basemap.osm: "OpenStreetMap",
}

AMAP_ATTRIBUTION = "© 高德地图 AutoNavi"
TIANDITU_ATTRIBUTION = "© 天地图"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"

# Hosts the pages fetch tiles from (everything else is served by geo_service itself).
TILE_HOSTS = (
    "webrd01.is.autonavi.com",
    "webrd02.is.autonavi.com",
    "webrd03.is.autonavi.com",
    "webrd04.is.autonavi.com",
    "webst01.is.autonavi.com",
    "webst02.is.autonavi.com",
    "webst03.is.autonavi.com",
    "webst04.is.autonavi.com",
    *(f"t{i}.tianditu.gov.cn" for i in range(8)),
    "tile.openstreetmap.org",
)


class BasemapUnavailable(InputError):
    """The basemap cannot be shown with this configuration (Tianditu without a key)."""


@dataclass(frozen=True)
class TileSource:
    url: str
    attribution: str
    subdomains: str = "abc"
    max_zoom: int = 18


@dataclass(frozen=True)
class BaseLayer:
    """One entry of the layer control's base layers: tile sources drawn on top of each other."""

    label: str
    tiles: tuple[TileSource, ...]


def _amap(style: int, host: str) -> TileSource:
    return TileSource(
        url=f"https://{host}0{{s}}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1"
        f"&style={style}&x={{x}}&y={{y}}&z={{z}}",
        attribution=AMAP_ATTRIBUTION,
        subdomains="1234",
        max_zoom=18,
    )


def _tianditu(layer: str, key: str) -> TileSource:
    return TileSource(
        url=f"https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
        f"&VERSION=1.0.0&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
        f"&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}",
        attribution=TIANDITU_ATTRIBUTION,
        subdomains="01234567",
        max_zoom=18,
    )


OSM = TileSource(
    url="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
    attribution=OSM_ATTRIBUTION,
    subdomains="",
    max_zoom=19,
)


def display_crs(basemap: Basemap) -> PointCRS:
    """The coordinate system overlays must be in to sit on this basemap's streets."""
    return PointCRS.gcj02 if basemap is Basemap.amap else PointCRS.wgs84


def available(tianditu_key: str | None) -> list[Basemap]:
    """Basemaps this configuration can show (Tianditu only with a key)."""
    return [b for b in Basemap if b is not Basemap.tianditu or tianditu_key]


def check_available(basemap: Basemap, tianditu_key: str | None) -> None:
    if basemap not in available(tianditu_key):
        raise BasemapUnavailable(
            "the Tianditu basemap needs a key: set GEO_SERVICE_TIANDITU_KEY "
            "(or choose basemap=amap or basemap=osm)",
            "basemap",
        )


def base_layers(basemap: Basemap, tianditu_key: str | None) -> list[BaseLayer]:
    """Base layers of a page for ``basemap``: the chosen one first, then the others drawn in the
    same coordinate system."""
    check_available(basemap, tianditu_key)
    if basemap is Basemap.amap:
        return [
            BaseLayer("高德地图", (_amap(8, "webrd"),)),
            BaseLayer("高德影像", (_amap(6, "webst"),)),
        ]
    layers: dict[Basemap, list[BaseLayer]] = {Basemap.osm: [BaseLayer("OpenStreetMap", (OSM,))]}
    if tianditu_key:
        layers[Basemap.tianditu] = [
            BaseLayer("天地图", (_tianditu("vec", tianditu_key), _tianditu("cva", tianditu_key))),
            BaseLayer(
                "天地图影像", (_tianditu("img", tianditu_key), _tianditu("cia", tianditu_key))
            ),
        ]
    first = layers.pop(basemap)
    return first + [layer for rest in layers.values() for layer in rest]
