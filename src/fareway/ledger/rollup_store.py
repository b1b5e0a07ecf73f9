"""The rollup tables on disk: their DDL (migration 5), the writer's upserts, the backfill of an
existing ledger, on SQLite and Postgres (the shapes are in rollups.py).

The writer aggregates each batch in memory (:class:`fareway.ledger.rollups.Roller`: one state
per minute and dimension set, expanded to the hour and the day) and upserts one row per
(grain, bucket, dimensions) of the batch, inside the transaction that inserts the batch's raw
rows, so a rollup counts exactly what is committed: a batch re-sent after a crash is skipped by
its sequence number (migration 2) together with its rollup, a batch split to isolate a refused
record upserts each part with that part.  Rows deleted from ``calls``/``attempts`` by the ledger
itself (an adoption undone, inflight.py) are subtracted the same way; rows pruned by retention
are not (the rollups keep what the raw rows no longer show).

Money stays exact: SQLite keeps it as Decimal text and adds it with ``fw_dadd`` (a Python
function registered on every connection by :func:`register_sqlite`); Postgres as NUMERIC.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from decimal import Decimal
from typing import Any

from fareway.ledger.rollups import (
    _MONEY,
    GRAINS,
    HOUR,
    INT_DIMS,
    MINUTE,
    TABLES,
    Deltas,
    EpochClock,
    Roller,
    Table,
    TextClock,
    dims_key,
    measure_kind,
    raw_measure_sql,
)

SQLITE = Roller(TextClock())
PG = Roller(EpochClock())

BACKFILL_TIMEOUT = 3600.0
"""Seconds the Postgres backfill of an existing ledger may take (migration 5, once)."""

PRUNED_TABLE = "ledger_pruned"
"""``(tbl, before)``: raw rows of ``tbl`` older than ``before`` (a minute boundary) were pruned."""


# ------------------------------------------------------------------------------- SQLite


def _dadd(a: Any, b: Any) -> str:
    return str(_MONEY.add(Decimal(a or 0), Decimal(b or 0)))


class _DecimalSum:
    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        if value is not None:
            self.total = _MONEY.add(self.total, Decimal(str(value)))

    def finalize(self) -> str:
        return str(self.total)


def _key(*values: Any) -> str:
    return dims_key(values)


def register_sqlite(conn: sqlite3.Connection) -> None:
    """The functions the rollup SQL uses: ``fw_dadd`` (exact money addition), ``fw_dsum`` (an
    exact money SUM, ``'0'`` over no rows) and ``fw_key`` (:func:`~fareway.ledger.rollups.dims_key`)."""
    conn.create_function("fw_dadd", 2, _dadd, deterministic=True)
    conn.create_function("fw_key", -1, _key, deterministic=True)
    conn.create_aggregate("fw_dsum", 1, _DecimalSum)  # type: ignore[arg-type]


def _sqlite_type(name: str, table: Table) -> str:
    if name in table.dims:
        return "INTEGER" if name in INT_DIMS else "TEXT"
    kind = measure_kind(name)
    return {
        "int": "INTEGER NOT NULL DEFAULT 0",
        "money": "TEXT NOT NULL DEFAULT '0'",
        "float": "REAL NOT NULL DEFAULT 0",
        "min": "REAL",
        "max": "REAL",
    }[kind]


def sqlite_ddl() -> list[str]:
    out = []
    for t in TABLES:
        cols = ", ".join(f"{c} {_sqlite_type(c, t)}" for c in (*t.dims, *t.measures))
        out.append(
            f"CREATE TABLE IF NOT EXISTS {t.name} (grain INTEGER NOT NULL, bucket TEXT NOT NULL, "
            f"dims TEXT NOT NULL, {cols}, PRIMARY KEY (grain, bucket, dims)) WITHOUT ROWID"
        )
    out.append(f"CREATE TABLE IF NOT EXISTS {PRUNED_TABLE} (tbl TEXT PRIMARY KEY, before TEXT NOT NULL)")
    return out


def _set_clause(t: Table, backend: str) -> str:
    sets = []
    for m in t.measures:
        kind = measure_kind(m)
        cur = m if backend == "sqlite" else f"{t.name}.{m}"
        new = f"excluded.{m}" if backend == "sqlite" else f"EXCLUDED.{m}"
        if kind == "money" and backend == "sqlite":
            # the Python addition only when both sides are non-zero (cost_saved almost never is)
            sets.append(
                f"{m} = CASE WHEN {new} = '0' THEN {cur} WHEN {cur} = '0' THEN {new} ELSE fw_dadd({cur}, {new}) END"
            )
        elif kind in ("int", "float", "money"):
            sets.append(f"{m} = {cur} + {new}")
        elif backend == "sqlite":
            op = "<" if kind == "min" else ">"
            sets.append(f"{m} = CASE WHEN {cur} IS NULL OR {new} {op} {cur} THEN {new} ELSE {cur} END")
        else:
            sets.append(f"{m} = {'LEAST' if kind == 'min' else 'GREATEST'}({cur}, {new})")
    return ", ".join(sets)


_CHUNK = 64


@functools.cache
def _sqlite_upsert(name: str, n: int) -> str:
    t = next(t for t in TABLES if t.name == name)
    one = f"({', '.join('?' * len(t.columns))})"
    return (
        f"INSERT INTO {t.name} ({', '.join(t.columns)}) VALUES {', '.join([one] * n)} "
        f"ON CONFLICT (grain, bucket, dims) DO UPDATE SET {_set_clause(t, 'sqlite')}"
    )


def apply_sqlite(conn: sqlite3.Connection, deltas: Deltas) -> None:
    """Upsert ``deltas`` (inside the caller's transaction; ``conn`` has :func:`register_sqlite`)."""
    for agg in (deltas.calls, deltas.attempts):
        if not agg:
            continue
        rows = agg.rows(str)
        i, left = 0, len(rows)
        while left:
            n = _CHUNK
            while n > left:
                n //= 2
            conn.execute(
                _sqlite_upsert(agg.table.name, n), list(itertools.chain.from_iterable(rows[i : i + n]))
            )
            i += n
            left -= n


def _agg(kind: str) -> str:
    """The SQL aggregate that combines rollup rows' values of a measure of ``kind``."""
    return {"min": "MIN", "max": "MAX"}.get(kind, "SUM")


def _raw_dims(t: Table, present: set[str] | None) -> str:
    """The dimensions as read from the raw table: ``NULL`` for one whose raw column a later
    migration adds (a ledger created from scratch runs migration 5 before it)."""
    return ", ".join(d if present is None or d in present else f"NULL AS {d}" for d in t.dims)


def _sqlite_backfill_sql(t: Table, present: set[str] | None = None) -> list[str]:
    dims = ", ".join(t.dims)
    raw_dims = _raw_dims(t, present)
    raw_group = ", ".join(d for d in t.dims if present is None or d in present)
    key_args = ", ".join(d if present is None or d in present else "NULL" for d in t.dims)
    measures = []
    for m in t.measures:
        kind = measure_kind(m)
        expr = raw_measure_sql(t, m)
        if kind == "money":
            measures.append(f"fw_dsum({expr})")
        elif kind == "min":
            measures.append(f"MIN({expr})")
        elif kind == "max":
            measures.append(f"MAX({expr})")
        else:
            measures.append(f"SUM({expr})")
    minute = f"substr({t.time}, 1, 16)"
    cols = ", ".join(t.columns)
    out = [
        f"INSERT INTO {t.name} ({cols}) SELECT {MINUTE}, {minute} || ':00.000000+00:00', fw_key({key_args}), "
        f"{raw_dims}, {', '.join(measures)} FROM {t.raw} GROUP BY {minute}, {raw_group}"
    ]
    for grain, width, tail in ((HOUR, 13, ":00:00.000000+00:00"), (GRAINS[-1], 10, "T00:00:00.000000+00:00")):
        ups = []
        for m in t.measures:
            kind = measure_kind(m)
            ups.append(f"fw_dsum({m})" if kind == "money" else f"{_agg(kind)}({m})")
        b = f"substr(bucket, 1, {width})"
        out.append(
            f"INSERT INTO {t.name} ({cols}) SELECT {grain}, {b} || '{tail}', dims, {dims}, {', '.join(ups)} "
            f"FROM {t.name} WHERE grain = {MINUTE} GROUP BY {b}, dims"
        )
    return out


def sqlite_migrate(conn: sqlite3.Connection) -> None:
    """Migration 5 on SQLite: the rollup tables, filled from the raw rows already there."""
    register_sqlite(conn)
    for statement in sqlite_ddl():
        conn.execute(statement)
    for t in TABLES:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({t.raw})")}
        for statement in _sqlite_backfill_sql(t, present):
            conn.execute(statement)


# ----------------------------------------------------------------------------- Postgres


def _pg_type(name: str, table: Table) -> str:
    if name in table.dims:
        return "INTEGER" if name in INT_DIMS else "TEXT"
    kind = measure_kind(name)
    if kind == "int":
        return (
            "INTEGER NOT NULL DEFAULT 0"
            if name.startswith(("lat_", "ttft_"))
            else "BIGINT NOT NULL DEFAULT 0"
        )
    return {
        "money": "NUMERIC NOT NULL DEFAULT 0",
        "float": "DOUBLE PRECISION NOT NULL DEFAULT 0",
        "min": "DOUBLE PRECISION",
        "max": "DOUBLE PRECISION",
    }[kind]


def pg_ddl() -> list[str]:
    out = []
    for t in TABLES:
        cols = ", ".join(f"{c} {_pg_type(c, t)}" for c in (*t.dims, *t.measures))
        out.append(
            f"CREATE TABLE IF NOT EXISTS {t.name} (grain SMALLINT NOT NULL, bucket TIMESTAMPTZ NOT NULL, "
            f"dims TEXT NOT NULL, {cols}, PRIMARY KEY (grain, bucket, dims))"
        )
    out.append(
        f"CREATE TABLE IF NOT EXISTS {PRUNED_TABLE} (tbl TEXT PRIMARY KEY, before TIMESTAMPTZ NOT NULL)"
    )
    return out


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _pg_upsert(schema: str, name: str) -> str:
    t = next(t for t in TABLES if t.name == name)
    ph = ", ".join(f"${i + 1}" for i in range(len(t.columns)))
    return (
        f"INSERT INTO {quote_ident(schema)}.{t.name} AS {t.name} ({', '.join(t.columns)}) VALUES ({ph}) "
        f"ON CONFLICT (grain, bucket, dims) DO UPDATE SET {_set_clause(t, 'pg')}"
    )


async def apply_pg(conn: Any, schema: str, deltas: Deltas) -> None:
    """Upsert ``deltas`` inside the caller's transaction (asyncpg), one row per identity, in
    identity order."""
    for agg in (deltas.calls, deltas.attempts):
        if agg:
            await conn.executemany(_pg_upsert(schema, agg.table.name), agg.rows(_same))


def _same(value: Decimal) -> Decimal:
    return value


def _pg_key_sql(t: Table, present: set[str] | None = None) -> str:
    parts = []
    for d in t.dims:
        if present is not None and d not in present:
            parts.append("'-'")
            continue
        v = f"{d}::text" if d in INT_DIMS else d
        parts.append(f"COALESCE(length({v})::text || ':' || {v}, '-')")
    return " || ".join(parts)


def _pg_backfill_sql(t: Table, present: set[str] | None = None) -> list[str]:
    dims = ", ".join(t.dims)
    raw_dims = ", ".join(d if present is None or d in present else f"NULL::text AS {d}" for d in t.dims)
    raw_group = ", ".join(d for d in t.dims if present is None or d in present)
    measures = []
    for m in t.measures:
        kind = measure_kind(m)
        expr = raw_measure_sql(t, m)
        measures.append(f"COALESCE(SUM({expr}), 0)" if kind == "money" else f"{_agg(kind)}({expr})")
    cols = ", ".join(t.columns)
    key = (
        "CASE WHEN length(enc) <= 200 THEN enc ELSE '#' || encode(sha256(convert_to(enc, 'UTF8')), 'hex') END"
    )
    names = ", ".join(t.measures)
    out = [
        f"INSERT INTO {t.name} ({cols}) SELECT grain, bucket, {key}, {dims}, {names} FROM ("
        f"SELECT {MINUTE} AS grain, date_trunc('minute', {t.time}, 'UTC') AS bucket, {_pg_key_sql(t, present)} AS enc, "
        f"{raw_dims}, {', '.join(f'{e} AS {m}' for e, m in zip(measures, t.measures, strict=True))} "
        f"FROM {t.raw} GROUP BY 2, {raw_group}) g"
    ]
    for grain, unit in ((HOUR, "hour"), (GRAINS[-1], "day")):
        ups = [f"{_agg(measure_kind(m))}({m})" for m in t.measures]
        out.append(
            f"INSERT INTO {t.name} ({cols}) SELECT {grain}, date_trunc('{unit}', bucket, 'UTC'), dims, {dims}, "
            f"{', '.join(ups)} FROM {t.name} WHERE grain = {MINUTE} GROUP BY 2, dims, {dims}"
        )
    return out


async def pg_migrate(conn: Any) -> None:
    """Migration 5 on Postgres (inside its transaction, ``search_path`` at the ledger's schema):
    the rollup tables, filled from the raw rows already there (no statement timeout for that)."""
    for statement in pg_ddl():
        await conn.execute(statement)
    await conn.execute("SET LOCAL statement_timeout = 0")
    for t in TABLES:
        present = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1",
                t.raw,
            )
        }
        for statement in _pg_backfill_sql(t, present):
            await conn.execute(statement, timeout=BACKFILL_TIMEOUT)
