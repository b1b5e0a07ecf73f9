"""Soak: does the gateway's memory stay flat under sustained full load?

Starts the provider simulator (zero latency, so the gateway is the bottleneck) and `fareway serve`
over it (pinned to core 0, every ledger row written to SQLite), drives it from this process with
a bounded aiohttp load generator on loopback (``--connections`` workers, for ``--duration``
seconds or ``--max-calls`` calls, whichever comes first), and samples the gateway's RSS every
``--interval`` seconds.  Prints the series, then the growth after warm-up: in percent of the first
sample after warm-up, and as a least-squares slope in bytes per call.

    # the documented run (issue 18): 10 minutes per mode, streamed then not
    python benchmarks/soak.py --mode stream --duration 600
    python benchmarks/soak.py --mode plain --duration 600

    # where does it grow?  tracemalloc in the gateway (slow: only for finding the culprit)
    python benchmarks/soak.py --mode stream --duration 120 --tracemalloc

With ``--tracemalloc`` the gateway runs with ``FAREWAY_TRACEMALLOC=<dir>``: a first SIGUSR2 starts
tracing, each later one dumps a snapshot into that directory.  The soak starts tracing after
warm-up, takes a snapshot ``--warmup`` seconds later and one at the end, and prints the allocation
sites that grew most between the two, with their growth per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gateway import KEY, body, fareway_cmd, free_port, pinned, start, stop, wait_port  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


class Load:
    def __init__(self, url: str, stream: bool, connections: int, max_calls: int) -> None:
        self.url = url
        self.payload = body(stream)
        self.connections = connections
        self.max_calls = max_calls
        self.calls = 0
        self.bad = 0
        self.stop = False

    async def run(self) -> None:
        import aiohttp

        headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

            async def worker() -> None:
                while not self.stop and self.calls < self.max_calls:
                    try:
                        async with s.post(self.url, data=self.payload, headers=headers) as r:
                            await r.read()
                            if r.status != 200:
                                self.bad += 1
                    except aiohttp.ClientError:
                        self.bad += 1
                    self.calls += 1

            await asyncio.gather(*(worker() for _ in range(self.connections)))


def snapshot(proc: subprocess.Popen[bytes], trace_dir: Path, n: int | None) -> Path:
    """Signal the gateway and wait for the answer: tracing started (n None) or snapshot n."""
    path = trace_dir / (f"snapshot-{n}.tracemalloc" if n is not None else "tracing")
    done = trace_dir / (f"snapshot-{n}.done" if n is not None else "tracing")
    proc.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway wrote no tracemalloc snapshot")
        time.sleep(0.2)
    return path


async def soak(
    a: argparse.Namespace, proc: subprocess.Popen[bytes], url: str, trace_dir: Path | None
) -> None:
    load = Load(url, a.mode == "stream", a.connections, a.max_calls)
    task = asyncio.ensure_future(load.run())
    t0 = time.monotonic()
    samples: list[tuple[float, int, int]] = []  # (seconds, calls, RSS KiB)
    snaps: list[tuple[Path, int]] = []
    tracing = 0.0
    next_at = t0 + a.interval
    print(f"{'t s':>6} {'calls':>9} {'calls/s':>8} {'RSS MB':>8} {'non-200':>8}", flush=True)
    last_calls, last_t = 0, t0
    while not task.done():
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        now = time.monotonic()
        if now - t0 >= a.duration:
            load.stop = True
        rss = rss_kib(proc.pid)
        samples.append((now - t0, load.calls, rss))
        rate = (load.calls - last_calls) / (now - last_t)
        last_calls, last_t = load.calls, now
        print(f"{now - t0:>6.0f} {load.calls:>9} {rate:>8.0f} {rss / 1024:>8.1f} {load.bad:>8}", flush=True)
        if trace_dir is not None and not tracing and now - t0 >= a.warmup:
            await asyncio.to_thread(snapshot, proc, trace_dir, None)
            tracing = now
        elif trace_dir is not None and tracing and not snaps and now - tracing >= a.warmup:
            snaps.append((await asyncio.to_thread(snapshot, proc, trace_dir, 0), load.calls))
        next_at += a.interval
        if load.stop:
            break
    load.stop = True
    await task
    if trace_dir is not None and snaps:
        snaps.append((await asyncio.to_thread(snapshot, proc, trace_dir, 1), load.calls))

    after = [s for s in samples if s[0] >= a.warmup]
    print(f"# {load.calls} calls, {load.bad} not 200, {load.calls / (time.monotonic() - t0):.0f} calls/s")
    if len(after) >= 2:
        first, last = after[0], after[-1]
        growth = (last[2] - first[2]) / first[2]
        per_call = slope([s[1] for s in after], [s[2] * 1024 for s in after])
        print(
            f"# after warm-up ({a.warmup:g} s): RSS {first[2] / 1024:.1f} -> {last[2] / 1024:.1f} MB"
            f" ({growth:+.1%}), min {min(s[2] for s in after) / 1024:.1f}, max {max(s[2] for s in after) / 1024:.1f};"
            f" slope {per_call:+.1f} bytes/call over {last[1] - first[1]} calls"
        )
    if len(snaps) == 2:
        old = tracemalloc.Snapshot.load(str(snaps[0][0]))
        new = tracemalloc.Snapshot.load(str(snaps[1][0]))
        calls = max(1, snaps[1][1] - snaps[0][1])
        print(f"# tracemalloc: top growth between the snapshots ({calls} calls), by {a.group_by}")
        for stat in new.compare_to(old, a.group_by)[: a.top]:
            print(
                f"{stat.size_diff / calls:>+9.2f} B/call {stat.count_diff:>+8} blocks  {stat.traceback.format()[-1]}"
            )
            if a.group_by == "traceback":
                for line in stat.traceback.format(limit=a.frames)[:-1]:
                    print(f"{'':>36}{line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["stream", "plain"], default="stream")
    ap.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    ap.add_argument("--max-calls", type=int, default=5_000_000, help="stop after this many calls")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds before the growth is measured (default 60: the circuit breakers keep 60 s of calls)",
    )
    ap.add_argument("--tracemalloc", action="store_true", help="trace allocations in the gateway")
    ap.add_argument("--group-by", default="lineno", choices=["lineno", "traceback", "filename"])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--config-extra", default="", help="TOML appended to the gateway's config")
    a = ap.parse_args()
    if not os.path.isdir("/proc/self"):
        sys.exit("soak.py reads RSS from /proc (Linux only)")
    multi = (os.cpu_count() or 1) > 1
    tmp = Path(tempfile.mkdtemp(prefix="fareway-soak-"))
    fareway = fareway_cmd()
    sim_port, gw_port = free_port(), free_port()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port)], 1 if multi else None))
    env = {"FAREWAY_MASTER_KEY": KEY}
    trace_dir = None
    if a.tracemalloc:
        trace_dir = tmp / "trace"
        trace_dir.mkdir()
        env["FAREWAY_TRACEMALLOC"] = str(trace_dir)
    cfg = tmp / "soak.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp / "state"}"\n[providers.openai]\n'
        f'base_url = "http://127.0.0.1:{sim_port}/openai/v1"\napi_key = "sim"\n{a.config_extra}\n'
    )
    proc = start(
        pinned([*fareway, "serve", "--config", str(cfg), "--port", str(gw_port)], 0 if multi else None), env
    )
    try:
        wait_port(sim_port)
        wait_port(gw_port)
        print(
            f"# soak: {a.mode}, {a.connections} connections, {a.duration:g} s, RSS of the gateway"
            f" (pid {proc.pid}) every {a.interval:g} s{', tracemalloc on' if a.tracemalloc else ''}",
            flush=True,
        )
        asyncio.run(soak(a, proc, f"http://127.0.0.1:{gw_port}/v1/chat/completions", trace_dir))
    finally:
        stop(proc)
        stop(sim)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if "Traceback" in err:
            print(err[-3000:], file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
