"""SQLite backend: WAL mode, one writer thread, one reader thread.

The writer thread owns the only write connection.  ``submit()`` is a ``SimpleQueue.put`` (no I/O,
no await, safe from any thread); the thread takes the first waiting item, gathers more until
``batch_size`` or ``max_delay`` seconds, and writes the batch with ``executemany`` in one
transaction.  Reads run on a separate connection in a single-thread executor, never on the event
loop; WAL lets them proceed while the writer writes.

Money is stored as the ``str`` of the ``Decimal``; the read connection registers ``dsum`` (an
exact Decimal SUM) and ``pctl`` (``percentile_cont``) aggregates so the named queries run the
same SQL shape as on Postgres.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

from fareway.ledger.base import Checkpoint, FlushMarker, LedgerStats, QueueItem, log
from fareway.ledger.inflight import SqliteAdopter, sqlite_apply
from fareway.ledger.migrations import migrate_sqlite
from fareway.ledger.records import (
    ATTEMPT_COLUMNS,
    BOOL_COLUMNS,
    CALL_COLUMNS,
    MONEY_COLUMNS,
    TIME_COLUMNS,
)
from fareway.ledger.retention import PruneStep, sqlite_prune_step, sqlite_reclaim, sqlite_stats
from fareway.ledger.rollup_store import SQLITE, apply_sqlite, register_sqlite

_STOP = object()

# The sqlite3 module binds only int, float, str and bytes directly; every other value, None
# included, first goes through the adapter lookup (two failed protocol lookups), which made a
# NULL cost ~0.5 us to bind, more than a text value (measured: 27 NULL columns 16.2 us per row,
# 6.4 us with this).  An identity adapter for None takes the fast path; the value bound is the
# same SQL NULL.  Registering it is process-wide and changes nothing else.
sqlite3.register_adapter(type(None), lambda _: None)


def iso_utc(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text, so stored times sort and compare as strings."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        elif value.utcoffset():
            value = value.astimezone(UTC)
    # %-formatting: about half the CPU of isoformat(timespec="microseconds"), same text
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031  2026-11-20T10:15:00.000000+00:00
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_THREE_DIGITS = tuple(f"{i:03d}" for i in range(1000))
_last_second: tuple[int, str] = (-(2**62), "")


def iso_from_epoch(ts: float) -> str:
    """:func:`iso_utc` of the UTC time ``ts`` Unix seconds, rounded to the microsecond as
    ``datetime.fromtimestamp`` rounds (half to even), without building a datetime: the
    ``YYYY-MM-DDTHH:MM:SS.`` prefix is kept for the last second seen, and the microseconds come
    from a table.  Ledger rows are stamped within the same second in bursts, so this formats a
    time for about a tenth of the instructions of %-formatting or ``isoformat()``."""
    global _last_second
    sec = math.floor(ts)
    us = round((ts - sec) * 1e6)
    if us >= 1_000_000:
        sec += 1
        us -= 1_000_000
    last = _last_second
    if last[0] != sec:
        last = _last_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    return f"{last[1]}{_THREE_DIGITS[us // 1000]}{_THREE_DIGITS[us % 1000]}+00:00"


def row_time(value: datetime) -> str:
    """A record's time as stored: :func:`iso_utc`, by the fast path for UTC times."""
    if value.tzinfo is UTC:
        return iso_from_epoch(value.timestamp())
    return iso_utc(value)


def _row_maker(columns: tuple[str, ...], name: str, times: str = "iso") -> Any:
    """A row builder for ``columns``, generated as one tuple expression (money as the text of
    the Decimal, flags as 0/1, the rest as they are; times as :func:`iso_utc` text, or with
    ``times="epoch"`` as Unix seconds, a float, for :func:`epoch_times_to_iso` to finish in
    the writer process).  Measured: about half the CPU of a generic attrgetter-and-fix-up loop;
    rows are built for every call."""
    parts = []
    for col in columns:
        if col in MONEY_COLUMNS:
            parts.append(f"None if r.{col} is None else str(r.{col})")
        elif col in TIME_COLUMNS:
            parts.append(f"row_time(r.{col})" if times == "iso" else f"r.{col}.timestamp()")
        elif col in BOOL_COLUMNS:
            parts.append(f"1 if r.{col} else 0")
        else:
            parts.append(f"r.{col}")
    namespace: dict[str, Any] = {}
    # the source is built above from the records' own field names
    exec(f"def {name}(r):\n    return ({', '.join(parts)},)\n", {"row_time": row_time}, namespace)
    return namespace[name]


_call_row = _row_maker(CALL_COLUMNS, "call_row")
_attempt_row = _row_maker(ATTEMPT_COLUMNS, "attempt_row")
# For the writer process: formatting a time costs ~5x more than datetime.timestamp(), so the
# gateway sends floats and the writer turns them into text (exact to the microsecond: a float
# of Unix seconds resolves ~0.24 us until 2106).
_call_row_epoch = _row_maker(CALL_COLUMNS, "call_row_epoch", times="epoch")
_attempt_row_epoch = _row_maker(ATTEMPT_COLUMNS, "attempt_row_epoch", times="epoch")
_CALL_TIMES = tuple(i for i, c in enumerate(CALL_COLUMNS) if c in TIME_COLUMNS)
_ATTEMPT_TIMES = tuple(i for i, c in enumerate(ATTEMPT_COLUMNS) if c in TIME_COLUMNS)


def _iso_fields(row: tuple[Any, ...], at: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for i in at:
        values[i] = iso_from_epoch(values[i])
    return values


def epoch_times_to_iso(rows: list[Any]) -> list[Any]:
    """Rows built with ``times="epoch"`` as written: their times as :func:`iso_utc` text."""
    return [(_iso_fields(c, _CALL_TIMES), [_iso_fields(a, _ATTEMPT_TIMES) for a in atts]) for c, atts in rows]


_REQUEST_ID = CALL_COLUMNS.index("request_id")
CallRows = tuple[Sequence[Any], list[Sequence[Any]]]
"""One call's row and its attempts' rows, as written (money and times already text)."""


_CHUNK = 64
"""Rows per INSERT statement (27 columns x 64 = 1,728 parameters; SQLite allows 32,766)."""


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    one = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * n)}"


def insert_rows(conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[Any]) -> None:
    """Insert ``rows`` with multi-row ``INSERT ... VALUES (...), (...)`` statements of 64, 32, ...,
    1 rows (so at most seven distinct statements stay in the connection's statement cache).

    Not ``executemany``: the sqlite3 module releases and re-takes the GIL around every statement
    step, i.e. per row with executemany; a writer thread then trades the GIL with the event loop
    for every row.  Here it is once per 64 rows, for the same SQLite work."""
    i, left = 0, len(rows)
    while left:
        n = _CHUNK
        while n > left:
            n //= 2
        conn.execute(_insert_sql(table, columns, n), list(itertools.chain.from_iterable(rows[i : i + n])))
        i += n
        left -= n


# ---------------------------------------------------------------------------- aggregates


_SUM_CONTEXT = Context(prec=80)  # exact for any realistic ledger, like Postgres NUMERIC sums


class _DecimalSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        if value is not None:
            d = Decimal(value) if type(value) is str else Decimal(str(value))
            self.total = d if self.total is None else _SUM_CONTEXT.add(self.total, d)

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


def percentile_cont(values: list[float], q: float) -> float | None:
    """Postgres ``percentile_cont``: linear interpolation between the closest ranks."""
    if not values:
        return None
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return values[lo]
    return values[lo] + (pos - lo) * (values[hi] - values[lo])


class _Percentile:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.q = 0.5

    def step(self, value: Any, q: float) -> None:
        self.q = q
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return percentile_cont(self.values, self.q)


class SqliteDialect:
    name = "sqlite"

    def ph(self, n: int) -> str:
        return "?"

    def bucket(self, column: str, unit: str) -> str:
        return f"substr({column}, 1, {10 if unit == 'day' else 13})"

    def money_sum(self, column: str) -> str:
        return f"dsum({column})"

    def percentile(self, expr: str, q: float) -> str:
        return f"pctl({expr}, {q!r})"

    def time_param(self, value: Any) -> Any:
        return iso_utc(value)

    def in_list(self, column: str, first_ph: int, count: int) -> tuple[str, bool]:
        return f"{column} IN ({', '.join('?' * count)})", False


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    # takes effect only on a new database (before its first table): freed pages can then be
    # handed back to the file system a few at a time (retention.py); a no-op on an existing one
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    register_sqlite(conn)
    return conn


# --------------------------------------------------------------------------------- store


class SqliteStore:
    def __init__(
        self,
        path: str,
        stats: LedgerStats,
        *,
        batch_size: int = 500,
        max_delay: float = 0.05,
        close_retries: int = 5,
        rollups: bool = True,
    ) -> None:
        self.path = path
        self.rollups = rollups
        """Maintain the rollup tables with each batch (off only to measure what they cost)."""
        self.stats = stats
        self.dialect = SqliteDialect()
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.close_retries = close_retries
        self.schema_version = 0
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._full = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self.writer_id = uuid.uuid4().hex
        """Names this writer's checkpoints in the inflight table (see inflight.py)."""
        self._adopter: SqliteAdopter | None = None
        self._cps: list[CallRows] = []
        """Checkpoint rows of the batch being written (upserted by its first transaction)."""
        self._settled: set[str] = set()
        """Request ids of the batch's calls whose inflight row goes with their rows."""

    # -- lifecycle

    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name="fareway-ledger-writer", daemon=True
        )
        self._thread.start()
        self.schema_version = await ready
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fareway-ledger-reader")

    def submit(self, item: QueueItem | FlushMarker | Checkpoint) -> None:
        self._q.put(item)
        # wake the writer when a batch is full (once, as the backlog crosses batch_size: setting
        # an Event takes a lock) or for a flush
        if self._q.qsize() == self.batch_size or isinstance(item, FlushMarker):
            self._full.set()

    async def close(self) -> None:
        if self._thread is None:
            return
        self._closing = True
        self._q.put(_STOP)
        self._full.set()
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.get_running_loop().run_in_executor(reader, self._close_reader)
            reader.shutdown(wait=True)

    # -- writer thread

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[int]) -> None:
        try:
            conn = _connect(self.path)
            version = migrate_sqlite(conn)
            if self.path != ":memory:":
                self._adopter = SqliteAdopter(self.path, self.writer_id)
                self.stats.adopted += self._adopter.start(conn)
        except BaseException as exc:
            loop.call_soon_threadsafe(ready.set_exception, exc)
            return
        loop.call_soon_threadsafe(ready.set_result, version)
        try:
            self._loop(conn)
        finally:
            conn.close()
            if self._adopter is not None:
                self._adopter.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            items: list[Any] = [first]
            if (
                first is not _STOP
                and not isinstance(first, FlushMarker)
                and self._q.qsize() < self.batch_size
            ):
                # Gather for max_delay, or until batch_size calls wait, by waiting on an event
                # that submit() sets only then: a get() with a timeout would wake this thread
                # (and take the GIL from the event loop) on every single record put.
                self._full.wait(self.max_delay)
                self._full.clear()
            while (
                len(items) < self.batch_size
                and items[-1] is not _STOP
                and not isinstance(items[-1], FlushMarker)
            ):
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            batch: list[QueueItem] = []
            cps: list[Checkpoint] = []
            settled: list[str] = []
            for item in items:
                if type(item) is tuple:
                    batch.append(item)
                elif item is _STOP:
                    stop = True
                elif isinstance(item, FlushMarker):
                    self._write(conn, batch, cps, settled)
                    batch, cps, settled = [], [], []
                    item.resolve()
                elif isinstance(item, Checkpoint):
                    cps.append(item)
                else:  # a Settle
                    batch.append(item)
                    settled.append(item.call.request_id)
            self._write(conn, batch, cps, settled)
            self._sweep(conn)

    def _sweep(self, conn: sqlite3.Connection) -> None:
        """Adopt what writers that were alive at the last look have left since (inflight.py)."""
        if self._adopter is not None and self._adopter.due():
            try:
                self.stats.adopted += self._adopter.adopt(conn)
            except sqlite3.Error as exc:
                log.warning("ledger: adopting checkpoints of stopped writers failed (%s); will retry", exc)

    def _write(
        self, conn: Any, batch: list[QueueItem], cps: Sequence[Checkpoint] = (), settled: Sequence[str] = ()
    ) -> None:
        if batch or cps:
            self._cps = [(_call_row(c.call), [_attempt_row(a) for a in c.attempts]) for c in cps]
            self._settled = set(settled)
            try:
                self._write_rows(conn, [(_call_row(c), [_attempt_row(a) for a in atts]) for c, atts in batch])
            finally:
                self._cps, self._settled = [], set()

    def _write_rows(self, conn: sqlite3.Connection, rows: list[CallRows]) -> None:
        """Commit ``rows`` in one transaction; retry transient failures (locked, I/O, disk full);
        isolate a call the database refuses so the rest of its batch is still written."""
        if not rows and not self._cps:
            return
        delay = 0.05
        failures = 0
        while True:
            try:
                self._write_once(conn, rows)
                return
            except sqlite3.OperationalError as exc:  # locked, I/O error, disk full: transient
                failures += 1
                self.stats.retries += 1
                if self._closing and failures > self.close_retries:
                    self._give_up(rows, exc)
                    return
                log.warning("ledger write failed (%s); retrying %d calls in %.2fs", exc, len(rows), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # a record the database refuses: isolate it
                if len(rows) <= 1:
                    self._give_up(rows, exc)
                    return
                for one in rows:
                    self._write_rows(conn, [one])
                return

    def _write_once(self, conn: sqlite3.Connection, rows: list[CallRows]) -> None:
        calls = [c for c, _ in rows]
        attempts = [a for _, atts in rows for a in atts]
        conn.execute("BEGIN")
        try:
            if self._cps or self._settled:
                settled = self._settled
                gone = [str(c[_REQUEST_ID]) for c in calls if c[_REQUEST_ID] in settled] if settled else []
                sqlite_apply(conn, self.writer_id, self._cps, gone)
            insert_rows(conn, "calls", CALL_COLUMNS, calls)
            insert_rows(conn, "attempts", ATTEMPT_COLUMNS, attempts)
            if self.rollups:
                apply_sqlite(conn, SQLITE.deltas().add(calls, attempts))
            self._in_transaction(conn, len(calls))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._cps = []  # upserted: a transaction of the same batch after this one need not again
        self.stats.written += len(calls)
        self.stats.attempts_written += len(attempts)
        self.stats.batches += 1

    def _in_transaction(self, conn: sqlite3.Connection, n_calls: int) -> None:
        """A hook run inside each write transaction before COMMIT (the writer process records
        the batch's sequence number there)."""

    def _give_up(self, rows: list[CallRows], exc: BaseException) -> None:
        self.stats.dropped += len(rows)
        log.error(
            "ledger dropped %d call(s) after %s: request ids %s",
            len(rows),
            exc,
            ", ".join(str(c[_REQUEST_ID]) for c, _ in rows[:20]),
        )

    # -- reads

    def _reader_conn(self) -> sqlite3.Connection:
        if self._read_conn is None:
            conn = _connect(self.path)
            conn.create_aggregate("dsum", 1, _DecimalSum)  # type: ignore[arg-type]
            conn.create_aggregate("pctl", 2, _Percentile)  # type: ignore[arg-type]
            self._read_conn = conn
        return self._read_conn

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    def _fetch_sync(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return list(self._reader_conn().execute(sql, params).fetchall())

    async def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise RuntimeError("the ledger is not started")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._fetch_sync, sql, params)

    # -- retention (retention.py): on the reader's connection, off the event loop

    async def _on_reader(self, fn: Any, *args: Any) -> Any:
        if self._reader is None:
            raise RuntimeError("the ledger is not started")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader, lambda: fn(self._reader_conn(), *args)
        )

    async def prune_step(self, before: datetime, batch: int) -> PruneStep:
        step: PruneStep = await self._on_reader(sqlite_prune_step, before, batch, iso_utc)
        return step

    async def reclaim(self, full: bool = False) -> bool:
        return bool(await self._on_reader(sqlite_reclaim, full))

    async def storage_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._on_reader(sqlite_stats, self.path)
        return stats
