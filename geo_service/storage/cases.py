"""Where cases live: the contract both backends keep, and the embedded files' implementation.

A case is acknowledged (its id returned) only after it is durably stored: the files backend
appends the whole new state of the case as one line of ``cases.jsonl`` and fsyncs it before
answering, so ``kill -9`` at any moment loses nothing acknowledged; a line a crash cut short
was never acknowledged and is dropped at the next write. Every step is one compare-and-set on
the case's version under the backend's lock, so two instances (or a restart catching up)
never apply the same escalation twice. Each step also writes an audit entry (layer ``cases``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson

from geo_service.core.cases import AWAITING_HANDLING, Case, CaseConflict, CaseEvent, CaseStatus
from geo_service.core.errors import NotFoundError
from geo_service.core.principal import Principal
from geo_service.storage.audit import AuditEntry

CASES_FILE = "cases.jsonl"
CASES_LOCK = ".geo_service.cases.lock"

# Gets the stored case and returns its next state, or None to change nothing. It runs while the
# store holds the case locked; it raises to refuse (and nothing is written).
CaseMutation = Callable[[Case], Case | None]
# Makes the new case from the id the store assigns.
CaseMaker = Callable[[str], Case]


@dataclass(frozen=True)
class CaseQuery:
    """Which cases: every filter is optional; ``units`` matches any of grid/community/street/
    district codes; results are ordered by ``requested`` (newest first) unless ``by_deadline``."""

    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    statuses: tuple[CaseStatus, ...] = ()
    open_only: bool = False
    units: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None  # WGS84 minlon, minlat, maxlon, maxlat
    by_deadline: bool = False
    limit: int = 1000
    offset: int = 0

    def matches(self, c: Case) -> bool:
        if self.ids and c.id not in self.ids:
            return False
        if self.service_codes and c.service_code not in self.service_codes:
            return False
        if self.statuses and c.status not in self.statuses:
            return False
        if self.open_only and not c.open:
            return False
        if self.units and not (
            {c.grid_code, c.community_code, c.street_code, c.district_code, c.unit_code}
            & set(self.units)
        ):
            return False
        if self.bbox is not None:
            x0, y0, x1, y1 = self.bbox
            if not (x0 <= c.lon <= x1 and y0 <= c.lat <= y1):
                return False
        at = datetime.fromisoformat(c.requested.replace("Z", "+00:00"))
        if self.start is not None and at < self.start:
            return False
        return not (self.end is not None and at > self.end)

    def order(self, cases: list[Case]) -> list[Case]:
        if self.by_deadline:  # overdue first, then nearest deadline; no deadline last
            return sorted(cases, key=lambda c: (c.deadline is None, c.deadline or "", c.id))
        return sorted(cases, key=lambda c: (c.requested, c.id), reverse=True)


@dataclass
class Filed:
    case: Case
    created: bool  # False: the idempotency key was seen before; ``case`` is the first one


class CaseStore(Protocol):
    def migrate(self) -> None:
        """Create whatever the store needs (tables); safe to repeat."""

    def file(self, make: CaseMaker, idempotency_key: str | None, who: Principal) -> Filed:
        """Store a new case (id assigned here) unless ``idempotency_key`` was used before."""

    def get(self, case_id: str) -> Case | None: ...

    def update(self, case_id: str, mutation: CaseMutation, who: Principal) -> Case:
        """Apply ``mutation`` to the stored case atomically (NotFoundError if none)."""

    def query(self, q: CaseQuery) -> tuple[list[Case], int]:
        """One page of the cases matching ``q`` and how many match in all."""

    def due(self, now: datetime) -> list[str]:
        """Ids of cases awaiting handling whose deadline has passed."""

    def revision(self) -> str:
        """Changes whenever any case does (cheap)."""


def audit_entry(before: Case | None, after: Case, who: Principal) -> AuditEntry:
    """The audit entry of one case step: the public state before and after, and the event."""
    event: CaseEvent = after.history[-1]
    return AuditEntry(
        at=event.at,
        actor=who.name,
        role=who.role.value,
        action=f"case.{event.action.value}",
        layer="cases",
        code=after.id,
        key_id=who.key_id,
        version_before=None if before is None else before.version,
        version_after=after.version,
        changed=tuple(
            k
            for k in ("status", "level", "unit_code", "grid_code", "officer", "deadline")
            if before is None or getattr(before, k) != getattr(after, k)
        ),
        before=None if before is None else public_state(before),
        after=public_state(after),
        detail={"event": event.to_dict()},
    )


def public_state(c: Case) -> dict[str, object]:
    """A case's state for the audit log, without the history (kept on the case itself)."""
    d = c.to_dict()
    del d["history"]
    return d


@dataclass
class _Index:
    """The files store's view of ``cases.jsonl``: the latest state of each case."""

    offset: int = 0
    ident: tuple[int, int] = (0, 0)
    cases: dict[str, Case] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> case id
    count: int = 0  # lines read: the next sequence number


class FilesCaseStore:
    """Cases in ``cases.jsonl`` beside the layer files (one line per stored state)."""

    def __init__(
        self, data_dir: Path, append_audit: Callable[[list[AuditEntry]], None] | None = None
    ) -> None:
        self.path = Path(data_dir) / CASES_FILE
        self.lock_path = Path(data_dir) / CASES_LOCK
        self._append_audit = append_audit
        self._thread_lock = threading.Lock()
        self._index = _Index()

    def migrate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # -- reading -----------------------------------------------------------------------------
    def _refresh(self) -> _Index:
        """Read what other processes appended since the last look (only the new bytes)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._index = _Index()
            return self._index
        idx = self._index
        if st.st_ino != idx.ident[0] or st.st_size < idx.offset:
            idx = self._index = _Index(ident=(st.st_ino, 0))
        if st.st_size == idx.offset:
            return idx
        with open(self.path, "rb") as fh:
            fh.seek(idx.offset)
            data = fh.read(st.st_size - idx.offset)
        end = data.rfind(b"\n") + 1  # a line still being written (or cut by a crash) waits
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            c = Case.from_dict(orjson.loads(line))
            if c.id not in idx.cases:
                idx.count += 1
            idx.cases[c.id] = c
            if c.idempotency_key:
                idx.keys.setdefault(c.idempotency_key, c.id)
        idx.offset += end
        idx.ident = (st.st_ino, idx.offset)
        return idx

    def get(self, case_id: str) -> Case | None:
        with self._thread_lock:
            return self._refresh().cases.get(case_id)

    def all(self) -> list[Case]:
        with self._thread_lock:
            return list(self._refresh().cases.values())

    def query(self, q: CaseQuery) -> tuple[list[Case], int]:
        hits = q.order([c for c in self.all() if q.matches(c)])
        return hits[q.offset : q.offset + q.limit], len(hits)

    def due(self, now: datetime) -> list[str]:
        return sorted(c.id for c in self.all() if c.status in AWAITING_HANDLING and c.overdue(now))

    def revision(self) -> str:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return "-"
        return f"{st.st_ino}.{st.st_size}"

    # -- writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Index]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.lock_path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                self._cut_partial_line()
                yield self._refresh()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _cut_partial_line(self) -> None:
        """A line a crash left half-written was never acknowledged: remove it."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with open(self.path, "r+b") as fh:
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return
            pos, buf = size, b""
            while pos > 0 and b"\n" not in buf:
                step = min(1 << 16, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
            cut = buf.rfind(b"\n") + 1
            fh.truncate(pos + cut)
            fh.flush()
            os.fsync(fh.fileno())

    def _append(self, idx: _Index, before: Case | None, case: Case, who: Principal) -> None:
        line = orjson.dumps(case.to_dict()) + b"\n"
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if self._append_audit is not None:
            self._append_audit([audit_entry(before, case, who)])
        self._refresh()

    def file(self, make: CaseMaker, idempotency_key: str | None, who: Principal) -> Filed:
        with self._locked() as idx:
            if idempotency_key and idempotency_key in idx.keys:
                return Filed(idx.cases[idx.keys[idempotency_key]], created=False)
            case = make(f"{idx.count + 1:06d}")
            if case.id in idx.cases:
                raise CaseConflict(f"case {case.id} exists already")
            self._append(idx, None, case, who)
            return Filed(case, created=True)

    def update(self, case_id: str, mutation: CaseMutation, who: Principal) -> Case:
        with self._locked() as idx:
            current = idx.cases.get(case_id)
            if current is None:
                raise NotFoundError(f"no case {case_id}", field="id")
            new = mutation(current)
            if new is None:
                return current
            if new.version != current.version + 1:
                raise CaseConflict("a case step must advance its version by one")
            self._append(idx, current, new, who)
            return new
