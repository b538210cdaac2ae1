"""随手拍 cases: what a resident reports, where it is routed, and each step of its handling.

Plain data shared by storage (which keeps cases and their history) and the rules above it
(``domain.cases``). A case's state is the fold of its events: storage writes the event and the
new state together, so the history shown on a case is exactly what happened to it.

Lifecycle (数字城管, CJ/T 315): 上报 reported → 立案 registered → 派遣 dispatched → 处置 handled →
核查 verified → 结案 closed; 退回 (wrong grid) reassigns with a reason and starts again at
立案, 延期 moves the deadline with the approval of the level above, and a deadline passed before
处置 escalates the case one level (grid → community → street → district).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from geo_service.core.errors import InputError, NotFoundError, quote
from geo_service.core.schema import Level
from geo_service.core.workcalendar import UNIT_TEXT, LimitUnit

CASE_ID = re.compile(r"^\d{8}-\d{6,}$")  # yyyymmdd-sequence, in Shanghai dates
LEVEL_ORDER = (Level.grid, Level.community, Level.street, Level.district)
LEVEL_TEXT = {
    Level.grid: "网格",
    Level.community: "社区",
    Level.street: "街道",
    Level.district: "区",
}


class CaseStatus(StrEnum):
    reported = "reported"
    registered = "registered"
    dispatched = "dispatched"
    handled = "handled"
    verified = "verified"
    closed = "closed"


STATUS_TEXT = {
    CaseStatus.reported: "上报",
    CaseStatus.registered: "立案",
    CaseStatus.dispatched: "派遣",
    CaseStatus.handled: "处置",
    CaseStatus.verified: "核查",
    CaseStatus.closed: "结案",
}
OPEN311_STATUS = {s: ("closed" if s is CaseStatus.closed else "open") for s in CaseStatus}
# Escalation watches cases whose problem is not yet dealt with.
AWAITING_HANDLING = frozenset({CaseStatus.reported, CaseStatus.registered, CaseStatus.dispatched})


class Action(StrEnum):
    file = "file"  # 上报 (the resident; routing happens here)
    register = "register"  # 立案
    dispatch = "dispatch"  # 派遣
    handle = "handle"  # 处置
    verify = "verify"  # 核查
    close = "close"  # 结案
    reject = "reject"  # 核查 not passed: back to 派遣
    return_ = "return"  # 退回: wrong grid, reassigned
    extend = "extend"  # 延期
    escalate = "escalate"  # deadline passed before 处置
    duplicate = "duplicate"  # another resident reports the same problem


ACTION_TEXT = {
    Action.file: "上报",
    Action.register: "立案",
    Action.dispatch: "派遣",
    Action.handle: "处置",
    Action.verify: "核查通过",
    Action.close: "结案",
    Action.reject: "核查未通过",
    Action.return_: "退回",
    Action.extend: "延期",
    Action.escalate: "超时升级",
    Action.duplicate: "追加反映",
}


class CaseError(InputError):
    """A case request the caller can fix (bad field, a step not allowed now)."""


class CaseConflict(CaseError):
    """The step does not fit the case's current state (409)."""

    status = 409


@dataclass(frozen=True)
class CaseService:
    """One category a resident can report (an Open311 service)."""

    code: str
    group: str
    name: str
    description: str
    limit_value: float
    limit_unit: LimitUnit
    level: Level
    keywords: tuple[str, ...] = ()

    @property
    def limit_text(self) -> str:
        value = f"{self.limit_value:g}"
        return f"{value} {UNIT_TEXT[self.limit_unit]}"

    def open311(self) -> dict[str, Any]:
        return {
            "service_code": self.code,
            "service_name": self.name,
            "description": self.description,
            "metadata": False,
            "type": "realtime",
            "keywords": ",".join(self.keywords),
            "group": self.group,
            "limit": {"value": self.limit_value, "unit": self.limit_unit.value},
            "limit_text": self.limit_text,
            "level": self.level.value,
        }


@dataclass(frozen=True)
class ServiceCatalogue:
    services: tuple[CaseService, ...]

    def get(self, code: str) -> CaseService:
        for s in self.services:
            if s.code == code:
                return s
        raise NotFoundError(f"unknown service_code {quote(code)}", field="service_code")

    def __contains__(self, code: object) -> bool:
        return any(s.code == code for s in self.services)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ServiceCatalogue:
        out: list[CaseService] = []
        for i, d in enumerate(doc.get("services") or []):
            try:
                limit = d["limit"]
                svc = CaseService(
                    code=str(d["code"]),
                    group=str(d["group"]),
                    name=str(d["name"]),
                    description=str(d.get("description") or d["name"]),
                    limit_value=float(limit["value"]),
                    limit_unit=LimitUnit(limit["unit"]),
                    level=Level(d.get("level") or "grid"),
                    keywords=tuple(str(k) for k in d.get("keywords") or ()),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"case service #{i + 1} is malformed: {exc}") from exc
            if svc.limit_value <= 0 or svc.level is Level.district:
                raise ValueError(
                    f"case service {svc.code}: limit must be > 0, level below district"
                )
            out.append(svc)
        codes = [s.code for s in out]
        if len(set(codes)) != len(codes) or not codes:
            raise ValueError("case services need at least one service and unique codes")
        return cls(tuple(out))

    @classmethod
    def load(cls, path: Path) -> ServiceCatalogue:
        return cls.from_dict(orjson.loads(Path(path).read_bytes()))


def utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class CaseEvent:
    """One step in a case's history (also written to the audit log)."""

    at: str  # UTC ISO 8601
    action: Action
    actor: str
    role: str
    status: CaseStatus  # after the step
    level: Level
    grid_code: str | None
    unit_code: str  # the unit responsible after the step (grid/community/street/district code)
    deadline: str | None
    key_id: str | None = None
    reason: str | None = None
    photo: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"], d["status"], d["level"] = (
            self.action.value,
            self.status.value,
            self.level.value,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseEvent:
        return cls(
            at=d["at"],
            action=Action(d["action"]),
            actor=d["actor"],
            role=d["role"],
            status=CaseStatus(d["status"]),
            level=Level(d["level"]),
            grid_code=d.get("grid_code"),
            unit_code=d["unit_code"],
            deadline=d.get("deadline"),
            key_id=d.get("key_id"),
            reason=d.get("reason"),
            photo=d.get("photo"),
        )


@dataclass(frozen=True)
class Case:
    """A report and where its handling stands. ``phone`` is never shown publicly."""

    id: str
    service_code: str
    description: str
    lon: float  # WGS84
    lat: float
    crs: str  # the system the reporter's point came in
    status: CaseStatus
    level: Level
    grid_code: str | None  # None: outside every grid (district intake)
    unit_code: str  # responsible unit at ``level``
    community_code: str | None
    street_code: str | None
    district_code: str | None
    officer: str | None
    deadline: str | None  # UTC ISO; None once handled
    requested: str  # UTC ISO
    updated: str
    version: int = 1
    address: str | None = None
    phone: str | None = None
    photo: str | None = None  # media name (storage.media)
    idempotency_key: str | None = None
    escalations: int = 0
    reporters: int = 1
    history: tuple[CaseEvent, ...] = field(default=())

    @property
    def open(self) -> bool:
        return self.status is not CaseStatus.closed

    def overdue(self, now: datetime) -> bool:
        return (
            self.status in AWAITING_HANDLING
            and self.deadline is not None
            and parse_time(self.deadline) < now
        )

    def after(self, event: CaseEvent, **changes: Any) -> Case:
        """This case with ``event`` applied: its status, level, unit and deadline."""
        return replace(
            self,
            status=event.status,
            level=event.level,
            grid_code=event.grid_code,
            unit_code=event.unit_code,
            deadline=event.deadline,
            updated=event.at,
            version=self.version + 1,
            history=(*self.history, event),
            **changes,
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything, for storage."""
        d = asdict(self)
        d["status"], d["level"] = self.status.value, self.level.value
        d["history"] = [e.to_dict() for e in self.history]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        return cls(
            id=d["id"],
            service_code=d["service_code"],
            description=d["description"],
            lon=float(d["lon"]),
            lat=float(d["lat"]),
            crs=d.get("crs") or "wgs84",
            status=CaseStatus(d["status"]),
            level=Level(d["level"]),
            grid_code=d.get("grid_code"),
            unit_code=d["unit_code"],
            community_code=d.get("community_code"),
            street_code=d.get("street_code"),
            district_code=d.get("district_code"),
            officer=d.get("officer"),
            deadline=d.get("deadline"),
            requested=d["requested"],
            updated=d["updated"],
            version=int(d.get("version") or 1),
            address=d.get("address"),
            phone=d.get("phone"),
            photo=d.get("photo"),
            idempotency_key=d.get("idempotency_key"),
            escalations=int(d.get("escalations") or 0),
            reporters=int(d.get("reporters") or 1),
            history=tuple(CaseEvent.from_dict(e) for e in d.get("history") or ()),
        )


def level_above(level: Level) -> Level | None:
    i = LEVEL_ORDER.index(level)
    return LEVEL_ORDER[i + 1] if i + 1 < len(LEVEL_ORDER) else None


def unit_at(case: Case, level: Level) -> str | None:
    """The code of the case's unit at ``level`` (as the grid's record named it at filing)."""
    return {
        Level.grid: case.grid_code,
        Level.community: case.community_code,
        Level.street: case.street_code,
        Level.district: case.district_code,
    }[level]
