"""The case store contract (``storage.cases.CaseStore``), on the files and on PostGIS alike.

Every test runs on both stores (``FilesCaseStore`` on a temporary folder, ``PostgisCaseStore``
on its own test database, emptied before each test); the query expectations are worked out by
hand, and one test checks that both stores answer a set of queries identically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from geo_service.core.cases import (
    Action,
    Case,
    CaseConflict,
    CaseEvent,
    CaseStatus,
    utc_iso,
)
from geo_service.core.errors import NotFoundError
from geo_service.core.principal import Principal, Role
from geo_service.core.schema import Level
from geo_service.storage.audit import AuditEntry
from geo_service.storage.casepg import PostgisCaseStore
from geo_service.storage.cases import CaseMaker, CaseMutation, CaseQuery, FilesCaseStore
from geo_service.storage.postgis import PostGISBackend
from tests.backends import PgDatabases

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2024, 5, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
RESIDENT = Principal(Role.public, "居民")
OFFICER = Principal(Role.officer, "张网格", key_id="k-officer", grids=frozenset({"G1"}))
KEEP: Any = object()  # a step that leaves the deadline as it is

Store = FilesCaseStore | PostgisCaseStore


# -- building cases ------------------------------------------------------------------------------
def new_case(
    seq: str,
    *,
    at: datetime = T0,
    service: str = "road",
    key: str | None = None,
    grid: str | None = "G1",
    community: str = "C1",
    district: str = "D1",
    hours: float | None = 24,
) -> Case:
    requested = utc_iso(at)
    deadline = None if hours is None else utc_iso(at + timedelta(hours=hours))
    level, unit = (Level.grid, grid) if grid else (Level.district, district)
    event = CaseEvent(
        at=requested,
        action=Action.file,
        actor=RESIDENT.name,
        role=RESIDENT.role.value,
        status=CaseStatus.reported,
        level=level,
        grid_code=grid,
        unit_code=unit,
        deadline=deadline,
    )
    return Case(
        id=f"{at.astimezone(SHANGHAI):%Y%m%d}-{seq}",
        service_code=service,
        description=f"{service} problem",
        lon=119.1 + int(seq) / 1000,
        lat=36.7,
        crs="wgs84",
        status=CaseStatus.reported,
        level=level,
        grid_code=grid,
        unit_code=unit,
        community_code=community if grid else None,
        street_code="S1" if grid else None,
        district_code=district,
        officer=None,
        deadline=deadline,
        requested=requested,
        updated=requested,
        idempotency_key=key,
        history=(event,),
    )


def maker(**kw: Any) -> CaseMaker:
    return lambda seq: new_case(seq, **kw)


def step(action: Action, status: CaseStatus, at: datetime, deadline: Any = KEEP) -> CaseMutation:
    def mutate(c: Case) -> Case:
        event = CaseEvent(
            at=utc_iso(at),
            action=action,
            actor=OFFICER.name,
            role=OFFICER.role.value,
            status=status,
            level=c.level,
            grid_code=c.grid_code,
            unit_code=c.unit_code,
            deadline=c.deadline if deadline is KEEP else deadline,
            key_id=OFFICER.key_id,
        )
        return c.after(event, officer=OFFICER.name)

    return mutate


# -- the two stores ------------------------------------------------------------------------------
@dataclass
class Env:
    """A store, how to open another one on the same data (as another process would), and
    the audit rows written so far as (action, code, version_before, version_after)."""

    kind: str
    store: Store
    another: Callable[[], Store]
    audit: Callable[[], list[tuple[str, str | None, int | None, int | None]]]
    closers: list[Callable[[], None]] = field(default_factory=list)


@pytest.fixture(scope="module")
def case_database(pg_databases: PgDatabases) -> str:
    url = pg_databases.create("case_store")
    backend = PostGISBackend(url, pool_size=2)
    try:
        backend.migrate()
        PostgisCaseStore(backend).migrate()
        PostgisCaseStore(backend).migrate()  # twice: migrating is idempotent
    finally:
        backend.close()
    return url


def reset_cases(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE cases, audit_log")
        conn.execute("ALTER SEQUENCE cases_seq RESTART")
        conn.execute("UPDATE case_state SET revision = 0")


def files_env(folder: Path) -> Env:
    entries: list[AuditEntry] = []

    def open_store() -> Store:
        return FilesCaseStore(folder, append_audit=entries.extend)

    def audit() -> list[tuple[str, str | None, int | None, int | None]]:
        return [(e.action, e.code, e.version_before, e.version_after) for e in entries]

    return Env("files", open_store(), open_store, audit)


def postgis_env(url: str) -> Env:
    reset_cases(url)
    backend = PostGISBackend(url, pool_size=8)
    store = PostgisCaseStore(backend)
    out = Env("postgis", store, lambda: store, lambda: [])
    out.closers.append(backend.close)

    def open_store() -> Store:
        other = PostGISBackend(url, pool_size=1)
        out.closers.append(other.close)
        return PostgisCaseStore(other.pool)

    def audit() -> list[tuple[str, str | None, int | None, int | None]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT action, code, version_before, version_after FROM audit_log "
                "WHERE layer = 'cases' ORDER BY id"
            ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    out.another, out.audit = open_store, audit
    return out


@pytest.fixture(params=("files", "postgis"))
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "files":
        yield files_env(tmp_path / "data")
        return
    e = postgis_env(request.getfixturevalue("case_database"))
    yield e
    for close in reversed(e.closers):
        close()


# -- filing --------------------------------------------------------------------------------------
def test_file_assigns_increasing_ids_and_stores_the_case(env: Env) -> None:
    store = env.store
    assert store.all() == [] and store.get("20240501-000001") is None
    first = store.file(maker(), None, RESIDENT)
    second = store.file(maker(at=T0 + timedelta(hours=1)), None, RESIDENT)
    assert first.created and second.created
    assert (first.case.id, second.case.id) == ("20240501-000001", "20240501-000002")
    assert store.get(first.case.id) == first.case
    assert store.get(second.case.id) == second.case
    assert store.all() == [first.case, second.case]
    assert env.audit() == [
        ("case.file", first.case.id, None, 1),
        ("case.file", second.case.id, None, 1),
    ]


def test_same_idempotency_key_files_one_case(env: Env) -> None:
    store = env.store
    first = store.file(maker(key="k-1"), "k-1", RESIDENT)

    def must_not_make(seq: str) -> Case:
        raise AssertionError("a seen key must not make a new case")

    again = store.file(must_not_make, "k-1", RESIDENT)
    assert first.created and not again.created
    assert again.case == first.case
    other = store.file(maker(key="k-2"), "k-2", RESIDENT)
    assert other.created and other.case.id != first.case.id
    assert len(store.all()) == 2
    assert [a[0] for a in env.audit()] == ["case.file", "case.file"]


def test_a_maker_that_raises_stores_nothing(env: Env) -> None:
    def refuse(seq: str) -> Case:
        raise CaseConflict("not this one")

    before = env.store.revision()
    with pytest.raises(CaseConflict):
        env.store.file(refuse, "k-x", RESIDENT)
    assert env.store.all() == [] and env.audit() == []
    assert env.store.revision() == before
    assert env.store.file(maker(key="k-x"), "k-x", RESIDENT).created


def test_concurrent_filing_distinct_keys(env: Env) -> None:
    threads, per_thread = 8, 20
    barrier = threading.Barrier(threads)
    results: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                key = f"t{t}-{i}"
                filed = env.store.file(maker(key=key), key, RESIDENT)
                assert filed.created
                results[t].append(filed.case.id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    ids = [i for r in results for i in r]
    assert len(ids) == len(set(ids)) == threads * per_thread
    for r in results:  # each thread saw its own filings get increasing ids
        assert r == sorted(r)
    stored = env.store.all()
    assert sorted(c.id for c in stored) == sorted(ids)
    assert len({c.idempotency_key for c in stored}) == threads * per_thread
    assert len(env.audit()) == threads * per_thread


def test_concurrent_filing_same_key_from_several_stores(env: Env) -> None:
    threads = 8
    stores = [env.another() for _ in range(threads)]
    barrier = threading.Barrier(threads)
    filed: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            filed[t] = stores[t].file(maker(key="same"), "same", RESIDENT)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    assert sum(f.created for f in filed) == 1
    assert len({f.case.id for f in filed}) == 1
    assert {f.case for f in filed} == {filed[0].case}
    assert [c.id for c in env.store.all()] == [filed[0].case.id]
    assert len(env.audit()) == 1


# -- updating ------------------------------------------------------------------------------------
def test_update_applies_and_bumps_version(env: Env) -> None:
    store = env.store
    case = store.file(maker(), None, RESIDENT).case
    rev = store.revision()
    at = T0 + timedelta(minutes=10)
    registered = store.update(case.id, step(Action.register, CaseStatus.registered, at), OFFICER)
    assert registered.version == 2 and registered.status is CaseStatus.registered
    assert registered.officer == OFFICER.name and len(registered.history) == 2
    assert store.get(case.id) == registered
    assert store.revision() != rev
    dispatched = store.update(
        case.id, step(Action.dispatch, CaseStatus.dispatched, at + timedelta(minutes=5)), OFFICER
    )
    assert dispatched.version == 3 and store.get(case.id) == dispatched
    assert env.audit() == [
        ("case.file", case.id, None, 1),
        ("case.register", case.id, 1, 2),
        ("case.dispatch", case.id, 2, 3),
    ]


def test_update_that_changes_nothing(env: Env) -> None:
    case = env.store.file(maker(), None, RESIDENT).case
    rev = env.store.revision()
    assert env.store.update(case.id, lambda c: None, OFFICER) == case
    assert env.store.revision() == rev
    assert len(env.audit()) == 1


def test_a_mutation_that_raises_leaves_the_case(env: Env) -> None:
    case = env.store.file(maker(), None, RESIDENT).case
    rev = env.store.revision()

    def refuse(c: Case) -> Case:
        raise CaseConflict("not now")

    with pytest.raises(CaseConflict):
        env.store.update(case.id, refuse, OFFICER)
    assert env.store.get(case.id) == case
    assert env.store.revision() == rev
    assert len(env.audit()) == 1


def test_update_of_a_missing_case(env: Env) -> None:
    env.store.file(maker(), None, RESIDENT)
    with pytest.raises(NotFoundError):
        env.store.update(
            "20240501-999999", step(Action.register, CaseStatus.registered, T0), OFFICER
        )
    assert len(env.audit()) == 1


@pytest.mark.parametrize("skew", [0, 2])
def test_a_stale_mutation_is_a_conflict(env: Env, skew: int) -> None:
    case = env.store.file(maker(), None, RESIDENT).case
    rev = env.store.revision()
    register = step(Action.register, CaseStatus.registered, T0 + timedelta(minutes=1))

    def stale(c: Case) -> Case:
        new = register(c)
        assert new is not None
        return replace(new, version=c.version + skew)  # not the version after the stored one

    with pytest.raises(CaseConflict):
        env.store.update(case.id, stale, OFFICER)
    assert env.store.get(case.id) == case
    assert env.store.revision() == rev
    assert len(env.audit()) == 1


# -- querying ------------------------------------------------------------------------------------
H = timedelta(hours=1)


def load_query_data(store: Store) -> dict[int, str]:
    """Eight cases in several states; returns sequence number -> id.

    requested (hours after T0) and deadline after the steps below:
      1 road  +0  G1/C1/D1 reported    +24
      2 light +1  G2/C1/D1 registered  +5
      3 road  +2  G3/C2/D1 handled     +50 (kept, so only its status keeps it from being due)
      4 water +2  district D1 intake    +10
      5 road  +5  G1/C1/D1 closed      none
      6 light +26 G2/C1/D1 dispatched  +50
      7 water +30 G3/C2/D2 reported    none
      8 road  +30 G1/C1/D1 reported    +31
    """
    specs: list[dict[str, Any]] = [
        {"service": "road", "at": T0, "grid": "G1", "hours": 24},
        {"service": "light", "at": T0 + H, "grid": "G2", "hours": 4},
        {"service": "road", "at": T0 + 2 * H, "grid": "G3", "community": "C2", "hours": 48},
        {"service": "water", "at": T0 + 2 * H, "grid": None, "hours": 8},
        {"service": "road", "at": T0 + 5 * H, "grid": "G1", "hours": 2},
        {"service": "light", "at": T0 + 26 * H, "grid": "G2", "hours": 24},
        {
            "service": "water",
            "at": T0 + 30 * H,
            "grid": "G3",
            "community": "C2",
            "district": "D2",
            "hours": None,
        },
        {"service": "road", "at": T0 + 30 * H, "grid": "G1", "hours": 1},
    ]
    ids = {n: store.file(maker(**s), None, RESIDENT).case.id for n, s in enumerate(specs, 1)}
    later = T0 + 6 * H
    steps: list[tuple[int, Action, CaseStatus, Any]] = [
        (2, Action.register, CaseStatus.registered, KEEP),
        (3, Action.register, CaseStatus.registered, KEEP),
        (3, Action.dispatch, CaseStatus.dispatched, KEEP),
        (3, Action.handle, CaseStatus.handled, KEEP),
        (5, Action.register, CaseStatus.registered, KEEP),
        (5, Action.dispatch, CaseStatus.dispatched, KEEP),
        (5, Action.handle, CaseStatus.handled, None),
        (5, Action.verify, CaseStatus.verified, None),
        (5, Action.close, CaseStatus.closed, None),
    ]
    for n, action, status, deadline in steps:
        store.update(ids[n], step(action, status, later, deadline), OFFICER)
    for n, action, status in (
        (6, Action.register, CaseStatus.registered),
        (6, Action.dispatch, CaseStatus.dispatched),
    ):
        store.update(ids[n], step(action, status, T0 + 27 * H), OFFICER)
    return ids


QUERIES: list[tuple[str, CaseQuery, list[int], int]] = [
    ("all", CaseQuery(), [8, 7, 6, 5, 4, 3, 2, 1], 8),
    ("ids", CaseQuery(ids=("20240501-000002", "20240502-000007", "x")), [7, 2], 2),
    ("service", CaseQuery(service_codes=("road",)), [8, 5, 3, 1], 4),
    ("services", CaseQuery(service_codes=("light", "water")), [7, 6, 4, 2], 4),
    ("status", CaseQuery(statuses=(CaseStatus.reported,)), [8, 7, 4, 1], 4),
    (
        "statuses",
        CaseQuery(statuses=(CaseStatus.registered, CaseStatus.closed)),
        [5, 2],
        2,
    ),
    ("open", CaseQuery(open_only=True), [8, 7, 6, 4, 3, 2, 1], 7),
    ("community", CaseQuery(units=("C2",)), [7, 3], 2),
    ("grid+community", CaseQuery(units=("G2", "C2")), [7, 6, 3, 2], 4),
    ("district", CaseQuery(units=("D2",)), [7], 1),
    ("none", CaseQuery(units=("nowhere",)), [], 0),
    ("start..end", CaseQuery(start=T0 + 2 * H, end=T0 + 5 * H), [5, 4, 3], 3),
    ("start", CaseQuery(start=T0 + 26 * H), [8, 7, 6], 3),
    ("end", CaseQuery(end=T0 + H - timedelta(seconds=1)), [1], 1),
    ("page", CaseQuery(limit=3, offset=2), [6, 5, 4], 8),
    ("page past the end", CaseQuery(limit=3, offset=10), [], 8),
    ("by deadline", CaseQuery(by_deadline=True), [2, 4, 1, 8, 3, 6, 5, 7], 8),
    (
        "open by deadline, paged",
        CaseQuery(by_deadline=True, open_only=True, limit=4, offset=3),
        [8, 3, 6, 7],
        7,
    ),
    (
        "combined",
        CaseQuery(
            service_codes=("road", "light"),
            open_only=True,
            units=("C1",),
            start=T0 + H,
            by_deadline=True,
        ),
        [2, 8, 6],
        3,
    ),
]


@pytest.mark.parametrize(("name", "q", "expected", "total"), QUERIES, ids=[q[0] for q in QUERIES])
def test_query(env: Env, name: str, q: CaseQuery, expected: list[int], total: int) -> None:
    ids = load_query_data(env.store)
    page, count = env.store.query(q)
    assert [c.id for c in page] == [ids[n] for n in expected]
    assert count == total
    assert all(c == env.store.get(c.id) for c in page)


def test_due_lists_the_overdue_cases_awaiting_handling(env: Env) -> None:
    ids = load_query_data(env.store)
    assert env.store.due(T0) == []
    assert env.store.due(T0 + 11 * H) == [ids[2], ids[4]]
    assert env.store.due(T0 + 32 * H) == [ids[1], ids[2], ids[4], ids[8]]
    # 3 is handled with its deadline passed, 5 closed, 7 has no deadline
    assert env.store.due(T0 + 60 * H) == [ids[1], ids[2], ids[4], ids[6], ids[8]]


def test_audit_rows_for_every_step(env: Env) -> None:
    ids = load_query_data(env.store)
    rows = env.audit()
    assert len(rows) == 8 + 9 + 2
    for n, case_id in ids.items():
        mine = [r for r in rows if r[1] == case_id]
        versions = [(r[2], r[3]) for r in mine]
        assert versions == [(None, 1)] + [(v, v + 1) for v in range(1, len(mine))], n
        assert mine[0][0] == "case.file"
    closed = [r[0] for r in rows if r[1] == ids[5]]
    assert closed == [
        "case.file",
        "case.register",
        "case.dispatch",
        "case.handle",
        "case.verify",
        "case.close",
    ]


def test_both_stores_answer_alike(tmp_path: Path, case_database: str) -> None:
    files, pg = files_env(tmp_path / "data"), postgis_env(case_database)
    try:
        load_query_data(files.store)
        load_query_data(pg.store)
        assert [c.to_dict() for c in files.store.all()] == [c.to_dict() for c in pg.store.all()]
        queries = [q for _, q, _, _ in QUERIES] + [
            CaseQuery(units=("D1",), by_deadline=True, limit=2, offset=1),
            CaseQuery(statuses=(CaseStatus.dispatched, CaseStatus.handled), open_only=True),
            CaseQuery(start=T0 + 30 * H, end=T0 + 30 * H),
        ]
        for q in queries:
            got_files, total_files = files.store.query(q)
            got_pg, total_pg = pg.store.query(q)
            assert [c.to_dict() for c in got_files] == [c.to_dict() for c in got_pg], q
            assert total_files == total_pg, q
        for hours in (0, 5, 11, 32, 60, 100):
            assert files.store.due(T0 + hours * H) == pg.store.due(T0 + hours * H)
        assert files.audit() == pg.audit()
    finally:
        for close in reversed(pg.closers):
            close()
