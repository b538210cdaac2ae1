"""CQL2 text filters (OGC API – Features Part 3) evaluated as vectorised masks over a collection.

The text is parsed by pygeofilter (a maintained CQL2 parser: a lark grammar to an AST); the AST is
evaluated here, node by node, into pandas and shapely operations over whole columns: no SQL is
built, no text is concatenated into code. Logic is three-valued as CQL2 and SQL define it: a
comparison with a null property is unknown, NOT unknown is unknown, only true selects; so a
filter selects the features PostGIS would select with the same condition. Operands are checked
against the collection's queryables: a number compared with text is a 400 naming both.

Supported: ``= <> < <= > >=``, ``AND OR NOT``, ``BETWEEN``, ``LIKE`` (``%`` any run, ``_`` one
character, ``\\`` escapes), ``IN``, ``IS [NOT] NULL``, ``CASEI()``, ``+ - * /`` on numbers,
``TIMESTAMP()``/``DATE()`` literals, and the spatial functions ``S_INTERSECTS S_DISJOINT
S_CONTAINS S_WITHIN S_TOUCHES S_CROSSES S_OVERLAPS S_EQUALS`` against WKT or ``BBOX(...)``
literals given in ``filter-crs`` (its axis order), evaluated in WGS84 longitude/latitude.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
import shapely.errors
import shapely.geometry
from pandas.arrays import BooleanArray
from pygeofilter import ast, values
from pygeofilter.backends.evaluator import Evaluator, handle
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text

from geo_service.analysis.ogc import OGCRequestError
from geo_service.analysis.ogc.collections import GEOMETRY, FeatureTable, Queryable
from geo_service.analysis.ogc.crsref import ServedCRS, parse_bbox
from geo_service.analysis.ogc.temporal import as_utc
from geo_service.core.errors import quote

MAX_FILTER_CHARS = 8192
FILTER_LANGS = ("cql2-text",)
Mask: TypeAlias = BooleanArray


class Kind(StrEnum):
    string = "text"
    number = "number"
    boolean = "boolean"
    date = "date"
    timestamp = "timestamp"
    array = "list"
    geometry = "geometry"


def kind_of(q: Queryable) -> Kind:
    if q.type == "array":
        return Kind.array
    if q.format == "date":
        return Kind.date
    if q.format == "date-time":
        return Kind.timestamp
    return {"integer": Kind.number, "number": Kind.number, "boolean": Kind.boolean}.get(
        q.type, Kind.string
    )


@dataclass(frozen=True)
class Operand:
    """A value in the filter: one per feature (a property) or one for all (a literal)."""

    kind: Kind
    value: Any  # pd.Series / geometry array per feature, else a scalar
    per_feature: bool
    label: str  # how the message names it

    def nulls(self, n: int) -> npt.NDArray[np.bool_]:
        if not self.per_feature:
            return np.zeros(n, dtype=bool)
        if self.kind is Kind.geometry:
            return np.asarray(shapely.is_missing(self.value), dtype=bool)
        return np.asarray(pd.isna(self.value), dtype=bool)


def parse_filter(text: str, lang: str | None) -> ast.Node:
    """The AST of a CQL2 text filter; a 400 saying where the text stops making sense."""
    if lang not in (None, "", *FILTER_LANGS):
        raise OGCRequestError(
            f"unsupported filter-lang {quote(lang)}; one of: cql2-text", "filter-lang"
        )
    if len(text) > MAX_FILTER_CHARS:
        raise OGCRequestError(
            f"at most {MAX_FILTER_CHARS:,} characters (got {len(text):,})", "filter"
        )
    if not text.strip():
        raise OGCRequestError("empty", "filter")
    try:
        node: ast.Node = parse_cql2_text(text)
    except RecursionError:
        raise OGCRequestError("nested too deeply", "filter") from None
    except Exception as exc:  # lark reports bad input with many exception types
        raise OGCRequestError(f"not valid CQL2 text: {_where(exc, text)}", "filter") from None
    return node


def _where(exc: Exception, text: str) -> str:
    column = getattr(exc, "column", None)
    if isinstance(column, int) and column > 0:
        near = text[max(column - 1, 0) : column + 19]
        return f"unexpected input at character {column}: {quote(near, 20)}"
    return quote(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200)


def _like_regex(pattern: str) -> str:
    """CQL2 LIKE: ``%`` any run, ``_`` one character, ``\\`` escapes the next character."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "".join(out)


_SPATIAL: dict[type, Callable[[Any, Any], Any]] = {
    ast.GeometryIntersects: shapely.intersects,
    ast.GeometryDisjoint: shapely.disjoint,
    ast.GeometryContains: shapely.contains,
    ast.GeometryWithin: shapely.within,
    ast.GeometryTouches: shapely.touches,
    ast.GeometryCrosses: shapely.crosses,
    ast.GeometryOverlaps: shapely.overlaps,
    ast.GeometryEquals: shapely.equals,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}
_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mul: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_ORDERED = (Kind.string, Kind.number, Kind.date, Kind.timestamp)


class MaskEvaluator(Evaluator):
    """Evaluates a pygeofilter AST into a boolean mask over ``table``'s features."""

    def __init__(self, table: FeatureTable, filter_crs: ServedCRS) -> None:
        self.table = table
        self.n = len(table)
        self.crs = filter_crs
        self.queryables = {q.name: q for q in table.spec.queryables}

    # -- masks --------------------------------------------------------------------------------
    def _mask(self, values: Any) -> Mask:
        if np.isscalar(values) or values is pd.NA:
            return pd.array(np.full(self.n, values), dtype="boolean")
        return pd.array(np.asarray(values, dtype=object), dtype="boolean")

    def _require_mask(self, value: Any, where: str) -> Mask:
        if not isinstance(value, BooleanArray):
            raise OGCRequestError(f"{where} needs a condition, got {_label(value)}", "filter")
        return value

    @handle(ast.Not)
    def not_(self, node: ast.Not, sub: Any) -> Mask:
        return ~self._require_mask(sub, "NOT")

    @handle(ast.And, ast.Or)
    def combination(self, node: ast.Combination, lhs: Any, rhs: Any) -> Mask:
        a = self._require_mask(lhs, node.op.value)
        b = self._require_mask(rhs, node.op.value)
        return a & b if isinstance(node, ast.And) else a | b

    @handle(ast.Include)
    def include(self, node: ast.Include) -> Mask:
        return self._mask(not node.not_)

    # -- operands -----------------------------------------------------------------------------
    @handle(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> Operand:
        name = str(node.name)
        if name == GEOMETRY:
            return Operand(Kind.geometry, self.table.geometry, True, name)
        q = self.queryables.get(name)
        if q is None:
            if name.upper() == "NULL":
                raise OGCRequestError("NULL is no value: write `property IS NULL`", "filter")
            names = ", ".join([GEOMETRY, *self.queryables])
            raise OGCRequestError(
                f"unknown property {quote(name)} of {self.table.spec.id}; queryables: {names}",
                "filter",
            )
        return Operand(kind_of(q), self.table.typed(name), True, name)

    @handle(*values.LITERALS)
    def literal(self, node: Any) -> Operand:
        if isinstance(node, bool):
            return Operand(Kind.boolean, node, False, str(node).upper())
        if isinstance(node, (int, float)):
            return Operand(Kind.number, float(node), False, repr(node))
        if isinstance(node, str):
            return Operand(Kind.string, node, False, quote(node, 40))
        if isinstance(node, (datetime, date)):
            timed = isinstance(node, datetime)
            label = f"{'TIMESTAMP' if timed else 'DATE'}('{node.isoformat()}')"
            try:
                value = as_utc(node) if isinstance(node, datetime) else pd.Timestamp(node)
            except (ValueError, OverflowError):  # beyond the years a timestamp holds
                raise OGCRequestError(f"{label} is out of range", "filter") from None
            return Operand(Kind.timestamp if timed else Kind.date, value, False, label)
        raise OGCRequestError(f"unsupported literal {_label(node)}", "filter")

    @handle(values.Geometry, values.Envelope)
    def geometry_literal(self, node: Any) -> Operand:
        try:
            geom = shapely.geometry.shape(node.geometry)
        except Exception as exc:  # shapely rejects malformed coordinates in several ways
            raise OGCRequestError(
                f"not a valid geometry: {quote(str(exc), 120)}", "filter"
            ) from None
        if geom.is_empty or not np.isfinite(shapely.get_coordinates(geom)).all():
            raise OGCRequestError("an empty geometry or one with non-finite coordinates", "filter")
        if not geom.is_valid:
            reason = shapely.is_valid_reason(geom)
            raise OGCRequestError(f"not a valid geometry: {quote(reason, 120)}", "filter")
        return Operand(Kind.geometry, self.crs.unproject(geom), False, geom.geom_type.upper())

    @handle(ast.Function)
    def function(self, node: ast.Function, *args: Operand) -> Operand:
        name = str(node.name).lower()
        if name == "lower" and len(args) == 1:  # pygeofilter's spelling of CASEI
            (arg,) = args
            if arg.kind is not Kind.string:
                raise OGCRequestError(f"CASEI applies to text, not {arg.label}", "filter")
            value = arg.value.str.lower() if arg.per_feature else str(arg.value).lower()
            return Operand(Kind.string, value, arg.per_feature, f"CASEI({arg.label})")
        if name == "bbox" and len(args) in (4, 6):
            nums = [a.value for a in args if a.kind is Kind.number and not a.per_feature]
            if len(nums) != len(args):
                raise OGCRequestError("BBOX takes numbers", "filter")
            box = parse_bbox(",".join(repr(v) for v in nums), self.crs)
            return Operand(Kind.geometry, box, False, "BBOX")
        raise OGCRequestError(
            f"unsupported function {quote(str(node.name))}; CASEI and BBOX are supported",
            "filter",
        )

    @handle(ast.Arithmetic, subclasses=True)
    def arithmetic(self, node: ast.Arithmetic, lhs: Any, rhs: Any) -> Operand:
        a, b = _operands(lhs, rhs, Kind.number, f"{node.op.value} needs numbers")
        with np.errstate(divide="ignore", invalid="ignore"):
            value = _ARITHMETIC[type(node)](a.value, b.value)
        if isinstance(value, pd.Series):  # x / 0 is no number: unknown, as in SQL
            value = value.where(np.isfinite(value.to_numpy(dtype=float, na_value=np.nan)))
        elif not np.isfinite(value):
            value = np.nan
        label = f"{a.label} {node.op.value} {b.label}"
        return Operand(Kind.number, value, a.per_feature or b.per_feature, label)

    # -- predicates ---------------------------------------------------------------------------
    def _pair(self, lhs: Operand, rhs: Operand, what: str) -> tuple[Any, Any, Kind]:
        """Both operands as comparable values of one kind (a text literal is read as a date or
        timestamp when the other side is one), nulls replaced by a placeholder."""
        a, b = self._coerce(lhs, rhs.kind), self._coerce(rhs, lhs.kind)
        if a.kind is not b.kind or a.kind in (Kind.array, Kind.geometry):
            hint = ""
            if Kind.array in (a.kind, b.kind):
                hint = "; a list property is filtered with its query parameter (services=修车)"
            elif Kind.geometry in (a.kind, b.kind):
                hint = "; compare geometries with S_INTERSECTS and the other spatial functions"
            elif a.kind is Kind.string or b.kind is Kind.string:
                hint = "; quote text values: code = '370702001001001'"
            raise OGCRequestError(
                f"cannot {what} {a.label} ({a.kind.value}) and {b.label} ({b.kind.value}){hint}",
                "filter",
            )
        return self._filled(a), self._filled(b), a.kind

    @staticmethod
    def _coerce(op: Operand, other: Kind) -> Operand:
        if op.per_feature or op.kind is not Kind.string or other not in (Kind.date, Kind.timestamp):
            return op
        try:
            stamp = pd.Timestamp(op.value)
        except (ValueError, TypeError):
            raise OGCRequestError(f"{op.label} is not a {other.value}", "filter") from None
        if other is Kind.timestamp:
            return Operand(Kind.timestamp, as_utc(stamp.to_pydatetime()), False, op.label)
        return Operand(Kind.date, pd.Timestamp(stamp.date()), False, op.label)

    def _filled(self, op: Operand) -> Any:
        if not op.per_feature:
            return op.value
        s = op.value
        if op.kind is Kind.string:
            return s.fillna("")
        if op.kind is Kind.number:
            return s.astype("Float64").fillna(0.0).to_numpy(dtype=float)
        if op.kind is Kind.boolean:
            return s.astype("boolean").fillna(False).to_numpy(dtype=bool)
        return s  # datetimes: NaT compares false, made unknown below

    def _known(self, result: Any, *ops: Operand) -> Mask:
        """``result`` as a mask, unknown wherever an operand is null."""
        mask = self._mask(np.asarray(result, dtype=bool) if not np.isscalar(result) else result)
        unknown = np.zeros(self.n, dtype=bool)
        for op in ops:
            unknown |= op.nulls(self.n)
        if unknown.any():
            mask[unknown] = pd.NA
        return mask

    @handle(ast.Comparison, subclasses=True)
    def comparison(self, node: ast.Comparison, lhs: Any, rhs: Any) -> Mask:
        a, b = _operand(lhs), _operand(rhs)
        x, y, kind = self._pair(a, b, "compare")
        if kind is Kind.boolean and not isinstance(node, (ast.Equal, ast.NotEqual)):
            raise OGCRequestError(f"{a.label} and {b.label} are booleans: = or <> only", "filter")
        return self._known(_COMPARE[type(node)](x, y), a, b)

    @handle(ast.Between)
    def between(self, node: ast.Between, lhs: Any, low: Any, high: Any) -> Mask:
        a, lo, hi = _operand(lhs), _operand(low), _operand(high)
        x, y, kind = self._pair(a, lo, "compare")
        _, z, _ = self._pair(a, hi, "compare")
        if kind not in _ORDERED:
            raise OGCRequestError(f"BETWEEN needs ordered values, not {a.label}", "filter")
        result = self._known(x >= y, a, lo) & self._known(x <= z, a, hi)
        return ~result if node.not_ else result

    @handle(ast.Like)
    def like(self, node: ast.Like, lhs: Any) -> Mask:
        a = _operand(lhs)
        pattern = (
            self.evaluate(node.pattern, False)
            if isinstance(node.pattern, ast.Node)
            else node.pattern
        )
        p = (
            _operand(pattern)
            if not isinstance(pattern, str)
            else Operand(Kind.string, pattern, False, "")
        )
        if a.kind is not Kind.string or p.kind is not Kind.string or p.per_feature:
            raise OGCRequestError(
                f"LIKE compares text with a text pattern, not {a.label}", "filter"
            )
        regex = re.compile(_like_regex(str(p.value)), re.DOTALL)
        if a.per_feature:
            hits = a.value.fillna("").str.fullmatch(regex).to_numpy(dtype=bool)
        else:
            hits = bool(regex.fullmatch(str(a.value)))
        result = self._known(hits, a)
        return ~result if node.not_ else result

    @handle(ast.In)
    def in_(self, node: ast.In, lhs: Any, *options: Any) -> Mask:
        a = _operand(lhs)
        if not options:
            raise OGCRequestError("IN needs at least one value", "filter")
        wanted = []
        for option in options:
            o = _operand(option)
            if o.per_feature:
                raise OGCRequestError("IN takes a list of values, not properties", "filter")
            _, y, _ = self._pair(a, o, "compare")
            wanted.append(y)
        x = self._filled(a)
        hits = pd.Series(x).isin(wanted).to_numpy(dtype=bool) if a.per_feature else x in wanted
        result = self._known(hits, a)
        return ~result if node.not_ else result

    @handle(ast.IsNull)
    def is_null(self, node: ast.IsNull, lhs: Any) -> Mask:
        a = _operand(lhs)
        nulls = a.nulls(self.n)
        return self._mask(~nulls if node.not_ else nulls)

    @handle(ast.SpatialComparisonPredicate, subclasses=True)
    def spatial(self, node: ast.SpatialComparisonPredicate, lhs: Any, rhs: Any) -> Mask:
        a, b = _operands(lhs, rhs, Kind.geometry, f"{node.op.name} compares geometries")
        for literal in (a, b):
            if not literal.per_feature:
                shapely.prepare(literal.value)
        try:
            result = _SPATIAL[type(node)](a.value, b.value)
        except shapely.errors.GEOSException as exc:  # a literal GEOS cannot relate
            raise OGCRequestError(f"{node.op.name}: {quote(str(exc), 120)}", "filter") from None
        return self._known(result, a, b)

    @handle(ast.BBox)
    def bbox_predicate(self, node: ast.BBox, lhs: Any) -> Mask:
        box = parse_bbox(f"{node.minx!r},{node.miny!r},{node.maxx!r},{node.maxy!r}", self.crs)
        a = _operand(lhs)
        if a.kind is not Kind.geometry:
            raise OGCRequestError(f"BBOX applies to the geometry, not {a.label}", "filter")
        return self._known(shapely.intersects(a.value, box), a)

    def adopt(self, node: Any, *sub_args: Any) -> Any:
        if isinstance(node, (ast.TemporalPredicate, values.Interval)):
            what = "temporal functions (T_…) are"
            hint = "compare with TIMESTAMP('2025-01-01T00:00:00Z') or use datetime="
        elif isinstance(node, ast.ArrayPredicate):
            what = "array functions (A_…) are"
            hint = "filter a list property with its query parameter (services=修车)"
        else:
            what = f"{type(node).__name__.upper()} is"
            hint = "see the conformance classes at /ogc/conformance"
        raise OGCRequestError(f"{what} not supported; {hint}", "filter")


def _operand(value: Any) -> Operand:
    if not isinstance(value, Operand):
        raise OGCRequestError(f"expected a value, got a condition ({_label(value)})", "filter")
    return value


def _operands(lhs: Any, rhs: Any, kind: Kind, needs: str) -> tuple[Operand, Operand]:
    """Both sides of an operator that takes two values of one kind; else a 400 naming them."""
    a, b = _operand(lhs), _operand(rhs)
    if a.kind is not kind or b.kind is not kind:
        raise OGCRequestError(f"{needs}, not {a.label} and {b.label}", "filter")
    return a, b


def _label(value: Any) -> str:
    if isinstance(value, Operand):
        return value.label
    if isinstance(value, BooleanArray):
        return "a condition"
    return quote(value, 40)


def filter_mask(
    node: ast.Node, table: FeatureTable, filter_crs: ServedCRS
) -> npt.NDArray[np.bool_]:
    """Which of ``table``'s features the filter selects (true; unknown is not selected)."""
    try:
        result = MaskEvaluator(table, filter_crs).evaluate(node)
    except RecursionError:
        raise OGCRequestError("nested too deeply", "filter") from None
    if isinstance(result, Operand) and result.kind is Kind.boolean:
        result = MaskEvaluator(table, filter_crs)._known(result.value, result)
    if not isinstance(result, BooleanArray):
        raise OGCRequestError(f"a filter is a condition, not {_label(result)}", "filter")
    return np.asarray(result.fillna(False), dtype=bool)
