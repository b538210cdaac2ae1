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
from geo_service.core.schema import CLUSTER_KINDS, SERVICES, LayerName
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


def describe(layer: PointLayer, i: int, at: datetime | None = None) -> dict[str, Any]:
    """A facility's record plus what a resident needs to read it at ``at``."""
    rec = dict(layer.records[i])
    rec["open_now"] = hours.is_open(rec.get("hours"), at, rec.get("status") or "")
    rec["hours_text"] = hours.describe(rec.get("hours"))
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
