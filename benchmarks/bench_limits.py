"""What budgets and rate limits cost: Fareway's requests/s with and without them, in one run.

Starts the provider simulator, then Fareway (pinned to one core) in turn as

``nolimits``      a key with no limits (authentication, access check: the default path)
``limits``        a key with requests and tokens per minute and a daily budget, in a team with a
                  monthly budget and requests per minute: five buckets reserved in one step before
                  each call and settled after it (prompt tokens counted, the route priced), in-process
``limits-redis``  the same five buckets in the Redis on 127.0.0.1:6379 (one Lua script to reserve,
                  one to settle)

and drives each with the same non-streamed load (wrk when installed, else a Python load
generator).  The limits are far above the load, so every call is admitted: this measures the
bookkeeping, not refusals.

    python benchmarks/bench_limits.py                     # 4 s per variant
    python benchmarks/bench_limits.py --duration 6 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_gateway as bg  # noqa: E402

VARIANTS = ("nolimits", "limits", "limits-redis")


def make_key(fareway: list[str], cfg: Path, limited: bool) -> str:
    def run(*args: str) -> str:
        out = subprocess.run(
            [*fareway, *args, "--config", str(cfg)], capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""

    if not limited:
        return run("keys", "create", "--name", "bench")
    run("teams", "create", "--name", "bench-team", "--budget-monthly", "100000", "--rpm", "100000000")
    return run(
        "keys",
        "create",
        "--name",
        "bench",
        "--team",
        "bench-team",
        "--rpm",
        "100000000",
        "--tpm",
        "100000000000",
        "--budget-daily",
        "100000",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant, interleaved; medians reported")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()
    variants = [v for v in a.variants.split(",") if v]
    multi = (os.cpu_count() or 1) > 1
    server_core = 0 if multi else None
    load_core = 1 if multi else None
    fareway = bg.fareway_cmd()
    payload = bg.body(False)
    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-limits-"))
    sim_port = bg.free_port()
    sim = bg.start(bg.pinned([*fareway, "sim", "--port", str(sim_port)], load_core))
    runs: dict[str, list[dict[str, float]]] = {}
    prefix = f"fwbench-{uuid.uuid4().hex[:8]}:"
    try:
        bg.wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        for name in [v for _ in range(a.repeat) for v in variants]:
            state = tmp / f"{name}-{len(runs.get(name, []))}"
            cfg = tmp / f"{state.name}.toml"
            extra = ""
            if name == "limits-redis":
                extra = f'\n[limits]\nstore = "redis"\nredis_url = "{a.redis_url}"\nredis_prefix = "{prefix}{state.name}:"\n'
            cfg.write_text(
                f'[server]\nstate_dir = "{state}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
                f'api_key = "sim"\n{extra}'
            )
            bg.KEY = make_key(fareway, cfg, limited=name != "nolimits")
            port = bg.free_port()
            proc = bg.start(
                bg.pinned([*fareway, "serve", "--config", str(cfg), "--port", str(port)], server_core),
                {"FAREWAY_MASTER_KEY": "bench-master-key"},
            )
            try:
                bg.wait_port(port)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                bg.load(url, payload, 2, a.connections, load_core)  # warm-up
                cpu0 = bg.tree_cpu_seconds(proc.pid) if bg.HAS_PROC else 0.0
                r = bg.load(url, payload, a.duration, a.connections, load_core)
                if r["requests"] < 10:
                    # every request timed out (wrk gives up after 2 s): the shared core was taken
                    # by something else for the whole run; measure once more and say so
                    print(f"{name}: no answers within wrk's timeout, measuring again", file=sys.stderr)
                    cpu0 = bg.tree_cpu_seconds(proc.pid) if bg.HAS_PROC else 0.0
                    r = bg.load(url, payload, a.duration, a.connections, load_core)
                if bg.HAS_PROC:
                    r["cpu_us"] = (bg.tree_cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1.0) * 1e6
                runs.setdefault(name, []).append(r)
            finally:
                bg.stop(proc)
                err = proc.stderr.read().decode() if proc.stderr else ""
                if "Traceback" in err or runs[name][-1]["requests"] == 0:
                    print(err[-3000:], file=sys.stderr)
    finally:
        bg.stop(sim)
        if "limits-redis" in variants:
            _clean_redis(a.redis_url, prefix)

    gen = "wrk" if bg.shutil.which("wrk") else "python aiohttp load generator"
    print(
        f"# non-streaming, {a.connections} connections, {a.duration}s per run, {a.repeat} run(s) each, "
        f"load by {gen}; server pinned to core {server_core} (a shared machine: compare within this run)"
    )
    print(f"{'variant':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU us/req':>10}  runs")
    medians: dict[str, dict[str, float]] = {}
    for name, rs in runs.items():
        by_rps = sorted(rs, key=lambda r: r["rps"])
        m = dict(by_rps[len(by_rps) // 2])
        cpus = [r["cpu_us"] for r in rs if "cpu_us" in r]
        if cpus:
            m["cpu_us"] = statistics.median(cpus)
        medians[name] = m
        cpu = f"{m['cpu_us']:>10.0f}" if "cpu_us" in m else f"{'-':>10}"
        print(
            f"{name:<14} {m['rps']:>8.0f} {m['p50']:>8.2f} {m['p99']:>8.2f} {m['non2xx']:>8.0f} {cpu}  "
            f"{[round(r['rps']) for r in rs]}"
            + (
                f" (non-2xx per run: {[round(r['non2xx']) for r in rs]})"
                if any(r["non2xx"] for r in rs)
                else ""
            )
        )
    base = medians.get("nolimits")
    if base:
        for name, m in medians.items():
            if name == "nolimits":
                continue
            line = f"{name}: {m['rps'] / base['rps'] * 100:.1f}% of nolimits req/s"
            if "cpu_us" in m and "cpu_us" in base:
                line += f", +{m['cpu_us'] - base['cpu_us']:.0f} CPU us per request"
            print(line)


def _clean_redis(url: str, prefix: str) -> None:
    import asyncio

    import redis.asyncio as aioredis

    async def clean() -> None:
        r = aioredis.Redis.from_url(url)
        try:
            keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()

    asyncio.run(clean())


if __name__ == "__main__":
    main()
