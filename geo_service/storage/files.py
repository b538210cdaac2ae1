"""The embedded backend: GeoJSON files in the data folder, written so a crash loses nothing.

Every write happens under an exclusive ``flock`` on ``.geo_service.lock``, so writers in any
number of processes take turns. A layer file is never written in place: the new content goes
to a temporary file in the same folder, is fsynced, and replaces the old one with
``os.replace`` (atomic on POSIX); a reader, or a process killed at any instant, sees the old
file or the new one, never a mixture. The audit entries of a change go first to a journal
(written the same way) that names the content the layer file will have; the next writer
finishes or discards a journal left by a crash, so the audit log and the data always agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import orjson

from geo_service.core.layers import LoadReport
from geo_service.core.principal import ApiKeyRecord, Principal
from geo_service.core.schema import SCHEMAS, LayerName
from geo_service.storage.audit import AuditEntry, AuditQuery, entry_for, replace_entries, to_jsonl
from geo_service.storage.base import Change, Loaded, Mutation, ReplaceResult, Revisions
from geo_service.storage.dataset import layer_path, read_dataset
from geo_service.storage.records import Record, plan_replace, stored_feature_records
from geo_service.storage.snapcache import LayerCache, SourceId, file_sha256

log = logging.getLogger(__name__)

LOCK_FILE = ".geo_service.lock"
JOURNAL_FILE = ".geo_service.journal"
AUDIT_FILE = "audit.jsonl"
KEYS_FILE = "api_keys.json"
TMP_SUFFIX = ".geo_service.tmp"


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old or its new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def dump_collection(features: list[dict[str, Any]], header: dict[str, Any] | None = None) -> bytes:
    """A FeatureCollection with one feature per line (readable diffs, like the shipped files)."""
    head = {k: v for k, v in (header or {}).items() if k != "features"}
    head.setdefault("type", "FeatureCollection")
    opening = orjson.dumps(head)[:-1] + b',"features":[\n'
    body = b",\n".join(orjson.dumps(f) for f in features)
    return opening + body + b"\n]}\n"


class _Poller:
    """Watches the layer files' identity (inode, mtime, size): a cheap cross-process signal."""

    def __init__(
        self, token: Callable[[], Revisions], callback: Callable[[], None], every_s: float
    ) -> None:
        self._token = token
        self._callback = callback
        self._every = every_s
        self._stop = threading.Event()
        self._last = token()
        self._thread = threading.Thread(target=self._run, name="geo-files-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                tok = self._token()
                if tok != self._last:
                    self._last = tok
                    self._callback()
            except Exception:  # never let the watcher die; the next tick retries
                log.exception("polling the data files failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class FilesBackend:
    name = "embedded files"

    def __init__(self, data_dir: Path, poll_s: float = 0.5, cache_dir: Path | None = None) -> None:
        """``cache_dir``: keep validated layers there (``snapcache``) to start faster."""
        self.data_dir = Path(data_dir)
        self.poll_s = poll_s
        self.cache = None if cache_dir is None else LayerCache(cache_dir)
        self._digests: dict[LayerName, tuple[SourceId, str]] = {}
        self._thread_lock = threading.Lock()
        self._keys_cache: tuple[tuple[int, int, int], dict[str, ApiKeyRecord]] | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def audit_path(self) -> Path:
        return self.data_dir / AUDIT_FILE

    @property
    def keys_path(self) -> Path:
        return self.data_dir / KEYS_FILE

    @property
    def journal_path(self) -> Path:
        return self.data_dir / JOURNAL_FILE

    # -- reading -----------------------------------------------------------------------------
    def migrate(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def revisions(self) -> Revisions:
        """The identity of each layer file: a replaced file has a new inode and mtime."""
        out: Revisions = {}
        for layer in SCHEMAS:
            try:
                st = layer_path(self.data_dir, layer).stat()
                out[layer] = f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}"
            except FileNotFoundError:
                out[layer] = "-"
        return out

    def load(self, layers: Collection[LayerName] | None = None) -> Loaded:
        wanted = list(SCHEMAS if layers is None else layers)
        revisions = {k: v for k, v in self.revisions().items() if k in wanted}
        if self.cache is None:
            frames, reports = read_dataset(self.data_dir, wanted)
        else:
            frames, reports = self._read_cached(wanted)
        return Loaded(frames, self.version(), revisions, reports)

    def version(self) -> str:
        """Content hash of the layer files, made of each file's SHA-256; a file's hash is
        remembered by its identity, so a reload after a stall edit hashes the stalls only."""
        h = hashlib.sha256()
        for layer in SCHEMAS:
            path = layer_path(self.data_dir, layer)
            try:
                ident = SourceId.of(path)
            except FileNotFoundError:
                continue
            known = self.cache.digests.get(layer.value) if self.cache is not None else None
            memo = self._digests.get(layer)
            if memo is None or memo[0] != ident:
                memo = known if known is not None and known[0] == ident else None
                memo = memo or (ident, file_sha256(path))
                self._digests[layer] = memo
            h.update(f"{layer.value}:{memo[1]}\n".encode())
        return h.hexdigest()[:12]

    def _read_cached(
        self, layers: list[LayerName]
    ) -> tuple[dict[LayerName, gpd.GeoDataFrame], list[LoadReport]]:
        """``read_dataset`` through the snapshot cache, layer by layer."""
        assert self.cache is not None
        frames: dict[LayerName, gpd.GeoDataFrame] = {}
        reports: list[LoadReport] = []
        for layer in layers:
            path = layer_path(self.data_dir, layer)
            if not path.exists():
                read_dataset(self.data_dir, [layer])  # the same error for missing grids
                continue

            def build(layer: LayerName = layer) -> tuple[gpd.GeoDataFrame, LoadReport]:
                built, [report] = read_dataset(self.data_dir, [layer])
                return built[layer], report

            frames[layer], report = self.cache.load(layer.value, path, build)
            reports.append(report)
        return frames, reports

    def _read(self, layer: LayerName) -> dict[str, Any]:
        path = layer_path(self.data_dir, layer)
        if not path.exists():
            return {"type": "FeatureCollection", "features": []}
        doc: dict[str, Any] = orjson.loads(path.read_bytes())
        return doc

    def get(self, layer: LayerName, code: str) -> Record | None:
        feats = self._read(layer)["features"]
        i = _find(feats, code)
        return None if i is None else stored_feature_records(layer, [feats[i]])[0]

    # -- writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive across threads and processes; finishes any write a crash interrupted."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.data_dir / LOCK_FILE, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                self._recover()
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _recover(self) -> None:
        for tmp in self.data_dir.glob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)  # a write killed before its rename: never took effect
        if not self.journal_path.exists():
            return
        journal = orjson.loads(self.journal_path.read_bytes())
        target = self.data_dir / journal["file"]
        done = (
            target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == journal["sha256"]
        )
        if done:
            entries = [AuditEntry.from_dict(d) for d in journal["audit"]]
            last = self._last_audit_id()
            self._append_audit([e for e in entries if (e.id or 0) > last])
            log.warning("finished an interrupted write of %s (audit completed)", journal["file"])
        else:
            log.warning("discarded an interrupted write of %s (data unchanged)", journal["file"])
        self.journal_path.unlink()
        fsync_dir(self.data_dir)

    def _last_audit_id(self) -> int:
        """Id of the last complete audit line; cuts off a line a crash left half-written."""
        if not self.audit_path.exists():
            return 0
        with open(self.audit_path, "r+b") as fh:
            pos = fh.seek(0, os.SEEK_END)
            buf = b""
            while pos > 0 and buf.count(b"\n") < 2:  # enough to hold the last whole line
                step = min(1 << 16, pos)
                pos -= step
                fh.seek(pos)
                buf = fh.read(step) + buf
            if buf and not buf.endswith(b"\n"):
                cut = buf.rfind(b"\n") + 1
                fh.truncate(pos + cut)
                fh.flush()
                os.fsync(fh.fileno())
                buf = buf[:cut]
        lines = buf.rstrip(b"\n").split(b"\n")
        return int(orjson.loads(lines[-1])["id"]) if lines[-1] else 0

    def _append_audit(self, entries: list[AuditEntry]) -> None:
        if not entries:
            return
        with open(self.audit_path, "ab") as fh:
            fh.write(to_jsonl(entries))
            fh.flush()
            os.fsync(fh.fileno())

    def _commit(self, layer: LayerName, data: bytes, entries: list[AuditEntry]) -> list[AuditEntry]:
        """Journal, replace the layer file, append the audit, drop the journal."""
        first = self._last_audit_id() + 1
        numbered = [replace(e, id=first + i) for i, e in enumerate(entries)]
        path = layer_path(self.data_dir, layer)
        journal = {
            "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "audit": numbered,
        }
        atomic_write(self.journal_path, orjson.dumps(journal))
        atomic_write(path, data)
        self._append_audit(numbered)
        self.journal_path.unlink()
        return numbered

    def modify(
        self, layer: LayerName, code: str, mutation: Mutation, who: Principal, action: str
    ) -> Change:
        with self._locked():
            doc = self._read(layer)
            feats: list[dict[str, Any]] = doc["features"]
            i = _find(feats, code)
            current = None if i is None else stored_feature_records(layer, [feats[i]])[0]
            new = mutation(current)
            if new is None or (current is not None and new.same_content(current)):
                return Change(current, current, None)
            new = new.with_version((current.version if current else 0) + 1)
            if i is None:
                feats.append(new.file_feature())
                feats.sort(key=lambda f: str(f.get("properties", {}).get("code")))
            else:
                feats[i] = new.file_feature()
            [entry] = self._commit(
                layer, dump_collection(feats, doc), [entry_for(who, action, current, new)]
            )
            return Change(current, new, entry)

    def replace_layer(
        self, layer: LayerName, records: list[Record], who: Principal, source: str
    ) -> ReplaceResult:
        with self._locked():
            doc = self._read(layer)
            old = stored_feature_records(layer, doc["features"])
            plan = plan_replace(old, records)
            detail = {"source": source, **plan.summary()}
            entries = replace_entries(who, layer.value, plan.changes, detail)
            data = dump_collection([r.file_feature() for r in plan.records], doc)
            self._commit(layer, data, entries)
            return ReplaceResult(layer, plan.summary(), len(entries))

    # -- audit -------------------------------------------------------------------------------
    def append_audit(self, entries: list[AuditEntry]) -> None:
        """Number and append entries written by another store (cases) under this lock."""
        with self._locked():
            first = self._last_audit_id() + 1
            self._append_audit([replace(e, id=first + i) for i, e in enumerate(entries)])

    def audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        with self._locked():  # completes an interrupted write's entries first
            if self._last_audit_id() == 0:
                return [], 0
            raw = self.audit_path.read_bytes()
        entries = [AuditEntry.from_dict(orjson.loads(line)) for line in raw.splitlines() if line]
        return query.page(entries)

    def subscribe(self, callback: Callable[[], None]) -> _Poller:
        return _Poller(self.revisions, callback, self.poll_s)

    # -- keys --------------------------------------------------------------------------------
    def _keys(self) -> dict[str, ApiKeyRecord]:
        try:
            st = self.keys_path.stat()
        except FileNotFoundError:
            return {}
        ident = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._keys_cache
        if cached is not None and cached[0] == ident:
            return cached[1]
        doc = orjson.loads(self.keys_path.read_bytes())
        keys = {d["key_id"]: ApiKeyRecord.from_dict(d) for d in doc.get("keys", [])}
        self._keys_cache = (ident, keys)
        return keys

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        return self._keys().get(key_id)

    def list_keys(self) -> list[ApiKeyRecord]:
        return sorted(self._keys().values(), key=lambda k: k.created)

    def put_key(self, record: ApiKeyRecord) -> None:
        with self._locked():
            keys = dict(self._keys())
            keys[record.key_id] = record
            doc = {"keys": [k.to_dict() for k in sorted(keys.values(), key=lambda k: k.created)]}
            atomic_write(self.keys_path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            os.chmod(self.keys_path, 0o600)

    def close(self) -> None:
        pass


def _find(features: list[dict[str, Any]], code: str) -> int | None:
    for i, f in enumerate(features):
        if str((f.get("properties") or {}).get("code")) == code:
            return i
    return None
