"""The ledger: ``record()`` on the request path, one background writer, named queries.

Usage::

    ledger = Ledger.open(config.ledger_url, "./fareway-data/fareway.db")
    await ledger.start()
    ...
    ledger.record(call, attempts)        # never awaits, never does I/O
    rows = await ledger.usage(since, group_by=["provider", "day"])
    ...
    await ledger.close()                 # flushes everything recorded before it

``record()`` appends to an in-memory FIFO; the backend's writer drains it in batches (when
``batch_size`` calls are waiting, or ``max_delay`` seconds after the first one) and commits each
batch in one transaction.  Do not mutate a record after handing it to ``record()``.

Bounded queue, never a silent drop: ``capacity`` is the backlog (calls recorded, not yet
committed) past which the ledger is *saturated*: ``record()`` still accepts every call (dropping
one would lose money data; blocking would stall the request path) but logs a warning once per
episode, sets :attr:`Ledger.saturated`, and :meth:`Ledger.wait_capacity` lets a caller that can
wait apply backpressure (e.g. the pipeline before accepting new work).  ``stats.dropped`` stays 0
unless the database refuses a record or stays down through shutdown; both are logged at ERROR.

What a crash can lose.  With the SQLite writer process (the default), a gateway killed without
``close()`` loses only the calls recorded in its last ``max_delay`` seconds (50 ms by default),
not yet shipped: whatever reached the writer's pipe is still written, and if the writer process
dies instead, it is restarted and the batches it had not confirmed are sent again (stored once:
each batch's number commits with it).  With the writer thread, a killed gateway loses what was
still in memory: at most ``stats.queued`` calls (the FIFO plus the batch being written).  With
Postgres, the same while the database answers; while it does not, calls go to a local spool
(fsync'd) within ``spool_after`` seconds, and what reached the spool survives a SIGKILL and is
written, once, when the database is back or at the next start (postgres_store.py).
A stream in flight is recorded only when it ends; so that a killed gateway still accounts for
the streams it was serving, each committed stream is *checkpointed* (:meth:`Ledger.checkpoint`,
inflight.py): ``checkpoint_after`` seconds after its commit point (50 ms by default, the same
window as ``max_delay``), and every ``checkpoint_every`` seconds after that, its rows as they
would be recorded if it stopped now go to the ``inflight`` table, and the next start turns what
a dead gateway left there into call rows (outcome ``cancelled``, estimated tokens: at most
``checkpoint_every`` seconds of output short).  A stream that ends within ``checkpoint_after``
costs a dict entry and nothing in the database; a longer one, one row upserted per refresh and
deleted with its final rows, in the same transaction.
A half-written batch is rolled back by the database, never half-stored.  Everything counted in
``stats.written`` is committed (SQLite runs WAL with ``synchronous=NORMAL``: committed data
survives a process crash; an OS crash or power cut may lose the last transactions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from fareway.ledger import queries, retention, rollup_queries
from fareway.ledger.base import Checkpoint, FlushMarker, LedgerStats, QueueItem, Settle, Store
from fareway.ledger.records import AttemptRecord, CallRecord

log = logging.getLogger("fareway.ledger")


def auto_writer(path: str, writer_cpus: list[int] | None = None) -> str:
    """The SQLite writer for ``writer = "auto"``: the writer process when it can run on a CPU
    the gateway's event loop is not confined to (this process may use more than one CPU, or
    ``writer_cpus`` names one), else the writer thread.  Measured (bench_ledger_duel.py): the
    process costs the gateway 1.1 % of its requests/s when it has a core of its own, but 9.2 %
    when it shares the gateway's only core, where the thread costs 5.8 % (no pipe, no second
    interpreter)."""
    if path == ":memory:":
        return "thread"
    if writer_cpus:
        return "process"
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return "process" if cpus > 1 else "thread"


Snapshot = Callable[[], QueueItem | None]
"""Builds a streamed call's rows as they would be recorded if it stopped now (None: not now)."""


class _Live:
    """A committed stream not yet recorded (see :meth:`Ledger.checkpoint`)."""

    __slots__ = ("done", "misses", "request_id", "shipped", "snapshot")

    def __init__(self, request_id: str, snapshot: Snapshot) -> None:
        self.request_id = request_id
        self.snapshot = snapshot
        self.shipped = False
        """A checkpoint of it was handed to the store: its record must delete it."""
        self.done = False
        """Recorded: nothing more to checkpoint."""
        self.misses = 0


class Ledger:
    def __init__(
        self,
        store: Store,
        *,
        capacity: int = 100_000,
        checkpoint_after: float = 0.05,
        checkpoint_every: float = 5.0,
        keep_calls_days: float | None = None,
    ) -> None:
        self.store = store
        self.keep_calls_days = keep_calls_days
        """Raw rows older than this many days are pruned in the background (retention.py);
        None keeps them all.  The hour and day rollups are always kept."""
        self._pruner: asyncio.Task[None] | None = None
        self.stats: LedgerStats = store.stats
        self.capacity = capacity
        self.checkpoint_after = checkpoint_after
        self.checkpoint_every = checkpoint_every
        self._saturated = False
        self._started = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live: dict[str, _Live] = {}
        self._fresh: list[_Live] = []
        self._fresh_timer: asyncio.TimerHandle | None = None
        self._refresh_timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(
        cls,
        url: str | None,
        path: str = "./fareway-data/fareway.db",
        *,
        schema: str = "fareway",
        batch_size: int = 500,
        max_delay: float = 0.05,
        capacity: int = 100_000,
        writer: str = "auto",
        writer_cpus: list[int] | None = None,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        close_timeout: float = 5.0,
        spool_path: str | None = None,
        spool_after: float = 1.0,
        checkpoint_after: float = 0.05,
        checkpoint_every: float = 5.0,
        keep_calls_days: float | None = None,
        rollups: bool = True,
    ) -> Ledger:
        """A ledger on Postgres when ``url`` is ``postgres[ql]://...``, else on SQLite at ``path``
        (``url`` may also be ``sqlite:///some/path.db``).  ``schema`` is the Postgres schema.
        ``writer`` (SQLite only): ``process`` (a child process owns the write connection, see
        sqlite_process.py), ``thread`` (a writer thread in this process; the only choice for
        ``:memory:``) or ``auto`` (the default: :func:`auto_writer`).

        Postgres only: ``connect_timeout`` and ``statement_timeout`` (seconds, each connection
        and each write or query), ``close_timeout`` (how long ``close()`` waits for the
        database before spooling what is left), ``spool_path`` (the local spool for batches the
        database cannot take now; default ``ledger-spool`` beside ``path``) and ``spool_after``
        (seconds a write may hang before the calls waiting behind it are spooled).

        ``checkpoint_after`` and ``checkpoint_every``: when a committed stream is first
        checkpointed, and how often again while it runs (see :meth:`checkpoint`).

        ``keep_calls_days``: prune raw rows older than that in the background (retention.py).
        ``rollups=False`` stops maintaining the rollup tables, which every aggregate query
        reads: only for measuring what they cost (benchmarks)."""
        stats = LedgerStats()
        store: Store
        if url and url.startswith(("postgresql://", "postgres://")):
            from fareway.ledger.postgres_store import PostgresStore

            store = PostgresStore(
                url,
                stats,
                schema=schema,
                batch_size=batch_size,
                max_delay=max_delay,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                close_timeout=close_timeout,
                spool_path=spool_path or os.path.join(os.path.dirname(path) or ".", "ledger-spool"),
                spool_after=spool_after,
                rollups=rollups,
            )
        elif not url or url.startswith("sqlite:"):
            from fareway.ledger.sqlite_store import SqliteStore

            if url:
                # sqlite:///relative.db or sqlite:////absolute/path.db (the SQLAlchemy spelling)
                path = url.removeprefix("sqlite:").removeprefix("///") or path
            if writer == "auto":
                writer = auto_writer(path, writer_cpus)
            if writer == "process":
                from fareway.ledger.sqlite_process import SqliteProcessStore

                store = SqliteProcessStore(
                    path, stats, batch_size=batch_size, max_delay=max_delay, cpus=writer_cpus, rollups=rollups
                )
            elif writer == "thread":
                store = SqliteStore(path, stats, batch_size=batch_size, max_delay=max_delay, rollups=rollups)
            else:
                raise ValueError(f"unknown ledger writer {writer!r}: process or thread")
        else:
            raise ValueError(f"unsupported ledger_url {url!r}: use postgresql://... or sqlite:///path")
        return cls(
            store,
            capacity=capacity,
            checkpoint_after=checkpoint_after,
            checkpoint_every=checkpoint_every,
            keep_calls_days=keep_calls_days,
        )

    # -- lifecycle

    async def start(self) -> None:
        """Open the database, apply migrations, start the writer."""
        if self._started:
            return
        await self.store.start()
        self._loop = asyncio.get_running_loop()
        self._started = True
        if self.keep_calls_days is not None and isinstance(self.store, retention.Prunable):
            self._pruner = asyncio.create_task(self._prune_forever(), name="fareway-ledger-pruner")

    async def flush(self) -> None:
        """Wait until every call recorded before this point is committed."""
        if not self._started or self._closed:
            return
        loop = asyncio.get_running_loop()
        marker = FlushMarker(loop, loop.create_future())
        self.store.submit(marker)
        await marker.future

    async def close(self) -> None:
        """Flush everything, stop the writer, close the database.  Idempotent."""
        if self._closed:
            return
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._started:
            self._checkpoint_all()
            begin_close = getattr(self.store, "begin_close", None)
            if begin_close is not None:  # a store whose close is bounded starts its clock now
                begin_close()
            await self.flush()
            self._closed = True
            await self.store.close()
        self._closed = True
        if self.stats.dropped:
            log.error("ledger closed with %d dropped call(s)", self.stats.dropped)

    async def __aenter__(self) -> Ledger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the request path

    def record(self, call: CallRecord, attempts: Sequence[AttemptRecord] = ()) -> None:
        """Queue one call and its attempts for writing.  Never blocks, never awaits, never drops."""
        if self._closed or not self._started:
            raise RuntimeError("ledger.record() called on a ledger that is not running")
        if self._live and (live := self._live.pop(call.request_id, None)) is not None:
            live.done = True
            if live.shipped:  # its checkpoint goes in the same transaction as its rows
                self.store.submit(Settle(call, list(attempts)))
            else:
                self.store.submit((call, list(attempts)))
        else:
            self.store.submit((call, list(attempts)))
        self.stats.enqueued += 1
        if self.stats.queued > self.capacity and not self._saturated:
            self._saturated = True
            log.warning(
                "ledger backlog is %d calls (capacity %d): the database is not keeping up; "
                "calls are kept in memory, none dropped",
                self.stats.queued,
                self.capacity,
            )

    # -- checkpoints of streams in flight (inflight.py)

    def checkpoint(self, request_id: str, snapshot: Snapshot) -> None:
        """A streamed call has committed: until :meth:`record` takes it, keep a checkpoint of it
        in the database, so that a gateway killed mid-stream still leaves its row.  ``snapshot()``
        is called on the event loop ``checkpoint_after`` seconds from now and every
        ``checkpoint_every`` seconds after that; it returns the call's rows as they would be
        recorded if it stopped now (or None to skip this time; twice in a row, and the call is
        forgotten: it was accounted, and its record is lost or coming).  A call recorded within
        ``checkpoint_after`` is never checkpointed.  Never blocks, never does I/O."""
        if self._closed or not self._started or self._loop is None:
            return
        live = _Live(request_id, snapshot)
        self._live[request_id] = live
        self._fresh.append(live)
        if self._fresh_timer is None:
            self._fresh_timer = self._loop.call_later(self.checkpoint_after, self._checkpoint_fresh)

    @property
    def in_flight(self) -> int:
        """Streams being checkpointed (committed, not yet recorded)."""
        return len(self._live)

    def _checkpoint_fresh(self) -> None:
        self._fresh_timer = None
        fresh, self._fresh = self._fresh, []
        for live in fresh:
            if not live.done:
                self._ship(live)
        if self._live and self._refresh_timer is None and self._loop is not None:
            self._refresh_timer = self._loop.call_later(self.checkpoint_every, self._refresh)

    def _refresh(self) -> None:
        self._refresh_timer = None
        for live in list(self._live.values()):
            if live.shipped or live.misses:  # (the fresh ones are the fresh timer's)
                self._ship(live)
        if self._live and self._loop is not None and not self._closed:
            self._refresh_timer = self._loop.call_later(self.checkpoint_every, self._refresh)

    def _checkpoint_all(self) -> None:
        """At close: the latest state of every stream still running goes to the database."""
        for timer in (self._fresh_timer, self._refresh_timer):
            if timer is not None:
                timer.cancel()
        self._fresh_timer = self._refresh_timer = None
        self._fresh = []
        for live in list(self._live.values()):
            self._ship(live)

    def _ship(self, live: _Live) -> None:
        try:
            item = live.snapshot()
        except Exception:  # a checkpoint is a safety net; never let it break the loop
            log.exception("checkpoint of request %s failed", live.request_id)
            item = None
        if item is None:
            live.misses += 1
            if live.misses >= 2:
                self._live.pop(live.request_id, None)
            return
        live.misses = 0
        live.shipped = True
        self.store.submit(Checkpoint(item[0], list(item[1])))

    def health(self) -> str:
        """``ok``, or ``degraded: ...`` while the database is unreachable and calls are being
        spooled (Postgres; every call is still accepted)."""
        health = getattr(self.store, "health", None)
        return "ok" if health is None else str(health())

    @property
    def saturated(self) -> bool:
        """True while the backlog is past ``capacity`` (cleared below half of it)."""
        if self._saturated and self.stats.queued <= self.capacity // 2:
            self._saturated = False
            log.info("ledger backlog back to %d calls", self.stats.queued)
        return self._saturated

    async def readiness(self) -> str:
        """``"ok"`` when the database answers a read, ``"degraded: ..."`` while calls are being
        spooled (the database is not queried then), else ``"error: <ExceptionType>"``; never raises."""
        health = self.health()
        if health != "ok":
            return health
        try:
            await self.recent_calls(n=1)
        except Exception as exc:  # a probe reports, it never raises
            return f"error: {type(exc).__name__}"
        return "ok"

    async def wait_capacity(self, poll: float = 0.01) -> None:
        """Backpressure for callers that can wait: return once the ledger is not saturated."""
        # polled: the SQLite writer is a thread, and saturation is rare and short-lived
        while self.saturated:  # noqa: ASYNC110
            await asyncio.sleep(poll)

    # -- retention (retention.py)

    async def prune(
        self,
        keep_days: float | None = None,
        *,
        pause: float = retention.PRUNE_PAUSE,
        now: datetime | None = None,
    ) -> tuple[int, int]:
        """Delete raw rows older than ``keep_days`` (default: ``keep_calls_days``) before ``now``
        in small transactions, then give the freed space back where the backend can; returns
        (calls, attempts) deleted.  The minute rollups go with them; hour and day ones stay."""
        days = self.keep_calls_days if keep_days is None else keep_days
        store = self.store
        if days is None or not isinstance(store, retention.Prunable):
            return 0, 0
        before = retention.cutoff(days, now)
        calls = attempts = 0
        while True:
            step = await store.prune_step(before, retention.PRUNE_BATCH)
            calls += step.calls
            attempts += step.attempts
            if step.calls or step.attempts:
                await store.reclaim()
            if not step.more:
                break
            await asyncio.sleep(pause)
        more = True
        while more:  # bounded steps, so reads and writes get the database in between
            more = await store.reclaim()
            if more:
                await asyncio.sleep(pause)
        if calls or attempts:
            log.info("ledger: pruned %d call(s) and %d attempt(s) older than %s", calls, attempts, before)
        return calls, attempts

    async def storage_stats(self) -> dict[str, object]:
        """Rows per table, size on disk, the oldest raw rows and where pruning stopped."""
        if not isinstance(self.store, retention.Prunable):
            raise RuntimeError("this ledger's store keeps no storage statistics")
        return await self.store.storage_stats()

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be down: try again next time
                log.warning("ledger: pruning failed (%s: %s); will retry", type(exc).__name__, exc)
            await asyncio.sleep(retention.PRUNE_EVERY)

    # -- named queries (reads run off the event loop).  Aggregates come from the rollups
    # (rollup_queries.py); calls and their attempts from the raw rows (queries.py).

    async def usage(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: Sequence[queries.GroupBy] = (),
        key_id: str | None = None,
    ) -> list[queries.UsageRow]:
        return await rollup_queries.usage(self.store, since, until, group_by, key_id)

    async def recent_calls(
        self, n: int = 20, model: str | None = None, key_id: str | None = None
    ) -> list[queries.LoggedCall]:
        return await queries.recent_calls(self.store, n, model, key_id)

    async def latency_by_provider(self, since: datetime | None = None) -> list[queries.ProviderLatency]:
        return await rollup_queries.latency_by_provider(self.store, since)

    async def spend_over_time(
        self,
        since: datetime | None = None,
        bucket: Literal["hour", "day"] = "hour",
        by: Literal["provider", "model", "key"] | None = "provider",
        until: datetime | None = None,
    ) -> list[queries.SpendPoint]:
        return await rollup_queries.spend_over_time(self.store, since, bucket, by, until)

    async def ledger_totals(self) -> rollup_queries.LedgerTotals:
        """Everything ever recorded, grouped as /metrics labels it (from the day rollups)."""
        return await rollup_queries.ledger_totals(self.store)

    async def export_csv(
        self, since: datetime | None = None, until: datetime | None = None, key_id: str | None = None
    ) -> str:
        return await queries.export_csv(self.store, since, until, key_id)
