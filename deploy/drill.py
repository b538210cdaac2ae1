"""The failure drill on a running loopback arrangement (deploy/loopback.py), under a steady
bounded read load through nginx (4 clients asking GET locate and stalls nearest, one request
after another, each checked for content):

1. kill -9 one instance: nginx passes the reads it was serving to the others; it restarts.
2. stop the primary (``pg_ctl stop -m fast``): reads keep answering from memory, writes get
   503 with Retry-After and change nothing, what was acknowledged before is still there, and
   after the primary's restart every instance writes again by itself.
3. an edit through one instance: every instance serves it, and the replica has it.

Each phase returns what it observed (requests, errors, latency percentiles, the answers of the
writes, how long things took); tests/test_deploy.py asserts on them, ``print_report`` prints them.
Only "eventually" has a ceiling (generous); nothing here asserts on speed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from deploy.loopback import Loopback, Say

STALL = "XLP-370705-005"
REPORT_POINT = {"long": "119.16", "lat": "36.71"}  # Open311 names; inside a grid
EVENTUALLY_S = 30.0  # ceiling of every "eventually": generous, never a measurement


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the answer came
    ms: float
    ok: bool
    what: str  # "200" or the problem


def read_paths(bounds: list[float], n: int = 200, seed: int = 13) -> list[str]:
    """GET locate and stalls nearest at random points over the data's bounds (some outside)."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    lon = rng.uniform(x0, x1, n)
    lat = rng.uniform(y0, y1, n)
    return [
        f"/api/v1/grids/locate?lon={x:.6f}&lat={y:.6f}"
        if i % 2 == 0
        else f"/api/v1/stalls/nearest?lon={x:.6f}&lat={y:.6f}&k=3"
        for i, (x, y) in enumerate(zip(lon, lat, strict=True))
    ]


def _answer_ok(path: str, r: httpx.Response) -> str | None:
    """None when the answer is right in kind; else what is wrong with it."""
    if r.status_code != 200:
        return f"{r.status_code} {r.text[:120]!r}"
    body = r.json()
    if path.startswith("/api/v1/grids/locate"):
        if body.get("grid") is None and body.get("nearest") is None:
            return "locate answered neither a grid nor the nearest one"
    elif len(body.get("results", [])) != 3:
        return f"nearest answered {len(body.get('results', []))} stalls, not 3"
    return None


class Load:
    """``threads`` clients, each sending its next request when the last one answered, at most
    ``rate`` a second, until ``stop()`` or ``cap`` requests in all (bounded whatever happens)."""

    def __init__(
        self, url: str, paths: list[str], threads: int = 4, rate: float = 40, cap: int = 5_000
    ) -> None:
        self.url = url
        self.paths = paths
        self.interval = 1 / rate
        self.cap = cap
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(k, threads), daemon=True)
            for k in range(threads)
        ]

    @property
    def count(self) -> int:
        return len(self.samples)

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def _client(self, k: int, step: int) -> None:
        i = k
        with httpx.Client(base_url=self.url, timeout=15) as http:
            due = time.monotonic()
            while not self._stop.is_set() and self.count < self.cap:
                path = self.paths[i % len(self.paths)]
                i += step
                due += self.interval
                self._stop.wait(max(0.0, due - time.monotonic()))
                t0 = time.monotonic()
                try:
                    problem = _answer_ok(path, http.get(path))
                except (httpx.HTTPError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                t1 = time.monotonic()
                with self._lock:
                    self.samples.append(
                        Sample(t1, (t1 - t0) * 1000, problem is None, problem or "200")
                    )

    def wait_for(self, n: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count < n and not self._stop.is_set():
            if time.monotonic() > deadline or self.count >= self.cap:
                raise RuntimeError(f"the load made {self.count} of {n} requests")
            time.sleep(0.02)

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return list(self.samples)


@dataclass
class Figures:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    problems: list[str]

    @classmethod
    def of(cls, samples: list[Sample]) -> Figures:
        ms = np.array([s.ms for s in samples]) if samples else np.zeros(1)
        bad = [s.what for s in samples if not s.ok]
        return cls(
            len(samples),
            len(bad),
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)),
            float(ms.max()),
            bad[:5],
        )


@dataclass
class Phase:
    name: str
    reads: Figures
    facts: dict[str, Any] = field(default_factory=dict)  # printed
    detail: dict[str, Any] = field(default_factory=dict)  # for the test, not printed


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    etag: str | None
    seconds: float
    body: Any

    @classmethod
    def of(cls, r: httpx.Response, t0: float) -> Reply:
        try:
            body = r.json()
        except ValueError:
            body = None
        return cls(
            r.status_code,
            r.headers.get("retry-after"),
            r.headers.get("etag"),
            round(time.monotonic() - t0, 3),
            body,
        )


def eventually(
    check: Callable[[], bool], timeout_s: float = EVENTUALLY_S, every: float = 0.05
) -> float:
    """Seconds until ``check()`` holds (TimeoutError past the ceiling)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"not within {timeout_s:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0


def file_report(http: httpx.Client, url: str, key: str, description: str) -> Reply:
    """POST a 随手拍 report (Open311) with an Idempotency-Key."""
    t0 = time.monotonic()
    r = http.post(
        f"{url}/open311/v2/requests.json",
        headers={"Idempotency-Key": key},
        data={"service_code": "JM01", **REPORT_POINT, "description": description},
    )
    return Reply.of(r, t0)


def stall(http: httpx.Client, url: str) -> tuple[str, dict[str, Any]]:
    """The stall's ETag and properties as ``url`` serves it."""
    r = http.get(f"{url}/api/v1/stalls/{STALL}")
    r.raise_for_status()
    return r.headers["etag"], r.json()["properties"]


def patch_hours(http: httpx.Client, url: str, key: str, etag: str, hours: str) -> Reply:
    t0 = time.monotonic()
    r = http.patch(
        f"{url}/api/v1/stalls/{STALL}",
        headers={"X-API-Key": key, "If-Match": etag},
        json={"hours": hours},
    )
    return Reply.of(r, t0)


def _retried(access_log: Path, after_line: int) -> int:
    """Requests nginx passed to a second instance (two addresses in ``up=``)."""
    lines = access_log.read_text(errors="replace").splitlines()[after_line:]
    return sum(1 for line in lines if re.search(r" up=[^ ]+, ", line))


def _log_lines(path: Path) -> int:
    return len(path.read_text(errors="replace").splitlines()) if path.exists() else 0


def kill_one_instance(
    lb: Loopback, paths: list[str], requests: int = 400, say: Say = _quiet
) -> Phase:
    victim = lb.servers[-1]
    mark = _log_lines(lb.nginx.access_log)
    load = Load(lb.url, paths).start()
    try:
        load.wait_for(requests // 3)
        pid = victim.kill()
        killed_at = time.monotonic()
        say(f"phase 1: kill -9 {pid} (instance {victim.port}) after {load.count} requests")
        load.wait_for(requests)
    finally:
        samples = load.stop()
    victim.wait_ready(timeout_s=180)
    back_s = time.monotonic() - killed_at
    say(f"phase 1: instance {victim.port} serving again {back_s:.1f} s after the kill")
    # nginx tries it again once its fail_timeout is over: it rejoins the rotation.
    with httpx.Client(timeout=15) as http:
        rejoin_mark = _log_lines(lb.nginx.access_log)

        def rejoined() -> bool:
            http.get(f"{lb.url}/api/v1/meta")
            lines = lb.nginx.access_log.read_text(errors="replace").splitlines()[rejoin_mark:]
            return any(f"up=127.0.0.1:{victim.port} " in line for line in lines)

        rejoin_s = eventually(rejoined, timeout_s=60, every=0.2)
    return Phase(
        "1. kill -9 one instance",
        Figures.of(samples),
        {
            "killed_pid": pid,
            "restarted_pid": victim.pid,
            "after_kill": sum(1 for s in samples if s.at > killed_at),
            "retried_by_nginx": _retried(lb.nginx.access_log, mark),
            "back_s": round(back_s, 1),
            "rejoined_s": round(rejoin_s, 1),
        },
    )


def database_outage(
    lb: Loopback, paths: list[str], reads_during: int = 300, say: Say = _quiet
) -> Phase:
    key = lb.admin_key
    facts: dict[str, Any] = {}
    mark = _log_lines(lb.nginx.access_log)
    with httpx.Client(timeout=60) as http:
        filed = [
            file_report(http, lb.url, f"drill-before-{i}", f"停电前的举报 {i}") for i in range(3)
        ]
        if any(r.status != 201 for r in filed):
            raise RuntimeError(f"reports before the outage were not filed: {filed}")
        ids = [r.body[0]["service_request_id"] for r in filed]
        etag, _ = stall(http, lb.url)
        ack_edit = patch_hours(http, lb.url, key, etag, "07:00-19:00")
        if ack_edit.status != 200 or not ack_edit.etag:
            raise RuntimeError(f"the edit before the outage was not made: {ack_edit}")
        # As acknowledged (another instance may serve it a few hundred ms later).
        before = (ack_edit.etag, ack_edit.body["properties"]["hours"])

        load = Load(lb.url, paths).start()
        try:
            load.wait_for(50)
            t_stop = time.monotonic()
            lb.primary.stop("fast")
            at_stop = load.count
            say(f"phase 2: primary stopped (pg_ctl stop -m fast) after {at_stop} requests")
            with ThreadPoolExecutor(3) as pool:
                edit = pool.submit(patch_hours, http, lb.url, key, before[0], "06:00-20:00")
                report = pool.submit(file_report, http, lb.url, "drill-outage", "停电时的举报")
                t0 = time.monotonic()
                read_case = pool.submit(
                    lambda: Reply.of(http.get(f"{lb.url}/open311/v2/requests/{ids[0]}.json"), t0)
                )
                outage = {
                    "edit": edit.result(),
                    "report": report.result(),
                    "case": read_case.result(),
                }
            load.wait_for(at_stop + reads_during)
            t_start = time.monotonic()
            lb.primary.start()
            say(
                f"phase 2: primary back after {t_start - t_stop:.1f} s; writes polled on each instance"
            )
            recovered: dict[int, float] = {}
            for inst in lb.servers:

                def writes(inst_url: str = inst.url, port: int = inst.port) -> bool:
                    r = file_report(http, inst_url, f"drill-recover-{port}", "恢复后的举报")
                    return r.status in (200, 201)

                eventually(writes, every=0.5)
                recovered[inst.port] = round(time.monotonic() - t_start, 1)

            def streaming() -> bool:
                sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                return lb.primary.psql(sql).strip() == "1"

            # The replica's WAL receiver retries every wal_retrieve_retry_interval (5 s).
            eventually(streaming, every=0.2)
            facts["replica_streaming_again_s"] = round(time.monotonic() - t_start, 1)
        finally:
            samples = load.stop()
            if not lb.primary.running():  # the drill failed half-way: leave the primary up
                lb.primary.start()
        # The report refused during the outage, sent again with its key: filed now, once.
        again = file_report(http, lb.url, "drill-outage", "停电时的举报")
        twice = file_report(http, lb.url, "drill-outage", "停电时的举报")
        # The edit refused during the outage changed nothing: every instance serves the
        # acknowledged version, and the refused edit's If-Match still holds.
        after = {}
        for inst in lb.servers:
            tag, props = stall(http, inst.url)
            after[inst.port] = (tag, props["hours"])
        retry_edit = patch_hours(http, lb.url, key, before[0], "06:00-20:00")
        kept = {i: http.get(f"{lb.url}/open311/v2/requests/{i}.json") for i in ids}
    outage_samples = [s for s in samples if t_stop <= s.at <= t_start]
    facts.update(
        {
            "outage_s": round(t_start - t_stop, 1),
            "outage_reads": Figures.of(outage_samples),
            "edit_during": outage["edit"],
            "report_during": outage["report"],
            "case_read_during": outage["case"],
            "writes_back_s": recovered,
            "report_again": again,
            "report_twice": twice,
            "stall_acknowledged": before,
            "stall_after": after,
            "edit_again": retry_edit,
        }
    )
    refused = [
        (m.group(1), m.group(2))
        for line in lb.nginx.access_log.read_text(errors="replace").splitlines()[mark:]
        if (m := re.search(r'"(\S+ \S+) HTTP/[\d.]+" 503 .* up=(.+?) us=', line))
    ]
    facts["refused_by"] = refused  # (request, the instances nginx asked)
    detail = {"kept": {i: (r.status_code, r.json()) for i, r in kept.items()}, "ids": ids}
    return Phase("2. stop the primary", Figures.of(samples), facts, detail)


def edit_everywhere(lb: Loopback, paths: list[str], say: Say = _quiet) -> Phase:
    via = lb.servers[0]
    load = Load(lb.url, paths).start()
    seen: dict[str, float] = {}
    try:
        load.wait_for(50)
        with httpx.Client(timeout=30) as http:
            etag, _ = stall(http, via.url)
            t0 = time.monotonic()
            edit = patch_hours(http, via.url, lb.admin_key, etag, "06:30-21:30")
            if edit.status != 200 or not edit.etag:
                raise RuntimeError(f"the edit through {via.url} answered {edit}")
            version = edit.etag.removeprefix('W/"').removesuffix('"')
            say(f"phase 3: edited {STALL} through instance {via.port}: version {version}")
            for inst in lb.servers:

                def served(url: str = inst.url) -> bool:
                    tag, props = stall(http, url)
                    return tag == edit.etag and props["hours"] == "06:30-21:30"

                eventually(served, every=0.01)
                seen[f"instance {inst.port}"] = round((time.monotonic() - t0) * 1000, 1)
            with psycopg.connect(lb.replica_url, autocommit=True) as rep:

                def replicated() -> bool:
                    row = rep.execute(
                        "SELECT hours, version FROM stalls WHERE code = %s", (STALL,)
                    ).fetchone()
                    return row is not None and row[0] == "06:30-21:30" and str(row[1]) == version

                eventually(replicated, every=0.01)
                seen["replica (SQL)"] = round((time.monotonic() - t0) * 1000, 1)
        load.wait_for(load.count + 100)
    finally:
        samples = load.stop()
    tables = {}
    for name, url in (("primary", lb.database_url), ("replica", lb.replica_url)):
        with psycopg.connect(url) as conn:
            tables[name] = conn.execute(
                "SELECT (SELECT count(*) FROM cases), (SELECT max(id) FROM audit_log), "
                "(SELECT revision FROM dataset_state WHERE id = 1)"
            ).fetchone()
    return Phase(
        "3. an edit through one instance",
        Figures.of(samples),
        {"edit": edit, "version": version, "served_after_ms": seen, "tables": tables},
    )


def run_drill(lb: Loopback, say: Say = _quiet) -> list[Phase]:
    with httpx.Client(timeout=30) as http:
        bounds = http.get(f"{lb.url}/api/v1/meta").json()["bounds"]
    paths = read_paths(bounds)
    return [
        kill_one_instance(lb, paths, say=say),
        database_outage(lb, paths, say=say),
        edit_everywhere(lb, paths, say=say),
    ]


def _show(value: Any) -> str:
    if isinstance(value, Reply):
        wait = f" Retry-After: {value.retry_after}" if value.retry_after else ""
        return f"{value.status}{wait} after {value.seconds:.2f} s"
    if isinstance(value, Figures):
        return (
            f"{value.requests} reads, {value.errors} failed, p50 {value.p50_ms:.1f} ms, "
            f"p99 {value.p99_ms:.1f} ms, max {value.max_ms:.1f} ms"
        )
    return str(value)


def print_report(phases: list[Phase]) -> None:
    print(f"{'phase':34} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for p in phases:
        r = p.reads
        print(
            f"{p.name:34} {r.requests:8d} {r.errors:6d} {r.p50_ms:7.1f} {r.p99_ms:7.1f} {r.max_ms:7.1f}"
        )
        for problem in r.problems:
            print(f"    failed: {problem}")
        for k, v in p.facts.items():
            print(f"    {k}: {_show(v)}")
