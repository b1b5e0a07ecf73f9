"""Postgres backend (asyncpg), used when ``ledger_url`` is ``postgresql://...``.

Tables live in one schema (default ``fareway``, created if missing); every pooled connection has
``search_path`` set to it, so the named queries use unqualified table names.  ``submit()`` appends
to a deque and wakes the writer task (no I/O, no await); the task drains batches and writes each
with ``COPY`` (``copy_records_to_table``) in one transaction.  Money is NUMERIC (asyncpg gives and
takes ``Decimal``), times TIMESTAMPTZ.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

from fareway.ledger.base import FlushMarker, LedgerStats, QueueItem, log
from fareway.ledger.migrations import migrate_postgres
from fareway.ledger.records import ATTEMPT_COLUMNS, CALL_COLUMNS, attempt_values, call_values


class PostgresDialect:
    name = "postgres"

    def ph(self, n: int) -> str:
        return f"${n}"

    def bucket(self, column: str, unit: str) -> str:
        fmt = "YYYY-MM-DD" if unit == "day" else 'YYYY-MM-DD"T"HH24'
        return f"to_char({column} AT TIME ZONE 'UTC', '{fmt}')"

    def money_sum(self, column: str) -> str:
        return f"SUM({column})"

    def percentile(self, expr: str, q: float) -> str:
        return f"percentile_cont({q!r}) WITHIN GROUP (ORDER BY {expr})"

    def time_param(self, value: Any) -> Any:
        return value

    def in_list(self, column: str, first_ph: int, count: int) -> tuple[str, bool]:
        return f"{column} = ANY(${first_ph})", True


def _is_transient(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(
        exc,
        OSError
        | asyncio.TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.InsufficientResourcesError
        | asyncpg.OperatorInterventionError,
    )


class PostgresStore:
    def __init__(
        self,
        url: str,
        stats: LedgerStats,
        *,
        schema: str = "fareway",
        batch_size: int = 500,
        max_delay: float = 0.05,
        close_retries: int = 5,
        pool_size: int = 4,
    ) -> None:
        self.url = url
        self.schema = schema
        self.stats = stats
        self.dialect = PostgresDialect()
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.close_retries = close_retries
        self.pool_size = pool_size
        self.schema_version = 0
        self._pool: Any = None
        self._items: deque[Any] = deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._markers = 0

    async def start(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            self.schema_version = await migrate_postgres(conn, self.schema)
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, server_settings={"search_path": self.schema}
        )
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="fareway-ledger-writer")

    def submit(self, item: QueueItem | FlushMarker) -> None:
        if isinstance(item, FlushMarker):
            self._markers += 1
        self._items.append(item)
        if self._wake is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self) -> None:
        if self._task is None:
            return
        self._closing = True
        assert self._wake is not None
        self._wake.set()
        await self._task
        self._task = None
        await self._pool.close()
        self._pool = None

    # -- writer task

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._items:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._gather()
            batch: list[QueueItem] = []
            while self._items and len(batch) < self.batch_size:
                item = self._items.popleft()
                if isinstance(item, FlushMarker):
                    self._markers -= 1
                    await self._write(batch)
                    batch = []
                    item.resolve()
                else:
                    batch.append(item)
            await self._write(batch)

    async def _gather(self) -> None:
        """Under light load, wait up to ``max_delay`` for a batch to fill; a flush or close
        request ends the wait at once."""
        assert self._wake is not None
        deadline = asyncio.get_running_loop().time() + self.max_delay
        while len(self._items) < self.batch_size and not self._closing and not self._markers:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _write(self, batch: list[QueueItem]) -> None:
        if not batch:
            return
        delay = 0.05
        failures = 0
        while True:
            try:
                await self._write_once(batch)
                return
            except Exception as exc:
                if not _is_transient(exc):
                    if len(batch) == 1:
                        self._give_up(batch, exc)
                        return
                    for one in batch:
                        await self._write([one])
                    return
                failures += 1
                self.stats.retries += 1
                if self._closing and failures > self.close_retries:
                    self._give_up(batch, exc)
                    return
                log.warning("ledger write failed (%s); retrying %d calls in %.2fs", exc, len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _write_once(self, batch: list[QueueItem]) -> None:
        calls = [call_values(c) for c, _ in batch]
        attempts = [attempt_values(a) for _, atts in batch for a in atts]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "calls", records=calls, columns=CALL_COLUMNS, schema_name=self.schema
            )
            if attempts:
                await conn.copy_records_to_table(
                    "attempts", records=attempts, columns=ATTEMPT_COLUMNS, schema_name=self.schema
                )
        self.stats.written += len(calls)
        self.stats.attempts_written += len(attempts)
        self.stats.batches += 1

    def _give_up(self, batch: list[QueueItem], exc: BaseException) -> None:
        self.stats.dropped += len(batch)
        log.error(
            "ledger dropped %d call(s) after %s: request ids %s",
            len(batch),
            exc,
            ", ".join(c.request_id for c, _ in batch[:20]),
        )

    # -- reads

    async def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self._pool is None:
            raise RuntimeError("the ledger is not started")
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *params)
        return [tuple(r) for r in rows]
