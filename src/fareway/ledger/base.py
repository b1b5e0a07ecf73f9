"""The contract between :class:`fareway.ledger.writer.Ledger` and its storage backends.

A backend owns one background writer (a thread for SQLite, an asyncio task for Postgres) that
drains a FIFO of :data:`QueueItem` in batches, one transaction per batch.  A :class:`FlushMarker`
in the FIFO is resolved once every item before it is committed, which is how ``flush()`` and
``close()`` know that nothing queued before them is lost.

Failure policy (never silent):

* a transient error (database locked, connection lost, disk full) retries the same batch with
  backoff; meanwhile the queue grows and the ledger reports ``saturated``;
* a record the database refuses (a data error) is retried alone; if it still fails it is counted
  in ``dropped`` and logged at ERROR with its request id.  ``dropped`` stays 0 otherwise;
* after ``close()`` is asked for, a batch that keeps failing transiently is retried
  ``close_retries`` times, then counted in ``dropped`` and logged, so shutdown cannot hang
  (SQLite; Postgres instead spools it to a local file within ``close_timeout`` and writes it at
  the next start, see postgres_store.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from fareway.ledger.records import AttemptRecord, CallRecord

log = logging.getLogger("fareway.ledger")

QueueItem = tuple[CallRecord, list[AttemptRecord]]


class Settle(NamedTuple):
    """A call whose checkpoint was handed to the store (see :class:`Checkpoint`): written like any
    call, and its ``inflight`` row deleted in the same transaction.  A tuple, so every batch path
    that takes ``(call, attempts)`` takes it unchanged."""

    call: CallRecord
    attempts: list[AttemptRecord]


@dataclass(slots=True)
class Checkpoint:
    """A committed stream as it would be recorded if the gateway stopped now: upserted into the
    ``inflight`` table (keyed by request id, with the writer's id), and turned into a call row by
    the next start if the gateway dies before the call is recorded (see inflight.py).  Not a
    call: it counts in no statistic."""

    call: CallRecord
    attempts: list[AttemptRecord]


@dataclass(slots=True)
class FlushMarker:
    """Put in the queue by ``flush()``: resolved when everything before it is committed."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]

    def resolve(self) -> None:
        def _set() -> None:
            if not self.future.done():
                self.future.set_result(None)

        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(_set)


@dataclass(slots=True)
class LedgerStats:
    enqueued: int = 0
    """Calls handed to ``record()``."""
    written: int = 0
    """Calls committed to the database."""
    attempts_written: int = 0
    batches: int = 0
    retries: int = 0
    dropped: int = 0
    """Calls given up on (a record the database refused, or shutdown with a dead database)."""
    spooled: int = 0
    """Postgres: calls in the local spool now, waiting for the database (part of ``queued``
    when recorded by this process)."""
    recovered: int = 0
    """Postgres: calls from an earlier run's spool written by this one."""
    adopted: int = 0
    """Calls written from the checkpoints of streams a dead gateway was serving (inflight.py)."""

    @property
    def queued(self) -> int:
        """Calls recorded but not yet committed (in the queue or in the batch being written)."""
        return self.enqueued - self.written - self.dropped

    def as_dict(self) -> dict[str, int]:
        return {
            "enqueued": self.enqueued,
            "written": self.written,
            "attempts_written": self.attempts_written,
            "queued": self.queued,
            "batches": self.batches,
            "retries": self.retries,
            "dropped": self.dropped,
            "spooled": self.spooled,
            "recovered": self.recovered,
            "adopted": self.adopted,
        }


class StoreUnavailable(RuntimeError):
    """A read could not reach the database (down, unreachable, timed out); try again later."""


class Dialect(Protocol):
    """SQL differences between backends, used by :mod:`fareway.ledger.queries`."""

    name: str

    def ph(self, n: int) -> str:
        """The placeholder for the n-th (1-based) parameter."""
        ...

    def bucket(self, column: str, unit: str) -> str:
        """A text expression for the UTC ``day`` (``YYYY-MM-DD``) or ``hour`` (``YYYY-MM-DDTHH``)."""
        ...

    def money_sum(self, column: str) -> str: ...

    def percentile(self, expr: str, q: float) -> str: ...

    def time_param(self, value: Any) -> Any: ...

    def in_list(self, column: str, first_ph: int, count: int) -> tuple[str, bool]:
        """``(sql, as_array)``: the membership test and whether the values go as one array param."""
        ...


class Store(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    @property
    def stats(self) -> LedgerStats: ...

    async def start(self) -> None: ...

    def submit(self, item: QueueItem | FlushMarker | Checkpoint) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]: ...
