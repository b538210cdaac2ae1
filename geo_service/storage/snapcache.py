"""Validated layers kept on disk beside their GeoJSON source, so a start-up skips parsing and
validating it (a million grids: about a minute of work, a few seconds to read back).

The GeoJSON file stays the truth. A cache entry names the source it was built from (inode,
size, mtime and SHA-256 of the bytes) and is used only for that source: same identity, or
failing that the same content hash. Its payload carries its own SHA-256, so a truncated or
damaged entry is detected, ignored and rebuilt, never served. Entries are written to a
temporary file and renamed into place, so a reader sees a whole entry or none. Geometries are
stored as WKB (decoded in one vectorised call); the attribute columns are pickled with their
dtypes, so a cached layer equals a freshly validated one. The folder is the service's own
(the data folder's, by default): only what the service wrote there is ever read back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_service.core.layers import LoadReport

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"GEOSNAP1"
DIGEST = hashlib.sha256().digest_size
TMP_SUFFIX = ".snapcache.tmp"

Built = tuple[gpd.GeoDataFrame, LoadReport]


@cache
def producer() -> str:
    """What made an entry: this format, the libraries that pickle its frames, and the code
    that reads and validates a layer (an entry written before either changed is rebuilt)."""
    from geo_service.core import layers, schema, versions
    from geo_service.storage import dataset

    h = hashlib.sha256(
        f"{FORMAT} {pd.__version__} {gpd.__version__} {shapely.__version__}".encode()
    )
    for module in (layers, schema, versions, dataset):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class SourceId:
    """What identifies a source file's version without reading it."""

    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceId:
        st = path.stat()
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class LayerCache:
    """One entry per layer in ``folder``; ``load`` returns the cached layer or builds it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.builds = 0
        # The SHA-256 of each source as last seen, by identity (saves hashing it again).
        self.digests: dict[str, tuple[SourceId, str]] = {}

    def entry_path(self, name: str) -> Path:
        return self.folder / f"{name}.snap"

    def load(self, name: str, source: Path, build: Callable[[], Built]) -> Built:
        """The layer ``build()`` makes from ``source``, from the cache when it holds it."""
        before = SourceId.of(source)
        entry = self._read(self.entry_path(name))
        if entry is not None:
            if entry["source"] == before:
                self.hits += 1
                self.digests[name] = (before, entry["sha256"])
                return _decode(entry, source)
            sha = file_sha256(source)
            self.digests[name] = (before, sha)
            if entry["sha256"] == sha:  # same bytes under a new identity (copied, touched)
                self.hits += 1
                built = _decode(entry, source)
                self._write(name, before, sha, built)
                return built
        else:
            sha = file_sha256(source)
            self.digests[name] = (before, sha)
        built = build()
        self.builds += 1
        if SourceId.of(source) == before:  # unchanged while it was read: the entry is true
            self._write(name, before, sha, built)
        return built

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            log.warning("cannot read the snapshot cache %s; rebuilding it", path, exc_info=True)
            return None
        head = len(MAGIC) + DIGEST
        body = memoryview(raw)[head:]
        if raw[: len(MAGIC)] != MAGIC or hashlib.sha256(body).digest() != raw[len(MAGIC) : head]:
            log.warning("the snapshot cache %s is damaged; rebuilding it", path)
            return None
        try:
            entry: dict[str, Any] = pickle.loads(body)
        except Exception:
            log.warning("the snapshot cache %s is unreadable; rebuilding it", path, exc_info=True)
            return None
        if not isinstance(entry, dict) or entry.get("producer") != producer():
            return None
        return entry

    def _write(self, name: str, source: SourceId, sha: str, built: Built) -> None:
        frame, report = built
        entry = {
            "producer": producer(),
            "source": source,
            "sha256": sha,
            "columns": frame.drop(columns=frame.geometry.name),
            "geometry_name": frame.geometry.name,
            "order": list(frame.columns),
            "wkb": shapely.to_wkb(frame.geometry.to_numpy()),
            "crs": frame.crs.to_wkt() if frame.crs is not None else None,
            "report": report,
        }
        body = pickle.dumps(entry, protocol=5)
        path = self.entry_path(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(MAGIC + hashlib.sha256(body).digest())
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError:  # a read-only or full disk costs the next start-up time, nothing else
            log.warning("cannot write the snapshot cache %s", path, exc_info=True)
            tmp.unlink(missing_ok=True)


def _decode(entry: dict[str, Any], source: Path) -> Built:
    columns = entry["columns"]
    name = entry["geometry_name"]
    geometry = gpd.GeoSeries(
        shapely.from_wkb(np.asarray(entry["wkb"], dtype=object)),
        index=columns.index,
        crs=entry["crs"],
    )
    frame = gpd.GeoDataFrame(columns.assign(**{name: geometry}), geometry=name)
    report: LoadReport = replace(entry["report"], source=str(source))
    return frame[entry["order"]], report
