"""The Postgres ledger's write path alone: record N calls through the Ledger API as fast as
possible, then flush; prints calls/s and the gateway process's CPU per 1,000 calls.

    python benchmarks/bench_ledger_pg.py --calls 50000 --rounds 5
    PYTHONPATH=/tmp/old/src python benchmarks/bench_ledger_pg.py ...   # another version's ledger

Each round uses a fresh schema (dropped afterwards) on the Postgres at $FAREWAY_TEST_PG_URL
(default postgresql://postgres@127.0.0.1:5432/test).  One JSON line per round, then the medians.
To compare two versions on a shared machine, alternate them (``--rounds 1`` in a loop).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fareway.ledger import AttemptRecord, CallRecord, Ledger

PG_URL = os.environ.get("FAREWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def calls(n: int) -> list[tuple[CallRecord, list[AttemptRecord]]]:
    out = []
    for i in range(n):
        rid = f"bench-{i:07d}"
        when = T0 + timedelta(milliseconds=i)
        atts = [
            AttemptRecord(
                request_id=rid,
                attempt_no=j,
                provider="openai",
                model="gpt-4o-mini",
                status=200,
                input_tokens=100,
                output_tokens=10,
                cost=Decimal("0.0001"),
                latency_ms=50.0,
                started_at=when,
            )
            for j in range(1 + i % 2)
        ]
        call = CallRecord(
            request_id=rid,
            requested_model="gpt-4o-mini",
            time=when,
            key_id="k1",
            provider="openai",
            upstream_model="gpt-4o-mini",
            input_tokens=100,
            output_tokens=10,
            cost=Decimal("0.0001"),
            attempts=len(atts),
            latency_ms=60.0,
            route="openai/gpt-4o-mini",
        )
        out.append((call, atts))
    return out


async def one_round(n: int, batch_size: int) -> dict[str, float]:
    import asyncpg

    schema = f"fw_bench_{uuid.uuid4().hex[:10]}"
    records = calls(n)
    with tempfile.TemporaryDirectory() as tmp:
        extra: dict[str, float] = {}
        if "spool_after" in inspect.signature(Ledger.open).parameters:  # a version with the spool:
            extra = {"spool_after": 600.0, "close_timeout": 600.0}  # measure writes, not spooling
        ledger = Ledger.open(
            PG_URL, str(Path(tmp) / "fareway.db"), schema=schema, batch_size=batch_size, **extra
        )
        await ledger.start()
        try:
            cpu0, t0 = time.process_time(), time.perf_counter()
            for call, atts in records:
                ledger.record(call, atts)
            await ledger.flush()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            assert ledger.stats.written == n, ledger.stats.as_dict()
        finally:
            await ledger.close()
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    return {
        "calls_per_s": round(n / wall),
        "cpu_ms_per_1000": round(cpu * 1e6 / n, 2),
        "wall_s": round(wall, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    results = []
    for _ in range(args.rounds):
        r = asyncio.run(one_round(args.calls, args.batch_size))
        results.append(r)
        print(json.dumps(r), flush=True)
    if len(results) > 1:
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(json.dumps({"median": med}), file=sys.stderr)


if __name__ == "__main__":
    main()
