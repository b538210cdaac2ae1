"""Response shapes of the case endpoints (Open311 GeoReport v2 and the officers' API), for the
OpenAPI document and the conformance test; ``domain.caseview`` builds the answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel


class Limit(BaseModel):
    value: float
    unit: Literal["working_hours", "working_days", "hours"]


class Open311Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str
    limit: Limit = Field(description="处置时限 (extension)")
    limit_text: str
    level: Literal["grid", "community", "street"] = Field(
        description="Who handles it first (extension)"
    )


class Open311ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[dict[str, Any]]


class Open311Ack(BaseModel):
    service_request_id: str
    service_notice: str | None
    account_id: str | None
    grid_code: str | None = Field(description="The grid it was routed to (extension)")
    officer: str | None
    level: Literal["grid", "community", "street", "district"]
    deadline: str | None = Field(description="处置时限 ends, ISO 8601 with offset")


class HistoryEvent(BaseModel):
    at: str | None
    action: str
    action_text: str
    status: str
    status_text: str
    level: str
    level_text: str
    unit_code: str
    grid_code: str | None
    deadline: str | None
    actor: str
    reason: str | None


class Open311Request(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str | None
    updated_datetime: str | None
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None
    stage: str
    status_text: str
    grid_code: str | None
    community_code: str | None
    street_code: str | None
    district_code: str | None
    officer: str | None
    level: Literal["grid", "community", "street", "district"]
    level_text: str
    unit_code: str
    deadline: str | None
    overdue: bool
    escalations: int
    reporters: int
    history: list[HistoryEvent]


class OfficerCase(Open311Request):
    phone: str | None = Field(description="The reporter's phone: only for the responsible keys")


class NearbyCase(BaseModel):
    service_request_id: str
    service_code: str
    service_name: str
    description: str
    status_text: str
    lat: float
    long: float
    requested_datetime: str | None
    distance_m: float


class Nearby(BaseModel):
    radius_m: float
    cases: list[NearbyCase]


class Queue(BaseModel):
    numberMatched: int
    numberReturned: int
    cases: list[OfficerCase]


class Open311Services(RootModel[list[Open311Service]]):
    """services.json: an array, as the specification defines it."""


class Open311Acks(RootModel[list[Open311Ack]]):
    """The answer to a filed report: an array of one."""


class Open311Requests(RootModel[list[Open311Request]]):
    """requests.json and requests/{id}.json: arrays."""
