"""The audit log: every change, who made it, when, and the feature before and after.

Entries are written by the backend in the same transaction (PostGIS) or journalled write
(files) as the change itself, so a change without its entry cannot exist.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson

from geo_service.core.principal import Principal, now_iso
from geo_service.storage.records import Record

ACTIONS = ("create", "update", "retire", "replace", "remove")
COLUMNS = (  # stored, exported and listed in this order
    "id",
    "at",
    "actor",
    "key_id",
    "role",
    "action",
    "layer",
    "code",
    "version_before",
    "version_after",
    "changed",
    "before",
    "after",
    "detail",
)


@dataclass(frozen=True)
class AuditEntry:
    at: str
    actor: str
    role: str
    action: str
    layer: str
    code: str | None
    key_id: str | None = None
    version_before: int | None = None
    version_after: int | None = None
    changed: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None
    id: int | None = None  # assigned by the backend, increasing

    def to_dict(self) -> dict[str, Any]:
        """Shallow (``dataclasses.asdict`` deep-copies every geometry: far too slow here)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["changed"] = list(self.changed)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(**{**d, "changed": tuple(d.get("changed") or ())})


def entry_for(
    who: Principal,
    action: str,
    before: Record | None,
    after: Record | None,
    detail: dict[str, Any] | None = None,
    at: str | None = None,
) -> AuditEntry:
    rec = after or before
    assert rec is not None
    return AuditEntry(
        at=at or now_iso(),
        actor=who.name,
        key_id=who.key_id,
        role=who.role.value,
        action=action,
        layer=rec.layer.value,
        code=rec.code,
        version_before=before.version if before else None,
        version_after=after.version if after else None,
        changed=tuple(after.changed_fields(before) if after else ()),
        before=before.feature() if before else None,
        after=after.feature() if after else None,
        detail=detail,
    )


def layer_entry(who: Principal, layer: str, detail: dict[str, Any], at: str) -> AuditEntry:
    """The summary entry of a whole-layer replacement (each feature also gets its own)."""
    return AuditEntry(
        at=at,
        actor=who.name,
        key_id=who.key_id,
        role=who.role.value,
        action="replace",
        layer=layer,
        code=None,
        detail=detail,
    )


def replace_entries(
    who: Principal,
    layer: str,
    changes: Iterable[tuple[Record | None, Record | None]],
    detail: dict[str, Any],
) -> list[AuditEntry]:
    at = now_iso()
    out = [layer_entry(who, layer, detail, at)]
    for before, after in changes:
        action = "create" if before is None else "remove" if after is None else "update"
        out.append(entry_for(who, action, before, after, {"via": "replace"}, at))
    return out


@dataclass(frozen=True)
class AuditQuery:
    layer: str | None = None
    code: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 100
    offset: int = 0
    newest_first: bool = True

    def matches(self, e: AuditEntry) -> bool:
        if self.layer and e.layer != self.layer:
            return False
        if self.code and e.code != self.code:
            return False
        if self.actor and e.actor != self.actor:
            return False
        if self.action and e.action != self.action:
            return False
        at = datetime.fromisoformat(e.at)
        if self.since and at < self.since:
            return False
        return not (self.until and at >= self.until)

    def page(self, entries: Sequence[AuditEntry]) -> tuple[list[AuditEntry], int]:
        """Filter, order and page entries held in memory (the files backend)."""
        hits = [e for e in entries if self.matches(e)]
        hits.sort(key=lambda e: e.id or 0, reverse=self.newest_first)
        end = None if self.limit is None else self.offset + self.limit
        return hits[self.offset : end], len(hits)


def to_jsonl(entries: Iterable[AuditEntry]) -> bytes:
    """One JSON object per line (orjson serialises the dataclass itself)."""
    return b"".join(orjson.dumps(e) + b"\n" for e in entries)


def to_csv(entries: Iterable[AuditEntry]) -> str:
    """One row per entry; before/after/detail as JSON text (a spreadsheet can still filter)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for e in entries:
        d = e.to_dict()
        row = []
        for col in COLUMNS:
            v = d[col]
            if col == "changed":
                v = ";".join(v)
            elif col in ("before", "after", "detail"):
                v = "" if v is None else orjson.dumps(v).decode()
            row.append("" if v is None else v)
        w.writerow(row)
    return buf.getvalue()
