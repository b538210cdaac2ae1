"""The feature collections the OGC API serves, and each one's features at this moment.

A collection is a flat table GIS clients read as a layer: one id, flat properties (a grid's
community is ``community_code``/``community_name``, as in the layer files, not a nested object),
one geometry in WGS84. Grids, the units dissolved from them, stalls and vendor clusters come from
the snapshot (the same one the files and the PostGIS backends load) and are built once per
snapshot; cases come from the case store, public fields only (as ``GET /api/v1/cases``), rebuilt
when a case changes or an overdue flag would.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from geo_service.core.cases import AWAITING_HANDLING, Case, CaseStatus, parse_time
from geo_service.core.errors import NotFoundError, quote
from geo_service.core.schema import (
    CLUSTER_KINDS,
    SERVICES,
    STALL_STATUSES,
    VERSION_FIELD,
    LayerName,
    Level,
)
from geo_service.core.snapshot import Snapshot
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.caseview import service_request
from geo_service.storage.cases import CaseQuery

GEOMETRY = "geometry"
MAX_CASES = 2_000_000
SELECTIONS_KEPT = 16  # per collection and snapshot
JsonType = Literal["string", "integer", "number", "boolean", "array"]


@dataclass(frozen=True)
class Queryable:
    """A property a filter may name, described as JSON Schema."""

    name: str
    title: str
    type: JsonType = "string"
    format: str | None = None  # "date", "date-time"
    enum: tuple[str, ...] | None = None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"title": self.title, "type": self.type}
        if self.type == "array":
            out["items"] = {"type": "string", **({"enum": list(self.enum)} if self.enum else {})}
        elif self.enum:
            out["enum"] = list(self.enum)
        if self.format:
            out["format"] = self.format
        return out


@dataclass(frozen=True)
class CollectionSpec:
    id: str
    title: str
    description: str
    geometry_format: str  # JSON Schema format of the geometry (OGC API Features Part 5)
    queryables: tuple[Queryable, ...]
    temporal: str | None = None  # the property ``datetime`` selects on
    item_title: str = "要素"

    def queryable(self, name: str) -> Queryable | None:
        return next((q for q in self.queryables if q.name == name), None)


def _q(name: str, title: str, type_: JsonType = "string", **kw: Any) -> Queryable:
    return Queryable(name, title, type_, **kw)


CODE_NAMES = (
    _q("community_code", "社区编码"),
    _q("community_name", "社区名称"),
    _q("street_code", "街道编码"),
    _q("street_name", "街道名称"),
    _q("district_code", "区编码"),
    _q("district_name", "区名称"),
)
SIZES = (
    _q("grids", "网格数", "integer"),
    _q("households", "户数", "integer"),
    _q("population", "人口", "integer"),
    _q("area_m2", "面积（平方米）", "number"),
)
POLYGONS = "geometry-polygon-or-multipolygon"
POINTS = "geometry-point"
UNIT_NOTE = "边界由所辖网格合并而成（与网格边界严格一致），人口、户数为所辖网格之和，面积按 CGCS2000 高斯-克吕格投影计算。"


def _unit_spec(cid: str, title: str, kind: str, parents: tuple[Queryable, ...]) -> CollectionSpec:
    """A unit above the grid (community, street, district): its code and name, the codes and
    names of the units it lies in, and the sizes summed from its grids."""
    queryables = (_q("code", f"{title}编码"), _q("name", f"{title}名称"), *parents, *SIZES)
    return CollectionSpec(
        cid, title, f"{kind}：" + UNIT_NOTE, POLYGONS, queryables, item_title=title
    )


SPECS: tuple[CollectionSpec, ...] = (
    CollectionSpec(
        "grids",
        "网格",
        "城市管理网格：边界、所属社区/街道/区、网格员及电话、户数、人口、面积（平方米，按 "
        "CGCS2000 高斯-克吕格投影计算）。",
        POLYGONS,
        (
            _q("code", "网格编码"),
            _q("name", "网格名称"),
            *CODE_NAMES,
            _q("officer_name", "网格员"),
            _q("officer_phone", "网格员电话"),
            _q("households", "户数", "integer"),
            _q("population", "人口", "integer"),
            _q("area_m2", "面积（平方米）", "number"),
            _q("version", "版本", "integer"),
        ),
        item_title="网格",
    ),
    _unit_spec("communities", "社区", "社区（居委会）", CODE_NAMES[2:]),
    _unit_spec("streets", "街道", "街道（乡镇）", CODE_NAMES[4:]),
    _unit_spec("districts", "区", "区（县、市）", ()),
    CollectionSpec(
        "stalls",
        "小蓝棚便民修理点",
        "修鞋、修车、修锁配钥匙的便民修理点（小蓝棚）：服务项目、营业时间（OpenStreetMap "
        "opening_hours 语法）、状态（active 营业、suspended 暂停、relocated 已迁址、retired "
        "已撤销）、地址、经营者、所在网格；已迁址的记有新址。",
        POINTS,
        (
            _q("code", "编号"),
            _q("name", "名称"),
            _q("services", "服务项目", "array", enum=SERVICES),
            _q("hours", "营业时间"),
            _q("status", "状态", enum=STALL_STATUSES),
            _q("address", "地址"),
            _q("operator", "经营者"),
            _q("phone", "电话"),
            _q("grid_code", "所在网格编码"),
            _q("opened", "设立日期", format="date"),
            _q("moved_to_code", "新址编号"),
            _q("moved_to_lon", "新址经度（WGS84）", "number"),
            _q("moved_to_lat", "新址纬度（WGS84）", "number"),
            _q("moved_to_address", "新址地址"),
            _q("version", "版本", "integer"),
        ),
        item_title="小蓝棚",
    ),
    CollectionSpec(
        "vendor_clusters",
        "便民摊点群",
        "早市、夜市、便民市场、农贸集市、小吃街等便民摊点群：类型、营业时间、摊位数、状态、"
        "地址、管理单位、所在网格。",
        POINTS,
        (
            _q("code", "编号"),
            _q("name", "名称"),
            _q("kind", "类型", enum=CLUSTER_KINDS),
            _q("hours", "营业时间"),
            _q("pitches", "摊位数", "integer"),
            _q("status", "状态", enum=STALL_STATUSES),
            _q("address", "地址"),
            _q("operator", "管理单位"),
            _q("grid_code", "所在网格编码"),
            _q("version", "版本", "integer"),
        ),
        item_title="便民摊点群",
    ),
    CollectionSpec(
        "cases",
        "随手拍案件",
        "市民随手拍反映的城市管理问题，仅含公开字段（不含反映人电话）：类别、描述、环节、"
        "责任单位和网格员、处置时限、是否超期；时间为北京时间。datetime 参数按上报时间"
        "（requested_datetime）筛选。",
        POINTS,
        (
            _q("service_request_id", "案件编号"),
            _q("service_code", "类别编码"),
            _q("service_name", "类别"),
            _q("description", "描述"),
            _q("status", "状态（Open311）", enum=("open", "closed")),
            _q("stage", "环节", enum=tuple(s.value for s in CaseStatus)),
            _q("status_text", "环节（中文）"),
            _q("status_notes", "状态说明"),
            _q("requested_datetime", "上报时间", format="date-time"),
            _q("updated_datetime", "更新时间", format="date-time"),
            _q("expected_datetime", "预计处置时间", format="date-time"),
            _q("deadline", "处置时限", format="date-time"),
            _q("address", "地址"),
            _q("agency_responsible", "责任单位"),
            _q("level", "责任层级", enum=tuple(lv.value for lv in Level)),
            _q("level_text", "责任层级（中文）"),
            _q("unit_code", "责任单位编码"),
            _q("grid_code", "网格编码"),
            _q("community_code", "社区编码"),
            _q("street_code", "街道编码"),
            _q("district_code", "区编码"),
            _q("officer", "责任网格员"),
            _q("overdue", "是否超期", "boolean"),
            _q("escalations", "升级次数", "integer"),
            _q("reporters", "反映人数", "integer"),
            _q("lat", "纬度（WGS84）", "number"),
            _q("long", "经度（WGS84）", "number"),
            _q("media_url", "照片"),
        ),
        temporal="requested_datetime",
        item_title="案件",
    ),
)
BY_ID: dict[str, CollectionSpec] = {s.id: s for s in SPECS}


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def plain(values: Iterable[Any]) -> npt.NDArray[np.object_]:
    """Python values (None for missing) in an object array: what JSON is written from."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return pd.Series([None if _missing(v) else v for v in items], dtype=object).to_numpy(
        dtype=object
    )


@dataclass(eq=False)
class FeatureTable:
    """One collection's features: ids, properties (JSON-ready, in output order), geometries."""

    spec: CollectionSpec
    ids: npt.NDArray[np.object_]
    values: dict[str, npt.NDArray[np.object_]]
    geometry: npt.NDArray[np.object_]  # shapely, WGS84 lon/lat
    _typed: dict[str, pd.Series] = field(default_factory=dict, repr=False)
    _selections: OrderedDict[Hashable, npt.NDArray[np.intp]] = field(
        default_factory=OrderedDict, repr=False
    )
    _selections_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def position(self) -> dict[str, int]:
        return {str(fid): i for i, fid in enumerate(self.ids)}

    def properties(self, rows: npt.NDArray[np.intp]) -> list[dict[str, Any]]:
        names = list(self.values)
        columns = [self.values[n][rows] for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def typed(self, name: str) -> pd.Series:
        """A queryable's values typed for comparison: text, Float64, boolean, dates, UTC times."""
        if name not in self._typed:
            q = self.spec.queryable(name)
            raw = pd.Series(self.values[name], dtype=object)
            if q is None or (q.type in ("string", "array") and q.format is None):
                typed = raw
            elif q.format == "date-time":
                typed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
            elif q.format == "date":
                typed = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce")
            elif q.type == "boolean":
                typed = raw.astype("boolean")
            else:
                typed = raw.astype("Float64")
            self._typed[name] = typed
        return self._typed[name]

    def selection(
        self, key: Hashable, select: Callable[[], npt.NDArray[np.intp]]
    ) -> npt.NDArray[np.intp]:
        """The rows a query selects, remembered for the next pages of the same query (a client
        paging through a filtered layer asks the same question once per page)."""
        with self._selections_lock:
            rows = self._selections.get(key)
            if rows is not None:
                self._selections.move_to_end(key)
                return rows
        rows = select()
        with self._selections_lock:
            self._selections[key] = rows
            while len(self._selections) > SELECTIONS_KEPT:
                self._selections.popitem(last=False)
        return rows

    @cached_property
    def tree(self) -> shapely.STRtree:
        return shapely.STRtree(self.geometry)

    @cached_property
    def bounds(self) -> tuple[float, float, float, float] | None:
        if not len(self):
            return None
        b = shapely.total_bounds(self.geometry)
        return None if not np.isfinite(b).all() else tuple(float(v) for v in b)  # type: ignore[return-value]

    @cached_property
    def interval(self) -> tuple[str | None, str | None] | None:
        """The temporal extent (UTC, RFC 3339) of a collection with a time."""
        if self.spec.temporal is None:
            return None
        times = self.typed(self.spec.temporal).dropna()
        if times.empty:
            return (None, None)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return times.min().strftime(fmt), times.max().strftime(fmt)


def _table(spec: CollectionSpec, ids: Any, columns: dict[str, Any], geometry: Any) -> FeatureTable:
    values = {name: plain(col) for name, col in columns.items()}
    return FeatureTable(spec, plain(ids), values, np.asarray(geometry, dtype=object))


def _column(frame: pd.DataFrame, name: str) -> Any:
    return frame[name] if name in frame.columns else [None] * len(frame)


def _versions(frame: pd.DataFrame) -> list[int]:
    """A feature's version (a layer written before versions existed reads as version 1)."""
    raw = _column(frame, VERSION_FIELD)
    return [1 if _missing(v) else int(v) for v in raw]


def _grids(snap: Snapshot) -> FeatureTable:
    spec, frame = BY_ID["grids"], snap.grids.frame
    cols: dict[str, Any] = {
        q.name: _column(frame, q.name) for q in spec.queryables if q.name not in ("area_m2",)
    }
    cols["area_m2"] = np.round(snap.grids.index.area_m2, 1)
    cols[VERSION_FIELD] = _versions(frame)
    ordered = {q.name: cols[q.name] for q in spec.queryables}
    return _table(spec, frame["code"], ordered, frame.geometry.to_numpy())


def _units(snap: Snapshot, cid: str, level: Level) -> FeatureTable:
    spec = BY_ID[cid]
    units = snap.units(level.value)
    code_col = {"community": "community_code", "street": "street_code", "district": "district_code"}
    parents = [q.name for q in spec.queryables if q.name in {c.name for c in CODE_NAMES}]
    above = (
        snap.grids.frame.groupby(code_col[level.value], sort=True)[parents]
        .first()
        .reindex(units["code"])
        if parents
        else pd.DataFrame(index=units["code"])
    )
    cols: dict[str, Any] = {"code": units["code"], "name": units["name"]}
    for name in parents:
        cols[name] = above[name].to_numpy(dtype=object)
    cols["grids"] = units["grids"].astype("int64")
    cols["households"] = units["households"].astype("int64")
    cols["population"] = units["population"].astype("int64")
    cols["area_m2"] = np.round(units["area_m2"].to_numpy(dtype=float), 1)
    ordered = {q.name: cols[q.name] for q in spec.queryables}
    return _table(spec, units["code"], ordered, units.geometry.to_numpy())


def _points(snap: Snapshot, cid: str) -> FeatureTable:
    spec = BY_ID[cid]
    frame = snap.points(LayerName(cid)).frame
    cols: dict[str, Any] = {q.name: _column(frame, q.name) for q in spec.queryables}
    cols[VERSION_FIELD] = _versions(frame)
    if "services" in cols:  # a list of services, never a bare string
        cols["services"] = [
            list(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in cols["services"]
        ]
    return _table(spec, frame["code"], cols, frame.geometry.to_numpy())


SNAPSHOT_BUILDERS: dict[str, Callable[[Snapshot], FeatureTable]] = {
    "grids": _grids,
    "communities": lambda s: _units(s, "communities", Level.community),
    "streets": lambda s: _units(s, "streets", Level.street),
    "districts": lambda s: _units(s, "districts", Level.district),
    "stalls": lambda s: _points(s, "stalls"),
    "vendor_clusters": lambda s: _points(s, "vendor_clusters"),
}

_snapshot_tables: weakref.WeakKeyDictionary[Snapshot, dict[str, FeatureTable]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def snapshot_table(snap: Snapshot, cid: str) -> FeatureTable:
    """A snapshot collection's features, built on first use and kept with the snapshot."""
    with _lock:
        tables = _snapshot_tables.setdefault(snap, {})
        table = tables.get(cid)
    if table is None:
        table = SNAPSHOT_BUILDERS[cid](snap)
        with _lock:
            table = tables.setdefault(cid, table)
    return table


@dataclass(frozen=True)
class _CaseTables:
    revision: str
    base_url: str
    valid_until: datetime | None  # the next deadline that would turn a case overdue
    table: FeatureTable


# Keyed by the desk's case store (the desk itself is an unhashable dataclass).
_case_tables: weakref.WeakKeyDictionary[object, _CaseTables] = weakref.WeakKeyDictionary()


def case_table(desk: CaseDesk, base_url: str) -> FeatureTable:
    """Every case, public fields only (as the cases listing shows them, without the history),
    newest first; rebuilt when the store changes or a deadline passes."""
    now = desk.clock()
    revision = desk.store.revision()
    with _lock:
        hit = _case_tables.get(desk.store)
    if (
        hit is not None
        and hit.revision == revision
        and hit.base_url == base_url
        and (hit.valid_until is None or now < hit.valid_until)
    ):
        return hit.table
    cases, _ = desk.store.query(CaseQuery(limit=MAX_CASES))
    table, valid_until = _cases(desk, cases, base_url, now)
    with _lock:
        _case_tables[desk.store] = _CaseTables(revision, base_url, valid_until, table)
    return table


def _cases(
    desk: CaseDesk, cases: list[Case], base_url: str, now: datetime
) -> tuple[FeatureTable, datetime | None]:
    spec = BY_ID["cases"]
    records = []
    upcoming: list[datetime] = []
    for c in cases:
        rec = service_request(c, desk.services, base_url, now)
        del rec["history"]
        records.append(rec)
        if c.status in AWAITING_HANDLING and c.deadline is not None:
            due = parse_time(c.deadline)
            if due >= now:
                upcoming.append(due)
    names = list(records[0]) if records else [q.name for q in spec.queryables]
    cols = {n: [r.get(n) for r in records] for n in names}
    geoms = shapely.points([c.lon for c in cases], [c.lat for c in cases]) if cases else []
    table = _table(spec, [c.id for c in cases], cols, geoms)
    return table, min(upcoming, default=None)


def spec_of(cid: str) -> CollectionSpec:
    """The collection named ``cid``; 404 naming the collections there are."""
    spec = BY_ID.get(cid)
    if spec is None:
        names = ", ".join(s.id for s in SPECS)
        raise NotFoundError(f"no collection {quote(cid)}; collections: {names}")
    return spec


def table_for(cid: str, snap: Snapshot, desk: CaseDesk, base_url: str) -> FeatureTable:
    """The features of collection ``cid`` now."""
    spec = spec_of(cid)
    if spec.id == "cases":
        return case_table(desk, base_url)
    return snapshot_table(snap, spec.id)
