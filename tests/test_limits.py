"""Limits a hostile client meets: body caps (413), JSON depth (422), requests per client (429).

The server tests run a real ``uvicorn --workers 2``: huge bodies must be refused without being
read, and both workers must still answer afterwards; a flood over connections held by both
workers must get exactly the configured number of requests accepted, which only a counter shared
between the worker processes gives (each worker counting alone would accept twice as many).
References: ``json_depth`` against the depth of the value orjson parses; the shared storage
against the counts of several processes incrementing at once.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from geo_service.core.errors import InputError
from geo_service.core.principal import Role
from geo_service.core.schema import LayerName
from geo_service.core.settings import Settings, bulk_body_bytes
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.storage.base import Backend
from geo_service.web import ratestore
from geo_service.web.app import create_app
from geo_service.web.jsonbody import check_depth, json_depth
from tests import rawdata
from tests.keys import key_for
from tests.services import Server, established, server, worker_pids

LOCATE = "/api/v1/grids/locate?lon=119.16&lat=36.71"
GRID_AT_LOCATE = "370705002012002"
MB = 1 << 20


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


# --- JSON depth -------------------------------------------------------------------------------


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


TRICKY = st.text(alphabet='[]{}"\\,: ab\n\u00e9', max_size=8)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=30,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_depth_is_the_depth_of_the_parsed_value(value: Any, indent: bool) -> None:
    raw = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    assert json_depth(raw) == depth_of(orjson.loads(raw))
    ascii_raw = json.dumps(value).encode()  # \\uXXXX escapes, other spacing
    assert json_depth(ascii_raw) == depth_of(value)


def test_json_depth_ignores_brackets_inside_strings_and_escapes() -> None:
    assert json_depth(b'"[[[["') == 0
    assert json_depth(b'["\\"[[[", 1]') == 1  # an escaped quote does not end the string
    assert json_depth(b'["\\\\", [[1]]]') == 3  # an escaped backslash does not escape the quote
    assert json_depth(b'{"a": "\\\\\\"{{{", "b": [{}]}') == 3
    assert json_depth(b"") == 0
    assert json_depth(deep(1000)) == 1000


def test_check_depth_names_the_problem() -> None:
    check_depth(deep(32), 32)
    check_depth(b"[" + b"[1]," * 10_000 + b"[2]]", 32)  # many brackets, shallow
    with pytest.raises(InputError, match="nested 33 levels deep; at most 32") as info:
        check_depth(deep(33), 32)
    assert info.value.field == "body"


# --- the shared storage -----------------------------------------------------------------------


def test_shm_storage_counts_expires_and_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_000_000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(ratestore, "time", Clock)
    store = ratestore.SharedMemoryStorage(f"shm://{tmp_path}/rl")
    assert [store.incr("a", 60) for _ in range(3)] == [1, 2, 3]
    assert store.incr("b", 60, amount=5) == 5
    assert store.get("a") == 3 and store.get_expiry("a") == now[0] + 60
    assert store.get("never") == 0
    now[0] += 61  # the window is over: counting starts again
    assert store.get("a") == 0 and store.incr("a", 60) == 1
    store.clear("a")
    assert store.get("a") == 0 and store.get("b") == 0
    assert store.incr("b", 60) == 1
    assert store.reset() == 1 and store.get("b") == 0
    assert store.check()
    store.close()


def test_shm_storage_survives_a_full_table(tmp_path: Path) -> None:
    store = ratestore.SharedMemoryStorage(f"shm://{tmp_path}/rl?slots=4")
    for i in range(20):
        assert store.incr(f"client{i}", 60) == 1
    assert store.incr("client19", 60) == 2  # the newest keys are still counted
    store.close()


def _hammer(path: str, n: int) -> None:
    store = ratestore.SharedMemoryStorage(f"shm://{path}")
    limiter = FixedWindowRateLimiter(store)
    item = parse("1000000/hour")
    for _ in range(n):
        limiter.hit(item, "10.0.0.1")
    store.close()


def test_shm_storage_is_shared_by_processes_without_lost_updates(tmp_path: Path) -> None:
    path = str(tmp_path / "rl")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(path, 2000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    store = ratestore.SharedMemoryStorage(f"shm://{path}")
    item = parse("1000000/hour")
    assert store.get(item.key_for("10.0.0.1")) == 8000
    store.close()


def test_shm_default_file_is_per_server_and_private(tmp_path: Path) -> None:
    name = f"test-{tmp_path.name}"
    store = ratestore.SharedMemoryStorage("shm://", name=name)
    try:
        assert store.path == ratestore.default_path(name)
        assert store.path.stat().st_mode & 0o777 == 0o600
    finally:
        store.close()
        store.path.unlink()


# --- in-process: caps, depth, rate limit ------------------------------------------------------


SMALL_CAPS = Settings(
    data_dir=rawdata.DATA_DIR,
    max_body_bytes=1024,
    max_edit_body_bytes=2048,
    max_analysis_body_bytes=3072,
    max_upload_bytes=4096,
    max_bulk_points=100_000,
)
CAPPED = [  # method, path, cap, whether the route reads a body it gets without a key
    ("POST", "/api/v1/grids/locate", bulk_body_bytes(SMALL_CAPS), True),
    ("POST", "/api/v1/coverage/what-if", 3072, True),
    ("POST", "/api/v1/coverage/optimize", 3072, True),
    ("PUT", "/api/v1/layers/grids", 4096, False),
    ("POST", "/api/v1/stalls", 2048, True),
    ("PATCH", "/api/v1/stalls/XLP-370705-005", 2048, True),
    ("PATCH", "/api/v1/vendor-clusters/TDQ-370702-01", 2048, True),
    ("DELETE", "/api/v1/vendor-clusters/TDQ-370702-01", 2048, False),
    ("PATCH", "/api/v1/grids/370705002012002", 2048, True),
    ("GET", "/api/v1/meta", 1024, False),
    ("POST", "/api/v1/meta", 1024, False),
]


@pytest.fixture(scope="module")
def capped(snapshot: Snapshot) -> Iterator[TestClient]:
    with TestClient(create_app(SMALL_CAPS, SnapshotStore(snapshot))) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "cap", "reads"), CAPPED)
def test_each_route_has_its_body_cap(
    capped: TestClient, method: str, path: str, cap: int, reads: bool
) -> None:
    """Just over the cap: 413 (announced, or counted in a chunked body); at the cap: not."""
    over = capped.request(method, path, content=b" " * (cap + 1))
    assert over.status_code == 413, over.text
    body = over.json()
    assert f"at most {cap:,} bytes" in body["detail"]
    assert body["errors"][0]["field"] == "body" and body["limit_bytes"] == cap
    assert over.headers["connection"] == "close"
    chunks = iter([b" " * (cap // 2)] * 3)  # no Content-Length: counted as it arrives
    chunked = capped.request(method, path, content=chunks)
    if reads:
        assert chunked.status_code == 413, chunked.text
    else:  # answered (200, 401, 405) without reading: the rest of the body is not drained
        assert chunked.status_code != 413 and chunked.headers["connection"] == "close"
    assert capped.request(method, path, content=b" " * cap).status_code != 413


def test_the_bulk_cap_follows_the_point_limit() -> None:
    points = [[119.123456789012, 36.123456789012]] * 500_000
    body = orjson.dumps({"points": points, "crs": "wgs84"})
    assert len(body) < bulk_body_bytes(Settings()) < 2 * len(body)


DEEP_BODIES = [
    ("POST", "/api/v1/grids/locate", b'{"points": ' + deep(1000) + b"}"),
    ("POST", "/api/v1/coverage/what-if", b'{"layer": "stalls", "add": ' + deep(1000) + b"}"),
    ("POST", "/api/v1/coverage/optimize", b'{"layer": "stalls", "p": 1, "exclude": ' + deep(40) + b"}"),
    ("POST", "/api/v1/stalls", b'{"code": ' + deep(1000) + b"}"),
    ("PATCH", "/api/v1/stalls/XLP-370705-005", b'{"hours": ' + deep(33) + b"}"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), DEEP_BODIES)
def test_deeply_nested_json_is_a_422_naming_the_nesting(
    client: TestClient, method: str, path: str, body: bytes
) -> None:
    r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "levels deep; at most 32" in r.json()["detail"]


def test_model_bodies_still_parse_and_report_malformed_json(client: TestClient) -> None:
    ok = client.post("/api/v1/coverage/what-if", json={"layer": "stalls", "add": [[119.16, 36.71]]})
    assert ok.status_code == 200, ok.text
    bad = client.post(
        "/api/v1/coverage/what-if",
        content=b'{"layer": ',
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 422 and "malformed JSON" in bad.json()["detail"]


def _limited(snapshot: Snapshot, **overrides: Any) -> TestClient:
    s = Settings(data_dir=rawdata.DATA_DIR, rate_limit_storage="memory://", **overrides)
    return TestClient(create_app(s, SnapshotStore(snapshot)))


def test_past_the_rate_limit_429_with_retry_after(snapshot: Snapshot) -> None:
    with _limited(snapshot, rate_limit_enabled=True, rate_limit="5/minute") as c:
        codes = [c.get(LOCATE).status_code for _ in range(8)]
        assert codes == [200] * 5 + [429] * 3
        r = c.get(LOCATE)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "too many requests" in r.json()["detail"] and r.json()["errors"] == []
        assert c.post("/api/v1/grids/locate", json={"points": []}).status_code == 429
        # Probes and static files are never limited.
        assert all(c.get(p).status_code == 200 for p in ["/healthz", "/readyz"] * 10)
        assert c.get("/static/maps/geomaps.js").status_code == 200


def test_rate_limit_switched_off_never_429(snapshot: Snapshot) -> None:
    with _limited(snapshot, rate_limit_enabled=False, rate_limit="5/minute") as c:
        assert {c.get(LOCATE).status_code for _ in range(50)} == {200}


# --- layer uploads ----------------------------------------------------------------------------


def test_a_layer_upload_over_the_cap_is_413_and_changes_nothing(
    backend: Backend, settings: Settings
) -> None:
    admin = key_for(backend, "admin-wang", Role.admin)
    feats = [dict(f, properties=dict(f["properties"])) for f in rawdata.features("stalls")]
    feats[0]["properties"]["hours"] = "10:00-16:00"
    data = json.dumps({"type": "FeatureCollection", "features": feats}).encode()
    rev = backend.revisions()
    before = backend.get(LayerName.stalls, feats[0]["properties"]["code"])
    small = settings.model_copy(update={"max_upload_bytes": len(data) - 1})
    hdr = {"X-API-Key": admin}
    with TestClient(create_app(small, backend=backend)) as api:
        r = api.put("/api/v1/layers/stalls", content=data, headers=hdr)
        assert r.status_code == 413, r.text
        chunks = (data[i : i + 4096] for i in range(0, len(data), 4096))
        r = api.put("/api/v1/layers/stalls", content=chunks, headers=hdr)
        assert r.status_code == 413, r.text
    assert backend.revisions() == rev
    assert backend.get(LayerName.stalls, feats[0]["properties"]["code"]) == before
    exact = settings.model_copy(update={"max_upload_bytes": len(data)})
    with TestClient(create_app(exact, backend=backend)) as api:
        chunks = (data[i : i + 4096] for i in range(0, len(data), 4096))
        r = api.put("/api/v1/layers/stalls", content=chunks, headers=hdr)
        assert r.status_code == 200, r.text
        assert r.json()["changed"] == 1
    after = backend.get(LayerName.stalls, feats[0]["properties"]["code"])
    assert after is not None and after.properties["hours"] == "10:00-16:00"


# --- a real server with 2 workers -------------------------------------------------------------

LIMIT = 100


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Server]:
    """Rate limited to 100/hour per client with the default storage (shm://, per port)."""
    env = {"GEO_SERVICE_RATE_LIMIT_ENABLED": "true", "GEO_SERVICE_RATE_LIMIT": f"{LIMIT}/hour"}
    with server(env, workers=2) as srv:
        yield srv
    ratestore.default_path(f"port{srv.port}").unlink(missing_ok=True)


def _all_workers_answer(srv: Server, pids: set[int]) -> None:
    assert worker_pids(srv.proc) == pids  # none died (uvicorn would have replaced it)
    for _ in range(20):
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # new connection each
    r = httpx.get(srv.url + LOCATE)
    assert r.status_code == 200 and r.json()["grid"]["code"] == GRID_AT_LOCATE


class Body:
    """500 MB of body, generated 1 MB at a time; ``sent`` says how much the client was asked
    for (what the server did not refuse before reading)."""

    def __init__(self, size: int = 500 * MB) -> None:
        self.size = size
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"0" * MB
        while self.sent < self.size:
            self.sent += MB
            yield chunk


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
def test_a_500_mb_body_is_refused_and_every_worker_lives(
    two_workers: Server, announced: bool
) -> None:
    pids = worker_pids(two_workers.proc)
    assert len(pids) == 2
    body = Body()
    headers = {"Content-Length": str(body.size)} if announced else {}
    r = httpx.post(
        two_workers.url + "/api/v1/grids/locate", content=body, headers=headers, timeout=60
    )
    assert r.status_code == 413, r.text
    assert "request body too large: bulk locate" in r.json()["detail"]
    cap = bulk_body_bytes(Settings())
    # Refused at once (announced) or as soon as the cap was passed (chunked), never read whole.
    assert body.sent < (16 * MB if announced else cap + 64 * MB)
    _all_workers_answer(two_workers, pids)


def test_deep_json_over_http_is_a_4xx(two_workers: Server) -> None:
    for path, body in [
        ("/api/v1/grids/locate", b'{"points": ' + deep(1000) + b"}"),
        ("/api/v1/coverage/what-if", b'{"layer": "stalls", "add": ' + deep(1000) + b"}"),
    ]:
        r = httpx.post(two_workers.url + path, content=body)
        assert r.status_code == 422, r.text
        assert "nested 1001 levels deep" in r.json()["detail"]


def test_a_flood_over_both_workers_gets_exactly_the_limit(two_workers: Server) -> None:
    """10,000 requests from one client (127.0.0.2) over keep-alive connections that both
    workers hold: exactly ``LIMIT`` accepted in all, the rest 429 with Retry-After."""
    pids = worker_pids(two_workers.proc)
    clients: list[httpx.Client] = []
    try:
        held: dict[int, int] = {}
        while len(clients) < 48 and not (held and min(held.values()) >= 1):
            transport = httpx.HTTPTransport(local_address="127.0.0.2")
            c = httpx.Client(base_url=two_workers.url, transport=transport, timeout=30)
            assert c.get("/healthz").status_code == 200  # exempt: opens the connection only
            clients.append(c)
            held = established(pids, two_workers.port)
        assert min(held.values()) >= 1, f"connections per worker: {held}"
        accepted, refused = 0, 0
        for i in range(10_000):
            r = clients[i % len(clients)].get(LOCATE)
            if r.status_code == 200:
                accepted += 1
            else:
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) >= 1
                refused += 1
        # Each worker served at least 10,000 / 48 > LIMIT of these requests on its own
        # connections (still the same ones), so only a shared counter accepts exactly LIMIT.
        assert established(pids, two_workers.port) == held
        assert accepted == LIMIT and refused == 10_000 - LIMIT
    finally:
        for c in clients:
            c.close()
    _all_workers_answer(two_workers, pids)
