"""A ``limits`` storage shared by the worker processes of one machine: ``shm://``.

``limits`` keeps counters in one process (``memory://``) or in a server (redis, memcached).
Under ``uvicorn --workers N`` a client must meet the same limit whichever worker accepts its
connection, with no extra service to run, so the counters live in a memory-mapped file (in
``/dev/shm`` when there is one) that every worker maps: a fixed open-addressing table of
(key hash, expiry, count) slots, each operation a few microseconds under an ``flock`` (across
processes) and a thread lock (within one).

``shm://`` picks the file from ``name`` (the middleware passes the listening port, so every
server on a machine has its own); ``shm:///path/to/file`` names it; ``?slots=N`` sizes the
table (default 65,536 clients per window, 1.5 MB). When every slot near a key is live, the one
expiring soonest is reused: a flood of distinct addresses can only cut short other windows.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from limits.storage import Storage

_MAGIC = b"GSRL0001"
_HEADER = struct.Struct("<8sQ")  # magic, slots
_SLOT = struct.Struct("<Qdq")  # key hash (0 = never used), expiry (epoch s), count
PROBES = 32
DEFAULT_SLOTS = 65_536


def default_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def default_path(name: str) -> Path:
    return default_dir() / f"geo_service-ratelimit-{os.getuid()}-{name}"


def _hash(key: str) -> int:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return h or 1


class SharedMemoryStorage(Storage):
    """Fixed-window counters in a memory-mapped file (``limits`` storage scheme ``shm``)."""

    STORAGE_SCHEME = ["shm"]  # noqa: RUF012 (limits reads it from the class dict)

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        name: str = "default",
        slots: int = DEFAULT_SLOTS,
        **options: float | str | bool,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        parsed = urllib.parse.urlparse(uri or "shm://")
        query = urllib.parse.parse_qs(parsed.query)
        self.slots = int(query.get("slots", [slots])[0])
        if self.slots < 1:
            raise ValueError("slots must be positive")
        self.path = Path(parsed.path) if parsed.path else default_path(name)
        self._lock = threading.Lock()
        self._size = _HEADER.size + self.slots * _SLOT.size
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            if os.fstat(self._fd).st_uid != os.getuid():
                raise PermissionError(f"{self.path} belongs to another user")
            with self:
                self._init_file()
            self._map = mmap.mmap(self._fd, self._size)
        except BaseException:
            os.close(self._fd)
            raise

    def _init_file(self) -> None:
        head = os.pread(self._fd, _HEADER.size, 0)
        ours = len(head) == _HEADER.size and _HEADER.unpack(head) == (_MAGIC, self.slots)
        if ours and os.fstat(self._fd).st_size >= self._size:
            return
        # New, or sized for another table: start empty (counters only ever expire anyway).
        os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, self._size)
        os.pwrite(self._fd, _HEADER.pack(_MAGIC, self.slots), 0)

    def __enter__(self) -> None:
        """Exclusive use of the table: ``with self:`` (a class, not ``@contextmanager``, which
        costs more than the two ``flock`` calls)."""
        self._lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (OSError, ValueError)

    def _offset(self, slot: int) -> int:
        return _HEADER.size + slot * _SLOT.size

    def _find(self, h: int, now: float) -> tuple[int, bool]:
        """The slot holding key hash ``h`` (live or expired) and whether it is live; else the
        slot to put it in (the first free or expired one, or the live one expiring soonest)."""
        first = h % self.slots
        free = -1
        soonest, soonest_expiry = first, float("inf")
        for i in range(PROBES):
            slot = (first + i) % self.slots
            kh, expiry, _ = _SLOT.unpack_from(self._map, self._offset(slot))
            if kh == h:
                return slot, expiry > now
            if kh == 0:
                return (slot if free < 0 else free), False  # the key is in no later slot
            if expiry <= now:
                if free < 0:
                    free = slot
            elif expiry < soonest_expiry:
                soonest, soonest_expiry = slot, expiry
        return (free if free >= 0 else soonest), False

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        h, now = _hash(key), time.time()
        with self:
            slot, live = self._find(h, now)
            offset = self._offset(slot)
            if live:
                _, until, count = _SLOT.unpack_from(self._map, offset)
                count += amount
            else:
                until, count = now + expiry, amount
            _SLOT.pack_into(self._map, offset, h, until, count)
            return int(count)

    def _read(self, key: str) -> tuple[bool, float, int]:
        h, now = _hash(key), time.time()
        with self:
            slot, live = self._find(h, now)
            _, until, count = _SLOT.unpack_from(self._map, self._offset(slot))
        return live, until, count

    def get(self, key: str) -> int:
        live, _, count = self._read(key)
        return int(count) if live else 0

    def get_expiry(self, key: str) -> float:
        live, until, _ = self._read(key)
        return float(until) if live else time.time()

    def check(self) -> bool:
        return not self._map.closed

    def reset(self) -> int | None:
        now = time.time()
        with self:
            live = 0
            for slot in range(self.slots):
                kh, until, _ = _SLOT.unpack_from(self._map, self._offset(slot))
                live += bool(kh) and until > now
            self._map[_HEADER.size : self._size] = bytes(self._size - _HEADER.size)
        return live

    def clear(self, key: str) -> None:
        h, now = _hash(key), time.time()
        with self:
            slot, live = self._find(h, now)
            if live:  # expired in place: later keys of its probe chain stay reachable
                _SLOT.pack_into(self._map, self._offset(slot), h, 0.0, 0)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
