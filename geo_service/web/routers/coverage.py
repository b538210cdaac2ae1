"""Planners: what share of each unit, and of its people, lies within reach of a facility layer;
where the gaps are; what adding or removing sites would change; where new sites should go."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import pandas as pd
import shapely
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from shapely.geometry.base import BaseGeometry

from geo_service.analysis.coverage import (
    OVERALL_KEYS,
    Preset,
    check_point,
    compute_coverage,
    facility_indices,
)
from geo_service.analysis.gaps import DEFAULT_MIN_GAP_M2, MAX_MIN_GAP_M2, gap_pieces
from geo_service.analysis.places import BESIDE_M
from geo_service.analysis.siting import MAX_P, optimize_sites
from geo_service.analysis.whatif import WhatIfResult, what_if
from geo_service.core.crs import PointCRS, transform_geometry
from geo_service.core.schema import LEVELS, Level, PointLayerName, Service
from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot
from geo_service.web.deps import HeavyDep, PointDep, QueryPoint, SettingsDep, SnapshotDep
from geo_service.web.errors import bad_request
from geo_service.web.geojson import collection, feature, geometries_json
from geo_service.web.jsonbody import JSONBodyRoute
from geo_service.web.models import Feature, FeatureCollection
from geo_service.web.params import (
    INACTIVE_HELP,
    PRESET_HELP,
    RADIUS_HELP,
    SERVICE_HELP,
    CoverageQuery,
    CoverageQueryDep,
    resolve,
    sites_of,
)
from geo_service.web.responses import GeoJSONResponse, JSONResponse

router = APIRouter(
    prefix="/api/v1/coverage", tags=["coverage (planners)"], route_class=JSONBodyRoute
)
CODE_COLUMNS = ("grid_code", "community_code", "street_code", "district_code")
INCLUDED_HELP = "Whether suspended and relocated facilities were counted (`include_inactive`)"
MIN_AREA_HELP = (
    f"Pieces smaller than this many m² are slivers, dropped and counted (default "
    f"{DEFAULT_MIN_GAP_M2:,.0f} m², about 30 m × 30 m: overlay strips along grid edges); 0 keeps all"
)


def figures(row: dict[str, Any]) -> dict[str, Any]:
    """The six coverage figures, rounded for display (areas to 0.1 m², ratios to 1e-6)."""
    out = {}
    for key in OVERALL_KEYS:
        value = float(row[key])
        out[key] = round(value, 6) if key.endswith("ratio") else round(value, 1)
    return out


def unit_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["code", "name", *OVERALL_KEYS]
    return [
        {"code": r[0], "name": r[1], **figures(dict(zip(OVERALL_KEYS, r[2:], strict=True)))}
        for r in frame[cols].itertuples(index=False, name=None)
    ]


def header(q: CoverageQuery, snap: Snapshot) -> dict[str, Any]:
    return {
        "layer": q.layer,
        "radius_m": q.radius_m,
        "service": q.service,
        "include_inactive": not q.active_only,
        "facilities": len(facility_indices(snap, q.layer, q.service, q.active_only)),
        "crs": f"EPSG:{snap.projection.epsg}",
    }


# --- response shapes (OpenAPI) ----------------------------------------------------------------


class Figures(BaseModel):
    area_m2: float = Field(description="Area, m² (metric CRS)")
    covered_m2: float = Field(description="Area within radius_m of a facility, m²")
    area_ratio: float = Field(description="covered_m2 / area_m2, 0..1")
    population: float
    covered_population: float = Field(description="Population × covered share of each grid")
    population_ratio: float


class UnitFigures(Figures):
    code: str
    name: str


class CoverageResponse(BaseModel):
    layer: str
    radius_m: float
    by: str
    service: str | None
    include_inactive: bool = Field(description=INCLUDED_HELP)
    facilities: int = Field(description="Facilities that provide coverage")
    crs: str = Field(description="Metric CRS the areas were measured in")
    overall: Figures
    units: list[UnitFigures]


class GapProperties(BaseModel):
    gap_id: str = Field(description="G0001, G0002… in this answer's order (most people first)")
    grid_code: str = Field(description="The one grid the piece lies in")
    community_code: str
    street_code: str
    district_code: str
    grid_name: str | None = None
    community_name: str | None = None
    street_name: str | None = None
    area_m2: float = Field(description="Area of the piece, m² (metric CRS)")
    population: float = Field(description="Its grid's population × area share (rounded to 0.1)")
    nearest_m: float | None = Field(
        description="Metres from the piece to the nearest counted facility (None when none)"
    )


class Gap(Feature):
    properties: GapProperties  # type: ignore[assignment]


class GapsResponse(FeatureCollection):
    features: list[Gap]  # type: ignore[assignment]
    layer: str
    radius_m: float
    service: str | None
    include_inactive: bool = Field(description=INCLUDED_HELP)
    facilities: int = Field(description="Facilities that provide coverage")
    crs: str = Field(description="Metric CRS the areas were measured in")
    overall: Figures
    min_area_m2: float = Field(description="Pieces smaller than this were dropped as slivers")
    dropped: int = Field(description="Slivers dropped (pieces below min_area_m2)")
    dropped_area_m2: float = Field(description="Their total area, m²")
    dropped_population: float = Field(description="Their total population")


class WithinFacility(BaseModel):
    code: str
    name: str
    distance_m: float = Field(description="Geodesic distance, metres")


class CheckResponse(BaseModel):
    point: dict[str, Any]
    layer: str
    radius_m: float
    service: str | None
    covered: bool
    grid_code: str | None = Field(description="Grid containing the point, if any")
    within: list[WithinFacility]
    nearest: WithinFacility | None = Field(description="Nearest facility when none is in reach")


class ChangedFigures(BaseModel):
    covered_m2: float
    area_ratio: float
    covered_population: float
    population_ratio: float


class ChangedUnit(BaseModel):
    code: str
    name: str
    area_m2: float
    population: float
    before: ChangedFigures
    after: ChangedFigures


class Landmark(BaseModel):
    layer: str = Field(description="stalls or vendor_clusters")
    code: str
    name: str
    distance_m: float = Field(description="Geodesic distance from the landmark to the site, m")
    direction: str | None = Field(
        description="Where the site lies seen from the landmark: 北, 东北, 东, 东南, 南, 西南, 西 "
        f"or 西北 (None closer than {BESIDE_M:g} m)"
    )


class Site(BaseModel):
    lon: float = Field(description="WGS84 longitude, rounded to 6 decimals (about 0.1 m)")
    lat: float = Field(description="WGS84 latitude, rounded to 6 decimals (about 0.1 m)")
    grid_code: str | None = Field(description="Grid containing the site (None outside every grid)")
    grid_name: str | None
    community_code: str | None
    community_name: str | None
    street_code: str | None
    street_name: str | None
    district_code: str | None
    district_name: str | None
    landmark: Landmark | None = Field(
        description="Nearest named stall or vendor cluster still in place (not retired or "
        "relocated); the data's addresses are not used, they do not mark the point"
    )
    label: str = Field(
        description="Chinese place label: street and grid, then direction and distance from the "
        "landmark, e.g. 北关街道清源园社区第01网格，北关早市便民摊点群东北方向约 320 米"
    )


class WhatIfResponse(BaseModel):
    layer: str
    radius_m: float
    by: str
    service: str | None
    include_inactive: bool = Field(description=INCLUDED_HELP)
    before: Figures
    after: Figures
    gain: ChangedFigures = Field(description="after - before")
    added: list[Site]
    removed: list[str]
    grids_recomputed: int
    units: list[ChangedUnit] = Field(description="Units whose coverage changes")


class ChosenSite(Site):
    candidate: str = Field(description="Grid code of a default candidate, or 'candidate i'")
    gain_alone: float = Field(description="Population newly covered if only this site is added")


class OptimizeResponse(WhatIfResponse):
    p: int
    sites: list[ChosenSite]
    estimated_gain: float = Field(
        description="The siting model's (MCLP) objective on the sampled demand points: each "
        "point stands for a spacing_m × spacing_m cell and counts wholly in or out of a disc, so "
        "it differs from the exact gain by a few percent. Used to choose the sites; quote "
        "gain.covered_population, which is exact"
    )
    estimate_difference: float = Field(
        description="(estimated_gain - gain.covered_population) / gain.covered_population"
    )
    note: dict[str, str] = Field(
        description="Why two gains are reported, with this answer's numbers: zh and en"
    )
    candidates: int = Field(description="Candidate sites considered (after exclusions)")
    demand_points: int = Field(description="Sampled demand points of the uncovered population")
    spacing_m: float = Field(description="Spacing of the demand sampling lattice, m")
    solver: dict[str, str]


class CoverageBody(BaseModel):
    # An unknown field (a typo, the old `active_only`) is a 422 naming it, not ignored.
    model_config = ConfigDict(extra="forbid")

    layer: PointLayerName
    radius_m: float | None = Field(None, description=RADIUS_HELP)
    preset: Preset | None = Field(None, description=PRESET_HELP)
    service: Service | None = Field(None, description=SERVICE_HELP)
    include_inactive: bool = Field(False, description=INACTIVE_HELP)
    by: Level = Field(Level.grid, description="Level of the changed units reported")
    crs: PointCRS = Field(PointCRS.wgs84, description="CRS of every point in the body")

    def query(self, settings: Settings) -> CoverageQuery:
        return resolve(
            self.layer,
            self.radius_m,
            self.preset,
            self.service,
            not self.include_inactive,
            settings,
        )


class WhatIfBody(CoverageBody):
    add: list[Any] = Field(default_factory=list, description="New sites, [[lon, lat], ...]")
    remove: list[str] = Field(default_factory=list, description="Codes of facilities to remove")


class OptimizeBody(CoverageBody):
    p: int = Field(strict=True, description=f"How many new sites (1..{MAX_P})")
    candidates: list[Any] | None = Field(
        None, description="Candidate sites [[lon, lat], ...]; default: grid centroids"
    )
    exclude: list[str] = Field(
        default_factory=list, description="Grid, community, street or district codes ruled out"
    )
    exclude_area: dict[str, Any] | None = Field(
        None, description="GeoJSON (Multi)Polygon, in `crs`, where no site may go"
    )


# --- endpoints --------------------------------------------------------------------------------


@router.get("", response_model=CoverageResponse, summary="Coverage by grid, community, street…")
async def coverage(
    q: CoverageQueryDep,
    snap: SnapshotDep,
    heavy: HeavyDep,
    by: Annotated[Level, Query(description="Level to aggregate to")] = Level.grid,
) -> JSONResponse:
    """Share of each unit's area and population within `radius_m` metres of the layer's
    facilities, measured in the metric CRS. Population is spread evenly over its grid. An empty
    layer covers nothing (ratios 0)."""
    return JSONResponse(await heavy.run(coverage_body, q, snap, by))


def coverage_body(q: CoverageQuery, snap: Snapshot, by: Level) -> dict[str, Any]:
    res = compute_coverage(
        snap, q.layer, q.radius_m, by.value, q.service, active_only=q.active_only
    )
    return {
        **header(q, snap),
        "by": by.value,
        "overall": figures(res.overall),
        "units": unit_rows(res.units),
    }


@router.get(
    "/gaps",
    response_model=GapsResponse,
    response_class=GeoJSONResponse,
    summary="Uncovered areas, with the population living in them",
)
async def gaps(
    q: CoverageQueryDep,
    snap: SnapshotDep,
    heavy: HeavyDep,
    min_area_m2: Annotated[
        float, Query(ge=0, le=MAX_MIN_GAP_M2, allow_inf_nan=False, description=MIN_AREA_HELP)
    ] = DEFAULT_MIN_GAP_M2,
) -> GeoJSONResponse:
    """The uncovered part of each grid, split into connected pieces, most people first: each
    lies in one grid (codes and names of its grid, community, street, district), with its
    `area_m2`, `population` (the grid's population by area share) and `nearest_m` (metres to
    the nearest counted facility). Pieces below `min_area_m2` are slivers: dropped, and
    counted in `dropped`, `dropped_area_m2` and `dropped_population`."""
    return GeoJSONResponse(await heavy.run(gaps_body, q, snap, min_area_m2))


def round_7(coords: Any) -> Any:
    """Lon/lat to 7 decimals (about 1 cm), as the stored layers are."""
    return coords.round(7)


def gaps_body(q: CoverageQuery, snap: Snapshot, min_area_m2: float) -> dict[str, Any]:
    res = compute_coverage(snap, q.layer, q.radius_m, "grid", q.service, active_only=q.active_only)
    pieces = gap_pieces(snap, res.grid, min_area_m2)
    frame = pieces.frame
    keys = ["gap_id", *CODE_COLUMNS, *(c for c in frame.columns if c.endswith("_name"))]
    text = zip(*(frame[k].to_numpy(dtype=object) for k in keys), strict=True)
    feats = [
        feature(
            props[0],
            geom,
            {
                **dict(zip(keys, props, strict=True)),
                "area_m2": round(a, 1),
                "population": round(p, 1),
                "nearest_m": None if near != near else round(near, 1),  # NaN: no facility
            },
        )
        for props, geom, a, p, near in zip(
            text,
            geometries_json(shapely.transform(frame.geometry.to_numpy(), round_7)),
            frame["area_m2"].tolist(),
            frame["population"].tolist(),
            frame["nearest_m"].tolist(),
            strict=True,
        )
    ]
    body = collection(feats, len(feats))
    body.update(header(q, snap))
    body["overall"] = figures(res.overall)
    body.update(
        {
            "min_area_m2": pieces.min_area_m2,
            "dropped": pieces.dropped,
            "dropped_area_m2": round(pieces.dropped_area_m2, 1),
            "dropped_population": round(pieces.dropped_population, 1),
        }
    )
    return body


@router.get("/check", response_model=CheckResponse, summary="Is this place covered?")
async def check(
    q: CoverageQueryDep, point: PointDep, snap: SnapshotDep, heavy: HeavyDep
) -> JSONResponse:
    """Whether the point lies within `radius_m` (geodesic metres) of a facility, which ones
    (nearest first) and how far; when none, the nearest facility and its distance."""
    return JSONResponse(await heavy.run(check_body, q, point, snap))


def check_body(q: CoverageQuery, point: QueryPoint, snap: Snapshot) -> dict[str, Any]:
    res = check_point(
        snap,
        q.layer,
        q.radius_m,
        point.wgs_lon,
        point.wgs_lat,
        q.service,
        active_only=q.active_only,
    )
    layer = snap.points(q.layer)
    codes, names = layer.codes, layer.frame["name"].to_numpy(dtype=object)

    def item(i: int, d: float) -> dict[str, Any]:
        return {"code": codes[i], "name": names[i], "distance_m": round(float(d), 1)}

    gi = int(snap.grids.index.locate(point.wgs_lon, point.wgs_lat)[0])
    body = {
        "point": point.echo(),
        "layer": q.layer,
        "radius_m": q.radius_m,
        "service": q.service,
        "covered": res.covered,
        "grid_code": snap.grids.codes[gi] if gi >= 0 else None,
        "within": [item(int(i), d) for i, d in zip(res.within, res.distance_m, strict=True)],
        "nearest": item(res.nearest, res.nearest_m or 0.0) if res.nearest is not None else None,
    }
    return body


COORD_DECIMALS = 6  # about 0.1 m: finer digits are noise to a planner


def site_json(row: dict[str, Any]) -> dict[str, Any]:
    """A what-if or suggested site: WGS84 position (6 decimals), units and place label."""
    mark = None
    if row["landmark_code"] is not None:
        mark = {
            "layer": row["landmark_layer"],
            "code": row["landmark_code"],
            "name": row["landmark_name"],
            "distance_m": row["landmark_m"],
            "direction": row["landmark_direction"],
        }
    units = {
        f"{level}_{part}": row[f"{level}_{part}"] for level in LEVELS for part in ("code", "name")
    }
    return {
        "lon": round(float(row["lon"]), COORD_DECIMALS),
        "lat": round(float(row["lat"]), COORD_DECIMALS),
        **units,
        "landmark": mark,
        "label": row["label"],
    }


def change_body(res: WhatIfResult) -> dict[str, Any]:
    keys = ("covered_m2", "area_ratio", "covered_population", "population_ratio")

    def pick(row: dict[str, Any], suffix: str) -> dict[str, float]:
        return {
            k: round(float(row[f"{k}_{suffix}"]), 6 if k.endswith("ratio") else 1) for k in keys
        }

    units = [
        {
            "code": row["code"],
            "name": row["name"],
            "area_m2": round(float(row["area_m2"]), 1),
            "population": float(row["population"]),
            "before": pick(row, "before"),
            "after": pick(row, "after"),
        }
        for row in res.units.to_dict("records")
    ]
    return {
        "layer": res.layer,
        "radius_m": res.radius_m,
        "by": res.by,
        "service": res.service,
        "include_inactive": not res.active_only,
        "before": figures(res.before),
        "after": figures(res.after),
        "gain": {k: round(v, 6 if k.endswith("ratio") else 1) for k, v in res.gain.items()},
        "added": [site_json(row) for row in res.added.to_dict("records")],
        "removed": list(res.removed),
        "grids_recomputed": len(res.grids),
        "units": units,
    }


@router.post("/what-if", response_model=WhatIfResponse, summary="Coverage after adding/removing")
async def whatif(
    body: WhatIfBody, snap: SnapshotDep, settings: SettingsDep, heavy: HeavyDep
) -> JSONResponse:
    """Coverage before and after adding sites (`add`, in `crs`) and removing facilities
    (`remove`, codes of the layer), and the `by` units whose coverage changes. Only the grids
    within the radius of a changed site are recomputed."""
    return JSONResponse(await heavy.run(whatif_body, body, snap, settings))


def whatif_body(body: WhatIfBody, snap: Snapshot, settings: Settings) -> dict[str, Any]:
    q = body.query(settings)
    lon, lat = sites_of(body.add, body.crs, "add")
    res = what_if(
        snap,
        q.layer,
        q.radius_m,
        lon,
        lat,
        body.remove,
        body.by.value,
        q.service,
        active_only=q.active_only,
    )
    return change_body(res)


def exclusion_area(raw: dict[str, Any] | None, crs: PointCRS) -> BaseGeometry | None:
    if raw is None:
        return None
    try:
        geom = shapely.from_geojson(orjson.dumps(raw))
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        raise bad_request(f"not a GeoJSON geometry: {exc}", "exclude_area") from None
    if shapely.get_type_id(geom) not in (
        shapely.GeometryType.POLYGON,
        shapely.GeometryType.MULTIPOLYGON,
    ):
        raise bad_request("must be a GeoJSON Polygon or MultiPolygon", "exclude_area")
    if not shapely.is_valid(geom):
        raise bad_request(f"invalid polygon: {shapely.is_valid_reason(geom)}", "exclude_area")
    return transform_geometry(geom, crs, PointCRS.wgs84)


@router.post(
    "/optimize", response_model=OptimizeResponse, summary="Best p new sites for uncovered people"
)
async def optimize(
    body: OptimizeBody, snap: SnapshotDep, settings: SettingsDep, heavy: HeavyDep
) -> JSONResponse:
    """The `p` new sites that newly cover the most people (maximal covering location problem,
    PySAL spopt + CBC), chosen from `candidates` (default: every grid's centroid) outside the
    `exclude` units and `exclude_area`; with the exact gain of all of them (`gain`, the figure
    to quote), of each alone (`gain_alone`), and where each lies (units, `label`).
    `estimated_gain` is the model's objective on sampled demand, a few percent off: `note`."""
    return JSONResponse(await heavy.run(optimize_body, body, snap, settings))


def optimize_body(body: OptimizeBody, snap: Snapshot, settings: Settings) -> dict[str, Any]:
    q = body.query(settings)
    cands = (
        sites_of(body.candidates, body.crs, "candidates") if body.candidates is not None else None
    )
    area = exclusion_area(body.exclude_area, body.crs)
    res = optimize_sites(
        snap,
        q.layer,
        q.radius_m,
        body.p,
        cands,
        body.exclude,
        area,
        q.service,
        by=body.by.value,
        active_only=q.active_only,
    )
    out = change_body(res.result)
    out.update(
        {
            "p": res.p,
            "sites": [
                {
                    **site_json(r),
                    "candidate": str(r["candidate"]),
                    "gain_alone": round(float(r["gain_alone"]), 1),
                }
                for r in res.sites.to_dict("records")
            ],
            "estimated_gain": round(res.estimated_gain, 1),
            "estimate_difference": round(res.estimate_difference, 4),
            "note": res.note(),
            "candidates": res.candidates,
            "demand_points": res.demand_points,
            "spacing_m": round(res.spacing_m, 1),
            "solver": {"name": "spopt MCLP, PuLP CBC", "status": res.status},
        }
    )
    return out
