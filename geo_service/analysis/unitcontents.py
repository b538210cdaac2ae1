"""What lies in a grid, community or street, for the officers responsible for it: the stalls and
vendor clusters whose point lies in one of its grids, and its open 随手拍 cases.

A facility belongs to the unit of the grid containing its point (``PointLayer.grid_index``,
found spatially), not to codes written on its record. Cases come from the case store's own unit
listing (``CaseQuery.units``, the same as ``GET /api/v1/cases?unit=``): open ones, overdue first
and then by deadline, at most ``CASES_LIMIT`` listed, with public fields only; the counts cover
every open case of the unit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from geo_service.analysis.facilities import destination
from geo_service.core.cases import STATUS_TEXT, Case, ServiceCatalogue
from geo_service.core.errors import InputError, NotFoundError, quote
from geo_service.core.schema import Status
from geo_service.core.snapshot import PointLayer, Snapshot
from geo_service.domain.caseview import local_iso
from geo_service.storage.cases import CaseQuery, CaseStore

# code length → (level, code column of the grids layer, name column)
LEVELS = {
    15: ("grid", "code", "name"),
    12: ("community", "community_code", "community_name"),
    9: ("street", "street_code", "street_name"),
}
CASES_LIMIT = 100  # cases listed at most (a street can hold thousands; the counts are exact)


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    level: str
    grids: npt.NDArray[np.bool_]  # which of the snapshot's grids lie in the unit


def find_unit(snap: Snapshot, code: str) -> Unit:
    """The grid (15 digits), community (12) or street (9) ``code`` of ``snap``."""
    if not code.isdigit() or len(code) not in LEVELS:
        raise InputError(
            f"a unit code is 15 (grid), 12 (community) or 9 (street) digits, got {quote(code)}",
            "code",
        )
    level, code_col, name_col = LEVELS[len(code)]
    frame = snap.grids.frame
    grids = frame[code_col].to_numpy() == code
    if not grids.any():
        raise NotFoundError(f"unknown {level} code {quote(code)}", "code")
    name = str(frame[name_col].to_numpy()[np.argmax(grids)])
    return Unit(code, name, level, grids)


def facilities_in(layer: PointLayer, unit: Unit, grid_codes: Any) -> list[dict[str, Any]]:
    """The facilities standing in the unit, in code order; a relocated one says where it went
    (``moved_to``: null when the relocation does not record it)."""
    gi = layer.grid_index
    rows = np.flatnonzero((gi >= 0) & unit.grids[np.maximum(gi, 0)])
    out = []
    for i in rows:
        rec = layer.records[int(i)]
        relocated = rec["status"] == Status.relocated.value
        out.append(
            {
                "code": rec["code"],
                "name": rec["name"],
                "status": rec["status"],
                "relocated": relocated,
                "moved_to": destination(layer, int(i)) if relocated else None,
                "address": rec.get("address"),
                "grid_code": grid_codes[gi[i]],
                "lon": rec["lon"],
                "lat": rec["lat"],
            }
        )
    return out


def contents(snap: Snapshot, code: str) -> dict[str, Any]:
    """The unit (code, name, level), how many grids it holds, its stalls and vendor clusters."""
    unit = find_unit(snap, code)
    codes = snap.grids.codes
    return {
        "unit": {"code": unit.code, "name": unit.name, "level": unit.level},
        "grids": int(unit.grids.sum()),
        "stalls": facilities_in(snap.stalls, unit, codes),
        "vendor_clusters": facilities_in(snap.vendor_clusters, unit, codes),
    }


def _overdue_count(
    store: CaseStore, q: CaseQuery, page: list[Case], total: int, now: datetime
) -> int:
    """How many of the cases ``q`` matches are overdue. In deadline order the overdue ones come
    first (only cases awaiting handling have a deadline), so when the listed page is overdue to
    its end the boundary is found by bisection, one case per look-up."""
    n = sum(c.overdue(now) for c in page)
    if n < len(page) or len(page) >= total:
        return n
    lo, hi = len(page), total  # every case before ``lo`` is overdue; none from ``hi`` on
    while lo < hi:
        mid = (lo + hi) // 2
        one, _ = store.query(replace(q, limit=1, offset=mid))
        if one and one[0].overdue(now):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _category(services: ServiceCatalogue, code: str) -> str:
    return services.get(code).name if code in services else code  # a category removed since


def open_cases(
    store: CaseStore,
    services: ServiceCatalogue,
    code: str,
    now: datetime,
    limit: int | None = None,
) -> dict[str, Any]:
    """The unit's open cases: how many, how many overdue at ``now``, and the first ``limit``
    (``CASES_LIMIT``) overdue first then by deadline, public fields only (never the description,
    the reporter or the photo)."""
    q = CaseQuery(units=(code,), open_only=True, by_deadline=True, limit=limit or CASES_LIMIT)
    cases, total = store.query(q)
    items = [
        {
            "id": c.id,
            "service_code": c.service_code,
            "category": _category(services, c.service_code),
            "status": c.status.value,
            "status_text": STATUS_TEXT[c.status],
            "deadline": local_iso(c.deadline),
            "overdue": c.overdue(now),
            "lon": c.lon,
            "lat": c.lat,
        }
        for c in cases
    ]
    return {
        "open": int(total),
        "overdue": _overdue_count(store, q, cases, int(total), now),
        "limit": q.limit,
        "truncated": int(total) > len(items),
        "items": items,
    }
