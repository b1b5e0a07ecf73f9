"""In-flight streams: a committed stream leaves a call row even if the gateway is killed.

A streamed call's rows are written when it ends.  So that a gateway killed mid-stream (SIGKILL,
OOM, a power cut of the container) still accounts for the streams it was serving, each committed
stream is *checkpointed*: its call row and attempt rows as they would be written if it stopped
now (status 200, outcome ``cancelled``, estimated tokens, :data:`STOPPED`) go to the ``inflight``
table (migration 3), one row per request id, refreshed while the stream runs.  When the call is
recorded, its rows are written and its inflight row deleted in the same transaction (a
:class:`~fareway.ledger.base.Settle`).  The ledger's queries read ``calls``/``attempts`` only.

Adoption.  Each inflight row names its *writer* (one id per store instance).  A writer holds a
lock for as long as it lives: on SQLite an ``flock`` on ``<db>-writers/<writer>.lock`` (taken by
the process that writes: the writer process, or the gateway for the writer thread; released by
the kernel when that process dies, however it dies), on Postgres a session advisory lock on the
writer's connection (released when the session ends).  At start, and then at most every
:data:`SWEEP_SECONDS` while rows of other writers remain, a writer *adopts* the rows of writers
whose lock it can take: in one transaction, holding that lock, it inserts their call and attempt
rows, deletes them from ``inflight`` and notes each adopted call's id in ``inflight_adopted``.
Two adopters cannot both take a writer's lock, and the rows are deleted in the transaction that
writes them: each is adopted once.

A writer that was alive after all (its Postgres session was cut by a network failure and the
lock went with it; it reconnects, takes the lock again, and records its calls) finds its inflight
row gone when it settles a call: it then deletes the adopted call row (by the id noted in
``inflight_adopted``) and that call's attempt rows, in the same transaction as the true rows.
So a call is counted once either way.  ``inflight_adopted`` rows are kept for a week.

Postgres: adoption waits until this store has written what its spool held (an earlier run's
batches, which may settle some of those rows).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from fareway.ledger.base import log
from fareway.ledger.records import ATTEMPT_COLUMNS, CALL_COLUMNS, upgrade_call_row
from fareway.ledger.rollup_store import PG, SQLITE, apply_pg, apply_sqlite

STOPPED = "the gateway stopped before the stream ended"
"""The error text of a checkpointed (and adopted) call."""

SWEEP_SECONDS = 60.0
"""How often a writer looks again for rows of writers that were alive at its last look."""

KEEP_ADOPTED = timedelta(days=7)

RID = CALL_COLUMNS.index("request_id")
OUTPUT = CALL_COLUMNS.index("output_tokens")
ATTEMPT_RID = ATTEMPT_COLUMNS.index("request_id")


def encode_rows(call: Sequence[Any], attempts: Sequence[Sequence[Any]]) -> str:
    """A checkpoint's rows as stored in ``inflight.rows`` (JSON of plain values: str, int, float,
    None; orjson, a tenth of the stdlib's time, and this runs for every checkpoint)."""
    return orjson.dumps([call, attempts]).decode()


def decode_rows(text: str) -> tuple[list[Any], list[list[Any]]]:
    call, attempts = orjson.loads(text)
    call = upgrade_call_row(call)
    if len(call) != len(CALL_COLUMNS) or any(len(a) != len(ATTEMPT_COLUMNS) for a in attempts):
        raise ValueError("an inflight row does not match the ledger's columns")
    return call, attempts


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _iso_now(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - delta).isoformat(timespec="microseconds")


# ------------------------------------------------------------------------ SQLite writer locks


def lock_dir(db_path: str) -> Path:
    return Path(f"{db_path}-writers")


class WriterLock:
    """The lock a SQLite writer holds while it lives (an ``flock``'d file named by its id)."""

    def __init__(self, directory: Path, writer: str) -> None:
        self.path = directory / f"{writer}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # blocking: another holder can only be this writer's own earlier process (a
                # restarted writer process keeps its id), which is exiting, or an adopter of
                # what that process left, which deletes the file when done
                fcntl.flock(fd, fcntl.LOCK_EX)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:  # (not a file an adopter deleted while we waited for it)
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        """At a clean stop: nothing of this writer is left to adopt once its rows are settled."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def _take_dead(directory: Path, writer: str) -> int | None:
    """The lock of ``writer`` if nobody holds it (its process is gone), else None."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{writer}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# ------------------------------------------------------------------------------ SQLite writes

_UPSERT = "INSERT OR REPLACE INTO inflight (request_id, writer, updated_at, output_tokens, rows) VALUES "


def _upsert(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> None:
    """Multi-row statements of up to 64 rows (not executemany, which steps once per row; a row
    repeated later in the list replaces the earlier one, as one statement per row would)."""
    for i in range(0, len(params), 64):
        chunk = params[i : i + 64]
        sql = _UPSERT + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        conn.execute(sql, [v for p in chunk for v in p])


def sqlite_apply(
    conn: sqlite3.Connection,
    writer: str,
    checkpoints: Sequence[tuple[Sequence[Any], Sequence[Sequence[Any]]]],
    settled: Sequence[str],
) -> None:
    """Inside a write transaction, before the batch's calls are inserted: upsert the checkpoints
    (rows as written: times and money as text), then delete the inflight rows of the settled
    calls, undoing an adoption where one happened (see the module docstring)."""
    if checkpoints:
        now = _iso_now()
        params = [(str(c[RID]), writer, now, int(c[OUTPUT]), encode_rows(c, atts)) for c, atts in checkpoints]
        try:
            _upsert(conn, params)
        except sqlite3.OperationalError:
            raise  # locked, I/O, disk full: the batch is retried
        except sqlite3.Error as exc:  # never lose the batch's calls over a checkpoint
            log.error("ledger: %d checkpoint(s) refused (%s); the calls are still recorded", len(params), exc)
    for i in range(0, len(settled), 500):
        chunk = list(settled[i : i + 500])
        sql = f"DELETE FROM inflight WHERE request_id IN ({_placeholders(len(chunk))}) RETURNING request_id"
        gone = {r[0] for r in conn.execute(sql, chunk).fetchall()}
        missing = [r for r in chunk if r not in gone]
        if missing:
            _sqlite_undo_adoption(conn, missing)


def _sqlite_undo_adoption(conn: sqlite3.Connection, rids: list[str]) -> None:
    sql = f"DELETE FROM inflight_adopted WHERE request_id IN ({_placeholders(len(rids))}) RETURNING request_id, call_id"
    found = conn.execute(sql, rids).fetchall()
    if not found:
        return  # the checkpoint was in the same batch, or was refused: nothing was adopted
    ids = [r[1] for r in found]
    back = [r[0] for r in found]
    calls = conn.execute(
        f"DELETE FROM calls WHERE id IN ({_placeholders(len(ids))}) RETURNING {', '.join(CALL_COLUMNS)}", ids
    ).fetchall()
    atts = conn.execute(
        f"DELETE FROM attempts WHERE request_id IN ({_placeholders(len(back))}) "
        f"RETURNING {', '.join(ATTEMPT_COLUMNS)}",
        back,
    ).fetchall()
    apply_sqlite(conn, SQLITE.deltas().add(calls, atts, sign=-1))  # counted by their real rows
    log.warning(
        "ledger: %d call(s) adopted from this writer's checkpoints while it was alive were replaced "
        "by their real rows: request ids %s",
        len(back),
        ", ".join(back[:20]),
    )


_CALL_INSERT = f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({_placeholders(len(CALL_COLUMNS))})"
_ATTEMPT_INSERT = (
    f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) VALUES ({_placeholders(len(ATTEMPT_COLUMNS))})"
)


class SqliteAdopter:
    """Adopts the inflight rows of dead writers, for one SQLite writer (see the module docstring)."""

    def __init__(self, db_path: str, writer: str) -> None:
        self.writer = writer
        self.directory = lock_dir(db_path)
        self.lock = WriterLock(self.directory, writer)
        self.adopted = 0
        self.attempts = 0
        self._next: float | None = None
        """When to look again (None: no row of a live writer was left at the last look)."""

    def start(self, conn: sqlite3.Connection) -> int:
        """Take this writer's lock and adopt what dead writers left.  Returns the calls adopted."""
        self.lock.acquire()
        return self.adopt(conn)

    def due(self) -> bool:
        return self._next is not None and time.monotonic() >= self._next

    def adopt(self, conn: sqlite3.Connection) -> int:
        """One look, in its own transaction (``conn`` is in autocommit mode)."""
        taken: list[tuple[str, int]] = []
        waiting = False
        calls = attempts = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            writers = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT writer FROM inflight WHERE writer <> ?", (self.writer,)
                )
            ]
            for w in writers:
                fd = _take_dead(self.directory, w)
                if fd is None:
                    waiting = True  # alive (or its process is still finishing): look again later
                    continue
                taken.append((w, fd))
                c, a = self._adopt_writer(conn, w)
                calls += c
                attempts += a
            conn.execute("DELETE FROM inflight_adopted WHERE adopted_at < ?", (_iso_now(KEEP_ADOPTED),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            for _, fd in taken:
                os.close(fd)
            raise
        for w, fd in taken:  # its rows are in calls now: its lock file is no longer needed
            with contextlib.suppress(OSError):
                (self.directory / f"{w}.lock").unlink()
            os.close(fd)
        self._next = time.monotonic() + SWEEP_SECONDS if waiting else None
        if calls:
            log.warning(
                "ledger: %d stream(s) a stopped gateway was serving recorded from their checkpoints "
                "(outcome cancelled, estimated tokens)",
                calls,
            )
        self.adopted += calls
        self.attempts += attempts
        return calls

    def _adopt_writer(self, conn: sqlite3.Connection, writer: str) -> tuple[int, int]:
        calls = attempts = 0
        now = _iso_now()
        rows = conn.execute("SELECT request_id, rows FROM inflight WHERE writer = ?", (writer,)).fetchall()
        deltas = SQLITE.deltas()
        for rid, text in rows:
            try:
                call, atts = decode_rows(text)
            except (ValueError, TypeError) as exc:
                log.error("ledger: the checkpoint of request %s is unreadable (%s); dropped", rid, exc)
                continue
            cur = conn.execute(_CALL_INSERT, call)
            if atts:
                conn.executemany(_ATTEMPT_INSERT, atts)
            conn.execute(
                "INSERT OR REPLACE INTO inflight_adopted (request_id, call_id, adopted_at) VALUES (?, ?, ?)",
                (rid, cur.lastrowid, now),
            )
            deltas.add([call], atts)
            calls += 1
            attempts += len(atts)
        apply_sqlite(conn, deltas)
        conn.execute("DELETE FROM inflight WHERE writer = ?", (writer,))
        return calls, attempts

    def close(self) -> None:
        self.lock.release()


# -------------------------------------------------------------------------------- Postgres

PG_LOCK_CLASS = 0x46574C4B
"""The first key of a writer's advisory lock (``pg_advisory_lock(PG_LOCK_CLASS, hashtext(writer))``;
two-key locks do not collide with the migrations' one-key lock)."""


def pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def pg_take_writer_lock(conn: Any, writer: str) -> bool:
    """Take ``writer``'s session lock on its connection.  False if a session of its own that the
    server still thinks alive holds it (it protects the rows all the same until it ends)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", PG_LOCK_CLASS, writer))


class PgAdopter:
    """Adopts the inflight rows of dead writers, for one Postgres writer (module docstring)."""

    def __init__(self, schema: str, writer: str, decode: Callable[[str], tuple[Any, list[Any]]]) -> None:
        self.schema = schema
        self.writer = writer
        self.decode = decode
        """A checkpoint's stored rows as the COPY takes them (pg_batch.decode_checkpoint)."""
        self._next: float | None = 0.0
        """When to look (again); None: no row of a live writer was left at the last look."""

    def due(self) -> bool:
        return self._next is not None and time.monotonic() >= self._next

    def later(self) -> None:
        """The look failed (the database): try again in a while."""
        self._next = time.monotonic() + SWEEP_SECONDS

    async def adopt(self, conn: Any) -> tuple[int, int]:
        """One look: (calls, attempts) adopted.  Each dead writer's rows in one transaction."""
        decode_checkpoint = self.decode
        t = pg_quote(self.schema)
        writers = [
            r[0]
            for r in await conn.fetch(
                f"SELECT DISTINCT writer FROM {t}.inflight WHERE writer <> $1", self.writer
            )
        ]
        waiting = False
        calls = attempts = 0
        insert = (
            f"INSERT INTO {t}.calls ({', '.join(CALL_COLUMNS)}) VALUES "
            f"({', '.join(f'${i + 1}' for i in range(len(CALL_COLUMNS)))}) RETURNING id"
        )
        for w in writers:
            async with conn.transaction():
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", PG_LOCK_CLASS, w
                ):
                    waiting = True  # alive: its own session holds the lock
                    continue
                rows = await conn.fetch(
                    f"DELETE FROM {t}.inflight WHERE writer = $1 RETURNING request_id, rows", w
                )
                adopted: list[tuple[str, int]] = []
                atts: list[Any] = []
                deltas = PG.deltas()
                for rid, text in rows:
                    try:
                        call, call_atts = decode_checkpoint(text)
                    except (ValueError, TypeError) as exc:
                        log.error(
                            "ledger: the checkpoint of request %s is unreadable (%s); dropped", rid, exc
                        )
                        continue
                    adopted.append((rid, int(await conn.fetchval(insert, *call))))
                    atts.extend(call_atts)
                    deltas.add([call], call_atts)
                if atts:
                    await conn.copy_records_to_table(
                        "attempts", records=atts, columns=ATTEMPT_COLUMNS, schema_name=self.schema
                    )
                await apply_pg(conn, self.schema, deltas)
                if adopted:
                    await conn.executemany(
                        f"INSERT INTO {t}.inflight_adopted (request_id, call_id, adopted_at) VALUES ($1, $2, now()) "
                        "ON CONFLICT (request_id) DO UPDATE SET call_id = EXCLUDED.call_id, adopted_at = now()",
                        adopted,
                    )
                calls += len(adopted)
                attempts += len(atts)
        await conn.execute(f"DELETE FROM {t}.inflight_adopted WHERE adopted_at < now() - interval '7 days'")
        self._next = time.monotonic() + SWEEP_SECONDS if waiting else None
        if calls:
            log.warning(
                "ledger: %d stream(s) a stopped gateway was serving recorded from their checkpoints "
                "(outcome cancelled, estimated tokens)",
                calls,
            )
        return calls, attempts
