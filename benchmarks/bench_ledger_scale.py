"""The ledger at scale: fill a ledger to N calls directly, then time what the dashboard and the
usage API answer from it; and the writer's cost per call with rollups on and off.

    python benchmarks/bench_ledger_scale.py fill --backend sqlite --calls 1000000 --path /tmp/l1m.db
    python benchmarks/bench_ledger_scale.py fill --backend postgres --calls 1000000 --schema fw_scale_1m
    python benchmarks/bench_ledger_scale.py query --backend sqlite --path /tmp/l1m.db
    python benchmarks/bench_ledger_scale.py query --backend postgres --schema fw_scale_1m
    python benchmarks/bench_ledger_scale.py writer --backend sqlite-thread --calls 30000 --rounds 5

``fill`` writes raw rows and their rollups in big transactions through the writer's own code
(the row builders, the in-memory rollup aggregation and the upserts; only the batching differs),
spread at ``--rate`` calls per second (default 9, as the issue's measurement: 1M calls in about
31 hours) ending now, over 20 keys, 6 routes, 2 client dialects, a few statuses and outcomes,
one attempt per call and a fallback for 10 % of them.

``query`` starts ``fareway serve`` on that ledger (its own process, the writer thread, nothing
else running in it) and times, from this process, 20 requests (after 2 warm-ups) each of
``/ui/api/overview?since=24h|7d|30d``, ``/v1/usage?since=7d&group_by=provider,model`` and
``/v1/logs?n=50``: p50, p95 (nearest rank) and max, in milliseconds.

``writer`` records ``--calls`` calls of the same mix (stamped at 1,000 calls/s) through the
Ledger as fast as it takes them, then flushes; rounds alternate rollups on and off and print the
CPU per call of this process (where the writer thread and the Postgres writer task run) and of
its children (the SQLite writer process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import fareway_cmd, free_port, wait_port

from fareway.ledger import AttemptRecord, CallRecord, Ledger

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEY = "bench-scale-master-key"

ROUTES = [  # provider, upstream model, requested model, price per call (USD), weight
    ("openai", "gpt-4o-mini", "gpt-4o-mini", "0.000183", 30),
    ("openai", "gpt-4o", "gpt-4o", "0.003050", 10),
    ("anthropic", "claude-3-5-haiku-20241022", "haiku", "0.001120", 20),
    ("groq", "llama-3.3-70b-versatile", "fast", "0.000241", 25),
    ("deepinfra", "meta-llama/Llama-3.3-70B-Instruct", "llama-70b", "0.000096", 10),
    ("mistral", "mistral-small-latest", "mistral-small", None, 5),
]
OUTCOMES = [("ok", 200, 95), ("error", 502, 2), ("error", 429, 1), ("cache_hit", 200, 2)]


def _weighted(items: list[Any], weight: int = -1) -> list[Any]:
    return [it for it in items for _ in range(it[weight])]


class Mix:
    """The synthetic traffic: a seeded stream of (call, attempts)."""

    def __init__(self, seed: int = 1, single: bool = False) -> None:
        self.rnd = random.Random(seed)
        self.routes = _weighted(ROUTES[:1] if single else ROUTES)
        self.outcomes = _weighted(OUTCOMES[:1] if single else OUTCOMES)
        self.keys = [
            (f"key_{i:02d}", f"team-{i:02d}") for i in range(1 if single else 20) for _ in range(20 - i)
        ]
        self.single = single
        self.costs = {r[0]: (None if r[3] is None else Decimal(r[3])) for r in ROUTES}

    def calls(
        self, n: int, start: datetime, rate: float, first: int = 0
    ) -> Iterator[tuple[CallRecord, list[AttemptRecord]]]:
        rnd = self.rnd
        step = 1.0 / rate
        for i in range(first, first + n):
            when = start + timedelta(seconds=i * step + rnd.random() * step)
            provider, upstream, requested, _, _ = rnd.choice(self.routes)
            outcome, status, _ = rnd.choice(self.outcomes)
            key_id, key_name = rnd.choice(self.keys)
            rid = f"s{i:09d}"
            inp, out = rnd.randrange(50, 4000), rnd.randrange(5, 800)
            latency = rnd.lognormvariate(6.6, 0.7)
            ttft = latency * rnd.uniform(0.15, 0.6)
            cost = self.costs[provider]
            attempts = []
            if not self.single and rnd.random() < 0.1:  # a failed first try, then the fallback
                attempts.append(
                    AttemptRecord(
                        rid,
                        0,
                        "together",
                        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                        outcome="error",
                        status=503,
                        error="upstream 503",
                        latency_ms=rnd.uniform(40, 400),
                        started_at=when,
                    )
                )
            if outcome == "cache_hit":
                call_cost, saved = Decimal(0), cost
            else:
                attempts.append(
                    AttemptRecord(
                        rid,
                        len(attempts),
                        provider,
                        upstream,
                        outcome="ok" if outcome == "ok" else "error",
                        role="fallback" if attempts else "primary",
                        status=status,
                        input_tokens=inp,
                        output_tokens=out,
                        cost=cost,
                        latency_ms=latency,
                        ttft_ms=ttft,
                        started_at=when + timedelta(milliseconds=1),
                    )
                )
                call_cost, saved = cost, None
            call = CallRecord(
                request_id=rid, requested_model=requested, time=when, key_id=key_id, key_name=key_name,
                client_dialect="openai" if self.single or rnd.random() < 0.7 else "anthropic", provider=provider,
                upstream_model=upstream, status=status, outcome=outcome, input_tokens=inp if attempts else 0,  # type: ignore[arg-type]
                output_tokens=out if attempts else 0, cost=call_cost, cost_saved=saved,
                latency_ms=latency, ttft_ms=ttft, route=f"{provider}/{upstream}", attempts=len(attempts),
                cache="hit" if outcome == "cache_hit" else "miss",
            )  # fmt: skip
            yield call, attempts


# ----------------------------------------------------------------------------------- fill


def fill_sqlite(path: str, n: int, rate: float, chunk: int) -> None:
    from fareway.ledger.records import ATTEMPT_COLUMNS, CALL_COLUMNS
    from fareway.ledger.rollup_store import SQLITE, apply_sqlite
    from fareway.ledger.sqlite_store import _attempt_row, _call_row, _connect, insert_rows

    async def migrate() -> None:
        ledger = Ledger.open(None, path, writer="thread")
        await ledger.start()
        await ledger.close()

    asyncio.run(migrate())
    conn = _connect(path)
    conn.execute("PRAGMA cache_size=-262144")  # 256 MB, for the fill only
    start = datetime.now(UTC) - timedelta(seconds=n / rate)
    mix = Mix()
    done = 0
    t0 = time.perf_counter()
    while done < n:
        k = min(chunk, n - done)
        calls, attempts = [], []
        for c, atts in mix.calls(k, start, rate, done):
            calls.append(_call_row(c))
            attempts.extend(_attempt_row(a) for a in atts)
        conn.execute("BEGIN")
        insert_rows(conn, "calls", CALL_COLUMNS, calls)
        insert_rows(conn, "attempts", ATTEMPT_COLUMNS, attempts)
        apply_sqlite(conn, SQLITE.deltas().add(calls, attempts))
        conn.execute("COMMIT")
        done += k
        if done % (chunk * 25) == 0 or done == n:
            print(json.dumps({"filled": done, "s": round(time.perf_counter() - t0, 1)}), flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    wall = time.perf_counter() - t0
    size = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    print(json.dumps({"backend": "sqlite", "calls": n, "fill_s": round(wall, 1), "calls_per_s": round(n / wall),
                      "size_mb": round(size / 2**20)}))  # fmt: skip


async def fill_postgres(schema: str, n: int, rate: float, chunk: int) -> None:
    import asyncpg

    from fareway.ledger.pg_batch import _copy
    from fareway.ledger.records import attempt_values, call_values

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(PG_URL, str(Path(tmp) / "x.db"), schema=schema)
        await ledger.start()
        await ledger.close()
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    start = datetime.now(UTC) - timedelta(seconds=n / rate)
    mix = Mix()
    done = 0
    t0 = time.perf_counter()
    try:
        while done < n:
            k = min(chunk, n - done)
            calls, attempts = [], []
            for c, atts in mix.calls(k, start, rate, done):
                calls.append(call_values(c))
                attempts.extend(attempt_values(a) for a in atts)
            async with conn.transaction():
                await _copy(conn, schema, calls, attempts, True)
            done += k
            if done % (chunk * 25) == 0 or done == n:
                print(json.dumps({"filled": done, "s": round(time.perf_counter() - t0, 1)}), flush=True)
        await conn.execute("ANALYZE")
        wall = time.perf_counter() - t0
        size = await conn.fetchval(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE s.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
    finally:
        await conn.close()
    print(json.dumps({"backend": "postgres", "calls": n, "fill_s": round(wall, 1), "calls_per_s": round(n / wall),
                      "size_mb": round(int(size) / 2**20)}))  # fmt: skip


# ---------------------------------------------------------------------------------- query


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


async def time_requests(base: str, requests: int) -> list[dict[str, Any]]:
    import aiohttp

    out = []
    jar = aiohttp.CookieJar(unsafe=True)
    auth = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=600)) as s:
        async with s.post(base + "/ui/login", data={"key": KEY}, allow_redirects=False) as r:
            assert r.status == 303, r.status
        targets = [
            ("/ui/api/overview?since=24h", {}),
            ("/ui/api/overview?since=7d", {}),
            ("/ui/api/overview?since=30d", {}),
            ("/v1/usage?since=7d&group_by=provider,model", auth),
            ("/v1/logs?n=50", auth),
        ]
        for path, headers in targets:
            times = []
            body: Any = None
            for i in range(requests + 2):
                t = time.perf_counter()
                async with s.get(base + path, headers=headers) as r:
                    body = await r.json()
                    assert r.status == 200, body
                if i >= 2:
                    times.append((time.perf_counter() - t) * 1000)
            calls = (body.get("totals") or {}).get("calls") if isinstance(body, dict) else None
            out.append(
                {
                    "request": path,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(_p95(times), 1),
                    "max_ms": round(max(times), 1),
                    "calls_in_window": calls,
                }
            )
    return out


def query(backend: str, path: str | None, schema: str | None, requests: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="fareway-scale-"))
    try:
        if backend == "sqlite":
            assert path is not None
            state = tmp / "state"
            state.mkdir()
            os.symlink(os.path.abspath(path), state / "fareway.db")
            ledger = '[ledger]\nwriter = "thread"\n'
        else:
            state = tmp / "state"
            ledger = f'[ledger]\nurl = "{PG_URL}"\nschema = "{schema}"\n'
        cfg = tmp / "fareway.toml"
        cfg.write_text(f'[server]\nstate_dir = "{state}"\n{ledger}')
        port = free_port()
        proc = subprocess.Popen(
            [*fareway_cmd(), "serve", "--config", str(cfg), "--port", str(port)],
            env={**os.environ, "FAREWAY_MASTER_KEY": KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(port, timeout=600)
            for r in asyncio.run(time_requests(f"http://127.0.0.1:{port}", requests)):
                print(json.dumps({"backend": backend, **r}), flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------- writer


async def writer_round(
    backend: str, n: int, rollups: bool, tmp: Path, batch_size: int, single: bool
) -> dict[str, Any]:
    schema = f"fw_wbench_{uuid.uuid4().hex[:10]}"
    records = list(
        Mix(seed=7, single=single).calls(n, datetime.now(UTC) - timedelta(seconds=n / 1000), 1000.0)
    )
    url = PG_URL if backend == "postgres" else None
    writer = backend.removeprefix("sqlite-") if backend.startswith("sqlite") else "auto"
    kw: dict[str, Any] = {"spool_after": 600.0, "close_timeout": 600.0} if url else {}
    ledger = Ledger.open(
        url,
        str(tmp / f"{schema}.db"),
        schema=schema,
        writer=writer,
        rollups=rollups,
        batch_size=batch_size,
        **kw,
    )
    await ledger.start()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for call, atts in records:
            ledger.record(call, atts)
        await ledger.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await ledger.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    if url:
        import asyncpg

        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return {
        "backend": backend,
        "mix": "single" if single else "mixed",
        "batch_size": batch_size,
        "rollups": rollups,
        "calls_per_s": round(n / wall),
        "us_per_call_here": round(cpu * 1e6 / n, 1),
        "us_per_call_children": round(child_cpu * 1e6 / n, 1),
    }


def writer(backend: str, n: int, rounds: int, batch_size: int, single: bool) -> None:
    results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for rollups in (r % 2 == 0, r % 2 == 1):
                res = asyncio.run(writer_round(backend, n, rollups, Path(tmp), batch_size, single))
                results[rollups].append(res)
                print(json.dumps(res), flush=True)
    med = {
        str(on): {k: statistics.median(x[k] for x in rs) for k in ("calls_per_s", "us_per_call_here", "us_per_call_children")}
        for on, rs in results.items()
    }  # fmt: skip
    print(
        json.dumps({"backend": backend, "median_rollups_on": med["True"], "median_rollups_off": med["False"]})
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    f.add_argument("--calls", type=int, required=True)
    f.add_argument("--rate", type=float, default=9.0, help="calls per second of the simulated history")
    f.add_argument("--chunk", type=int, default=20_000)
    f.add_argument("--path", help="SQLite file (must not exist)")
    f.add_argument("--schema", help="Postgres schema (must not exist)")
    q = sub.add_parser("query")
    q.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    q.add_argument("--path")
    q.add_argument("--schema")
    q.add_argument("--requests", type=int, default=20)
    w = sub.add_parser("writer")
    w.add_argument("--backend", choices=["sqlite-thread", "sqlite-process", "postgres"], required=True)
    w.add_argument("--calls", type=int, default=30_000)
    w.add_argument("--rounds", type=int, default=5)
    w.add_argument(
        "--batch-size", type=int, default=500, help="50: the batches of ~1,000 calls/s (max_delay 50 ms)"
    )
    w.add_argument(
        "--single", action="store_true", help="one key, one route, one dialect (as bench_ledger_duel)"
    )
    a = ap.parse_args()
    if a.cmd == "fill":
        if a.backend == "sqlite":
            if not a.path or os.path.exists(a.path):
                sys.exit("--path: a SQLite file that does not exist yet")
            fill_sqlite(a.path, a.calls, a.rate, a.chunk)
        else:
            if not a.schema:
                sys.exit("--schema: a Postgres schema that does not exist yet")
            asyncio.run(fill_postgres(a.schema, a.calls, a.rate, a.chunk))
    elif a.cmd == "query":
        query(a.backend, a.path, a.schema, a.requests)
    else:
        writer(a.backend, a.calls, a.rounds, a.batch_size, a.single)


if __name__ == "__main__":
    main()
