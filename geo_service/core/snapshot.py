"""An immutable, fully built view of the data: layers plus their indexes.

Readers take the current snapshot once per request and use only it; a reload builds a new
snapshot off to the side and swaps the reference whole, so nobody sees a half-built index.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, SupportsIndex, overload

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from geo_service.core.crs import MetricProjection
from geo_service.core.hierarchy import dissolve
from geo_service.core.index import PointIndex, PolygonIndex
from geo_service.core.layers import LoadReport
from geo_service.core.schema import LayerName


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [c for c in frame.columns if c != "geometry"]
    return [
        {c: _clean(v) for c, v in zip(cols, row, strict=True)}
        for row in frame[cols].itertuples(index=False, name=None)
    ]


class _CodedLayer:
    """Lookup by feature code; rows are sorted by code, so position order is code order."""

    frame: gpd.GeoDataFrame

    @cached_property
    def codes(self) -> npt.NDArray[np.object_]:
        return self.frame["code"].to_numpy(dtype=object)

    @cached_property
    def position(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.codes)}

    def __len__(self) -> int:
        return len(self.frame)


class GridProperties(Sequence[dict[str, Any]]):
    """GRID objects of the API contract, each built when asked for (about 50 µs): building a
    million of them up front held a worker's loop for half a minute and took gigabytes."""

    def __init__(self, frame: gpd.GeoDataFrame, area_m2: npt.NDArray[np.float64]) -> None:
        self._columns = {c: frame[c].array for c in frame.columns if c != frame.geometry.name}
        self._area = area_m2
        self._n = len(frame)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: SupportsIndex) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        k = operator.index(i)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(i)
        rec = {c: _clean(a[k]) for c, a in self._columns.items()}
        return {
            "code": rec["code"],
            "name": rec["name"],
            "community": {"code": rec["community_code"], "name": rec["community_name"]},
            "street": {"code": rec["street_code"], "name": rec["street_name"]},
            "district": {"code": rec["district_code"], "name": rec["district_name"]},
            "officer": {"name": rec.get("officer_name"), "phone": rec.get("officer_phone")},
            "area_m2": round(float(self._area[k]), 1),
            "households": rec.get("households"),
            "population": rec.get("population"),
            "version": rec.get("version") or 1,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class GridLayer(_CodedLayer):
    frame: gpd.GeoDataFrame  # sorted by code, WGS84
    index: PolygonIndex

    @cached_property
    def properties(self) -> GridProperties:
        return GridProperties(self.frame, self.index.area_m2)


@dataclass(frozen=True, eq=False)
class PointLayer(_CodedLayer):
    name: LayerName
    frame: gpd.GeoDataFrame  # sorted by code, WGS84 points
    index: PointIndex
    grid_index: npt.NDArray[np.int64]  # containing grid (spatial), -1 if none

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        recs = _records(self.frame)
        for rec, lon, lat in zip(recs, self.index.lon, self.index.lat, strict=True):
            rec["lon"] = round(float(lon), 7)
            rec["lat"] = round(float(lat), 7)
        return recs


@dataclass(frozen=True, eq=False)
class Snapshot:
    name: str
    version: str
    projection: MetricProjection
    grids: GridLayer
    stalls: PointLayer
    vendor_clusters: PointLayer
    reports: tuple[LoadReport, ...] = ()
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def points(self, layer: LayerName | str) -> PointLayer:
        name = LayerName(layer)
        if name is LayerName.stalls:
            return self.stalls
        if name is LayerName.vendor_clusters:
            return self.vendor_clusters
        raise ValueError(f"{layer} is not a point layer")

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.grids.frame.total_bounds)  # type: ignore[return-value]

    @cached_property
    def counts_per_grid(self) -> dict[LayerName, npt.NDArray[np.int64]]:
        n = len(self.grids)
        out = {}
        for layer in (self.stalls, self.vendor_clusters):
            gi = layer.grid_index[layer.grid_index >= 0]
            out[layer.name] = np.bincount(gi, minlength=n).astype(np.int64)
        return out

    @cached_property
    def _units(self) -> dict[str, gpd.GeoDataFrame]:
        return {}

    def units(self, level: str) -> gpd.GeoDataFrame:
        """Communities, streets or districts dissolved from the grids, built once per snapshot."""
        if level not in self._units:
            self._units[level] = dissolve(self.grids.frame, level, self.grids.index.area_m2)
        return self._units[level]


def build_snapshot(
    frames: dict[LayerName, gpd.GeoDataFrame],
    name: str,
    version: str,
    reports: tuple[LoadReport, ...] = (),
    projection: MetricProjection | None = None,
    previous: Snapshot | None = None,
    changed: frozenset[LayerName] | None = None,
) -> Snapshot:
    """Index validated layer frames (WGS84, sorted by code) into a new snapshot.

    With ``previous`` and the layers ``changed`` since it was built from the same frames,
    what depends only on unchanged layers is taken from it, not rebuilt: a stall edited on a
    million grids re-indexes the stalls, not the grids."""
    if previous is not None and changed is not None and LayerName.grids not in changed:
        return _rebuild_points(previous, frames, name, version, reports, changed)
    grids = frames[LayerName.grids].sort_values("code").reset_index(drop=True)
    if projection is None:
        bounds = grids.total_bounds if len(grids) else np.array([119.0, 36.0, 119.3, 37.0])
        projection = MetricProjection.for_bounds(tuple(float(b) for b in bounds))  # type: ignore[arg-type]
    poly_index = PolygonIndex(grids.geometry.to_numpy(), projection)
    grid_layer = GridLayer(grids, poly_index)

    return Snapshot(
        name=name,
        version=version,
        projection=projection,
        grids=grid_layer,
        stalls=_point_layer(frames, LayerName.stalls, grid_layer, projection),
        vendor_clusters=_point_layer(frames, LayerName.vendor_clusters, grid_layer, projection),
        reports=reports,
    )


def _rebuild_points(
    previous: Snapshot,
    frames: dict[LayerName, gpd.GeoDataFrame],
    name: str,
    version: str,
    reports: tuple[LoadReport, ...],
    changed: frozenset[LayerName],
) -> Snapshot:
    """``previous`` with the changed point layers re-indexed; the grids and what is built from
    them alone (their index, dissolved communities, streets and districts) are shared."""

    def layer(lname: LayerName) -> PointLayer:
        if lname not in changed:
            return previous.points(lname)
        return _point_layer(frames, lname, previous.grids, previous.projection)

    snap = Snapshot(
        name=name,
        version=version,
        projection=previous.projection,
        grids=previous.grids,
        stalls=layer(LayerName.stalls),
        vendor_clusters=layer(LayerName.vendor_clusters),
        reports=reports,
    )
    snap._units.update(previous._units)  # dissolved from the grids only
    return snap


def _point_layer(
    frames: dict[LayerName, gpd.GeoDataFrame],
    lname: LayerName,
    grids: GridLayer,
    projection: MetricProjection,
) -> PointLayer:
    frame = frames.get(lname)
    if frame is None:
        frame = gpd.GeoDataFrame({"code": []}, geometry=gpd.GeoSeries([]), crs=4326)
    frame = frame.sort_values("code").reset_index(drop=True)
    geoms = frame.geometry.to_numpy()
    lon, lat = shapely.get_x(geoms), shapely.get_y(geoms)
    idx = PointIndex(lon, lat, projection)
    return PointLayer(lname, frame, idx, grids.index.locate(lon, lat))


Listener = Callable[[Snapshot], None]


class SnapshotStore:
    """Holds the current snapshot; ``swap`` replaces it atomically."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    def get(self) -> Snapshot:
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("no data loaded yet")
        return snap

    def swap(self, snapshot: Snapshot) -> Snapshot | None:
        with self._lock:
            old, self._snapshot = self._snapshot, snapshot
        for listener in list(self._listeners):
            listener(snapshot)
        return old

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)
