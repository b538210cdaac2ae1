"""Coordinate systems used by Chinese web maps, and the metric CRS for distances.

WGS84 and CGCS2000 differ by about a metre and are treated as equal for web use.
GCJ-02 is the obfuscated system of Amap/Tencent/WeChat; BD-09 is Baidu's shift of GCJ-02.
Neither has a closed-form inverse, so the inverses iterate the forward transform until the
round trip is within ``INVERSE_TOLERANCE_DEG`` (about 1 mm).

All functions take and return numpy arrays (scalars work too) so bulk input is vectorised.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by GCJ-02
_EE = 0.00669342162296594323  # its eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0
INVERSE_TOLERANCE_DEG = 1e-8  # ~1 mm
_MAX_ITERATIONS = 30


class PointCRS(StrEnum):
    """The coordinate systems a point input may declare."""

    wgs84 = "wgs84"
    cgcs2000 = "cgcs2000"
    gcj02 = "gcj02"
    bd09 = "bd09"


WGS84_EPSG = 4326


def _f(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def in_china(lon: ArrayLike, lat: ArrayLike) -> npt.NDArray[np.bool_]:
    """The rough box inside which GCJ-02 applies its shift (identity outside, as Amap does)."""
    lon, lat = _f(lon), _f(lat)
    return (lon > 72.004) & (lon < 137.8347) & (lat > 0.8293) & (lat < 55.8271)


def _transform_lat(x: FloatArray, y: FloatArray) -> FloatArray:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x: FloatArray, y: FloatArray) -> FloatArray:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon, lat = _f(lon), _f(lat)
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, y = _f(lon), _f(lat)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_approx(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    x, y = lon - 0.0065, lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


Forward = Callable[[ArrayLike, ArrayLike], tuple[FloatArray, FloatArray]]


def _invert(
    forward: Forward, lon: FloatArray, lat: FloatArray, guess_lon: FloatArray, guess_lat: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Fixed-point inversion: move the guess by the residual of the forward transform."""
    x, y = guess_lon.copy(), guess_lat.copy()
    for _ in range(_MAX_ITERATIONS):
        fx, fy = forward(x, y)
        dx, dy = fx - lon, fy - lat
        x -= dx
        y -= dy
        if np.all(np.abs(dx) < INVERSE_TOLERANCE_DEG) and np.all(
            np.abs(dy) < INVERSE_TOLERANCE_DEG
        ):
            break
    return x, y


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon, lat = _f(lon), _f(lat)
    return _invert(wgs84_to_gcj02, lon, lat, lon, lat)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lon, lat = _f(lon), _f(lat)
    gx, gy = _bd09_to_gcj02_approx(lon, lat)
    return _invert(gcj02_to_bd09, lon, lat, gx, gy)


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def _identity(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    return _f(lon).copy(), _f(lat).copy()


_TO_WGS84: dict[PointCRS, Forward] = {
    PointCRS.wgs84: _identity,
    PointCRS.cgcs2000: _identity,
    PointCRS.gcj02: gcj02_to_wgs84,
    PointCRS.bd09: bd09_to_wgs84,
}
_FROM_WGS84: dict[PointCRS, Forward] = {
    PointCRS.wgs84: _identity,
    PointCRS.cgcs2000: _identity,
    PointCRS.gcj02: wgs84_to_gcj02,
    PointCRS.bd09: wgs84_to_bd09,
}


def to_wgs84(lon: ArrayLike, lat: ArrayLike, crs: PointCRS | str) -> tuple[FloatArray, FloatArray]:
    return _TO_WGS84[PointCRS(crs)](lon, lat)


def from_wgs84(
    lon: ArrayLike, lat: ArrayLike, crs: PointCRS | str
) -> tuple[FloatArray, FloatArray]:
    return _FROM_WGS84[PointCRS(crs)](lon, lat)


def convert(
    lon: ArrayLike, lat: ArrayLike, source: PointCRS | str, target: PointCRS | str
) -> tuple[FloatArray, FloatArray]:
    return from_wgs84(*to_wgs84(lon, lat, source), target)


def transform_geometry(
    geom: BaseGeometry | npt.NDArray[np.object_], source: PointCRS | str, target: PointCRS | str
) -> Any:
    """Convert every vertex of shapely geometries between web-map systems."""
    src, dst = PointCRS(source), PointCRS(target)

    def _xy(coords: FloatArray) -> FloatArray:
        x, y = convert(coords[:, 0], coords[:, 1], src, dst)
        return np.column_stack([x, y])

    return shapely.transform(geom, _xy)


# --- metric CRS ------------------------------------------------------------------------------

CGCS2000_GK3_FIRST_EPSG = 4534  # "CGCS2000 / 3-degree Gauss-Kruger CM 75E"
CGCS2000_GK3_FIRST_CM = 75


def gauss_kruger_epsg(lon: float) -> int:
    """EPSG code of the CGCS2000 3-degree Gauss-Kruger zone (no zone prefix) around ``lon``.

    Weifang (119.1E) gives EPSG:4549, central meridian 120E. Outside China's zones (75E-135E)
    a UTM zone is returned instead so that other places still get a metric CRS.
    """
    cm = round(lon / 3.0) * 3
    if CGCS2000_GK3_FIRST_CM <= cm <= 135:
        return CGCS2000_GK3_FIRST_EPSG + (cm - CGCS2000_GK3_FIRST_CM) // 3
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return 32600 + zone


def metric_epsg_for_bounds(bounds: tuple[float, float, float, float]) -> int:
    """Pick the metric CRS for data within ``(minlon, minlat, maxlon, maxlat)``."""
    minx, miny, maxx, maxy = bounds
    epsg = gauss_kruger_epsg((minx + maxx) / 2.0)
    if maxy + miny < 0 and epsg >= 32600 and epsg < 32700:
        epsg += 100  # southern-hemisphere UTM
    return epsg


@lru_cache(maxsize=32)
def _transformer(src: int, dst: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


class MetricProjection:
    """Forward and inverse projection between WGS84 lon/lat and one metric CRS."""

    def __init__(self, epsg: int) -> None:
        self.epsg = epsg
        self._fwd = _transformer(WGS84_EPSG, epsg)
        self._inv = _transformer(epsg, WGS84_EPSG)
        aou = pyproj.CRS.from_epsg(epsg).area_of_use
        # Transverse Mercator stays accurate a few degrees past its official zone; beyond
        # that callers fall back to geodesic computation.
        self.valid_bounds = (
            (aou.west - 6.0, aou.south - 6.0, aou.east + 6.0, aou.north + 6.0)
            if aou is not None
            else (-180.0, -90.0, 180.0, 90.0)
        )

    def covers(self, lon: ArrayLike, lat: ArrayLike) -> npt.NDArray[np.bool_]:
        """Where the metric CRS is accurate enough to rank distances."""
        lon, lat = _f(lon), _f(lat)
        w, s, e, n = self.valid_bounds
        return (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)

    @classmethod
    def for_bounds(cls, bounds: tuple[float, float, float, float]) -> MetricProjection:
        return cls(metric_epsg_for_bounds(bounds))

    def forward(self, lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
        x, y = self._fwd.transform(_f(lon), _f(lat))
        return _f(x), _f(y)

    def inverse(self, x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
        lon, lat = self._inv.transform(_f(x), _f(y))
        return _f(lon), _f(lat)

    def project(self, geoms: Any) -> Any:
        """Project shapely geometries (scalar or array) from lon/lat to metres."""
        return shapely.transform(geoms, lambda c: np.column_stack(self.forward(c[:, 0], c[:, 1])))

    def unproject(self, geoms: Any) -> Any:
        return shapely.transform(geoms, lambda c: np.column_stack(self.inverse(c[:, 0], c[:, 1])))


_GEOD = pyproj.Geod(ellps="WGS84")


def geodesic_distance_m(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike
) -> FloatArray:
    """Distance on the WGS84 ellipsoid, the reference every reported distance is checked against."""
    lon1, lat1, lon2, lat2 = np.broadcast_arrays(_f(lon1), _f(lat1), _f(lon2), _f(lat2))
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return _f(dist)
