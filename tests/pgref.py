"""Load geometries into PostGIS so tests and benchmarks can use it as an independent reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg
import shapely


def load_table(
    conn: psycopg.Connection,
    table: str,
    codes: Sequence[str],
    geoms: np.ndarray,
    srid: int = 4326,
    extra: dict[str, Sequence[object]] | None = None,
) -> None:
    """(Re)create ``table(code text primary key, geom geometry(srid), extra...)`` with a GiST index."""
    extra = extra or {}
    cols = "".join(f", {name} text" for name in extra)
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (code text PRIMARY KEY, geom geometry{cols})")
    wkb = shapely.to_wkb(geoms, hex=True)
    names = ", ".join(["code", "wkb", *extra])
    conn.execute(
        f"CREATE TEMP TABLE _stage_{table} (code text, wkb text{cols}) ON COMMIT DROP"
        if not conn.autocommit
        else f"CREATE TEMP TABLE IF NOT EXISTS _stage_{table} (code text, wkb text{cols})"
    )
    conn.execute(f"TRUNCATE _stage_{table}")
    with conn.cursor().copy(f"COPY _stage_{table} ({names}) FROM STDIN") as copy:
        for row in zip(codes, wkb, *extra.values(), strict=True):
            copy.write_row(row)
    conn.execute(
        f"INSERT INTO {table} SELECT code, ST_SetSRID(ST_GeomFromWKB(decode(wkb, 'hex')), {srid})"
        f"{''.join(', ' + n for n in extra)} FROM _stage_{table}"
    )
    conn.execute(f"CREATE INDEX ON {table} USING gist (geom)")
    conn.execute(f"ANALYZE {table}")
