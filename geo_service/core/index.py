"""Spatial indexes over one snapshot of the layers.

Containment is tested in WGS84 lon/lat, the data's own CRS, exactly as PostGIS ``ST_Covers``
does on the same geometry. Distances are never taken in degrees: candidates are ranked in the
metric CRS and reported as geodesic distances on the WGS84 ellipsoid.

Edge rule: a point on a shared edge (or vertex) is covered by several grids; it belongs to the
one with the smallest code. Grids are stored sorted by code, so that is the smallest index.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely
from shapely import STRtree

from geo_service.core.crs import FloatArray, MetricProjection, geodesic_distance_m

IntArray = npt.NDArray[np.int64]
NOTHING = -1


class PolygonIndex:
    """Polygons (grids) sorted by code: locate, nearest, bbox."""

    def __init__(self, geoms: npt.NDArray[np.object_], projection: MetricProjection) -> None:
        self.geoms = geoms
        self.projection = projection
        shapely.prepare(self.geoms)
        self.tree = STRtree(self.geoms)
        self.metric = projection.project(self.geoms)
        self.metric_tree = STRtree(self.metric)
        self.area_m2: FloatArray = shapely.area(self.metric)

    def __len__(self) -> int:
        return len(self.geoms)

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> IntArray:
        """Index of the polygon covering each point (boundary included), or -1.

        Bounding boxes from the tree, then one vectorised point-in-polygon test of the
        candidates on the prepared polygons: faster than the tree's own predicate, which
        tests each (unprepared) point against each candidate (see bench/RESULTS.md)."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        out = np.full(len(lon), NOTHING, dtype=np.int64)
        if len(lon) == 0 or len(self.geoms) == 0:
            return out
        pt_idx, poly_idx = self.tree.query(shapely.points(lon, lat))
        inside = shapely.intersects_xy(self.geoms[poly_idx], lon[pt_idx], lat[pt_idx])
        pt_idx, poly_idx = pt_idx[inside], poly_idx[inside]
        if len(pt_idx) > 1 and not (pt_idx[1:] > pt_idx[:-1]).all():
            # Some point lies in several polygons (on a shared edge): the smallest polygon
            # index (= smallest code) wins. Sort so that it is the last write for its point.
            order = np.lexsort((-poly_idx, pt_idx))
            pt_idx, poly_idx = pt_idx[order], poly_idx[order]
        out[pt_idx] = poly_idx
        return out

    def locate_point(self, lon: float, lat: float) -> int:
        """``locate`` of one point without the array set-up (the GET endpoint's hot path)."""
        cand = self.tree.query(shapely.points([lon, lat]))  # one coordinate pair: 3x faster
        if len(cand) == 0:
            return NOTHING
        hits = cand[shapely.intersects_xy(self.geoms[cand], lon, lat)].tolist()
        return min(hits) if hits else NOTHING  # smallest index = smallest code

    def nearest_point(self, lon: float, lat: float) -> tuple[int, float]:
        """``nearest`` of one point, same ranking and distance, without the array set-up."""
        if len(self.geoms) == 0 or not self.projection.covers(lon, lat):
            idx, dist = self.nearest(lon, lat)  # rare: far away, ranked in degrees
            return int(idx[0]), float(dist[0])
        x, y = self.projection.forward(lon, lat)
        q = shapely.Point(float(x), float(y))
        j = int(self.metric_tree.query_nearest(q, all_matches=False)[0])
        near = shapely.get_coordinates(shapely.shortest_line(self.metric[j], q))[0]
        nlon, nlat = self.projection.inverse(near[0], near[1])
        return j, float(geodesic_distance_m(lon, lat, nlon, nlat))

    def nearest(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[IntArray, FloatArray]:
        """Nearest polygon to each point and the geodesic distance in metres to its edge."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        n = len(lon)
        idx = np.full(n, NOTHING, dtype=np.int64)
        dist = np.full(n, np.nan)
        if n == 0 or len(self.geoms) == 0:
            return idx, dist
        x, y = self.projection.forward(lon, lat)
        finite = self.projection.covers(lon, lat) & np.isfinite(x) & np.isfinite(y)
        if finite.any():
            q = shapely.points(x[finite], y[finite])
            qi, ti = self.metric_tree.query_nearest(q, all_matches=False)
            sel = np.flatnonzero(finite)[qi]
            idx[sel] = np.where(ti >= 0, ti, NOTHING)
            # Nearest point on the polygon, back to lon/lat, then a geodesic distance.
            near = shapely.shortest_line(self.metric[ti], q[qi])
            p0 = shapely.get_point(near, 0)
            nlon, nlat = self.projection.inverse(shapely.get_x(p0), shapely.get_y(p0))
            dist[sel] = geodesic_distance_m(lon[sel], lat[sel], nlon, nlat)
        if (~finite).any():  # far outside the metric CRS: rank in degrees, measure geodesically
            q = shapely.points(lon[~finite], lat[~finite])
            qi, ti = self.tree.query_nearest(q, all_matches=False)
            sel = np.flatnonzero(~finite)[qi]
            idx[sel] = ti
            near = shapely.shortest_line(self.geoms[ti], q[qi])
            p0 = shapely.get_point(near, 0)
            dist[sel] = geodesic_distance_m(
                lon[sel], lat[sel], shapely.get_x(p0), shapely.get_y(p0)
            )
        return idx, dist

    def bbox(self, minlon: float, minlat: float, maxlon: float, maxlat: float) -> IntArray:
        """Polygons intersecting the box, in code order."""
        hits = self.tree.query(shapely.box(minlon, minlat, maxlon, maxlat), predicate="intersects")
        return np.sort(hits).astype(np.int64)


class PointIndex:
    """Facilities (stalls, vendor clusters): k-nearest, within-radius and bbox queries."""

    def __init__(self, lon: FloatArray, lat: FloatArray, projection: MetricProjection) -> None:
        self.lon = np.asarray(lon, dtype=np.float64)
        self.lat = np.asarray(lat, dtype=np.float64)
        self.projection = projection
        self.x, self.y = projection.forward(self.lon, self.lat)
        self.tree = STRtree(shapely.points(self.x, self.y))
        self.lonlat_tree = STRtree(shapely.points(self.lon, self.lat))
        if len(self.x) > 1:
            span = max(np.ptp(self.x) * np.ptp(self.y), 1.0)
            self._spacing = float(np.sqrt(span / len(self.x)))
        else:
            self._spacing = 1000.0

    def __len__(self) -> int:
        return len(self.lon)

    def _metric_point(self, lon: float, lat: float) -> tuple[float, float] | None:
        if not self.projection.covers(lon, lat):
            return None
        x, y = self.projection.forward(lon, lat)
        if not (np.isfinite(x) and np.isfinite(y)):
            return None
        return float(x), float(y)

    def within(
        self, lon: float, lat: float, radius_m: float, mask: npt.NDArray[np.bool_] | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Facilities within ``radius_m`` metres (geodesic), nearest first."""
        q = self._metric_point(lon, lat)
        if q is None or len(self) == 0:
            return np.empty(0, np.int64), np.empty(0)
        # Grid scale error near the zone edge is well under 0.1%: search a little wider,
        # then cut on the geodesic distance.
        cand = self.tree.query(
            shapely.points(*q), predicate="dwithin", distance=radius_m * 1.002 + 1
        )
        if mask is not None:
            cand = cand[mask[cand]]
        d = geodesic_distance_m(lon, lat, self.lon[cand], self.lat[cand])
        keep = d <= radius_m
        cand, d = cand[keep], d[keep]
        order = np.lexsort((cand, d))
        return cand[order].astype(np.int64), d[order]

    def nearest(
        self,
        lon: float,
        lat: float,
        k: int,
        mask: npt.NDArray[np.bool_] | None = None,
        max_distance_m: float | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """The ``k`` nearest facilities (optionally only where ``mask``), nearest first."""
        n_eligible = len(self) if mask is None else int(mask.sum())
        if n_eligible == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0)
        if self._metric_point(lon, lat) is None:
            d = geodesic_distance_m(lon, lat, self.lon, self.lat)
            cand = np.arange(len(self)) if mask is None else np.flatnonzero(mask)
            d = d[cand]
            order = np.lexsort((cand, d))[:k]
            idx, dist = cand[order], d[order]
        else:
            density = n_eligible / len(self)
            radius = self._spacing * np.sqrt(max(k, 1) / max(density, 1e-9)) * 1.5
            while True:
                if max_distance_m is not None:
                    radius = min(radius, max_distance_m)
                idx, dist = self.within(lon, lat, radius, mask)
                if (
                    len(idx) >= k
                    or len(idx) >= n_eligible
                    or (max_distance_m is not None and radius >= max_distance_m)
                ):
                    break
                radius *= 2.0
            idx, dist = idx[:k], dist[:k]
        if max_distance_m is not None:
            keep = dist <= max_distance_m
            idx, dist = idx[keep], dist[keep]
        return idx.astype(np.int64), dist

    def bbox(self, minlon: float, minlat: float, maxlon: float, maxlat: float) -> IntArray:
        hits = self.lonlat_tree.query(shapely.box(minlon, minlat, maxlon, maxlat))
        return np.sort(hits).astype(np.int64)
