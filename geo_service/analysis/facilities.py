"""What residents ask of a facility layer (repair stalls, vendor clusters): which ones offer what
they need, which are open now, which are nearest, and how long the walk is.

One definition serves both point layers; they differ only in the field residents filter on
(the ``services`` a stall offers, the ``kind`` of a vendor cluster).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from geo_service.core import hours
from geo_service.core.crs import FloatArray
from geo_service.core.index import IntArray
from geo_service.core.schema import (
    CLUSTER_KINDS,
    MOVED_TO_ADDRESS,
    MOVED_TO_CODE,
    MOVED_TO_FIELDS,
    MOVED_TO_LAT,
    MOVED_TO_LON,
    SERVICES,
    LayerName,
    Status,
    present,
)
from geo_service.core.snapshot import PointLayer, Snapshot

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FacilityType:
    layer: LayerName
    offer_field: str  # the field a resident filters on
    choices: tuple[str, ...]
    is_list: bool  # the field holds several values (a stall's services)


FACILITY_TYPES: dict[LayerName, FacilityType] = {
    LayerName.stalls: FacilityType(LayerName.stalls, "services", SERVICES, True),
    LayerName.vendor_clusters: FacilityType(
        LayerName.vendor_clusters, "kind", CLUSTER_KINDS, False
    ),
}


def walk_minutes(distance_m: float, speed_m_per_min: float, detour_factor: float) -> float:
    """Walking time estimate: the straight-line geodesic distance, lengthened by the detour
    factor of a street network (routes are longer than the crow flies), at a walking speed."""
    return round(distance_m * detour_factor / speed_m_per_min, 1)


def offers_mask(layer: PointLayer, values: Collection[str]) -> BoolArray:
    """Facilities offering any of ``values`` (a service of a stall, the kind of a cluster)."""
    ftype = FACILITY_TYPES[layer.name]
    wanted = set(values)
    column = layer.frame[ftype.offer_field].to_numpy(dtype=object)
    if ftype.is_list:
        return np.fromiter(
            (bool(v) and not wanted.isdisjoint(v) for v in column), dtype=bool, count=len(column)
        )
    return np.isin(column, list(wanted))


def active_mask(layer: PointLayer) -> BoolArray:
    return np.asarray(layer.frame["status"].to_numpy(dtype=object) == hours.ACTIVE, dtype=bool)


def open_mask(layer: PointLayer, at: datetime | None = None) -> BoolArray:
    """Open at ``at`` (default now, Asia/Shanghai): active and within the opening hours."""
    frame = layer.frame
    return hours.open_mask(frame["hours"].tolist(), frame["status"].tolist(), hours.local_time(at))


@dataclass(frozen=True)
class Filters:
    """Which facilities a query may return; the defaults keep them all."""

    offers: tuple[str, ...] = ()
    active_only: bool = False
    open_at: datetime | None = None  # keep only those open at this moment
    exclude: tuple[int, ...] = ()  # row indexes to leave out (the stall a page is about)

    def mask(self, layer: PointLayer) -> BoolArray | None:
        if not (self.offers or self.active_only or self.open_at or self.exclude):
            return None
        keep = np.ones(len(layer), dtype=bool)
        if self.offers:
            keep &= offers_mask(layer, self.offers)
        if self.active_only:
            keep &= active_mask(layer)
        if self.open_at is not None:
            keep &= open_mask(layer, self.open_at)
        if self.exclude:
            keep[list(self.exclude)] = False
        return keep


def nearest(
    layer: PointLayer,
    lon: float,
    lat: float,
    k: int,
    filters: Filters = Filters(),
    max_distance_m: float | None = None,
) -> tuple[IntArray, FloatArray]:
    """The ``k`` nearest facilities passing ``filters``: row indexes and geodesic metres."""
    return layer.index.nearest(lon, lat, k, filters.mask(layer), max_distance_m)


def in_bbox(
    layer: PointLayer, bbox: tuple[float, float, float, float] | None, filters: Filters = Filters()
) -> IntArray:
    """Facilities inside a WGS84 box (all when None) passing ``filters``, in code order."""
    idx = np.arange(len(layer), dtype=np.int64) if bbox is None else layer.index.bbox(*bbox)
    mask = filters.mask(layer)
    return idx if mask is None else idx[mask[idx]]


MAX_MOVES = 8  # a chain of relocations followed this far (and never round a loop)


def destination(layer: PointLayer, i: int) -> dict[str, Any] | None:
    """Where a relocated facility went, or None when that is not recorded (新址未登记).

    ``moved_to_code`` names the facility at the new place: its point, name and address win,
    and a chain (moved again since) is followed to its end. Otherwise ``moved_to_lon`` /
    ``moved_to_lat`` (WGS84) with ``moved_to_address``. Always ``lon``/``lat`` (WGS84),
    ``code`` and ``name`` when a facility is named, ``address`` when known."""
    rec = layer.records[i]
    if rec.get("status") != Status.relocated.value:
        return None
    seen = {i}
    here = rec
    for _ in range(MAX_MOVES):
        j = layer.position.get(str(here.get(MOVED_TO_CODE) or "").strip().upper())
        if j is None or j in seen:
            break
        seen.add(j)
        here = layer.records[j]
        if here.get("status") != Status.relocated.value:
            break
    if here is not rec and present(here.get("lon")):
        return {
            "code": here["code"],
            "name": here.get("name"),
            "address": here.get("address"),
            "status": here.get("status"),
            "lon": here["lon"],
            "lat": here["lat"],
        }
    if present(rec.get(MOVED_TO_LON)) and present(rec.get(MOVED_TO_LAT)):
        return {
            "code": rec.get(MOVED_TO_CODE),
            "name": None,
            "address": rec.get(MOVED_TO_ADDRESS),
            "status": None,
            "lon": round(float(rec[MOVED_TO_LON]), 7),
            "lat": round(float(rec[MOVED_TO_LAT]), 7),
        }
    return None


def describe(layer: PointLayer, i: int, at: datetime | None = None) -> dict[str, Any]:
    """A facility's record plus what a resident needs to read it at ``at``; a relocated one
    says where it went (``moved_to``, null when not recorded)."""
    rec = {
        k: v
        for k, v in layer.records[i].items()
        if k not in MOVED_TO_FIELDS or present(v)  # absent relocation fields are left out
    }
    rec["open_now"] = hours.is_open(rec.get("hours"), at, rec.get("status") or "")
    rec["hours_text"] = hours.describe(rec.get("hours"))
    if rec.get("status") == Status.relocated.value:
        rec["moved_to"] = destination(layer, i)
    return rec


def grid_of(snapshot: Snapshot, layer: PointLayer, i: int) -> dict[str, Any] | None:
    """The GRID (with its officer) the facility stands in, found spatially."""
    g = int(layer.grid_index[i])
    return snapshot.grids.properties[g] if g >= 0 else None


def community_points(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Communities a resident can pick instead of sharing their location: a WGS84 point inside
    each (``representative_point``, never outside a concave outline), labelled with its
    district and street."""
    units = snapshot.units("community")
    pts = units.geometry.representative_point().to_numpy()
    frame = snapshot.grids.frame
    parents = (
        frame.groupby("community_code", sort=True)[["district_name", "street_name"]]
        .first()
        .reindex(units["code"])
    )
    return [
        {
            "code": code,
            "name": name,
            "street": street,
            "district": district,
            "lon": round(float(p.x), 7),
            "lat": round(float(p.y), 7),
        }
        for code, name, street, district, p in zip(
            units["code"],
            units["name"],
            parents["street_name"],
            parents["district_name"],
            pts,
            strict=True,
        )
    ]
