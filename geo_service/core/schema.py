"""What each layer must contain: fields, types, code patterns and geometry kinds.

The schema is data, so import, validation and the PostGIS backend read the same definition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from geo_service.core.hours import check as check_hours


class LayerName(StrEnum):
    grids = "grids"
    stalls = "stalls"
    vendor_clusters = "vendor_clusters"


class FieldType(StrEnum):
    text = "text"
    integer = "integer"
    number = "number"
    text_list = "text_list"  # stored as "a;b;c" in flat formats, a list in memory


# A field check returns an error message, or None when the value is fine.
FieldCheck = Callable[[object], str | None]


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType = FieldType.text
    required: bool = True
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    checks: tuple[FieldCheck, ...] = ()
    # "warning": a failed check keeps the row (reported, not rejected). Used where hiding the
    # feature would hurt more than the bad value, e.g. a stall whose hours cannot be read.
    check_action: Literal["rejected", "warning"] = "rejected"

    def regex(self) -> re.Pattern[str] | None:
        return re.compile(self.pattern) if self.pattern else None


@dataclass(frozen=True)
class RowCheck:
    """A check across the fields of one row: a message, or None when the row is fine.

    Unlike a field check, its action holds in strict validation too: a "warning" keeps the
    row in an import as well (the edit API makes its own, stricter, demands)."""

    field: str  # the field the problem is reported on
    check: Callable[[Mapping[str, object]], str | None]
    action: Literal["rejected", "warning"] = "rejected"


@dataclass(frozen=True)
class LayerSchema:
    name: LayerName
    geometry: str  # "polygon" or "point"
    fields: tuple[Field, ...]
    title: str
    extra_fields: tuple[str, ...] = field(default=())
    row_checks: tuple[RowCheck, ...] = field(default=())

    @property
    def code_field(self) -> Field:
        return self.fields[0]

    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


class PointLayerName(StrEnum):
    """The facility layers (points) that residents look up and planners measure coverage of."""

    stalls = "stalls"
    vendor_clusters = "vendor_clusters"


class Service(StrEnum):
    """The 小三修 trades a repair stall offers."""

    shoe = "修鞋"
    bike = "修车"
    lock = "修锁配钥匙"


class Status(StrEnum):
    active = "active"
    suspended = "suspended"
    relocated = "relocated"
    retired = "retired"


# What residents and officers read for each status: phone pages and map popups say the same.
STATUS_TEXT: dict[str, str] = {
    Status.active: "正常营业",
    Status.suspended: "暂停营业",
    Status.relocated: "已迁址",
    Status.retired: "已撤销",
}


class ClusterKind(StrEnum):
    morning_market = "早市"
    night_market = "夜市"
    convenience_market = "便民市场"
    farmers_market = "农贸集市"
    snack_street = "小吃街"


SERVICES = tuple(s.value for s in Service)
STALL_STATUSES = tuple(s.value for s in Status)
CLUSTER_KINDS = tuple(k.value for k in ClusterKind)

# Every feature carries a version, bumped by each change: the ETag of optimistic concurrency.
# Files written before versions existed simply lack it, which reads as version 1.
VERSION_FIELD = "version"
VERSION = Field(VERSION_FIELD, FieldType.integer, required=False, minimum=1)

# Where a relocated stall went: the code of the stall at its new place (its page, hours and
# point then come from that stall), and/or the new point (WGS84) with an address. Read only
# while the status is relocated; a relocation without either is "新址未登记".
MOVED_TO_CODE, MOVED_TO_LON, MOVED_TO_LAT, MOVED_TO_ADDRESS = (
    "moved_to_code",
    "moved_to_lon",
    "moved_to_lat",
    "moved_to_address",
)
MOVED_TO_FIELDS = (MOVED_TO_CODE, MOVED_TO_LON, MOVED_TO_LAT, MOVED_TO_ADDRESS)


def present(value: object) -> bool:
    """A value is there: not None, not NaN, not blank text."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _in_range(low: float, high: float) -> FieldCheck:
    def check(value: object) -> str | None:
        v = float(value)  # type: ignore[arg-type]
        return None if low <= v <= high else f"must lie within {low:g}..{high:g} (WGS84 degrees)"

    return check


def relocation_missing(row: Mapping[str, object]) -> str | None:
    """A relocated stall that does not say where it went (no code, no point)."""
    if row.get("status") != Status.relocated.value:
        return None
    if present(row.get(MOVED_TO_CODE)) or present(row.get(MOVED_TO_LON)):
        return None
    return (
        f"status relocated without {MOVED_TO_CODE} or {MOVED_TO_LON}/{MOVED_TO_LAT}: "
        "the page can only say 新址未登记"
    )


def _moved_to_pair(row: Mapping[str, object]) -> str | None:
    if present(row.get(MOVED_TO_LON)) != present(row.get(MOVED_TO_LAT)):
        return f"give both {MOVED_TO_LON} and {MOVED_TO_LAT}, or neither"
    return None


def _moved_to_itself(row: Mapping[str, object]) -> str | None:
    code = row.get(MOVED_TO_CODE)
    return "a stall cannot move to itself" if present(code) and code == row.get("code") else None


GRIDS = LayerSchema(
    name=LayerName.grids,
    geometry="polygon",
    title="网格",
    fields=(
        Field("code", pattern=r"^\d{15}$"),
        Field("name"),
        Field("community_code", pattern=r"^\d{12}$"),
        Field("community_name"),
        Field("street_code", pattern=r"^\d{9}$"),
        Field("street_name"),
        Field("district_code", pattern=r"^\d{6}$"),
        Field("district_name"),
        Field("officer_name", required=False),
        Field("officer_phone", required=False),
        Field("households", FieldType.integer, required=False, minimum=0),
        Field("population", FieldType.integer, minimum=0),
        VERSION,
    ),
)

STALLS = LayerSchema(
    name=LayerName.stalls,
    geometry="point",
    title="小蓝棚",
    fields=(
        Field("code", pattern=r"^[A-Z]{2,5}-\d{6}-\d{2,4}$"),
        Field("name"),
        Field("services", FieldType.text_list, choices=SERVICES),
        Field("hours", checks=(check_hours,), check_action="warning"),  # OSM opening_hours syntax
        Field("status", choices=STALL_STATUSES),
        Field("address", required=False),
        Field("operator", required=False),
        Field("phone", required=False),
        Field("grid_code", required=False, pattern=r"^\d{15}$"),
        Field("opened", required=False),
        Field(MOVED_TO_CODE, required=False, pattern=r"^[A-Z]{2,5}-\d{6}-\d{2,4}$"),
        Field(MOVED_TO_LON, FieldType.number, required=False, checks=(_in_range(-180, 180),)),
        Field(MOVED_TO_LAT, FieldType.number, required=False, checks=(_in_range(-90, 90),)),
        Field(MOVED_TO_ADDRESS, required=False),
        VERSION,
    ),
    row_checks=(
        RowCheck(MOVED_TO_LAT, _moved_to_pair),
        RowCheck(MOVED_TO_CODE, _moved_to_itself),
        # Stored and imported data keep such a stall (warned); an edit must say where it went.
        RowCheck(MOVED_TO_CODE, relocation_missing, "warning"),
    ),
)

VENDOR_CLUSTERS = LayerSchema(
    name=LayerName.vendor_clusters,
    geometry="point",
    title="便民摊点群",
    fields=(
        Field("code", pattern=r"^[A-Z]{2,5}-\d{6}-\d{2,4}$"),
        Field("name"),
        Field("kind", choices=CLUSTER_KINDS),
        Field("hours", checks=(check_hours,), check_action="warning"),  # OSM opening_hours syntax
        Field("pitches", FieldType.integer, required=False, minimum=0),
        Field("status", choices=STALL_STATUSES),
        Field("address", required=False),
        Field("operator", required=False),
        Field("grid_code", required=False, pattern=r"^\d{15}$"),
        VERSION,
    ),
)

SCHEMAS: dict[LayerName, LayerSchema] = {s.name: s for s in (GRIDS, STALLS, VENDOR_CLUSTERS)}


# Administrative levels derived from grids, finest first: (level, code column, name column).
class Level(StrEnum):
    """Units coverage is reported by: grids and the units they nest in."""

    grid = "grid"
    community = "community"
    street = "street"
    district = "district"


LEVELS: dict[str, tuple[str, str]] = {
    "grid": ("code", "name"),
    "community": ("community_code", "community_name"),
    "street": ("street_code", "street_name"),
    "district": ("district_code", "district_name"),
}


# A Shapefile (dBASE) field name holds at most 10 bytes. Each longer name of the layers and of
# the coverage exports has this one abbreviation: written by the export, mapped back by the
# import (core.fieldnames; the README's "Export to desktop GIS" lists the table).
SHAPEFILE_NAME_BYTES = 10
SHAPEFILE_NAMES: dict[str, str] = {
    "community_code": "comm_code",
    "community_name": "comm_name",
    "street_code": "strt_code",
    "street_name": "strt_name",
    "district_code": "dist_code",
    "district_name": "dist_name",
    "officer_name": "offcr_name",
    "officer_phone": "offcr_tel",
    MOVED_TO_CODE: "moved_code",
    MOVED_TO_LON: "moved_lon",
    MOVED_TO_LAT: "moved_lat",
    MOVED_TO_ADDRESS: "moved_addr",
    "covered_population": "cov_pop",
    "population_ratio": "pop_ratio",
}
