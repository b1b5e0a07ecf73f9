"""SQLite ledger written by a child process (``[ledger] writer = "process"``).

Why a process: the sqlite3 module releases and re-takes the GIL around every statement step, so a
writer *thread* in the gateway's process hands the GIL back and forth with the event loop
hundreds of times per batch; on one core that convoy cost more than the inserts themselves
(see the measurements below).

Here a shipper thread in the gateway gathers a batch (as the thread store does), turns the records
into rows (money and times as text), and sends one pickled message per batch over a pipe; the
child owns the only write connection and commits each batch in one transaction, with the same
retry and isolate-the-bad-record rules (``SqliteStore._write_rows``), then answers with its
counters.  Reads stay in the gateway process on their own connection (WAL).

Measured (in-process harness, 64 concurrent calls, one core): the thread writer adds ~130 us of
gateway-process CPU per call, this one ~55 us (rows and pickling); the child's own SQLite work
runs on whatever core it gets.  It is not the default because it starts the child with the
``spawn`` method, which re-imports the launching script: a script that builds the app at import
time without an ``if __name__ == "__main__":`` guard would start again in the child.

Shutdown: ``close()`` ships what is queued, tells the child to stop and waits for it.  The child
ignores SIGINT (Ctrl-C reaches the whole process group; the gateway's graceful shutdown stops it)
and exits by itself when the gateway's end of the pipe closes.  A crash of the gateway loses at
most what was queued or in the pipe, as with the thread store.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from fareway.ledger.base import LedgerStats, QueueItem, log
from fareway.ledger.migrations import migrate_sqlite
from fareway.ledger.sqlite_store import _REQUEST_ID, CallRows, SqliteStore, _attempt_row, _call_row, _connect

_STOP_MSG = b"stop"


class SqliteProcessStore(SqliteStore):
    def __init__(self, path: str, stats: LedgerStats, *, cpus: list[int] | None = None, **kw: Any) -> None:
        super().__init__(path, stats, **kw)
        self.cpus = cpus
        """CPUs the writer process may run on (None: inherit the gateway's affinity)."""
        self._proc: Any = None
        self._pipe: Connection | None = None

    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child_main,
            args=(self.path, child, self.close_retries, self.cpus),
            name="fareway-ledger-writer",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._pipe = parent
        kind, value = await asyncio.to_thread(parent.recv)
        if kind != "ready":
            await asyncio.to_thread(self._proc.join, 5)
            raise RuntimeError(f"the ledger writer process could not open {self.path}: {value}")
        self.schema_version = int(value)
        self._thread = threading.Thread(target=self._ship_loop, name="fareway-ledger-shipper", daemon=True)
        self._thread.start()
        from concurrent.futures import ThreadPoolExecutor

        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fareway-ledger-reader")

    def _ship_loop(self) -> None:
        try:
            self._loop(self._pipe)  # type: ignore[arg-type]  # _write below takes the pipe
        finally:
            pipe = self._pipe
            if pipe is not None:
                try:
                    pipe.send_bytes(_STOP_MSG)
                except OSError:
                    pass

    def _write(self, conn: Any, batch: list[QueueItem]) -> None:
        if not batch or self._pipe is None:
            return
        rows: list[CallRows] = [(_call_row(c), [_attempt_row(a) for a in atts]) for c, atts in batch]
        try:
            self._pipe.send_bytes(pickle.dumps((self._closing, rows), protocol=pickle.HIGHEST_PROTOCOL))
            written, attempts, batches, retries, refused = self._pipe.recv()
        except (OSError, EOFError) as exc:
            self._give_up(rows, exc)
            return
        self.stats.written += written
        self.stats.attempts_written += attempts
        self.stats.batches += batches
        self.stats.retries += retries
        for reason, ids in refused:
            self.stats.dropped += len(ids)
            log.error(
                "ledger dropped %d call(s) after %s: request ids %s", len(ids), reason, ", ".join(ids[:20])
            )

    async def close(self) -> None:
        if self._thread is None:
            return
        await super().close()  # ships what is queued; the shipper then tells the child to stop
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, 30)
            if self._proc.is_alive():
                log.error("the ledger writer process did not stop in 30 s; terminating it")
                self._proc.terminate()
            self._proc = None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


class _ChildWriter(SqliteStore):
    """In the child: refused calls are reported back to the gateway, which counts and logs them."""

    refused: list[tuple[str, list[str]]] = []

    def _give_up(self, rows: list[CallRows], exc: BaseException) -> None:
        self.refused.append((f"{type(exc).__name__}: {exc}", [str(c[_REQUEST_ID]) for c, _ in rows]))


def _child_main(path: str, pipe: Connection, close_retries: int, cpus: list[int] | None = None) -> None:
    """The writer process: open, migrate, then commit each batch it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError, ValueError) as exc:  # not Linux, or CPUs that do not exist
            log.warning("ledger writer: could not pin to CPUs %s (%s); running unpinned", cpus, exc)
    try:
        conn = _connect(path)
        version = migrate_sqlite(conn)
    except Exception as exc:  # reported to the gateway, which refuses to start
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("ready", version))
    writer = _ChildWriter(path, LedgerStats(), close_retries=close_retries)
    try:
        while True:
            try:
                msg = pipe.recv_bytes()
            except EOFError:
                return  # the gateway is gone
            if msg == _STOP_MSG:
                return
            closing, rows = pickle.loads(msg)
            writer._closing = closing
            before = (
                writer.stats.written,
                writer.stats.attempts_written,
                writer.stats.batches,
                writer.stats.retries,
            )
            writer.refused = []
            writer._write_rows(conn, rows)
            s = writer.stats
            pipe.send(
                (
                    s.written - before[0],
                    s.attempts_written - before[1],
                    s.batches - before[2],
                    s.retries - before[3],
                    writer.refused,
                )
            )
    finally:
        conn.close()
