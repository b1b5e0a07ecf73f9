"""Experiment state in the ledger's database (SQLite by default, Postgres when the ledger is).

Two tables (ledger migration 6, fareway.ledger.migrations):

``experiments``       one row per experiment: where it was defined (``config`` or ``api``), its
                      settings as JSON, its status (``running``, ``paused``, ``stopped``,
                      ``promoted``) and the model its name was promoted to, and counters: calls
                      per arm, calls sampled, sampled calls dropped (background work full) or
                      skipped over budget, background calls with no known price, and the
                      judge + shadow spend.  Counters are *added to* (``SET n = n + delta``), so
                      several gateways on one Postgres database count together.
``experiment_pairs``  one row per judged pair, in order: the caller's request id, the arm that
                      served it, the verdict of each order, the outcome, what the pair cost.

The ledger's own ``calls`` table carries ``experiment`` and ``experiment_role`` (every call of
an experiment, the experiment's background calls included), which is where per-variant cost,
latency and errors come from (fareway.experiments.queries).

The stores use their own connection (SQLite: one, in a worker thread; Postgres: a small asyncpg
pool with the ledger's schema as ``search_path``) and apply the ledger migrations first (a no-op
when the ledger has), so ``fareway experiments`` works on a database no gateway has opened yet.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import orjson

from fareway.ledger.migrations import migrate_postgres, migrate_sqlite
from fareway.ledger.sqlite_store import iso_utc

COUNTERS = ("calls_control", "calls_challenger", "sampled", "dropped", "over_budget", "unpriced")
STATUSES = ("running", "paused", "stopped", "promoted")


@dataclass(slots=True)
class StoredExperiment:
    name: str
    source: str
    definition: dict[str, Any]
    status: str = "running"
    promoted_to: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    spend: Decimal = Decimal(0)


@dataclass(slots=True)
class PairRecord:
    experiment: str
    request_id: str
    served: str
    """The arm that answered the caller: ``control`` or ``challenger``."""
    verdict_1: str
    """Control shown first: ``control``, ``challenger``, ``tie``, ``unparseable`` or ``error``."""
    verdict_2: str
    """Challenger shown first (same values)."""
    outcome: str
    """``win``, ``loss``, ``tie`` (the challenger's side), ``unparseable`` or ``error``."""
    cost: Decimal | None = None
    note: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def consistent(self) -> bool:
        return self.verdict_1 == self.verdict_2


class ExperimentStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self) -> list[StoredExperiment]: ...

    async def ensure(self, name: str, source: str, definition: dict[str, Any]) -> StoredExperiment:
        """The experiment's row, inserted (status ``running``) when absent.  A config-defined
        experiment's definition is updated to the config's."""
        ...

    async def set_status(self, name: str, status: str, promoted_to: str | None) -> None: ...

    async def add(self, name: str, deltas: dict[str, int], spend: Decimal) -> None: ...

    async def add_pairs(self, pairs: list[PairRecord]) -> None: ...

    async def pairs(self, name: str) -> list[PairRecord]: ...


def _money(v: Any) -> Decimal | None:
    if v is None:
        return None
    return v if isinstance(v, Decimal) else Decimal(str(v))


def _when(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v))


_EXP_COLUMNS = (
    "name, source, definition, status, promoted_to, created_at, updated_at, "
    + ", ".join(COUNTERS)
    + ", spend"
)
_PAIR_COLUMNS = "experiment, time, request_id, served, verdict_1, verdict_2, outcome, cost, note"


def _experiment(row: tuple[Any, ...]) -> StoredExperiment:
    n = len(COUNTERS)
    return StoredExperiment(
        name=row[0],
        source=row[1],
        definition=orjson.loads(row[2]),
        status=row[3],
        promoted_to=row[4],
        created_at=_when(row[5]),
        updated_at=_when(row[6]),
        counters={c: int(v) for c, v in zip(COUNTERS, row[7 : 7 + n], strict=True)},
        spend=_money(row[7 + n]) or Decimal(0),
    )


def _pair(row: tuple[Any, ...]) -> PairRecord:
    return PairRecord(
        experiment=row[0],
        time=_when(row[1]),
        request_id=row[2],
        served=row[3],
        verdict_1=row[4],
        verdict_2=row[5],
        outcome=row[6],
        cost=_money(row[7]),
        note=row[8],
    )


# ------------------------------------------------------------------------------------ SQLite


class SqliteExperimentStore:
    """On the ledger's SQLite file, through one connection in a worker thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        if self._conn is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fareway-experiments")
        await self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        migrate_sqlite(conn)
        self._conn = conn

    async def close(self) -> None:
        if self._pool is None:
            return
        await self._run(self._close)
        self._pool.shutdown(wait=True)
        self._pool = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            raise RuntimeError("the experiment store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the experiment store is not open")
        return self._conn

    async def load(self) -> list[StoredExperiment]:
        def q() -> list[StoredExperiment]:
            rows = self._c().execute(f"SELECT {_EXP_COLUMNS} FROM experiments ORDER BY name").fetchall()
            return [_experiment(r) for r in rows]

        result: list[StoredExperiment] = await self._run(q)
        return result

    async def ensure(self, name: str, source: str, definition: dict[str, Any]) -> StoredExperiment:
        def q() -> StoredExperiment:
            c = self._c()
            now = iso_utc(datetime.now(UTC))
            text = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(
                    "INSERT INTO experiments (name, source, definition, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'running', ?, ?) ON CONFLICT (name) DO NOTHING",
                    (name, source, text, now, now),
                )
                if source == "config":
                    c.execute(
                        "UPDATE experiments SET definition = ?, source = 'config' WHERE name = ? AND definition <> ?",
                        (text, name, text),
                    )
                row = c.execute(f"SELECT {_EXP_COLUMNS} FROM experiments WHERE name = ?", (name,)).fetchone()
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return _experiment(row)

        result: StoredExperiment = await self._run(q)
        return result

    async def set_status(self, name: str, status: str, promoted_to: str | None) -> None:
        def q() -> None:
            self._c().execute(
                "UPDATE experiments SET status = ?, promoted_to = ?, updated_at = ? WHERE name = ?",
                (status, promoted_to, iso_utc(datetime.now(UTC)), name),
            )

        await self._run(q)

    async def add(self, name: str, deltas: dict[str, int], spend: Decimal) -> None:
        sets = ", ".join(f"{c} = {c} + ?" for c in COUNTERS)

        def q() -> None:
            c = self._c()
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT spend FROM experiments WHERE name = ?", (name,)).fetchone()
                if row is not None:
                    total = (_money(row[0]) or Decimal(0)) + spend
                    c.execute(
                        f"UPDATE experiments SET {sets}, spend = ? WHERE name = ?",
                        (*(deltas.get(k, 0) for k in COUNTERS), str(total), name),
                    )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(q)

    async def add_pairs(self, pairs: list[PairRecord]) -> None:
        rows = [
            (
                p.experiment,
                iso_utc(p.time),
                p.request_id,
                p.served,
                p.verdict_1,
                p.verdict_2,
                p.outcome,
                None if p.cost is None else str(p.cost),
                p.note,
            )
            for p in pairs
        ]

        def q() -> None:
            c = self._c()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    f"INSERT INTO experiment_pairs ({_PAIR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._run(q)

    async def pairs(self, name: str) -> list[PairRecord]:
        def q() -> list[PairRecord]:
            rows = (
                self._c()
                .execute(
                    f"SELECT {_PAIR_COLUMNS} FROM experiment_pairs WHERE experiment = ? ORDER BY id", (name,)
                )
                .fetchall()
            )
            return [_pair(r) for r in rows]

        result: list[PairRecord] = await self._run(q)
        return result


# ---------------------------------------------------------------------------------- Postgres


class PostgresExperimentStore:
    """On the ledger's Postgres database and schema, through a small asyncpg pool."""

    def __init__(
        self, url: str, schema: str = "fareway", connect_timeout: float = 5.0, statement_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._pool: Any = None

    async def start(self) -> None:
        import asyncpg

        if self._pool is not None:
            return
        conn = await asyncpg.connect(
            self.url, timeout=self.connect_timeout, command_timeout=self.statement_timeout
        )
        try:
            await migrate_postgres(conn, self.schema)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=2,
            timeout=self.connect_timeout,
            command_timeout=self.statement_timeout,
            server_settings={"search_path": self.schema},
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _p(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the experiment store is not started")
        return self._pool

    async def load(self) -> list[StoredExperiment]:
        async with self._p().acquire() as c:
            rows = await c.fetch(f"SELECT {_EXP_COLUMNS} FROM experiments ORDER BY name")
        return [_experiment(tuple(r)) for r in rows]

    async def ensure(self, name: str, source: str, definition: dict[str, Any]) -> StoredExperiment:
        text = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()
        async with self._p().acquire() as c, c.transaction():
            await c.execute(
                "INSERT INTO experiments (name, source, definition, status, created_at, updated_at) "
                "VALUES ($1, $2, $3, 'running', now(), now()) ON CONFLICT (name) DO NOTHING",
                name,
                source,
                text,
            )
            if source == "config":
                await c.execute(
                    "UPDATE experiments SET definition = $1, source = 'config' WHERE name = $2 AND definition <> $1",
                    text,
                    name,
                )
            row = await c.fetchrow(f"SELECT {_EXP_COLUMNS} FROM experiments WHERE name = $1", name)
        return _experiment(tuple(row))

    async def set_status(self, name: str, status: str, promoted_to: str | None) -> None:
        async with self._p().acquire() as c:
            await c.execute(
                "UPDATE experiments SET status = $1, promoted_to = $2, updated_at = now() WHERE name = $3",
                status,
                promoted_to,
                name,
            )

    async def add(self, name: str, deltas: dict[str, int], spend: Decimal) -> None:
        sets = ", ".join(f"{c} = {c} + ${i + 1}" for i, c in enumerate(COUNTERS))
        n = len(COUNTERS)
        async with self._p().acquire() as c:
            await c.execute(
                f"UPDATE experiments SET {sets}, spend = spend + ${n + 1} WHERE name = ${n + 2}",
                *(deltas.get(k, 0) for k in COUNTERS),
                spend,
                name,
            )

    async def add_pairs(self, pairs: list[PairRecord]) -> None:
        rows = [
            (
                p.experiment,
                p.time,
                p.request_id,
                p.served,
                p.verdict_1,
                p.verdict_2,
                p.outcome,
                p.cost,
                p.note,
            )
            for p in pairs
        ]
        async with self._p().acquire() as c:
            await c.executemany(
                f"INSERT INTO experiment_pairs ({_PAIR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                rows,
            )

    async def pairs(self, name: str) -> list[PairRecord]:
        async with self._p().acquire() as c:
            rows = await c.fetch(
                f"SELECT {_PAIR_COLUMNS} FROM experiment_pairs WHERE experiment = $1 ORDER BY id", name
            )
        return [_pair(tuple(r)) for r in rows]


def open_store(
    url: str | None,
    path: str | Path,
    *,
    schema: str = "fareway",
    connect_timeout: float = 5.0,
    statement_timeout: float = 10.0,
) -> ExperimentStore:
    """The store beside the ledger that ``Ledger.open(url, path, schema=...)`` would open."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return PostgresExperimentStore(url, schema, connect_timeout, statement_timeout)
    if url and url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("///") or str(path)
    elif url:
        raise ValueError(f"unsupported ledger_url {url!r}: use postgresql://... or sqlite:///path")
    return SqliteExperimentStore(path)
