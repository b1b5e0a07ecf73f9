"""The SQLite ledger writer process: ``python -m fareway.ledger.sqlite_child PATH WRITER_ID``.

Started by :class:`fareway.ledger.sqlite_process.SqliteProcessStore`; it owns the ledger's only
write connection.  It speaks length-prefixed frames over its stdin/stdout (see :mod:`.frames`):

* at start it opens and migrates the database, takes this writer's lock, adopts the inflight
  rows of writers that are gone (inflight.py) and answers ``("ready", schema_version, last_seq,
  adopted)`` or ``("error", message)``;
* the gateway then sends batches ``(seq, closing, rows, checkpoints, settled)`` (rows and
  checkpoints as :data:`fareway.ledger.sqlite_store.CallRows`, but times as Unix seconds;
  ``settled``: the request ids among ``rows`` whose inflight row goes with them, see
  inflight.py); each is committed in one transaction together with ``seq`` in
  ``ledger_writer_state``, and answered with ``(seq, written, attempts, batches, retries,
  refused, adopted)``;
* a batch whose ``seq`` is already committed for this ``WRITER_ID`` (re-sent after a writer
  restart) is acknowledged without writing it again: each batch is stored exactly once;
* end of input (the gateway closed the pipe, or died) means: write what was received, then exit.

It ignores SIGINT: Ctrl-C reaches the whole process group, and the gateway's graceful shutdown
is what stops this process (by closing its stdin), after everything is written.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
from typing import Any

from fareway.ledger.base import LedgerStats
from fareway.ledger.frames import read_frame, write_frame
from fareway.ledger.inflight import SqliteAdopter
from fareway.ledger.migrations import migrate_sqlite
from fareway.ledger.sqlite_store import _REQUEST_ID, CallRows, SqliteStore, _connect, epoch_times_to_iso

log = logging.getLogger("fareway.ledger")


class _ChildWriter(SqliteStore):
    """SqliteStore's retry and isolate-the-bad-record rules, reporting refused calls back to the
    gateway (which counts and logs them) and committing each batch's sequence number with it."""

    def __init__(self, path: str, writer_id: str, close_retries: int, rollups: bool = True) -> None:
        super().__init__(path, LedgerStats(), close_retries=close_retries, rollups=rollups)
        self.writer_id = writer_id
        self.refused: list[tuple[str, list[str]]] = []
        self.seq = 0
        """The batch being written (its number is committed in the same transaction)."""
        self.batch_len = 0
        self.seq_done = False

    def _give_up(self, rows: list[CallRows], exc: BaseException) -> None:
        self.refused.append((f"{type(exc).__name__}: {exc}", [str(c[_REQUEST_ID]) for c, _ in rows]))

    def write_batch(
        self,
        conn: sqlite3.Connection,
        seq: int,
        rows: list[CallRows],
        cps: list[CallRows] | None = None,
        settled: list[str] | None = None,
    ) -> None:
        self.seq, self.batch_len, self.seq_done = seq, len(rows), False
        self._cps, self._settled = cps or [], set(settled or ())
        try:
            self._write_rows(conn, rows)
        finally:
            self._cps, self._settled = [], set()
        if not self.seq_done:
            # The batch was split to isolate a refused call (or all of it was refused): record the
            # number on its own.  A crash between the parts and this would store those parts twice
            # after a restart; that needs a refused record and a crash together.
            self._record_seq(conn)  # autocommit

    def _in_transaction(self, conn: sqlite3.Connection, n_calls: int) -> None:
        if n_calls == self.batch_len:  # the whole batch: its number commits with it
            self._record_seq(conn)
            self.seq_done = True

    def _record_seq(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO ledger_writer_state (writer, seq) VALUES (?, ?)",
            (self.writer_id, self.seq),
        )


def _last_seq(conn: sqlite3.Connection, writer_id: str) -> int:
    row = conn.execute("SELECT seq FROM ledger_writer_state WHERE writer = ?", (writer_id,)).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s (writer): %(message)s")
    path, writer_id = argv[0], argv[1]
    close_retries = int(argv[2]) if len(argv) > 2 else 5
    cpus = [int(c) for c in argv[3].split(",") if c] if len(argv) > 3 else []
    rollups = argv[4] != "0" if len(argv) > 4 else True
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError, ValueError) as exc:  # not Linux, or CPUs that do not exist
            log.warning("could not pin to CPUs %s (%s); running unpinned", cpus, exc)
    adopter = SqliteAdopter(path, writer_id)
    try:
        conn = _connect(path)
        version = migrate_sqlite(conn)
        last = _last_seq(conn, writer_id)
        adopted = adopter.start(conn)
    except Exception as exc:  # reported to the gateway, which refuses to start
        write_frame(out, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    write_frame(out, ("ready", version, last, adopted))
    writer = _ChildWriter(path, writer_id, close_retries, rollups)
    try:
        while True:
            msg: Any = read_frame(inp)
            if msg is None:
                return 0  # the gateway closed the pipe (or is gone): everything received is written
            seq, closing, rows, *inflight = msg  # (a batch of an older gateway has no checkpoints)
            cps, settled = inflight if inflight else ([], [])
            s = writer.stats
            before = (s.written, s.attempts_written, s.batches, s.retries)
            writer.refused = []
            if seq > last:
                writer._closing = closing
                writer.write_batch(conn, seq, epoch_times_to_iso(rows), epoch_times_to_iso(cps), settled)
                last = seq
                done = (s.written - before[0], s.attempts_written - before[1])
            else:  # re-sent after a restart, and already committed
                done = (len(rows), sum(len(atts) for _, atts in rows))
            adopted = 0
            if adopter.due():
                try:
                    adopted = adopter.adopt(conn)
                except sqlite3.Error as exc:
                    log.warning("adopting checkpoints of stopped writers failed (%s); will retry", exc)
            write_frame(
                out, (seq, *done, s.batches - before[2], s.retries - before[3], writer.refused, adopted)
            )
    except BrokenPipeError:
        return 0  # the gateway is gone; what was committed stays
    finally:
        conn.close()
        adopter.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
