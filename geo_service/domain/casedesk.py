"""The case desk: filing, handling and escalating cases, independent of the web framework.

The HTTP routers (Open311 and the officers' API), the CLI and the escalation timer all call
this one object, which holds the store, the service catalogue, the current snapshot and a
clock (injectable, so tests move time). Webhook notices go out after the store has committed.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from geo_service.core.cases import (
    Action,
    Case,
    CaseError,
    ServiceCatalogue,
)
from geo_service.core.crs import geodesic_distance_m
from geo_service.core.errors import NotFoundError
from geo_service.core.principal import PUBLIC, Principal, Role
from geo_service.core.snapshot import Snapshot
from geo_service.domain import cases as rules
from geo_service.domain.webhook import WebhookSender
from geo_service.storage.cases import CaseQuery, CaseStore, Filed
from geo_service.storage.media import MediaStore, clean_photo

log = logging.getLogger(__name__)

SYSTEM = Principal(Role.admin, "system:escalation")
Clock = Callable[[], datetime]
Notify = Callable[[str, dict[str, object]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class CaseDesk:
    store: CaseStore
    services: ServiceCatalogue
    snapshot: Callable[[], Snapshot]
    snap_m: float = 200.0
    duplicate_m: float = 50.0
    clock: Clock = utc_now
    notify: Notify | None = None
    webhook: WebhookSender | None = None
    media: MediaStore | None = None
    max_photo_bytes: int = 8 * 1024 * 1024

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close(timeout=5.0)

    # -- residents ---------------------------------------------------------------------------
    def file(
        self, report: rules.Report, who: Principal = PUBLIC, photo: bytes | None = None
    ) -> Filed:
        """Check the report, then clean and store its photo (so bad input leaves nothing
        behind), then store the case."""
        if not (np.isfinite(report.lon) and np.isfinite(report.lat)):
            raise CaseError("the location is not a number", field="lat")
        service = rules.check_report(report, self.services)
        if photo:
            if self.media is None:
                raise CaseError("this service stores no photos", field="media")
            cleaned = clean_photo(photo, self.max_photo_bytes, field="media")
            report = replace(report, photo=self.media.put(cleaned))
        now = self.clock()
        route = rules.route(self.snapshot(), report.lon, report.lat, self.snap_m)
        filed = self.store.file(
            rules.case_maker(report, service, route, now, who), report.idempotency_key, who
        )
        if filed.created:
            self._notify("case.assigned", filed.case)
        return filed

    def get(self, case_id: str) -> Case:
        case = self.store.get(case_id)
        if case is None:
            raise NotFoundError(f"no case {case_id}", field="service_request_id")
        return case

    def nearby(self, lon: float, lat: float, service_code: str | None) -> list[tuple[Case, float]]:
        """Open cases (of this category) within ``duplicate_m``: to join, not to duplicate."""
        codes = (service_code,) if service_code else ()
        # A box a little wider than the radius lets the store (GiST on PostGIS) drop the rest;
        # the geodesic distance below decides.
        dlat = self.duplicate_m / 110_000.0
        dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
        box = (lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        q = CaseQuery(service_codes=codes, open_only=True, bbox=box, limit=10**6)
        cases, _ = self.store.query(q)
        if not cases:
            return []
        d = geodesic_distance_m(
            lon, lat, np.array([c.lon for c in cases]), np.array([c.lat for c in cases])
        )
        near = np.flatnonzero(d <= self.duplicate_m)
        order = near[np.argsort(d[near], kind="stable")]
        return [(cases[i], float(d[i])) for i in order]

    def join(self, case_id: str, who: Principal = PUBLIC) -> Case:
        return self.store.update(case_id, lambda c: rules.join(c, self.clock(), who), who)

    # -- officers ----------------------------------------------------------------------------
    def act(
        self,
        case_id: str,
        action: Action,
        who: Principal,
        reason: str | None = None,
        grid_code: str | None = None,
        until: datetime | None = None,
    ) -> Case:
        def mutate(c: Case) -> Case:
            now = self.clock()
            if action is Action.extend:
                if until is None:
                    raise CaseError("an extension needs until (the new deadline)", field="until")
                return rules.extend(c, who, now, until, reason)
            if action is Action.return_:
                if not grid_code:
                    raise CaseError("sending a case back needs grid_code", field="grid_code")
                snap = self.snapshot()
                return rules.reassign(c, who, now, snap, grid_code, reason, self.services)
            return rules.step(c, action, who, now, reason)

        case = self.store.update(case_id, mutate, who)
        if action is Action.return_:
            self._notify("case.assigned", case)
        return case

    def queue(self, who: Principal, limit: int = 200, offset: int = 0) -> tuple[list[Case], int]:
        """The open cases ``who`` is responsible for now: overdue first, then by deadline."""
        units = () if who.is_admin() else tuple(sorted(who.grids))
        if not who.is_admin() and not units:
            return [], 0
        q = CaseQuery(units=units, open_only=True, by_deadline=True, limit=100_000)
        cases, _ = self.store.query(q)
        mine = [c for c in cases if rules.may_act(who, c)]
        return mine[offset : offset + limit], len(mine)

    # -- time --------------------------------------------------------------------------------
    def escalate_due(self) -> list[Case]:
        """Escalate every case past its deadline (repeatedly, when a stopped service catches
        up); each step is a compare-and-set in the store, so instances never double it."""
        now = self.clock()
        out: list[Case] = []
        for case_id in self.store.due(now):
            for _ in range(len(rules.LEVEL_ORDER)):
                after = self._escalate_once(case_id, now)
                if after is None:
                    break
                out.append(after)
                self._notify("case.escalated", after)
        return out

    def _escalate_once(self, case_id: str, now: datetime) -> Case | None:
        """One level up if due, else None; the check runs under the store's lock on the stored
        case, so of several instances escalating at once only one changes it (and notifies)."""
        applied = False

        def escalate(c: Case) -> Case | None:
            nonlocal applied
            new = rules.escalation(c, now, self.services, SYSTEM)
            applied = new is not None
            return new

        after = self.store.update(case_id, escalate, SYSTEM)
        return after if applied else None

    def _notify(self, event: str, case: Case) -> None:
        if self.notify is None:
            return
        try:
            self.notify(event, notice(case))
        except Exception:  # a notice never fails a filing
            log.exception("could not queue the %s notice of case %s", event, case.id)


def notice(case: Case) -> dict[str, object]:
    """What a webhook receives: the public case and who must act now (no reporter phone)."""
    last = case.history[-1]
    return {
        "id": case.id,
        "service_code": case.service_code,
        "status": case.status.value,
        "level": case.level.value,
        "unit_code": case.unit_code,
        "grid_code": case.grid_code,
        "officer": case.officer,
        "deadline": case.deadline,
        "lon": case.lon,
        "lat": case.lat,
        "description": case.description,
        "event": last.to_dict(),
    }


class Escalator:
    """Runs ``desk.escalate_due`` every ``every_s`` seconds in a daemon thread."""

    def __init__(self, desk: CaseDesk, every_s: float) -> None:
        self.desk = desk
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="geo-case-escalation", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.desk.escalate_due()
            except Exception:  # the next tick retries
                log.exception("escalating overdue cases failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
