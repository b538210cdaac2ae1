"""随手拍 cases: filing over HTTP on both backends, and the statistics query on 100,000 cases.

    python -m bench.bench_cases                 # records bench/RESULTS.md
    python -m bench.bench_cases --seconds 4 --no-write

Part 1 (filing): the shipped `geo-service serve --workers 2` (rate limit off, photos in a
temp media folder) on the embedded files (a copy of data/) and on PostGIS (a fresh database
seeded with data/, when GEO_SERVICE_TEST_DATABASE_URL is set). 8 clients (threads, one httpx
client each) file reports for a fixed time, without a photo, then each with a distinct
~300 KB JPEG (multipart `media`), every request with its own Idempotency-Key: requests/s and
p50/p99/max latency. Baselines in the same run: GET of one case on the same server, and the
store alone in-process (`CaseDesk.file` in a loop on the same backend, 1 and 8 threads), plus
photo cleaning alone. Every acknowledged id is read back over HTTP and found in the store
afterwards (with its key and its own stored photo); a lost case fails the benchmark.

Part 2 (statistics): 100,000 synthetic cases over the bundled grids (points inside grids,
random categories, histories with 立案/派遣/处置/核查/结案, rejections, extensions and the
escalations the deadlines cause, requested over 90 days); `case_frame` and `case_stats` by
grid, community, street and district, best of 3, against one PostGIS GROUP BY computing the
same per-grid figures over a table of the same rows (loaded with COPY, not timed); every
grid's figures are checked equal.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import psycopg
import shapely
from PIL import Image

from bench.bench_locate import Server
from bench.bench_serving import SERVE, percentiles
from bench.city import OUT
from bench.results import begin, command, markdown_table, print_table, stamp, write_section
from bench.timing import best_of
from geo_service.analysis.casestats import STATUS_COLUMNS, case_frame, case_stats
from geo_service.core.cases import (
    AWAITING_HANDLING,
    Action,
    Case,
    CaseEvent,
    CaseStatus,
    ServiceCatalogue,
    level_above,
)
from geo_service.core.principal import PUBLIC
from geo_service.core.schema import Level
from geo_service.core.settings import BUNDLED_CASE_SERVICES, Settings
from geo_service.core.snapshot import Snapshot
from geo_service.core.workcalendar import LimitUnit
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.cases import Report
from geo_service.runtime import load_snapshot, open_case_store
from geo_service.storage.base import Backend
from geo_service.storage.cases import CaseQuery, FilesCaseStore
from geo_service.storage.files import FilesBackend
from geo_service.storage.media import MediaStore, clean_photo
from geo_service.storage.postgis import PostGISBackend
from tests.backends import PgDatabases, copy_data, seed_postgis

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ServiceCatalogue.load(BUNDLED_CASE_SERVICES)
MAX_PHOTO = Settings(database_url=None).max_photo_bytes
DESCRIPTION = "路灯不亮，晚上行人看不清路面"


def say(msg: str) -> None:
    print(f"[bench_cases] {msg}", flush=True)


def points_in_grids(
    snap: Snapshot, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` uniform random points, each inside a grid chosen uniformly: positions, lon, lat."""
    geoms = snap.grids.frame.geometry.to_numpy()
    bounds = shapely.bounds(geoms)
    pos = rng.integers(0, len(geoms), n)
    lon, lat = np.empty(n), np.empty(n)
    todo = np.arange(n)
    while len(todo):  # rejection sampling in each grid's bounding box
        b = bounds[pos[todo]]
        x, y = rng.uniform(b[:, 0], b[:, 2]), rng.uniform(b[:, 1], b[:, 3])
        inside = shapely.contains_xy(geoms[pos[todo]], x, y)
        lon[todo[inside]], lat[todo[inside]] = x[inside], y[inside]
        todo = todo[~inside]
    return pos, lon, lat


def photo_pool(n: int, seed: int) -> list[bytes]:
    """``n`` JPEGs of 1600x1200 (gradient + noise, quality 85, ~300 KB), all with distinct
    pixels (shifted noise and the index stamped in a corner), so the cleaned photos differ and
    content-addressed storage cannot dedupe them."""
    rng = np.random.default_rng(seed)
    h, w = 1200, 1600
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1)
    noise = rng.integers(-12, 13, size=(h, w, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    out = []
    for i in range(n):
        a = np.roll(pixels, i % w, axis=1)
        for bit in range(16):
            a[:8, bit * 8 : bit * 8 + 8] = 255 if (i >> bit) & 1 else 0
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


# -- load generation ------------------------------------------------------------------------
@dataclass
class Run:
    """What clients did in a fixed time: latencies (ms), acknowledged ids, failures."""

    seconds: float = 0.0
    ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False

    @property
    def rate(self) -> float:
        return len(self.ms) / self.seconds if self.seconds else 0.0

    def cells(self) -> list[str]:
        p = percentiles(self.ms)
        return [f"{self.rate:,.1f}", f"{p['p50']:.1f} / {p['p99']:.1f} / {p['max']:.1f}"]


class Exhausted(Exception):
    """No more distinct photos: the phase ends early."""


def run_clients(
    seconds: float,
    clients: int,
    open_client: Callable[[], AbstractContextManager[Any]],
    send: Callable[[Any], str | None],
) -> Run:
    """``clients`` threads calling ``send(client)`` until ``seconds`` have passed; ``send``
    returns the acknowledged id (or None for a read) and raises to report a failure."""
    run = Run()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker() -> None:
        with open_client() as client:
            start.wait()
            while time.monotonic() < deadline[0]:
                t0 = time.perf_counter()
                try:
                    ack = send(client)
                except Exhausted:
                    with lock:
                        run.exhausted = True
                    return
                except Exception as exc:
                    with lock:
                        run.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    run.ms.append(ms)
                    if ack is not None:
                        run.ids.append(ack)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - t0
    if run.errors:
        raise RuntimeError(f"{len(run.errors)} requests failed, first: {run.errors[0]}")
    return run


class Filing:
    """POST /open311/v2/requests.json bodies: a new point, category and key each time, and a
    photo from the pool (each used once) when ``photos`` is given."""

    def __init__(
        self, tag: str, lon: np.ndarray, lat: np.ndarray, photos: Iterator[bytes] | None
    ) -> None:
        self.tag = tag
        self.points = list(zip(lon.tolist(), lat.tolist(), strict=True))
        self.photos = photos
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.keys: dict[str, str] = {}  # acknowledged id -> its Idempotency-Key
        self.with_photo: set[str] = set()

    def __call__(self, http: httpx.Client) -> str:
        with self.lock:
            i = next(self.counter)
            photo = None if self.photos is None else next(self.photos, None)
        if self.photos is not None and photo is None:
            raise Exhausted
        lon, lat = self.points[i % len(self.points)]
        key = f"bench-{self.tag}-{i}"
        form = {
            "service_code": SERVICES.services[i % len(SERVICES.services)].code,
            "lat": f"{lat:.7f}",
            "long": f"{lon:.7f}",
            "description": DESCRIPTION,
            "address_string": f"测试路 {i} 号",
        }
        files = None if photo is None else {"media": ("photo.jpg", photo, "image/jpeg")}
        r = http.post(
            "/open311/v2/requests.json", data=form, files=files, headers={"Idempotency-Key": key}
        )
        if r.status_code != 201:
            raise RuntimeError(f"POST answered {r.status_code}: {r.text[:200]}")
        case_id = str(r.json()[0]["service_request_id"])
        with self.lock:
            self.keys[case_id] = key
            if photo is not None:
                self.with_photo.add(case_id)
        return case_id


def http_client(url: str) -> Callable[[], httpx.Client]:
    return lambda: httpx.Client(base_url=url, timeout=120)


def read_back(url: str, ids: list[str]) -> set[str]:
    """The acknowledged ids the API returns from GET requests.json?service_request_id=..."""
    seen: set[str] = set()
    with httpx.Client(base_url=url, timeout=120) as http:
        for k in range(0, len(ids), 100):
            batch = ids[k : k + 100]
            r = http.get(
                "/open311/v2/requests.json", params={"service_request_id": ",".join(batch)}
            )
            r.raise_for_status()
            seen |= {str(c["service_request_id"]) for c in r.json()}
    return seen


@dataclass
class Check:
    acked: int
    read_back: int
    stored: int
    photos: int
    photo_files: int

    def ok(self) -> bool:
        return self.acked == self.read_back == self.stored and self.photos == self.photo_files


def verify(backend: Backend, media_dir: Path, filings: list[Filing], seen: set[str]) -> Check:
    """Every acknowledged id is in the store with its key; each photo case has its own file."""
    cases = {c.id: c for c in open_case_store(backend).all()}  # type: ignore[attr-defined]
    media = MediaStore(media_dir)
    acked = stored = 0
    names: set[str] = set()
    for f in filings:
        for case_id, key in f.keys.items():
            acked += 1
            c = cases.get(case_id)
            if c is None or c.idempotency_key != key:
                continue
            stored += 1
            if case_id in f.with_photo and c.photo is not None and media.exists(c.photo):
                names.add(c.photo)  # one distinct stored file per photo case, or fewer
    check = Check(acked, len(seen), stored, sum(len(f.with_photo) for f in filings), len(names))
    extra = len(cases) - acked
    say(f"check: {check}; cases in the store not acknowledged: {extra}")
    if not check.ok():
        raise RuntimeError(f"acknowledged cases missing or incomplete: {check}")
    return check


# -- part 1: filing --------------------------------------------------------------------------
@dataclass
class Args:
    seconds: float
    clients: int
    warmup: int
    inprocess_seconds: float


def bench_filing(
    name: str,
    backend: Backend,
    env: dict[str, str],
    data_dir: Path,
    media_dir: Path,
    snap: Snapshot,
    pool: list[bytes],
    args: Args,
    seed: int,
) -> tuple[list[list[str]], dict[str, Run]]:
    rng = np.random.default_rng(seed)
    _, lon, lat = points_in_grids(snap, 20_000, rng)
    tag = name.split()[0]
    photos = iter(pool)
    warm = Filing(f"{tag}-warm", lon, lat, None)
    plain = Filing(f"{tag}-plain", lon, lat, None)
    photo = Filing(f"{tag}-photo", lon, lat, photos)
    runs: dict[str, Run] = {}
    env = {**env, "GEO_SERVICE_MEDIA_DIR": str(media_dir)}
    with Server(None, data_dir, OUT / f"cases_{tag}.log", argv=SERVE, env=env) as srv:
        with httpx.Client(base_url=srv.url, timeout=120) as http:
            ids = [warm(http) for _ in range(args.warmup)]
            for _ in range(4):
                photo(http)  # warm the photo path too (counted in the checks)
        ids_cycle = itertools.cycle(ids)
        cycle_lock = threading.Lock()

        def read(http: httpx.Client) -> None:
            with cycle_lock:
                case_id = next(ids_cycle)
            r = http.get(f"/open311/v2/requests/{case_id}.json")
            if r.status_code != 200:
                raise RuntimeError(f"GET answered {r.status_code}: {r.text[:200]}")

        client = http_client(srv.url)
        runs["read"] = run_clients(args.seconds, args.clients, client, read)
        runs["plain"] = run_clients(args.seconds, args.clients, client, plain)
        runs["photo"] = run_clients(args.seconds, args.clients, client, photo)
        for k in ("read", "plain", "photo"):
            r = runs[k]
            p = percentiles(r.ms)
            say(f"{name} {k}: {r.rate:,.1f}/s, p50 {p['p50']:.1f} p99 {p['p99']:.1f} ms")
        filings = [warm, plain, photo]
        acked = [i for f in filings for i in f.keys]
        seen = read_back(srv.url, acked)
    check = verify(backend, media_dir, filings, seen)

    # The store alone, in-process, on the same backend (after the server stopped).
    desk = CaseDesk(store=open_case_store(backend), services=SERVICES, snapshot=lambda: snap)
    desk.store.migrate()
    before = len(desk.store.all())  # type: ignore[attr-defined]
    counter, lock = itertools.count(), threading.Lock()
    points = list(zip(lon.tolist(), lat.tolist(), strict=True))

    def file_inprocess(_: object) -> str:
        with lock:
            i = next(counter)
        x, y = points[i % len(points)]
        report = Report(
            service_code=SERVICES.services[i % len(SERVICES.services)].code,
            description=DESCRIPTION,
            lon=x,
            lat=y,
            crs="wgs84",
            address=f"测试路 {i} 号",
            idempotency_key=f"bench-{tag}-inproc-{i}",
        )
        return desk.file(report, PUBLIC).case.id

    runs["store1"] = run_clients(args.inprocess_seconds, 1, nullcontext, file_inprocess)
    runs["store8"] = run_clients(args.inprocess_seconds, args.clients, nullcontext, file_inprocess)
    after = len(desk.store.all())  # type: ignore[attr-defined]
    inproc = len(runs["store1"].ids) + len(runs["store8"].ids)
    if after - before != inproc or len(set(runs["store1"].ids + runs["store8"].ids)) != inproc:
        raise RuntimeError(f"in-process filings: {inproc} acknowledged, {after - before} stored")
    for k in ("store1", "store8"):
        say(f"{name} {k}: {runs[k].rate:,.1f}/s")

    read, plain_r, photo_r = runs["read"], runs["plain"], runs["photo"]
    s1, s8 = runs["store1"], runs["store8"]
    p = {k: percentiles(r.ms) for k, r in runs.items()}
    c = args.clients
    short = f" (photo pool ran out after {photo_r.seconds:.1f} s)" if photo_r.exhausted else ""
    rows = [
        [name, f"GET one case, {c} clients (baseline)", *read.cells(), "baseline"],
        [name, f"POST a report, no photo, {c} clients", *plain_r.cells(),
         f"{plain_r.rate / read.rate:.2f}x GET's rate, p50 {p['plain']['p50'] / p['read']['p50']:.1f}x; "
         f"{plain_r.rate / s8.rate:.0%} of the store alone ({c} threads)"],
        [name, f"POST a report + ~300 KB JPEG, {c} clients{short}", *photo_r.cells(),
         f"{photo_r.rate / plain_r.rate:.2f}x no-photo rate, p50 "
         f"{p['photo']['p50'] / p['plain']['p50']:.1f}x"],
        [name, "  in-process `CaseDesk.file`, 1 thread (baseline: the store alone)", *s1.cells(),
         f"HTTP no-photo p50 = {p['plain']['p50'] / p['store1']['p50']:.1f}x this"],
        [name, f"  in-process `CaseDesk.file`, {c} threads", *s8.cells(), ""],
        [name, "  check: acknowledged / read back over HTTP / in the store with their key",
         f"{check.acked:,} / {check.read_back:,} / {check.stored:,}",
         f"photos: {check.photos:,} cases, {check.photo_files:,} distinct files",
         "no loss" if check.ok() else "LOST CASES"],
    ]  # fmt: skip
    return rows, runs


def bench_photo_cleaning(pool: list[bytes], seconds: float) -> list[str]:
    """``clean_photo`` + ``MediaStore.put`` in-process, one thread: what a photo costs."""
    with tempfile.TemporaryDirectory() as tmp:
        media = MediaStore(Path(tmp))
        photos = iter(pool[::-1])

        def clean(_: object) -> None:
            data = next(photos, None)
            if data is None:
                raise Exhausted
            media.put(clean_photo(data, MAX_PHOTO, field="media"))

        run = run_clients(seconds, 1, nullcontext, clean)
    kb = np.mean([len(b) for b in pool]) / 1024
    say(f"photo cleaning: {run.rate:.1f}/s")
    return ["both", f"  in-process `clean_photo` + `MediaStore.put`, 1 thread ({kb:.0f} KB JPEG)",
            *run.cells(), f"{1000 / float(np.median(run.ms)):.0f} photos/s per CPU"]  # fmt: skip


# -- part 2: statistics ----------------------------------------------------------------------
LIMIT_S = {  # rough calendar seconds of a limit unit (synthetic data, not the work calendar)
    LimitUnit.hours: 3600,
    LimitUnit.working_hours: 5400,
    LimitUnit.working_days: 86400,
}
NEXT = {
    Action.register: CaseStatus.registered,
    Action.dispatch: CaseStatus.dispatched,
    Action.handle: CaseStatus.handled,
    Action.verify: CaseStatus.verified,
    Action.reject: CaseStatus.dispatched,
    Action.close: CaseStatus.closed,
}
STAGES = (0.06, 0.06, 0.08, 0.10, 0.10, 0.60)  # share of cases meant to reach each status


@dataclass
class Synthetic:
    cases: list[Case]
    rows: pd.DataFrame  # the flat table PostGIS gets (times as ISO text)
    now: datetime
    start: datetime


def synthetic_cases(snap: Snapshot, n: int, seed: int) -> Synthetic:
    """``n`` cases as the desk and the escalator would have left them at ``now``."""
    rng = np.random.default_rng(seed)
    now = datetime(2025, 6, 30, 8, 0, tzinfo=UTC)
    now_s = int(now.timestamp())
    t_start = now_s - 90 * 86400
    frame = snap.grids.frame
    pos, lon, lat = points_in_grids(snap, n, rng)
    codes = {
        Level.grid: frame["code"].to_numpy(dtype=object)[pos],
        Level.community: frame["community_code"].to_numpy(dtype=object)[pos],
        Level.street: frame["street_code"].to_numpy(dtype=object)[pos],
        Level.district: frame["district_code"].to_numpy(dtype=object)[pos],
    }
    officers = frame["officer_name"].to_numpy(dtype=object)[pos]
    svc = rng.integers(0, len(SERVICES.services), n)
    lim = np.array([s.limit_value * LIMIT_S[s.limit_unit] for s in SERVICES.services])[svc]
    lim = lim.astype(np.int64)
    req = t_start + rng.integers(0, 90 * 86400, n)
    stage = rng.choice(len(STAGES), n, p=STAGES)
    gaps = {
        Action.register: rng.integers(300, 7200, n),
        Action.dispatch: rng.integers(300, 10800, n),
        Action.handle: (rng.exponential(0.7, n) * lim).astype(np.int64) + 60,
        Action.verify: rng.integers(1800, 86400, n),
        Action.close: rng.integers(1800, 2 * 86400, n),
        Action.reject: rng.integers(600, 7200, n),
        Action.extend: rng.integers(600, 3600, n),
    }
    rejected = rng.random(n) < 0.05
    extended = rng.random(n) < 0.03

    # Pass 1: each case's events as (action, at, status, level, deadline) in seconds.
    plans: list[list[tuple[Action, int, CaseStatus, Level, int | None]]] = []
    escalations = np.zeros(n, dtype=np.int64)
    closed_at = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        service = SERVICES.services[svc[i]]
        level = Level.community if service.level is Level.community else Level.grid
        t, due, status = int(req[i]), int(req[i] + lim[i]), CaseStatus.reported
        ev: list[tuple[Action, int, CaseStatus, Level, int | None]] = [
            (Action.file, t, status, level, due)
        ]
        steps = [Action.register, Action.dispatch, Action.handle, Action.verify, Action.close]
        plan = steps[: stage[i]]
        if extended[i] and stage[i] >= 3:
            plan.insert(2, Action.extend)
        if rejected[i] and stage[i] >= 4:
            k = plan.index(Action.handle) + 1
            plan[k:k] = [Action.reject, Action.handle]
        for action in [*plan, None]:
            nxt = now_s if action is None else t + int(gaps[action][i])
            # The escalator: a deadline passed before 处置 moves the case one level up.
            while status in AWAITING_HANDLING and due is not None and due < min(nxt, now_s):
                up = level_above(level)
                if up is None:
                    break
                level, at, due = up, due, due + int(lim[i])
                escalations[i] += 1
                ev.append((Action.escalate, at, status, level, due))
            if action is None or nxt > now_s:
                break
            t = nxt
            if action is Action.extend:
                due = due + int(lim[i]) if due is not None else None
            else:
                status = NEXT[action]
                if status not in AWAITING_HANDLING:
                    due = None
                if action is Action.close:
                    closed_at[i] = t
            ev.append((action, t, status, level, due))
        plans.append(ev)

    # All times to ISO text in one go, then pass 2 builds the cases.
    flat = [(at, -1 if due is None else due) for ev in plans for _, at, _, _, due in ev]
    secs = np.array(flat, dtype=np.int64).reshape(-1)
    text = np.char.add(np.datetime_as_string(secs.astype("datetime64[s]"), unit="s"), "Z")
    iso = text.tolist()
    req_iso = np.char.add(np.datetime_as_string(req.astype("datetime64[s]"), "s"), "Z").tolist()
    cases: list[Case] = []
    k = 0
    for i, ev in enumerate(plans):
        history = []
        unit: Any = None
        for action, _, status, level, due in ev:
            unit = codes[level][i]
            history.append(
                CaseEvent(
                    at=iso[k],
                    action=action,
                    actor="system:escalation" if action is Action.escalate else "bench",
                    role="admin" if action is not Action.file else "public",
                    status=status,
                    level=level,
                    grid_code=codes[Level.grid][i],
                    unit_code=unit,
                    deadline=None if due is None else iso[k + 1],
                )
            )
            k += 2
        last = history[-1]
        cases.append(
            Case(
                id=f"20250630-{i + 1:06d}",
                service_code=SERVICES.services[svc[i]].code,
                description=DESCRIPTION,
                lon=float(lon[i]),
                lat=float(lat[i]),
                crs="wgs84",
                status=last.status,
                level=last.level,
                grid_code=codes[Level.grid][i],
                unit_code=last.unit_code,
                community_code=codes[Level.community][i],
                street_code=codes[Level.street][i],
                district_code=codes[Level.district][i],
                officer=officers[i] if last.level is Level.grid else None,
                deadline=last.deadline,
                requested=req_iso[i],
                updated=last.at,
                version=len(history),
                escalations=int(escalations[i]),
                history=tuple(history),
            )
        )
    closed_iso = np.char.add(
        np.datetime_as_string(closed_at.astype("datetime64[s]"), unit="s"), "Z"
    ).astype(object)
    rows = pd.DataFrame(
        {
            "id": [c.id for c in cases],
            "grid_code": codes[Level.grid],
            "service_code": [c.service_code for c in cases],
            "status": [c.status.value for c in cases],
            "escalations": escalations,
            "requested": req_iso,
            "deadline": [c.deadline for c in cases],
            "closed_at": np.where(closed_at >= 0, closed_iso, None),
        }
    )
    return Synthetic(cases, rows, now, now - timedelta(days=90))


PG_STATS = """
SELECT grid_code,
       count(*) AS total,
       {statuses},
       sum(escalations) AS escalations,
       count(*) FILTER (WHERE status IN ('reported', 'registered', 'dispatched')
                        AND deadline < %(now)s) AS overdue_open,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM closed_at - requested) / 3600)
           FILTER (WHERE closed_at IS NOT NULL) AS median_hours_to_close
FROM bench_case_rows
WHERE requested >= %(start)s AND requested < %(end)s
GROUP BY grid_code
ORDER BY grid_code
""".format(
    statuses=",\n       ".join(
        f"count(*) FILTER (WHERE status = '{s.value}') AS {s.value}" for s in CaseStatus
    )
)


def pg_load(url: str, rows: pd.DataFrame) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_case_rows")
        conn.execute(
            "CREATE TABLE bench_case_rows (id text PRIMARY KEY, grid_code text, "
            "service_code text, status text, escalations integer, requested timestamptz, "
            "deadline timestamptz, closed_at timestamptz)"
        )
        cols = list(rows.columns)
        rows = rows.astype(object).where(rows.notna(), None)  # NULL, never the text "nan"
        with conn.cursor().copy(f"COPY bench_case_rows ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows.itertuples(index=False, name=None):
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE bench_case_rows")


def pg_stats(url: str, syn: Synthetic, repeats: int) -> tuple[float, pd.DataFrame, str]:
    params = {"now": syn.now, "start": syn.start, "end": syn.now}
    with psycopg.connect(url) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        workers = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]  # type: ignore[index]

        def query() -> list[tuple[Any, ...]]:
            return conn.execute(PG_STATS, params).fetchall()

        t, rows = best_of(query, repeats)
    cols = ["grid_code", "total", *(s.value for s in CaseStatus)]
    cols += ["escalations", "overdue_open", "median_hours_to_close"]
    return t, pd.DataFrame(rows, columns=cols), f"PostgreSQL {version}, {workers} parallel workers"


def compare(ours: pd.DataFrame, pg: pd.DataFrame) -> tuple[int, int, list[str]]:
    """Grids whose every PostGIS figure equals ours: (agreeing, compared, a few examples)."""
    mine = ours.set_index("code")
    agree, examples = 0, []
    for row in pg.itertuples(index=False):
        m = mine.loc[row.grid_code]
        same = int(m["total"]) == row.total
        same &= all(
            int(m[col]) == getattr(row, s.value)
            for s, col in zip(CaseStatus, STATUS_COLUMNS, strict=True)
        )
        same &= int(m["escalations"]) == row.escalations
        same &= int(m["overdue_open"]) == row.overdue_open
        a, b = m["median_hours_to_close"], row.median_hours_to_close
        if pd.isna(a) or pd.isna(b):  # no closed case in the grid: both must say so
            same &= bool(pd.isna(a) and pd.isna(b))
        else:
            same &= abs(float(a) - float(b)) < 1e-6
        agree += bool(same)
        if len(examples) < 3:
            examples.append(
                f"{row.grid_code}: total {int(m['total'])}/{row.total}, closed "
                f"{int(m[STATUS_COLUMNS[-1]])}/{row.closed}, overdue {int(m['overdue_open'])}/"
                f"{row.overdue_open}, median h {float(a):.2f}/{float(b):.2f}"
            )
    return agree, len(pg), examples


def bench_stats(
    snap: Snapshot, n: int, repeats: int, pg_url: str | None, seed: int
) -> tuple[list[list[str]], str]:
    t0 = time.perf_counter()
    syn = synthetic_cases(snap, n, seed)
    gen = time.perf_counter() - t0
    events = sum(len(c.history) for c in syn.cases)
    say(f"{n:,} cases with {events:,} events built in {gen:.1f} s")
    t_frame, frame = best_of(lambda: case_frame(syn.cases), repeats)
    say(f"case_frame {t_frame:.2f} s")
    times: dict[Level, float] = {}
    tables: dict[Level, pd.DataFrame] = {}
    for level in (Level.grid, Level.community, Level.street, Level.district):
        times[level], tables[level] = best_of(
            lambda lv=level: case_stats(frame, snap, lv, syn.start, syn.now, syn.now, SERVICES),
            repeats,
        )
        say(f"case_stats by {level.value}: {times[level]:.3f} s, {len(tables[level])} rows")
    ours_grid = t_frame + times[Level.grid]
    # What GET /api/v1/cases/stats reads before the frame: the period's cases from the store.
    with tempfile.TemporaryDirectory() as tmp:
        store = FilesCaseStore(Path(tmp))
        with open(store.path, "wb") as fh:
            fh.writelines(orjson.dumps(c.to_dict()) + b"\n" for c in syn.cases)
        q = CaseQuery(start=syn.start, end=syn.now, limit=n)
        t_cold, (_, matched) = best_of(lambda: store.query(q), 1)
        t_warm, _ = best_of(lambda: store.query(q), repeats)
    if matched != n:
        raise RuntimeError(f"the store query found {matched} of {n} cases")
    say(f"FilesCaseStore.query: first {t_cold:.2f} s, warm {t_warm:.2f} s")
    pg_t, pg_note, check = None, "", "no PostGIS (GEO_SERVICE_TEST_DATABASE_URL unset)"
    agree_note = ""
    if pg_url:
        pg_load(pg_url, syn.rows)
        pg_t, pg_table, pg_note = pg_stats(pg_url, syn, repeats)
        agree, compared, examples = compare(tables[Level.grid], pg_table)
        say(f"PostGIS GROUP BY {pg_t:.3f} s; {agree}/{compared} grids agree; {examples}")
        check = f"{agree:,} / {compared:,} grids agree on all 10 figures"
        if agree != compared:
            raise RuntimeError(f"case_stats and PostGIS disagree: {agree}/{compared}")
        total_ok = int(tables[Level.district]["total"].sum()) == n
        if not total_ok:
            raise RuntimeError("the district totals do not add up to the cases")
        check += f"; district totals add up to {n:,}"
        agree_note = " For example (ours / PostGIS): " + "; ".join(examples[:2]) + "."

    def vs_pg(t: float) -> str:
        if pg_t is None:
            return ""
        return f"ours {pg_t / t:.1f}x faster" if t < pg_t else f"PostGIS {t / pg_t:.1f}x faster"

    pg_cell = "" if pg_t is None else f"{pg_t:.3f}"
    rows = [
        [f"`case_frame` ({n:,} cases, {events:,} events)", f"{t_frame:.3f}", "", ""],
        ["`case_stats` by grid (frame built)", f"{times[Level.grid]:.3f}", pg_cell,
         vs_pg(times[Level.grid])],
        ["`case_frame` + `case_stats` by grid", f"{ours_grid:.3f}", pg_cell, vs_pg(ours_grid)],
        ["  the stats endpoint's read first: `FilesCaseStore.query` of the 90 days, first "
         "call (parses `cases.jsonl`) / warm", f"{t_cold:.3f} / {t_warm:.3f}", "", ""],
        ["`case_stats` by community", f"{times[Level.community]:.3f}", "", ""],
        ["`case_stats` by street", f"{times[Level.street]:.3f}", "", ""],
        ["`case_stats` by district", f"{times[Level.district]:.3f}", "", ""],
        ["check: ours vs PostGIS per grid", check, "", ""],
    ]  # fmt: skip
    note = (
        f"{n:,} synthetic cases over {len(snap.grids):,} grids built in {gen:.0f} s (not "
        f"timed); PostGIS: {pg_note or 'skipped'}, table `bench_case_rows` (id, grid_code, "
        "service_code, status, escalations, requested, deadline, closed_at) loaded with COPY and "
        "VACUUM ANALYZE (not timed); time = execute + fetch of one GROUP BY grid_code with "
        "FILTERed counts per status, sum of escalations, overdue_open and "
        "`percentile_cont(0.5)` of hours to close. PostGIS gets `closed_at` as a column (the "
        "store keeps it only inside each case's history, `doc` jsonb), so the fair comparison "
        "for a cold question is frame + stats; stats alone is the cost once the frame exists."
        + agree_note
    )
    return rows, note


# -- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_cases", description=__doc__)
    p.add_argument("--seconds", type=float, default=8.0, help="each HTTP phase")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=int, default=40, help="reports filed before timing")
    p.add_argument("--inprocess-seconds", type=float, default=3.0)
    p.add_argument("--photos", type=int, default=1000, help="distinct photos generated")
    p.add_argument("--cases", type=int, default=100_000, help="synthetic cases for the stats")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=20250630)
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-stats", action="store_true")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    argv, host, started = begin(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    pg_url = os.environ.get("GEO_SERVICE_TEST_DATABASE_URL")
    snap = load_snapshot(Settings(data_dir=ROOT / "data", database_url=None))
    filing_rows: list[list[str]] = []
    stats_rows: list[list[str]] = []
    stats_note = ""
    pool_kb = 0.0
    dbs = PgDatabases(pg_url) if pg_url else None
    try:
        db = None
        if dbs is not None:
            db = dbs.create("cases")
            seed_postgis(db)
        if not args.skip_http:
            t0 = time.perf_counter()
            pool = photo_pool(args.photos, args.seed)
            pool_kb = float(np.mean([len(b) for b in pool])) / 1024
            say(f"{len(pool)} photos ({pool_kb:.0f} KB mean) in {time.perf_counter() - t0:.1f} s")
            opts = Args(args.seconds, args.clients, args.warmup, args.inprocess_seconds)
            with tempfile.TemporaryDirectory() as tmp:
                data_dir = copy_data(Path(tmp) / "data")
                files = FilesBackend(data_dir)
                env = {"GEO_SERVICE_DATABASE_URL": ""}
                rows, _ = bench_filing(
                    "embedded files", files, env, data_dir, Path(tmp) / "media_files", snap,
                    pool, opts, args.seed + 1,
                )  # fmt: skip
                filing_rows += rows
                if db is not None:
                    pg = PostGISBackend(db, pool_size=args.clients)
                    try:
                        rows, _ = bench_filing(
                            "PostGIS", pg, {"GEO_SERVICE_DATABASE_URL": db}, data_dir,
                            Path(tmp) / "media_pg", snap, pool, opts, args.seed + 2,
                        )  # fmt: skip
                    finally:
                        pg.close()
                    filing_rows += rows
                filing_rows.append(bench_photo_cleaning(pool, args.inprocess_seconds))
        if not args.skip_stats:
            stats_rows, stats_note = bench_stats(snap, args.cases, args.repeats, db, args.seed)
    finally:
        if dbs is not None:
            dbs.drop_all()

    heads1 = ["backend", "measurement", "per s", "p50 / p99 / max (ms)", "vs baseline (same run)"]
    heads2 = ["measurement", f"ours (s, best of {args.repeats})", "PostGIS (s)", "ratio"]
    if filing_rows:
        print_table("随手拍 filing over HTTP (geo-service serve --workers 2)", heads1, filing_rows)
    if stats_rows:
        print_table(f"随手拍 statistics, {args.cases:,} cases", heads2, stats_rows)
    elapsed = time.perf_counter() - started
    say(f"took {elapsed:.0f} s")
    if args.no_write:
        return
    lines = [
        "## 随手拍 cases: filing over HTTP, and the statistics query", "",
        f"Command: `{command('bench.bench_cases', argv)}` (took {elapsed:.0f} s)  ",
        f"Run {stamp()} on {host}.", "",
    ]  # fmt: skip
    if filing_rows:
        lines += [
            f"Filing: `geo-service serve --workers 2` as shipped (rate limit off, photos in a "
            f"temp `GEO_SERVICE_MEDIA_DIR`) on a copy of data/ and on a fresh PostGIS database "
            f"seeded with data/. {args.clients} client threads (one httpx client each, on the "
            f"same 2 CPUs as the server) for {args.seconds:g} s per phase; each POST is a form "
            "(or multipart with `media`) with its own point inside a grid, category and "
            f"Idempotency-Key; photos are distinct 1600x1200 JPEGs, {pool_kb:.0f} KB mean, "
            "generated before timing. The server's answer comes after the case is durable "
            "(files: `cases.jsonl` + audit fsynced; PostGIS: committed) and, with a photo, "
            "after it was decoded, re-encoded without metadata and stored (fsynced). Baselines: "
            "GET `/open311/v2/requests/{id}.json` on the same server, and `CaseDesk.file` "
            "in-process on the same backend (routing + store, no HTTP, no form, no photo). "
            "Every acknowledged id was read back with GET `requests.json?service_request_id=` "
            "and found in the store with its key; each photo case's file exists, one file per "
            "case.",
            "",
            markdown_table(heads1, filing_rows),
            "",
        ]
    if stats_rows:
        lines += [f"Statistics: {stats_note}", "", markdown_table(heads2, stats_rows)]
    write_section("bench_cases", lines)


if __name__ == "__main__":
    main()
