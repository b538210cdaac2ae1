"""The items query of a collection: its parameters read and checked, the features it selects, the
page it answers.

``limit`` defaults to 10; a larger value than ``LIMIT_MAX`` is clamped to it (the standard asks
for that rather than an error); paging is by ``offset``, which the ``next``/``prev`` links carry.
``bbox`` (in ``bbox-crs``), ``datetime`` (cases), property filters named after queryables
(``?district_name=潍城区``) and a CQL2 ``filter`` (in ``filter-crs``) all narrow the selection;
any other parameter, a repeated one or a bad value is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pygeofilter import ast
from shapely.geometry.base import BaseGeometry

from geo_service.analysis.ogc import OGCRequestError
from geo_service.analysis.ogc.collections import SPECS, FeatureTable
from geo_service.analysis.ogc.cql import Kind, filter_mask, kind_of, parse_filter
from geo_service.analysis.ogc.crsref import ServedCRS, parse_bbox, parse_crs
from geo_service.analysis.ogc.temporal import parse_datetime
from geo_service.core.errors import quote

LIMIT_DEFAULT = 10
LIMIT_MAX = 10_000
OFFSET_MAX = 10**9
FORMAT = "f"
FORMATS = ("json", "html")
PAGING = ("limit", "offset")
ITEMS_PARAMS = (
    FORMAT,
    *PAGING,
    "bbox",
    "bbox-crs",
    "crs",
    "datetime",
    "filter",
    "filter-lang",
    "filter-crs",
)
ITEM_PARAMS = (FORMAT, "crs")
MAX_PROPERTY_VALUE = 1000


def check_names(
    params: Sequence[tuple[str, str]], allowed: Sequence[str], what: str
) -> dict[str, str]:
    """The parameters as a dict; a 400 for one the resource does not take or one given twice."""
    seen: dict[str, str] = {}
    unknown = sorted({k for k, _ in params if k not in allowed})
    if unknown:
        names = ", ".join(map(quote, unknown))
        word = "parameter" if len(unknown) == 1 else "parameters"
        raise OGCRequestError(
            f"unknown query {word} {names}; {what} takes: {', '.join(allowed)}", unknown[0]
        )
    for k, v in params:
        if k in seen:
            raise OGCRequestError("given more than once", k)
        seen[k] = v
    return seen


def parse_format(value: str | None) -> str | None:
    """``f``: json or html (None: negotiate by the Accept header)."""
    if value is None:
        return None
    if value not in FORMATS:
        raise OGCRequestError(f"one of {', '.join(FORMATS)} (got {quote(value)})", FORMAT)
    return value


def _integer(value: str, name: str, low: int, high: int | None = None) -> int:
    """A whole number ≥ ``low``; above ``high`` it is ``high`` (a limit above the maximum)."""
    text = value.strip().lstrip("+")
    if not (text.isascii() and text.isdigit()):
        raise OGCRequestError(f"a whole number ≥ {low} (got {quote(value)})", name)
    number = int(text) if len(text) <= 18 else 10**18
    if number < low:
        raise OGCRequestError(f"a whole number ≥ {low} (got {quote(value)})", name)
    return number if high is None else min(number, high)


@dataclass(frozen=True)
class ItemsQuery:
    limit: int  # after clamping
    offset: int
    crs: ServedCRS
    bbox: BaseGeometry | None  # WGS84
    interval: tuple[pd.Timestamp | None, pd.Timestamp | None] | None
    filter: ast.Node | None
    filter_crs: ServedCRS
    properties: tuple[tuple[str, str], ...]
    selection: tuple[tuple[str, str], ...]  # what the links repeat: everything but paging and f


def parse_items_query(
    params: Sequence[tuple[str, str]], table: FeatureTable, served: tuple[ServedCRS, ...]
) -> ItemsQuery:
    spec = table.spec
    queryables = [q.name for q in spec.queryables]
    given = check_names(params, [*ITEMS_PARAMS, *queryables], f"{spec.id}/items")
    parse_format(given.get(FORMAT))
    limit = _integer(given["limit"], "limit", 1, LIMIT_MAX) if "limit" in given else LIMIT_DEFAULT
    offset = _integer(given["offset"], "offset", 0) if "offset" in given else 0
    if offset > OFFSET_MAX:
        raise OGCRequestError(f"at most {OFFSET_MAX:,}", "offset")
    bbox_crs = parse_crs(given.get("bbox-crs"), served, "bbox-crs")
    if "bbox-crs" in given and "bbox" not in given:
        raise OGCRequestError("bbox-crs without bbox", "bbox-crs")
    interval = None
    if "datetime" in given:
        if spec.temporal is None:
            timed = ", ".join(s.id for s in SPECS if s.temporal)
            raise OGCRequestError(
                f"{spec.id} have no time; datetime applies to: {timed}", "datetime"
            )
        interval = parse_datetime(given["datetime"])
    node = None
    if "filter" in given:
        node = parse_filter(given["filter"], given.get("filter-lang"))
    elif "filter-lang" in given or "filter-crs" in given:
        raise OGCRequestError(
            "without filter", "filter-lang" if "filter-lang" in given else "filter-crs"
        )
    properties = tuple((k, v) for k, v in params if k in queryables)
    for name, value in properties:
        if len(value) > MAX_PROPERTY_VALUE:
            raise OGCRequestError(f"at most {MAX_PROPERTY_VALUE} characters", name)
    return ItemsQuery(
        limit=limit,
        offset=offset,
        crs=parse_crs(given.get("crs"), served, "crs"),
        bbox=parse_bbox(given.get("bbox"), bbox_crs),
        interval=interval,
        filter=node,
        filter_crs=parse_crs(given.get("filter-crs"), served, "filter-crs"),
        properties=properties,
        selection=tuple((k, v) for k, v in params if k not in (*PAGING, FORMAT)),
    )


def _property_mask(table: FeatureTable, name: str, raw: str) -> npt.NDArray[np.bool_]:
    """``?name=value``: features whose property equals the value (a list property: contains it)."""
    q = table.spec.queryable(name)
    assert q is not None
    kind = kind_of(q)
    column = table.typed(name)
    if kind is Kind.array:
        return np.array([isinstance(v, list) and raw in v for v in column], dtype=bool)
    if kind is Kind.string:
        return (column == raw).fillna(False).to_numpy(dtype=bool)
    if kind is Kind.number:
        try:
            number = float(raw)
        except ValueError:
            raise OGCRequestError(f"{name} is a number (got {quote(raw)})", name) from None
        return (column == number).fillna(False).to_numpy(dtype=bool)
    if kind is Kind.boolean:
        if raw not in ("true", "false"):
            raise OGCRequestError(f"{name} is true or false (got {quote(raw)})", name)
        return (column == (raw == "true")).fillna(False).to_numpy(dtype=bool)
    if kind is Kind.date:
        try:
            day = pd.Timestamp(date.fromisoformat(raw.strip()))
        except ValueError:
            raise OGCRequestError(
                f"{name} is a date, YYYY-MM-DD (got {quote(raw)})", name
            ) from None
        return (column == day).fillna(False).to_numpy(dtype=bool)
    return _within(column, *parse_datetime(raw))  # a time: the instant, day or interval named


def _within(
    times: pd.Series, start: pd.Timestamp | None, stop: pd.Timestamp | None
) -> npt.NDArray[np.bool_]:
    inside = times.notna()
    if start is not None:
        inside &= times >= start
    if stop is not None:
        inside &= times <= stop
    return inside.fillna(False).to_numpy(dtype=bool)


def select(table: FeatureTable, q: ItemsQuery) -> npt.NDArray[np.intp]:
    """Rows (in the collection's order) of the features the query selects."""
    mask = np.ones(len(table), dtype=bool)
    if q.bbox is not None:
        inside = np.zeros(len(table), dtype=bool)
        inside[table.tree.query(q.bbox, predicate="intersects")] = True
        mask &= inside
    if q.interval is not None and table.spec.temporal is not None:
        mask &= _within(table.typed(table.spec.temporal), *q.interval)
    for name, value in q.properties:
        mask &= _property_mask(table, name, value)
    if q.filter is not None:  # always: a bad filter is a 400 even when nothing else matched
        mask &= filter_mask(q.filter, table, q.filter_crs)
    return np.flatnonzero(mask)


def page(table: FeatureTable, q: ItemsQuery) -> tuple[npt.NDArray[np.intp], int]:
    """The rows of the requested page and how many features match in all."""
    hits = (
        table.selection(q.selection, lambda: select(table, q)) if q.selection else select(table, q)
    )
    return hits[q.offset : q.offset + q.limit], len(hits)


def geometry_json(geoms: npt.NDArray[np.object_], crs: ServedCRS) -> list[str]:
    """GeoJSON geometry text in ``crs`` (coordinates in its axis order), serialised in bulk."""
    if len(geoms) == 0:
        return []
    out: list[str] = shapely.to_geojson(crs.project(geoms)).tolist()
    return out
