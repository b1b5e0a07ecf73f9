"""Cache hits against the bare pass-through proxy, in one run, streamed and not.

Starts the provider simulator (zero latency) on one core, then in turn the bare aiohttp proxy
(benchmarks/bare_proxy.py) and Fareway, each pinned to the other core, and drives each with the
same load (wrk when installed, else a Python load generator; see bench_gateway.py):

* ``proxy``          every request forwarded to the simulator;
* ``fareway-hit``    every request sent with ``x-fareway-cache: use`` after one request stored the
                     answer, so every measured request is a cache hit (checked on /metrics);
* ``fareway``        the same requests without the header (the ordinary pass-through), for scale.

    python benchmarks/bench_cache.py                      # 5 s per figure, both modes
    python benchmarks/bench_cache.py --duration 3 --repeat 3 --connections 32

Target (issue: response caching): cache-hit requests/s above the bare proxy's, streamed and not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import (
    HAS_PROC,
    HERE,
    KEY,
    PY,
    body,
    fareway_cmd,
    free_port,
    load,
    pinned,
    start,
    stop,
    tree_cpu_seconds,
    wait_port,
)

HIT = {"x-fareway-cache": "use"}


def _post(url: str, payload: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        url,
        data=payload,
        headers={"content-type": "application/json", "authorization": f"Bearer {KEY}", **headers},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def _cache_hits(port: int) -> float:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"authorization": f"Bearer {KEY}"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
    return sum(
        float(m.group(1)) for m in re.finditer(r"^fareway_cache_hits_total\{[^}]*\} (\S+)$", text, re.M)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="rounds (interleaved); medians are reported")
    ap.add_argument("--no-passthrough", action="store_true", help="skip the plain fareway figure")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    multi = (os.cpu_count() or 1) > 1
    server_core = 0 if multi else None
    load_core = 1 if multi else None
    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-cache-"))
    fareway = fareway_cmd()
    sim_port = free_port()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port)], load_core))
    targets = ["proxy", "fareway-hit"] + ([] if a.no_passthrough else ["fareway"])
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    checks: list[str] = []
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        for _ in range(a.repeat):
            for target in targets:
                port = free_port()
                if target == "proxy":
                    cmd = [
                        PY,
                        str(HERE / "bare_proxy.py"),
                        "--port",
                        str(port),
                        "--upstream",
                        f"{sim_url}/openai",
                    ]
                else:
                    cfg = tmp / f"{target}.toml"
                    cfg.write_text(
                        f'[server]\nstate_dir = "{tmp / target}"\n[providers.openai]\n'
                        f'base_url = "{sim_url}/openai/v1"\napi_key = "sim"\n'
                    )
                    cmd = [*fareway, "serve", "--config", str(cfg), "--port", str(port)]
                proc = start(pinned(cmd, server_core), {"FAREWAY_MASTER_KEY": KEY})
                try:
                    wait_port(port)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    headers = HIT if target == "fareway-hit" else {}
                    for stream in (False, True):
                        payload = body(stream)
                        if target == "fareway-hit":
                            status, hdrs, _ = _post(url, payload, HIT)
                            assert status == 200 and hdrs.get("x-fareway-cache") in ("stored", "miss", "hit")
                            status, hdrs, _ = _post(url, payload, HIT)
                            assert hdrs.get("x-fareway-cache") == "hit", hdrs
                            hits0 = _cache_hits(port)
                        load(url, payload, 1, a.connections, load_core, headers)  # warm-up
                        cpu0 = tree_cpu_seconds(proc.pid) if HAS_PROC else 0.0
                        if target == "fareway-hit":
                            hits0 = _cache_hits(port)
                        r = load(url, payload, a.duration, a.connections, load_core, headers)
                        if HAS_PROC:
                            r["cpu_us"] = (tree_cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1.0) * 1e6
                        if target == "fareway-hit":
                            hits = _cache_hits(port) - hits0
                            r["hit_share"] = hits / max(r["requests"], 1.0)
                            checks.append(
                                f"{'streaming' if stream else 'non-streaming'}: {hits:.0f} cache hits counted "
                                f"for {r['requests']:.0f} measured requests"
                            )
                        runs.setdefault((target, "stream" if stream else "json"), []).append(r)
                finally:
                    stop(proc)
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    if "Traceback" in err:
                        print(err[-3000:], file=sys.stderr)
    finally:
        stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)

    results: dict[str, dict[str, Any]] = {}
    for (target, mode), rs in runs.items():
        rs = sorted(rs, key=lambda r: r["rps"])
        med: dict[str, Any] = dict(rs[len(rs) // 2])
        if len(rs) > 1:
            med["all_rps"] = [round(r["rps"]) for r in rs]
        cpus = [r["cpu_us"] for r in rs if "cpu_us" in r]
        if cpus:
            med["cpu_us"] = statistics.median(cpus)
        results[f"{target}/{mode}"] = med
    if a.json:
        print(json.dumps(results, indent=2))
        return
    gen = "wrk" if shutil.which("wrk") else "python aiohttp load generator"
    print(
        f"# {a.connections} connections, {a.duration}s per figure, {a.repeat} round(s), load by {gen}; "
        f"server pinned to core {server_core}, simulator and load on core {load_core}"
    )
    print(f"{'target':<24} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU us/req':>10}")
    for mode in ("json", "stream"):
        for target in targets:
            r = results[f"{target}/{mode}"]
            cpu = f"{r['cpu_us']:>10.0f}" if "cpu_us" in r else f"{'-':>10}"
            note = f"  runs: {r['all_rps']}" if "all_rps" in r else ""
            print(
                f"{target + '/' + mode:<24} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8.0f} {cpu}{note}"
            )
    for mode, label in (("json", "non-streaming"), ("stream", "streaming")):
        hit, proxy = results[f"fareway-hit/{mode}"], results[f"proxy/{mode}"]
        print(f"cache hit / bare proxy requests/s, {label}: {hit['rps'] / proxy['rps']:.1%}")
    for c in checks:
        print("check:", c)


if __name__ == "__main__":
    main()
