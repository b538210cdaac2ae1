"""Spatial indexes over one snapshot of the layers.

Containment is tested in WGS84 lon/lat, the data's own CRS, exactly as PostGIS ``ST_Covers``
does on the same geometry. Distances are never taken in degrees: candidates are ranked in the
metric CRS and reported as geodesic distances on the WGS84 ellipsoid.

Edge rule: a point on a shared edge (or vertex) is covered by several grids; it belongs to the
one with the smallest code. Grids are stored sorted by code, so that is the smallest index.

Bulk locate of many points goes through a cell lookup table (``CellTable``): most points fall in
a cell that lies wholly inside one grid (or outside all) and are answered by a lookup; only the
points in cells crossed by a boundary get the exact test, with the same rule.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely import STRtree

from geo_service.core.crs import FloatArray, MetricProjection, geodesic_distance_m

IntArray = npt.NDArray[np.int64]
NOTHING = -1
MIXED = -2  # cell values <= MIXED are "crossed by a boundary": MIXED - value is the mixed id
CELLS_PER_GRID = 10  # cells per grid side (median grid): 4 in 5 points need no exact test
MAX_CELLS = 1 << 24  # 64 MB of int32 cell values; past this the cells grow (more exact tests)
LOOKUP_MIN_POINTS = 20_000  # a locate of this many points builds the cell table (once)
TABLE_MIN_POINTS = 16  # below this the tree path has less set-up than the table path
EPS = 1e-6  # in cell widths: a cell is pure only if no boundary comes this close to it
CHUNK = 1 << 20  # segments or polygons at a time while building (bounds the memory)


@dataclass(frozen=True, eq=False)
class CellTable:
    """A regular lattice over the polygons' extent, each cell precomputed as inside one polygon
    (its index), outside all (-1) or mixed (crossed by a boundary, with its candidate polygons).

    A cell is pure only if no boundary comes within ``EPS`` cell widths of it, which is far
    more than the rounding of ``(x - x0) / dx``; so a point exactly on a cell edge, whichever
    cell the arithmetic puts it in, gets that cell's answer correctly. Points outside the
    lattice (which has a one-cell margin around the polygons) or NaN are outside all."""

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int
    cells: npt.NDArray[np.int32]  # per cell (row-major): polygon, NOTHING or MIXED - mixed id
    indptr: npt.NDArray[np.int64]  # candidates of mixed id m: candidates[indptr[m]:indptr[m+1]]
    candidates: npt.NDArray[np.int32]  # ascending per cell: every polygon whose box meets it

    @classmethod
    def build(
        cls,
        geoms: npt.NDArray[np.object_],
        locate_exact: Callable[[FloatArray, FloatArray], IntArray],
        cells_per_grid: float = CELLS_PER_GRID,
        max_cells: int = MAX_CELLS,
    ) -> CellTable:
        """Vectorised: boundaries rasterised in pieces shorter than a cell, pure regions
        labelled as connected components (one exact locate per component), candidates of mixed
        cells from the polygons' bounding boxes (so overlapping polygons are never missed)."""
        from scipy import ndimage  # 0.3 s to import: only where a table is built

        bounds = shapely.bounds(geoms)
        known = np.isfinite(bounds).all(axis=1)
        if not known.any():
            raise ValueError("no polygon with coordinates")
        b = bounds[known]
        minx, miny = float(b[:, 0].min()), float(b[:, 1].min())
        maxx, maxy = float(b[:, 2].max()), float(b[:, 3].max())
        span_x, span_y = max(maxx - minx, 1e-9), max(maxy - miny, 1e-9)
        dx = float(np.median(b[:, 2] - b[:, 0])) / cells_per_grid or span_x / 64
        dy = float(np.median(b[:, 3] - b[:, 1])) / cells_per_grid or span_y / 64
        while (int(span_x / dx) + 3) * (int(span_y / dy) + 3) > max(max_cells, 16):
            grow = math.sqrt((span_x / dx + 3) * (span_y / dy + 3) / max_cells)
            dx, dy = dx * max(grow, 1.1), dy * max(grow, 1.1)  # the memory cap: coarser cells
        x0, y0 = minx - dx, miny - dy  # a margin of a cell: outside the lattice = outside all
        nx, ny = int(span_x / dx) + 3, int(span_y / dy) + 3

        boundary = _boundary_cells(geoms, x0, y0, dx, dy, nx, ny).reshape(ny, nx)
        labels, n_labels = ndimage.label(~boundary)  # 4-connected pure regions
        labels = labels.ravel()
        member = np.zeros(n_labels + 1, dtype=np.int64)
        member[labels] = np.arange(len(labels))  # any one cell of each region
        rep = member[1:]
        # No boundary comes near a pure region, so its centre cell's answer is the region's.
        value = np.empty(n_labels + 1, dtype=np.int32)
        value[0] = MIXED
        value[1:] = locate_exact(x0 + (rep % nx + 0.5) * dx, y0 + (rep // nx + 0.5) * dy)
        cells = value[labels]
        flat = boundary.ravel()
        n_mixed = int(flat.sum())
        cells[flat] = MIXED - np.arange(n_mixed, dtype=np.int32)
        indptr, candidates = _candidates(b, np.flatnonzero(known), flat, x0, y0, dx, dy, nx)
        return cls(x0, y0, dx, dy, nx, ny, cells, indptr, candidates)

    @property
    def n_mixed(self) -> int:
        return len(self.indptr) - 1

    @property
    def nbytes(self) -> int:
        return self.cells.nbytes + self.indptr.nbytes + self.candidates.nbytes

    def locate(self, geoms: npt.NDArray[np.object_], lon: FloatArray, lat: FloatArray) -> IntArray:
        """Polygon of each point (smallest index on shared edges) or NOTHING."""
        fx = (lon - self.x0) / self.dx
        fy = (lat - self.y0) / self.dy
        ok = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)  # NaN: False
        if ok.all():
            out = self.cells[fy.astype(np.int64) * self.nx + fx.astype(np.int64)].astype(np.int64)
        else:
            out = np.full(len(lon), NOTHING, dtype=np.int64)
            sel = np.flatnonzero(ok)
            out[sel] = self.cells[fy[sel].astype(np.int64) * self.nx + fx[sel].astype(np.int64)]
        pts = np.flatnonzero(out <= MIXED)
        if len(pts) == 0:
            return out
        mixed = MIXED - out[pts]
        out[pts] = NOTHING
        start, stop = self.indptr[mixed], self.indptr[mixed + 1]
        # Candidates ascend within a cell, so the first that covers the point is the smallest:
        # test one candidate per point per round, dropping points once answered.
        while len(pts):
            cand = self.candidates[start]
            hit = shapely.intersects_xy(geoms[cand], lon[pts], lat[pts])
            out[pts[hit]] = cand[hit]
            start = start + 1
            more = ~hit & (start < stop)
            pts, start, stop = pts[more], start[more], stop[more]
        return out

    def locate_point(self, geoms: npt.NDArray[np.object_], lon: float, lat: float) -> int:
        """``locate`` of one point in plain Python arithmetic (the same float64 results)."""
        fx = (lon - self.x0) / self.dx
        fy = (lat - self.y0) / self.dy
        if not (0 <= fx < self.nx and 0 <= fy < self.ny):
            return NOTHING
        v = int(self.cells[int(fy) * self.nx + int(fx)])
        if v > MIXED:
            return v
        m = MIXED - v
        cand = self.candidates[self.indptr[m] : self.indptr[m + 1]]
        hit = np.flatnonzero(shapely.intersects_xy(geoms[cand], lon, lat))
        return int(cand[hit[0]]) if len(hit) else NOTHING


def _boundary_cells(
    geoms: npt.NDArray[np.object_], x0: float, y0: float, dx: float, dy: float, nx: int, ny: int
) -> npt.NDArray[np.bool_]:
    """Cells within ``EPS`` of any polygon boundary (holes included), conservatively.

    Each segment is cut into pieces at most one cell long in x and in y; a piece's box, grown
    by ``EPS``, spans at most three cells each way, and all of them are marked. Segments go
    in chunks, so the pieces of a million grids never need more than a few hundred MB."""
    plain = (shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON) & (
        shapely.get_num_interior_rings(geoms) == 0
    )
    rings = geoms if plain.all() else shapely.get_parts(shapely.boundary(geoms))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    u = (xy[:, 0] - x0) / dx
    v = (xy[:, 1] - y0) / dy
    segments = np.flatnonzero(ring[1:] == ring[:-1])  # consecutive vertices of one ring
    marked = np.zeros(nx * ny, dtype=bool)
    for first in range(0, len(segments), CHUNK):
        seg = segments[first : first + CHUNK]
        u_a, v_a = u[seg], v[seg]
        du, dv = u[seg + 1] - u_a, v[seg + 1] - v_a
        n = np.maximum(np.ceil(np.maximum(np.abs(du), np.abs(dv))), 1).astype(np.int64)
        # n + 1 points along each segment, end to end; a piece joins a point to the next one.
        step = np.repeat(1.0 / n, n + 1)
        t = np.arange(len(step), dtype=np.float64) - np.repeat(np.cumsum(n + 1) - (n + 1), n + 1)
        t *= step
        pu = np.repeat(u_a, n + 1) + np.repeat(du, n + 1) * t
        pv = np.repeat(v_a, n + 1) + np.repeat(dv, n + 1) * t
        joins = t[1:] > 0  # False where the next point starts another segment
        u_lo = np.floor(np.minimum(pu[:-1], pu[1:]) - EPS).astype(np.int32)
        u_hi = np.floor(np.maximum(pu[:-1], pu[1:]) + EPS).astype(np.int32)
        v_lo = np.floor(np.minimum(pv[:-1], pv[1:]) - EPS).astype(np.int32)
        v_hi = np.floor(np.maximum(pv[:-1], pv[1:]) + EPS).astype(np.int32)
        base = v_lo.astype(np.int64) * nx + u_lo
        for i in range(3):
            for k in range(3):
                m = joins & (u_lo + i <= u_hi) & (v_lo + k <= v_hi)
                marked[base[m] + (k * nx + i)] = True
    return marked


def _candidates(
    bounds: FloatArray,
    polys: IntArray,
    mixed: npt.NDArray[np.bool_],
    x0: float,
    y0: float,
    dx: float,
    dy: float,
    nx: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """CSR lists, per mixed cell in cell order, of the polygons whose box (grown by ``EPS``)
    meets it, ascending. Walks each box row by row: the mixed cells of a row run are a
    contiguous range of mixed ids (a prefix count), so no cell outside a boundary is visited.
    Each pair is one int64, mixed id above the polygon's bits, so one sort orders them all."""
    u0 = np.floor((bounds[:, 0] - x0) / dx - EPS).astype(np.int64)
    u1 = np.floor((bounds[:, 2] - x0) / dx + EPS).astype(np.int64)
    v0 = np.floor((bounds[:, 1] - y0) / dy - EPS).astype(np.int64)
    v1 = np.floor((bounds[:, 3] - y0) / dy + EPS).astype(np.int64)
    before = np.zeros(len(mixed) + 1, dtype=np.int64)  # mixed cells before each cell
    np.cumsum(mixed, out=before[1:])
    bits = max(int(polys.max(initial=0)).bit_length(), 1)
    keys = []
    for first in range(0, len(polys), CHUNK):
        part = slice(first, first + CHUNK)
        rows = v1[part] - v0[part] + 1
        box = np.repeat(np.arange(first, first + len(rows)), rows)
        row = v0[box] + np.arange(len(box)) - np.repeat(np.cumsum(rows) - rows, rows)
        start = row * nx + u0[box]
        lo, hi = before[start], before[start + (u1 - u0 + 1)[box]]
        count = hi - lo
        mixed_id = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
        keys.append((mixed_id << bits) | np.repeat(polys[box], count))
    key = np.sort(np.concatenate(keys))
    n_mixed = int(before[-1])
    indptr = np.zeros(n_mixed + 1, dtype=np.int64)
    np.cumsum(np.bincount(key >> bits, minlength=n_mixed), out=indptr[1:])
    return indptr, (key & ((1 << bits) - 1)).astype(np.int32)


class PolygonIndex:
    """Polygons (grids) sorted by code: locate, nearest, bbox."""

    def __init__(
        self,
        geoms: npt.NDArray[np.object_],
        projection: MetricProjection,
        cells: CellTable | None = None,
    ) -> None:
        """``cells``: a table already built over the same polygons (sent to a worker)."""
        self.geoms = geoms
        self.projection = projection
        shapely.prepare(self.geoms)
        self.tree = STRtree(self.geoms)
        self.metric = projection.project(self.geoms)
        self.metric_tree = STRtree(self.metric)
        self.area_m2: FloatArray = shapely.area(self.metric)
        self._cells: CellTable | None = cells
        self._cells_lock = threading.Lock()
        self._cells_started = False

    def __len__(self) -> int:
        return len(self.geoms)

    def cell_table(self) -> CellTable | None:
        """The cell lookup table, built now if it is not yet (or waited for while another
        thread builds it); None without polygons. Never built with the snapshot, so start-up
        and reloads do not pay for it."""
        if self._cells is None and len(self.geoms):
            with self._cells_lock:
                if self._cells is None:
                    self._cells = CellTable.build(self.geoms, self.locate_tree)
        return self._cells

    def locate(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> IntArray:
        """Index of the polygon covering each point (boundary included), or -1.

        Through the cell table once it is built, else the tree. The first locate of
        ``LOOKUP_MIN_POINTS`` points starts building the table in a thread of its own, so
        that request is not kept waiting for it (seconds at a million grids)."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        n = len(lon)
        table = self._cells
        if table is None and n >= LOOKUP_MIN_POINTS and not self._cells_started:
            self._cells_started = True
            threading.Thread(target=self.cell_table, name="cell-table", daemon=True).start()
        if table is not None and n >= TABLE_MIN_POINTS:
            return table.locate(self.geoms, lon, lat)
        return self.locate_tree(lon, lat)

    def locate_tree(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> IntArray:
        """``locate`` by the tree alone: bounding boxes from the tree, then one vectorised
        point-in-polygon test of the candidates on the prepared polygons (faster than the
        tree's own predicate, which tests unprepared points; see bench/RESULTS.md)."""
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
        if self._cells is not None:
            return self._cells.locate_point(self.geoms, lon, lat)
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
