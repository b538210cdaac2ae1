"""Nothing reported is lost: 8 clients file 50 reports each, with a photo, while the service is
killed with SIGKILL and restarted; every acknowledged id is there exactly once, with its photo.

Clients behave as the phone page does: a report that got no answer (connection refused or cut)
is sent again with the same ``Idempotency-Key``, so a report stored just before the kill is
returned, not filed twice.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from geo_service.runtime import open_case_store
from geo_service.storage.base import Backend
from geo_service.storage.cases import CaseQuery
from geo_service.storage.media import MediaStore
from tests.services import REPO, child_env, free_port, wait_ready

CLIENTS, REPORTS, KILLS = 8, 50, 3


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (seed % 251, (seed * 7) % 253, (seed * 13) % 255)).save(buf, "PNG")
    return buf.getvalue()


class Service:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "uvicorn", "geo_service.web.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        wait_ready(self.proc, self.url, 60, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def test_every_acknowledged_report_survives_kill_9(  # on the files and on PostGIS
    backend: Backend, backend_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    media_dir = tmp_path / "media"
    env = child_env(
        {
            **backend_env,
            "GEO_SERVICE_MEDIA_DIR": str(media_dir),
            "GEO_SERVICE_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    service = Service(env, port)
    service.start()
    acked: dict[str, str] = {}  # idempotency key -> acknowledged id
    lock = threading.Lock()
    errors: list[str] = []
    deadline = time.monotonic() + 240

    def client(c: int) -> None:
        with httpx.Client(base_url=service.url, timeout=15) as http:
            for i in range(REPORTS):
                key = f"client{c}-report{i}"
                while time.monotonic() < deadline:
                    try:
                        r = http.post(
                            "/open311/v2/requests.json",
                            data={"service_code": "JM01", "lat": 36.71 + c * 1e-3,
                                  "long": 119.16 + i * 1e-4, "description": f"第{c}-{i}号"},
                            files={"media": ("p.png", png(c * 1000 + i), "image/png")},
                            headers={"Idempotency-Key": key},
                        )  # fmt: skip
                    except httpx.TransportError:
                        time.sleep(0.05)  # the service is down: try again, same key
                        continue
                    if r.status_code in (200, 201):
                        with lock:
                            acked[key] = r.json()[0]["service_request_id"]
                        break
                    if r.status_code == 503:
                        time.sleep(0.05)
                        continue
                    errors.append(f"{key}: {r.status_code} {r.text[:200]}")
                    break

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for k in range(KILLS):
            target = (k + 1) * CLIENTS * REPORTS // (KILLS + 1)
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            service.kill()  # in the middle of filing, at any instant
            service.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        service.stop()
    assert not errors, errors[:5]
    assert len(acked) == CLIENTS * REPORTS
    store = open_case_store(backend)
    cases, total = store.query(CaseQuery(limit=10_000))
    assert total == CLIENTS * REPORTS  # nothing filed twice, nothing lost
    by_key = {c.idempotency_key: c for c in cases}
    assert len(by_key) == total
    media = MediaStore(media_dir)
    for key, case_id in acked.items():
        case = by_key[key]
        assert case.id == case_id
        assert case.photo is not None and media.exists(case.photo)
        assert Image.open(media.path(case.photo)).size == (24, 16)
