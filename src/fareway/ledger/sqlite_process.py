"""SQLite ledger written by a child process (``[ledger] writer = "process"``, or ``"auto"``, the
default, when the gateway may use more than one CPU).

Why a process, and why no thread on the gateway's side: the sqlite3 module releases and re-takes
the GIL around every statement step, so a writer *thread* in the gateway's process hands the GIL
back and forth with the event loop for every row; on one core that convoy cost more than the
inserts themselves.  Here the gateway process has no ledger thread at all:

* ``submit()`` (from ``Ledger.record()``, on the event loop) appends the call to a list and, for
  the first one, schedules a ship ``max_delay`` seconds later (at once when ``batch_size`` calls
  wait, or for a flush);
* a ship, still on the loop, turns the batch's records into rows (money as text, times as Unix
  seconds), frames them with :mod:`marshal` and writes them to the child's stdin (a non-blocking
  pipe write);
* the child (:mod:`fareway.ledger.sqlite_child`) commits each batch in one transaction, with the
  same retry and isolate-the-bad-record rules as the thread store, and acknowledges it; an ack
  task on the loop updates the counters and resolves flushes.

Batches stay in memory until acknowledged.  If the child dies, it is restarted and the
unacknowledged batches are sent again; each batch's sequence number commits in the same
transaction as its rows, so a batch that was committed before the crash is not stored twice.

The child is started as ``python -c "from fareway.ledger.sqlite_child import main; ..."``, not
with ``multiprocessing``, so it never re-imports the gateway's own script.

What a crash loses: the child writes everything that reached its pipe, even after the gateway
died; a gateway killed without shutdown loses only the calls recorded in the last ``max_delay``
seconds (not yet shipped).  Reads stay in the gateway process on their own connection (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fareway.ledger import frames
from fareway.ledger.base import Checkpoint, FlushMarker, LedgerStats, QueueItem, log
from fareway.ledger.sqlite_store import (
    _REQUEST_ID,
    CallRows,
    SqliteStore,
    _attempt_row_epoch,
    _call_row_epoch,
)


@dataclass(slots=True)
class _Shipped:
    frame: bytes
    calls: int
    markers: list[FlushMarker] = field(default_factory=list)


class SqliteProcessStore(SqliteStore):
    def __init__(self, path: str, stats: LedgerStats, *, cpus: list[int] | None = None, **kw: Any) -> None:
        super().__init__(path, stats, **kw)
        self.cpus = cpus
        """CPUs the writer process may run on (None: inherit the gateway's affinity)."""
        self.writer_id = uuid.uuid4().hex
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: list[QueueItem] = []
        self._pending_cps: list[Checkpoint] = []
        self._pending_settled: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0
        self._unacked: dict[int, _Shipped] = {}
        self._acks: asyncio.Task[None] | None = None
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._restarting: asyncio.Future[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        if self.path == ":memory:":
            raise ValueError(
                'an in-memory ledger cannot be written by another process: use writer = "thread"'
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._loop_ref = asyncio.get_running_loop()
        self.schema_version = await self._spawn()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fareway-ledger-reader")

    async def _spawn(self) -> int:
        cpus = ",".join(str(c) for c in self.cpus or ())
        args = [str(self.path), self.writer_id, str(self.close_retries), cpus, "1" if self.rollups else "0"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD_MAIN,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdin is not None
        hello = await _read(proc.stdout)
        if not hello or hello[0] != "ready":
            await proc.wait()
            why = hello[1] if hello else f"it exited with status {proc.returncode}"
            raise RuntimeError(f"the ledger writer process could not open {self.path}: {why}")
        self._proc = proc
        self._acks = asyncio.ensure_future(self._read_acks(proc))
        for shipped in self._unacked.values():  # after a restart: send again what was not confirmed
            proc.stdin.write(shipped.frame)
        self.stats.adopted += int(hello[3])
        return int(hello[1])

    async def close(self) -> None:
        if self._loop_ref is None or self._stopping:
            return
        self._closing = True
        self._ship()
        for _ in range(3):
            await self._await_restart()
            self._stopping = True
            await self._finish_writer()
            if not self._unacked:
                break
            # The writer died with batches unconfirmed (just before or during shutdown): start
            # one more to take them (it skips any it had committed).
            log.error("the ledger writer process stopped with %d batch(es) unconfirmed", len(self._unacked))
            self._stopping = False
            try:
                await self._spawn()
            except Exception as exc:
                log.error("the ledger writer process could not restart for shutdown: %s", exc)
                break
        self._stopping = True
        for shipped in self._unacked.values():
            self._give_up_shipped(shipped, "the writer process stopped before confirming them")
        self._unacked.clear()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await asyncio.get_running_loop().run_in_executor(reader, self._close_reader)
            reader.shutdown(wait=True)

    async def _await_restart(self) -> None:
        """If the writer is being restarted, give it a chance to take what it has not confirmed."""
        if self._restarting is not None and not self._restarting.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._restarting), 10)
            except TimeoutError:
                self._restarting.cancel()  # it stays down: what it missed is logged as dropped
                with contextlib.suppress(asyncio.CancelledError):
                    await self._restarting

    async def _finish_writer(self) -> None:
        """End the writer's input and wait until it has written and confirmed what it got."""
        proc = self._proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await proc.stdin.drain()
            proc.stdin.close()  # end of input: the child writes what it has, then exits
        if self._acks is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._acks), 60)
            except TimeoutError:
                log.error("the ledger writer process did not finish in 60 s; terminating it")
                if proc is not None:
                    proc.terminate()
        if proc is not None:
            await proc.wait()
        self._proc = None

    # -- the request path (event loop)

    def submit(self, item: QueueItem | FlushMarker | Checkpoint) -> None:
        if type(item) is not tuple:  # a call is a plain tuple: it skips these checks
            if isinstance(item, FlushMarker):
                self._ship()
                if self._unacked:
                    self._unacked[self._seq].markers.append(item)
                else:
                    item.resolve()
                return
            if isinstance(item, Checkpoint):  # goes with the next batch; not a call to count
                self._pending_cps.append(item)
                if self._timer is None:
                    assert self._loop_ref is not None
                    self._timer = self._loop_ref.call_later(self.max_delay, self._ship)
                return
            self._pending_settled.append(item[0].request_id)  # a Settle
        self._pending.append(item)
        if len(self._pending) >= self.batch_size:
            self._ship()
        elif self._timer is None:
            assert self._loop_ref is not None
            self._timer = self._loop_ref.call_later(self.max_delay, self._ship)

    def _ship(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending and not self._pending_cps:
            return
        batch, self._pending = self._pending, []
        rows: list[CallRows] = [
            (_call_row_epoch(c), [_attempt_row_epoch(a) for a in atts]) for c, atts in batch
        ]
        cps: list[CallRows] = []
        settled: list[str] = []
        if self._pending_cps or self._pending_settled:
            cps = [
                (_call_row_epoch(cp.call), [_attempt_row_epoch(a) for a in cp.attempts])
                for cp in self._pending_cps
            ]
            settled, self._pending_cps, self._pending_settled = self._pending_settled, [], []
        self._seq += 1
        shipped = _Shipped(frames.encode((self._seq, self._closing, rows, cps, settled)), len(rows))
        self._unacked[self._seq] = shipped
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(shipped.frame)
        # else: the writer is restarting; the batch goes out with the others once it is back

    # -- acknowledgements

    async def _read_acks(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            ack = await _read(proc.stdout)
            if ack is None:
                break
            seq, written, attempts, batches, retries, refused, adopted = ack
            self.stats.adopted += adopted
            shipped = self._unacked.pop(seq, None)
            self.stats.written += written
            self.stats.attempts_written += attempts
            self.stats.batches += batches
            self.stats.retries += retries
            for reason, ids in refused:
                self.stats.dropped += len(ids)
                log.error(
                    "ledger dropped %d call(s) after %s: request ids %s",
                    len(ids),
                    reason,
                    ", ".join(ids[:20]),
                )
            if shipped is not None:
                for marker in shipped.markers:
                    marker.resolve()
        if self._stopping:
            return
        code = await proc.wait()
        log.error(
            "the ledger writer process exited (status %s) with %d batch(es) unconfirmed; restarting it",
            code,
            len(self._unacked),
        )
        self._proc = None
        self._restarting = asyncio.ensure_future(self._restart())

    async def _restart(self) -> None:
        delay = 0.1
        while not self._stopping:
            self.restarts += 1
            try:
                await self._spawn()
                return
            except Exception as exc:
                self.stats.retries += 1
                log.error("the ledger writer process could not restart (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _give_up_shipped(self, shipped: _Shipped, reason: str) -> None:
        self.stats.dropped += shipped.calls
        log.error(
            "ledger dropped %d call(s): %s; request ids %s",
            shipped.calls,
            reason,
            ", ".join(str(c[_REQUEST_ID]) for c, _ in frames.decode(shipped.frame[frames.HEADER :])[2][:20]),
        )
        for marker in shipped.markers:
            marker.resolve()


async def _read(stream: asyncio.StreamReader) -> Any:
    try:
        header = await stream.readexactly(frames.HEADER)
        return frames.decode(await stream.readexactly(frames.payload_size(header)))
    except asyncio.IncompleteReadError:
        return None


# The child runs the same interpreter; the directory this fareway was imported from is appended to
# its path (never prepended, so it cannot shadow anything), for a gateway run from a source tree.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD_MAIN = (
    f"import sys; sys.path.append({_SOURCE_ROOT!r}); "
    "from fareway.ledger.sqlite_child import main; sys.exit(main(sys.argv[1:]))"
)
