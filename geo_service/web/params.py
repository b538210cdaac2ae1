"""Query and path parameters shared by several routers (so routers never import each other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Path, Query

from geo_service.analysis.bulk import parse_pairs
from geo_service.analysis.coverage import PRESETS, Preset, check_radius
from geo_service.core.crs import PointCRS, to_wgs84
from geo_service.core.errors import InputError, quote
from geo_service.core.schema import PointLayerName, Service
from geo_service.core.settings import Settings
from geo_service.web.deps import SettingsDep

GRID_CODE = Path(description="15-digit grid code", examples=["370705001001001"])

MAX_SITES = 10_000
DEFAULT_RADIUS_M = 1000.0
RADIUS_HELP = f"Radius in metres (default {DEFAULT_RADIUS_M:g}); or give `preset`"
PRESET_HELP = "Life-circle tier: 300 (5-minute walk), 500 (10-minute), 1000 (15-minute)"
SERVICE_HELP = "Only stalls offering this service (修鞋 shoes, 修车 bikes, 修锁配钥匙 locks/keys)"
ACTIVE_HELP = "Only facilities whose status is active (not suspended or relocated)"
INACTIVE_HELP = (
    "Also count suspended and relocated facilities (never retired ones); by default only active "
    "ones count, what serves residents today"
)


@dataclass(frozen=True)
class CoverageQuery:
    layer: str
    radius_m: float
    service: str | None
    active_only: bool


def resolve(
    layer: PointLayerName,
    radius_m: float | None,
    preset: int | None,
    service: Service | None,
    active_only: bool,
    settings: Settings,
) -> CoverageQuery:
    """One radius from ``radius_m`` or ``preset``, checked against the configured cap."""
    if preset is not None and radius_m is not None and float(radius_m) != PRESETS[int(preset)]:
        raise InputError(f"radius_m={radius_m:g} contradicts preset={int(preset)}", "radius_m")
    radius = (
        radius_m if radius_m is not None else PRESETS[int(preset)] if preset else DEFAULT_RADIUS_M
    )
    if service is not None and layer is not PointLayerName.stalls:
        raise InputError("service applies to the stalls layer only", "service")
    radius = check_radius(radius, settings.max_radius_m)
    return CoverageQuery(layer.value, radius, service.value if service else None, active_only)


def coverage_query(
    settings: SettingsDep,
    layer: Annotated[PointLayerName, Query(description="Facility layer that provides coverage")],
    radius_m: Annotated[
        float | None, Query(allow_inf_nan=False, description=RADIUS_HELP, examples=[1000])
    ] = None,
    preset: Annotated[Preset | None, Query(description=PRESET_HELP)] = None,
    service: Annotated[Service | None, Query(description=SERVICE_HELP)] = None,
    include_inactive: Annotated[bool, Query(description=INACTIVE_HELP)] = False,
) -> CoverageQuery:
    return resolve(layer, radius_m, preset, service, not include_inactive, settings)


CoverageQueryDep = Annotated[CoverageQuery, Depends(coverage_query)]


def sites_of(raw: list[Any] | None, crs: PointCRS, field: str) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = parse_pairs(raw, MAX_SITES, field)
    return to_wgs84(lon, lat, crs)


def parse_sites(add: str | None) -> list[list[float]]:
    """``lon,lat;lon,lat`` -> [[lon, lat], ...] (ranges are checked by ``sites_of``)."""
    if not add:
        return []
    sites = []
    for k, item in enumerate(add.split(";")):
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            sites.append([float(parts[0]), float(parts[1])])
        except ValueError:
            raise InputError(f"item {k} is not lon,lat: {quote(item)}", "add") from None
    return sites
