"""Stored Responses API responses, per tenant, in the ledger's database (SQLite by default,
Postgres when ``[ledger] url`` names one): tables ``responses`` and ``response_items`` (migration 4).

Unlike ledger rows (batched, written off the request path), a response is written *before* the
client sees it complete, and the write is committed when :meth:`ResponseStore.put` returns: the
next request's ``previous_response_id`` finds it at once.

* ``responses``: one row per response: ``response`` (the response object as JSON, reasoning
  state included), ``context`` (every input item the response was generated from: the history
  through ``previous_response_id`` and that request's own input, in order, each with an id).
* ``response_items``: every item with an id (context and output), keyed by (tenant, id), for
  ``item_reference`` inputs.

Every read and delete is by (tenant, id): another tenant's id is not found.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from fareway.ledger.base import StoreUnavailable
from fareway.ledger.migrations import migrate_postgres, migrate_sqlite

log = logging.getLogger("fareway.responses")

__all__ = ["PostgresResponseStore", "ResponseStore", "SqliteResponseStore", "StoredResponse", "open_store"]


@dataclass(slots=True)
class StoredResponse:
    id: str
    tenant: str
    request_id: str
    response: dict[str, Any]
    context: list[dict[str, Any]]
    previous_response_id: str | None = None
    created_at: float = 0.0


class ResponseStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, rec: StoredResponse) -> None:
        """Write ``rec`` (and index its items); committed when this returns."""
        ...

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None: ...

    async def items(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored items of ``tenant`` among ``ids``, by id."""
        ...

    async def delete(self, tenant: str, response_id: str) -> bool: ...

    async def set_cost(self, tenant: str, response_id: str, cost: float) -> None:
        """Add the gateway's cost to the stored response's usage (known after accounting)."""
        ...


def _item_rows(rec: StoredResponse) -> list[tuple[str, str, str, str]]:
    rows: dict[str, tuple[str, str, str, str]] = {}
    for item in [*rec.context, *(rec.response.get("output") or [])]:
        iid = item.get("id") if isinstance(item, dict) else None
        if isinstance(iid, str) and iid:
            rows[iid] = (rec.tenant, iid, rec.id, orjson.dumps(item).decode())
    return list(rows.values())


def _with_cost(response: dict[str, Any], cost: float) -> dict[str, Any]:
    usage = response.get("usage")
    if isinstance(usage, dict):
        usage["cost"] = cost
    return response


# ------------------------------------------------------------------------------------ SQLite


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class SqliteResponseStore:
    """One connection on one thread (sqlite3 objects stay on the thread that made them)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fareway-responses")
        await self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        migrate_sqlite(conn)
        self._conn = conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            raise StoreUnavailable("the responses store is not started")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

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

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable("the responses store is closed")
        return self._conn

    def _put(self, rec: StoredResponse) -> None:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO responses (id, tenant, created_at, previous_response_id, request_id, "
                "response, context) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.tenant,
                    _iso(rec.created_at),
                    rec.previous_response_id,
                    rec.request_id,
                    orjson.dumps(rec.response).decode(),
                    orjson.dumps(rec.context).decode(),
                ),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO response_items (tenant, id, response_id, item) VALUES (?, ?, ?, ?)",
                _item_rows(rec),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def put(self, rec: StoredResponse) -> None:
        await self._run(self._put, rec)

    def _get(self, tenant: str, response_id: str) -> StoredResponse | None:
        row = (
            self._db()
            .execute(
                "SELECT id, tenant, request_id, response, context, previous_response_id, created_at FROM responses "
                "WHERE tenant = ? AND id = ?",
                (tenant, response_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        return StoredResponse(
            row[0],
            row[1],
            row[2],
            orjson.loads(row[3]),
            orjson.loads(row[4]),
            row[5],
            datetime.fromisoformat(row[6]).timestamp(),
        )

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        result: StoredResponse | None = await self._run(self._get, tenant, response_id)
        return result

    def _items(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for iid, item in self._db().execute(
                f"SELECT id, item FROM response_items WHERE tenant = ? AND id IN ({marks})", [tenant, *chunk]
            ):
                out[iid] = orjson.loads(item)
        return out

    async def items(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await self._run(self._items, tenant, ids)
        return result

    def _delete(self, tenant: str, response_id: str) -> bool:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(
                "DELETE FROM responses WHERE tenant = ? AND id = ?", (tenant, response_id)
            ).rowcount
            if n:
                conn.execute(
                    "DELETE FROM response_items WHERE tenant = ? AND response_id = ?", (tenant, response_id)
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return bool(n)

    async def delete(self, tenant: str, response_id: str) -> bool:
        return bool(await self._run(self._delete, tenant, response_id))

    def _set_cost(self, tenant: str, response_id: str, cost: float) -> None:
        rec = self._get(tenant, response_id)
        if rec is None:
            return
        self._db().execute(
            "UPDATE responses SET response = ? WHERE tenant = ? AND id = ?",
            (orjson.dumps(_with_cost(rec.response, cost)).decode(), tenant, response_id),
        )

    async def set_cost(self, tenant: str, response_id: str, cost: float) -> None:
        await self._run(self._set_cost, tenant, response_id, cost)


# ---------------------------------------------------------------------------------- Postgres


class PostgresResponseStore:
    """An asyncpg pool on the ledger's database and schema.  The schema is migrated at the first
    connection (the gateway serves with the database down; these calls then raise
    StoreUnavailable, which the gateway answers with a 503)."""

    def __init__(
        self,
        url: str,
        schema: str = "fareway",
        *,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self._pool: Any = None
        self._migrated = False
        self._lock: asyncio.Lock | None = None

    async def start(self) -> None:
        import asyncpg

        self._lock = asyncio.Lock()
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=4,
            timeout=self.connect_timeout,
            command_timeout=self.statement_timeout,
            server_settings={
                "search_path": self.schema,
                "statement_timeout": str(max(1, int(self.statement_timeout * 1000))),
            },
        )
        try:
            await self._ensure()
        except StoreUnavailable as exc:
            log.warning("responses store: %s; serving, and trying again at the next call", exc)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _ensure(self) -> None:
        if self._migrated:
            return
        assert self._lock is not None
        async with self._lock:
            if self._migrated:
                return
            async with self._acquire() as conn:
                await migrate_postgres(conn, self.schema)
            self._migrated = True

    def _acquire(self) -> Any:
        if self._pool is None:
            raise StoreUnavailable("the responses store is not started")
        return _Guard(self._pool, self.connect_timeout + self.statement_timeout, self.connect_timeout)

    async def put(self, rec: StoredResponse) -> None:
        await self._ensure()
        async with self._acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO responses (id, tenant, created_at, previous_response_id, request_id, response, context) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET response = EXCLUDED.response, "
                "context = EXCLUDED.context",
                rec.id,
                rec.tenant,
                datetime.fromtimestamp(rec.created_at, UTC),
                rec.previous_response_id,
                rec.request_id,
                orjson.dumps(rec.response).decode(),
                orjson.dumps(rec.context).decode(),
            )
            rows = _item_rows(rec)
            if rows:
                await conn.executemany(
                    "INSERT INTO response_items (tenant, id, response_id, item) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (tenant, id) DO UPDATE SET response_id = EXCLUDED.response_id, item = EXCLUDED.item",
                    rows,
                )

    async def get(self, tenant: str, response_id: str) -> StoredResponse | None:
        await self._ensure()
        async with self._acquire() as conn:
            row = await conn.fetchrow(
                "SELECT id, tenant, request_id, response, context, previous_response_id, created_at FROM responses "
                "WHERE tenant = $1 AND id = $2",
                tenant,
                response_id,
            )
        if row is None:
            return None
        return StoredResponse(
            row[0], row[1], row[2], orjson.loads(row[3]), orjson.loads(row[4]), row[5], row[6].timestamp()
        )

    async def items(self, tenant: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        await self._ensure()
        async with self._acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, item FROM response_items WHERE tenant = $1 AND id = ANY($2::text[])", tenant, ids
            )
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def delete(self, tenant: str, response_id: str) -> bool:
        await self._ensure()
        async with self._acquire() as conn, conn.transaction():
            status = await conn.execute(
                "DELETE FROM responses WHERE tenant = $1 AND id = $2", tenant, response_id
            )
            n = int(status.split()[-1]) if isinstance(status, str) else 0
            if n:
                await conn.execute(
                    "DELETE FROM response_items WHERE tenant = $1 AND response_id = $2", tenant, response_id
                )
        return bool(n)

    async def set_cost(self, tenant: str, response_id: str, cost: float) -> None:
        rec = await self.get(tenant, response_id)
        if rec is None:
            return
        async with self._acquire() as conn:
            await conn.execute(
                "UPDATE responses SET response = $3 WHERE tenant = $1 AND id = $2",
                tenant,
                response_id,
                orjson.dumps(_with_cost(rec.response, cost)).decode(),
            )


class _Guard:
    """``async with``: a pooled connection, bounded in time; database failures -> StoreUnavailable."""

    def __init__(self, pool: Any, seconds: float, acquire_timeout: float) -> None:
        self.pool = pool
        self.seconds = seconds
        self.acquire_timeout = acquire_timeout
        self.conn: Any = None

    async def __aenter__(self) -> Any:
        try:
            async with asyncio.timeout(self.seconds):
                self.conn = await self.pool.acquire(timeout=self.acquire_timeout)
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise StoreUnavailable(f"the responses database is unavailable ({type(exc).__name__})") from exc
        except Exception as exc:
            if _is_transient(exc):
                raise StoreUnavailable(
                    f"the responses database is unavailable ({type(exc).__name__})"
                ) from exc
            raise
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.pool.release(self.conn)


def _is_transient(exc: BaseException) -> bool:
    from fareway.ledger.pg_support import is_transient

    return is_transient(exc)


def open_store(
    url: str | None,
    path: str,
    schema: str = "fareway",
    *,
    connect_timeout: float = 5.0,
    statement_timeout: float = 10.0,
) -> ResponseStore:
    """The store beside the ledger: Postgres for a ``postgres[ql]://`` URL, else SQLite at ``path``
    (or the ``sqlite:///`` path of ``url``)."""
    if url and url.startswith(("postgresql://", "postgres://")):
        return PostgresResponseStore(
            url, schema, connect_timeout=connect_timeout, statement_timeout=statement_timeout
        )
    if url and url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("///") or path
    return SqliteResponseStore(path)
