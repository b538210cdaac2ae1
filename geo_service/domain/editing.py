"""Edits to single features: create, update, retire, each checked for role, version and schema.

An edit is a ``Mutation`` the backend runs while it holds the feature: it sees the stored
record, refuses (404, 403, 409, 422 in that order of checks) or returns the record to store.
Roles are checked against the stored record, so an officer's right follows where the feature
really is, not where the client says it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.layers import Problem
from geo_service.core.principal import Principal
from geo_service.core.schema import (
    MOVED_TO_CODE,
    MOVED_TO_FIELDS,
    SCHEMAS,
    VERSION_FIELD,
    LayerName,
    relocation_missing,
)
from geo_service.core.snapshot import Snapshot
from geo_service.core.versions import IfMatch
from geo_service.domain.auth import check_admin, check_fields, check_grid
from geo_service.domain.validation import FileValidation
from geo_service.storage.base import Backend, Mutation, ReplaceResult
from geo_service.storage.records import (
    InvalidRecord,
    Record,
    records_from_frame,
    validate_record,
)

POINT_LAYERS = (LayerName.stalls, LayerName.vendor_clusters)
# A grid's geometry and codes change only with a whole new survey (``replace``), where the
# topology of all grids is checked together.
GRID_EDITABLE = frozenset({"name", "officer_name", "officer_phone", "households", "population"})

GridOf = Callable[[Record], "str | None"]


class EditError(Exception):
    """A refused edit; nothing was changed."""


class NotFound(EditError):
    pass


class AlreadyExists(EditError):
    pass


class VersionConflict(EditError):
    def __init__(self, current: Record, if_match: IfMatch) -> None:
        super().__init__(
            f"{current.layer.value} {current.code} is at version {current.version}, "
            f"not {if_match.describe()}: reload it and apply the change again"
        )
        self.current = current


def editable_fields(layer: LayerName) -> list[str]:
    """Fields a client may send; ``code`` and ``version`` belong to the service."""
    if layer is LayerName.grids:
        return [f for f in SCHEMAS[layer].field_names() if f in GRID_EDITABLE]
    return [f for f in SCHEMAS[layer].field_names() if f not in ("code", VERSION_FIELD)]


def point_geometry(lon: float, lat: float, crs: PointCRS | str) -> dict[str, Any]:
    x, y = to_wgs84(lon, lat, crs)
    return {"type": "Point", "coordinates": [float(np.asarray(x)), float(np.asarray(y))]}


def officer_grids(snapshot: Snapshot, officer: str) -> list[str]:
    frame = snapshot.grids.frame
    if "officer_name" not in frame:
        return []
    return [str(c) for c in frame.loc[frame["officer_name"] == officer, "code"]]


def grid_locator(snapshot: Snapshot) -> GridOf:
    """The grid a stored record lies in: its own code for grids, else where its point falls."""

    def grid_of(rec: Record) -> str | None:
        if rec.layer is LayerName.grids:
            return rec.code
        lon, lat = rec.geometry["coordinates"][:2]
        i = int(snapshot.grids.index.locate(lon, lat)[0])
        if i >= 0:
            return str(snapshot.grids.codes[i])
        code = rec.properties.get("grid_code")
        return None if code is None else str(code)

    return grid_of


def _feature(properties: dict[str, Any], geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _require_destination(rec: Record) -> Record:
    """A write that records a relocation must say where the stall went (stored data and
    imports only warn: a relocation recorded before destinations existed stays readable)."""
    message = relocation_missing(rec.properties)
    if message is not None:
        raise InvalidRecord([Problem(None, rec.code, MOVED_TO_CODE, message)])
    return rec


class PreconditionRequired(EditError):
    """An update without ``If-Match``: the client must say which version it changes."""


def create(
    layer: LayerName, who: Principal, properties: dict[str, Any], geometry: dict[str, Any]
) -> Mutation:
    check_admin(who, f"creating {layer.value}")

    def run(current: Record | None) -> Record:
        if current is not None:
            raise AlreadyExists(f"{layer.value} {current.code} exists already")
        rec = validate_record(layer, _feature({**properties, VERSION_FIELD: 1}, geometry))
        return _require_destination(rec)

    return run


def update(
    layer: LayerName,
    who: Principal,
    changes: dict[str, Any],
    geometry: dict[str, Any] | None,
    if_match: IfMatch | None,
    grid_of: GridOf,
) -> Mutation:
    fields: Iterable[str] = [*changes, *(["geometry"] if geometry is not None else [])]
    check_fields(who, layer, fields)
    if if_match is None:
        raise PreconditionRequired(
            "send If-Match with the ETag of the version you change (GET the feature first)"
        )

    def run(current: Record | None) -> Record:
        if current is None:
            raise NotFound(f"no {layer.value} with that code")
        check_grid(who, grid_of(current))
        if not if_match.matches(current.version):
            raise VersionConflict(current, if_match)
        props = {**current.properties, **changes}
        rec = validate_record(layer, _feature(props, geometry or current.geometry))
        # Only an edit of the relocation itself must complete it: fixing another field of a
        # stall relocated before destinations were recorded stays possible.
        if {"status", *MOVED_TO_FIELDS} & set(changes):
            _require_destination(rec)
        return rec

    return run


def retire(layer: LayerName, who: Principal, if_match: IfMatch | None, grid_of: GridOf) -> Mutation:
    return update(layer, who, {"status": "retired"}, None, if_match, grid_of)


def replace_layer(
    backend: Backend, checked: FileValidation, who: Principal, source: str
) -> ReplaceResult:
    """Store the valid rows of a checked file as the whole layer."""
    records = records_from_frame(checked.layer, checked.frame)
    return backend.replace_layer(checked.layer, records, who, source)
