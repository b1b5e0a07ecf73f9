"""Versioned schema migrations for both backends: plain functions, applied in order, each in its
own transaction, recorded in a ``schema_version`` table.  Running them again is a no-op.

To change the schema, append a migration to *both* lists (same version number and meaning);
never edit one that has shipped.  Money is exact: TEXT holding a ``Decimal`` in SQLite, NUMERIC
in Postgres.  Times are ISO-8601 UTC text (fixed width, so they sort) in SQLite, TIMESTAMPTZ in
Postgres.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

# ------------------------------------------------------------------------------------ SQLite


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements one by one (executescript() would commit on its own)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _sqlite_v1(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS calls (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            time TEXT NOT NULL,
            key_id TEXT,
            key_name TEXT,
            client_dialect TEXT NOT NULL,
            provider TEXT,
            upstream_model TEXT,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            stream INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost TEXT,
            cost_saved TEXT,
            estimated INTEGER NOT NULL,
            price_source TEXT,
            ttft_ms REAL,
            latency_ms REAL,
            tokens_per_s REAL,
            cache TEXT NOT NULL,
            route TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX IF NOT EXISTS calls_time ON calls (time);
        CREATE INDEX IF NOT EXISTS calls_key_time ON calls (key_id, time);
        CREATE TABLE IF NOT EXISTS attempts (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL,
            attempt_no INTEGER NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL,
            role TEXT NOT NULL,
            status INTEGER,
            error TEXT,
            input_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            cost TEXT,
            cost_input TEXT,
            cost_cached_input TEXT,
            cost_cache_write TEXT,
            cost_output TEXT,
            cost_reasoning TEXT,
            estimated INTEGER NOT NULL,
            ttft_ms REAL,
            latency_ms REAL,
            tokens_per_s REAL,
            started_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS attempts_request ON attempts (request_id);
        CREATE INDEX IF NOT EXISTS attempts_started ON attempts (started_at);
        """,
    )


def _sqlite_v2(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger_writer_state (writer TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
    )


def _sqlite_v3(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS inflight (
            request_id TEXT PRIMARY KEY,
            writer TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            output_tokens INTEGER NOT NULL,
            rows TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS inflight_adopted (
            request_id TEXT PRIMARY KEY,
            call_id INTEGER NOT NULL,
            adopted_at TEXT NOT NULL
        );
        """,
    )


_V3 = "in-flight streams: a checkpointed call row per committed stream, adopted after a crash"
_V5 = "rollups: per-minute, per-hour and per-day aggregates of calls and attempts (backfilled)"


def _sqlite_v5(conn: sqlite3.Connection) -> None:
    from fareway.ledger.rollup_store import sqlite_migrate

    sqlite_migrate(conn)


def _sqlite_v4(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE IF NOT EXISTS responses (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            created_at TEXT NOT NULL,
            previous_response_id TEXT,
            request_id TEXT NOT NULL,
            response TEXT NOT NULL,
            context TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS responses_tenant ON responses (tenant, created_at);
        CREATE TABLE IF NOT EXISTS response_items (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            response_id TEXT NOT NULL,
            item TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX IF NOT EXISTS response_items_response ON response_items (response_id);
        """,
    )


_V4 = "stored Responses API responses (per tenant) and their items, for previous_response_id"
_V8 = "calls.kind: chat or embedding (the endpoint a call came in on)"


def _sqlite_v8(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE calls ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat'")


def _sqlite_v6(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        ALTER TABLE calls ADD COLUMN experiment TEXT;
        ALTER TABLE calls ADD COLUMN experiment_role TEXT;
        CREATE INDEX IF NOT EXISTS calls_experiment ON calls (experiment, experiment_role)
            WHERE experiment IS NOT NULL;
        CREATE TABLE IF NOT EXISTS experiments (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            definition TEXT NOT NULL,
            status TEXT NOT NULL,
            promoted_to TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            calls_control INTEGER NOT NULL DEFAULT 0,
            calls_challenger INTEGER NOT NULL DEFAULT 0,
            sampled INTEGER NOT NULL DEFAULT 0,
            dropped INTEGER NOT NULL DEFAULT 0,
            over_budget INTEGER NOT NULL DEFAULT 0,
            spend TEXT NOT NULL DEFAULT '0',
            unpriced INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS experiment_pairs (
            id INTEGER PRIMARY KEY,
            experiment TEXT NOT NULL,
            time TEXT NOT NULL,
            request_id TEXT NOT NULL,
            served TEXT NOT NULL,
            verdict_1 TEXT NOT NULL,
            verdict_2 TEXT NOT NULL,
            outcome TEXT NOT NULL,
            cost TEXT,
            note TEXT
        );
        CREATE INDEX IF NOT EXISTS experiment_pairs_experiment ON experiment_pairs (experiment, id);
        """,
    )


_V6 = "A/B experiments: their state and judged pairs; calls attributed to an experiment"


_V10 = "calls.user_id and calls.tags (attribution), as rollup_calls dimensions"
_V10_COLUMNS = ("user_id", "tags")


def _sqlite_v10(conn: sqlite3.Connection) -> None:
    for table in ("calls", "rollup_calls"):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for col in _V10_COLUMNS:
            if col not in have:  # a ledger made at v10 got them in rollup_calls at v5
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} TEXT")


SQLITE_MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "calls and attempts", _sqlite_v1),
    (2, "writer state: the last batch each writer committed (exactly-once re-sends)", _sqlite_v2),
    (3, _V3, _sqlite_v3),
    (4, _V4, _sqlite_v4),
    (5, _V5, _sqlite_v5),
    (6, _V6, _sqlite_v6),
    (8, _V8, _sqlite_v8),
    (10, _V10, _sqlite_v10),
]


def migrate_sqlite(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; returns the schema version.  ``conn`` must be in autocommit
    mode (``isolation_level=None``): each migration runs in its own ``BEGIN IMMEDIATE``."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for version, description, fn in SQLITE_MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)).fetchone()
            if done is None:
                fn(conn)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, datetime.now(UTC).isoformat()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


# ---------------------------------------------------------------------------------- Postgres

_PG_V1 = """
CREATE TABLE IF NOT EXISTS calls (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    key_id TEXT,
    key_name TEXT,
    client_dialect TEXT NOT NULL,
    provider TEXT,
    upstream_model TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost NUMERIC,
    cost_saved NUMERIC,
    estimated BOOLEAN NOT NULL,
    price_source TEXT,
    ttft_ms DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION,
    tokens_per_s DOUBLE PRECISION,
    cache TEXT NOT NULL,
    route TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS calls_time ON calls (time);
CREATE INDEX IF NOT EXISTS calls_key_time ON calls (key_id, time);
CREATE TABLE IF NOT EXISTS attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL,
    attempt_no INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    role TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost NUMERIC,
    cost_input NUMERIC,
    cost_cached_input NUMERIC,
    cost_cache_write NUMERIC,
    cost_output NUMERIC,
    cost_reasoning NUMERIC,
    estimated BOOLEAN NOT NULL,
    ttft_ms DOUBLE PRECISION,
    latency_ms DOUBLE PRECISION,
    tokens_per_s DOUBLE PRECISION,
    started_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_request ON attempts (request_id);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts (started_at);
"""


async def _pg_v1(conn: Any) -> None:
    await conn.execute(_PG_V1)


async def _pg_v2(conn: Any) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS ledger_writer_state (writer TEXT PRIMARY KEY, seq BIGINT NOT NULL)"
    )


async def _pg_v3(conn: Any) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS inflight (
            request_id TEXT PRIMARY KEY,
            writer TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            output_tokens INTEGER NOT NULL,
            rows TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS inflight_adopted (
            request_id TEXT PRIMARY KEY,
            call_id BIGINT NOT NULL,
            adopted_at TIMESTAMPTZ NOT NULL
        );
        """
    )


async def _pg_v4(conn: Any) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS responses (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            previous_response_id TEXT,
            request_id TEXT NOT NULL,
            response TEXT NOT NULL,
            context TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS responses_tenant ON responses (tenant, created_at);
        CREATE TABLE IF NOT EXISTS response_items (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            response_id TEXT NOT NULL,
            item TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX IF NOT EXISTS response_items_response ON response_items (response_id);
        """
    )


async def _pg_v6(conn: Any) -> None:
    await conn.execute(
        """
        ALTER TABLE calls ADD COLUMN IF NOT EXISTS experiment TEXT;
        ALTER TABLE calls ADD COLUMN IF NOT EXISTS experiment_role TEXT;
        CREATE INDEX IF NOT EXISTS calls_experiment ON calls (experiment, experiment_role)
            WHERE experiment IS NOT NULL;
        CREATE TABLE IF NOT EXISTS experiments (
            name TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            definition TEXT NOT NULL,
            status TEXT NOT NULL,
            promoted_to TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            calls_control BIGINT NOT NULL DEFAULT 0,
            calls_challenger BIGINT NOT NULL DEFAULT 0,
            sampled BIGINT NOT NULL DEFAULT 0,
            dropped BIGINT NOT NULL DEFAULT 0,
            over_budget BIGINT NOT NULL DEFAULT 0,
            spend NUMERIC NOT NULL DEFAULT 0,
            unpriced BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS experiment_pairs (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            experiment TEXT NOT NULL,
            time TIMESTAMPTZ NOT NULL,
            request_id TEXT NOT NULL,
            served TEXT NOT NULL,
            verdict_1 TEXT NOT NULL,
            verdict_2 TEXT NOT NULL,
            outcome TEXT NOT NULL,
            cost NUMERIC,
            note TEXT
        );
        CREATE INDEX IF NOT EXISTS experiment_pairs_experiment ON experiment_pairs (experiment, id);
        """
    )


async def _pg_v8(conn: Any) -> None:
    await conn.execute("ALTER TABLE calls ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'chat'")


async def _pg_v5(conn: Any) -> None:
    from fareway.ledger.rollup_store import pg_migrate

    await pg_migrate(conn)


async def _pg_v10(conn: Any) -> None:
    for table in ("calls", "rollup_calls"):
        for col in _V10_COLUMNS:
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} TEXT")


PG_MIGRATIONS: list[tuple[int, str, Callable[[Any], Awaitable[None]]]] = [
    (1, "calls and attempts", _pg_v1),
    (2, "writer state: the last batch each writer committed (exactly-once re-sends)", _pg_v2),
    (3, _V3, _pg_v3),
    (4, _V4, _pg_v4),
    (5, _V5, _pg_v5),
    (6, _V6, _pg_v6),
    (8, _V8, _pg_v8),
    (10, _V10, _pg_v10),
]

_PG_LOCK_KEY = 0x4641524557  # "FAREW": serializes concurrent migrators on one database


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate_postgres(conn: Any, schema: str) -> int:
    """Create ``schema`` if needed and apply pending migrations inside it (``conn`` is an
    asyncpg connection).  Concurrent migrators are serialized by an advisory lock."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(schema)}")
    await conn.execute(f"SET search_path TO {_quote_ident(schema)}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
    for version, description, fn in PG_MIGRATIONS:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
            done = await conn.fetchval("SELECT 1 FROM schema_version WHERE version = $1", version)
            if done is None:
                await fn(conn)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, now())",
                    version,
                    description,
                )
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
