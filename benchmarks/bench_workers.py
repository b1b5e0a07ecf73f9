"""Throughput of ``fareway serve --workers N``: 1 worker against 2 (or any counts), same load.

Starts, for each run, a provider simulator (zero latency) and Fareway with one of the worker
counts (nothing pinned: the workers, the simulator and the load generator share the machine's
cores, as they would on a small host), and drives it with wrk (or the Python load generator).  The runs
are interleaved ``--repeat`` times; the median run of each count is reported.  Fareway has its
default SQLite ledger and ``[limits] store = "redis"`` (needed for several workers) on the Redis
at ``--redis-url``, with a prefix of its own.

    python benchmarks/bench_workers.py                      # 1 vs 2 workers, 10 s each, 3 rounds
    python benchmarks/bench_workers.py --workers 1,2,4 --duration 5 --stream
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import (  # the sibling module
    HAS_PROC,
    KEY,
    body,
    fareway_cmd,
    free_port,
    load,
    start,
    stop,
    tree_cpu_seconds,
    wait_port,
)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until every worker could answer: /healthz 200 a few times in a row (any worker answers)."""
    deadline = time.monotonic() + timeout
    ok = 0
    while ok < 10:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fareway serve is not answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                ok = ok + 1 if r.status == 200 else 0
        except OSError:
            ok = 0
            time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    counts = [int(c) for c in a.workers.split(",") if c.strip()]
    payload = body(a.stream)
    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-workers-"))
    fareway = fareway_cmd()
    runs: dict[int, list[dict[str, float]]] = {}
    try:
        for n in [c for _ in range(a.repeat) for c in counts]:
            sim_port = free_port()  # a fresh simulator per run: no run inherits another's state
            sim = start([*fareway, "sim", "--port", str(sim_port)])
            wait_port(sim_port)
            port = free_port()
            cfg = tmp / f"w{n}.toml"
            cfg.write_text(
                f'[server]\nstate_dir = "{tmp / f"w{n}"}"\n'
                f'[providers.openai]\nbase_url = "http://127.0.0.1:{sim_port}/openai/v1"\napi_key = "sim"\n'
                f'[limits]\nstore = "redis"\nredis_url = "{a.redis_url}"\n'
                f'redis_prefix = "bench-workers-{uuid.uuid4().hex[:8]}:"\n'
            )
            proc = start(
                [*fareway, "serve", "--config", str(cfg), "--port", str(port), "--workers", str(n)],
                {"FAREWAY_MASTER_KEY": KEY},
            )
            try:
                wait_port(port)
                wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                load(url, payload, 3, a.connections, None)  # warm-up (every worker)
                cpu0 = tree_cpu_seconds(proc.pid) if HAS_PROC else 0.0
                sim0 = tree_cpu_seconds(sim.pid) if HAS_PROC else 0.0
                r = load(url, payload, a.duration, a.connections, None)
                if HAS_PROC:
                    r["cpu_us"] = (tree_cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1.0) * 1e6
                    r["sim_cpu_us"] = (tree_cpu_seconds(sim.pid) - sim0) / max(r["requests"], 1.0) * 1e6
                runs.setdefault(n, []).append(r)
            finally:
                stop(proc)
                err = proc.stderr.read().decode() if proc.stderr else ""
                if "Traceback" in err or not runs.get(n) or runs[n][-1]["rps"] == 0:
                    alive = "running" if sim.poll() is None else f"exited {sim.returncode}"
                    print(
                        f"--- fareway serve --workers {n} (simulator {alive}):\n{err[-3000:]}",
                        file=sys.stderr,
                    )
                stop(sim)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results: dict[str, dict[str, object]] = {}
    for n, rs in runs.items():
        ordered = sorted(rs, key=lambda r: r["rps"])
        mid = dict(ordered[len(ordered) // 2])
        results[f"workers={n}"] = {
            **mid,
            "all_rps": [round(r["rps"]) for r in rs],
            "cpu_us_median": statistics.median(r.get("cpu_us", 0.0) for r in rs),
            "sim_cpu_us_median": statistics.median(r.get("sim_cpu_us", 0.0) for r in rs),
        }
    if a.json:
        print(json.dumps(results, indent=2))
        return
    base = results.get(f"workers={counts[0]}", {}).get("rps")
    print(
        f"{'workers':<10} {'req/s':>9} {'runs':<22} {'p50 ms':>8} {'p99 ms':>8} {'non2xx':>7} {'CPU us/req':>10}"
    )
    for name, r in results.items():
        ratio = f"  x{float(r['rps']) / float(base):.2f}" if base else ""  # type: ignore[arg-type]
        print(
            f"{name.split('=')[1]:<10} {float(r['rps']):>9.0f} {r['all_rps']!s:<32} {float(r['p50']):>8.1f}"  # type: ignore[arg-type]
            f" {float(r['p99']):>8.1f} {float(r['non2xx']):>7.0f} {float(r['cpu_us_median']):>10.0f}"  # type: ignore[arg-type]
            f" {float(r['sim_cpu_us_median']):>10.0f}{ratio}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
