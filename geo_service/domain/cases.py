"""The rules of a case: where a report goes, who may take each step, when it escalates.

Routing uses the grid index exactly as ``GET /grids/locate`` does (a point on a shared edge
belongs to the smallest code). A point outside every grid goes to the nearest grid within
``snap_m`` metres, else to the intake queue of the district of the nearest grid: never lost.

Who may act: a case sits at a level (grid, community, street, district) in one unit. A key
whose level is at least the case's and whose units contain the case's unit may take the steps
of handling; 延期 needs a key one level above the case; admins may do everything. Escalation
is a pure function of the stored case and the time, so any instance (or a restart catching up
later) computes the same step, and the store's compare-and-set applies it once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from geo_service.core.cases import (
    AWAITING_HANDLING,
    LEVEL_ORDER,
    LEVEL_TEXT,
    Action,
    Case,
    CaseConflict,
    CaseError,
    CaseEvent,
    CaseService,
    CaseStatus,
    ServiceCatalogue,
    level_above,
    parse_time,
    unit_at,
    utc_iso,
)
from geo_service.core.errors import quote
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import Level
from geo_service.core.snapshot import Snapshot
from geo_service.core.workcalendar import SHANGHAI, deadline
from geo_service.domain.auth import Forbidden

MAX_DESCRIPTION = 4000
MAX_REASON = 1000
MAX_ADDRESS = 200
ROLE_LEVEL = {
    Role.officer: Level.grid,
    Role.community: Level.community,
    Role.street: Level.street,
}

# The steps of handling: from which statuses, to which status.
STEPS: dict[Action, tuple[frozenset[CaseStatus], CaseStatus]] = {
    Action.register: (frozenset({CaseStatus.reported}), CaseStatus.registered),
    Action.dispatch: (frozenset({CaseStatus.registered}), CaseStatus.dispatched),
    Action.handle: (frozenset({CaseStatus.dispatched}), CaseStatus.handled),
    Action.verify: (frozenset({CaseStatus.handled}), CaseStatus.verified),
    Action.reject: (frozenset({CaseStatus.handled}), CaseStatus.dispatched),
    Action.close: (frozenset({CaseStatus.verified}), CaseStatus.closed),
}


@dataclass(frozen=True)
class Route:
    """Where a point's case goes."""

    level: Level
    grid: dict[str, object] | None  # the grid record (API GRID object), None for intake
    distance_m: float | None  # metres from the grid's edge when snapped from outside
    district_code: str | None

    @property
    def unit_code(self) -> str:
        if self.grid is not None:
            return str(self.grid["code"])
        return self.district_code or "intake"


def route(snap: Snapshot, lon: float, lat: float, snap_m: float) -> Route:
    grids = snap.grids
    i = grids.index.locate_point(lon, lat)
    if i >= 0:
        return Route(Level.grid, grids.properties[i], None, _code(grids.properties[i], "district"))
    if len(grids) == 0:
        return Route(Level.district, None, None, None)
    j, dist = grids.index.nearest_point(lon, lat)
    near = grids.properties[j]
    if dist <= snap_m:
        return Route(Level.grid, near, round(dist, 1), _code(near, "district"))
    return Route(Level.district, None, round(dist, 1), _code(near, "district"))


def _code(grid: dict[str, object], level: str) -> str | None:
    unit = grid.get(level)
    return None if not isinstance(unit, dict) else unit.get("code")


def _level_for(service: CaseService, r: Route) -> Level:
    if r.grid is None:
        return Level.district
    return max(service.level, r.level, key=LEVEL_ORDER.index)


@dataclass(frozen=True)
class Report:
    """What a resident sends, already in WGS84."""

    service_code: str
    description: str
    lon: float
    lat: float
    crs: str
    address: str | None = None
    phone: str | None = None
    photo: str | None = None
    idempotency_key: str | None = None


def check_report(report: Report, services: ServiceCatalogue) -> CaseService:
    service = services.get(report.service_code)
    text = report.description.strip()
    if not text:
        raise CaseError("describe the problem (description is empty)", field="description")
    if len(report.description) > MAX_DESCRIPTION:
        raise CaseError(
            f"description is {len(report.description):,} characters; at most {MAX_DESCRIPTION:,}",
            field="description",
        )
    if report.address is not None and len(report.address) > MAX_ADDRESS:
        raise CaseError(f"address is longer than {MAX_ADDRESS} characters", field="address_string")
    if report.phone is not None and not _phone_ok(report.phone):
        raise CaseError(
            f"phone {quote(report.phone)} is not a phone number (digits, +, -, spaces)",
            field="phone",
        )
    if "\x00" in report.description:
        raise CaseError("description contains a NUL character", field="description")
    return service


def _phone_ok(phone: str) -> bool:
    digits = [c for c in phone if c.isdigit()]
    return 5 <= len(digits) <= 20 and all(c.isdigit() or c in "+- ()" for c in phone)


def case_maker(
    report: Report,
    service: CaseService,
    r: Route,
    now: datetime,
    who: Principal,
) -> Callable[[str], Case]:
    """The new case for the id the store assigns (``yyyymmdd-sequence``, Shanghai date)."""
    level = _level_for(service, r)
    grid = r.grid or {}
    at = utc_iso(now)
    due = utc_iso(deadline(now, service.limit_value, service.limit_unit))
    officer = grid.get("officer")
    officer_name = officer.get("name") if isinstance(officer, dict) else None

    def make(seq: str) -> Case:
        base = Case(
            id=f"{now.astimezone(SHANGHAI):%Y%m%d}-{seq}",
            service_code=service.code,
            description=report.description.strip(),
            lon=report.lon,
            lat=report.lat,
            crs=report.crs,
            status=CaseStatus.reported,
            level=level,
            grid_code=None if r.grid is None else str(grid["code"]),
            unit_code="",
            community_code=_code(grid, "community"),
            street_code=_code(grid, "street"),
            district_code=r.district_code,
            officer=officer_name if level is Level.grid else None,
            deadline=due,
            requested=at,
            updated=at,
            version=0,
            address=report.address,
            phone=report.phone,
            photo=report.photo,
            idempotency_key=report.idempotency_key,
        )
        unit = unit_at(base, level) or r.unit_code
        reason = None
        if r.grid is not None and r.distance_m is not None:
            reason = f"点位在网格外 {r.distance_m:g} 米，就近派至该网格"
        elif r.grid is None:
            reason = "点位不在任何网格内，转区受理"
        event = _event(
            base,
            who,
            now,
            Action.file,
            CaseStatus.reported,
            level=level,
            unit_code=unit,
            reason=reason,
            photo=report.photo,
        )
        return base.after(event)

    return make


def principal_level(who: Principal) -> Level | None:
    return ROLE_LEVEL.get(who.role)


def may_act(who: Principal, case: Case, level_needed: Level | None = None) -> bool:
    """Whether ``who`` may take a step on ``case`` at ``level_needed`` (default: its level)."""
    if who.is_admin():
        return True
    mine = principal_level(who)
    need = level_needed or case.level
    if mine is None or LEVEL_ORDER.index(mine) < LEVEL_ORDER.index(need):
        return False
    unit = unit_at(case, mine) if case.grid_code is not None else case.district_code
    return unit is not None and unit in who.grids


def _check(who: Principal, case: Case, level_needed: Level | None = None) -> None:
    if not may_act(who, case, level_needed):
        need = level_needed or case.level
        raise Forbidden(
            f"case {case.id} is at {LEVEL_TEXT[case.level]} level in {case.unit_code}; "
            f"this step needs a key of the {LEVEL_TEXT[need]} responsible for it (or above)"
        )


def _event(
    case: Case, who: Principal, now: datetime, action: Action, status: CaseStatus, **changes: Any
) -> CaseEvent:
    """``who``'s step at ``now``: the case's level, grid, unit and deadline unless ``changes``
    (CaseEvent fields) say otherwise."""
    event = CaseEvent(
        at=utc_iso(now),
        action=action,
        actor=who.name,
        role=who.role.value,
        status=status,
        level=case.level,
        grid_code=case.grid_code,
        unit_code=case.unit_code,
        deadline=case.deadline,
        key_id=who.key_id,
    )
    return replace(event, **changes)


def _reason(reason: str | None, required: bool, what: str) -> str | None:
    text = (reason or "").strip()
    if required and not text:
        raise CaseError(f"{what} needs a reason", field="reason")
    if len(text) > MAX_REASON:
        raise CaseError(f"reason is longer than {MAX_REASON} characters", field="reason")
    return text or None


def step(
    case: Case,
    action: Action,
    who: Principal,
    now: datetime,
    reason: str | None = None,
    photo: str | None = None,
) -> Case:
    """One step of handling (立案, 派遣, 处置, 核查, 核查未通过, 结案)."""
    if action not in STEPS:
        raise CaseError(f"{action.value} is not a step of handling", field="action")
    allowed, to = STEPS[action]
    _check(who, case)
    if case.status not in allowed:
        raise CaseConflict(
            f"case {case.id} is {case.status.value}; {action.value} needs "
            + " or ".join(s.value for s in sorted(allowed)),
            field="action",
        )
    why = _reason(reason, action is Action.reject, action.value)
    due: str | None = case.deadline if to in AWAITING_HANDLING else None
    return case.after(_event(case, who, now, action, to, deadline=due, reason=why, photo=photo))


def extend(case: Case, who: Principal, now: datetime, until: datetime, reason: str | None) -> Case:
    """延期: a new deadline, approved by a key one level above the case (or an admin)."""
    above = level_above(case.level)
    if case.status not in AWAITING_HANDLING:
        raise CaseConflict(f"case {case.id} is {case.status.value}: no deadline to extend")
    _check(who, case, above or case.level)
    why = _reason(reason, True, "an extension")
    if until.tzinfo is None:
        raise CaseError("until needs a timezone (for example +08:00)", field="until")
    if case.deadline is not None and until <= parse_time(case.deadline):
        raise CaseError("an extension must move the deadline later", field="until")
    return case.after(
        _event(case, who, now, Action.extend, case.status, deadline=utc_iso(until), reason=why)
    )


def reassign(
    case: Case,
    who: Principal,
    now: datetime,
    snap: Snapshot,
    grid_code: str,
    reason: str | None,
    services: ServiceCatalogue,
) -> Case:
    """退回: the case is in the wrong grid; it goes to ``grid_code``, starting again at 立案."""
    if not case.open or case.status not in AWAITING_HANDLING:
        raise CaseConflict(f"case {case.id} is {case.status.value}: it can no longer be sent back")
    _check(who, case)
    why = _reason(reason, True, "sending a case back")
    pos = snap.grids.position.get(grid_code)
    if pos is None:
        raise CaseError(f"no grid {quote(grid_code)}", field="grid_code")
    if grid_code == case.grid_code:
        raise CaseError("the case is already in that grid", field="grid_code")
    grid = snap.grids.properties[pos]
    service = services.get(case.service_code)
    r = Route(Level.grid, grid, None, _code(grid, "district"))
    level = _level_for(service, r)
    moved = replace(
        case,
        grid_code=grid_code,
        community_code=_code(grid, "community"),
        street_code=_code(grid, "street"),
        district_code=_code(grid, "district"),
    )
    officer = grid.get("officer")
    due = utc_iso(deadline(now, service.limit_value, service.limit_unit))
    event = _event(
        moved,
        who,
        now,
        Action.return_,
        CaseStatus.reported,
        level=level,
        grid_code=grid_code,
        unit_code=unit_at(moved, level),
        deadline=due,
        reason=why,
    )
    return moved.after(
        event,
        officer=(officer.get("name") if isinstance(officer, dict) else None)
        if level is Level.grid
        else None,
    )


def escalation(
    case: Case, now: datetime, services: ServiceCatalogue, system: Principal
) -> Case | None:
    """The case one level up if its deadline passed before 处置, else None. The new deadline
    runs from the old one (not from ``now``), so a late catch-up gives the same timeline."""
    if not case.overdue(now) or case.deadline is None:
        return None
    up = level_above(case.level)
    if up is None:
        return None  # at the top: stays overdue, shown as such
    unit = unit_at(case, up)
    if unit is None:
        return None
    service = services.get(case.service_code)
    start = parse_time(case.deadline)
    due = utc_iso(deadline(start, service.limit_value, service.limit_unit))
    event = _event(
        case,
        system,
        start,
        Action.escalate,
        case.status,
        level=up,
        unit_code=unit,
        deadline=due,
        reason=f"超过处置时限，由{LEVEL_TEXT[case.level]}升级至{LEVEL_TEXT[up]}",
    )
    return case.after(event, officer=None, escalations=case.escalations + 1)


def join(case: Case, now: datetime, who: Principal) -> Case:
    """Another resident reports the same problem: counted on the open case."""
    if not case.open:
        raise CaseConflict(f"case {case.id} is closed")
    ev = _event(case, who, now, Action.duplicate, case.status)
    return case.after(ev, reporters=case.reporters + 1)
