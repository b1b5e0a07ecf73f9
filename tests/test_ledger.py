"""The ledger on both backends: migrations, nothing lost, exact money, the named queries."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.ledger import AttemptRecord, CallRecord, Ledger, PriceBook, queries, rollup
from fareway.ledger.migrations import PG_MIGRATIONS, SQLITE_MIGRATIONS, migrate_sqlite
from fareway.ledger.records import CALL_COLUMNS
from fareway.ledger.sqlite_store import percentile_cont
from fareway.types import Usage

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)

Factory = Callable[..., Ledger]


async def _pg_reachable() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_URL, timeout=3)
    except Exception as exc:  # unreachable server, auth, missing database
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(
    params=["sqlite-process", "sqlite-thread", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    backend = request.param
    schema = f"fw_test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        reason = await _pg_reachable()
        if reason is not None:
            pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    opened: list[Ledger] = []

    def factory(**kw: Any) -> Ledger:
        url = PG_URL if backend == "postgres" else None
        if backend.startswith("sqlite-"):
            kw.setdefault("writer", backend.removeprefix("sqlite-"))
        ledger = Ledger.open(url, str(tmp_path / "data" / "fareway.db"), schema=schema, **kw)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        await ledger.close()
    if backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def started(factory: Factory, **kw: Any) -> Ledger:
    ledger = factory(**kw)
    await ledger.start()
    return ledger


def make_call(
    i: int,
    *,
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    key: str | None = "k1",
    when: datetime = T0,
    cost: Decimal | None = Decimal("0.001"),
    outcome: str = "ok",
    n_attempts: int = 1,
) -> tuple[CallRecord, list[AttemptRecord]]:
    rid = f"req-{i:06d}"
    attempts = [
        AttemptRecord(
            request_id=rid,
            attempt_no=j,
            provider=provider,
            model=model,
            outcome="ok" if j == n_attempts - 1 else "error",
            role="primary" if j == 0 else "fallback",
            status=200 if j == n_attempts - 1 else 503,
            error=None if j == n_attempts - 1 else "upstream 503",
            input_tokens=100 if j == n_attempts - 1 else 0,
            output_tokens=10 if j == n_attempts - 1 else 0,
            cost=cost if j == n_attempts - 1 else Decimal(0),
            latency_ms=50.0 + j,
            ttft_ms=20.0 + j,
            started_at=when + timedelta(milliseconds=j),
        )
        for j in range(n_attempts)
    ]
    call = CallRecord(
        request_id=rid,
        requested_model=model,
        time=when,
        key_id=key,
        key_name=None if key is None else f"name-{key}",
        provider=provider,
        upstream_model=model,
        outcome=outcome,  # type: ignore[arg-type]
        status=200 if outcome == "ok" else 502,
        input_tokens=100,
        output_tokens=10,
        cost=cost,
        attempts=n_attempts,
        latency_ms=60.0,
        route=f"{provider}/{model}",
    )
    return call, attempts


async def count(ledger: Ledger, table: str) -> int:
    rows = await ledger.store.fetch(f"SELECT COUNT(*) FROM {table}", [])
    return int(rows[0][0])


# ------------------------------------------------------------------------------ lifecycle


async def test_migrations_are_idempotent(make_ledger: Factory) -> None:
    first = await started(make_ledger)
    await first.close()
    second = await started(make_ledger)
    versions = [v for v, _, _ in SQLITE_MIGRATIONS]
    latest = max(versions)
    assert [v for v, _, _ in PG_MIGRATIONS] == versions  # both backends at the same schema version
    assert getattr(second.store, "schema_version", None) == latest
    rows = await second.store.fetch("SELECT version FROM schema_version ORDER BY version", [])
    assert [r[0] for r in rows] == sorted(versions)
    assert await count(second, "calls") == 0


def test_sqlite_migration_function_twice(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    latest = max(v for v, _, _ in SQLITE_MIGRATIONS)
    assert migrate_sqlite(conn) == latest
    assert migrate_sqlite(conn) == latest
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(SQLITE_MIGRATIONS)
    conn.close()


async def test_two_thousand_records_at_full_speed_nothing_lost(make_ledger: Factory) -> None:
    ledger = await started(make_ledger, batch_size=200)
    expected_attempts = 0
    for i in range(2000):
        call, attempts = make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(seconds=i))
        expected_attempts += len(attempts)
        ledger.record(call, attempts)
    assert ledger.stats.enqueued == 2000
    await ledger.close()
    assert ledger.stats.written == 2000
    assert ledger.stats.attempts_written == expected_attempts
    assert ledger.stats.dropped == 0 and ledger.stats.queued == 0

    reopened = await started(make_ledger)
    assert await count(reopened, "calls") == 2000
    assert await count(reopened, "attempts") == expected_attempts
    ids = await reopened.store.fetch("SELECT COUNT(DISTINCT request_id) FROM calls", [])
    assert ids[0][0] == 2000


async def test_flush_makes_everything_recorded_visible(make_ledger: Factory) -> None:
    ledger = await started(make_ledger, max_delay=5.0)  # a long batch window: flush must not wait it out
    for i in range(37):
        ledger.record(*make_call(i))
    await ledger.flush()
    assert await count(ledger, "calls") == 37
    assert ledger.stats.queued == 0


async def test_record_on_a_closed_ledger_is_refused(make_ledger: Factory) -> None:
    ledger = await started(make_ledger)
    await ledger.close()
    with pytest.raises(RuntimeError):
        ledger.record(*make_call(1))
    unstarted = make_ledger()
    with pytest.raises(RuntimeError):
        unstarted.record(*make_call(2))


async def test_a_refused_record_is_counted_not_silent(
    make_ledger: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = await started(make_ledger)
    good_before, good_after = make_call(1), make_call(3)
    bad_call, bad_attempts = make_call(2)
    bad_call.requested_model = None  # type: ignore[assignment]  # violates NOT NULL
    ledger.record(*good_before)
    ledger.record(bad_call, bad_attempts)
    ledger.record(*good_after)
    await ledger.flush()
    assert ledger.stats.dropped == 1
    assert ledger.stats.written == 2
    assert await count(ledger, "calls") == 2
    assert "req-000002" in caplog.text


async def test_saturation_is_signalled_and_nothing_dropped(make_ledger: Factory) -> None:
    ledger = await started(make_ledger, capacity=10)
    held: list[Any] = []
    real_submit = ledger.store.submit
    ledger.store.submit = held.append  # type: ignore[method-assign,assignment]  # a database that is not keeping up
    for i in range(25):
        ledger.record(*make_call(i))
    assert ledger.saturated
    assert ledger.stats.queued == 25
    ledger.store.submit = real_submit  # type: ignore[method-assign]
    for item in held:
        real_submit(item)
    await ledger.wait_capacity()
    await ledger.flush()
    assert not ledger.saturated
    assert ledger.stats.written == 25 and ledger.stats.dropped == 0


# ------------------------------------------------------------------------------ money


async def test_decimal_cost_round_trips_exactly(make_ledger: Factory) -> None:
    ledger = await started(make_ledger)
    values = [
        Decimal("0.000000123456789012345678"),
        Decimal("12345678.901234567890123"),
        Decimal("0.1") + Decimal("0.2"),
        Decimal(0),
    ]
    book = PriceBook()
    usage = Usage(input_tokens=123_457, cached_input_tokens=1_000, cache_write_tokens=7, output_tokens=999)
    priced = book.price("anthropic", "claude-haiku-4-5", usage)
    assert priced is not None
    for i, v in enumerate(values):
        call, attempts = make_call(i, cost=v)
        call.cost_saved = v / 3
        attempts[0].set_usage(usage, priced)
        ledger.record(call, attempts)
    unknown_call, unknown_attempts = make_call(99, cost=None)
    ledger.record(unknown_call, unknown_attempts)
    await ledger.flush()
    got = {lc.call.request_id: lc for lc in await ledger.recent_calls(10)}
    for i, v in enumerate(values):
        lc = got[f"req-{i:06d}"]
        assert lc.call.cost == v
        assert lc.call.cost_saved == v / 3
        a = lc.attempts[0]
        assert (
            a.cost,
            a.cost_input,
            a.cost_cached_input,
            a.cost_cache_write,
            a.cost_output,
            a.cost_reasoning,
        ) == (
            priced.total,
            priced.input,
            priced.cached_input,
            priced.cache_write,
            priced.output,
            priced.reasoning,
        )
        assert (a.input_tokens, a.cached_input_tokens, a.cache_write_tokens) == (123_457, 1_000, 7)
    assert got["req-000099"].call.cost is None
    total = (await ledger.usage())[0]
    with localcontext(prec=80):  # sums are exact in both backends, past the default 28 digits
        assert total.cost == sum(values, Decimal(0))
        assert total.cost_saved == sum((v / 3 for v in values), Decimal(0))
    assert total.unknown_cost_calls == 1


def test_rollup_sums_attempts_and_keeps_unknown_unknown() -> None:
    call, attempts = make_call(1, n_attempts=3, cost=Decimal("0.25"))
    attempts[0].cost = Decimal("0.01")
    attempts[0].input_tokens = 5
    rollup(call, attempts, "genai-prices x")
    assert call.cost == Decimal("0.26") and call.input_tokens == 105 and call.attempts == 3
    assert call.price_source == "genai-prices x"
    attempts[1].cost, attempts[1].output_tokens = None, 3
    assert rollup(call, attempts).cost is None
    attempts[1].output_tokens = 0  # an unpriced attempt that consumed nothing costs nothing
    assert rollup(call, attempts).cost == Decimal("0.26")


# ------------------------------------------------------------------------------ queries


async def seeded(make_ledger: Factory) -> Ledger:
    ledger = await started(make_ledger)
    day2 = T0 + timedelta(days=1)
    rows = [
        make_call(1, provider="openai", model="gpt-4o-mini", key="k1", cost=Decimal("0.10")),
        make_call(
            2, provider="openai", model="gpt-4o", key="k1", cost=Decimal("0.20"), when=T0 + timedelta(hours=1)
        ),
        make_call(3, provider="groq", model="llama", key="k2", cost=Decimal("0.05"), n_attempts=2),
        make_call(4, provider="groq", model="llama", key="k2", cost=None, outcome="error", when=day2),
        make_call(5, provider="anthropic", model="haiku", key=None, cost=Decimal("1.5"), when=day2),
    ]
    cache_hit, _ = make_call(6, provider="openai", model="gpt-4o-mini", key="k1", cost=Decimal(0), when=day2)
    cache_hit.outcome, cache_hit.cache, cache_hit.cost_saved, cache_hit.attempts = (
        "cache_hit",
        "hit",
        Decimal("0.1"),
        0,
    )
    for call, attempts in rows:
        ledger.record(call, attempts)
    ledger.record(cache_hit, [])
    await ledger.flush()
    return ledger


async def test_usage_totals_and_grouping(make_ledger: Factory) -> None:
    ledger = await seeded(make_ledger)
    (total,) = await ledger.usage()
    assert (total.calls, total.errors, total.unknown_cost_calls) == (6, 1, 1)
    assert total.cost == Decimal("1.85") and total.cost_saved == Decimal("0.1")
    assert (total.input_tokens, total.output_tokens) == (600, 60)

    by_provider = {r.provider: r for r in await ledger.usage(group_by=["provider"])}
    assert list(by_provider) == ["anthropic", "groq", "openai"]
    assert by_provider["openai"].calls == 3 and by_provider["openai"].cost == Decimal("0.30")
    assert by_provider["groq"].errors == 1 and by_provider["groq"].unknown_cost_calls == 1
    assert by_provider["groq"].cost == Decimal("0.05")

    by_key = await ledger.usage(group_by=["key"])
    assert [(r.key_id, r.key_name, r.calls) for r in by_key] == [
        (None, None, 1),
        ("k1", "name-k1", 3),
        ("k2", "name-k2", 2),
    ]
    by_day = await ledger.usage(group_by=["day"])
    assert [(r.day, r.calls, r.cost) for r in by_day] == [
        (date(2026, 11, 20), 3, Decimal("0.35")),
        (date(2026, 11, 21), 3, Decimal("1.5")),
    ]
    pm = await ledger.usage(group_by=["provider", "model"])
    assert [(r.provider, r.model, r.calls) for r in pm] == [
        ("anthropic", "haiku", 1),
        ("groq", "llama", 2),
        ("openai", "gpt-4o", 1),
        ("openai", "gpt-4o-mini", 2),
    ]
    only_k2 = await ledger.usage(group_by=["day"], key_id="k2")
    assert [(r.day, r.calls) for r in only_k2] == [(date(2026, 11, 20), 1), (date(2026, 11, 21), 1)]
    windowed = await ledger.usage(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert windowed[0].calls == 1 and windowed[0].cost == Decimal("0.20")
    with pytest.raises(ValueError):
        await ledger.usage(group_by=["color"])  # type: ignore[list-item]


async def test_recent_calls_with_attempts_and_filters(make_ledger: Factory) -> None:
    ledger = await seeded(make_ledger)
    recent = await ledger.recent_calls(3)
    assert [lc.call.request_id for lc in recent] == ["req-000006", "req-000005", "req-000004"]
    assert recent[0].attempts == [] and recent[0].call.cache == "hit"
    groq = await ledger.recent_calls(10, model="llama")
    assert [lc.call.request_id for lc in groq] == ["req-000004", "req-000003"]
    atts = groq[1].attempts
    assert [(a.attempt_no, a.outcome, a.role, a.status) for a in atts] == [
        (0, "error", "primary", 503),
        (1, "ok", "fallback", 200),
    ]
    assert atts[1].started_at == T0 + timedelta(milliseconds=1)
    assert groq[1].call.time == T0 and groq[1].call.stream is False
    k1 = await ledger.recent_calls(10, key_id="k1")
    assert {lc.call.request_id for lc in k1} == {"req-000001", "req-000002", "req-000006"}


async def test_latency_by_provider_percentiles(make_ledger: Factory) -> None:
    ledger = await started(make_ledger)
    latencies = [12.0, 30.5, 7.25, 100.0, 55.0, 41.0, 3.0]
    for i, lat in enumerate(latencies):
        call, attempts = make_call(i, provider="p1")
        attempts[0].latency_ms, attempts[0].ttft_ms = lat, lat / 2
        ledger.record(call, attempts)
    err, err_attempts = make_call(50, provider="p1", outcome="error")
    err_attempts[0].outcome, err_attempts[0].latency_ms = "error", 9999.0  # not in the latency percentiles
    ledger.record(err, err_attempts)
    skipped, skipped_attempts = make_call(51, provider="p1")
    skipped_attempts[0].outcome = "skipped"  # not counted at all
    ledger.record(skipped, skipped_attempts)
    await ledger.flush()
    # from the raw rows: exact percentile_cont
    (p1,) = await queries.latency_by_provider(ledger.store, since=T0 - timedelta(hours=1))
    assert (p1.provider, p1.attempts, p1.errors) == ("p1", 8, 1)
    assert p1.error_rate == pytest.approx(1 / 8)
    for q, got in ((0.5, p1.latency_p50_ms), (0.9, p1.latency_p90_ms), (0.99, p1.latency_p99_ms)):
        assert got == pytest.approx(percentile_cont(latencies, q), rel=1e-12)
    assert p1.latency_p50_ms == 30.5
    assert p1.ttft_p90_ms == pytest.approx(percentile_cont([v / 2 for v in latencies], 0.9), rel=1e-12)
    # what the ledger answers (from the rollups' histograms): the same counts, and each
    # percentile inside the histogram bucket(s) of the exact one (sorted: 3, 7.25, 12, 30.5, ...)
    (r1,) = await ledger.latency_by_provider(since=T0 - timedelta(hours=1))
    assert (r1.provider, r1.attempts, r1.errors, r1.error_rate) == ("p1", 8, 1, p1.error_rate)
    assert r1.latency_p50_ms is not None and 25 <= r1.latency_p50_ms <= 50  # 30.5 is in (25, 50]
    assert r1.latency_p99_ms is not None and 75 <= r1.latency_p99_ms <= 100  # 100 is the largest
    assert r1.ttft_p50_ms is not None and 10 <= r1.ttft_p50_ms <= 25  # 15.25 is in (10, 25]
    assert await ledger.latency_by_provider(since=T0 + timedelta(days=1)) == []


async def test_spend_over_time(make_ledger: Factory) -> None:
    ledger = await seeded(make_ledger)
    hourly = await ledger.spend_over_time(since=T0 - timedelta(hours=1), bucket="hour", by="provider")
    got = [(s.bucket, s.group, s.cost, s.unknown_cost) for s in hourly]
    h10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    h10d2 = datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert got == [
        (h10, "groq", Decimal("0.05"), 0),
        (h10, "openai", Decimal("0.10"), 0),
        (h10 + timedelta(hours=1), "openai", Decimal("0.20"), 0),
        (h10d2, "anthropic", Decimal("1.5"), 0),
        (h10d2, "groq", Decimal(0), 1),
    ]
    daily_keys = await ledger.spend_over_time(bucket="day", by="key")
    assert [(s.bucket.date(), s.group, s.cost) for s in daily_keys] == [
        (date(2026, 11, 20), "k1", Decimal("0.30")),
        (date(2026, 11, 20), "k2", Decimal("0.05")),
        (date(2026, 11, 21), None, Decimal("1.5")),
        (date(2026, 11, 21), "k1", Decimal(0)),
        (date(2026, 11, 21), "k2", Decimal(0)),
    ]
    overall = await ledger.spend_over_time(bucket="day", by=None)
    assert [(s.group, s.cost) for s in overall] == [(None, Decimal("0.35")), (None, Decimal("1.5"))]
    by_model = await ledger.spend_over_time(bucket="day", by="model", until=T0 + timedelta(days=1))
    assert {s.group: s.cost for s in by_model} == {
        "gpt-4o-mini": Decimal("0.10"),
        "gpt-4o": Decimal("0.20"),
        "llama": Decimal("0.05"),
    }


async def test_export_csv(make_ledger: Factory) -> None:
    ledger = await seeded(make_ledger)
    text = await ledger.export_csv(key_id="k1")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0].keys()) == list(CALL_COLUMNS)
    assert [r["request_id"] for r in rows] == ["req-000001", "req-000002", "req-000006"]
    assert [r["cost"] for r in rows][:2] == ["0.10", "0.20"]
    assert rows[0]["time"] == T0.isoformat()
    assert rows[2]["cost_saved"] == "0.1" and rows[2]["cache"] == "hit"
    everything = await ledger.export_csv(since=T0, until=T0 + timedelta(days=2))
    assert everything.count("\n") == 7


def test_open_picks_the_backend(tmp_path: Path) -> None:
    from fareway.ledger.postgres_store import PostgresStore
    from fareway.ledger.sqlite_store import SqliteStore

    assert isinstance(Ledger.open(None, str(tmp_path / "a.db")).store, SqliteStore)
    s = Ledger.open(f"sqlite:///{tmp_path}/b.db").store
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/b.db"
    assert isinstance(Ledger.open("postgresql://u@h/db").store, PostgresStore)
    with pytest.raises(ValueError):
        Ledger.open("mysql://x")


_CRASHER = """
import asyncio, os, sys
from datetime import timedelta
sys.path.insert(0, {tests!r})
from test_ledger import T0, make_call
from fareway.ledger import Ledger

async def main() -> None:
    ledger = Ledger.open(None, {db!r}, batch_size=7)
    await ledger.start()
    for i in range(300):
        ledger.record(*make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(seconds=i)))
    await ledger.flush()
    for i in range(300, 600):
        ledger.record(*make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(seconds=i)))
    {before_exit}
    os._exit(0)  # die without close(): the unflushed calls may be lost, nothing else

asyncio.run(main())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="watches the orphaned writer through /proc")
def test_a_crash_of_the_gateway_loses_nothing_the_writer_process_received(tmp_path: Path) -> None:
    """The writer process outlives a gateway killed without close(): every call shipped to it
    (here: all of them, the last ones after max_delay) is written once, with all its attempts."""
    import subprocess
    import sys
    import time

    db = str(tmp_path / "crash.db")
    before_exit = "await asyncio.sleep(0.5); print(ledger.store._proc.pid, flush=True)"
    script = _CRASHER.format(tests=str(Path(__file__).parent), db=db, before_exit=before_exit)
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True
    )
    writer_pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the orphaned writer finishes its input, then exits
        try:
            with open(f"/proc/{writer_pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # exited; not yet reaped by whoever adopted it
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the writer process did not exit after its gateway died")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM calls").fetchone() == (600, 600)
    assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == sum(1 + i % 3 for i in range(600))
    conn.close()


def test_a_crash_loses_at_most_the_unflushed_calls(tmp_path: Path) -> None:
    """Killed without close(): every call flushed before is there, and every stored call has all
    its attempts (a batch is one transaction, never half-stored)."""
    import subprocess
    import sys

    db = str(tmp_path / "crash.db")
    script = _CRASHER.format(tests=str(Path(__file__).parent), db=db, before_exit="pass")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    conn = sqlite3.connect(db)
    n_calls = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert 300 <= n_calls <= 600
    per_call = conn.execute(
        "SELECT c.request_id, c.attempts, COUNT(a.id) FROM calls c LEFT JOIN attempts a USING (request_id) "
        "GROUP BY c.request_id, c.attempts"
    ).fetchall()
    assert all(expected == got for _, expected, got in per_call)
    orphans = conn.execute(
        "SELECT COUNT(*) FROM attempts WHERE request_id NOT IN (SELECT request_id FROM calls)"
    ).fetchone()[0]
    assert orphans == 0
    conn.close()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
async def test_process_writer_can_be_pinned_to_other_cpus(tmp_path: Path) -> None:
    cpu = min(os.sched_getaffinity(0))
    ledger = Ledger.open(None, str(tmp_path / "p.db"), writer="process", writer_cpus=[cpu])
    await ledger.start()
    try:
        assert os.sched_getaffinity(ledger.store._proc.pid) == {cpu}  # type: ignore[attr-defined]
        ledger.record(*make_call(1))
        await ledger.flush()
        assert ledger.stats.written == 1
    finally:
        await ledger.close()


# ------------------------------------------------------------------ the writer process


async def test_writer_process_killed_is_restarted_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    """SIGKILL the writer with batches in flight: it is restarted, the unconfirmed batches are
    sent again, and each call is stored exactly once."""
    db = tmp_path / "k.db"
    ledger = Ledger.open(None, str(db), writer="process", batch_size=50, max_delay=0.01)
    await ledger.start()
    store: Any = ledger.store
    try:
        for i in range(100):
            ledger.record(*make_call(i, when=T0 + timedelta(seconds=i)))
        await ledger.flush()
        first = store._proc
        for i in range(100, 400):
            ledger.record(*make_call(i, when=T0 + timedelta(seconds=i)))  # 6 batches shipped at once
        first.kill()
        await ledger.flush()
        assert store.restarts == 1 and store._proc is not first
        assert ledger.stats.written == 400 and ledger.stats.dropped == 0 and ledger.stats.queued == 0
    finally:
        await ledger.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM calls").fetchone() == (400, 400)
    assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 400
    conn.close()


def test_writer_process_stores_a_resent_batch_once(tmp_path: Path) -> None:
    """The child's side of exactly-once: a batch whose sequence number is already committed for
    this writer (a re-send after a crash between commit and acknowledgement) is acknowledged and
    not written again; another writer's batch 1 is written."""
    import subprocess
    import sys

    from fareway.ledger import frames
    from fareway.ledger.sqlite_process import _CHILD_MAIN
    from fareway.ledger.sqlite_store import _attempt_row_epoch, _call_row_epoch

    db = str(tmp_path / "once.db")

    def batch(seq: int, first: int) -> tuple[Any, ...]:
        calls = [make_call(i, when=T0 + timedelta(seconds=i)) for i in range(first, first + 5)]
        return (
            seq,
            False,
            [(_call_row_epoch(c), [_attempt_row_epoch(a) for a in atts]) for c, atts in calls],
        )

    def session(writer: str, *batches: tuple[Any, ...]) -> list[Any]:
        with subprocess.Popen(
            [sys.executable, "-c", _CHILD_MAIN, db, writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        ) as p:  # closes both pipes
            assert p.stdin is not None and p.stdout is not None
            out = [frames.read_frame(p.stdout)]
            for b in batches:
                frames.write_frame(p.stdin, b)
                out.append(frames.read_frame(p.stdout))
            p.stdin.close()
            assert p.wait(30) == 0
        return out

    hello, ack = session("w1", batch(1, 0))
    assert hello[0] == "ready" and hello[2] == 0 and ack[:3] == (1, 5, 5)
    hello, again, ack2 = session("w1", batch(1, 0), batch(2, 5))
    assert hello[2] == 1  # the child knows batch 1 is in
    assert again[:3] == (1, 5, 5) and again[3] == 0  # acknowledged as stored, no new transaction
    assert ack2[:4] == (2, 5, 5, 1)
    hello, other = session("w2", batch(1, 10))
    assert other[:4] == (1, 5, 5, 1)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM calls").fetchone() == (15, 15)
    conn.close()


async def test_writer_process_start_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()  # SQLite cannot open a directory as a database
    ledger = Ledger.open(None, str(tmp_path / "a-directory.db"), writer="process")
    with pytest.raises(RuntimeError, match=r"could not open .*a-directory\.db: OperationalError"):
        await ledger.start()


@settings(max_examples=3000, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)))
def test_fast_row_times_are_exactly_iso_utc(when: datetime) -> None:
    """The writer's fast time formatting (from a datetime, and from the epoch float the gateway
    ships to the writer process) gives the same text as iso_utc, to the microsecond."""
    from fareway.ledger.sqlite_store import iso_from_epoch, iso_utc, row_time

    assert row_time(when) == iso_utc(when)
    assert iso_from_epoch(when.timestamp()) == iso_utc(when)
    assert iso_from_epoch(when.timestamp()) == iso_utc(datetime.fromtimestamp(when.timestamp(), UTC))


def test_auto_writer_takes_the_process_only_with_a_cpu_to_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    from fareway.ledger import writer as writer_mod

    monkeypatch.setattr(writer_mod.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert writer_mod.auto_writer("x.db") == "process"
    assert writer_mod.auto_writer(":memory:") == "thread"
    monkeypatch.setattr(writer_mod.os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert writer_mod.auto_writer("x.db") == "thread"
    assert writer_mod.auto_writer("x.db", writer_cpus=[1]) == "process"


async def test_writer_process_killed_just_before_shutdown_loses_nothing(tmp_path: Path) -> None:
    """The writer dies and close() comes before the gateway noticed: shutdown starts a writer
    to take the unconfirmed batches; nothing is dropped."""
    db = tmp_path / "late.db"
    ledger = Ledger.open(None, str(db), writer="process", batch_size=25, max_delay=10)
    await ledger.start()
    store: Any = ledger.store
    for i in range(100):
        ledger.record(*make_call(i, when=T0 + timedelta(seconds=i)))
    await ledger.flush()
    store._proc.kill()  # no await until close(): the gateway has not noticed
    for i in range(100, 160):
        ledger.record(*make_call(i, when=T0 + timedelta(seconds=i)))
    await ledger.close()
    assert ledger.stats.written == 160 and ledger.stats.dropped == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM calls").fetchone() == (160, 160)
    conn.close()


def test_writer_process_names_the_calls_it_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    """Batches the writer never confirmed are counted as dropped and logged with their request
    ids (read back from the frame that was shipped)."""
    from fareway.ledger import frames
    from fareway.ledger.base import LedgerStats
    from fareway.ledger.sqlite_process import SqliteProcessStore, _Shipped
    from fareway.ledger.sqlite_store import _attempt_row_epoch, _call_row_epoch

    calls = [make_call(i) for i in (7, 8)]
    rows = [(_call_row_epoch(c), [_attempt_row_epoch(a) for a in atts]) for c, atts in calls]
    store = SqliteProcessStore("unused.db", LedgerStats())
    with caplog.at_level("ERROR", logger="fareway.ledger"):
        store._give_up_shipped(_Shipped(frames.encode((1, True, rows)), len(rows)), "the writer is gone")
    assert store.stats.dropped == 2
    assert "req-000007, req-000008" in caplog.text and "the writer is gone" in caplog.text
