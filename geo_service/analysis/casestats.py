"""随手拍 statistics: how many cases each unit had, of what kind, where they stand, and how
promptly they were dealt with.

``case_frame`` turns cases (with their histories) into one row per case, once; everything after
that is vectorised (pandas / numpy), so a year of a large city's cases stays cheap.
``case_stats`` gives one row per unit (grid, community, street or district) over a period:

- the period is ``start <= requested < end`` (either bound may be open, ``None``);
- ``on_time_rate`` = on time / judged, where *judged* is every case handled (its first 处置
  step) plus every case still awaiting handling (上报 / 立案 / 派遣, never handled) whose
  deadline had passed at ``now`` (counted late: it cannot be on time any more). A handled case
  is on time when its first 处置 came on or before the deadline in force then (the deadline of
  the event before the 处置 step, i.e. after any 延期 extension or escalation); a handled case
  with no recorded deadline counts as on time. Units with nothing judged have no rate (NaN,
  ``null`` in JSON, empty in CSV);
- ``median_hours_to_close``: requested → 结案, over closed cases only (NaN if none);
- ``escalations``: the sum of the cases' escalation counts;
- ``overdue_open``: cases awaiting handling whose current deadline is before ``now`` (exactly
  ``Case.overdue``).

Cases outside every grid (``grid_code`` None: the district's intake queue, 区受理) are never
dropped: at district level they count in their district's row like any other case (their
``district_code`` is the district of the nearest grid); at finer levels they get one extra row
per district named ``区受理`` whose ``code`` and ``district_code`` are that district's code.
Cases whose unit is not in the snapshot (a unit renamed or removed since filing) keep a row of
their own with their filed code and no name; a case whose grid named no unit at this level counts in a row
``未归属`` (no code). Units of the snapshot without cases are listed
with zero counts, so a table always covers the whole city.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from geo_service.core.cases import (
    AWAITING_HANDLING,
    STATUS_TEXT,
    Action,
    Case,
    CaseStatus,
    ServiceCatalogue,
)
from geo_service.core.schema import LEVELS, Level
from geo_service.storage.cases import CaseQuery, CaseStore

INTAKE_NAME = "区受理"
INTAKE_KEY = "intake:"  # key prefix of the intake rows (never a unit code)
UNKNOWN_DISTRICT = "intake"  # the code of intake cases with no district at all (no grids)
UNASSIGNED_KEY = "unassigned"  # a case in a grid whose record named no unit at this level
UNASSIGNED_NAME = "未归属"

LEVEL_CODE_COLUMN = {
    Level.grid: "grid_code",
    Level.community: "community_code",
    Level.street: "street_code",
    Level.district: "district_code",
}
LEVEL_TEXT = {
    Level.grid: "网格",
    Level.community: "社区",
    Level.street: "街道",
    Level.district: "区",
}
STATUS_COLUMNS = tuple(STATUS_TEXT[s] for s in CaseStatus)  # 上报 立案 派遣 处置 核查 结案
HEAD_COLUMNS = ("code", "name", "district_code", "district_name", "total")
TAIL_COLUMNS = (
    "judged",
    "on_time",
    "on_time_rate",
    "median_hours_to_close",
    "escalations",
    "overdue_open",
)
FRAME_COLUMNS = (
    "id",
    "service_code",
    "status",
    "level",
    "grid_code",
    "community_code",
    "street_code",
    "district_code",
    "requested",
    "deadline",
    "closed_at",
    "handled_at",
    "deadline_at_handling",
    "escalations",
    "lon",
    "lat",
)
_DERIVED_COLUMNS = ("closed_at", "handled_at", "deadline_at_handling")  # from the histories
_CASE_COLUMNS = tuple(c for c in FRAME_COLUMNS if c not in _DERIVED_COLUMNS)  # from each case
_TIME_COLUMNS = ("requested", "deadline", "closed_at", "handled_at", "deadline_at_handling")
# Chinese CSV headers of the fixed columns (categories and statuses are Chinese already).
COLUMN_TEXT = {
    "name": "名称",
    "district_code": "所属区编码",
    "district_name": "所属区",
    "total": "案件总数",
    "judged": "考核案件数",
    "on_time": "按时处置数",
    "on_time_rate": "按时处置率（%）",
    "median_hours_to_close": "结案时长中位数（小时）",
    "escalations": "超时升级次数",
    "overdue_open": "超期未处置",
}
HOUR = pd.Timedelta(hours=1)


# -- one row per case ------------------------------------------------------------------------
def _times(values: Any) -> pd.Series:
    """UTC ISO 8601 text (None allowed) -> tz-aware timestamps (NaT for None)."""
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")


def case_frame(cases: Iterable[Case]) -> pd.DataFrame:
    """One row per case (``FRAME_COLUMNS``), times as UTC timestamps.

    ``closed_at``: the time of its 结案 step (NaT while open); ``handled_at``: its first 处置
    step (NaT if never handled); ``deadline_at_handling``: the deadline in force when it was
    handled, the ``deadline`` of the event just before that 处置 step; ``deadline``: the
    current deadline (None once handled)."""
    rows: list[tuple[Any, ...]] = []
    events: list[tuple[int, str, str, str | None]] = []
    for i, c in enumerate(cases):  # the one pass over the cases
        rows.append(
            (
                c.id,
                c.service_code,
                c.status.value,
                c.level.value,
                c.grid_code,
                c.community_code,
                c.street_code,
                c.district_code,
                c.requested,
                c.deadline,
                c.escalations,
                c.lon,
                c.lat,
            )
        )
        events.extend((i, e.action.value, e.at, e.deadline) for e in c.history)
    base = pd.DataFrame.from_records(rows, columns=list(_CASE_COLUMNS))
    n = len(base)
    ev = pd.DataFrame.from_records(events, columns=["case", "action", "at", "deadline"])
    case_no = ev["case"].to_numpy(dtype=np.int64)
    # The previous event's deadline, within the same case (histories are contiguous, in order).
    same_case = np.r_[False, case_no[1:] == case_no[:-1]] if len(ev) else np.zeros(0, bool)
    prev_deadline = ev["deadline"].shift(1).where(same_case)
    action = ev["action"].to_numpy(dtype=object)
    handle = pd.DataFrame({"case": case_no, "at": ev["at"], "before": prev_deadline})[
        action == Action.handle.value
    ].drop_duplicates("case", keep="first")
    close = pd.DataFrame({"case": case_no, "at": ev["at"]})[
        action == Action.close.value
    ].drop_duplicates("case", keep="last")
    index = pd.RangeIndex(n)
    frame = pd.DataFrame(
        {
            "id": base["id"].astype(object),
            "service_code": base["service_code"].astype(object),
            "status": base["status"].astype(object),
            "level": base["level"].astype(object),
            "grid_code": base["grid_code"].astype(object),
            "community_code": base["community_code"].astype(object),
            "street_code": base["street_code"].astype(object),
            "district_code": base["district_code"].astype(object),
            "requested": _times(base["requested"]),
            "deadline": _times(base["deadline"]),
            "closed_at": _times(close["at"]).set_axis(close["case"]).reindex(index),
            "handled_at": _times(handle["at"]).set_axis(handle["case"]).reindex(index),
            "deadline_at_handling": _times(handle["before"])
            .set_axis(handle["case"])
            .reindex(index),
            "escalations": base["escalations"].astype(np.int64),
            "lon": base["lon"].astype(np.float64),
            "lat": base["lat"].astype(np.float64),
        },
        index=index,
    )
    for col in _TIME_COLUMNS:  # one resolution whatever the input (empty columns included)
        frame[col] = frame[col].astype("datetime64[us, UTC]")
    return frame[list(FRAME_COLUMNS)]


# -- the period ------------------------------------------------------------------------------
def _stamp(at: datetime) -> pd.Timestamp:
    if at.tzinfo is None:
        raise ValueError("times must carry a timezone")
    return pd.Timestamp(at).tz_convert("UTC")


def in_period(frame: pd.DataFrame, start: datetime | None, end: datetime | None) -> pd.DataFrame:
    """The cases requested in ``[start, end)`` (``None``: no bound)."""
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["requested"] >= _stamp(start)).to_numpy()
    if end is not None:
        keep &= (frame["requested"] < _stamp(end)).to_numpy()
    return frame[keep]


# -- per case judgements ---------------------------------------------------------------------
def _judgements(frame: pd.DataFrame, now: datetime) -> dict[str, npt.NDArray[Any]]:
    """Per case: on time, judged, overdue while open, hours to close (NaN if open)."""
    handled = frame["handled_at"].notna().to_numpy()
    due = frame["deadline_at_handling"]
    on_time = handled & (due.isna() | (frame["handled_at"] <= due)).to_numpy()
    awaiting = frame["status"].isin([s.value for s in AWAITING_HANDLING]).to_numpy()
    past = (frame["deadline"].notna() & (frame["deadline"] < _stamp(now))).to_numpy()
    overdue = awaiting & past
    judged = handled | (overdue & ~handled)
    hours = ((frame["closed_at"] - frame["requested"]) / HOUR).to_numpy(dtype=np.float64)
    return {"on_time": on_time, "judged": judged, "overdue": overdue, "hours": hours}


def _rate(num: Any, den: Any) -> Any:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(den) > 0, np.asarray(num) / np.asarray(den), np.nan)


def summary(
    frame: pd.DataFrame, start: datetime | None, end: datetime | None, now: datetime
) -> dict[str, Any]:
    """The whole city's figures over the period (same rules as ``case_stats``)."""
    f = in_period(frame, start, end)
    j = _judgements(f, now)
    closed = j["hours"][~np.isnan(j["hours"])]
    judged = int(j["judged"].sum())
    rate = float(_rate(int(j["on_time"].sum()), judged))
    return {
        "total": len(f),
        "closed": int((f["status"] == CaseStatus.closed.value).sum()),
        "judged": judged,
        "on_time": int(j["on_time"].sum()),
        "on_time_rate": None if math.isnan(rate) else rate,
        "median_hours_to_close": float(np.median(closed)) if len(closed) else None,
        "escalations": int(f["escalations"].sum()),
        "overdue_open": int(j["overdue"].sum()),
        "outside_grids": int(f["grid_code"].isna().sum()),
    }


# -- per unit --------------------------------------------------------------------------------
def unit_table(snapshot: Any, by: Level | str) -> pd.DataFrame:
    """Every unit of ``by`` in the snapshot, code order: code, name, district code and name."""
    level = Level(by)
    grids = snapshot.grids.frame
    code_col, name_col = LEVELS[level.value]
    table = pd.DataFrame(
        {
            "code": grids[code_col].astype(object).to_numpy(),
            "name": grids[name_col].astype(object).to_numpy(),
            "district_code": grids["district_code"].astype(object).to_numpy(),
            "district_name": grids["district_name"].astype(object).to_numpy(),
        }
    )
    table = table[table["code"].notna()].drop_duplicates("code").sort_values("code")
    return table.reset_index(drop=True)


def _keys(frame: pd.DataFrame, level: Level) -> pd.Series:
    """The row each case counts in: its unit's code, or the intake row of its district."""
    district = frame["district_code"].astype(object).fillna(UNKNOWN_DISTRICT)
    if level is Level.district:
        return district
    outside = frame["grid_code"].isna()
    unit = frame[LEVEL_CODE_COLUMN[level]].astype(object)
    return unit.where(~outside, INTAKE_KEY + district).fillna(UNASSIGNED_KEY)


def _extra_rows(
    keys: npt.NDArray[np.object_], frame: pd.DataFrame, districts: pd.DataFrame
) -> pd.DataFrame:
    """Rows for keys that are not units of the snapshot: intake rows and vanished units."""
    if not len(keys):
        return pd.DataFrame(columns=["key", "code", "name", "district_code", "district_name"])
    ks = pd.Series(keys, dtype=object)
    intake = ks.str.startswith(INTAKE_KEY).to_numpy(dtype=bool)
    unassigned = (ks == UNASSIGNED_KEY).to_numpy(dtype=bool)
    codes = ks.where(~intake, ks.str.slice(len(INTAKE_KEY))).where(~unassigned, None)
    # A vanished unit's district: the district of its first case.
    first = frame.drop_duplicates("_key").set_index("_key")["district_code"]
    of_case = first.reindex(ks).to_numpy(dtype=object)
    district = pd.Series(np.where(intake, codes.to_numpy(dtype=object), of_case), dtype=object)
    district = district.where(district != UNKNOWN_DISTRICT)
    names = districts.set_index("code")["name"]
    return pd.DataFrame(
        {
            "key": ks,
            "code": codes,
            "name": pd.Series([None] * len(ks), dtype=object)
            .mask(intake, INTAKE_NAME)
            .mask(unassigned, UNASSIGNED_NAME),
            "district_code": district,
            "district_name": district.map(names).astype(object),
        }
    )


def _category_columns(services: ServiceCatalogue, extra: Iterable[str]) -> dict[str, str]:
    """service code -> column name (the Chinese name; the code added when names clash)."""
    codes = [s.code for s in services.services] + sorted(set(extra))
    names = {s.code: s.name for s in services.services}
    taken = set(HEAD_COLUMNS) | set(TAIL_COLUMNS) | set(STATUS_COLUMNS)
    out: dict[str, str] = {}
    wanted = [names.get(c, c) for c in codes]
    for code, name in zip(codes, wanted, strict=True):
        col = name if wanted.count(name) == 1 and name not in taken else f"{name}（{code}）"
        out[code] = col
    return out


def case_stats(
    frame: pd.DataFrame,
    snapshot: Any,
    by: Level | str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    services: ServiceCatalogue,
) -> pd.DataFrame:
    """One row per unit of ``by`` (see the module docstring for every rule): code, name,
    district_code, district_name, total, one count column per category (Chinese service name),
    one per status (上报 立案 派遣 处置 核查 结案), judged, on_time, on_time_rate,
    median_hours_to_close, escalations, overdue_open. Units in code order, then the rows of
    cases outside every grid (区受理) and of units no longer in the snapshot."""
    level = Level(by)
    f = in_period(frame, start, end).reset_index(drop=True)
    f = f.assign(_key=_keys(f, level).to_numpy(dtype=object))
    units = unit_table(snapshot, level)
    units.insert(0, "key", units["code"])
    known = pd.Index(units["key"])
    case_keys = f["_key"].to_numpy(dtype=object)
    missing = pd.unique(case_keys[known.get_indexer(case_keys) < 0])
    districts = unit_table(snapshot, Level.district)
    rows = pd.concat(
        [units, _extra_rows(np.asarray(missing, dtype=object), f, districts)], ignore_index=True
    )
    n_rows = len(rows)
    pos = pd.Index(rows["key"]).get_indexer(case_keys)

    def total(weights: Any = None) -> npt.NDArray[Any]:
        return np.bincount(pos, weights=weights, minlength=n_rows)

    def crosstab(values: pd.Series, categories: list[str]) -> npt.NDArray[np.int64]:
        cat = pd.Categorical(values, categories=categories).codes.astype(np.int64)
        k = len(categories)
        flat = np.bincount(pos * k + cat, minlength=n_rows * k)
        return np.asarray(flat, dtype=np.int64).reshape(n_rows, k)

    service_codes = f["service_code"].to_numpy(dtype=object)
    unknown = [c for c in pd.unique(service_codes) if c not in services]
    categories = _category_columns(services, unknown)
    j = _judgements(f, now)
    out = rows.drop(columns="key")
    out["total"] = total().astype(np.int64)
    cats = crosstab(f["service_code"], list(categories))
    statuses = crosstab(f["status"], [s.value for s in CaseStatus])
    columns: dict[str, Any] = {col: cats[:, i] for i, col in enumerate(categories.values())}
    columns |= {col: statuses[:, i] for i, col in enumerate(STATUS_COLUMNS)}
    judged = total(j["judged"].astype(np.float64)).astype(np.int64)
    on_time = total(j["on_time"].astype(np.float64)).astype(np.int64)
    closed = ~np.isnan(j["hours"])
    median = (
        pd.Series(j["hours"][closed])
        .groupby(pos[closed])
        .median()
        .reindex(range(n_rows))
        .to_numpy(dtype=np.float64)
    )
    columns |= {
        "judged": judged,
        "on_time": on_time,
        "on_time_rate": _rate(on_time, judged),
        "median_hours_to_close": median,
        "escalations": total(f["escalations"].to_numpy(dtype=np.float64)).astype(np.int64),
        "overdue_open": total(j["overdue"].astype(np.float64)).astype(np.int64),
    }
    return pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)


# -- output ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value


def stats_records(table: pd.DataFrame, digits: int = 4) -> list[dict[str, Any]]:
    """The table as JSON-ready dicts: NaN -> None, rates and hours rounded to ``digits``."""
    shown = table.copy()
    shown["on_time_rate"] = shown["on_time_rate"].round(digits)
    shown["median_hours_to_close"] = shown["median_hours_to_close"].round(2)
    cols = list(shown.columns)
    return [
        {k: _plain(v) for k, v in zip(cols, row, strict=True)}
        for row in shown.itertuples(index=False, name=None)
    ]


def csv_headers(table: pd.DataFrame, by: Level | str) -> list[str]:
    level = Level(by)
    return [
        f"{LEVEL_TEXT[level]}编码" if c == "code" else COLUMN_TEXT.get(c, c) for c in table.columns
    ]


def stats_csv(table: pd.DataFrame, by: Level | str) -> bytes:
    """CSV for Chinese Excel: UTF-8 with a BOM, Chinese headers, the on-time rate as a
    percentage with one decimal, median hours with one decimal, empty where there is none."""
    shown = table.copy()
    shown["on_time_rate"] = (shown["on_time_rate"] * 100).round(1)
    shown["median_hours_to_close"] = shown["median_hours_to_close"].round(1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(csv_headers(shown, by))
    for row in shown.itertuples(index=False, name=None):
        writer.writerow(["" if (v := _plain(x)) is None else v for x in row])
    return "\ufeff".encode() + buf.getvalue().encode("utf-8")


class FrameCache:
    """``case_frame`` of every stored case, rebuilt only when the store's revision moves:
    statistics and maps then cost only the grouping (bench/RESULTS.md, "Cases")."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._revision: str | None = None
        self._frame: pd.DataFrame | None = None

    def get(self, store: CaseStore) -> pd.DataFrame:
        revision = store.revision()
        with self._lock:
            if self._frame is not None and self._revision == revision:
                return self._frame
        cases, _ = store.query(CaseQuery(limit=self.limit))
        frame = case_frame(cases)
        with self._lock:
            self._revision, self._frame = revision, frame
        return frame
