"""Coordinate reference systems by reference (OGC API – Features Part 2).

Features are stored in WGS84 longitude/latitude (the project treats WGS84 and CGCS2000 as equal,
``core/crs.py``) and served in CRS84 (lon, lat: the default), EPSG:4326 (WGS84, lat, lon),
EPSG:4490 (CGCS2000, lat, lon) and the data's CGCS2000 3-degree Gauss-Kruger zone (EPSG:4549 for
Weifang, northing then easting: "X north, Y east"). Axis order is the one each CRS's EPSG
definition gives: pyproj transforms in (east, north) order (``always_xy``), and the swap to the
authority's order is made here, explicitly, from the CRS's first axis direction.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.analysis.ogc import OGCRequestError
from geo_service.core.errors import quote

FloatArray = npt.NDArray[np.float64]

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
GEOGRAPHIC_EPSG = (4326, 4490)
DEGREE_DECIMALS = 7  # about 1 cm, as the stored coordinates
METRE_DECIMALS = 3  # 1 mm
# A bbox or filter geometry given in metres is densified before it is unprojected, so that its
# straight edges stay straight to within a few centimetres in longitude/latitude.
DENSIFY_PARTS = 64
MAX_VALUE_CHARS = 200

_STORED = pyproj.CRS.from_epsg(4326)
_CURIE = re.compile(r"^\[?(EPSG|OGC):(\w+)\]?$", re.IGNORECASE)
_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(EPSG|OGC)/[0-9.]+/(\w+)$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class ServedCRS:
    """One CRS the features are served in: its URI, and the transforms from and to the stored
    WGS84 lon/lat, in this CRS's own axis order."""

    uri: str
    title: str
    crs: pyproj.CRS
    north_first: bool  # EPSG:4326, 4490: (lat, lon); EPSG:4549: (northing, easting)
    geographic: bool
    stored: bool  # the same coordinates as the stored WGS84 (only the axis order may differ)

    @property
    def decimals(self) -> int:
        return DEGREE_DECIMALS if self.geographic else METRE_DECIMALS

    @property
    def short(self) -> str:
        """``EPSG:4549`` or ``OGC:CRS84``: the name people type."""
        auth = self.crs.to_authority()
        return f"{auth[0]}:{auth[1]}" if auth else self.uri

    def _transformer(self, forward: bool) -> pyproj.Transformer:
        return _transformer(self.uri, forward)

    def from_wgs84(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Stored lon/lat -> this CRS's coordinates, in its axis order, rounded."""
        x, y = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        if not self.stored:
            x, y = (
                np.asarray(v, dtype=np.float64) for v in self._transformer(True).transform(x, y)
            )
        x, y = np.round(x, self.decimals), np.round(y, self.decimals)
        return (y, x) if self.north_first else (x, y)

    def to_wgs84(
        self, first: npt.ArrayLike, second: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """Coordinates in this CRS's axis order -> WGS84 lon/lat."""
        a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        x, y = (b, a) if self.north_first else (a, b)
        if self.stored:
            return x, y
        lon, lat = self._transformer(False).transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)

    def project(self, geoms: Any) -> Any:
        """Stored shapely geometries (scalar or array) in this CRS (x = its first axis)."""
        if self.stored and not self.north_first:
            return geoms

        def move(coords: FloatArray) -> FloatArray:
            return np.column_stack(self.from_wgs84(coords[:, 0], coords[:, 1]))

        return shapely.transform(geoms, move)

    def unproject(self, geom: BaseGeometry) -> BaseGeometry:
        """A geometry whose coordinates are in this CRS's axis order, as WGS84 lon/lat; edges
        drawn in metres are densified first."""
        if not self.geographic:
            xmin, ymin, xmax, ymax = shapely.bounds(geom)
            step = max(xmax - xmin, ymax - ymin) / DENSIFY_PARTS
            if step > 0:
                geom = shapely.segmentize(geom, step)

        def move(coords: FloatArray) -> FloatArray:
            return np.column_stack(self.to_wgs84(coords[:, 0], coords[:, 1]))

        out: BaseGeometry = shapely.transform(geom, move)
        return out

    def area_bounds(self) -> tuple[float, float, float, float] | None:
        """Where this CRS is defined, WGS84 (west, south, east, north)."""
        aou = self.crs.area_of_use
        return None if aou is None else (aou.west, aou.south, aou.east, aou.north)


_local = threading.local()


def _transformer(uri: str, forward: bool) -> pyproj.Transformer:
    """One transformer per thread and direction (pyproj objects are not shared across threads)."""
    cache: dict[tuple[str, bool], pyproj.Transformer] = _local.__dict__.setdefault("cache", {})
    key = (uri, forward)
    if key not in cache:
        target = pyproj.CRS.from_user_input(uri)
        src, dst = (_STORED, target) if forward else (target, _STORED)
        cache[key] = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return cache[key]


def _served(uri: str, title: str) -> ServedCRS:
    crs = pyproj.CRS.from_user_input(uri)
    first = crs.axis_info[0].direction.lower()
    return ServedCRS(
        uri=uri,
        title=title,
        crs=crs,
        north_first=first in ("north", "south"),
        geographic=crs.is_geographic,
        stored=crs.equals(_STORED, ignore_axis_order=True),
    )


@lru_cache(maxsize=8)
def served_crs(projected_epsg: int) -> tuple[ServedCRS, ...]:
    """The CRSs every collection is served in; CRS84 (the default and storage CRS) first."""
    out = [
        _served(CRS84, "WGS 84 经纬度（经度在前）"),
        _served(EPSG_URI.format(code=4326), "WGS 84 经纬度（纬度在前）"),
        _served(EPSG_URI.format(code=4490), "CGCS2000 经纬度（纬度在前）"),
    ]
    if projected_epsg not in GEOGRAPHIC_EPSG:
        name = pyproj.CRS.from_epsg(projected_epsg).name
        out.append(_served(EPSG_URI.format(code=projected_epsg), f"{name}（米）"))
    return tuple(out)


def _identity(value: str) -> tuple[str, str] | None:
    """(authority, code) of a CRS URI, safe CURIE or CURIE; None when it is neither."""
    text = value.strip()
    found = _URI.match(text) or _CURIE.match(text)
    return (found.group(1).upper(), found.group(2).upper()) if found else None


def parse_crs(value: str | None, served: tuple[ServedCRS, ...], param: str) -> ServedCRS:
    """The served CRS ``value`` names (its URI, ``EPSG:4326``, ``[EPSG:4326]``, ``OGC:CRS84``);
    CRS84 when absent; a 400 naming the ones served otherwise."""
    if value is None or value == "":
        return served[0]
    wanted = _identity(value[: MAX_VALUE_CHARS + 1])
    if wanted is not None:
        for s in served:
            if _identity(s.uri) == wanted:
                return s
    names = ", ".join(s.uri for s in served)
    raise OGCRequestError(f"unsupported CRS {quote(value)}; one of: {names}", param)


def _number(text: str, param: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OGCRequestError(f"not a number: {quote(text)}", param) from None
    if not math.isfinite(value):
        raise OGCRequestError(f"must be finite numbers (got {quote(text)})", param)
    return value


def parse_bbox(value: str | None, crs: ServedCRS) -> BaseGeometry | None:
    """``bbox`` (4 or 6 numbers, lower corner then upper corner, in ``crs``'s axis order) as a
    WGS84 polygon; a geographic box whose west edge lies east of its east edge crosses the
    antimeridian and becomes two boxes."""
    if value is None or value == "":
        return None
    if len(value) > MAX_VALUE_CHARS:
        raise OGCRequestError(f"too long ({len(value):,} characters)", "bbox")
    parts = value.split(",")
    if len(parts) not in (4, 6):
        order = "lat,lon" if crs.north_first and crs.geographic else "x,y"
        raise OGCRequestError(
            f"needs 4 numbers (lower corner, upper corner; {crs.short} is {order}), "
            f"got {quote(value)}",
            "bbox",
        )
    nums = [_number(p, "bbox") for p in parts]
    half = len(nums) // 2
    a1, b1, a2, b2 = nums[0], nums[1], nums[half], nums[half + 1]  # drop heights
    x1, y1, x2, y2 = (b1, a1, b2, a2) if crs.north_first else (a1, b1, a2, b2)
    if crs.geographic:
        if not all(-180 <= x <= 180 for x in (x1, x2)) or not all(-90 <= y <= 90 for y in (y1, y2)):
            raise OGCRequestError(
                f"longitudes must lie within ±180 and latitudes within ±90 ({crs.short} is "
                f"{'lat,lon' if crs.north_first else 'lon,lat'})",
                "bbox",
            )
        if y1 > y2:
            raise OGCRequestError("the lower corner's latitude exceeds the upper corner's", "bbox")
        boxes = [(x1, y1, 180.0, y2), (-180.0, y1, x2, y2)] if x1 > x2 else [(x1, y1, x2, y2)]
        polys = [crs.unproject(_axis_box(crs, *b)) for b in boxes]  # two across the antimeridian
        return polys[0] if len(polys) == 1 else shapely.union_all(polys)
    if x1 > x2 or y1 > y2:
        raise OGCRequestError("the lower corner must not exceed the upper corner", "bbox")
    aou = crs.area_bounds()
    poly = crs.unproject(_axis_box(crs, x1, y1, x2, y2))
    if aou is not None and not shapely.intersects(poly, shapely.box(*aou)):
        raise OGCRequestError(f"lies outside the area where {crs.short} is defined", "bbox")
    return poly


def _axis_box(crs: ServedCRS, x1: float, y1: float, x2: float, y2: float) -> BaseGeometry:
    """A box given by (east, north) corners, with its coordinates in ``crs``'s axis order (what
    ``unproject`` takes)."""
    box = shapely.box(x1, y1, x2, y2)
    if crs.north_first:
        box = shapely.transform(box, lambda c: c[:, ::-1])
    return box
