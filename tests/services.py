"""Real service processes for tests: uvicorn on a free loopback port, stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without GEO_SERVICE_* settings, plus ``extra``; the worktree's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEO_SERVICE_")}
    env["PYTHONPATH"] = str(REPO)
    env["GEO_SERVICE_RATE_LIMIT_ENABLED"] = "false"  # one client makes every request of a test
    env.update(extra)
    return env


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def service(env: dict[str, str], timeout_s: float = 60.0, workers: int = 1) -> Iterator[str]:
    """Run ``geo_service`` under uvicorn; yields its base URL once /readyz answers."""
    with server(env, timeout_s, workers) as srv:
        yield srv.url


@contextmanager
def server(env: dict[str, str], timeout_s: float = 60.0, workers: int = 1) -> Iterator[Server]:
    """``service`` with its port and process (uvicorn's supervisor when ``workers`` > 1)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "geo_service.web.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(env), stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            url = wait_ready(proc, f"http://127.0.0.1:{port}", timeout_s, log)
            if workers > 1:
                _workers_ready(proc, workers, timeout_s)
            yield Server(url, port, proc)
        finally:
            stop(proc, 10)


def worker_pids(proc: subprocess.Popen[bytes]) -> set[int]:
    """The worker processes uvicorn's supervisor runs (Linux /proc)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    pids = set()
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.add(pid)
    return pids


def established(pids: set[int], port: int) -> dict[int, int]:
    """How many established TCP connections to ``port`` each process holds (Linux /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    counts = dict.fromkeys(pids, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].rsplit(":", 1)[1], 16)
            if local_port == port and cols[3] == "01" and cols[9] in inodes:
                counts[inodes[cols[9]]] += 1
    return counts


def _workers_ready(proc: subprocess.Popen[bytes], workers: int, timeout_s: float) -> None:
    """Every worker is up and serving (the first /readyz proved only one)."""
    deadline = time.monotonic() + timeout_s
    while len(worker_pids(proc)) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not start")
        time.sleep(0.1)


def serve_command(port: int, workers: int) -> list[str]:
    """``geo-service serve`` on a loopback port, as this interpreter runs it."""
    return [sys.executable, "-m", "geo_service.cli", "serve", "--workers", str(workers),
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM (a graceful shutdown); killed if it has not exited within ``timeout_s``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, timeout_s: float, log: IO[bytes] | None = None
) -> str:
    """``url`` once its /readyz answers 200; an error (with the end of ``log``) if the
    process exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            err = ""
            if log is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
            raise RuntimeError(f"service exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("service did not become ready")
        time.sleep(0.1)


def dask_cluster() -> Any:
    """A Dask cluster of two single-threaded worker processes on loopback, no dashboards
    (a ``distributed.LocalCluster``: use it with ``with``)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )


@contextmanager
def app_in_thread(make_app: Callable[[str], Any], timeout_s: float = 30.0) -> Iterator[Any]:
    """An ASGI app made by ``make_app(base_url)``, served by uvicorn in a thread on a free
    loopback port; yields ``(base_url, app)`` and stops the server at the end."""
    import threading

    import uvicorn

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(base)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
