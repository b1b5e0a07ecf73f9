"""What shared provider health costs a call: the in-process Stats against SharedStats on Redis.

Per simulated call, what routing and the executor do to the health seam: ``available`` and
``snapshot`` for three candidate offers, then ``begin`` / ``first_token`` / ``end`` on one.  For
SharedStats a second gateway (another SharedStats on the same Redis) publishes numbers for every
offer and keeps a block on one, so the blend and the block check are exercised; every ``--every``
th call ends in a 429 with Retry-After, which queues a block for Redis.  Reads never touch Redis;
the writes go out in batches from a background task, and the Redis round trips are counted.

    python benchmarks/bench_shared_health.py                      # Redis on 127.0.0.1:6379
    python benchmarks/bench_shared_health.py --calls 200000 --every 50
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from fareway.providers.catalog import Catalog
from fareway.router.shared_health import SharedStats
from fareway.router.stats import Stats

OFFERS = ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant", "cerebras/llama3.1-8b"]


async def drive(stats: Stats, calls: int, every: int) -> float:
    """Seconds for ``calls`` simulated calls; yields to the loop every 100 calls (as a server does)."""
    t0 = time.perf_counter()
    for i in range(calls):
        for k in OFFERS:
            stats.available(k, 100, 200)
            stats.snapshot(k, 100, 200)
        k = OFFERS[i % 2]
        tok = stats.begin(k)
        stats.first_token(tok, 0.3)
        if every and i % every == every - 1:
            stats.end(tok, False, 0.3, 0, 429, 0.5, None)  # a cooldown: queued for Redis
        else:
            stats.end(tok, True, 0.8, 120, 200, None, None)
        if i % 100 == 99:
            await asyncio.sleep(0)
    return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=100, help="one call in this many ends in a 429 (0: none)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    catalog = Catalog.builtin()
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    peer = SharedStats(catalog, redis_url=args.redis, prefix=prefix, instance="peer", sync_interval=0.2)
    await peer.start()
    for k in OFFERS:
        for _ in range(20):
            tok = peer.begin(k)
            peer.first_token(tok, 0.5)
            peer.end(tok, True, 1.0, 100, 200, None, None)
    peer.cool_down("mistral/mistral-small-latest", 3600, "bench")
    await peer.poll()
    await peer.flush()
    shared = SharedStats(catalog, redis_url=args.redis, prefix=prefix, instance="me", sync_interval=0.2)
    await shared.start()
    assert shared._remote, "the peer's numbers were not read"
    results: dict[str, list[float]] = {"local": [], "shared": []}
    for _ in range(args.repeat):
        results["local"].append(await drive(Stats(catalog), args.calls, args.every))
        results["shared"].append(await drive(shared, args.calls, args.every))
    await shared.flush()
    for name, runs in results.items():
        best = min(runs)
        print(
            f"{name:7s} {1e6 * best / args.calls:6.2f} us per call (best of {args.repeat} x {args.calls} calls)"
        )
    extra = 1e6 * (min(results["shared"]) - min(results["local"])) / args.calls
    print(f"shared health adds {extra:.2f} us per call; no Redis round trip on any read")
    # one snapshot alone (the read routing makes per candidate), on offers with full windows
    local = Stats(catalog)
    await drive(local, 1000, 0)
    for name, st in (("local", local), ("shared", shared)):
        best = min(_time_snapshots(st) for _ in range(args.repeat))
        print(f"{name:7s} snapshot alone {best:6.2f} us")
    total = args.repeat * args.calls
    blocks = total // args.every if args.every else 0
    print(
        f"{blocks} calls ended in a 429 -> {shared.sync.published} blocks written in "
        f"{shared.sync.writes} scripts (round trips), {shared.sync.polls} polls"
    )
    await shared.close()
    await peer.close()
    r = shared._redis()
    await r.delete(*(f"{prefix}{{health}}:{name}" for name in ("until", "info", "stats")))
    await r.aclose()


def _time_snapshots(stats: Stats, n: int = 30_000) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        stats.snapshot(OFFERS[i % 3], 100, 200)
    return 1e6 * (time.perf_counter() - t0) / n


if __name__ == "__main__":
    asyncio.run(main())
