"""The PostGIS backend: one shared source of truth for several service instances.

Tables ``grids``, ``stalls`` and ``vendor_clusters`` follow the layer schemas (``schema.py``)
with a ``geom geometry(..., 4326)`` column under a GiST index and an integer ``version``.
Every change runs in one transaction that bumps ``dataset_state.revision`` (which also makes
writers take turns), writes the feature and its ``audit_log`` rows, and sends
``NOTIFY geo_service_changes`` on commit; every instance listens on its own connection and
rebuilds its snapshot when told.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from geo_service.core.layers import LoadReport, Problem, validate_layer
from geo_service.core.principal import ApiKeyRecord, Principal
from geo_service.core.schema import SCHEMAS, VERSION_FIELD, FieldType, LayerName, LayerSchema
from geo_service.core.versions import with_versions
from geo_service.storage.audit import COLUMNS, AuditEntry, AuditQuery, entry_for, replace_entries
from geo_service.storage.base import Change, Loaded, Mutation, ReplaceResult, Revisions
from geo_service.storage.records import InvalidRecord, Record, plan_replace, stored_records

log = logging.getLogger(__name__)

CHANNEL = "geo_service_changes"
LISTENER_NAME = "geo_service listener"  # application_name of the LISTEN connections
RECONNECT_S = 10.0  # the pool backs off reconnecting for at most this long, then starts anew
SQL_TYPES = {
    FieldType.text: "text",
    FieldType.integer: "bigint",  # validation admits whole numbers up to 2^53
    FieldType.number: "double precision",
    FieldType.text_list: "text[]",
}
GEOMETRY_TYPES = {
    "polygon": "geometry(Geometry, 4326) NOT NULL "
    "CHECK (GeometryType(geom) IN ('POLYGON', 'MULTIPOLYGON'))",
    "point": "geometry(Point, 4326) NOT NULL",
}

BASE_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS dataset_state (
    id integer PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL,
    updated timestamptz NOT NULL DEFAULT now());
INSERT INTO dataset_state (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS layer_state (
    layer text PRIMARY KEY, revision bigint NOT NULL DEFAULT 0);
INSERT INTO layer_state (layer) VALUES ('grids'), ('stalls'), ('vendor_clusters')
    ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS audit_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, key_id text,
    role text NOT NULL, action text NOT NULL, layer text NOT NULL, code text,
    version_before integer, version_after integer, changed text[] NOT NULL DEFAULT '{}',
    before jsonb, after jsonb, detail jsonb, revision bigint NOT NULL);
CREATE INDEX IF NOT EXISTS audit_log_layer_code ON audit_log (layer, code);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id text PRIMARY KEY, name text NOT NULL, role text NOT NULL, salt text NOT NULL,
    hash text NOT NULL, grids text[] NOT NULL DEFAULT '{}', officer text,
    created timestamptz NOT NULL, revoked timestamptz);
"""
# 2: stalls gained moved_to_code / moved_to_lon / moved_to_lat / moved_to_address (where a
# relocated stall went); ``migrate`` adds them to an existing table, NULL for every row.
SCHEMA_VERSION = 2
AUDIT_COLUMNS = COLUMNS[1:]  # all but id, which the table assigns


def layer_ddl(schema: LayerSchema) -> str:
    cols = []
    for f in schema.fields:
        if f.name == "code":
            cols.append("code text PRIMARY KEY")
        elif f.name == VERSION_FIELD:
            cols.append(f"{VERSION_FIELD} integer NOT NULL DEFAULT 1 CHECK ({VERSION_FIELD} >= 1)")
        else:
            cols.append(f"{f.name} {SQL_TYPES[f.type]}{' NOT NULL' if f.required else ''}")
    cols.append("extra jsonb NOT NULL DEFAULT '{}'")
    cols.append(f"geom {GEOMETRY_TYPES[schema.geometry]}")
    name = schema.name.value
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)});\n"
        f"CREATE INDEX IF NOT EXISTS {name}_geom_gist ON {name} USING gist (geom);\n"
    )


def _columns(layer: LayerName) -> list[str]:
    return SCHEMAS[layer].field_names()


def _frame_of_rows(layer: LayerName, rows: Sequence[tuple[Any, ...]]) -> gpd.GeoDataFrame:
    """Rows of (fields..., extra, wkb) as a GeoDataFrame ready for ``validate_layer``."""
    cols = _columns(layer)
    data = pd.DataFrame([r[: len(cols)] for r in rows], columns=cols, dtype=object)
    extras = [r[len(cols)] or {} for r in rows]
    if any(extras):
        data = pd.concat([data, pd.DataFrame.from_records(extras, index=data.index)], axis=1)
    wkb = np.array([bytes(r[-1]) for r in rows], dtype=object)
    geoms = shapely.from_wkb(wkb) if len(wkb) else np.array([], dtype=object)
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, index=data.index), crs=4326)


def _select(layer: LayerName, where: str = "") -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in _columns(layer))
    return sql.SQL("SELECT {cols}, extra, ST_AsBinary(geom) FROM {table} {where}").format(
        cols=cols, table=sql.Identifier(layer.value), where=sql.SQL(where)
    )


def _row_values(rec: Record) -> list[Any]:
    """Column values of a record, in ``_columns`` order, then extra (jsonb) and EWKB."""
    names = _columns(rec.layer)
    values: list[Any] = [rec.properties.get(n) for n in names]
    extra = {k: v for k, v in rec.properties.items() if k not in names}
    geom = shapely.set_srid(shapely.from_geojson(orjson.dumps(rec.geometry).decode()), 4326)
    return [*values, Jsonb(extra), shapely.to_wkb(geom, hex=True, include_srid=True)]


@contextlib.contextmanager
def _refused_as_invalid(code: str | None) -> Iterator[None]:
    """Values the database refuses (validation should have caught them) are the client's
    error, reported like any invalid value, never a 500."""
    try:
        yield
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        reason = exc.diag.message_primary or str(exc)
        raise InvalidRecord(
            [Problem(None, code, None, f"refused by the database: {reason}")]
        ) from exc


class _Listener:
    """LISTENs on its own connection; reconnects (and reports a possible change) after errors."""

    def __init__(self, url: str, callback: Callable[[], None]) -> None:
        self._url = url
        self._callback = callback
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="geo-pg-listen", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name=LISTENER_NAME
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    self.connected.set()
                    backoff = 0.2
                    self._callback()  # anything committed before LISTEN took effect
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.25):
                            self._callback()
            except Exception:
                self.connected.clear()
                if self._stop.is_set():
                    return
                log.warning("lost the PostGIS notification connection; retrying", exc_info=True)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class PostGISBackend:
    name = "PostGIS"

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 30.0) -> None:
        """``timeout_s``: the longest a caller waits for a connection (database down, or every
        connection busy) before ``PoolTimeout``, which the service answers 503."""
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=True,
            kwargs={"connect_timeout": 5},
            name="geo_service",
            timeout=timeout_s,
            # After a restart of the database, a pooled connection is dead: test it when it is
            # handed out (one round trip) instead of failing the request that gets it.
            check=ConnectionPool.check_connection,
            # Reconnection backs off exponentially and gives up after this; the next request
            # then starts afresh, so the pool is back within seconds of a long outage's end.
            reconnect_timeout=RECONNECT_S,
        )

    # -- schema ------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create the extension, tables and indexes; add columns the schema gained since."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('geo_service.migrate'))")
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute(BASE_DDL)
            for schema in SCHEMAS.values():
                conn.execute(layer_ddl(schema))
                for f in schema.fields:
                    if f.name in ("code", VERSION_FIELD):
                        continue
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                            sql.Identifier(schema.name.value),
                            sql.Identifier(f.name),
                            sql.SQL(SQL_TYPES[f.type]),
                        )
                    )
            conn.execute(
                "INSERT INTO schema_migrations (version) VALUES (%s) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _revisions(conn: psycopg.Connection) -> Revisions:
        rows = conn.execute("SELECT layer, revision FROM layer_state").fetchall()
        return {LayerName(layer): str(rev) for layer, rev in rows if layer in SCHEMAS}

    def revisions(self) -> Revisions:
        with self.pool.connection() as conn:
            return self._revisions(conn)

    def load(self, layers: Collection[LayerName] | None = None) -> Loaded:
        """One consistent snapshot of the database (a repeatable-read transaction)."""
        wanted = list(SCHEMAS if layers is None else layers)
        frames: dict[LayerName, gpd.GeoDataFrame] = {}
        reports: list[LoadReport] = []
        with self.pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT revision FROM dataset_state WHERE id = 1").fetchone()
            revision = int(row[0]) if row else 0
            revisions = {k: v for k, v in self._revisions(conn).items() if k in wanted}
            for layer in wanted:
                rows = conn.execute(_select(layer, "ORDER BY code")).fetchall()
                frame, report = validate_layer(
                    _frame_of_rows(layer, rows), layer, f"postgis:{layer.value}"
                )
                frames[layer] = with_versions(frame)
                reports.append(report)
        return Loaded(frames, f"pg-r{revision}", revisions, reports)

    def _records(
        self, conn: psycopg.Connection, layer: LayerName, where: str = "", params: Any = None
    ) -> list[Record]:
        rows = conn.execute(_select(layer, where), params).fetchall()
        cols = _columns(layer)
        props = [
            {**dict(zip(cols, r[: len(cols)], strict=True)), **(r[len(cols)] or {})} for r in rows
        ]
        return stored_records(layer, props, shapely.from_wkb([bytes(r[-1]) for r in rows]))

    def get(self, layer: LayerName, code: str) -> Record | None:
        with self.pool.connection() as conn:
            recs = self._records(conn, layer, "WHERE code = %s", (code,))
        return recs[0] if recs else None

    # -- writing -----------------------------------------------------------------------------
    @staticmethod
    def _bump(conn: psycopg.Connection, layer: LayerName) -> int:
        """Next revision; the row lock makes concurrent writers take turns until commit."""
        row = conn.execute(
            "UPDATE dataset_state SET revision = revision + 1, updated = now() "
            "WHERE id = 1 RETURNING revision"
        ).fetchone()
        assert row is not None
        conn.execute("UPDATE layer_state SET revision = %s WHERE layer = %s", (row[0], layer.value))
        return int(row[0])

    @staticmethod
    def _notify(conn: psycopg.Connection, revision: int, layer: LayerName) -> None:
        """Delivered at commit, to every listening instance (and only if it commits)."""
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{revision} {layer.value}"))

    def _upsert(self, conn: psycopg.Connection, rec: Record) -> None:
        cols = [*_columns(rec.layer), "extra"]
        names = sql.SQL(", ").join(sql.Identifier(c) for c in [*cols, "geom"])
        params = sql.SQL(", ").join([sql.Placeholder()] * len(cols) + [sql.SQL("%s::geometry")])
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in [*cols[1:], "geom"]
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} ({names}) VALUES ({params}) "
                "ON CONFLICT (code) DO UPDATE SET {updates}"
            ).format(
                table=sql.Identifier(rec.layer.value), names=names, params=params, updates=updates
            ),
            _row_values(rec),
        )

    @staticmethod
    def _audit_values(e: AuditEntry, revision: int) -> list[Any]:
        d = e.to_dict()
        vals: list[Any] = []
        for c in AUDIT_COLUMNS:
            v = d[c]
            if c == "at":
                v = datetime.fromisoformat(v)
            elif c in ("before", "after", "detail"):
                v = None if v is None else Jsonb(v)
            vals.append(v)
        return [*vals, revision]

    @classmethod
    def insert_audit(cls, conn: psycopg.Connection, entry: AuditEntry, revision: int) -> int:
        """Write one ``audit_log`` row in the caller's transaction; its id."""
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*AUDIT_COLUMNS, "revision"])
        row = conn.execute(
            sql.SQL("INSERT INTO audit_log ({}) VALUES ({}) RETURNING id").format(
                cols, sql.SQL(", ").join([sql.Placeholder()] * (len(AUDIT_COLUMNS) + 1))
            ),
            cls._audit_values(entry, revision),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def modify(
        self, layer: LayerName, code: str, mutation: Mutation, who: Principal, action: str
    ) -> Change:
        with _refused_as_invalid(code), self.pool.connection() as conn:
            revision = self._bump(conn, layer)
            found = self._records(conn, layer, "WHERE code = %s FOR UPDATE", (code,))
            current = found[0] if found else None
            new = mutation(current)
            if new is None or (current is not None and new.same_content(current)):
                conn.rollback()
                return Change(current, current, None)
            new = new.with_version((current.version if current else 0) + 1)
            self._upsert(conn, new)
            entry = entry_for(who, action, current, new)
            audit_id = self.insert_audit(conn, entry, revision)
            self._notify(conn, revision, layer)
        return Change(current, new, replace(entry, id=audit_id))

    def replace_layer(
        self, layer: LayerName, records: list[Record], who: Principal, source: str
    ) -> ReplaceResult:
        with _refused_as_invalid(None), self.pool.connection() as conn:
            revision = self._bump(conn, layer)
            conn.execute(
                sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(layer.value))
            )
            old = self._records(conn, layer)
            plan = plan_replace(old, records)
            detail = {"source": source, **plan.summary()}
            entries = replace_entries(who, layer.value, plan.changes, detail)
            table = sql.Identifier(layer.value)
            conn.execute(sql.SQL("DELETE FROM {}").format(table))
            names = sql.SQL(", ").join(
                sql.Identifier(c) for c in [*_columns(layer), "extra", "geom"]
            )
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)) as cp:
                for rec in plan.records:
                    cp.write_row(_row_values(rec))
            audit_cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*AUDIT_COLUMNS, "revision"])
            with conn.cursor().copy(
                sql.SQL("COPY audit_log ({}) FROM STDIN").format(audit_cols)
            ) as cp:
                for e in entries:
                    cp.write_row(self._audit_values(e, revision))
            self._notify(conn, revision, layer)
        return ReplaceResult(layer, plan.summary(), len(entries))

    # -- audit -------------------------------------------------------------------------------
    def audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        where, params = [], []
        for col in ("layer", "code", "actor", "action"):
            value = getattr(query, col)
            if value:
                where.append(f"{col} = %s")
                params.append(value)
        if query.since:
            where.append("at >= %s")
            params.append(query.since)
        if query.until:
            where.append("at < %s")
            params.append(query.until)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if query.newest_first else "ASC"
        page = f"LIMIT {int(query.limit)}" if query.limit is not None else ""
        cols = ", ".join(["id", *AUDIT_COLUMNS])
        with self.pool.connection() as conn:
            total_row = conn.execute(f"SELECT count(*) FROM audit_log {clause}", params).fetchone()
            rows = conn.execute(
                f"SELECT {cols} FROM audit_log {clause} ORDER BY id {order} {page} "
                f"OFFSET {int(query.offset)}",
                params,
            ).fetchall()
        entries = []
        for r in rows:
            d = dict(zip(["id", *AUDIT_COLUMNS], r, strict=True))
            d["at"] = d["at"].isoformat(timespec="milliseconds")
            entries.append(AuditEntry.from_dict(d))
        return entries, int(total_row[0]) if total_row else 0

    def subscribe(self, callback: Callable[[], None]) -> _Listener:
        return _Listener(self.url, callback)

    # -- keys --------------------------------------------------------------------------------
    _KEY_COLUMNS = (
        "key_id",
        "name",
        "role",
        "salt",
        "hash",
        "grids",
        "officer",
        "created",
        "revoked",
    )

    def _key(self, row: tuple[Any, ...]) -> ApiKeyRecord:
        d = dict(zip(self._KEY_COLUMNS, row, strict=True))
        for c in ("created", "revoked"):
            if d[c] is not None:
                d[c] = d[c].isoformat(timespec="milliseconds")
        return ApiKeyRecord.from_dict(d)

    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT {', '.join(self._KEY_COLUMNS)} FROM api_keys WHERE key_id = %s", (key_id,)
            ).fetchone()
        return None if row is None else self._key(row)

    def list_keys(self) -> list[ApiKeyRecord]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(self._KEY_COLUMNS)} FROM api_keys ORDER BY created"
            ).fetchall()
        return [self._key(r) for r in rows]

    def put_key(self, record: ApiKeyRecord) -> None:
        d = record.to_dict()
        cols = self._KEY_COLUMNS
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
        with self.pool.connection() as conn:
            conn.execute(
                f"INSERT INTO api_keys ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                f"ON CONFLICT (key_id) DO UPDATE SET {updates}",
                [d[c] for c in cols],
            )

    def close(self) -> None:
        self.pool.close()
