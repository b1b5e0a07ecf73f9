"""Streams in flight survive a killed gateway: each committed stream is checkpointed in the
``inflight`` table and a gateway started after a SIGKILL records one call row per stream the dead
one had committed (outcome cancelled, estimated tokens); a stream that ends normally leaves one
call row and no inflight row.  A real ``fareway serve --demo`` for SQLite (writer process and
writer thread); the Ledger API for Postgres (a store dropped without close stands for the dead
gateway), including two gateways sharing the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fareway.ledger import AttemptRecord, CallRecord, Ledger
from fareway.ledger.base import Checkpoint, Settle
from fareway.ledger.inflight import STOPPED
from fareway.ledger.pg_batch import Batch, decode, encode

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def poll(cond: Callable[[], Any], what: str, within: float = 30.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


def rows_of(rid: str, *, outcome: str = "ok", out: int = 10) -> tuple[CallRecord, list[AttemptRecord]]:
    att = AttemptRecord(
        request_id=rid,
        attempt_no=0,
        provider="openai",
        model="gpt-4o-mini",
        outcome="ok" if outcome == "ok" else "cancelled",
        input_tokens=100,
        output_tokens=out,
        cost=Decimal("0.0001"),
        estimated=outcome != "ok",
    )
    call = CallRecord(
        request_id=rid,
        requested_model="openai/gpt-4o-mini",
        time=datetime.now(UTC),
        provider="openai",
        upstream_model="gpt-4o-mini",
        status=200,
        outcome=outcome,  # type: ignore[arg-type]
        stream=True,
        input_tokens=100,
        output_tokens=out,
        cost=Decimal("0.0001"),
        estimated=outcome != "ok",
        attempts=1,
        error=None if outcome == "ok" else STOPPED,
    )
    return call, [att]


# ------------------------------------------------------------------------- no database


def test_a_spooled_batch_carries_its_checkpoints() -> None:
    """The spool encoding keeps checkpoints and settled ids; a checkpoint of a call settled in
    the same batch is dropped (its row would only be deleted again)."""
    a = rows_of("a", outcome="cancelled")
    b = rows_of("b", outcome="cancelled", out=3)
    b2 = rows_of("b", outcome="cancelled", out=7)
    items: list[Any] = [
        Checkpoint(*a),
        Checkpoint(*b),
        rows_of("plain"),
        Checkpoint(*b2),
        Settle(*rows_of("a")),
    ]
    batch = Batch.mixed("w1", 3, items)
    assert batch.calls == 2 and batch.settled == ["a"]
    assert [(rid, out) for rid, out, _ in batch.checkpoints] == [("b", 7)]  # the latest only
    assert batch.parts == 3
    back = decode(encode(batch), "w1")
    assert back.checkpoints == batch.checkpoints and back.settled == ["a"]
    assert back.call_rows == batch.call_rows and back.own


def test_an_old_spool_frame_still_reads() -> None:
    import marshal

    from fareway.ledger import pg_batch

    batch = Batch.of("w1", 1, [rows_of("x")])
    fields = marshal.loads(encode(batch))
    old = marshal.dumps((1, *fields[1:7]))
    back = pg_batch.decode(old, "w1")
    assert back.calls == 1 and back.checkpoints == [] and back.settled == []


# -------------------------------------------------------------------- the Ledger API


@pytest.fixture(
    params=["sqlite-process", "sqlite-thread", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[..., Ledger]]:
    backend = request.param
    schema = f"fw_test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        import asyncpg

        try:
            conn = await asyncpg.connect(PG_URL, timeout=3)
        except Exception as exc:
            pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({exc})")
        await conn.close()
    opened: list[Ledger] = []

    def factory(**kw: Any) -> Ledger:
        url = PG_URL if backend == "postgres" else None
        if backend.startswith("sqlite-"):
            kw.setdefault("writer", backend.removeprefix("sqlite-"))
        kw.setdefault("checkpoint_after", 0.01)
        ledger = Ledger.open(url, str(tmp_path / "data" / "fareway.db"), schema=schema, max_delay=0.01, **kw)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        with contextlib.suppress(Exception):
            await ledger.close()
    if backend == "postgres":
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def scalar(ledger: Ledger, sql: str) -> Any:
    return (await ledger.store.fetch(sql, []))[0][0]


async def test_a_long_stream_is_checkpointed_and_settled_with_its_row(
    open_ledger: Callable[..., Ledger],
) -> None:
    ledger = open_ledger(checkpoint_every=0.05)
    await ledger.start()
    out = [1]

    def snapshot() -> Any:
        return rows_of("s1", outcome="cancelled", out=out[0])

    ledger.checkpoint("s1", snapshot)
    await poll(lambda: scalar(ledger, "SELECT COUNT(*) FROM inflight"), "the checkpoint")
    out[0] = 42  # the stream goes on: the refresh writes what it has streamed since
    await poll(lambda: scalar(ledger, "SELECT MAX(output_tokens) FROM inflight WHERE request_id = 's1'"), "x")
    await poll(
        lambda: _eq(scalar(ledger, "SELECT MAX(output_tokens) FROM inflight WHERE request_id = 's1'"), 42),
        "the refreshed checkpoint",
    )
    assert await scalar(ledger, "SELECT COUNT(*) FROM calls") == 0  # the queries see no call yet
    ledger.record(*rows_of("s1", out=50))
    await ledger.flush()
    assert await scalar(ledger, "SELECT COUNT(*) FROM inflight") == 0
    rows = await ledger.store.fetch("SELECT request_id, outcome, output_tokens FROM calls", [])
    assert [tuple(r) for r in rows] == [("s1", "ok", 50)]
    assert ledger.in_flight == 0
    await asyncio.sleep(0.15)  # refreshes would have run by now: nothing comes back
    assert await scalar(ledger, "SELECT COUNT(*) FROM inflight") == 0


async def _eq(aw: Any, value: Any) -> bool:
    return bool(await aw == value)


async def test_a_short_stream_never_builds_a_checkpoint(open_ledger: Callable[..., Ledger]) -> None:
    ledger = open_ledger(checkpoint_after=0.2)
    await ledger.start()
    built: list[int] = []

    def snapshot() -> Any:
        built.append(1)
        return rows_of("s2", outcome="cancelled")

    ledger.checkpoint("s2", snapshot)
    ledger.record(*rows_of("s2"))
    await asyncio.sleep(0.3)
    await ledger.flush()
    assert built == []
    assert await scalar(ledger, "SELECT COUNT(*) FROM calls") == 1
    assert await scalar(ledger, "SELECT COUNT(*) FROM inflight") == 0


async def test_close_checkpoints_what_is_still_running(open_ledger: Callable[..., Ledger]) -> None:
    """A stream still running at close is left as a checkpoint, and the next start adopts it."""
    first = open_ledger(checkpoint_after=60)
    await first.start()
    first.checkpoint("s3", lambda: rows_of("s3", outcome="cancelled", out=9))
    await first.close()
    second = open_ledger()
    await second.start()
    await poll(lambda: scalar(second, "SELECT COUNT(*) FROM calls"), "the adopted call")
    rows = await second.store.fetch("SELECT request_id, outcome, output_tokens, error FROM calls", [])
    assert [tuple(r) for r in rows] == [("s3", "cancelled", 9, STOPPED)]
    assert await scalar(second, "SELECT COUNT(*) FROM inflight") == 0
    assert await scalar(second, "SELECT COUNT(*) FROM attempts WHERE request_id = 's3'") == 1
    assert second.stats.adopted == 1


# ------------------------------------------------------------------------ Postgres


def _kill(ledger: Ledger) -> None:
    """The gateway dies: its tasks stop and its sessions end, nothing is closed or flushed."""
    store: Any = ledger.store
    for task in (store._intake_task, store._commit_task):
        if task is not None:
            task.cancel()
    if store._conn is not None:
        store._conn.terminate()
    store._pool.terminate()
    store._close_spool()
    for timer in (ledger._fresh_timer, ledger._refresh_timer):
        if timer is not None:
            timer.cancel()
    ledger._closed = True  # (nothing left to close: the fixture skips it)


async def _pg_ledger(factory: Callable[..., Ledger], **kw: Any) -> Ledger:
    ledger = factory(**kw)
    await ledger.start()
    return ledger


@pytest.mark.postgres
@pytest.mark.parametrize("open_ledger", ["postgres"], indirect=True)
async def test_postgres_dead_writer_checkpoints_are_adopted_exactly_once(
    open_ledger: Callable[..., Ledger], tmp_path: Path
) -> None:
    n = 20
    dead = await _pg_ledger(open_ledger)
    rids = [f"pg-{i:03d}" for i in range(n)]
    for i, rid in enumerate(rids):
        dead.checkpoint(rid, lambda rid=rid, i=i: rows_of(rid, outcome="cancelled", out=i + 1))
    done = rows_of("pg-done")
    dead.checkpoint("pg-done", lambda: rows_of("pg-done", outcome="cancelled"))
    await poll(lambda: _eq(scalar(dead, "SELECT COUNT(*) FROM inflight"), n + 1), "the checkpoints")
    dead.record(*done)  # one stream ended normally before the crash
    await dead.flush()
    _kill(dead)

    # two gateways start at once on the same database: each stream is adopted by one of them
    a, b = (
        open_ledger(spool_path=str(tmp_path / "spool-a")),
        open_ledger(spool_path=str(tmp_path / "spool-b")),
    )
    await asyncio.gather(a.start(), b.start())
    assert a.stats.adopted + b.stats.adopted == n
    rows = await a.store.fetch(
        "SELECT COUNT(*), COUNT(DISTINCT request_id), MIN(output_tokens), "
        "COUNT(*) FILTER (WHERE outcome = 'cancelled' AND estimated AND error = $1) FROM calls "
        "WHERE request_id LIKE 'pg-0%'",
        [STOPPED],
    )
    assert tuple(rows[0]) == (n, n, 1, n)
    assert await scalar(a, "SELECT COUNT(*) FROM attempts WHERE request_id LIKE 'pg-0%'") == n
    assert await scalar(a, "SELECT COUNT(*) FROM calls WHERE request_id = 'pg-done'") == 1
    assert await scalar(a, "SELECT COUNT(*) FROM inflight") == 0
    third = await _pg_ledger(open_ledger, spool_path=str(tmp_path / "spool-c"))
    assert third.stats.adopted == 0
    assert await scalar(third, "SELECT COUNT(*) FROM calls") == n + 1


@pytest.mark.postgres
@pytest.mark.parametrize("open_ledger", ["postgres"], indirect=True)
async def test_postgres_a_live_writer_keeps_its_checkpoints(
    open_ledger: Callable[..., Ledger], tmp_path: Path
) -> None:
    """Another gateway starting does not adopt a live one's streams; and if it does (the live
    one's session was cut, taking its lock), the live one's records replace the adopted rows."""
    live = await _pg_ledger(open_ledger)
    for rid in ("l1", "l2"):
        live.checkpoint(rid, lambda rid=rid: rows_of(rid, outcome="cancelled"))
    await poll(lambda: _eq(scalar(live, "SELECT COUNT(*) FROM inflight"), 2), "the checkpoints")
    other = await _pg_ledger(open_ledger, spool_path=str(tmp_path / "spool-o"))
    assert other.stats.adopted == 0
    assert await scalar(other, "SELECT COUNT(*) FROM inflight") == 2

    # the live writer's session is cut (a network failure): its lock is free, so a gateway that
    # starts now takes its streams for dead ones
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        store: Any = live.store
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            store.writer_id,
        )
    finally:
        await conn.close()
    await poll(lambda: _lock_free(store.writer_id), "the writer lock released")
    third = await _pg_ledger(open_ledger, spool_path=str(tmp_path / "spool-t"))
    assert third.stats.adopted == 2
    # the live one records its streams: each is counted once, with its real row
    live.record(*rows_of("l1", out=77))
    live.record(*rows_of("l2", out=88))
    await live.flush()
    rows = await third.store.fetch(
        "SELECT request_id, outcome, output_tokens FROM calls ORDER BY request_id", []
    )
    assert [tuple(r) for r in rows] == [("l1", "ok", 77), ("l2", "ok", 88)]
    assert await scalar(third, "SELECT COUNT(*) FROM attempts") == 2
    assert await scalar(third, "SELECT COUNT(*) FROM inflight") == 0


async def _lock_free(writer: str) -> bool:
    import asyncpg

    from fareway.ledger.inflight import PG_LOCK_CLASS

    conn = await asyncpg.connect(PG_URL)
    try:
        held = await conn.fetchval(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
            "AND objid = (hashtext($2)::bigint & 4294967295)::oid AND granted",
            PG_LOCK_CLASS,
            writer,
        )
    finally:
        await conn.close()
    return held == 0


@pytest.mark.postgres
@pytest.mark.parametrize("open_ledger", ["postgres"], indirect=True)
async def test_postgres_a_resent_batch_leaves_checkpoints_as_they_were(
    open_ledger: Callable[..., Ledger],
) -> None:
    """A batch whose COMMIT reply was lost is sent again: its checkpoint and settle are not
    applied twice (the settled call's checkpoint, written again, would be adopted later)."""
    from fareway.ledger import pg_batch

    ledger = await _pg_ledger(open_ledger)
    store: Any = ledger.store
    conn = store._conn
    first = Batch.mixed("wx", 1, [Checkpoint(*rows_of("r1", outcome="cancelled"))])
    second = Batch.mixed("wx", 2, [Settle(*rows_of("r1"))])
    assert await pg_batch.write_whole(conn, store.schema, first)
    assert await pg_batch.write_whole(conn, store.schema, second)
    assert not await pg_batch.write_whole(conn, store.schema, first)  # the re-send
    assert await scalar(ledger, "SELECT COUNT(*) FROM inflight") == 0
    assert await scalar(ledger, "SELECT COUNT(*) FROM calls") == 1
    # written one call at a time (a refused record), the checkpoints take their own number
    third = Batch.mixed("wx", 3, [rows_of("r2"), Checkpoint(*rows_of("r3", outcome="cancelled"))])
    for k in range(third.parts):
        assert await pg_batch.write_one(conn, store.schema, third, k)
    for k in range(third.parts):
        assert not await pg_batch.write_one(conn, store.schema, third, k)
    assert await scalar(ledger, "SELECT COUNT(*) FROM inflight") == 1
    assert await scalar(ledger, "SELECT COUNT(*) FROM calls") == 2


# ----------------------------------------------------------- a real gateway, SIGKILLed


def _fareway() -> list[str]:
    exe = Path(sys.executable).parent / "fareway"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fareway.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "FAREWAY_MASTER_KEY"}
    with open(log, "ab") as err:
        return subprocess.Popen(
            [*_fareway(), "serve", "--demo", "--config", str(cfg), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def _serve(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = _spawn(cfg, port, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"fareway serve exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    await poll(up, "the gateway to listen", within=60)
    return proc


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _db_count(db: Path, sql: str, params: tuple[Any, ...] = ()) -> Any:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql, params).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        conn.close()


LONG = "echo: " + " ".join(f"word{i}" for i in range(4000))


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_a_sigkilled_gateway_leaves_a_row_for_each_stream_it_had_committed(
    tmp_path: Path, writer: str
) -> None:
    import aiohttp

    n = 20
    state = tmp_path / "state"
    cfg = tmp_path / "fareway.toml"
    cfg.write_text(f'[server]\nstate_dir = "{state}"\n[ledger]\nwriter = "{writer}"\n')
    db = state / "fareway.db"
    log = tmp_path / "serve.log"
    port = _free_port()
    proc = await _serve(cfg, port, log)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"authorization": "Bearer demo"}
    chunks: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    try:

        def body(text: str) -> dict[str, Any]:
            return {
                "model": "openai/gpt-4o-mini",
                "stream": True,
                "messages": [{"role": "user", "content": text}],
            }

        # a stream that ends normally, checkpointed while it ran: one row, no inflight row
        async with session.post(url, json=body("Say hello."), headers=headers) as r:
            assert r.status == 200
            done_id = r.headers["x-request-id"]
            await r.content.readline()
            await poll(
                lambda: (
                    _db_count(db, "SELECT COUNT(*) FROM inflight WHERE request_id = ?", (done_id,)) or (0,)
                )[0],
                "the finished stream's checkpoint",
            )
            await r.read()
        await poll(
            lambda: (_db_count(db, "SELECT COUNT(*) FROM calls WHERE request_id = ?", (done_id,)) or (0,))[0],
            "the finished stream's row",
        )
        assert _db_count(db, "SELECT COUNT(*) FROM inflight WHERE request_id = ?", (done_id,)) == (0,)

        async def stream() -> None:
            async with session.post(url, json=body(LONG), headers=headers) as r:
                assert r.status == 200
                rid = r.headers["x-request-id"]
                chunks[rid] = 0
                with contextlib.suppress(aiohttp.ClientError):
                    async for line in r.content:
                        if line.startswith(b"data:"):
                            chunks[rid] += 1

        tasks = [asyncio.create_task(stream()) for _ in range(n)]
        await poll(lambda: len(chunks) == n and min(chunks.values()) >= 20, "every stream to get chunks")
        rids = sorted(chunks)
        marks = ", ".join("?" * n)

        def checkpointed() -> bool:
            row = _db_count(
                db,
                f"SELECT COUNT(*), MIN(output_tokens) FROM inflight WHERE request_id IN ({marks})",
                tuple(rids),
            )
            return row is not None and row[0] == n and row[1] > 0

        await poll(checkpointed, "a checkpoint of every stream")
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        proc.wait(10)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await session.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert all(c >= 20 for c in chunks.values())

    # the next gateway on the same state dir records them, once
    again = await _serve(cfg, _free_port(), log)
    try:

        def adopted() -> Any:
            row = _db_count(db, f"SELECT COUNT(*) FROM calls WHERE request_id IN ({marks})", tuple(rids))
            return row is not None and row[0] >= n

        await poll(adopted, "the adopted rows")
        got = _db_count(
            db,
            f"SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(outcome = 'cancelled' AND estimated = 1 "
            f"AND status = 200 AND error = ? AND input_tokens > 0 AND output_tokens > 0) "
            f"FROM calls WHERE request_id IN ({marks})",
            (STOPPED, *rids),
        )
        assert got == (n, n, n)
        atts = _db_count(db, f"SELECT COUNT(*) FROM attempts WHERE request_id IN ({marks})", tuple(rids))
        assert atts == (n,)
        assert _db_count(db, "SELECT COUNT(*) FROM inflight") == (0,)
        assert _db_count(db, "SELECT COUNT(*), MIN(outcome) FROM calls WHERE request_id = ?", (done_id,)) == (
            1,
            "ok",
        )
    finally:
        again.send_signal(signal.SIGTERM)
        try:
            again.wait(30)
        except subprocess.TimeoutExpired:
            again.kill()
            again.wait(10)
    assert _db_count(db, "SELECT COUNT(*) FROM calls") == (n + 1,)  # a clean stop adds nothing
