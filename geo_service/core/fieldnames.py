"""Shapefile field names: a dBASE name holds at most 10 bytes, so longer ones are abbreviated
when a Shapefile is written and mapped back when one is read.

Names of the layers and coverage results have one fixed abbreviation each
(``schema.SHAPEFILE_NAMES``), so a Shapefile we wrote reads back even without its sidecar.
Any other long name (an extra column such as 网格员联系电话, 21 bytes in UTF-8) is cut at a
character boundary, with ``_1``, ``_2``… where two would clash; left to GDAL it would be cut
mid-character into invalid UTF-8. Every name is listed in the sidecar ``<name>.fields.csv``
written beside the ``.shp`` (and into the zip), which the import reads first.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from geo_service.core.errors import InputError
from geo_service.core.schema import SHAPEFILE_NAME_BYTES, SHAPEFILE_NAMES

SIDECAR_SUFFIX = ".fields.csv"
SIDECAR_HEADER = ("shapefile_field", "field")
SIDECAR_MAX_BYTES = 256 * 1024  # thousands of names; a larger "sidecar" is no sidecar of ours
_FULL_NAMES = {short: full for full, short in SHAPEFILE_NAMES.items()}


def fits(name: str, limit: int = SHAPEFILE_NAME_BYTES) -> bool:
    return len(name.encode("utf-8")) <= limit


def _cut(name: str, limit: int) -> str:
    """The longest prefix of ``name`` within ``limit`` UTF-8 bytes (never half a character)."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def shapefile_names(columns: Sequence[str]) -> dict[str, str]:
    """Each column's Shapefile name: itself when it fits, else its abbreviation; unique
    ignoring case (as dBASE compares names)."""
    taken = {c.casefold() for c in columns if fits(c) and c not in SHAPEFILE_NAMES}
    out: dict[str, str] = {}
    for col in columns:
        if fits(col) and col not in SHAPEFILE_NAMES:
            out[col] = col
            continue
        short = SHAPEFILE_NAMES.get(col, _cut(col, SHAPEFILE_NAME_BYTES))
        n = 0
        while not short or short.casefold() in taken:
            n += 1
            suffix = f"_{n}"
            short = _cut(col, SHAPEFILE_NAME_BYTES - len(suffix)) + suffix
        taken.add(short.casefold())
        out[col] = short
    return out


def full_names(columns: Iterable[str], sidecar: Mapping[str, str] | None = None) -> dict[str, str]:
    """The renames (Shapefile name → field name) that restore the names of a Shapefile read
    back: the sidecar's first, then the fixed table's for a name not already present."""
    present = list(columns)
    names = set(present)
    out: dict[str, str] = {}
    for col in present:
        full = (sidecar or {}).get(col) or _FULL_NAMES.get(col)
        if full and full != col and full not in names and full not in out.values():
            out[col] = full
    return out


def sidecar_text(names: Mapping[str, str]) -> str:
    """The sidecar of ``shapefile_names``: one row per field, Shapefile name first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(SIDECAR_HEADER)
    writer.writerows((short, full) for full, short in names.items())
    return buf.getvalue()


def _parse_sidecar(raw: bytes, where: str) -> dict[str, str]:
    if len(raw) > SIDECAR_MAX_BYTES:
        raise InputError(f"{where}: larger than {SIDECAR_MAX_BYTES // 1024} KiB")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    if not rows or tuple(rows[0][:2]) != SIDECAR_HEADER:
        raise InputError(f"{where}: the first row must be {','.join(SIDECAR_HEADER)}")
    return {r[0]: r[1] for r in rows[1:] if len(r) >= 2 and r[0] and r[1]}


def read_sidecar(path: Path) -> dict[str, str] | None:
    """The sidecar of a ``.shp`` (``<stem>.fields.csv`` beside it) or of a zipped Shapefile
    (the one ``*.fields.csv`` in the zip); None when there is none."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if n.lower().endswith(SIDECAR_SUFFIX)]
            if len(members) != 1:
                return None
            with zf.open(members[0]) as f:
                return _parse_sidecar(f.read(SIDECAR_MAX_BYTES + 1), f"{path}:{members[0]}")
    side = path.with_name(path.stem + SIDECAR_SUFFIX)
    if not side.is_file():
        return None
    with side.open("rb") as f:
        return _parse_sidecar(f.read(SIDECAR_MAX_BYTES + 1), str(side))
