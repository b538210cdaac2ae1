"""How a case is shown: the Open311 service request (public), and the officers' full view.

Public views never carry the reporter's phone number or the key ids in the history. Times are
shown in Beijing time with their offset (Open311 asks for timezone-aware ISO 8601).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geo_service.core.cases import (
    ACTION_TEXT,
    LEVEL_TEXT,
    OPEN311_STATUS,
    STATUS_TEXT,
    Case,
    ServiceCatalogue,
    parse_time,
)
from geo_service.core.workcalendar import SHANGHAI


def local_iso(value: str | None) -> str | None:
    if value is None:
        return None
    return parse_time(value).astimezone(SHANGHAI).isoformat(timespec="seconds")


def service_request(
    case: Case, services: ServiceCatalogue, base_url: str, now: datetime
) -> dict[str, Any]:
    """The Open311 GeoReport v2 service request, with this service's extensions."""
    try:
        service = services.get(case.service_code)
        name = service.name
    except Exception:  # a category removed from the list later still shows its code
        name = case.service_code
    unit = f"{LEVEL_TEXT[case.level]} {case.unit_code}"
    return {
        "service_request_id": case.id,
        "status": OPEN311_STATUS[case.status],
        "status_notes": STATUS_TEXT[case.status],
        "service_name": name,
        "service_code": case.service_code,
        "description": case.description,
        "agency_responsible": unit,
        "service_notice": None,
        "requested_datetime": local_iso(case.requested),
        "updated_datetime": local_iso(case.updated),
        "expected_datetime": local_iso(case.deadline),
        "address": case.address,
        "address_id": None,
        "zipcode": None,
        "lat": case.lat,
        "long": case.lon,
        "media_url": f"{base_url}/media/{case.photo}" if case.photo else None,
        # extensions
        "stage": case.status.value,
        "status_text": STATUS_TEXT[case.status],
        "grid_code": case.grid_code,
        "community_code": case.community_code,
        "street_code": case.street_code,
        "district_code": case.district_code,
        "officer": case.officer,
        "level": case.level.value,
        "level_text": LEVEL_TEXT[case.level],
        "unit_code": case.unit_code,
        "deadline": local_iso(case.deadline),
        "overdue": case.overdue(now),
        "escalations": case.escalations,
        "reporters": case.reporters,
        "history": [
            {
                "at": local_iso(e.at),
                "action": e.action.value,
                "action_text": ACTION_TEXT[e.action],
                "status": e.status.value,
                "status_text": STATUS_TEXT[e.status],
                "level": e.level.value,
                "level_text": LEVEL_TEXT[e.level],
                "unit_code": e.unit_code,
                "grid_code": e.grid_code,
                "deadline": local_iso(e.deadline),
                "actor": e.actor if e.role != "public" else "市民",
                "reason": e.reason,
            }
            for e in case.history
        ],
    }


def officer_view(
    case: Case, services: ServiceCatalogue, base_url: str, now: datetime
) -> dict[str, Any]:
    """The public request plus what the responsible officers need: the reporter's phone."""
    return {**service_request(case, services, base_url, now), "phone": case.phone}
