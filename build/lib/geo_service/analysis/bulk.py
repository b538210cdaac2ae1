"""Validation of bulk point input (a JSON body of [lon, lat] pairs) into numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from geo_service.core.crs import FloatArray, PointCRS, to_wgs84
from geo_service.core.errors import InputError, quote


class BulkInputError(InputError):
    """A bulk point list that cannot be read; ``field`` names the offending part."""


def parse_points(
    body: Any, max_points: int, key: str = "points", allow_empty: bool = True
) -> tuple[FloatArray, FloatArray]:
    """``{"points": [[lon, lat], ...], "crs": ...}`` → WGS84 lon and lat arrays."""
    if not isinstance(body, dict):
        raise BulkInputError("the body must be a JSON object", "body")
    crs_name = body.get("crs", "wgs84")
    try:
        crs = PointCRS(crs_name)
    except ValueError:
        raise BulkInputError(
            f"unknown crs {quote(crs_name)}; one of {', '.join(c.value for c in PointCRS)}", "crs"
        ) from None
    lon, lat = parse_pairs(body.get(key), max_points, key, allow_empty)
    return to_wgs84(lon, lat, crs)


def parse_pairs(
    points: Any, max_points: int, key: str = "points", allow_empty: bool = True
) -> tuple[FloatArray, FloatArray]:
    if points is None:
        raise BulkInputError("required but missing", key)
    if not isinstance(points, list):
        raise BulkInputError("must be a list of [lon, lat] pairs", key)
    if len(points) > max_points:
        raise BulkInputError(f"too many points: {len(points)} > {max_points}", key)
    if not points:
        if allow_empty:
            return np.empty(0), np.empty(0)
        raise BulkInputError("must not be empty", key)
    try:
        arr = np.array(points, dtype=np.float64)
    except (ValueError, TypeError):
        bad = next((i for i, p in enumerate(points) if not _is_pair(p)), None)
        raise BulkInputError(
            f"item {bad} is not a [lon, lat] pair of numbers: {quote(points[bad])}"
            if bad is not None
            else "must be a list of [lon, lat] pairs of numbers",
            key,
        ) from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        bad = next((i for i, p in enumerate(points) if not _is_pair(p)), 0)
        raise BulkInputError(f"item {bad} is not a [lon, lat] pair: {quote(points[bad])}", key)
    if any(type(v) is bool for p in points for v in p):
        raise BulkInputError("coordinates must be numbers, not booleans", key)
    lon, lat = arr[:, 0], arr[:, 1]
    for name, values, lim in (("lon", lon, 180.0), ("lat", lat, 90.0)):
        wrong = ~np.isfinite(values) | (np.abs(values) > lim)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise BulkInputError(
                f"item {i}: {name} {quote(values[i])} must be a finite number within ±{lim:g} "
                f"({int(wrong.sum())} bad items in all)",
                key,
            )
    return lon, lat


def _is_pair(p: Any) -> bool:
    return (
        isinstance(p, (list, tuple))
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
    )
