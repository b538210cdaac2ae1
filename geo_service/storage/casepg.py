"""Cases on PostGIS: the ``CaseStore`` contract (``storage.cases``) in the shared database.

Table ``cases`` keeps each case's whole state as ``doc`` (``Case.to_dict()``, the source of
truth) beside the columns queries filter and sort on, and the point under a GiST index. Every
write is one transaction that bumps ``case_state.revision`` first (so case writers take turns
until commit, as the files store's lock makes them), writes the case and its ``audit_log`` row
(layer ``cases``, tagged with the dataset revision the step was taken against), and commits
before anything is returned: an acknowledged case is durable.

Filing with an idempotency key is safe across processes: the key is looked up again after
taking the turn, and ``idempotency_key`` is UNIQUE with ``ON CONFLICT DO NOTHING`` behind that.
Case writes do not bump ``dataset_state`` (layers and snapshots do not depend on cases).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from geo_service.core.cases import (
    AWAITING_HANDLING,
    Case,
    CaseConflict,
    CaseStatus,
    parse_time,
)
from geo_service.core.errors import NotFoundError, quote
from geo_service.core.principal import Principal
from geo_service.storage.cases import CaseMaker, CaseMutation, CaseQuery, Filed, audit_entry
from geo_service.storage.postgis import BASE_DDL, PostGISBackend

CASES_DDL = """
CREATE SEQUENCE IF NOT EXISTS cases_seq;
CREATE TABLE IF NOT EXISTS cases (
    id text PRIMARY KEY,
    seq bigint NOT NULL UNIQUE,
    service_code text NOT NULL,
    status text NOT NULL,
    level text NOT NULL,
    grid_code text,
    unit_code text NOT NULL,
    community_code text,
    street_code text,
    district_code text,
    deadline timestamptz,
    requested timestamptz NOT NULL,
    updated timestamptz NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    idempotency_key text UNIQUE,
    geom geometry(Point, 4326) NOT NULL,
    doc jsonb NOT NULL);
CREATE INDEX IF NOT EXISTS cases_geom_gist ON cases USING gist (geom);
CREATE INDEX IF NOT EXISTS cases_status_deadline ON cases (status, deadline);
CREATE INDEX IF NOT EXISTS cases_unit_code ON cases (unit_code);
CREATE INDEX IF NOT EXISTS cases_grid_code ON cases (grid_code);
CREATE INDEX IF NOT EXISTS cases_requested ON cases (requested);
CREATE TABLE IF NOT EXISTS case_state (
    id integer PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL);
INSERT INTO case_state (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING;
"""

# Columns written from a case (besides id, seq, idempotency_key, geom and doc).
_STATE_COLUMNS = (
    "service_code",
    "status",
    "level",
    "grid_code",
    "unit_code",
    "community_code",
    "street_code",
    "district_code",
    "deadline",
    "requested",
    "updated",
    "version",
)
_UNIT_COLUMNS = ("grid_code", "community_code", "street_code", "district_code", "unit_code")
_GEOM = sql.SQL("ST_SetSRID(ST_MakePoint(%s, %s), 4326)")
_BY_ID = sql.SQL('id COLLATE "C"')  # the same order as Python's str (the files store)


def _state_values(c: Case) -> list[Any]:
    return [
        c.service_code,
        c.status.value,
        c.level.value,
        c.grid_code,
        c.unit_code,
        c.community_code,
        c.street_code,
        c.district_code,
        None if c.deadline is None else parse_time(c.deadline),
        parse_time(c.requested),
        parse_time(c.updated),
        c.version,
    ]


def _case(row: Sequence[Any] | None) -> Case | None:
    return None if row is None else Case.from_dict(row[0])


class PostgisCaseStore:
    """Cases in the PostGIS database, sharing the layer backend's connection pool."""

    def __init__(self, source: PostGISBackend | ConnectionPool) -> None:
        self.pool: ConnectionPool = source.pool if isinstance(source, PostGISBackend) else source

    # -- schema ------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create ``cases``, its sequence, indexes and ``case_state`` (and the base tables the
        audit rows need, if the layer backend has not made them yet)."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('geo_service.migrate'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute(BASE_DDL)
            conn.execute(CASES_DDL)

    # -- reading -----------------------------------------------------------------------------
    def get(self, case_id: str) -> Case | None:
        with self.pool.connection() as conn:
            return _case(conn.execute("SELECT doc FROM cases WHERE id = %s", (case_id,)).fetchone())

    def all(self) -> list[Case]:
        with self.pool.connection() as conn:
            rows = conn.execute(sql.SQL("SELECT doc FROM cases ORDER BY {}").format(_BY_ID))
            return [Case.from_dict(r[0]) for r in rows]

    @staticmethod
    def _where(q: CaseQuery) -> tuple[sql.Composable, list[Any]]:
        conds: list[sql.Composable] = []
        params: list[Any] = []
        for column, values in (
            ("id", list(q.ids)),
            ("service_code", list(q.service_codes)),
            ("status", [CaseStatus(s).value for s in q.statuses]),
        ):
            if values:
                conds.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
                params.append(values)
        if q.open_only:
            conds.append(sql.SQL("status <> %s"))
            params.append(CaseStatus.closed.value)
        if q.units:
            conds.append(
                sql.SQL("({})").format(
                    sql.SQL(" OR ").join(
                        sql.SQL("{} = ANY(%s)").format(sql.Identifier(c)) for c in _UNIT_COLUMNS
                    )
                )
            )
            params.extend([list(q.units)] * len(_UNIT_COLUMNS))
        if q.start is not None:
            conds.append(sql.SQL("requested >= %s"))
            params.append(q.start)
        if q.end is not None:
            conds.append(sql.SQL("requested <= %s"))
            params.append(q.end)
        if q.bbox is not None:
            conds.append(sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"))
            params.extend(q.bbox)
        if not conds:
            return sql.SQL(""), params
        return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conds), params

    def query(self, q: CaseQuery) -> tuple[list[Case], int]:
        where, params = self._where(q)
        if q.by_deadline:  # overdue first, then nearest deadline; no deadline last
            order = sql.SQL("deadline ASC NULLS LAST, {} ASC").format(_BY_ID)
        else:
            order = sql.SQL("requested DESC, {} DESC").format(_BY_ID)
        with self.pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            total = conn.execute(sql.SQL("SELECT count(*) FROM cases {}").format(where), params)
            row = total.fetchone()
            rows = conn.execute(
                sql.SQL("SELECT doc FROM cases {} ORDER BY {} LIMIT %s OFFSET %s").format(
                    where, order
                ),
                [*params, max(0, int(q.limit)), max(0, int(q.offset))],
            ).fetchall()
        return [Case.from_dict(r[0]) for r in rows], int(row[0]) if row else 0

    def due(self, now: datetime) -> list[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT id FROM cases WHERE status = ANY(%s) AND deadline < %s ORDER BY {}"
                ).format(_BY_ID),
                ([s.value for s in sorted(AWAITING_HANDLING)], now),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def revision(self) -> str:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT revision FROM case_state WHERE id = 1").fetchone()
        return f"pg-c{row[0] if row else 0}"

    # -- writing -----------------------------------------------------------------------------
    @staticmethod
    def _take_turn(conn: psycopg.Connection) -> int:
        """Bump ``case_state``: its row lock makes case writers take turns until commit.
        Returns the dataset revision the step is taken against (for the audit row)."""
        conn.execute("UPDATE case_state SET revision = revision + 1 WHERE id = 1")
        row = conn.execute("SELECT revision FROM dataset_state WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _by_key(conn: psycopg.Connection, key: str) -> Case | None:
        return _case(
            conn.execute("SELECT doc FROM cases WHERE idempotency_key = %s", (key,)).fetchone()
        )

    def file(self, make: CaseMaker, idempotency_key: str | None, who: Principal) -> Filed:
        with self.pool.connection() as conn:
            if idempotency_key:
                seen = self._by_key(conn, idempotency_key)
                if seen is not None:
                    return Filed(seen, created=False)
            revision = self._take_turn(conn)
            if idempotency_key:  # filed by another writer while this one waited its turn
                seen = self._by_key(conn, idempotency_key)
                if seen is not None:
                    conn.rollback()
                    return Filed(seen, created=False)
            seq_row = conn.execute("SELECT nextval('cases_seq')").fetchone()
            assert seq_row is not None
            seq = int(seq_row[0])
            case = make(f"{seq:06d}")
            cols = ["id", "seq", *_STATE_COLUMNS, "idempotency_key", "doc"]
            try:
                with conn.transaction():  # a savepoint: a refused row leaves the rest usable
                    inserted = conn.execute(
                        sql.SQL(
                            "INSERT INTO cases ({}, geom) VALUES ({}, {}) "
                            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
                        ).format(
                            sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                            sql.SQL(", ").join([sql.Placeholder()] * len(cols)),
                            _GEOM,
                        ),
                        [
                            case.id,
                            seq,
                            *_state_values(case),
                            idempotency_key or None,
                            Jsonb(case.to_dict()),
                            case.lon,
                            case.lat,
                        ],
                    ).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise CaseConflict(f"case {quote(case.id)} exists already", field="id") from exc
            if inserted is None:  # the key won a race outside the turn-taking: theirs stands
                assert idempotency_key
                conn.rollback()
                seen = self._by_key(conn, idempotency_key)
                assert seen is not None
                return Filed(seen, created=False)
            PostGISBackend.insert_audit(conn, audit_entry(None, case, who), revision)
        return Filed(case, created=True)

    def update(self, case_id: str, mutation: CaseMutation, who: Principal) -> Case:
        with self.pool.connection() as conn:
            revision = self._take_turn(conn)
            current = _case(
                conn.execute(
                    "SELECT doc FROM cases WHERE id = %s FOR UPDATE", (case_id,)
                ).fetchone()
            )
            if current is None:
                raise NotFoundError(f"no case {quote(case_id)}", field="id")
            new = mutation(current)
            if new is None:
                conn.rollback()
                return current
            if new.version != current.version + 1:
                raise CaseConflict("a case step must advance its version by one")
            if new.id != current.id:
                raise CaseConflict("a case step cannot change the case's id", field="id")
            sets = sql.SQL(", ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in [*_STATE_COLUMNS, "doc"]
            )
            conn.execute(
                sql.SQL("UPDATE cases SET {}, geom = {} WHERE id = %s").format(sets, _GEOM),
                [*_state_values(new), Jsonb(new.to_dict()), new.lon, new.lat, case_id],
            )
            PostGISBackend.insert_audit(conn, audit_entry(current, new, who), revision)
        return new
