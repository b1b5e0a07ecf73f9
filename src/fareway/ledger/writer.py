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
A half-written batch is rolled back by the database, never half-stored.  Everything counted in
``stats.written`` is committed (SQLite runs WAL with ``synchronous=NORMAL``: committed data
survives a process crash; an OS crash or power cut may lose the last transactions).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from fareway.ledger import queries
from fareway.ledger.base import FlushMarker, LedgerStats, Store
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


class Ledger:
    def __init__(self, store: Store, *, capacity: int = 100_000) -> None:
        self.store = store
        self.stats: LedgerStats = store.stats
        self.capacity = capacity
        self._saturated = False
        self._started = False
        self._closed = False

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
        (seconds a write may hang before the calls waiting behind it are spooled)."""
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
                    path, stats, batch_size=batch_size, max_delay=max_delay, cpus=writer_cpus
                )
            elif writer == "thread":
                store = SqliteStore(path, stats, batch_size=batch_size, max_delay=max_delay)
            else:
                raise ValueError(f"unknown ledger writer {writer!r}: process or thread")
        else:
            raise ValueError(f"unsupported ledger_url {url!r}: use postgresql://... or sqlite:///path")
        return cls(store, capacity=capacity)

    # -- lifecycle

    async def start(self) -> None:
        """Open the database, apply migrations, start the writer."""
        if self._started:
            return
        await self.store.start()
        self._started = True

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
        if self._started:
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

    # -- named queries (reads run off the event loop)

    async def usage(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: Sequence[queries.GroupBy] = (),
        key_id: str | None = None,
    ) -> list[queries.UsageRow]:
        return await queries.usage(self.store, since, until, group_by, key_id)

    async def recent_calls(
        self, n: int = 20, model: str | None = None, key_id: str | None = None
    ) -> list[queries.LoggedCall]:
        return await queries.recent_calls(self.store, n, model, key_id)

    async def latency_by_provider(self, since: datetime | None = None) -> list[queries.ProviderLatency]:
        return await queries.latency_by_provider(self.store, since)

    async def spend_over_time(
        self,
        since: datetime | None = None,
        bucket: Literal["hour", "day"] = "hour",
        by: Literal["provider", "model", "key"] | None = "provider",
        until: datetime | None = None,
    ) -> list[queries.SpendPoint]:
        return await queries.spend_over_time(self.store, since, bucket, by, until)

    async def export_csv(
        self, since: datetime | None = None, until: datetime | None = None, key_id: str | None = None
    ) -> str:
        return await queries.export_csv(self.store, since, until, key_id)
