"""API keys for tests: made once per session (scrypt is deliberately not free), stored per backend."""

from __future__ import annotations

from collections.abc import Iterable

from geo_service.core.principal import ApiKeyRecord, Role
from geo_service.domain.auth import new_key
from geo_service.storage.base import Backend

_MADE: dict[tuple[str, Role, tuple[str, ...], str | None], tuple[str, ApiKeyRecord]] = {}


def key_for(
    backend: Backend,
    name: str,
    role: Role,
    grids: Iterable[str] = (),
    officer: str | None = None,
) -> str:
    """The secret of a key stored in ``backend`` (the same secret every time in a session)."""
    spec = (name, role, tuple(sorted(grids)), officer)
    if spec not in _MADE:
        _MADE[spec] = new_key(name, role, spec[2], officer)
    secret, record = _MADE[spec]
    backend.put_key(record)
    return secret
