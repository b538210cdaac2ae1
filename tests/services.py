"""Real service processes for tests: uvicorn on a free loopback port, stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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
    env.update(extra)
    return env


@contextmanager
def service(env: dict[str, str], timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``geo_service`` under uvicorn; yields its base URL once /readyz answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "geo_service.web.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=child_env(env), stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield _ready(proc, log, f"http://127.0.0.1:{port}", timeout_s)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(proc: subprocess.Popen[bytes], log: IO[bytes], url: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
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
