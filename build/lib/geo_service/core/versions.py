"""Feature versions as HTTP entity tags, for optimistic concurrency.

Every feature record carries an integer ``version`` that each change bumps. Its ETag is derived
from the record alone (``W/"<version>"``), so any handler that has the record (a GET of one
stall, grid or vendor cluster, or the answer to a write) sets the same tag, and an update whose
``If-Match`` names an older version is refused instead of overwriting someone else's change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np

from geo_service.core.schema import VERSION_FIELD

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def feature_version(properties: Mapping[str, Any]) -> int:
    """The record's version; files written before versions existed read as version 1."""
    value = properties.get(VERSION_FIELD)
    return 1 if value is None else int(value)


def etag(version: int | Mapping[str, Any]) -> str:
    """The ETag header value of a feature: pass its version or its properties."""
    v = version if isinstance(version, int) else feature_version(version)
    return f'W/"{v}"'


@dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match`` header: ``*`` (any current version) or a set of versions."""

    any: bool
    versions: frozenset[int]

    def matches(self, version: int) -> bool:
        return self.any or version in self.versions

    def describe(self) -> str:
        return "*" if self.any else ", ".join(etag(v) for v in sorted(self.versions))


def parse_if_match(header: str) -> IfMatch:
    """Parse ``W/"3"``, ``"3"``, ``3``, ``*`` or a comma-separated list of them.

    Weak and strong tags compare equal (the weak comparison of RFC 9110): the tag names a
    version, not a byte sequence. Tags that are not versions never match.
    """
    header = header.strip()
    if header == "*":
        return IfMatch(True, frozenset())
    versions: set[int] = set()
    for part in header.split(","):
        m = _TAG.fullmatch(part)
        raw = m.group(2) if m else part.strip()
        if raw.isdigit():
            versions.add(int(raw))
    return IfMatch(False, frozenset(versions))


def with_versions(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Give every row an integer version: rows stored before versions existed are version 1."""
    if VERSION_FIELD not in frame.columns:
        frame[VERSION_FIELD] = np.ones(len(frame), dtype=np.int64)
    frame[VERSION_FIELD] = frame[VERSION_FIELD].fillna(1).astype("int64")
    return frame
