"""Retention: raw rows (``calls``, ``attempts``) older than ``[ledger] keep_calls_days`` are
deleted, and the minute rollups with them (by whole hours: before the hour of the cut-off); the
hour and day rollups are kept, so every aggregate still covers the whole history (only the
per-call drill-down, ``/v1/logs`` and the CSV export of calls lose the pruned calls, and a
window starting in pruned history starts at a minute or hour boundary).

Pruning runs in the background (:class:`fareway.ledger.writer.Ledger`, every
:data:`PRUNE_EVERY` seconds) and on demand (``fareway ledger prune``), in small transactions:
each deletes whole minutes, about :data:`PRUNE_BATCH` calls, then pauses, so the writer is never
held up for long.  Each records in ``ledger_pruned`` the minute boundary before which the raw
rows are gone; the aggregate queries read the edges of a window there from the minute rollups
instead (rollup_queries.py).

SQLite: a ledger created by this version has ``auto_vacuum = INCREMENTAL``; after pruning, the
freed pages are handed back to the file system a few thousand at a time
(``PRAGMA incremental_vacuum``).  An older ledger file keeps its size (freed pages are reused by
new rows) until ``fareway ledger prune --vacuum`` rewrites it once (a full ``VACUUM``, with the
gateway stopped), which also switches it to incremental.  Postgres: deleted rows are reclaimed
by autovacuum for reuse (``--vacuum`` runs ``VACUUM`` on the raw tables).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from fareway.ledger.rollup_store import PRUNED_TABLE, quote_ident
from fareway.ledger.rollups import HOUR, MINUTE, TABLES, floor_to

PRUNE_BATCH = 2000
"""Calls per pruning transaction (about; a transaction deletes whole minutes)."""
PRUNE_PAUSE = 0.05
"""Seconds between two pruning transactions."""
PRUNE_EVERY = 300.0
"""Seconds between two background pruning passes."""
VACUUM_PAGES = 2048
"""SQLite pages handed back per ``incremental_vacuum`` step (8 MB of 4 KB pages)."""


@dataclass(slots=True)
class PruneStep:
    calls: int
    attempts: int
    more: bool
    """Rows older than the cut-off remain (another step is due)."""


@runtime_checkable
class Prunable(Protocol):
    """A store that can prune its raw rows and describe its size (both backends)."""

    async def prune_step(self, before: datetime, batch: int) -> PruneStep: ...

    async def reclaim(self, full: bool = False) -> bool:
        """Give freed space back (a bounded step; True: more is left), or ``full``: all of it."""
        ...

    async def storage_stats(self) -> dict[str, Any]: ...


def cutoff(keep_days: float, now: datetime | None = None) -> datetime:
    """The minute boundary before which raw rows are pruned when keeping ``keep_days`` days."""
    return floor_to((now or datetime.now(UTC)) - timedelta(days=keep_days), MINUTE)


def _cut(oldest: datetime | None, nth: datetime | None, before: datetime) -> datetime:
    """Where one step stops: the minute of the batch-th oldest row (whole minutes only), at
    least the oldest row's minute whole, at most ``before``."""
    if nth is None or oldest is None:
        return before
    cut = floor_to(nth, MINUTE)
    if cut <= floor_to(oldest, MINUTE):
        cut = floor_to(nth, MINUTE) + timedelta(minutes=1)
    return min(cut, before)


# ------------------------------------------------------------------------------- SQLite


def _parse(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def sqlite_prune_step(conn: sqlite3.Connection, before: datetime, batch: int, iso: Any) -> PruneStep:
    """One pruning transaction on ``conn`` (autocommit mode); ``iso`` formats a time as stored."""
    b = iso(before)
    oldest = _parse(conn.execute("SELECT MIN(time) FROM calls WHERE time < ?", (b,)).fetchone()[0])
    nth = conn.execute(
        "SELECT time FROM calls WHERE time < ? ORDER BY time LIMIT 1 OFFSET ?", (b, max(0, batch - 1))
    ).fetchone()
    cut = _cut(oldest, _parse(nth[0]) if nth else None, before)
    c = iso(cut)
    conn.execute("BEGIN IMMEDIATE")
    try:
        calls = conn.execute("DELETE FROM calls WHERE time < ?", (c,)).rowcount
        attempts = conn.execute("DELETE FROM attempts WHERE started_at < ?", (c,)).rowcount
        for t in TABLES:  # minute rollups go with the raw rows, by whole hours
            conn.execute(
                f"DELETE FROM {t.name} WHERE grain = {MINUTE} AND bucket < ?", (iso(floor_to(cut, HOUR)),)
            )
        conn.execute(
            f"INSERT INTO {PRUNED_TABLE} (tbl, before) VALUES ('calls', ?), ('attempts', ?) "
            "ON CONFLICT (tbl) DO UPDATE SET before = max(before, excluded.before)",
            (c, c),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return PruneStep(calls, attempts, cut < before)


def sqlite_reclaim(conn: sqlite3.Connection, full: bool = False, steps: int = 8) -> bool:
    """Hand freed pages back: when the file has ``auto_vacuum = INCREMENTAL``, at most ``steps``
    transactions of :data:`VACUUM_PAGES` pages (True: free pages remain); ``full``: rewrite the
    file (``VACUUM``, which also switches an older ledger to incremental)."""
    if full:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        return False
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return False
    for _ in range(steps):
        if int(conn.execute("PRAGMA freelist_count").fetchone()[0]) == 0:
            return False
        conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0


def sqlite_stats(conn: sqlite3.Connection, path: str) -> dict[str, Any]:
    def one(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    page = int(one("PRAGMA page_size"))
    files = {p: os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)}
    pruned = dict(conn.execute(f"SELECT tbl, before FROM {PRUNED_TABLE}").fetchall())
    return {
        "backend": "sqlite",
        "path": path,
        "rows": {
            t: int(one(f"SELECT COUNT(*) FROM {t}")) for t in ("calls", "attempts", *(x.name for x in TABLES))
        },
        "oldest_call": one("SELECT MIN(time) FROM calls"),
        "oldest_attempt": one("SELECT MIN(started_at) FROM attempts"),
        "pruned_before": pruned.get("calls"),
        "size_bytes": sum(files.values()),
        "files": files,
        "free_bytes": int(one("PRAGMA freelist_count")) * page,
        "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(int(one("PRAGMA auto_vacuum")), "?"),
    }


# ----------------------------------------------------------------------------- Postgres


async def pg_prune_step(conn: Any, schema: str, before: datetime, batch: int) -> PruneStep:
    s = quote_ident(schema)
    oldest = await conn.fetchval(f"SELECT MIN(time) FROM {s}.calls WHERE time < $1", before)
    nth = await conn.fetchval(
        f"SELECT time FROM {s}.calls WHERE time < $1 ORDER BY time OFFSET $2 LIMIT 1",
        before,
        max(0, batch - 1),
    )
    cut = _cut(oldest, nth, before)
    async with conn.transaction():
        calls = int((await conn.execute(f"DELETE FROM {s}.calls WHERE time < $1", cut)).split()[-1])
        attempts = int(
            (await conn.execute(f"DELETE FROM {s}.attempts WHERE started_at < $1", cut)).split()[-1]
        )
        for t in TABLES:  # minute rollups go with the raw rows, by whole hours
            await conn.execute(
                f"DELETE FROM {s}.{t.name} WHERE grain = {MINUTE} AND bucket < $1", floor_to(cut, HOUR)
            )
        await conn.execute(
            f"INSERT INTO {s}.{PRUNED_TABLE} AS p (tbl, before) VALUES ('calls', $1), ('attempts', $1) "
            "ON CONFLICT (tbl) DO UPDATE SET before = GREATEST(p.before, EXCLUDED.before)",
            cut,
        )
    return PruneStep(calls, attempts, cut < before)


async def pg_reclaim(conn: Any, schema: str, full: bool = False) -> bool:
    """Autovacuum reclaims deleted rows for reuse; ``full`` runs ``VACUUM`` on the raw tables now."""
    if full:
        s = quote_ident(schema)
        await conn.execute("SET statement_timeout = 0")  # (the pool resets it on release)
        await conn.execute(f"VACUUM (ANALYZE) {s}.calls, {s}.attempts", timeout=3600)
    return False


async def pg_stats(conn: Any, schema: str) -> dict[str, Any]:
    s = quote_ident(schema)
    tables = ("calls", "attempts", *(x.name for x in TABLES))
    rows = {t: int(await conn.fetchval(f"SELECT COUNT(*) FROM {s}.{t}")) for t in tables}
    sizes = {
        t: int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", f"{s}.{t}")) for t in tables
    }

    def iso(v: Any) -> str | None:
        return None if v is None else v.astimezone(UTC).isoformat()

    pruned = await conn.fetchval(f"SELECT before FROM {s}.{PRUNED_TABLE} WHERE tbl = 'calls'")
    return {
        "backend": "postgres",
        "schema": schema,
        "rows": rows,
        "oldest_call": iso(await conn.fetchval(f"SELECT MIN(time) FROM {s}.calls")),
        "oldest_attempt": iso(await conn.fetchval(f"SELECT MIN(started_at) FROM {s}.attempts")),
        "pruned_before": iso(pruned),
        "size_bytes": sum(sizes.values()),
        "tables": sizes,
    }
