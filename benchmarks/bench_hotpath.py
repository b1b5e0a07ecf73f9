"""The hot-path report (issue 14) in one run: throughput, added latency at a fixed rate, RSS under
many concurrent streams.

1. Throughput, non-streamed then streamed: ``bench_gateway.py`` (direct to the simulator, the bare
   aiohttp pass-through, Fareway; each server pinned to core 0, wrk on core 1), with its
   interleaved repeats; requests/s, CPU per request, the ratio Fareway / bare proxy.
2. Added latency at a fixed low rate: an open-loop generator sends ``--rate`` requests/s (one
   every 1/rate s, whatever the answers do) for ``--latency-seconds`` to the simulator directly,
   through the bare proxy and through Fareway, non-streamed; prints p50/p90/p99 of each and the
   added latency of each server (its percentile minus the direct one).
3. Memory: a simulator whose OpenAI answers stream slowly (``--stream-seconds`` per answer), Fareway
   over it, ``--streams`` concurrent streamed calls held open; prints the gateway's RSS idle, at
   the peak while every stream is open, and after they end.

    python benchmarks/bench_hotpath.py                         # the documented run
    python benchmarks/bench_hotpath.py --repeat 1 --duration 3 # a quick look

The 10-minute soak (flat RSS under sustained load) is ``benchmarks/soak.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gateway import KEY, PY, body, fareway_cmd, free_port, pinned, start, stop, wait_port  # noqa: E402
from soak import rss_kib  # noqa: E402

SERVER_CORE, LOAD_CORE = (0, 1) if len(os.sched_getaffinity(0)) > 1 else (None, None)


def throughput(stream: bool, a: argparse.Namespace) -> dict[str, dict[str, float]]:
    cmd = [
        PY,
        str(HERE / "bench_gateway.py"),
        "--json",
        "--duration",
        str(a.duration),
        "--repeat",
        str(a.repeat),
    ]
    if stream:
        cmd.append("--stream")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def fixed_rate(url: str, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of requests sent open-loop at ``rate`` per second."""
    import aiohttp

    payload = body(False)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    lat: list[float] = []
    bad = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def one() -> None:
            nonlocal bad
            t = time.perf_counter()
            async with s.post(url, data=payload, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    bad += 1
            lat.append((time.perf_counter() - t) * 1000)

        for _ in range(int(rate)):  # warm the connections
            await one()
        lat.clear()
        tasks: list[asyncio.Task[None]] = []
        t0 = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    if bad:
        raise RuntimeError(f"{bad} of {n} fixed-rate requests to {url} were not 200")
    return lat


def pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100)[p - 1]


def gateway_config(tmp: Path, name: str, sim_url: str) -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp / name}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
        'api_key = "sim"\n'
    )
    return cfg


def latency_phase(a: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    fareway = fareway_cmd()
    sim_port = free_port()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port)], LOAD_CORE))
    procs = []
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        proxy_port, fw_port = free_port(), free_port()
        proxy_cmd = [
            PY,
            str(HERE / "bare_proxy.py"),
            "--port",
            str(proxy_port),
            "--upstream",
            f"{sim_url}/openai",
        ]
        procs.append(start(pinned(proxy_cmd, SERVER_CORE)))
        cfg = gateway_config(tmp, "latency", sim_url)
        procs.append(
            start(
                pinned([*fareway, "serve", "--config", str(cfg), "--port", str(fw_port)], SERVER_CORE),
                {"FAREWAY_MASTER_KEY": KEY},
            )
        )
        wait_port(proxy_port)
        wait_port(fw_port)
        urls = {
            "direct": f"{sim_url}/openai/v1/chat/completions",
            "proxy": f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
            "fareway": f"http://127.0.0.1:{fw_port}/v1/chat/completions",
        }
        out: dict[str, list[float]] = {k: [] for k in urls}
        # interleaved slices, so drift on a shared machine hits the three alike
        slices = max(1, round(a.latency_seconds / 5))
        for _ in range(slices):
            for name, url in urls.items():
                out[name] += asyncio.run(fixed_rate(url, a.rate, a.latency_seconds / slices))
        return out
    finally:
        for p in procs:
            stop(p)
        stop(sim)


async def hold_streams(url: str, n: int, pid: int) -> tuple[int, int, int, float]:
    """Open ``n`` streamed calls at once; the gateway's RSS (KiB) before, at the peak, and the
    number of streams that completed, and the seconds the longest one took."""
    import aiohttp

    payload = body(True)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    before = rss_kib(pid)
    peak = before
    ok = 0
    stop_sampling = False

    async def sample() -> None:
        nonlocal peak
        while not stop_sampling:
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600)
    ) as s:

        async def one() -> None:
            nonlocal ok
            async with s.post(url, data=payload, headers=headers) as r:
                data = await r.read()
                if r.status == 200 and data.rstrip().endswith(b"data: [DONE]"):
                    ok += 1

        sampler = asyncio.ensure_future(sample())
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        took = time.monotonic() - t0
        stop_sampling = True
        await sampler
    return before, peak, ok, took


def memory_phase(a: argparse.Namespace, tmp: Path, target: str) -> dict[str, float]:
    """RSS of ``target`` (``fareway`` or ``proxy``, the bare pass-through) holding the streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * a.streams + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    fareway = fareway_cmd()
    tokens = 16  # the max_tokens of the benchmark's request
    sim_cfg = tmp / "slow-sim.toml"
    sim_cfg.write_text(
        f"[providers.openai]\nttft = 0.2\ntokens_per_s = {tokens / a.stream_seconds:g}\noutput_tokens = {tokens}\n"
    )
    sim_port, port = free_port(), free_port()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port), "--config", str(sim_cfg)], LOAD_CORE))
    proc = None
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        if target == "proxy":
            cmd = [PY, str(HERE / "bare_proxy.py"), "--port", str(port), "--upstream", f"{sim_url}/openai"]
        else:
            cfg = gateway_config(tmp, "memory", sim_url)
            cmd = [*fareway, "serve", "--config", str(cfg), "--port", str(port)]
        proc = start(pinned(cmd, SERVER_CORE), {"FAREWAY_MASTER_KEY": KEY})
        wait_port(port)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asyncio.run(hold_streams(url, 20, proc.pid))  # warm-up: connections, imports, first rows
        idle = rss_kib(proc.pid)
        before, peak, ok, took = asyncio.run(hold_streams(url, a.streams, proc.pid))
        time.sleep(2)
        after = rss_kib(proc.pid)
        return {"idle": idle, "before": before, "peak": peak, "after": after, "ok": ok, "took": took}
    finally:
        if proc is not None:
            stop(proc)
        stop(sim)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per throughput run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved throughput repeats (default 3)")
    ap.add_argument(
        "--rate", type=float, default=200.0, help="fixed request rate for latency (default 200/s)"
    )
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--streams", type=int, default=2000, help="concurrent streams for RSS (default 2000)")
    ap.add_argument("--stream-seconds", type=float, default=8.0, help="how long each slow stream lasts")
    ap.add_argument("--skip", action="append", default=[], choices=["throughput", "latency", "memory"])
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fareway-hotpath-"))
    print(f"# bench_hotpath {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; server core {SERVER_CORE}")
    if "throughput" not in a.skip:
        for stream in (False, True):
            r = throughput(stream, a)
            mode = "streamed" if stream else "non-streamed"
            print(f"## throughput, {mode} (wrk, 64 connections, {a.duration}s x {a.repeat} interleaved)")
            print(f"{'target':<10} {'req/s':>8} {'CPU us/req':>11}  runs")
            for name in ("direct", "proxy", "fareway"):
                x = r.get(name)
                if x is None:
                    continue
                cpu = f"{x['cpu_us']:>11.0f}" if "cpu_us" in x else f"{'-':>11}"
                print(f"{name:<10} {x['rps']:>8.0f} {cpu}  {x.get('all_rps', '')} {x.get('all_cpu_us', '')}")
            if "proxy" in r and "fareway" in r:
                pr, fw = r["proxy"], r["fareway"]
                by_cpu = pr["cpu_us"] / fw["cpu_us"] if "cpu_us" in fw and "cpu_us" in pr else float("nan")
                print(
                    f"fareway / proxy: {fw['rps'] / pr['rps']:.2f} by req/s (median runs), {by_cpu:.2f} by CPU/req"
                )
    if "latency" not in a.skip:
        lat = latency_phase(a, tmp)
        print(f"## latency at {a.rate:g} req/s for {a.latency_seconds:g}s each (open loop, non-streamed)")
        print(f"{'target':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10}")
        d50, d99 = pct(lat["direct"], 50), pct(lat["direct"], 99)
        for name, xs in lat.items():
            p50, p90, p99 = pct(xs, 50), pct(xs, 90), pct(xs, 99)
            print(f"{name:<10} {p50:>8.3f} {p90:>8.3f} {p99:>8.3f} {p50 - d50:>10.3f} {p99 - d99:>10.3f}")
    if "memory" not in a.skip:
        print(f"## memory: {a.streams} concurrent streams of ~{a.stream_seconds:g}s each")
        for target in ("proxy", "fareway"):
            m = memory_phase(a, tmp, target)
            per = (m["peak"] - m["idle"]) * 1024 / a.streams
            print(
                f"{target:<10} RSS idle {m['idle'] / 1024:.1f} MB, peak {m['peak'] / 1024:.1f} MB"
                f" ({per / 1024:.1f} KB per stream), after {m['after'] / 1024:.1f} MB;"
                f" {m['ok']:.0f}/{a.streams} streams complete in {m['took']:.1f}s"
            )


if __name__ == "__main__":
    main()
