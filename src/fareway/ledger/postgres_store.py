"""Postgres backend (asyncpg), used when ``ledger_url`` is ``postgresql://...``.

Tables live in one schema (default ``fareway``, created if missing); every pooled connection has
``search_path`` set to it, so the named queries use unqualified table names.  Money is NUMERIC
(asyncpg gives and takes ``Decimal``), times TIMESTAMPTZ.

Two tasks write, so that the request path never waits for the database and a stalled database
never holds calls only in memory for long:

* the *intake* turns what ``submit()`` queued into numbered batches (:mod:`.pg_batch`) and puts
  them in an in-memory outbox, or, while the ledger is *spooling*, appends them to the spool file
  (:mod:`.spool`, fsync'd);
* the *committer* writes batches in order, oldest first: the spool's, then the outbox's.  Each
  batch commits with its number, so a re-sent one (its COMMIT's reply lost, or drained from the
  spool after it was written) is stored once.

Spooling starts when a write fails, when a write has not finished after ``spool_after`` seconds
(the outbox, the batch being written included, is moved to the spool: from then on a SIGKILL
loses nothing recorded more than about ``spool_after + max_delay`` seconds before it), when the
database is unreachable at start (the gateway starts anyway) and when ``close()`` reaches its
bound.  It ends when the committer has drained the spool.  Failed writes are retried with
exponential backoff and jitter, each failure logged once with the batch size and the error.

Timeouts: ``connect_timeout`` for each connection, ``statement_timeout`` for each write or
query (on the client, which also catches a mute network, and on the server, which also catches
a lock wait).  The writer's connection carries its writer id as ``application_name``; each
reconnect ends the writer's earlier sessions the server still holds (a network failure leaves
one inside a transaction, holding the writer's row lock, until TCP keepalive notices: hours).
``close()`` waits at most ``close_timeout`` seconds for the database, then spools what is left
and returns; the next start drains it.

``flush()`` (a :class:`FlushMarker`) resolves when everything before it is *durable*: in the
database, or in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import deque
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fareway.ledger import pg_batch, spool
from fareway.ledger.base import Checkpoint, FlushMarker, LedgerStats, QueueItem, StoreUnavailable, log
from fareway.ledger.inflight import PgAdopter, pg_take_writer_lock
from fareway.ledger.migrations import migrate_postgres
from fareway.ledger.pg_batch import Batch, decode_checkpoint
from fareway.ledger.pg_support import PostgresDialect, backoff_delay, is_transient, safe_url
from fareway.ledger.records import CALL_COLUMNS
from fareway.ledger.retention import PruneStep, pg_prune_step, pg_reclaim, pg_stats
from fareway.ledger.rollup_store import BACKFILL_TIMEOUT

T = TypeVar("T")

_LOOKAHEAD = 2
"""Batches the intake prepares ahead of the committer (unless spooling: then it spools all)."""


class PostgresStore:
    def __init__(
        self,
        url: str,
        stats: LedgerStats,
        *,
        schema: str = "fareway",
        batch_size: int = 500,
        max_delay: float = 0.05,
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        close_timeout: float = 5.0,
        spool_path: str | Path = "fareway-data/ledger-spool",
        spool_after: float = 1.0,
        retry_first: float = 0.1,
        retry_max: float = 10.0,
        rollups: bool = True,
    ) -> None:
        self.url = url
        self.rollups = rollups
        """Maintain the rollup tables with each batch (off only to measure what they cost)."""
        self.schema = schema
        self.stats = stats
        self.dialect = PostgresDialect()
        self.batch_size = max(1, min(batch_size, pg_batch.MAX_BATCH))
        self.max_delay = max_delay
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.close_timeout = close_timeout
        self.spool_path = Path(spool_path)
        self.spool_after = spool_after
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.writer_id = f"pg-{uuid.uuid4().hex}"
        self.schema_version = 0
        self.already_committed = 0
        """Batches (or single calls) found committed when written: re-sends made harmless."""
        self._pool: Any = None
        self._conn: Any = None
        self._db_ok = False
        self._spool: spool.Spool | None = None
        self._items: deque[QueueItem | FlushMarker | Checkpoint] = deque()
        self._outbox: deque[Batch | FlushMarker] = deque()
        self._spooled: deque[spool.Entry] = deque()
        self._head: Batch | None = None
        self._block = 0
        self._writers_seen: set[str] = set()
        self._lock: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None
        self._commit_wake: asyncio.Event | None = None
        self._close_kick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._intake_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._timeout: asyncio.Timeout | None = None
        self._spool_requested = False
        self._spool_broken = False
        self._closing = False
        self._stopping = False
        """Set by ``close()`` (after the last flush): the intake ends once its queue is empty."""
        self._deadline: float | None = None
        self._markers = 0
        self._adopter = PgAdopter(schema, self.writer_id, decode_checkpoint)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import asyncpg

        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lock = asyncio.Lock()
        self._wake, self._commit_wake, self._close_kick = asyncio.Event(), asyncio.Event(), asyncio.Event()
        await asyncio.to_thread(self._open_spool)
        try:
            await self._connect()
            self._db_ok = True
        except Exception as exc:
            if not is_transient(exc):  # bad credentials, no such database: a configuration error
                self._close_spool()
                raise
            log.warning(
                "ledger database %s is unreachable at start (%s: %s): serving anyway, spooling calls to %s "
                "until it is back",
                safe_url(self.url),
                type(exc).__name__,
                exc,
                self._spool_file(),
            )
        settings = self._server_settings()
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=self.pool_size,
            timeout=self.connect_timeout,
            command_timeout=self.statement_timeout,
            server_settings=settings,
        )
        if self._db_ok and not self._spooled:
            await self._adopt()
        self._intake_task = asyncio.create_task(self._intake(), name="fareway-ledger-intake")
        self._commit_task = asyncio.create_task(self._committer(), name="fareway-ledger-writer")

    def _open_spool(self) -> None:
        own = spool.own_spool(self.spool_path)
        try:
            self._spooled.extend(own.scan())
            for orphan, frames in spool.adopt_orphans(self.spool_path, own):
                self._spooled.extend(own.append(frames))
                spool.discard(orphan)
        except BaseException:
            own.close()
            raise
        self._spool = own
        self.stats.spooled = sum(e.calls for e in self._spooled)
        if self._spooled:
            log.warning(
                "ledger spool %s holds %d call(s) from an earlier run: writing them to the database",
                own.path,
                self.stats.spooled,
            )

    def _spool_file(self) -> Path:
        return self._spool.path if self._spool is not None else self.spool_path

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def _server_settings(self) -> dict[str, str]:
        ms = str(max(1, int(self.statement_timeout * 1000)))
        return {
            "search_path": self.schema,
            "statement_timeout": ms,
            "idle_in_transaction_session_timeout": str(max(1, int(self.statement_timeout * 2000))),
        }

    def submit(self, item: QueueItem | FlushMarker | Checkpoint) -> None:
        if isinstance(item, FlushMarker):
            self._markers += 1
        self._items.append(item)
        if self._wake is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def begin_close(self) -> None:
        """Start the bounded shutdown: from now on the database gets ``close_timeout`` seconds;
        at the bound whatever is not written is spooled."""
        if self._closing or self._loop is None:
            return
        self._closing = True
        self._deadline = self._loop.time() + self.close_timeout
        if self._timeout is not None and (self._timeout.when() or 0) > self._deadline:
            self._timeout.reschedule(self._deadline)
        self._loop.call_at(self._deadline, self._at_deadline)
        for event in (self._wake, self._commit_wake, self._close_kick):
            if event is not None:
                event.set()

    async def close(self) -> None:
        if self._intake_task is None or self._commit_task is None or self._loop is None:
            return
        self.begin_close()
        self._stopping = True
        assert self._wake is not None
        self._wake.set()
        await self._intake_task
        assert self._deadline is not None
        done, _ = await asyncio.wait({self._commit_task}, timeout=self._deadline - self._loop.time() + 1.0)
        if not done:  # should not happen: every wait of the committer is bounded by the deadline
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
        elif (exc := self._commit_task.exception()) is not None:
            log.error("ledger writer task failed: %r", exc)
        self._intake_task = self._commit_task = None
        await self._spool_outbox()
        lost = sum(b.calls for b in self._outbox if isinstance(b, Batch))
        if lost:  # the spool could not be written either
            self.stats.dropped += lost
            log.error("ledger closed with %d call(s) neither written nor spooled", lost)

        # tidying up, within what is left of the bound (at least a moment)
        def left() -> float:
            assert self._loop is not None and self._deadline is not None
            return min(1.0, max(0.1, self._deadline - self._loop.time()))

        if not self._spooled and self._conn is not None and self._writers_seen:
            with contextlib.suppress(Exception):  # best effort: a leftover row is harmless
                await asyncio.wait_for(
                    pg_batch.forget_writers(self._conn, self.schema, sorted(self._writers_seen)), left()
                )
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), left())
            except Exception:
                conn.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), left())
        except Exception:
            self._pool.terminate()
        self._pool = None
        if self._spooled:
            log.warning(
                "ledger closed with %d call(s) in the spool %s; the next start writes them to the database",
                sum(e.calls for e in self._spooled),
                self._spool_file(),
            )
        self._close_spool()

    def health(self) -> str:
        """``ok``, or why the ledger is degraded (it still accepts every call)."""
        if self._db_ok and not self._spooled:
            return "ok"
        if not self._db_ok:
            return f"degraded: database unreachable, spooling ({self.stats.spooled} calls spooled)"
        return f"degraded: draining the spool ({self.stats.spooled} calls spooled)"

    # ------------------------------------------------------------------ intake task

    async def _intake(self) -> None:
        assert self._wake is not None
        while True:
            if self._spool_requested:
                await self._spool_outbox()
            if not self._items:
                if self._stopping:
                    self._kick_committer()
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if not self._spooling() and sum(isinstance(b, Batch) for b in self._outbox) >= _LOOKAHEAD:
                # the committer has enough to do; the rest waits as records (as compact as it gets)
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather()
            items: list[Any] = []
            mixed = False  # checkpoints or settled calls among them (inflight.py)
            while self._items and len(items) < self.batch_size:
                item = self._items.popleft()
                if type(item) is tuple:
                    items.append(item)
                elif isinstance(item, FlushMarker):
                    self._markers -= 1
                    await self._emit(items, mixed)
                    items, mixed = [], False
                    self._emit_marker(item)
                else:
                    items.append(item)
                    mixed = True
            await self._emit(items, mixed)

    async def _gather(self) -> None:
        """Under light load, wait up to ``max_delay`` for a batch to fill; a flush or close
        request ends the wait at once."""
        assert self._wake is not None
        deadline = asyncio.get_running_loop().time() + self.max_delay
        while len(self._items) < self.batch_size and not self._closing and not self._markers:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._spool_requested:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _spooling(self) -> bool:
        return bool(self._spooled) or not self._db_ok or self._past_deadline()

    async def _emit(self, items: list[Any], mixed: bool = False) -> None:
        if not items:
            return
        self._block += 1
        if mixed:
            batch = Batch.mixed(self.writer_id, self._block, items)
        else:
            batch = Batch.of(self.writer_id, self._block, items)
        if self._spooling() and not self._spool_broken:
            await self._spool_outbox(batch)
        else:
            self._outbox.append(batch)
            self._kick_committer()

    def _emit_marker(self, marker: FlushMarker) -> None:
        if any(isinstance(b, Batch) for b in self._outbox):
            self._outbox.append(marker)
        else:
            marker.resolve()  # everything before it is committed or spooled

    async def _spool_outbox(self, extra: Batch | None = None) -> None:
        """Move the outbox (the batch being written included) and ``extra`` to the spool, in
        order; resolve the flush markers among them."""
        assert self._lock is not None and self._spool is not None
        async with self._lock:
            self._spool_requested = False
            batches = [b for b in self._outbox if isinstance(b, Batch)]
            if extra is not None:
                batches.append(extra)
            if not batches:
                self._resolve_markers(all_=True)
                return
            try:
                entries = await asyncio.to_thread(self._append, batches)
            except OSError as exc:
                if not self._spool_broken:
                    log.error(
                        "ledger spool %s cannot be written (%s): %d call(s) kept in memory only",
                        self._spool.path,
                        exc,
                        sum(b.calls for b in batches),
                    )
                self._spool_broken = True
                if extra is not None:
                    self._outbox.append(extra)
                    self._kick_committer()
                if self._past_deadline():
                    self._resolve_markers(all_=True)
                return
            self._spool_broken = False
            markers = [m for m in self._outbox if isinstance(m, FlushMarker)]
            self._outbox.clear()
            self._spooled.extend(entries)
            self.stats.spooled += sum(b.calls for b in batches)
            for m in markers:
                m.resolve()
        self._kick_committer()

    def _append(self, batches: list[Batch]) -> list[spool.Entry]:
        assert self._spool is not None
        return self._spool.append([(pg_batch.encode(b), b.calls, b.attempts) for b in batches])

    def _resolve_markers(self, *, all_: bool = False) -> None:
        """Resolve the markers at the front of the outbox (all of them with ``all_``, when no
        batch is left in it)."""
        if all_:
            for m in [m for m in self._outbox if isinstance(m, FlushMarker)]:
                m.resolve()
            self._outbox = deque(b for b in self._outbox if isinstance(b, Batch))
            return
        while self._outbox and isinstance(self._outbox[0], FlushMarker):
            marker = self._outbox.popleft()
            assert isinstance(marker, FlushMarker)
            marker.resolve()

    def _request_spool(self) -> None:
        self._spool_requested = True
        if self._wake is not None:
            self._wake.set()

    def _at_deadline(self) -> None:
        self._request_spool()
        self._kick_committer()

    def _kick_committer(self) -> None:
        if self._commit_wake is not None:
            self._commit_wake.set()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._loop is not None and self._loop.time() >= self._deadline

    # ------------------------------------------------------------------ committer task

    async def _committer(self) -> None:
        assert self._loop is not None
        failures = 0
        while True:
            head = await self._next_head()
            if head is None:
                if self._closing and (self._past_deadline() or not self._pending()):
                    return
                # nothing to write, database down: probe it so that readiness recovers
                try:
                    await self._op(self._connect(), self.connect_timeout + self.statement_timeout)
                    self._db_ok, failures = True, 0
                except Exception as exc:
                    failures += 1
                    self._failed(None, exc, failures)
                    await self._sleep(backoff_delay(failures, self.retry_first, self.retry_max))
                continue
            watchdog = self._loop.call_later(self.spool_after, self._request_spool)
            try:
                await self._write(head)
            except Exception as exc:
                watchdog.cancel()
                failures += 1
                self.stats.retries += 1
                self._failed(head, exc, failures)
                await self._sleep(backoff_delay(failures, self.retry_first, self.retry_max))
                continue
            watchdog.cancel()
            failures = 0
            self._db_ok = True
            await self._pop_head(head)
            if not self._spooled and self._adopter.due() and not self._closing:
                await self._adopt()

    async def _adopt(self) -> None:
        """Adopt the checkpoints dead writers left (inflight.py); run once the spool holds
        nothing of an earlier run, which may settle some of them."""
        try:
            if self._conn is None or self._conn.is_closed():
                await self._op(self._connect(), self.connect_timeout + self.statement_timeout)
            calls, _ = await self._op(self._adopter.adopt(self._conn), 3 * self.statement_timeout)
        except Exception as exc:
            self._adopter.later()
            log.warning(
                "ledger: adopting checkpoints of stopped writers failed (%s: %s); will retry",
                type(exc).__name__,
                exc,
            )
            return
        self.stats.adopted += calls

    def _pending(self) -> bool:
        return bool(self._spooled) or any(isinstance(b, Batch) for b in self._outbox)

    async def _next_head(self) -> Batch | None:
        """The oldest batch not yet committed, waiting for one; None when the database is down
        and there is nothing to write (the caller probes it), or when closing is over."""
        assert self._commit_wake is not None
        while True:
            if self._closing and self._past_deadline():
                return None
            if self._head is not None:
                return self._head
            if self._closing and not self._pending() and not self._items:
                if self._intake_task is None or self._intake_task.done():
                    return None
            if self._spooled:
                entry = self._spooled[0]
                try:
                    payload = await asyncio.to_thread(self._read, entry)
                    self._head = pg_batch.decode(payload, self.writer_id)
                except (OSError, ValueError, EOFError, TypeError) as exc:
                    await self._discard_unreadable(entry, exc)
                    continue
                return self._head
            self._resolve_markers()
            if self._outbox:
                head = self._outbox[0]
                assert isinstance(head, Batch)
                self._head = head
                return head
            if not self._db_ok and not self._closing:
                return None
            self._commit_wake.clear()
            await self._commit_wake.wait()

    def _read(self, entry: spool.Entry) -> bytes:
        assert self._spool is not None
        return self._spool.read(entry)

    async def _discard_unreadable(self, entry: spool.Entry, exc: BaseException) -> None:
        assert self._lock is not None
        async with self._lock:
            if self._spooled and self._spooled[0] is entry:
                self._spooled.popleft()
                self.stats.spooled -= entry.calls
                self.stats.dropped += entry.calls
        log.error(
            "ledger spool frame at offset %d unreadable (%s): %d call(s) lost", entry.offset, exc, entry.calls
        )

    async def _pop_head(self, head: Batch) -> None:
        """``head`` is committed: take it off the outbox, or off the spool if it was moved there
        meanwhile; empty the spool file once all of it is in the database."""
        assert self._lock is not None and self._spool is not None
        async with self._lock:
            self._head = None
            if self._outbox and self._outbox[0] is head:
                self._outbox.popleft()
            elif self._spooled:
                self.stats.spooled -= self._spooled.popleft().calls
            self._resolve_markers()
            if self._wake is not None:
                self._wake.set()  # room in the outbox
            if not self._spooled and self._spool.end:
                try:
                    await asyncio.to_thread(self._spool.reset)
                except OSError as exc:  # a re-drain of it later is harmless
                    log.warning("ledger spool %s could not be emptied: %s", self._spool.path, exc)
                log.warning("ledger spool drained: the database is written directly again")

    async def _write(self, head: Batch) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._op(self._connect(), self.connect_timeout + self.statement_timeout)
        if not head.singles:
            try:
                fresh = await self._op(
                    pg_batch.write_whole(self._conn, self.schema, head, self.rollups), self.statement_timeout
                )
            except pg_batch.SplitUnderWay:
                head.singles = True
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning(
                    "ledger: a batch of %d call(s) was refused (%s); writing them one by one", head.calls, exc
                )
                head.singles = True
            else:
                self._account(head, 0, head.calls, fresh)
                return
        while head.done < head.parts:
            k = head.done
            try:
                fresh = await self._op(
                    pg_batch.write_one(self._conn, self.schema, head, k, self.rollups), self.statement_timeout
                )
            except Exception as exc:
                if is_transient(exc):
                    raise
                if k < head.calls:
                    self._refuse(head, k, exc)
                else:
                    log.error("ledger: %d checkpoint(s) refused (%s)", len(head.checkpoints), exc)
            else:
                if k < head.calls:
                    self._account(head, k, k + 1, fresh)
            head.done = k + 1

    def _account(self, head: Batch, lo: int, hi: int, fresh: bool) -> None:
        calls = hi - lo
        self._writers_seen.add(head.writer)
        if fresh:
            self.stats.batches += 1
        else:
            self.already_committed += 1
            log.info(
                "ledger: %d call(s) of batch %s/%d were already committed (a re-send)",
                calls,
                head.writer,
                head.block,
            )
        if head.own:
            self.stats.written += calls
            self.stats.attempts_written += sum(head.counts[lo:hi])
        elif fresh:
            self.stats.recovered += calls

    def _refuse(self, head: Batch, k: int, exc: BaseException) -> None:
        if head.own:
            self.stats.dropped += 1
        rid = str(head.call_rows[k][CALL_COLUMNS.index("request_id")])
        log.error("ledger dropped 1 call after %s: %s: request ids %s", type(exc).__name__, exc, rid)

    def _failed(self, head: Batch | None, exc: BaseException, failures: int) -> None:
        self._drop_conn()
        self._db_ok = False
        self._request_spool()
        what = f"writing a batch of {head.calls} call(s)" if head is not None else "connecting"
        log.warning(
            "ledger: %s failed (%s: %s), failure %d; %d call(s) in the spool %s",
            what,
            type(exc).__name__,
            str(exc) or "timed out",
            failures,
            self.stats.spooled,
            self._spool_file(),
        )

    async def _sleep(self, delay: float) -> None:
        """Back off; a close request cuts the wait short once, the close bound always."""
        assert self._loop is not None and self._close_kick is not None
        if self._deadline is not None:
            delay = min(delay, max(0.0, self._deadline - self._loop.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_kick.wait(), delay)
            self._close_kick.clear()

    async def _op(self, aw: Awaitable[T], seconds: float) -> T:
        """``aw`` bounded by ``seconds`` and by the close deadline (which ``begin_close`` may
        bring forward while it runs)."""
        assert self._loop is not None
        when = self._loop.time() + seconds
        if self._deadline is not None:
            when = min(when, self._deadline)
        async with asyncio.timeout_at(when) as timeout:
            self._timeout = timeout
            try:
                return await aw
            finally:
                self._timeout = None

    async def _connect(self) -> None:
        import asyncpg

        self._drop_conn()
        conn = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            command_timeout=self.statement_timeout,
            server_settings={**self._server_settings(), "application_name": self.writer_id},
        )
        try:
            await self._end_stale_sessions(conn)
            if not await pg_take_writer_lock(conn, self.writer_id):
                log.warning(
                    "ledger: an earlier session of this writer still holds its lock; its checkpoints stay "
                    "protected until that session ends"
                )
            if not self.schema_version:
                # each statement is bounded by statement_timeout but the backfill of migration 5
                # (once, on a ledger that had rows before it: rollup_store.py)
                self.schema_version = await asyncio.wait_for(
                    migrate_postgres(conn, self.schema), self.statement_timeout + BACKFILL_TIMEOUT
                )
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _end_stale_sessions(self, conn: Any) -> None:
        """End this writer's earlier sessions that the server still thinks alive (the network
        failed under them: the server learns it only from TCP keepalive, hours by default).
        One may be inside a transaction holding the writer's row lock, which would stall every
        write of this writer until then.  Whatever it was doing is rolled back or was
        committed; the batch numbers make the re-send right either way."""
        import asyncpg

        try:
            ended = await conn.fetchval(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                self.writer_id,
            )
        except asyncpg.PostgresError as exc:  # e.g. not allowed: then the server's timeouts end them
            log.warning("ledger: could not end stale writer sessions: %s", exc)
            return
        if ended:
            log.warning("ledger: ended %d stale session(s) of this writer left by a network failure", ended)

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    # ------------------------------------------------------------------ reads

    async def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        rows = await self._on_pool(lambda conn: conn.fetch(sql, *params))
        return [tuple(r) for r in rows]

    async def _on_pool(self, fn: Any, bound: float | None = None) -> Any:
        """``await fn(conn)`` on a pooled connection; the database unreachable (or the ledger not
        migrated yet) is :class:`StoreUnavailable`."""
        if self._pool is None:
            raise RuntimeError("the ledger is not started")
        try:
            async with asyncio.timeout(bound or self.connect_timeout + self.statement_timeout):
                async with self._pool.acquire(timeout=self.connect_timeout) as conn:
                    return await fn(conn)
        except Exception as exc:
            if is_transient(exc) or not self.schema_version:
                raise StoreUnavailable(
                    f"the ledger database is unavailable ({type(exc).__name__}: {str(exc) or 'timed out'})"
                ) from exc
            raise

    # -- retention (retention.py)

    async def prune_step(self, before: datetime, batch: int) -> PruneStep:
        step: PruneStep = await self._on_pool(lambda c: pg_prune_step(c, self.schema, before, batch))
        return step

    async def reclaim(self, full: bool = False) -> bool:
        return bool(await self._on_pool(lambda c: pg_reclaim(c, self.schema, full), 3600.0 if full else None))

    async def storage_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._on_pool(lambda c: pg_stats(c, self.schema), 600.0)
        return stats
