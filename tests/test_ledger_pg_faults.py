"""The Postgres ledger through a faulty network: a TCP proxy in front of the real Postgres that
goes mute, drops the reply to a COMMIT, or refuses connections.  After recovery every call is in
the database exactly once; start-up with the database down works and drains later; close()
during an outage is bounded and its spool is written at the next start; a SIGKILL loses nothing
that reached the spool.  Plus the spool file format (no database needed)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fareway.ledger import Ledger
from fareway.ledger.base import StoreUnavailable
from fareway.ledger.pg_batch import Batch, decode, encode
from fareway.ledger.spool import HEADER, Spool, encode_frame
from tests.test_ledger import PG_URL, T0, _pg_reachable, make_call

_PG = urlsplit(PG_URL)
PG_HOST, PG_PORT = _PG.hostname or "127.0.0.1", _PG.port or 5432
ROOT = str(Path(__file__).resolve().parent.parent)

# ----------------------------------------------------------------------------- the proxy

_SSL_REQUEST, _GSS_REQUEST = 80877103, 80877104


class _Conn:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.tainted = False
        """Saw traffic while muted: cut when the proxy speaks again."""
        self.drop_reply = False

    def abort(self) -> None:
        for w in (self.client, self.server):
            if w is not None:
                w.transport.abort()


class PgProxy:
    """A TCP proxy to Postgres on a free 127.0.0.1 port.

    * ``mute()``: connections stay open (new ones are accepted) but nothing is forwarded either
      way; ``unmute()`` cuts every connection that saw traffic meanwhile (the client gave up on
      them) and forwards again.
    * ``drop_commit_every = n``: for every n-th ``COMMIT`` (a simple Query message, as asyncpg's
      transactions send it) the message reaches the server, and when the server's reply starts
      to come back, the connection is cut instead: the transaction is committed, the client
      never learns it.
    * ``refuse()``: stop listening (connections are refused) and cut every connection;
      ``resume()`` listens on the same port again.
    """

    def __init__(self) -> None:
        self.port = 0
        self.muted = False
        self.drop_commit_every = 0
        self.mute_on_copy = False
        """Go mute right after forwarding the next COPY's first data message: the server is
        left inside a transaction, waiting for the rest."""
        self.commits = 0
        self.dropped_replies = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._zombies: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        user = f"{_PG.username}@" if _PG.username else ""
        return _PG._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        for c in list(self._conns):
            c.abort()

    async def resume(self) -> None:
        await self.start()

    def mute(self) -> None:
        self.muted = True

    def unmute(self, *, keep_server_side: bool = False) -> None:
        """With ``keep_server_side``, the server's ends of the cut connections stay open (as
        after a network partition: the server does not learn that its client is gone, and a
        transaction it was in holds its locks)."""
        self.muted = False
        for c in list(self._conns):
            if c.tainted:
                if keep_server_side and c.server is not None:
                    self._zombies.append(c.server)
                    c.server = None
                c.abort()

    async def stop(self) -> None:
        if self._server is not None:
            await self.refuse()
        for c in list(self._conns):
            c.abort()
        for z in self._zombies:
            z.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            if self.muted:
                conn.tainted = True
                while await reader.read(65536):
                    pass
                return
            sreader, swriter = await asyncio.open_connection(PG_HOST, PG_PORT)
            conn.server = swriter
            up = asyncio.ensure_future(self._client_to_server(conn, reader, swriter))
            down = asyncio.ensure_future(self._server_to_client(conn, sreader, writer))
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
        except OSError:
            pass
        finally:
            conn.abort()
            self._conns.discard(conn)

    async def _client_to_server(
        self, conn: _Conn, reader: asyncio.StreamReader, server: asyncio.StreamWriter
    ) -> None:
        buf = bytearray()
        startup = True
        while data := await reader.read(65536):
            if self.muted or conn.tainted:
                conn.tainted = True
                continue
            buf += data
            out = bytearray()
            while True:
                if startup:  # untyped: length, then a code (SSLRequest, GSSENCRequest, StartupMessage)
                    if len(buf) < 8 or len(buf) < (n := int.from_bytes(buf[:4], "big")):
                        break
                    code = int.from_bytes(buf[4:8], "big")
                    out += buf[:n]
                    del buf[:n]
                    startup = code in (_SSL_REQUEST, _GSS_REQUEST)
                    continue
                if len(buf) < 5 or len(buf) < 1 + (n := int.from_bytes(buf[1:5], "big")):
                    break
                msg = bytes(buf[: 1 + n])
                del buf[: 1 + n]
                out += msg
                if msg[:1] == b"d" and self.mute_on_copy:  # the first CopyData goes through, then silence
                    self.mute_on_copy = False
                    self.muted = conn.tainted = True
                    buf.clear()
                    break
                if msg[:1] == b"Q" and msg[5:].lstrip().upper().startswith(b"COMMIT"):
                    self.commits += 1
                    if self.drop_commit_every and self.commits % self.drop_commit_every == 0:
                        conn.drop_reply = True
            server.write(out)
            await server.drain()
            if conn.tainted:
                continue

    async def _server_to_client(
        self, conn: _Conn, reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        while data := await reader.read(65536):
            if self.muted or conn.tainted:
                conn.tainted = True
                continue
            if conn.drop_reply:  # the COMMIT's reply: the server has committed; the client never hears
                self.dropped_replies += 1
                conn.abort()
                return
            client.write(data)
            await client.drain()


# ----------------------------------------------------------------------------- fixtures

FAST = {
    "connect_timeout": 0.5,
    "statement_timeout": 1.0,
    "close_timeout": 1.5,
    "spool_after": 0.3,
    "batch_size": 100,
}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    reason = await _pg_reachable()
    if reason is not None:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    schema = f"fw_fault_{uuid.uuid4().hex[:12]}"
    proxy = PgProxy()
    await proxy.start()
    opened: list[Ledger] = []

    def open_ledger(url: str | None = None, **kw: Any) -> Ledger:
        ledger = Ledger.open(
            url or proxy.url,
            str(tmp_path / "fareway.db"),
            schema=schema,
            spool_path=str(tmp_path / "ledger-spool"),
            **{**FAST, **kw},
        )
        ledger.store.retry_max = 0.4  # type: ignore[attr-defined]  # quick recovery in tests
        opened.append(ledger)
        return ledger

    yield {"proxy": proxy, "open": open_ledger, "schema": schema, "tmp": tmp_path}
    for ledger in opened:
        await ledger.close()
    await proxy.stop()
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def poll(cond: Callable[[], bool], within: float = 8.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def record_calls(ledger: Ledger, lo: int, hi: int, chunk: int = 50) -> int:
    """Record calls lo..hi-1 (1 to 3 attempts each) in chunks with a pause between, so that
    they make many batches; returns the number of attempts."""
    attempts = 0
    for i in range(lo, hi):
        call, atts = make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(seconds=i))
        attempts += len(atts)
        ledger.record(call, atts)
        if (i - lo) % chunk == chunk - 1:
            await asyncio.sleep(0.005)
    return attempts


async def assert_exactly_once(schema: str, calls: int, attempts: int) -> None:
    """Counted straight in the database (not through the proxy or the ledger)."""
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        q = f'"{schema}"'
        n_calls = await conn.fetchval(f"SELECT COUNT(*) FROM {q}.calls")
        n_ids = await conn.fetchval(f"SELECT COUNT(DISTINCT request_id) FROM {q}.calls")
        n_att = await conn.fetchval(f"SELECT COUNT(*) FROM {q}.attempts")
        n_att_ids = await conn.fetchval(
            f"SELECT COUNT(*) FROM (SELECT DISTINCT request_id, attempt_no FROM {q}.attempts) d"
        )
        cost = await conn.fetchval(f"SELECT SUM(cost) FROM {q}.calls")
    finally:
        await conn.close()
    assert (n_calls, n_ids, n_att, n_att_ids) == (calls, calls, attempts, attempts)
    assert str(cost) == str(sum_cost(calls))


def sum_cost(calls: int) -> Any:
    from decimal import Decimal

    return Decimal("0.001") * calls


def settled(ledger: Ledger, written: int) -> Callable[[], bool]:
    return lambda: ledger.stats.written == written and ledger.stats.spooled == 0 and ledger.health() == "ok"


# ----------------------------------------------------------------------------- faults


@pytest.mark.postgres
async def test_a_muted_database_loses_and_doubles_nothing(
    env: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    proxy: PgProxy = env["proxy"]
    ledger = env["open"]()
    await ledger.start()
    attempts = await record_calls(ledger, 0, 500)
    await ledger.flush()
    assert ledger.stats.written == 500

    proxy.mute()
    attempts += await record_calls(ledger, 500, 2500)
    await poll(lambda: ledger.health() != "ok", what="degraded")
    await ledger.flush()  # durable: in the spool, the database being mute
    assert ledger.stats.spooled >= 1500
    assert ledger.health().startswith("degraded")

    proxy.unmute()
    await poll(settled(ledger, 2500), what="the spool drained")
    assert ledger.stats.dropped == 0
    await assert_exactly_once(env["schema"], 2500, attempts)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert any("writing a batch of" in m and "call(s)" in m for m in failures)  # never silent


@pytest.mark.postgres
async def test_a_partition_that_leaves_the_server_in_a_transaction_heals(env: dict[str, Any]) -> None:
    """The writer's connection is cut mid-write and the server keeps its end (and the writer's
    row lock) open: the writer ends that stale session when it reconnects, instead of waiting
    for the server to notice (TCP keepalive: hours by default)."""
    proxy: PgProxy = env["proxy"]
    ledger = env["open"]()
    await ledger.start()
    attempts = await record_calls(ledger, 0, 200)
    await ledger.flush()
    proxy.mute_on_copy = True
    attempts += await record_calls(ledger, 200, 1200)
    await poll(lambda: proxy.muted, what="a COPY cut short")
    await ledger.flush()
    import asyncpg

    conn = await asyncpg.connect(PG_URL)  # the server's view: a session still in the transaction
    try:
        stuck = await conn.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'COPY%' AND state = 'active'"
            " AND application_name = $1",
            ledger.store.writer_id,  # type: ignore[attr-defined]
        )
    finally:
        await conn.close()
    assert stuck == 1
    proxy.unmute(keep_server_side=True)
    await poll(settled(ledger, 1200), what="the spool drained")
    await assert_exactly_once(env["schema"], 1200, attempts)


@pytest.mark.postgres
async def test_a_lost_commit_reply_does_not_store_a_batch_twice(env: dict[str, Any]) -> None:
    proxy: PgProxy = env["proxy"]
    ledger = env["open"]()
    await ledger.start()
    proxy.drop_commit_every = 3
    attempts = await record_calls(ledger, 0, 3000, chunk=40)
    await poll(settled(ledger, 3000), within=9.0, what="all written")
    proxy.drop_commit_every = 0
    assert proxy.dropped_replies >= 5  # the fault really happened, several times
    await assert_exactly_once(env["schema"], 3000, attempts)
    # each lost reply was of a transaction the server had committed: its re-send was skipped
    assert ledger.store.already_committed >= proxy.dropped_replies  # type: ignore[attr-defined]


@pytest.mark.postgres
async def test_a_table_lock_stalls_nothing_for_long_and_loses_nothing(env: dict[str, Any]) -> None:
    import asyncpg

    ledger = env["open"](PG_URL)
    await ledger.start()
    attempts = await record_calls(ledger, 0, 200)
    await ledger.flush()
    locker = await asyncpg.connect(PG_URL)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute(f'LOCK TABLE "{env["schema"]}".calls IN ACCESS EXCLUSIVE MODE')
        attempts += await record_calls(ledger, 200, 1500)
        await ledger.flush()  # returns while the lock is held: the calls went to the spool
        assert ledger.stats.spooled > 0 and ledger.health().startswith("degraded")
        await tx.rollback()
    finally:
        await locker.close()
    await poll(settled(ledger, 1500), what="the spool drained")
    await assert_exactly_once(env["schema"], 1500, attempts)


@pytest.mark.postgres
async def test_refused_connections_then_recovery(env: dict[str, Any]) -> None:
    proxy: PgProxy = env["proxy"]
    ledger = env["open"]()
    await ledger.start()
    attempts = await record_calls(ledger, 0, 300)
    await ledger.flush()
    await proxy.refuse()
    attempts += await record_calls(ledger, 300, 2000)
    await ledger.flush()
    await poll(lambda: ledger.stats.spooled > 0, what="spooling")
    with pytest.raises(StoreUnavailable):
        await ledger.recent_calls(5)
    await proxy.resume()
    await poll(settled(ledger, 2000), what="the spool drained")
    await assert_exactly_once(env["schema"], 2000, attempts)


@pytest.mark.postgres
async def test_start_while_the_database_is_down_then_drain(env: dict[str, Any]) -> None:
    proxy: PgProxy = env["proxy"]
    await proxy.refuse()
    ledger = env["open"]()
    t0 = time.monotonic()
    await ledger.start()  # does not refuse to start
    assert time.monotonic() - t0 < 2.0
    assert ledger.health().startswith("degraded")
    attempts = await record_calls(ledger, 0, 1000)
    await ledger.flush()
    assert ledger.stats.spooled == 1000 and ledger.stats.written == 0
    with pytest.raises(StoreUnavailable):
        await ledger.usage()
    await proxy.resume()  # the schema does not even exist yet: migrations run on recovery
    await poll(settled(ledger, 1000), what="the spool drained")
    await assert_exactly_once(env["schema"], 1000, attempts)
    rows = await ledger.recent_calls(3)
    assert len(rows) == 3


@pytest.mark.postgres
async def test_close_during_an_outage_is_bounded_and_the_next_start_writes_the_spool(
    env: dict[str, Any],
) -> None:
    proxy: PgProxy = env["proxy"]
    ledger = env["open"]()
    await ledger.start()
    attempts = await record_calls(ledger, 0, 200)
    await ledger.flush()
    proxy.mute()
    attempts += await record_calls(ledger, 200, 1200)
    t0 = time.monotonic()
    await ledger.close()
    elapsed = time.monotonic() - t0
    assert elapsed < FAST["close_timeout"] + 1.0, elapsed
    assert ledger.stats.written + ledger.stats.spooled == 1200
    assert ledger.stats.dropped == 0
    assert (env["tmp"] / "ledger-spool").stat().st_size > 0
    proxy.unmute()

    again = env["open"](PG_URL)
    await again.start()
    spooled = again.stats.spooled
    assert spooled == 1200 - ledger.stats.written
    await poll(lambda: again.stats.recovered == spooled and again.health() == "ok", what="drained")
    await assert_exactly_once(env["schema"], 1200, attempts)
    await again.close()
    assert (env["tmp"] / "ledger-spool").stat().st_size == 0


_KILLED = """
import asyncio, sys
from datetime import timedelta
sys.path.insert(0, {root!r})
from tests.test_ledger import T0, make_call
from fareway.ledger import Ledger

async def main() -> None:
    ledger = Ledger.open({url!r}, {db!r}, schema={schema!r}, spool_path={spool!r}, **{fast!r})
    await ledger.start()
    for i in range(2000):
        ledger.record(*make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(seconds=i)))
        if i % 100 == 99:
            await asyncio.sleep(0.005)
    await ledger.flush()
    print("flushed", ledger.stats.written, ledger.stats.spooled, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.postgres
async def test_sigkill_during_an_outage_loses_nothing_that_reached_the_spool(env: dict[str, Any]) -> None:
    proxy: PgProxy = env["proxy"]
    proxy.mute()
    tmp: Path = env["tmp"]
    root = ROOT
    script = _KILLED.format(
        root=root,
        url=proxy.url,
        db=str(tmp / "fareway.db"),
        schema=env["schema"],
        spool=str(tmp / "ledger-spool"),
        fast=FAST,
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 8.0)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    assert line.split()[0] == b"flushed"
    written, spooled = int(line.split()[1]), int(line.split()[2])
    assert (written, spooled) == (0, 2000)
    proxy.unmute()

    ledger = env["open"](PG_URL)
    await ledger.start()
    await poll(lambda: ledger.stats.recovered == 2000 and ledger.health() == "ok", what="drained")
    expected_attempts = sum(1 + i % 3 for i in range(2000))
    await assert_exactly_once(env["schema"], 2000, expected_attempts)


# ----------------------------------------------------------------------------- the spool format


def _batch(n: int, block: int = 1) -> Batch:
    items = [
        make_call(i, n_attempts=1 + i % 3, when=T0 + timedelta(microseconds=i * 7 + 1)) for i in range(n)
    ]
    return Batch.of("pg-test", block, items)


def test_a_batch_reads_back_from_the_spool_exactly() -> None:
    batch = _batch(25)
    back = decode(encode(batch), "pg-test")
    # Decimal money and microsecond times unchanged
    assert (back.call_rows, back.attempt_rows, back.counts) == (
        batch.call_rows,
        batch.attempt_rows,
        batch.counts,
    )
    assert back.one(3) == batch.one(3) and len(back.one(3)[1]) == 1 + 3 % 3
    assert (back.writer, back.block, back.own, back.calls, back.attempts) == (
        "pg-test",
        1,
        True,
        25,
        batch.attempts,
    )
    assert not decode(encode(batch), "pg-other").own


def test_a_frame_cut_short_by_a_crash_is_dropped_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    s = Spool(path)
    assert s.try_open()
    frames = [(encode(_batch(5, block=b)), 5, 5 + b) for b in (1, 2, 3)]
    s.append(frames)
    good_size = s.end
    s.close()
    with open(path, "ab") as f:  # a fourth frame, half written when the process died
        f.write(encode_frame(encode(_batch(5, block=4)), 5, 9)[: HEADER + 40])
    again = Spool(path)
    assert again.try_open()
    entries = again.scan()
    assert [(e.calls, e.attempts) for e in entries] == [(5, 6), (5, 7), (5, 8)]
    assert os.path.getsize(path) == good_size
    assert [decode(again.read(e), "x").block for e in entries] == [1, 2, 3]
    again.close()


def test_a_corrupted_frame_ends_the_spool_there(tmp_path: Path) -> None:
    path = tmp_path / "spool"
    s = Spool(path)
    assert s.try_open()
    entries = s.append([(encode(_batch(3, block=b)), 3, 3) for b in (1, 2)])
    s.close()
    with open(path, "r+b") as f:  # flip a payload byte of the second frame
        f.seek(entries[1].offset + HEADER + 10)
        byte = f.read(1)
        f.seek(entries[1].offset + HEADER + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = Spool(path)
    assert again.try_open()
    assert [e.offset for e in again.scan()] == [0]
    again.close()


def test_a_spool_held_by_a_live_process_is_not_shared(tmp_path: Path) -> None:
    from fareway.ledger.spool import own_spool

    first = own_spool(tmp_path / "spool")
    second = own_spool(tmp_path / "spool")
    assert first.path != second.path and second.path.name == f"spool.{os.getpid()}"
    first.close()
    second.close()


def test_the_spool_of_a_process_that_is_gone_is_adopted(tmp_path: Path) -> None:
    from fareway.ledger.spool import adopt_orphans, discard, own_spool

    dead = Spool(tmp_path / "spool.4242")  # left by process 4242, which died
    assert dead.try_open()
    dead.append([(encode(_batch(4, block=7)), 4, 5)])
    dead.close()
    alive = own_spool(tmp_path / "spool.77")  # held by a live process: not adopted
    own = own_spool(tmp_path / "spool")
    found = adopt_orphans(tmp_path / "spool", own)
    assert [(o.path.name, [(c, a) for _, c, a in frames]) for o, frames in found] == [
        ("spool.4242", [(4, 5)])
    ]
    assert decode(found[0][1][0][0], "x").block == 7
    for orphan, _ in found:
        discard(orphan)
    assert not (tmp_path / "spool.4242").exists() and (tmp_path / "spool.77").exists()
    own.close()
    alive.close()


# ----------------------------------------------------------------------------- the gateway


@pytest.mark.postgres
async def test_the_gateway_starts_serves_and_answers_503_while_its_ledger_database_is_down(
    env: dict[str, Any], sim: Any
) -> None:
    import aiohttp

    from tests.conftest import MASTER_KEY, gateway_config, start_gateway

    proxy: PgProxy = env["proxy"]
    await proxy.refuse()
    tmp: Path = env["tmp"]
    cfg = gateway_config(
        sim.url,
        tmp / "state",
        ledger_url=proxy.url,
        ledger_schema=env["schema"],
        ledger_connect_timeout=0.5,
        ledger_statement_timeout=1.0,
        ledger_close_timeout=1.5,
        ledger_spool_after=0.3,
    )
    gw = await start_gateway(cfg)  # does not refuse to start
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "echo:spooled"}]}
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.url + "/readyz") as r:
                ready = await r.json()
                assert r.status == 200 and ready["status"] == "degraded"
                assert ready["checks"]["ledger"].startswith("degraded")
            async with s.post(gw.url + "/v1/chat/completions", json=body, headers=auth) as r:
                assert r.status == 200
                rid = r.headers["x-request-id"]
            for path in ("/v1/logs?n=5", "/v1/usage?since=1d"):
                async with s.get(gw.url + path, headers=auth) as r:
                    err = await r.json()
                    assert r.status == 503, (path, err)
                    assert err["error"]["type"] == "service_unavailable"
                    assert err["error"]["code"] == "ledger_unavailable"
            await proxy.resume()

            async def logged() -> list[str]:
                async with s.get(gw.url + "/v1/logs?n=5", headers=auth) as r:
                    return [c["request_id"] for c in (await r.json())["data"]] if r.status == 200 else []

            deadline = time.monotonic() + 8
            while rid not in await logged():
                assert time.monotonic() < deadline, "the spooled call never reached the database"
                await asyncio.sleep(0.05)
            async with s.get(gw.url + "/readyz") as r:
                assert (await r.json())["status"] == "ready"
    finally:
        await gw.stop()
    assert (tmp / "state" / "ledger-spool").exists()


# ----------------------------------------------------------------------------- config


def test_the_ledger_config_keys(tmp_path: Path) -> None:
    from fareway.config import ConfigError, load_config

    path = tmp_path / "fareway.toml"
    path.write_text(
        '[server]\nstate_dir = "/srv/fw"\n[ledger]\nschema = "acct"\nconnect_timeout = 2\n'
        "statement_timeout = 3.5\nclose_timeout = 4\nspool_after = 0.5\n"
    )
    cfg = load_config(path, env={})
    assert (cfg.ledger_schema, cfg.ledger_connect_timeout, cfg.ledger_statement_timeout) == ("acct", 2.0, 3.5)
    assert (cfg.ledger_close_timeout, cfg.ledger_spool_after) == (4.0, 0.5)
    assert cfg.ledger_spool == Path("/srv/fw/ledger-spool")
    path.write_text('[ledger]\nspool_path = "/var/spool/fw"\n')
    assert load_config(path, env={}).ledger_spool == Path("/var/spool/fw")
    for bad in ("statement_timeout = 0", 'close_timeout = "5"', "connect_timeout = true"):
        path.write_text(f"[ledger]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(path, env={})
