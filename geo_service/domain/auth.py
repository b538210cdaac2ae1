"""API keys and roles: who may change what.

The public reads without a key. An officer's key may change the status and hours of stalls and
vendor clusters (and where a relocated stall went) lying in that officer's own grids: either a
fixed list of grid codes, or every grid whose ``officer_name`` is the key's officer (so
reassigning a grid moves the right with it). An admin's key may do everything. Keys are stored
only as salted scrypt hashes; the secret is shown once, when the key is made.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import ClassVar

from geo_service.core.principal import ApiKeyRecord, Principal, Role, now_iso
from geo_service.core.schema import MOVED_TO_FIELDS, LayerName

KEY_PREFIX = "gsk"
# Secrets are 192 random bits, so no hash needs to be slow to resist guessing; a salted scrypt
# (4 MiB, some tens of ms) still makes a stolen key file useless for testing guesses in bulk.
# Verified keys are remembered by a SHA-256 of the secret, so a process pays scrypt once per key.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**12, 8, 1


# What an officer may change, per layer; admins may change everything, the public nothing.
# A stall's relocation is a status with a destination, so the destination goes with the status.
OFFICER_FIELDS: dict[LayerName, frozenset[str]] = {
    LayerName.stalls: frozenset({"status", "hours", *MOVED_TO_FIELDS}),
    LayerName.vendor_clusters: frozenset({"status", "hours"}),
}


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=64 << 20
    )


def new_key(
    name: str, role: Role, grids: Iterable[str] = (), officer: str | None = None
) -> tuple[str, ApiKeyRecord]:
    """A fresh key: the secret to hand out once, and the record to store."""
    if role is Role.public:
        raise ValueError("the public needs no key")
    grids = tuple(sorted(set(grids)))
    if role is Role.officer and not grids and not officer:
        raise ValueError("an officer key needs grid codes or an officer name")
    if role in (Role.community, Role.street) and not grids:
        raise ValueError(f"a {role.value} key needs the codes of its {role.value}s")
    key_id = secrets.token_hex(5)
    secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
    salt = secrets.token_bytes(16)
    rec = ApiKeyRecord(
        key_id=key_id,
        name=name,
        role=role,
        salt=salt.hex(),
        hash=_scrypt(secret, salt).hex(),
        grids=grids,
        officer=officer,
    )
    return secret, rec


def key_id_of(secret: str) -> str | None:
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1]:
        return None
    return parts[1]


def revoked(rec: ApiKeyRecord) -> ApiKeyRecord:
    return replace(rec, revoked=now_iso())


class KeyVerifier:
    """Checks presented secrets against stored records, paying scrypt once per key and process.

    The cache maps a SHA-256 of the secret to the stored hash it matched, so a key whose record
    changes (revoked, or replaced) is checked again from scratch.
    """

    _verified: ClassVar[dict[bytes, str]] = {}  # per process: sha256(secret) -> stored hash
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, lookup: Callable[[str], ApiKeyRecord | None]) -> None:
        self._lookup = lookup

    def verify(self, secret: str) -> ApiKeyRecord | None:
        key_id = key_id_of(secret)
        if key_id is None:
            return None
        rec = self._lookup(key_id)
        if rec is None or rec.revoked:
            return None
        digest = hashlib.sha256(secret.encode()).digest()
        with self._lock:
            if self._verified.get(digest) == rec.hash:
                return rec
        computed = _scrypt(secret, bytes.fromhex(rec.salt))
        if not hmac.compare_digest(computed, bytes.fromhex(rec.hash)):
            return None
        with self._lock:
            self._verified[digest] = rec.hash
        return rec


def principal_for(rec: ApiKeyRecord, grids_of_officer: Callable[[str], Iterable[str]]) -> Principal:
    """The principal of a verified key; an officer's grids are resolved now, from the data."""
    grids = set(rec.grids)
    if rec.role is Role.officer and rec.officer:
        grids |= set(grids_of_officer(rec.officer))
    return Principal(rec.role, rec.name, rec.key_id, frozenset(grids))


class Forbidden(PermissionError):
    """The key is valid but does not allow this change."""


def check_fields(who: Principal, layer: LayerName, fields: Iterable[str]) -> None:
    """Raise ``Forbidden`` unless ``who`` may change these fields of this layer at all."""
    if who.is_admin():
        return
    if who.role is not Role.officer or layer not in OFFICER_FIELDS:
        raise Forbidden(f"changing {layer.value} needs an admin key")
    allowed = OFFICER_FIELDS[layer]
    extra = sorted(set(fields) - allowed)
    if extra:
        raise Forbidden(
            f"an officer may change only {', '.join(sorted(allowed))} of {layer.value}, "
            f"not {', '.join(extra)}"
        )


def check_grid(who: Principal, grid_code: str | None) -> None:
    """Raise ``Forbidden`` unless ``who`` may change features in ``grid_code``."""
    if who.is_admin():
        return
    if grid_code is None or grid_code not in who.grids:
        raise Forbidden(f"grid {grid_code} is not one of this officer's grids")


def check_admin(who: Principal, what: str) -> None:
    if not who.is_admin():
        raise Forbidden(f"{what} needs an admin key")
