"""One Postgres ledger batch: its identity, its spool encoding, and its exactly-once write.

Identity.  Each store instance is a *writer* (a random id) numbering its batches 1, 2, 3, ...
(the *block*).  A batch is written in one transaction together with its sequence number in
``ledger_writer_state`` (one row per writer, migration 2), and only if that row says the number
is not committed yet; batches of one writer are committed in order.  So a batch sent again after
a COMMIT whose reply was lost (or drained from the spool after it had been written) finds its
number there and is acknowledged without writing anything: every batch is stored once.  The row
lock taken by the first statement also serialises a re-send with a stale transaction of the same
writer that the server has not yet given up on.

Numbers.  Block ``n`` owns the numbers ``n << 16 .. (n << 16) | 0xFFFF``.  The whole batch is
committed as the top one; when the database refuses a record, the batch is written one call at
a time instead, call ``k`` as ``(n << 16) + 1 + k`` (below the top, so a later whole-batch try of
the same block sees that a split was under way and carries it on instead).

Checkpoints (inflight.py) ride in the same numbered batches: a batch also carries the
checkpoints to upsert into ``inflight`` and the request ids of its calls whose inflight row is
deleted with them, all in its transaction; so a re-sent batch changes nothing there either.  A
checkpoint of a call settled in the same batch is dropped when the batch is made.  Written one
call at a time, the checkpoints take the number after the last call's, ``(n << 16) + 1 + calls``
(below the top: a batch holds at most MAX_BATCH items, checkpoints included).

Spool encoding: :mod:`marshal` of plain values (times as integer microseconds since the epoch,
money as decimal text), so a row read back from the spool is exactly the row that went in.
Format 2 adds the checkpoints and the settled ids; format 1 frames (no checkpoints) still read.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fareway.ledger.base import Checkpoint, QueueItem, log
from fareway.ledger.inflight import decode_rows, encode_rows
from fareway.ledger.records import (
    ATTEMPT_COLUMNS,
    CALL_COLUMNS,
    MONEY_COLUMNS,
    TIME_COLUMNS,
    attempt_values,
    call_values,
    upgrade_call_row,
)
from fareway.ledger.rollup_store import PG, apply_pg

BLOCK_BITS = 16
MAX_BATCH = (1 << BLOCK_BITS) - 2
"""Calls per batch at most (each needs a number of its own inside the block)."""

Values = tuple[Any, ...]
"""One row's column values, in the order of CALL_COLUMNS or ATTEMPT_COLUMNS."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_CALL_TIMES = tuple(i for i, c in enumerate(CALL_COLUMNS) if c in TIME_COLUMNS)
_CALL_MONEY = tuple(i for i, c in enumerate(CALL_COLUMNS) if c in MONEY_COLUMNS)
_ATT_TIMES = tuple(i for i, c in enumerate(ATTEMPT_COLUMNS) if c in TIME_COLUMNS)
_ATT_MONEY = tuple(i for i, c in enumerate(ATTEMPT_COLUMNS) if c in MONEY_COLUMNS)
_FORMAT = 2
CheckpointRow = tuple[str, int, str]
"""A checkpoint as written to ``inflight``: request id, output tokens, its rows as JSON text."""


@dataclass(slots=True)
class Batch:
    """Flat lists, as COPY takes them (and as few objects per call as possible: the collector
    walks every one of them while they wait)."""

    writer: str
    block: int
    call_rows: list[Values]
    attempt_rows: list[Values]
    counts: list[int]
    """Attempts per call (``attempt_rows`` holds them call after call)."""
    singles: bool = False
    """Written one call per transaction (the database refused a record of it)."""
    done: int = 0
    """With ``singles``: calls before this index are settled (written, or refused and counted)."""
    own: bool = True
    """Recorded by this process (else adopted from an earlier run's spool)."""
    checkpoints: list[CheckpointRow] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    """Request ids of calls of this batch whose inflight row is deleted with them."""
    calls: int = field(init=False)
    attempts: int = field(init=False)

    def __post_init__(self) -> None:
        self.calls = len(self.call_rows)
        self.attempts = len(self.attempt_rows)

    @classmethod
    def of(cls, writer: str, block: int, items: list[QueueItem]) -> Batch:
        return cls(
            writer,
            block,
            [call_values(c) for c, _ in items],
            [attempt_values(a) for _, atts in items for a in atts],
            [len(atts) for _, atts in items],
        )

    @classmethod
    def mixed(cls, writer: str, block: int, items: list[QueueItem | Checkpoint]) -> Batch:
        """A batch of calls, settled calls (:class:`~fareway.ledger.base.Settle`) and checkpoints."""
        calls: list[QueueItem] = []
        settled: list[str] = []
        latest: dict[str, Checkpoint] = {}
        for it in items:
            if isinstance(it, Checkpoint):
                latest[it.call.request_id] = it
            else:
                calls.append(it)
                if type(it) is not tuple:  # a Settle
                    settled.append(it[0].request_id)
        for rid in settled:  # settled here: its checkpoint would only be deleted again
            latest.pop(rid, None)
        batch = cls.of(writer, block, calls)
        batch.settled = settled
        batch.checkpoints = [_checkpoint_row(cp) for cp in latest.values()]
        return batch

    def one(self, k: int) -> tuple[list[Values], list[Values]]:
        """Call ``k``'s row and its attempts' rows."""
        start = sum(self.counts[:k])
        return self.call_rows[k : k + 1], self.attempt_rows[start : start + self.counts[k]]

    @property
    def seq(self) -> int:
        """The number committed with the whole batch."""
        return (self.block << BLOCK_BITS) | ((1 << BLOCK_BITS) - 1)

    @property
    def first(self) -> int:
        """The block's lowest number: a committed number at or above it means work on this block
        has started."""
        return self.block << BLOCK_BITS

    def single_seq(self, k: int) -> int:
        """Call ``k``'s number; ``k == calls`` is the checkpoints' (when written one by one)."""
        return (self.block << BLOCK_BITS) + 1 + k

    @property
    def parts(self) -> int:
        """Transactions when written one call at a time (the checkpoints take one more)."""
        return self.calls + (1 if self.checkpoints else 0)

    def request_ids(self, limit: int = 20) -> str:
        rid = CALL_COLUMNS.index("request_id")
        return ", ".join(str(c[rid]) for c in self.call_rows[:limit])


# ------------------------------------------------------------------------ spool encoding


def _enc(values: tuple[Any, ...], times: tuple[int, ...], money: tuple[int, ...]) -> list[Any]:
    out = list(values)
    for i in times:
        t = out[i]
        if t is not None:
            out[i] = ((t if t.tzinfo is not None else t.replace(tzinfo=UTC)) - _EPOCH) // _US
    for i in money:
        if out[i] is not None:
            out[i] = str(out[i])
    return out


def _dec(values: list[Any], times: tuple[int, ...], money: tuple[int, ...]) -> tuple[Any, ...]:
    for i in times:
        if values[i] is not None:
            values[i] = _EPOCH + values[i] * _US
    for i in money:
        if values[i] is not None:
            values[i] = Decimal(values[i])
    return tuple(values)


def _checkpoint_row(cp: Checkpoint) -> CheckpointRow:
    call = _enc(call_values(cp.call), _CALL_TIMES, _CALL_MONEY)
    attempts = [_enc(attempt_values(a), _ATT_TIMES, _ATT_MONEY) for a in cp.attempts]
    return cp.call.request_id, cp.call.output_tokens, encode_rows(call, attempts)


def decode_checkpoint(text: str) -> tuple[Values, list[Values]]:
    """A checkpoint's rows as :func:`_copy` takes them (from ``inflight.rows``)."""
    call, attempts = decode_rows(text)
    return _dec(call, _CALL_TIMES, _CALL_MONEY), [_dec(a, _ATT_TIMES, _ATT_MONEY) for a in attempts]


def encode(batch: Batch) -> bytes:
    calls = [_enc(c, _CALL_TIMES, _CALL_MONEY) for c in batch.call_rows]
    attempts = [_enc(a, _ATT_TIMES, _ATT_MONEY) for a in batch.attempt_rows]
    return marshal.dumps(
        (
            _FORMAT,
            batch.writer,
            batch.block,
            batch.singles,
            calls,
            attempts,
            batch.counts,
            [list(c) for c in batch.checkpoints],
            batch.settled,
        )
    )


def decode(payload: bytes, own_writer: str) -> Batch:
    fmt, writer, block, singles, calls, attempts, counts, *inflight = marshal.loads(payload)
    if fmt not in (1, _FORMAT) or len(inflight) != (0 if fmt == 1 else 2):
        raise ValueError(f"unknown ledger spool frame format {fmt!r}")
    if len(counts) != len(calls) or sum(counts) != len(attempts):
        raise ValueError("ledger spool frame: attempt counts do not match")
    checkpoints, settled = inflight if inflight else ([], [])
    return Batch(
        writer,
        block,
        [_dec(upgrade_call_row(c), _CALL_TIMES, _CALL_MONEY) for c in calls],
        [_dec(a, _ATT_TIMES, _ATT_MONEY) for a in attempts],
        list(counts),
        singles=singles,
        own=writer == own_writer,
        checkpoints=[(str(r), int(n), str(t)) for r, n, t in checkpoints],
        settled=[str(r) for r in settled],
    )


# ------------------------------------------------------------------------ the write


def _claim_sql(schema: str) -> str:
    """Record ``$2`` as ``$1``'s last committed number unless a number at or above ``$3`` is
    already there; a row comes back only when the claim took (the batch is to be written)."""
    table = f"{quote_ident(schema)}.ledger_writer_state"
    return (
        f"INSERT INTO {table} AS s (writer, seq) VALUES ($1, $2) "
        "ON CONFLICT (writer) DO UPDATE SET seq = EXCLUDED.seq WHERE s.seq < $3 RETURNING 1"
    )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SplitUnderWay(Exception):
    """A whole-batch write found that this block was being written one call at a time."""


async def write_whole(conn: Any, schema: str, batch: Batch, rollups: bool = True) -> bool:
    """Write ``batch`` in one transaction.  True if written now, False if it was already
    committed (a re-send).  Raises :class:`SplitUnderWay` if a one-call-at-a-time write of it
    had started; database errors propagate (the transaction is rolled back)."""
    async with conn.transaction():
        claimed = await conn.fetchval(_claim_sql(schema), batch.writer, batch.seq, batch.first)
        if claimed is None:
            last = await conn.fetchval(
                f"SELECT seq FROM {quote_ident(schema)}.ledger_writer_state WHERE writer = $1",
                batch.writer,
            )
            if last is not None and last < batch.seq:
                raise SplitUnderWay(batch.seq)
            return False
        if batch.checkpoints or batch.settled:
            await inflight_ops(conn, schema, batch.writer, batch.checkpoints, batch.settled)
        await _copy(conn, schema, batch.call_rows, batch.attempt_rows, rollups)
    return True


async def write_one(conn: Any, schema: str, batch: Batch, k: int, rollups: bool = True) -> bool:
    """Write call ``k`` of ``batch`` alone (see :func:`write_whole`); ``k == batch.calls``: its
    checkpoints."""
    seq = batch.single_seq(k)
    async with conn.transaction():
        if await conn.fetchval(_claim_sql(schema), batch.writer, seq, seq) is None:
            return False
        if k == batch.calls:
            await inflight_ops(conn, schema, batch.writer, batch.checkpoints, [])
            return True
        calls, attempts = batch.one(k)
        if batch.settled:
            rid = str(calls[0][CALL_COLUMNS.index("request_id")])
            if rid in batch.settled:
                await inflight_ops(conn, schema, batch.writer, [], [rid])
        await _copy(conn, schema, calls, attempts, rollups)
    return True


async def inflight_ops(
    conn: Any, schema: str, writer: str, checkpoints: list[CheckpointRow], settled: list[str]
) -> None:
    """Inside a batch's transaction, before its calls are copied: delete the settled calls'
    inflight rows (undoing an adoption where one happened: inflight.py) and upsert the
    checkpoints."""
    t = quote_ident(schema)
    if settled:
        gone = await conn.fetch(
            f"DELETE FROM {t}.inflight WHERE request_id = ANY($1::text[]) RETURNING request_id", settled
        )
        missing = set(settled).difference(r[0] for r in gone)
        if missing:
            found = await conn.fetch(
                f"DELETE FROM {t}.inflight_adopted WHERE request_id = ANY($1::text[]) RETURNING request_id, call_id",
                list(missing),
            )
            if found:
                back = [r[0] for r in found]
                calls = await conn.fetch(
                    f"DELETE FROM {t}.calls WHERE id = ANY($1::bigint[]) RETURNING {', '.join(CALL_COLUMNS)}",
                    [r[1] for r in found],
                )
                atts = await conn.fetch(
                    f"DELETE FROM {t}.attempts WHERE request_id = ANY($1::text[]) "
                    f"RETURNING {', '.join(ATTEMPT_COLUMNS)}",
                    back,
                )
                # counted again by their real rows: take the adopted ones out of the rollups
                await apply_pg(conn, schema, PG.deltas().add(calls, atts, sign=-1))
                log.warning(
                    "ledger: %d call(s) adopted from this writer's checkpoints while it was alive were "
                    "replaced by their real rows: request ids %s",
                    len(back),
                    ", ".join(back[:20]),
                )
    if checkpoints:
        await conn.executemany(
            f"INSERT INTO {t}.inflight (request_id, writer, updated_at, output_tokens, rows) "
            "VALUES ($1, $2, now(), $3, $4) ON CONFLICT (request_id) DO UPDATE SET writer = EXCLUDED.writer, "
            "updated_at = EXCLUDED.updated_at, output_tokens = EXCLUDED.output_tokens, rows = EXCLUDED.rows",
            [(rid, writer, out, rows) for rid, out, rows in checkpoints],
        )


async def _copy(
    conn: Any, schema: str, calls: list[Values], attempts: list[Values], rollups: bool = True
) -> None:
    """The rows, and (``rollups``) their rollups (rollup_store.py), in the caller's transaction."""
    await conn.copy_records_to_table("calls", records=calls, columns=CALL_COLUMNS, schema_name=schema)
    if attempts:
        await conn.copy_records_to_table(
            "attempts", records=attempts, columns=ATTEMPT_COLUMNS, schema_name=schema
        )
    if rollups:
        await apply_pg(conn, schema, PG.deltas().add(calls, attempts))


async def forget_writers(conn: Any, schema: str, writers: list[str]) -> None:
    """Drop the state rows of writers whose batches are all committed and none spooled."""
    await conn.execute(
        f"DELETE FROM {quote_ident(schema)}.ledger_writer_state WHERE writer = ANY($1::text[])", writers
    )
