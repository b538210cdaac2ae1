"""Officers: one search over grids, communities, streets, stalls and vendor clusters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from geo_service.analysis.search import MAX_QUERY, SearchResult, search
from geo_service.web.deps import HeavyDep, SnapshotDep
from geo_service.web.models import SearchResponse
from geo_service.web.responses import JSONResponse

router = APIRouter(prefix="/api/v1/search", tags=["grids (officers)"])
MAX_LIMIT = 50


def link(hit: SearchResult) -> str:
    """A page for the hit: a grid's map, a stall's page; the grid map of a vendor cluster's
    grid; what lies in a community or street."""
    if hit.kind == "grid":
        return f"/maps/grids/{hit.code}"
    if hit.kind == "stall":
        return f"/s/{hit.code}"
    if hit.kind == "vendor_cluster":
        if hit.grid_code:
            return f"/maps/grids/{hit.grid_code}"
        return f"/api/v1/vendor-clusters/{hit.code}"
    return f"/api/v1/units/{hit.code}/contents"


@router.get("", response_model=SearchResponse, summary="Find a grid, unit, stall or cluster")
async def search_all(
    snap: SnapshotDep,
    heavy: HeavyDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY,
            description="A code (or its beginning), part of a Chinese name, its pinyin "
            "(bailangxincun) or pinyin initials (blxc)",
            examples=["白浪新村社区", "鸿福北", "blxc", "370705001"],
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most results to return")] = 10,
) -> JSONResponse:
    """Ranked: exact code, code prefix, name prefix, name substring, full pinyin, pinyin
    initials; within a rank streets, communities, grids, stalls, vendor clusters. ``lon`` /
    ``lat`` are a stall's or cluster's point, or a point inside a grid or unit (WGS84)."""
    hits, total = await heavy.run(search, snap, q, limit)
    results: list[dict[str, Any]] = [
        {
            "kind": h.kind,
            "code": h.code,
            "name": h.name,
            "match": h.match,
            "lon": h.lon,
            "lat": h.lat,
            "link": link(h),
        }
        for h in hits
    ]
    return JSONResponse({"query": q, "total": total, "results": results})
