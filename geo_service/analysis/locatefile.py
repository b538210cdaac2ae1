"""Locate every point of a file that may be larger than memory.

The file is read in partitions (pyarrow's streaming CSV reader, a pyarrow dataset for a
(Geo)Parquet file or folder, pyogrio's Arrow stream for a GeoPackage layer). Each partition is
located by the snapshot's ``PolygonIndex`` with the API's rule (``ST_Covers``, the smallest code
on shared edges) and written out at once with its grid, community, street and district codes,
so memory holds a few partitions whatever the file's size. Partitions are located in this
process, by a bounded pool of forked processes (which share the loaded index and its cell
table), or on a Dask cluster (which gets the grid polygons once and builds the index on each
worker). The output is written next to its final name and renamed when complete.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyproj
import shapely

from geo_service.core.crs import FloatArray, MetricProjection, PointCRS, to_wgs84
from geo_service.core.errors import InputError, quote
from geo_service.core.index import PolygonIndex

if TYPE_CHECKING:
    from geo_service.core.snapshot import Snapshot

# pyarrow.dataset, pyogrio and pandas are imported where they are used (opening a Parquet
# dataset or a GeoPackage, the codes table): a Dask worker imports this module to run
# locate_partition, and starts a second sooner without them.

CODE_COLUMNS = {  # output column: column of the grids layer
    "grid_code": "code",
    "community_code": "community_code",
    "street_code": "street_code",
    "district_code": "district_code",
}
LONLAT_NAMES = (("lon", "lat"), ("lng", "lat"), ("longitude", "latitude"), ("x", "y"))
DEFAULT_BATCH_ROWS = 250_000
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1_000, 5_000_000
MAX_WORKERS = 256
GEOGRAPHIC_EPSG = (4326, 4490)  # WGS84 and CGCS2000 lon/lat: the same to a metre, as the API
OUT_LAYER = "located"
LONLAT_IDS = [{"authority": "EPSG", "code": c} for c in GEOGRAPHIC_EPSG] + [
    {"authority": "OGC", "code": "CRS84"}
]


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    gpkg = "gpkg"


SUFFIXES = {
    ".csv": FileFormat.csv,
    ".txt": FileFormat.csv,
    ".parquet": FileFormat.parquet,
    ".geoparquet": FileFormat.parquet,
    ".pq": FileFormat.parquet,
    ".gpkg": FileFormat.gpkg,
}


class LocateFileError(InputError):
    """A points file, option or output that cannot be used; ``field`` names the option."""

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker process: keep the field
        return (type(self), (self.message, self.field))


def file_format(path: Path, what: str) -> FileFormat:
    """The format a path names by its suffix (a folder is a Parquet dataset)."""
    if what == "points" and path.is_dir():
        return FileFormat.parquet
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise LocateFileError(
            f"{quote(path.name)}: unknown format; use one of {', '.join(sorted(SUFFIXES))}", what
        )
    return fmt


@dataclass(frozen=True)
class LocateOptions:
    """How to read the points and where to locate them."""

    lon: str | None = None  # coordinate columns (CSV, plain Parquet); found by name if None
    lat: str | None = None
    geometry: str | None = None  # geometry column (GeoParquet, GeoPackage); from the file if None
    layer: str | None = None  # GeoPackage layer; the first if None
    crs: PointCRS = PointCRS.wgs84  # of lon/lat coordinates (a projected file says its own)
    encoding: str = "utf-8"  # of a CSV file
    batch_rows: int = DEFAULT_BATCH_ROWS
    workers: int = 1  # 1: this process; more: a pool of local processes
    scheduler: str | None = None  # a Dask scheduler address: locate on that cluster

    def check(self) -> None:
        if not MIN_BATCH_ROWS <= self.batch_rows <= MAX_BATCH_ROWS:
            raise LocateFileError(
                f"must be within {MIN_BATCH_ROWS:,}..{MAX_BATCH_ROWS:,}, not {self.batch_rows}",
                "batch_rows",
            )
        if not 1 <= self.workers <= MAX_WORKERS:
            raise LocateFileError(f"must be within 1..{MAX_WORKERS}, not {self.workers}", "workers")
        if self.scheduler is not None and not self.scheduler.startswith(
            ("tcp://", "tls://", "inproc://", "ucx://")
        ):
            raise LocateFileError(
                f"{quote(self.scheduler)} is no scheduler address (tcp://host:port)", "scheduler"
            )
        if (self.lon is None) != (self.lat is None):
            raise LocateFileError("give both --lon and --lat, or neither", "lon")


@dataclass(frozen=True)
class LocateSummary:
    rows: int
    located: int
    partitions: int
    seconds: float
    where: str  # "this process", "2 local processes", "Dask cluster at tcp://..."

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, float | None], None]  # rows written, fraction of the input read


# --- what a worker does ------------------------------------------------------------------------


@dataclass(frozen=True)
class PointReader:
    """How a worker gets WGS84 lon/lat out of a partition; small and picklable."""

    lon: str | None = None
    lat: str | None = None
    geometry: str | None = None
    encoding: str = "wkb"  # GeoParquet encodings: "wkb" or "point" (GeoArrow x/y struct)
    source_crs: str | None = None  # a file CRS other than lon/lat WGS84 (WKT): projected first
    crs: PointCRS = PointCRS.wgs84
    want_lonlat: bool = False  # also return the located lon/lat (CSV output of a geometry)
    want_wkb: bool = False  # also return them as WKB points (GeoPackage output of a CSV)

    def columns(self) -> list[str]:
        return [self.geometry] if self.geometry else [str(self.lon), str(self.lat)]

    def coordinates(self, batch: pa.RecordBatch) -> tuple[FloatArray, FloatArray]:
        try:
            x, y = self._xy(batch)
        except (pa.ArrowInvalid, shapely.errors.GEOSException) as exc:
            raise LocateFileError(f"a partition cannot be read: {exc}", "points") from None
        if self.source_crs is not None:
            x, y = _to_lonlat(self.source_crs).transform(x, y)
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return to_wgs84(x, y, self.crs)

    def _xy(self, batch: pa.RecordBatch) -> tuple[FloatArray, FloatArray]:
        if self.geometry is None:
            x = _floats(batch.column(str(self.lon)))
            y = _floats(batch.column(str(self.lat)))
        elif self.encoding == "point":
            col = batch.column(self.geometry)
            valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            x = np.where(valid, _floats(col.field("x")), np.nan)
            y = np.where(valid, _floats(col.field("y")), np.nan)
        else:
            geoms = shapely.from_wkb(batch.column(self.geometry).to_numpy(zero_copy_only=False))
            kinds = shapely.get_type_id(geoms)
            odd = (kinds != shapely.GeometryType.POINT) & (kinds != shapely.GeometryType.MISSING)
            if odd.any():
                kind = shapely.GeometryType(int(kinds[np.flatnonzero(odd)[0]])).name.lower()
                raise LocateFileError(
                    f"{int(odd.sum())} rows of a partition hold geometries that are not points "
                    f"(the first a {kind})",
                    "geometry",
                )
            x, y = shapely.get_x(geoms), shapely.get_y(geoms)
        return x, y


def _floats(arr: pa.Array) -> FloatArray:
    """A numeric Arrow column as float64 with NaN for nulls."""
    return np.asarray(
        pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    ).copy()


@lru_cache(maxsize=8)
def _to_lonlat(source_crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(source_crs, 4326, always_xy=True)


class GridPolygons:
    """The grid polygons in code order, as a worker needs them: the snapshot's own index in
    this process and in forked workers; pickled (for Dask) as WKB with the cell table, the
    index rebuilt around them once per worker process and kept on the object it holds."""

    def __init__(self, index: PolygonIndex) -> None:
        self._index: PolygonIndex | None = index
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()

    def index(self) -> PolygonIndex:
        with self._lock:
            if self._index is None:
                state = self._state
                geoms = shapely.from_wkb(state["wkb"])
                projection = MetricProjection(state["epsg"])
                self._index = PolygonIndex(geoms, projection, cells=state["cells"])
                self._index.cell_table()  # a worker is here for many points
            return self._index

    def __getstate__(self) -> dict[str, Any]:
        if self._state:
            return self._state
        index = self.index()
        return {
            "wkb": shapely.to_wkb(index.geoms),
            "epsg": index.projection.epsg,
            "cells": index.cell_table(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._index, self._state, self._lock = None, state, threading.Lock()


def locate_partition(
    grids: GridPolygons, batch: pa.RecordBatch, reader: PointReader
) -> pa.RecordBatch:
    """Grid position of each row (null where no grid covers it), plus what the output needs."""
    lon, lat = reader.coordinates(batch)
    idx = grids.index().locate(lon, lat)
    cols = {"grid": pa.array(idx.astype(np.int32), mask=idx < 0)}
    if reader.want_lonlat:
        cols["lon"], cols["lat"] = pa.array(lon), pa.array(lat)
    if reader.want_wkb:
        cols["geometry"] = pa.array(shapely.to_wkb(shapely.points(lon, lat)), pa.binary())
    return pa.RecordBatch.from_pydict(cols)


_POOL_GRIDS: GridPolygons | None = None  # set in each pool process by _pool_init


def _pool_init(grids: GridPolygons) -> None:
    global _POOL_GRIDS
    _POOL_GRIDS = grids


def _pool_locate(batch: pa.RecordBatch, reader: PointReader) -> pa.RecordBatch:
    assert _POOL_GRIDS is not None, "pool process not initialised"
    return locate_partition(_POOL_GRIDS, batch, reader)


# --- where partitions are located --------------------------------------------------------------


class _Pending(Protocol):
    def result(self) -> pa.RecordBatch: ...


@dataclass
class _Done:
    value: pa.RecordBatch

    def result(self) -> pa.RecordBatch:
        return self.value


class _Runner(Protocol):
    where: str
    capacity: int  # partitions in flight at most

    def submit(self, batch: pa.RecordBatch, reader: PointReader) -> _Pending: ...

    def close(self) -> None: ...


class _InProcess:
    capacity = 1
    where = "this process"

    def __init__(self, grids: GridPolygons) -> None:
        self.grids = grids

    def submit(self, batch: pa.RecordBatch, reader: PointReader) -> _Pending:
        return _Done(locate_partition(self.grids, batch, reader))

    def close(self) -> None:
        pass


class _LocalPool:
    """``workers`` processes; forked where possible, so they share the parent's index (and
    its cell table, built before forking) copy-on-write instead of each building one."""

    def __init__(self, grids: GridPolygons, workers: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_pool_init, initargs=(grids,)
        )
        self.capacity = 2 * workers
        self.where = f"{workers} local processes"
        self.pool.submit(os.getpid).result()  # all forked now, before the first partition

    def submit(self, batch: pa.RecordBatch, reader: PointReader) -> _Pending:
        fut: Future[pa.RecordBatch] = self.pool.submit(_pool_locate, batch, reader)
        return fut

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskCluster:
    """Partitions as tasks on a Dask cluster; the polygons are sent to every worker once."""

    def __init__(self, grids: GridPolygons, address: str) -> None:
        from distributed import Client

        try:
            self.client = Client(address, timeout="20s", set_as_default=False)
        except OSError as exc:
            raise LocateFileError(f"no Dask scheduler at {address}: {exc}", "scheduler") from None
        threads = sum(self.client.nthreads().values())
        if threads == 0:
            self.client.close()
            raise LocateFileError(f"the Dask cluster at {address} has no workers", "scheduler")
        self.grids = self.client.scatter(grids, broadcast=True, hash=False)
        self.capacity = 2 * threads
        self.where = f"Dask cluster at {address} ({threads} worker threads)"

    def submit(self, batch: pa.RecordBatch, reader: PointReader) -> _Pending:
        data = self.client.scatter(batch, direct=True, hash=False)  # to a worker, not the graph
        fut: _Pending = self.client.submit(locate_partition, self.grids, data, reader, pure=False)
        return fut

    def close(self) -> None:
        self.client.close()


def _runner(grids: GridPolygons, options: LocateOptions, partitions: int) -> _Runner:
    if options.scheduler:
        return _DaskCluster(grids, options.scheduler)
    if partitions > 1:  # the table pays for itself over many points; one partition: the tree
        grids.index().cell_table()  # built here, before forking: the pool shares it
    if options.workers > 1 and partitions > 1:
        return _LocalPool(grids, options.workers)
    return _InProcess(grids)


# --- reading -----------------------------------------------------------------------------------


@dataclass
class Source:
    """An input opened for streaming: its schema, how to read points, its partitions."""

    schema: pa.Schema
    reader: PointReader
    batches: Iterator[pa.RecordBatch]
    fraction: Callable[[int], float | None]  # of the input read, after n rows
    geometry_crs: Any = None  # the file's CRS as it says it (GeoParquet, GeoPackage)
    geo_metadata: bytes | None = None  # the GeoParquet "geo" metadata of the input
    partitions: int = 1  # about how many partitions it holds


def _match(names: list[str], wanted: str, what: str) -> str:
    if wanted in names:
        return wanted
    folded = [n for n in names if n.lower() == wanted.lower()]
    if len(folded) == 1:
        return folded[0]
    raise LocateFileError(
        f"no column {quote(wanted)}; the file has {quote(', '.join(names))}", what
    )


def _lonlat_columns(names: list[str], options: LocateOptions) -> tuple[str, str] | None:
    if options.lon is not None and options.lat is not None:
        return _match(names, options.lon, "lon"), _match(names, options.lat, "lat")
    lower = {n.lower(): n for n in names}
    for lon, lat in LONLAT_NAMES:
        if lon in lower and lat in lower:
            return lower[lon], lower[lat]
    return None


def _no_lonlat(names: list[str]) -> LocateFileError:
    return LocateFileError(
        "no coordinate columns: name them with --lon and --lat (found none of "
        f"{', '.join('/'.join(p) for p in LONLAT_NAMES)} among {quote(', '.join(names))})",
        "lon",
    )


def _foreign_crs(crs: Any, options: LocateOptions) -> str | None:
    """None for lon/lat WGS84 or CGCS2000 (or no CRS); else the CRS as WKT, to project from."""
    if crs is None or (isinstance(crs, dict) and crs.get("id") in LONLAT_IDS):
        return None  # the usual GeoParquet CRS, known without parsing it
    try:
        parsed = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise LocateFileError(f"the file's CRS cannot be read: {exc}", "points") from None
    if parsed.to_epsg() in GEOGRAPHIC_EPSG or parsed.equals("OGC:CRS84"):
        return None
    if options.crs not in (PointCRS.wgs84, PointCRS.cgcs2000):
        raise LocateFileError(
            f"--crs {options.crs.value} is for lon/lat points, but the file is in {parsed.name}",
            "crs",
        )
    return str(parsed.to_wkt())


def _wkt(crs: Any) -> str | None:
    return None if crs is None else str(pyproj.CRS.from_user_input(crs).to_wkt())


def _batches(it: Iterator[pa.RecordBatch], path: Path) -> Iterator[pa.RecordBatch]:
    """The reader's partitions, with read errors (a bad value on some row) as input errors."""
    try:
        yield from it
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        raise LocateFileError(f"{path.name}: {exc}", "points") from None


def _csv_source(path: Path, options: LocateOptions, stack: ExitStack) -> Source:
    read = pacsv.ReadOptions(block_size=1 << 16, encoding=options.encoding)
    try:
        with pacsv.open_csv(str(path), read_options=read) as head:
            names = list(head.schema.names)
            sample = next(iter(head), None)
    except (pa.ArrowInvalid, UnicodeDecodeError, LookupError) as exc:
        raise LocateFileError(f"{path.name} cannot be read as CSV: {exc}", "points") from None
    pair = _lonlat_columns(names, options)
    if pair is None:
        raise _no_lonlat(names)
    lon, lat = pair
    size = path.stat().st_size
    bytes_per_row = max((1 << 16) / sample.num_rows, 8.0) if sample else 64.0
    block = int(min(max(options.batch_rows * bytes_per_row, 1 << 14), 1 << 28))
    types = {n: pa.string() for n in names} | {lon: pa.float64(), lat: pa.float64()}
    src = stack.enter_context(pa.OSFile(str(path)))
    try:  # reads the first partition: a bad value there is reported now
        reader = pacsv.open_csv(
            src,
            read_options=pacsv.ReadOptions(block_size=block, encoding=options.encoding),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise LocateFileError(f"{path.name}: {exc}", "points") from None
    return Source(
        schema=reader.schema,
        reader=PointReader(lon=lon, lat=lat, crs=options.crs),
        batches=_batches(iter(reader), path),
        fraction=lambda _rows: src.tell() / size if size else None,
        partitions=max(size // block, 1),
    )


def _parquet_source(path: Path, options: LocateOptions) -> Source:
    import pyarrow.dataset as pads

    try:
        ds = pads.dataset(str(path), format="parquet")
        schema = ds.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise LocateFileError(f"{path.name} cannot be read as Parquet: {exc}", "points") from None
    names = list(schema.names)
    geo = (schema.metadata or {}).get(b"geo")
    pair = _lonlat_columns(names, options) if options.lon else None
    reader: PointReader
    crs = None
    if geo is not None and pair is None:
        meta = json.loads(geo)
        column = options.geometry or meta.get("primary_column", "geometry")
        column = _match(names, column, "geometry")
        col_meta = meta.get("columns", {}).get(column, {})
        kinds = {str(k).removesuffix(" Z") for k in col_meta.get("geometry_types", [])}
        if kinds - {"Point"}:
            raise LocateFileError(
                f"column {quote(column)} holds {', '.join(sorted(kinds))}, not points",
                "geometry",
            )
        encoding = str(col_meta.get("encoding", "WKB")).lower()
        if encoding not in ("wkb", "point"):
            raise LocateFileError(f"GeoParquet encoding {quote(encoding)} is not read", "points")
        crs = col_meta.get("crs", "OGC:CRS84")  # absent means lon/lat WGS84 (GeoParquet)
        reader = PointReader(
            geometry=column,
            encoding=encoding,
            source_crs=_foreign_crs(crs, options),
            crs=options.crs,
        )
    else:
        pair = pair or _lonlat_columns(names, options)
        if pair is None:
            raise _no_lonlat(names)
        reader = PointReader(lon=pair[0], lat=pair[1], crs=options.crs)
    total = ds.count_rows()
    return Source(
        schema=schema,
        reader=reader,
        batches=_batches(ds.to_batches(batch_size=options.batch_rows), path),
        fraction=lambda rows: rows / total if total else None,
        geometry_crs=crs if reader.geometry else None,
        geo_metadata=geo if reader.geometry else None,
        partitions=-(-total // options.batch_rows),
    )


def _gpkg_source(path: Path, options: LocateOptions, stack: ExitStack) -> Source:
    import pyogrio

    try:
        info = pyogrio.read_info(path, layer=options.layer)
        meta, stream = stack.enter_context(
            pyogrio.open_arrow(
                path, layer=options.layer, batch_size=options.batch_rows, use_pyarrow=True
            )
        )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise LocateFileError(f"{path.name}: {exc}", "points") from None
    kind = str(info.get("geometry_type") or "")  # "Point", "Point Z", "3D Point", ...
    if kind not in ("", "Unknown") and ("Point" not in kind or "Multi" in kind):
        raise LocateFileError(f"layer {info['layer_name']} holds {kind}, not points", "layer")
    names = list(stream.schema.names)
    geometry = meta.get("geometry_name") or "wkb_geometry"
    if geometry not in names:
        raise LocateFileError(f"layer {info['layer_name']} has no geometry column", "layer")
    total = int(info.get("features") or 0)
    return Source(
        schema=stream.schema,
        reader=PointReader(
            geometry=geometry,
            source_crs=_foreign_crs(meta.get("crs"), options),
            crs=options.crs,
        ),
        batches=_batches(iter(stream), path),
        fraction=lambda rows: rows / total if total else None,
        geometry_crs=meta.get("crs"),
        partitions=-(-total // options.batch_rows),
    )


@contextmanager
def open_source(path: Path, options: LocateOptions) -> Iterator[Source]:
    """The points file opened for streaming, in partitions of about ``batch_rows`` rows."""
    if not path.exists():
        raise LocateFileError(f"{quote(str(path))} does not exist", "points")
    fmt = file_format(path, "points")
    with ExitStack() as stack:
        if fmt is FileFormat.csv:
            yield _csv_source(path, options, stack)
        elif fmt is FileFormat.parquet:
            yield _parquet_source(path, options)
        else:
            yield _gpkg_source(path, options, stack)


# --- writing -----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What the output holds: the input's columns (its geometry only where the format keeps
    one), the located lon/lat or point where the format needs them, then the four codes."""

    fmt: FileFormat
    drop: list[str] = field(default_factory=list)
    geometry: str | None = None  # geometry column of the output (WKB)
    geometry_crs: Any = None  # anything pyproj reads
    metadata: dict[bytes, bytes] | None = None


def plan_output(source: Source, fmt: FileFormat) -> tuple[Plan, PointReader]:
    """The output's columns, and what the workers must return for them. Code columns already
    in the input (an earlier output, located again after the grids changed) are replaced."""
    names = list(source.schema.names)
    reader = source.reader
    plan = Plan(fmt, drop=[n for n in names if n in CODE_COLUMNS])
    added: list[str] = []
    if reader.geometry is not None and fmt is FileFormat.csv:  # no geometry: lon/lat columns
        plan.drop.append(reader.geometry)
        reader, added = replace(reader, want_lonlat=True), ["lon", "lat"]
    elif fmt is FileFormat.gpkg and (reader.geometry is None or reader.encoding != "wkb"):
        if reader.geometry is not None:
            plan.drop.append(reader.geometry)
        plan.geometry, plan.geometry_crs = "geometry", "EPSG:4326"  # the located WGS84 points
        reader, added = replace(reader, want_wkb=True), ["geometry"]
    elif reader.geometry is not None:  # the input's own geometry, unchanged
        plan.geometry, plan.geometry_crs = reader.geometry, source.geometry_crs
        if fmt is FileFormat.parquet:
            plan.metadata = {b"geo": source.geo_metadata or _geo_metadata(plan)}
    clash = sorted(set(names) - set(plan.drop) & set(added))
    if clash:
        raise LocateFileError(
            f"the output adds column(s) {', '.join(clash)}, which the input already has; "
            "rename them first",
            "points",
        )
    return plan, reader


def _geo_metadata(plan: Plan) -> bytes:
    """GeoParquet 1.1 metadata of the output's WKB point column (its CRS as PROJJSON)."""
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"]}
    if plan.geometry_crs is not None:
        column["crs"] = pyproj.CRS.from_user_input(plan.geometry_crs).to_json_dict()
    meta = {"version": "1.1.0", "primary_column": plan.geometry, "columns": {plan.geometry: column}}
    return json.dumps(meta).encode()


def assemble(
    batch: pa.RecordBatch, located: pa.RecordBatch, codes: dict[str, CodeLevel], plan: Plan
) -> pa.RecordBatch:
    """The output rows: kept input columns, what the worker added, the four codes (dictionary
    columns: a code per distinct value, an index per row, so no string is copied)."""
    arrays, names = [], []
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name not in plan.drop:
            arrays.append(col)
            names.append(name)
    for name in ("lon", "lat", "geometry"):
        if name in located.schema.names:
            arrays.append(located.column(name))
            names.append(name)
    grid = located.column("grid")
    for name, level in codes.items():
        index = grid if level.of_grid is None else pc.take(level.of_grid, grid)
        column = pa.DictionaryArray.from_arrays(index, level.codes)
        arrays.append(column if plan.fmt is not FileFormat.gpkg else column.dictionary_decode())
        names.append(name)
    out = pa.RecordBatch.from_arrays(arrays, names=names)
    return out.replace_schema_metadata(plan.metadata) if plan.metadata else out


class Sink:
    """The output, written partition by partition into a temporary file beside it."""

    def __init__(self, out: Path, plan: Plan, layer: str) -> None:
        self.out, self.plan, self.layer = out, plan, layer
        self.tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
        self.writer: Any = None
        self.schema: pa.Schema | None = None
        self.crs = _wkt(plan.geometry_crs) if plan.fmt is FileFormat.gpkg else None

    def write(self, batch: pa.RecordBatch) -> None:
        if self.plan.fmt is FileFormat.gpkg:
            import pyogrio

            pyogrio.write_arrow(
                pa.Table.from_batches([batch]),
                self.tmp,
                layer=self.layer,
                driver="GPKG",
                geometry_name=self.plan.geometry,
                geometry_type="Point",
                crs=self.crs,
                append=self.schema is not None,
            )
            self.schema = batch.schema
            return
        if self.writer is None:
            self.schema = batch.schema
            if self.plan.fmt is FileFormat.csv:
                self.writer = pacsv.CSVWriter(str(self.tmp), batch.schema)
            else:
                self.writer = pq.ParquetWriter(str(self.tmp), batch.schema, compression="zstd")
        self.writer.write_batch(batch)

    def commit(self, empty: pa.RecordBatch) -> None:
        if self.schema is None:  # no rows: an empty file with the output's columns
            self.write(empty)
        if self.writer is not None:
            self.writer.close()
        self.tmp.replace(self.out)

    def abort(self) -> None:
        if self.writer is not None:
            with suppress(OSError, pa.ArrowException):
                self.writer.close()
        self.tmp.unlink(missing_ok=True)


# --- the whole run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeLevel:
    """The distinct codes of one level, and which of them each grid position has."""

    codes: pa.Array  # strings
    of_grid: pa.Array | None  # int32 per grid position (None: the grids' own codes)


def code_levels(snapshot: Snapshot) -> dict[str, CodeLevel]:
    """Grid, community, street and district codes of the grid positions (code order)."""
    import pandas as pd  # here, not at the top: a Dask worker never needs it

    frame = snapshot.grids.frame
    levels = {"grid_code": CodeLevel(pa.array(snapshot.grids.codes, pa.string()), None)}
    for out, col in CODE_COLUMNS.items():
        if out != "grid_code":
            pos, distinct = pd.factorize(frame[col].to_numpy(dtype=object), sort=True)
            of_grid = pa.array(pos.astype(np.int32), mask=pos < 0)
            levels[out] = CodeLevel(pa.array(distinct, pa.string()), of_grid)
    return levels


def locate_file(
    snapshot: Snapshot,
    points: Path,
    out: Path,
    options: LocateOptions,
    progress: Progress | None = None,
) -> LocateSummary:
    """Locate every point of ``points`` and write it with its codes to ``out``."""
    options.check()
    out_fmt = file_format(out, "out")
    if out.exists() and out.is_dir():
        raise LocateFileError(f"{quote(str(out))} is a folder", "out")
    if not out.resolve().parent.is_dir():
        raise LocateFileError(f"no folder {quote(str(out.parent))} to write into", "out")
    if points.exists() and out.exists() and out.resolve() == points.resolve():
        raise LocateFileError("the output would overwrite the input", "out")
    codes = code_levels(snapshot)
    grids = GridPolygons(snapshot.grids.index)
    t0 = time.perf_counter()
    with open_source(points, options) as source:
        plan, reader = plan_output(source, out_fmt)
        none = pa.RecordBatch.from_pylist([], schema=source.schema)
        empty = assemble(none, locate_partition(grids, none, reader), codes, plan)
        sink = Sink(out, plan, options.layer or OUT_LAYER)
        runner = _runner(grids, options, source.partitions)
        rows = located = parts = 0
        try:
            pending: deque[tuple[pa.RecordBatch, _Pending]] = deque()

            def drain(keep: int) -> None:
                nonlocal rows, located, parts
                while len(pending) > keep:
                    batch, fut = pending.popleft()
                    result = fut.result()
                    sink.write(assemble(batch, result, codes, plan))
                    rows += batch.num_rows
                    located += batch.num_rows - result.column("grid").null_count
                    parts += 1
                    if progress is not None:
                        progress(rows, source.fraction(rows))

            for batch in source.batches:
                if batch.num_rows == 0:
                    continue
                pending.append((batch, runner.submit(batch.select(reader.columns()), reader)))
                drain(runner.capacity - 1)
            drain(0)
            sink.commit(empty)
        except BaseException:
            sink.abort()
            raise
        finally:
            runner.close()
    return LocateSummary(rows, located, parts, time.perf_counter() - t0, runner.where)
