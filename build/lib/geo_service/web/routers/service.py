"""Liveness, readiness and what dataset is loaded."""

from __future__ import annotations

from fastapi import APIRouter, Request

from geo_service.core.schema import SCHEMAS
from geo_service.web.deps import SnapshotDep, get_store
from geo_service.web.models import Health, Meta
from geo_service.web.responses import JSONResponse

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Health,
    summary="Data is loaded and indexed",
    responses={503: {"model": Health}},
)
async def readyz(request: Request) -> JSONResponse:
    store = get_store(request)
    if not store.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/api/v1/meta", response_model=Meta, summary="Dataset name, version, counts, CRS")
async def meta(request: Request, snap: SnapshotDep) -> JSONResponse:
    layers = {
        "grids": {"features": len(snap.grids), "title": SCHEMAS["grids"].title},  # type: ignore[index]
        "stalls": {"features": len(snap.stalls), "title": SCHEMAS["stalls"].title},  # type: ignore[index]
        "vendor_clusters": {
            "features": len(snap.vendor_clusters),
            "title": SCHEMAS["vendor_clusters"].title,  # type: ignore[index]
        },
    }
    frame = snap.grids.frame
    units = {
        "communities": int(frame["community_code"].nunique()),
        "streets": int(frame["street_code"].nunique()),
        "districts": int(frame["district_code"].nunique()),
    }
    body = {
        "dataset": snap.name,
        "version": snap.version,
        "loaded_at": snap.created.isoformat(),
        "crs": {
            "storage": "EPSG:4326",
            "responses": "EPSG:4326 (WGS84), coordinates [lon, lat]",
            "metric": f"EPSG:{snap.projection.epsg}",
            "accepted_input": ["wgs84", "cgcs2000", "gcj02", "bd09"],
        },
        "bounds": list(snap.bounds),
        "layers": layers,
        "units": units,
        "load_problems": sum(len(r.problems) for r in snap.reports),
        "backend": request.app.state.backend_name,
    }
    return JSONResponse(body)
