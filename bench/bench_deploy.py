"""Throughput of 1, 2 and 3 instances behind nginx (the deploy/ arrangement on loopback),
against the shipped single `geo-service serve` answering directly, in the same run.

    python -m bench.bench_deploy                      # records bench/RESULTS.md
    python -m bench.bench_deploy --seconds 5 --rounds 2

deploy/loopback.py starts PostgreSQL (primary + replica) with the bundled data, 3 instances as
the systemd unit runs them (one worker each) and nginx with deploy/nginx/geo-service.conf; two
more nginx with the same file front the first 1 and 2 instances. Baselines: `geo-service serve`
with its defaults (one worker per CPU) on the same database, and one instance without nginx.
Load: wrk, 64 connections, GET locate over 10,000 random points in the data's bounds (gzip
asked for, like phones; one more row alternates locate and stalls nearest), each configuration
in turn, `--rounds` times; best round reported, median beside it. Server CPU per request = user + system CPU of the configuration's processes
(instances, and nginx where it is in front) over the requests served: steadier than requests/s
on a shared machine, and what sizing needs (requests/s per core = 1 / CPU per request).
The load generator shares this machine's CPUs with the servers: requests/s is a floor.

Then the unit's malloc settings: one instance on a copy of the data takes 96 随手拍 reports with
a 12-megapixel phone photo each (4 clients), once as `geo-service serve` starts by default and
once with the unit's Environment= lines (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_);
resident memory (VmRSS) when ready and after each 32 reports.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.results import command, machine, markdown_table, print_table, stamp, write_section
from bench.timing import cpu_seconds
from deploy.drill import read_paths
from deploy.loopback import REPO, Loopback, Unit, free_ports, nginx_binary

OUT = Path(__file__).resolve().parent / "out"


def say(msg: str) -> None:
    print(f"[bench_deploy] {msg}", flush=True)


@dataclass
class Target:
    name: str
    url: str
    sessions: set[int]  # session ids of its processes (each was started in a session of its own)
    mix: bool = False  # the residents' mix (locate and stalls nearest) instead of locate alone


@dataclass
class Round:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request
    errors: str


def locate_paths(bounds: list[float], n: int, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    lon, lat = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    return [f"/api/v1/grids/locate?lon={x:.6f}&lat={y:.6f}" for x, y in zip(lon, lat, strict=True)]


def wrk_script(paths: list[str], out: Path) -> Path:
    body = ",\n".join(f'"{p}"' for p in paths)
    out.write_text(
        'wrk.headers["Accept-Encoding"] = "gzip, deflate"\n'
        f"local paths = {{\n{body}\n}}\nlocal i = 0\n"
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
    )
    return out


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(target: Target, script: Path, seconds: float, connections: int) -> Round:
    cpu0 = cpu_seconds(target.sessions)
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
        "-s", str(script), target.url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    cpu = cpu_seconds(target.sessions) - cpu0
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out.stdout)
    n = re.search(r"(\d+) requests in", out.stdout)
    p50 = re.search(r"^\s+50%\s+(\S+)", out.stdout, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out.stdout, re.M)
    if not (rps and n and p50 and p99):
        raise RuntimeError(f"wrk output not understood:\n{out.stdout}\n{out.stderr}")
    errors = "; ".join(re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out.stdout))
    requests = int(n.group(1))
    return Round(
        float(rps.group(1)),
        requests,
        _ms(p50.group(1)),
        _ms(p99.group(1)),
        cpu / max(requests, 1) * 1e6,
        errors,
    )


def start_serve(env: dict[str, str], log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """The shipped command (by default one worker per CPU) with ``env``; once /readyz is 200."""
    port = free_ports(1)[0]
    argv = [str(Path(sys.executable).parent / "geo-service"), "serve", "--port", str(port), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"geo-service serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def same_answers(targets: list[Target], paths: list[str]) -> int:
    """Every configuration gives the same grid for the same points (content, not only 200)."""
    with httpx.Client(timeout=30) as http:
        for path in paths:
            answers = {
                t.name: (r := http.get(t.url + path)).status_code == 200
                and (r.json()["grid"] or r.json()["nearest"]["grid"])["code"]
                for t in targets
            }
            if len(set(answers.values())) != 1:
                raise RuntimeError(f"{path}: {answers}")
    return len(paths)


def phone_photos(n: int = 6, seed: int = 5) -> list[bytes]:
    """Distinct 4000 x 3000 JPEGs (about 2.6 MB each, under the 8 MiB cap)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = (rng.random((3000, 4000, 3)) * 40).astype("uint8") + np.uint8(100)
        pixels[:, :, 0] = np.linspace(0, 255, 4000, dtype="uint8")
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def photo_rss(photos: list[bytes], malloc: dict[str, str], batches: int = 3) -> list[int]:
    """VmRSS (MB) of one instance when ready and after each batch of 32 photo reports."""
    tmp = Path(tempfile.mkdtemp(prefix="geo-bench-photos-"))
    data = tmp / "data"
    shutil.copytree(REPO / "data", data, ignore=shutil.ignore_patterns(".geo_service.cache"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_SERVICE_", "MALLOC_"))}
    env |= {
        "GEO_SERVICE_DATA_DIR": str(data),
        "GEO_SERVICE_MEDIA_DIR": str(tmp / "media"),
        "GEO_SERVICE_RATE_LIMIT_ENABLED": "false",
        **malloc,
    }
    proc, url = start_serve(env, tmp / "serve.log", "--workers", "1")
    try:
        rss = [rss_mb(proc.pid)]
        failed: list[str] = []
        for batch in range(batches):

            def client(k: int, batch: int = batch) -> None:
                with httpx.Client(timeout=120) as http:
                    for j in range(k, 32, 4):
                        r = http.post(
                            f"{url}/open311/v2/requests.json",
                            headers={"Idempotency-Key": f"photo-{batch}-{j}"},
                            data={
                                "service_code": "JM01",
                                "lat": "36.71",
                                "long": "119.16",
                                "description": "占道经营，见照片",
                            },
                            files={"media": ("p.jpg", photos[j % len(photos)], "image/jpeg")},
                        )
                        if r.status_code != 201:
                            failed.append(f"{r.status_code}: {r.text[:200]}")
                            return

            clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
            for t in clients:
                t.start()
            for t in clients:
                t.join()
            if failed:
                raise RuntimeError(f"photo reports refused: {failed[0]}")
            rss.append(rss_mb(proc.pid))
        return rss
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=6.0, help="each measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    OUT.mkdir(exist_ok=True)
    before = machine()
    t_start = time.monotonic()
    lb = Loopback(instances=3, say=say)
    serve: subprocess.Popen[bytes] | None = None
    try:
        lb.start()
        serve, serve_url = start_serve(lb.env, OUT / "deploy_serve.log")
        ports = [s.port for s in lb.servers]
        one, two = lb.balancer(ports[:1]), lb.balancer(ports[:2])
        inst = {s.port: s.pid for s in lb.servers}
        assert lb.nginx.proc and one.proc and two.proc
        targets = [
            Target("`geo-service serve` as shipped (2 workers), direct", serve_url, {serve.pid}),
            Target("1 instance (1 worker), direct", lb.servers[0].url, {inst[ports[0]]}),
            Target("nginx → 1 instance", one.url, {one.proc.pid, inst[ports[0]]}),
            Target("nginx → 2 instances", two.url, {two.proc.pid, *(inst[p] for p in ports[:2])}),
            Target("nginx → 3 instances", lb.url, {lb.nginx.proc.pid, *inst.values()}),
            Target(
                "nginx → 3 instances, locate + stalls nearest (k=3)",
                lb.url,
                {lb.nginx.proc.pid, *inst.values()},
                mix=True,
            ),
        ]
        bounds = httpx.get(f"{lb.url}/api/v1/meta", timeout=30).json()["bounds"]
        paths = locate_paths(bounds, 10_000)
        checked = same_answers(targets, paths[:50])
        script = wrk_script(paths, OUT / "wrk_deploy.lua")
        mix = wrk_script(read_paths(bounds, 10_000), OUT / "wrk_deploy_mix.lua")
        rounds: dict[str, list[Round]] = {t.name: [] for t in targets}
        for r in range(args.rounds):
            for t in targets:
                lua = mix if t.mix else script
                run_wrk(t, lua, 1.0, args.connections)  # warm-up: connections, caches
                res = run_wrk(t, lua, args.seconds, args.connections)
                rounds[t.name].append(res)
                say(
                    f"round {r + 1}: {t.name}: {res.rps:,.0f} req/s, {res.cpu_us:.0f} µs CPU/req"
                    + (f" ({res.errors})" if res.errors else "")
                )
    finally:
        if serve is not None:
            stop(serve)
        lb.stop()
    base = max(x.rps for x in rounds[targets[0].name])
    heads = [
        "configuration", "req/s (best round)", "median round", "p50 / p99 ms (best round)",
        "server CPU µs/request (best)", "req/s vs shipped serve", "errors",
    ]  # fmt: skip
    rows = []
    for t in targets:
        rs = rounds[t.name]
        best = max(rs, key=lambda x: x.rps)
        rows.append(
            [
                t.name,
                f"{best.rps:,.0f}",
                f"{float(np.median([x.rps for x in rs])):,.0f}",
                f"{best.p50_ms:.1f} / {best.p99_ms:.1f}",
                f"{min(x.cpu_us for x in rs):.0f}",
                f"{best.rps / base:.2f}x",
                "; ".join(x.errors for x in rs if x.errors) or "none",
            ]
        )
    title = "Deployment: instances behind nginx vs the shipped serve (GET locate, wrk -c64)"
    print_table(title, heads, rows)
    say("photo uploads: resident memory of one instance, glibc defaults vs the unit's")
    photos = phone_photos()
    tuned = Unit.read().environment
    unit_env = ", ".join(f"{k}={v}" for k, v in tuned.items())
    memory = [
        ("glibc defaults (no MALLOC_ variables)", photo_rss(photos, {})),
        (f"the unit's: {unit_env}", photo_rss(photos, tuned)),
    ]
    mem_heads = ["malloc", "VmRSS MB ready", "after 32 / 64 / 96 reports", "growth"]
    mem_rows = [
        [name, str(mb[0]), " / ".join(str(x) for x in mb[1:]), f"+{mb[-1] - mb[0]} MB"]
        for name, mb in memory
    ]
    print_table("One instance, 96 reports with a 12 MP photo (4 clients)", mem_heads, mem_rows)
    took = time.monotonic() - t_start
    lines = [
        "## Deployment: 1, 2 and 3 instances behind nginx (issue 13)",
        "",
        f"Command: `{command('bench.bench_deploy', argv or sys.argv[1:])}` (took {took:.0f} s)  ",
        f"Run {stamp()} on {before}; nginx {nginx_version()}. The deploy/ arrangement on "
        "loopback (deploy/loopback.py): PostgreSQL 15 primary + streaming replica, the bundled "
        "data (1,355 grids), instances started as deploy/systemd/geo-service@.service starts "
        "them (`geo-service serve --workers 1`, uvloop, httptools), nginx with "
        "deploy/nginx/geo-service.conf (worker_processes auto, keepalive to the instances). "
        f"Load: wrk -t1 -c{args.connections}, GET locate over 10,000 random points of the data's "
        "bounds with gzip asked for (the last row: half of them stalls nearest, k=3, as the "
        f"drill asks), {args.seconds:g} s per round after a 1 s warm-up, "
        f"{args.rounds} rounds taking the configurations in turn; {checked} points checked to "
        "give the same grid everywhere. wrk, nginx and the instances share the machine's "
        "CPUs (and other jobs ran on it): requests/s is a floor, CPU per request the figure "
        "to size with.",
        "",
        markdown_table(heads, rows),
        "",
        "Photo uploads and the unit's malloc settings: one instance (`serve --workers 1`, "
        "embedded files) takes 96 随手拍 reports, each with a distinct 4000 x 3000 JPEG of about "
        f"{np.mean([len(p) for p in photos]) / 1e6:.1f} MB (4 clients); resident memory of the "
        "process (VmRSS):",
        "",
        markdown_table(mem_heads, mem_rows),
    ]
    write_section("bench_deploy", lines)


def nginx_version() -> str:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().split("/")[-1]


if __name__ == "__main__":
    main()
