"""Feature records: one feature as the backends store it and the audit log shows it.

A record is a GeoJSON Feature in canonical form: properties exactly as ``validate_layer`` leaves
them (lists for list fields, integers for integer fields, a ``version``), geometry as GeoJSON in
WGS84 rounded to 7 decimals (about 1 cm). Both backends validate through the same function, so
a record read from PostGIS equals the one read from the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import orjson
import shapely

from geo_service.core.layers import LIST_SEPARATORS, LoadReport, Problem, validate_layer
from geo_service.core.schema import SCHEMAS, VERSION_FIELD, FieldType, LayerName
from geo_service.core.snapshot import _records as frame_rows
from geo_service.core.versions import feature_version

PRECISION = 7
LIST_JOIN = ";"


@dataclass(frozen=True)
class Record:
    layer: LayerName
    properties: dict[str, Any]
    geometry: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.properties["code"])

    @property
    def version(self) -> int:
        return feature_version(self.properties)

    def with_version(self, version: int) -> Record:
        return Record(self.layer, {**self.properties, VERSION_FIELD: version}, self.geometry)

    def content(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Properties (without the version) and geometry: what a change changes."""
        props = {k: v for k, v in self.properties.items() if k != VERSION_FIELD}
        return props, self.geometry

    def same_content(self, other: Record) -> bool:
        return self.content() == other.content()

    def changed_fields(self, other: Record | None) -> list[str]:
        """Names of the properties (and ``geometry``) that differ from ``other``."""
        if other is None:
            return sorted(k for k in self.properties if k != VERSION_FIELD)
        mine, theirs = self.content()[0], other.content()[0]
        names = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if self.geometry != other.geometry:
            names.append("geometry")
        return names

    def feature(self) -> dict[str, Any]:
        return {
            "type": "Feature",
            "id": self.code,
            "geometry": self.geometry,
            "properties": self.properties,
        }

    def file_feature(self) -> dict[str, Any]:
        """The feature as the GeoJSON data files hold it: list fields as ``a;b`` text."""
        lists = _list_fields(self.layer)
        props = {
            k: LIST_JOIN.join(v) if k in lists and isinstance(v, list) else v
            for k, v in self.properties.items()
        }
        return {"type": "Feature", "properties": props, "geometry": self.geometry}


def _list_fields(layer: LayerName) -> frozenset[str]:
    return frozenset(f.name for f in SCHEMAS[layer].fields if f.type is FieldType.text_list)


def round_geometries(geoms: np.ndarray) -> np.ndarray:
    return shapely.transform(geoms, lambda c: np.round(c, PRECISION))


def geometry_dicts(geoms: np.ndarray) -> list[dict[str, Any]]:
    if len(geoms) == 0:
        return []
    return [orjson.loads(s) for s in shapely.to_geojson(round_geometries(geoms))]


def records_from_frame(layer: LayerName, frame: gpd.GeoDataFrame) -> list[Record]:
    """Records of a validated frame; a missing version reads as 1."""
    schema_fields = set(SCHEMAS[layer].field_names())
    geoms = geometry_dicts(np.asarray(frame.geometry.to_numpy(), dtype=object))
    out = []
    for props, geom in zip(frame_rows(frame), geoms, strict=True):
        props = {k: v for k, v in props.items() if k in schema_fields or v is not None}
        props[VERSION_FIELD] = feature_version(props)
        out.append(Record(layer, props, geom))
    return out


def stored_records(
    layer: LayerName, properties: Sequence[dict[str, Any]], geoms: Sequence[Any] | np.ndarray
) -> list[Record]:
    """Records as a backend holds them, in canonical form without validating them again.

    What a backend stores was validated when it was written; reading it back only needs the
    types made canonical (``a;b`` text to lists, numbers to int/float) and the geometry rounded,
    which costs microseconds where ``validate_layer`` costs tens of milliseconds per call.
    """
    kinds = {f.name: f.type for f in SCHEMAS[layer].fields}
    out = []
    for props, geom in zip(
        properties, geometry_dicts(np.asarray(geoms, dtype=object)), strict=True
    ):
        clean: dict[str, Any] = {name: None for name in kinds}
        for key, value in props.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            kind = kinds.get(key)
            if kind is FieldType.text_list:
                items = value if isinstance(value, list) else re.split(LIST_SEPARATORS, str(value))
                value = [str(v).strip() for v in items if str(v).strip()] or None
            elif kind is FieldType.integer:
                value = int(value)
            elif kind is FieldType.number:
                value = float(value)
            elif kind is FieldType.text:
                value = str(value).strip()
            clean[key] = value
        clean[VERSION_FIELD] = feature_version(clean)
        out.append(Record(layer, clean, geom))
    return out


def stored_feature_records(layer: LayerName, features: Sequence[dict[str, Any]]) -> list[Record]:
    geoms = shapely.from_geojson([orjson.dumps(f["geometry"]).decode() for f in features])
    return stored_records(layer, [f.get("properties") or {} for f in features], geoms)


def frame_of_features(features: Sequence[dict[str, Any]]) -> gpd.GeoDataFrame:
    if not features:
        return gpd.GeoDataFrame({"code": []}, geometry=gpd.GeoSeries([]), crs=4326)
    return gpd.GeoDataFrame.from_features(list(features), crs=4326)


def validate_features(
    layer: LayerName, features: Sequence[dict[str, Any]], source: str = "<request>"
) -> tuple[list[Record], LoadReport]:
    """Validate GeoJSON features exactly as an imported file is validated (strictly)."""
    frame, report = validate_layer(frame_of_features(features), layer, source, strict=True)
    return records_from_frame(layer, frame), report


class InvalidRecord(ValueError):
    """A feature that fails the layer's schema; ``problems`` says why, field by field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def validate_record(layer: LayerName, feature: dict[str, Any]) -> Record:
    """One feature in canonical form, or ``InvalidRecord``."""
    records, report = validate_features(layer, [feature])
    if report.rejected or not records:
        raise InvalidRecord(report.rejected or [Problem(None, None, None, "not a valid feature")])
    return records[0]


@dataclass
class ReplacePlan:
    """What replacing a layer does, feature by feature, with the versions it assigns."""

    records: list[Record]
    changes: list[tuple[Record | None, Record | None]] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "rows": len(self.records),
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }


def plan_replace(old: Iterable[Record], new: Iterable[Record]) -> ReplacePlan:
    """Unchanged features keep their version; changed ones get the next; new ones start at 1."""
    before = {r.code: r for r in old}
    plan = ReplacePlan(records=[])
    for rec in new:
        prev = before.pop(rec.code, None)
        if prev is None:
            rec = rec.with_version(1)
            plan.changes.append((None, rec))
            plan.added += 1
        elif prev.same_content(rec):
            rec = prev
            plan.unchanged += 1
        else:
            rec = rec.with_version(prev.version + 1)
            plan.changes.append((prev, rec))
            plan.changed += 1
        plan.records.append(rec)
    for prev in before.values():
        plan.changes.append((prev, None))
        plan.removed += 1
    plan.records.sort(key=lambda r: r.code)
    return plan
