"""Who acts: roles, the principal behind a request, and what is stored about an API key.

Plain data shared by storage (audit entries, key records) and the rules above it (``domain.auth``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    public = "public"
    officer = "officer"  # a grid officer (网格员): grids listed, or by officer name
    community = "community"  # a community's officer: ``grids`` holds community codes
    street = "street"  # a street office: ``grids`` holds street codes
    admin = "admin"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the backend stores about a key: never the secret, only its salted hash."""

    key_id: str
    name: str
    role: Role
    salt: str  # hex
    hash: str  # hex scrypt(secret, salt)
    grids: tuple[str, ...] = ()
    officer: str | None = None
    created: str = field(default_factory=now_iso)
    revoked: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["role"] = self.role.value
        d["grids"] = list(self.grids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ApiKeyRecord:
        return cls(
            key_id=d["key_id"],
            name=d["name"],
            role=Role(d["role"]),
            salt=d["salt"],
            hash=d["hash"],
            grids=tuple(d.get("grids") or ()),
            officer=d.get("officer"),
            created=str(d.get("created") or now_iso()),
            revoked=None if d.get("revoked") is None else str(d["revoked"]),
        )

    def public(self) -> dict[str, Any]:
        """The record without salt and hash, for listings."""
        d = self.to_dict()
        del d["salt"], d["hash"]
        return d


@dataclass(frozen=True)
class Principal:
    """Who is asking: the role, a name for the audit log, and the grids an officer holds."""

    role: Role
    name: str = "public"
    key_id: str | None = None
    grids: frozenset[str] = frozenset()

    def is_admin(self) -> bool:
        return self.role is Role.admin


PUBLIC = Principal(Role.public)
