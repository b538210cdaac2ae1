"""deploy/ as it runs in production, on loopback: a PostgreSQL primary and a pg_basebackup
replica, the bundled data, 3 `geo-service serve` instances started as the systemd unit starts
them, Debian's nginx with deploy/nginx/geo-service.conf in front (deploy/loopback.py). Under a
steady read load through nginx (deploy/drill.py): kill -9 an instance, stop the primary, edit
through one instance. Expensive (about a minute): one arrangement for the module, torn down
(processes and folders) whatever happens. Speed is printed, never asserted; "eventually" has
generous ceilings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from deploy import drill
from deploy.loopback import ENV_FILE, UNIT, Loopback, MissingTool, Unit, env_file
from geo_service.core.settings import Settings
from tests.conftest import missing

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def arrangement(request: pytest.FixtureRequest) -> Iterator[Loopback]:
    try:
        lb = Loopback(access_log=True, say=print)
    except MissingTool as exc:
        missing(str(exc))
    request.addfinalizer(lb.stop)  # before start: a failed start is torn down too
    lb.start()
    yield lb


@pytest.fixture(scope="module")
def paths(arrangement: Loopback) -> list[str]:
    bounds = httpx.get(f"{arrangement.url}/api/v1/meta", timeout=30).json()["bounds"]
    return drill.read_paths(bounds)


def report(phase: drill.Phase) -> None:
    drill.print_report([phase])


def test_the_deploy_files_name_only_real_settings() -> None:
    """A misspelt variable in the environment file would be ignored without a word."""
    known = {f"GEO_SERVICE_{name.upper()}" for name in Settings.model_fields}
    unit = Unit.read(UNIT)
    used_by_unit = set(re.findall(r"\$\{(\w+)\}", " ".join(unit.exec_start)))
    unknown = set(env_file(ENV_FILE)) - known - used_by_unit
    assert not unknown, f"{ENV_FILE.name} sets what no setting reads: {sorted(unknown)}"
    assert unit.exec_start[1:3] == ["serve", "--host"] and "%i" in unit.exec_start


def test_systemd_reads_the_unit_without_a_complaint(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    geo = Path(sys.executable).parent / "geo-service"  # the unit's /opt path is not here
    unit = UNIT.read_text(encoding="utf-8").replace(
        "/opt/geo_service/.venv/bin/geo-service", str(geo)
    )
    (tmp_path / UNIT.name).write_text(unit, encoding="utf-8")
    out = subprocess.run(
        [analyze, "verify", "--man=no", "./geo-service@8001.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_the_service_sees_the_client_not_nginx(arrangement: Loopback) -> None:
    """The rate limit and the logs key on the client's address: nginx overwrites whatever
    X-Forwarded-For the client sent, and the instances trust it from nginx only."""
    marker = "/api/v1/grids/locate?lon=119.1234567&lat=36.7123456"
    transport = httpx.HTTPTransport(local_address="127.0.0.7")
    with httpx.Client(transport=transport, timeout=30) as http:
        r = http.get(f"{arrangement.url}{marker}", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200 and r.json()["point"]["wgs84"]["lon"] == 119.1234567
    lines = [
        line
        for inst in arrangement.servers
        for line in inst.log.read_text(errors="replace").splitlines()
        if marker in line
    ]
    assert len(lines) == 1, lines
    assert re.search(r" 127\.0\.0\.7:\d+ - ", lines[0]), lines[0]
    # Straight to an instance from another address, the header is not believed.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.8")) as http:
        direct = http.get(
            f"{arrangement.servers[0].url}{marker}&crs=wgs84",
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
    assert direct.status_code == 200
    log = arrangement.servers[0].log.read_text(errors="replace")
    assert re.search(r" 127\.0\.0\.8:\d+ - \"GET [^\"]*crs=wgs84", log)
    assert "203.0.113.9" not in log


def test_kill_one_instance_fails_no_read(arrangement: Loopback, paths: list[str]) -> None:
    phase = drill.kill_one_instance(arrangement, paths, requests=400, say=print)
    report(phase)
    facts = phase.facts
    assert phase.reads.requests >= 400 and facts["after_kill"] > 0
    assert phase.reads.errors == 0, phase.reads.problems
    # The dead instance was asked (and nginx passed those reads on) until it was left out...
    assert facts["retried_by_nginx"] >= 1
    # ... and it came back as a new process (Restart=always) that nginx uses again.
    assert facts["restarted_pid"] != facts["killed_pid"]
    assert arrangement.servers[-1].ready()


def _retry_after(reply: drill.Reply) -> int:
    assert reply.retry_after is not None, reply
    return int(reply.retry_after)


def test_database_outage(arrangement: Loopback, paths: list[str]) -> None:
    phase = drill.database_outage(arrangement, paths, say=print)
    report(phase)
    f: dict[str, Any] = phase.facts
    # Reads went on from memory, none failed, while the primary was down.
    assert f["outage_reads"].requests > 0 and f["outage_reads"].errors == 0
    assert phase.reads.errors == 0, phase.reads.problems
    # Writes, and reads of what only the database has, were refused: 503 + Retry-After.
    for name in ("edit_during", "report_during", "case_read_during"):
        reply = f[name]
        assert reply.status == 503, (name, reply)
        assert _retry_after(reply) >= 1
        assert "database" in reply.body["detail"]
    # nginx asked one instance for each (writes are not passed on once sent; a 503 of the
    # database is not retried on instances that share it).
    refused = f["refused_by"]
    assert len(refused) >= 3 and all(", " not in up for _, up in refused), refused
    # Every instance wrote again by itself once the primary was back.
    assert set(f["writes_back_s"]) == {s.port for s in arrangement.servers}
    # The refused edit changed nothing: every instance serves the version acknowledged before
    # (ETag and hours), and the refused edit's If-Match still held afterwards.
    assert f["stall_acknowledged"] == ('W/"2"', "07:00-19:00")
    assert f["stall_after"] == dict.fromkeys(
        [s.port for s in arrangement.servers], f["stall_acknowledged"]
    )
    assert f["edit_again"].status == 200 and f["edit_again"].body["properties"]["hours"] == (
        "06:00-20:00"
    )
    # The refused report, sent again with its key, was filed then, and only once.
    again, twice = f["report_again"], f["report_twice"]
    assert (again.status, twice.status) == (201, 200)
    assert again.body[0]["service_request_id"] == twice.body[0]["service_request_id"]
    # What was acknowledged before the outage is all there.
    for i, case_id in enumerate(phase.detail["ids"]):
        status, body = phase.detail["kept"][case_id]
        assert status == 200 and body[0]["description"] == f"停电前的举报 {i}"
    with psycopg.connect(arrangement.database_url) as conn:
        keys = conn.execute(
            "SELECT idempotency_key, count(*) FROM cases WHERE idempotency_key LIKE 'drill-%' "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    recovered = [(f"drill-recover-{s.port}", 1) for s in arrangement.servers]
    expected = [*(f"drill-before-{i}" for i in range(3)), "drill-outage"]
    assert keys == sorted([*((k, 1) for k in expected), *recovered])


def test_an_edit_reaches_every_instance_and_the_replica(
    arrangement: Loopback, paths: list[str]
) -> None:
    phase = drill.edit_everywhere(arrangement, paths, say=print)
    report(phase)
    assert phase.reads.errors == 0, phase.reads.problems
    served = phase.facts["served_after_ms"]
    assert set(served) == {f"instance {s.port}" for s in arrangement.servers} | {"replica (SQL)"}
    # The replica holds every write: cases, audit rows and the dataset revision.
    tables = phase.facts["tables"]
    assert tables["replica"] == tables["primary"]
    with psycopg.connect(arrangement.replica_url, autocommit=True) as rep:
        assert rep.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        row = rep.execute("SELECT hours FROM stalls WHERE code = %s", (drill.STALL,)).fetchone()
        # Why the instances keep to the primary: a standby refuses LISTEN (docs/deployment.md).
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            rep.execute("LISTEN geo_service_changes")
    assert row == ("06:30-21:30",)
