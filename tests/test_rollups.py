"""The ledger's rollups: they equal the sums over the raw rows (random ledgers, re-sent
batches, pruning, the backfill of an existing ledger), and every aggregate query answers from
them what the raw-row queries answer (percentiles: within their histogram bucket)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.ledger import AttemptRecord, CallRecord, Ledger, queries
from fareway.ledger.rollup_queries import Piece, plan
from fareway.ledger.rollups import HIST_BOUNDS_MS, dims_key, hist_percentile
from fareway.ledger.sqlite_store import percentile_cont
from tests.rollup_reference import SPAN, T0, assert_same, calls, raw_rows, reference, stored_rollups

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
Records = list[tuple[CallRecord, list[AttemptRecord]]]


def slow(examples: int) -> Any:
    """Hypothesis settings for examples that each open a database."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _pg_ok() -> bool:
    async def probe() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


PG = _pg_ok()
needs_pg = pytest.mark.skipif(not PG, reason=f"PostgreSQL at {PG_URL} is unreachable")


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def run_ledger(backend: str, tmp: Path, fn: Callable[[Ledger], Awaitable[Any]], **kw: Any) -> Any:
    """``fn(ledger)`` on a fresh ledger of ``backend`` (``sqlite``: the writer thread;
    ``postgres``: a schema of its own, dropped afterwards), in a loop of its own."""

    async def go() -> Any:
        schema = f"fw_roll_{uuid.uuid4().hex[:12]}"
        url = PG_URL if backend == "postgres" else None
        writer = kw.pop("writer", "thread")
        path = tmp / f"{uuid.uuid4().hex[:8]}.db"
        ledger = Ledger.open(
            url, str(path), schema=schema, writer=writer, spool_path=str(tmp / "spool"), **kw
        )
        await ledger.start()
        try:
            return await fn(ledger)
        finally:
            await ledger.close()
            if backend == "postgres":
                await drop_schema(schema)

    return asyncio.run(go())


async def record_in_batches(ledger: Ledger, records: Records, cuts: list[int]) -> None:
    """Record ``records``, flushing at each index of ``cuts``: batches of random sizes."""
    for i, (call, atts) in enumerate(records):
        if i in cuts:
            await ledger.flush()
        ledger.record(call, atts)
    await ledger.flush()


async def check_rollups(ledger: Ledger) -> None:
    raw_calls, raw_atts = await raw_rows(ledger.store)
    assert_same(await stored_rollups(ledger.store), reference(raw_calls, raw_atts))


# ----------------------------------------------------------------------------- the pieces


def test_dims_key_is_unambiguous() -> None:
    assert dims_key([None]) != dims_key([""])
    assert dims_key(["a", "b"]) != dims_key(["ab", None]) != dims_key(["ab", ""])
    assert dims_key(["1:a"]) != dims_key(["1", "a"])
    assert dims_key([200, "ok"]) == "3:2002:ok"
    long = dims_key(["x" * 300])
    assert long.startswith("#") and len(long) == 65 and long != dims_key(["x" * 301])


_when = st.one_of(
    st.none(),
    st.integers(0, int(SPAN.total_seconds() * 1e6)).map(lambda us: T0 + timedelta(microseconds=us)),
)


@given(since=_when, until=_when, top=st.sampled_from([2, 3]), pruned=_when)
def test_plan_cuts_a_window_into_aligned_pieces_that_cover_it(
    since: datetime | None, until: datetime | None, top: int, pruned: datetime | None
) -> None:
    raw_from = None if pruned is None else pruned.replace(second=0, microsecond=0)
    pieces = plan(since, until, top, raw_from)
    if since is not None and until is not None and since >= until:
        assert pieces == []
        return
    span = {1: timedelta(minutes=1), 2: timedelta(hours=1), 3: timedelta(days=1)}
    for p in pieces:
        assert p.grain <= top
        if p.grain and p.lo is not None:
            assert (p.lo - datetime(2000, 1, 1, tzinfo=UTC)) % span[p.grain] == timedelta(0)
        if p.grain and p.hi is not None:
            assert (p.hi - datetime(2000, 1, 1, tzinfo=UTC)) % span[p.grain] == timedelta(0)
        if p.grain == 0:
            assert p.lo is not None and p.hi is not None and p.hi - p.lo < timedelta(minutes=2)
            assert raw_from is None or p.lo >= raw_from  # no raw piece in pruned history
        if p.grain == 1 and raw_from is not None:  # nor a minute piece where minute rollups are gone
            assert p.lo is not None and p.lo >= raw_from.replace(minute=0)
    ordered = sorted(pieces, key=lambda p: (p.lo is not None, p.lo or T0))
    for a, b in itertools.pairwise(ordered):
        assert a.hi is not None and a.hi == b.lo  # disjoint, no gap
    if not pieces:
        return
    assert (ordered[0].lo, ordered[-1].hi) == (snap(since, raw_from), snap(until, raw_from))


def snap(t: datetime | None, raw_from: datetime | None) -> datetime | None:
    """Where a bound in pruned history goes: the start of its minute while the minute rollups
    are there (from the hour of ``raw_from`` on), else of its hour."""
    if t is None or raw_from is None or t >= raw_from:
        return t
    if t >= raw_from.replace(minute=0):
        return t.replace(second=0, microsecond=0)
    return t.replace(minute=0, second=0, microsecond=0)


def test_plan_reads_a_week_from_few_rows() -> None:
    since = datetime(2026, 11, 20, 10, 15, 30, 500, tzinfo=UTC)
    assert plan(since, None) == [
        Piece(3, datetime(2026, 11, 21, tzinfo=UTC), None),
        Piece(2, datetime(2026, 11, 20, 11, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)),
        Piece(1, datetime(2026, 11, 20, 10, 16, tzinfo=UTC), datetime(2026, 11, 20, 11, tzinfo=UTC)),
        Piece(0, since, datetime(2026, 11, 20, 10, 16, tzinfo=UTC)),
    ]


def _bucket_range(v: float) -> tuple[float, float]:
    for i, bound in enumerate(HIST_BOUNDS_MS):
        if v <= bound:
            return (HIST_BOUNDS_MS[i - 1] if i else 0.0), bound
    return HIST_BOUNDS_MS[-1], float("inf")


@given(
    values=st.lists(st.floats(min_value=0.1, max_value=500_000, allow_nan=False), min_size=1, max_size=60),
    q=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
)
def test_histogram_percentiles_stay_in_the_bucket_of_the_true_one(values: list[float], q: float) -> None:
    counts = [0] * (len(HIST_BOUNDS_MS) + 1)
    for v in values:
        counts[sum(1 for b in HIST_BOUNDS_MS if v > b)] += 1
    got = hist_percentile(counts, q, min(values), max(values))
    assert got is not None
    ordered = sorted(values)
    rank = q * (len(values) - 1)
    lo_v, hi_v = ordered[int(rank)], ordered[min(int(rank) + 1, len(values) - 1)]
    lo = max(_bucket_range(lo_v)[0], min(values))
    hi = min(_bucket_range(hi_v)[1], max(values))
    assert lo - 1e-9 <= got <= hi + 1e-9
    if q in (0.0, 1.0) or len(set(values)) == 1:
        assert got == pytest.approx(percentile_cont(values, q))


# --------------------------------------------------------------- property: rollups == sums


async def same_answers(ledger: Ledger, windows: list[tuple[datetime | None, datetime | None]]) -> None:
    """Every aggregate the ledger answers (rollups) equals the raw-row query's answer."""
    store = ledger.store
    for since, until in windows:
        groups = (
            [], ["provider"], ["provider", "model"], ["key"], ["day"], ["key", "day", "model"],
            ["user"], ["tag"], ["tag", "day"], ["user", "tag"],
        )  # fmt: skip
        for group in groups:
            want = await queries.usage(store, since, until, group)  # type: ignore[arg-type]
            got = await ledger.usage(since, until, group)  # type: ignore[arg-type]
            assert got == want, (since, until, group)
        await by_user_and_tag_by_hand(ledger, since, until)
        for bucket in ("hour", "day"):
            for by in ("provider", "model", "key", None):
                want_s = await queries.spend_over_time(store, since, bucket, by, until)  # type: ignore[arg-type]
                got_s = await ledger.spend_over_time(since, bucket, by, until)  # type: ignore[arg-type]
                assert got_s == want_s, (since, until, bucket, by)
        want_l = await queries.latency_by_provider(store, since)
        got_l = await ledger.latency_by_provider(since)
        assert [(r.provider, r.attempts, r.errors, r.error_rate) for r in got_l] == [
            (r.provider, r.attempts, r.errors, r.error_rate) for r in want_l
        ]
        _, attempts = await raw_rows(store)
        for g in got_l:
            for what in ("latency", "ttft"):
                values = sorted(
                    v
                    for a in attempts
                    if a.provider == g.provider
                    and a.outcome == "ok"
                    and (since is None or a.started_at >= since)
                    for v in [a.latency_ms if what == "latency" else a.ttft_ms]
                    if v is not None
                )
                for q in (0.5, 0.9, 0.99):
                    got = getattr(g, f"{what}_p{round(q * 100)}_ms")
                    if not values:
                        assert got is None
                        continue
                    # between the bucket of the value at rank floor(q (n-1)) and that of the next
                    rank = q * (len(values) - 1)
                    lo_v, hi_v = values[int(rank)], values[min(int(rank) + 1, len(values) - 1)]
                    lo = max(_bucket_range(lo_v)[0], values[0])
                    hi = min(_bucket_range(hi_v)[1], values[-1])
                    assert lo - 1e-6 <= got <= hi + 1e-6, (g.provider, what, q, got, lo, hi)


async def by_user_and_tag_by_hand(ledger: Ledger, since: datetime | None, until: datetime | None) -> None:
    """group_by=user and group_by=tag (from the rollups) against sums over the raw rows done
    here: a call counts once under its user (None: no user), once under each of its tags
    (None: untagged)."""
    raw, _ = await raw_rows(ledger.store)
    inside = [c for c in raw if (since is None or c.time >= since) and (until is None or c.time < until)]
    by_user: dict[Any, list[Any]] = {}
    by_tag: dict[Any, list[Any]] = {}
    for c in inside:
        for key, into in [
            (c.user_id, by_user),
            *((t, by_tag) for t in (c.tags.split(",") if c.tags else [None])),
        ]:
            s = into.setdefault(key, [0, 0, Decimal(0)])
            s[0] += 1
            s[1] += c.input_tokens + c.output_tokens
            s[2] += c.cost or Decimal(0)
    got_u = await ledger.usage(since, until, ["user"])
    assert {r.user: [r.calls, r.input_tokens + r.output_tokens, r.cost] for r in got_u} == by_user
    got_t = await ledger.usage(since, until, ["tag"])
    assert {r.tag: [r.calls, r.input_tokens + r.output_tokens, r.cost] for r in got_t} == by_tag
    # the tag groups hold each tagged call once per tag, the untagged once
    assert sum(r.calls for r in got_t) == sum(len(c.tags.split(",")) if c.tags else 1 for c in inside)


_windows = st.lists(
    st.tuples(_when, _when).filter(lambda w: None in w or w[0] < w[1]), min_size=1, max_size=2
)


@slow(25)
@given(records=calls(), cuts=st.lists(st.integers(0, 40), max_size=4), windows=_windows)
def test_rollups_equal_the_sums_over_raw_rows_sqlite(
    tmp_path_factory: pytest.TempPathFactory, records: Records, cuts: list[int], windows: Any
) -> None:
    async def check(ledger: Ledger) -> None:
        await record_in_batches(ledger, records, cuts)
        await check_rollups(ledger)
        await same_answers(ledger, [(None, None), *windows])

    run_ledger("sqlite", tmp_path_factory.mktemp("roll"), check)


@needs_pg
@pytest.mark.postgres
@slow(10)
@given(records=calls(max_calls=25), cuts=st.lists(st.integers(0, 25), max_size=3), windows=_windows)
def test_rollups_equal_the_sums_over_raw_rows_postgres(
    tmp_path_factory: pytest.TempPathFactory, records: Records, cuts: list[int], windows: Any
) -> None:
    async def check(ledger: Ledger) -> None:
        await record_in_batches(ledger, records, cuts)
        await check_rollups(ledger)
        await same_answers(ledger, [(None, None), *windows])

    run_ledger("postgres", tmp_path_factory.mktemp("roll"), check)


# --------------------------------------------------------------------------- re-sent batches


@slow(8)
@given(records=calls(max_calls=30), size=st.integers(1, 8), data=st.data())
def test_a_resent_batch_is_counted_once_sqlite(
    tmp_path_factory: pytest.TempPathFactory, records: Records, size: int, data: st.DataObject
) -> None:
    """The writer process is sent every batch, then (as after a crash between commit and
    acknowledgement) a restarted one is sent some of them again: rows and rollups count once."""
    from fareway.ledger import frames
    from fareway.ledger.sqlite_process import _CHILD_MAIN
    from fareway.ledger.sqlite_store import _attempt_row_epoch, _call_row_epoch

    db = str(tmp_path_factory.mktemp("resend") / "l.db")
    batches = [
        (seq + 1, False, [(_call_row_epoch(c), [_attempt_row_epoch(a) for a in atts]) for c, atts in chunk])
        for seq, chunk in enumerate(records[i : i + size] for i in range(0, len(records), size))
    ]
    first = data.draw(st.integers(0, len(batches)))
    again = data.draw(st.lists(st.sampled_from(batches[:first]), max_size=3)) if first else []

    def session(*sent: tuple[Any, ...]) -> None:
        with subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, db, "w1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as p:
            assert p.stdin is not None and p.stdout is not None
            assert frames.read_frame(p.stdout)[0] == "ready"
            for b in sent:
                frames.write_frame(p.stdin, b)
                assert frames.read_frame(p.stdout)[0] == b[0]
            p.stdin.close()
            assert p.wait(30) == 0

    session(*batches[:first])
    session(*sorted(again, key=lambda b: b[0]), *batches[first:])

    async def check(ledger: Ledger) -> None:
        raw_calls, raw_atts = await raw_rows(ledger.store)
        assert len(raw_calls) == len(records)
        assert_same(await stored_rollups(ledger.store), reference(raw_calls, raw_atts))

    async def reopen() -> None:
        ledger = Ledger.open(None, db, writer="thread")
        await ledger.start()
        try:
            await check(ledger)
        finally:
            await ledger.close()

    asyncio.run(reopen())


@needs_pg
@pytest.mark.postgres
@slow(5)
@given(records=calls(max_calls=20))
def test_a_resent_batch_is_counted_once_postgres(
    tmp_path_factory: pytest.TempPathFactory, records: Records
) -> None:
    """A batch written again (its COMMIT's reply lost, or drained from the spool after it was
    written) is skipped with its rollups."""
    from fareway.ledger import pg_batch

    async def check(ledger: Ledger) -> None:
        store: Any = ledger.store
        batch = pg_batch.Batch.of("w-test", 1, records)
        conn = store._conn
        assert await pg_batch.write_whole(conn, store.schema, batch) is True
        assert await pg_batch.write_whole(conn, store.schema, batch) is False
        one = pg_batch.Batch.of("w-test", 2, records[:1])
        if records:
            assert await pg_batch.write_one(conn, store.schema, one, 0) is True
            assert await pg_batch.write_one(conn, store.schema, one, 0) is False
        raw_calls, raw_atts = await raw_rows(store)
        assert len(raw_calls) == len(records) + (1 if records else 0)
        assert_same(await stored_rollups(store), reference(raw_calls, raw_atts))

    run_ledger("postgres", tmp_path_factory.mktemp("resend"), check)


# ------------------------------------------------------------------------------- pruning

PRUNE_AT = T0 + timedelta(hours=13, minutes=7, seconds=30)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=[needs_pg, pytest.mark.postgres])]
)
@slow(6)
@given(records=calls(max_calls=40), windows=_windows)
def test_pruning_deletes_raw_rows_and_keeps_the_rollups(
    tmp_path_factory: pytest.TempPathFactory, backend: str, records: Records, windows: Any
) -> None:
    async def check(ledger: Ledger) -> None:
        await record_in_batches(ledger, records, [])
        raw_calls, raw_atts = await raw_rows(ledger.store)
        before = reference(raw_calls, raw_atts)
        # every answer before pruning, with a bound in pruned history moved (see snap)
        cut = PRUNE_AT.replace(second=0, microsecond=0)
        want = {
            w: await queries.usage(ledger.store, snap(w[0], cut), snap(w[1], cut), ["provider", "key"])
            for w in [(None, None), *windows]
        }
        now = PRUNE_AT + timedelta(days=3)
        calls_gone, _ = await ledger.prune(3, pause=0, now=now)
        assert calls_gone == sum(1 for c in raw_calls if c.time < cut)
        left_calls, left_atts = await raw_rows(ledger.store)
        assert all(c.time >= cut for c in left_calls) and all(a.started_at >= cut for a in left_atts)
        assert len(left_calls) == len(raw_calls) - calls_gone
        # the hour and day rollups are kept, the minute ones before the cut's hour are gone
        kept = {k: v for k, v in before.items() if k[1] > 1 or k[2] >= cut.replace(minute=0)}
        assert_same(await stored_rollups(ledger.store), kept)
        for w, rows in want.items():
            got = await ledger.usage(w[0], w[1], ["provider", "key"])
            assert got == rows, w
        assert await ledger.prune(3, pause=0, now=now) == (0, 0)  # nothing left to prune

    run_ledger(backend, tmp_path_factory.mktemp("prune"), check)


async def test_background_pruning_and_stats(tmp_path: Path) -> None:
    """``keep_calls_days`` prunes in the background at start; ``storage_stats`` sees it."""
    old = (datetime.now(UTC) - timedelta(days=10)).replace(second=5)  # 30 calls in one minute
    ledger = Ledger.open(None, str(tmp_path / "l.db"), writer="thread")
    await ledger.start()
    for i in range(30):
        call = CallRecord(request_id=f"old{i}", requested_model="m", time=old + timedelta(seconds=i))
        ledger.record(call, [AttemptRecord(f"old{i}", 0, "openai", "m", started_at=call.time)])
    ledger.record(CallRecord(request_id="new", requested_model="m"), [])
    await ledger.close()
    ledger = Ledger.open(None, str(tmp_path / "l.db"), writer="thread", keep_calls_days=7)
    await ledger.start()
    try:
        assert ledger._pruner is not None
        for _ in range(200):  # the pruner's first pass runs at start
            stats = await ledger.storage_stats()
            if stats["rows"]["calls"] == 1:
                break
            await asyncio.sleep(0.05)
        # the old minute rollups went with the raw rows; their hour and day rows stay
        assert stats["rows"] == {"calls": 1, "attempts": 0, "rollup_calls": 5, "rollup_attempts": 2}
        assert stats["oldest_call"] > (datetime.now(UTC) - timedelta(days=1)).isoformat()
        assert stats["pruned_before"] is not None and stats["auto_vacuum"] == "incremental"
        (total,) = await ledger.usage()
        assert total.calls == 31  # the rollups still count the pruned calls
    finally:
        await ledger.close()


# ------------------------------------------------------------------------------- backfill


def _rollup_rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
        for t in ("rollup_calls", "rollup_attempts")
    }


@slow(8)
@given(records=calls(max_calls=40))
def test_migration_backfills_an_existing_sqlite_ledger(
    tmp_path_factory: pytest.TempPathFactory, records: Records
) -> None:
    """A ledger written before the rollups existed (here: written without them, then the
    migration undone) gets, from migration 5, exactly the rollup rows the writer would have made."""
    tmp = tmp_path_factory.mktemp("backfill")

    async def write(path: Path, rollups: bool) -> None:
        ledger = Ledger.open(None, str(path), writer="thread", rollups=rollups)
        await ledger.start()
        await record_in_batches(ledger, records, [])
        await ledger.close()

    asyncio.run(write(tmp / "kept.db", True))
    asyncio.run(write(tmp / "old.db", False))
    conn = sqlite3.connect(tmp / "old.db", isolation_level=None)
    conn.execute("DROP TABLE rollup_calls")
    conn.execute("DROP TABLE rollup_attempts")
    conn.execute("DELETE FROM schema_version WHERE version = 5")
    conn.close()

    async def reopen() -> None:
        ledger = Ledger.open(None, str(tmp / "old.db"), writer="thread")
        await ledger.start()  # migrates: the backfill
        try:
            await check_rollups(ledger)
        finally:
            await ledger.close()

    asyncio.run(reopen())
    kept, old = sqlite3.connect(tmp / "kept.db"), sqlite3.connect(tmp / "old.db")
    try:
        want, got = _rollup_rows(kept), _rollup_rows(old)
        assert [len(v) for v in got.values()] == [len(v) for v in want.values()]
        for table in want:  # the same keys; the same values (money text may differ in form)
            for g, w in zip(got[table], want[table], strict=True):
                assert g[:3] == w[:3]
    finally:
        kept.close()
        old.close()


@needs_pg
@pytest.mark.postgres
@slow(5)
@given(records=calls(max_calls=30))
def test_migration_backfills_an_existing_postgres_ledger(
    tmp_path_factory: pytest.TempPathFactory, records: Records
) -> None:
    """As on SQLite; the dimension keys the SQL builds (lengths, unicode, hashes of long keys)
    are the ones the writer builds in Python."""
    import asyncpg

    tmp = tmp_path_factory.mktemp("backfill")

    async def go() -> None:
        kept, old = f"fw_bf_{uuid.uuid4().hex[:10]}", f"fw_bf_{uuid.uuid4().hex[:10]}"
        try:
            for schema, rollups in ((kept, True), (old, False)):
                ledger = Ledger.open(
                    PG_URL, str(tmp / "x.db"), schema=schema, rollups=rollups, spool_path=str(tmp / schema)
                )
                await ledger.start()
                await record_in_batches(ledger, records, [])
                await ledger.close()
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(
                    f'DROP TABLE "{old}".rollup_calls, "{old}".rollup_attempts; '
                    f'DELETE FROM "{old}".schema_version WHERE version = 5'
                )
            finally:
                await conn.close()
            ledger = Ledger.open(PG_URL, str(tmp / "x.db"), schema=old, spool_path=str(tmp / "again"))
            await ledger.start()  # migrates: the backfill
            try:
                await check_rollups(ledger)
            finally:
                await ledger.close()
            conn = await asyncpg.connect(PG_URL)
            try:
                for t in ("rollup_calls", "rollup_attempts"):
                    q = "SELECT grain, bucket, dims FROM {}.{} ORDER BY 1, 2, 3"
                    want = await conn.fetch(q.format(f'"{kept}"', t))
                    got = await conn.fetch(q.format(f'"{old}"', t))
                    assert [tuple(r) for r in got] == [tuple(r) for r in want]
            finally:
                await conn.close()
        finally:
            await drop_schema(kept)
            await drop_schema(old)

    asyncio.run(go())


# ------------------------------------------------------------------ adoption and its undo


async def test_adopted_and_replaced_calls_are_counted_once(tmp_path: Path) -> None:
    """A checkpoint adopted into a call row counts in the rollups; when the real rows of the
    same call arrive later (its writer was alive after all), the adopted one is taken out."""
    from fareway.ledger.inflight import SqliteAdopter, _sqlite_undo_adoption
    from fareway.ledger.sqlite_store import _attempt_row, _call_row, _connect

    path = str(tmp_path / "a.db")
    ledger = Ledger.open(None, path, writer="thread")
    await ledger.start()
    await ledger.close()
    conn = _connect(path)
    call = CallRecord(request_id="r1", requested_model="m", time=T0, provider="openai", upstream_model="m",
                      outcome="cancelled", output_tokens=40, cost=Decimal("0.5"))  # fmt: skip
    att = AttemptRecord("r1", 0, "openai", "m", outcome="cancelled", output_tokens=40, cost=Decimal("0.5"),
                        latency_ms=900.0, started_at=T0)  # fmt: skip
    from fareway.ledger.inflight import encode_rows

    conn.execute(
        "INSERT INTO inflight (request_id, writer, updated_at, output_tokens, rows) VALUES (?, ?, ?, ?, ?)",
        ("r1", "dead-writer", T0.isoformat(), 40, encode_rows(_call_row(call), [_attempt_row(att)])),
    )
    adopter = SqliteAdopter(path, "me")
    assert adopter.start(conn) == 1
    ledger = Ledger.open(None, path, writer="thread")
    await ledger.start()
    try:
        await check_rollups(ledger)
        (total,) = await ledger.usage()
        assert (total.calls, total.output_tokens, total.cost) == (1, 40, Decimal("0.5"))
        conn.execute("BEGIN")
        _sqlite_undo_adoption(conn, ["r1"])
        conn.execute("COMMIT")
        (total,) = await ledger.usage()
        assert (total.calls, total.output_tokens, total.cost) == (0, 0, Decimal(0))
        raw_calls, raw_atts = await raw_rows(ledger.store)
        assert raw_calls == [] and raw_atts == []
    finally:
        await ledger.close()
        adopter.close()
        conn.close()


@needs_pg
@pytest.mark.postgres
async def test_postgres_prune_and_stats(tmp_path: Path) -> None:
    schema = f"fw_roll_{uuid.uuid4().hex[:12]}"
    old = (datetime.now(UTC) - timedelta(days=10)).replace(second=5)
    ledger = Ledger.open(PG_URL, str(tmp_path / "x.db"), schema=schema, spool_path=str(tmp_path / "spool"))
    await ledger.start()
    try:
        for i in range(30):
            call = CallRecord(request_id=f"old{i}", requested_model="m", time=old + timedelta(seconds=i))
            ledger.record(call, [AttemptRecord(f"old{i}", 0, "openai", "m", started_at=call.time)])
        ledger.record(CallRecord(request_id="new", requested_model="m"), [])
        await ledger.flush()
        stats = await ledger.storage_stats()
        assert stats["rows"] == {"calls": 31, "attempts": 30, "rollup_calls": 6, "rollup_attempts": 3}
        assert datetime.fromisoformat(stats["oldest_call"]) == old
        assert stats["size_bytes"] > 0 and stats["pruned_before"] is None
        assert await ledger.prune(7, pause=0) == (30, 30)
        stats = await ledger.storage_stats()
        assert stats["rows"] == {"calls": 1, "attempts": 0, "rollup_calls": 5, "rollup_attempts": 2}
        assert datetime.fromisoformat(stats["pruned_before"]) > old
        (total,) = await ledger.usage()
        assert total.calls == 31
        await ledger.store.reclaim(full=True)  # type: ignore[attr-defined]
    finally:
        await ledger.close()
        await drop_schema(schema)


# ------------------------------------------------------------- migration 10: users and tags


def _split_records(records: Records) -> tuple[Records, Records]:
    """The first half as a ledger from before migration 10 holds them (no user, no tags)."""
    half = len(records) // 2
    for call, _ in records[:half]:
        call.user_id = call.tags = None
    return records[:half], records[half:]


async def _same_by_user_and_tag(ledger: Ledger) -> None:
    for group in (["user"], ["tag"], ["user", "tag", "day"], []):
        want = await queries.usage(ledger.store, None, None, group)  # type: ignore[arg-type]
        assert await ledger.usage(None, None, group) == want, group  # type: ignore[arg-type]
    await by_user_and_tag_by_hand(ledger, None, None)


@slow(6)
@given(records=calls(max_calls=30))
def test_migration_10_upgrades_an_existing_sqlite_ledger(
    tmp_path_factory: pytest.TempPathFactory, records: Records
) -> None:
    """A ledger at version 9 (calls and rollup_calls without user_id and tags, rollup keys
    without them) takes migration 10; old calls count under no user and no tag, new ones under
    theirs, and the rollups still equal the raw rows."""
    old, new = _split_records(records)
    path = tmp_path_factory.mktemp("v10") / "ledger.db"

    async def first() -> None:
        ledger = Ledger.open(None, str(path), writer="thread")
        await ledger.start()
        await record_in_batches(ledger, old, [])
        await ledger.close()

    asyncio.run(first())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM rollup_calls")  # rebuilt below with the old, shorter keys
    for table in ("calls", "rollup_calls"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN user_id")
        conn.execute(f"ALTER TABLE {table} DROP COLUMN tags")
    conn.execute("DELETE FROM schema_version WHERE version = 10")
    conn.close()

    async def second() -> None:
        ledger = Ledger.open(None, str(path), writer="thread")
        await ledger.start()  # migration 10
        try:
            await _same_by_user_and_tag(ledger)
            await record_in_batches(ledger, new, [len(new) // 2])
            await _same_by_user_and_tag(ledger)
        finally:
            await ledger.close()

    # the old calls' rollups as a version-9 writer keyed them (nine dimensions)
    from fareway.ledger import rollup_store
    from fareway.ledger.rollups import CALLS

    conn = sqlite3.connect(path, isolation_level=None)
    rollup_store.register_sqlite(conn)
    nine = tuple(d for d in CALLS.dims if d not in ("user_id", "tags"))
    v9 = dataclasses.replace(CALLS, dims=nine)
    for statement in rollup_store._sqlite_backfill_sql(v9):
        conn.execute(statement)
    conn.close()
    asyncio.run(second())


@needs_pg
@pytest.mark.postgres
@slow(4)
@given(records=calls(max_calls=25))
def test_migration_10_upgrades_an_existing_postgres_ledger(
    tmp_path_factory: pytest.TempPathFactory, records: Records
) -> None:
    """As on SQLite: a schema at version 9 takes migration 10 and answers by user and tag."""
    import asyncpg

    old, new = _split_records(records)
    tmp = tmp_path_factory.mktemp("v10pg")

    async def go() -> None:
        schema = f"fw_v10_{uuid.uuid4().hex[:10]}"
        try:
            ledger = Ledger.open(PG_URL, str(tmp / "x.db"), schema=schema, spool_path=str(tmp / "s1"))
            await ledger.start()
            await record_in_batches(ledger, old, [])
            await ledger.close()
            conn = await asyncpg.connect(PG_URL)
            try:
                for table in ("calls", "rollup_calls"):
                    await conn.execute(
                        f'ALTER TABLE "{schema}".{table} DROP COLUMN user_id, DROP COLUMN tags'
                    )
                await conn.execute(f'DELETE FROM "{schema}".schema_version WHERE version = 10')
            finally:
                await conn.close()
            ledger = Ledger.open(PG_URL, str(tmp / "x.db"), schema=schema, spool_path=str(tmp / "s2"))
            await ledger.start()  # migration 10
            try:
                await _same_by_user_and_tag(ledger)
                await record_in_batches(ledger, new, [len(new) // 2])
                await _same_by_user_and_tag(ledger)
            finally:
                await ledger.close()
        finally:
            await drop_schema(schema)

    asyncio.run(go())
