"""Throughput and latency: direct to the simulator vs a bare pass-through proxy vs Fareway.

Starts the provider simulator (zero latency, so the servers under test are the bottleneck), then
in turn the bare aiohttp proxy and Fareway, each pinned to one core, and drives each with the same
load: wrk (Debian package) when installed, else a Python aiohttp load generator.  Prints
requests/s and latency percentiles for each, in one run, and the ratios.

    python benchmarks/bench_gateway.py                # non-streaming, 10 s per target
    python benchmarks/bench_gateway.py --stream       # streaming
    python benchmarks/bench_gateway.py --duration 5 --connections 32
    python benchmarks/bench_gateway.py --ledger-variants   # also Fareway with the ledger off and on Postgres

Targets: Fareway >= 50% of the bare proxy's requests/s, non-streaming (foundation issue); the
ledger writer costs under 5% of Fareway's requests/s (cost-accounting issue): compare
"fareway" (SQLite ledger, the default) with "fareway-noledger" in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
KEY = "bench-master-key"
HAS_PROC = os.path.isdir("/proc/self/task")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is not None and shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *cmd]
    return cmd


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server; its stderr goes to a temporary file (a pipe nobody reads during the run
    would stall a chatty process once full), readable as ``proc.stderr`` after :func:`stop`."""
    err = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=err)
    p.stderr = err  # type: ignore[assignment]
    return p


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if p.stderr is not None:
        p.stderr.seek(0)


def fareway_cmd() -> list[str]:
    """The fareway CLI of this interpreter's environment (``python -m fareway.cli`` without one)."""
    exe = Path(PY).parent / "fareway"
    return [str(exe)] if exe.exists() else [PY, "-m", "fareway.cli"]


def body(stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 16,
            "stream": stream,
        }
    ).encode()


WRK_LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def run_wrk(
    url: str,
    payload: bytes,
    seconds: int,
    conns: int,
    core: int | None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA % (payload.decode(), KEY))
        for k, v in (headers or {}).items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
        script = f.name
    cmd = pinned(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", script, url], core)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            v = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            lat[pct] = v
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50": lat.get("50", float("nan")),
        "p90": lat.get("90", float("nan")),
        "p99": lat.get("99", float("nan")),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
        "requests": float(total.group(1)) if total else rps * seconds,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and all its live descendants (Linux /proc), in seconds.
    With the server pinned to one core, CPU time per request is what that core would serve if it
    were the server's alone: unlike requests/s it does not move when a neighbour on this shared
    machine takes the core for a while (steal time is not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo += [c for c, pp in parent.items() if pp == p]
    return total


async def _py_load(
    url: str, payload: bytes, seconds: int, conns: int, extra: dict[str, str] | None = None
) -> dict[str, float]:
    import aiohttp

    lat: list[float] = []
    bad = 0
    deadline = time.monotonic() + seconds
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}", **(extra or {})}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def worker() -> None:
            nonlocal bad
            while time.monotonic() < deadline:
                t = time.perf_counter()
                async with s.post(url, data=payload, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        bad += 1
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.monotonic() - t0
    q = statistics.quantiles(lat, n=100)
    return {
        "rps": len(lat) / elapsed,
        "p50": q[49],
        "p90": q[89],
        "p99": q[98],
        "non2xx": float(bad),
        "socket_errors": 0.0,
        "requests": float(len(lat)),
    }


def load(
    url: str,
    payload: bytes,
    seconds: int,
    conns: int,
    core: int | None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    if shutil.which("wrk"):
        return run_wrk(url, payload, seconds, conns, core, headers)
    return asyncio.run(_py_load(url, payload, seconds, conns, headers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument(
        "--ledger-variants",
        action="store_true",
        help="also run Fareway with the ledger disabled and with the Postgres ledger (postgresql on 127.0.0.1)",
    )
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the Fareway variants this many times, interleaved; report medians",
    )
    ap.add_argument("--only", choices=["direct", "proxy", "fareway"], action="append")
    ap.add_argument(
        "--variants",
        default="noledger,processledger,processledger-cpu1,pgledger",
        help="with --ledger-variants: which ones, comma-separated (default: these four; also jsonupstream:"
        " non-streamed calls read from the upstream as one JSON answer)",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    multi = (os.cpu_count() or 1) > 1
    server_core = 0 if multi else None
    load_core = 1 if multi else None
    targets = a.only or ["direct", "proxy", "fareway"]
    payload = body(a.stream)
    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-"))
    sim_port = free_port()
    fareway = fareway_cmd()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port)], load_core))
    results: dict[str, dict[str, float]] = {}
    rounds: dict[str, list[dict[str, float]]] = {}
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        if "direct" in targets:
            results["direct"] = load(
                f"{sim_url}/openai/v1/chat/completions", payload, a.duration, a.connections, load_core
            )
        # Every server under test runs --repeat times, interleaved (proxy, fareway, variants,
        # proxy, ...), so drift on a shared machine hits them alike; the median run is reported.
        servers: list[tuple[str, str | None]] = []
        if "proxy" in targets:
            servers.append(("proxy", None))
        if "fareway" in targets:
            servers.append(("fareway", ""))
            if a.ledger_variants:
                wanted = {f"fareway-{v.strip()}" for v in a.variants.split(",") if v.strip()}
                servers += [
                    ("fareway-noledger", "\n[ledger]\nenabled = false\n"),
                    ("fareway-processledger", '\n[ledger]\nwriter = "process"\n'),
                    (
                        "fareway-processledger-cpu1",
                        f'\n[ledger]\nwriter = "process"\nwriter_cpus = [{load_core or 0}]\n',
                    ),
                    ("fareway-pgledger", f'\n[ledger]\nurl = "{a.pg_url}"\n'),
                    ("fareway-jsonupstream", "\n[timeouts]\nstream_upstream = false\n"),
                ]
                servers = [s for s in servers if not s[0].startswith("fareway-") or s[0] in wanted]
        runs: dict[str, list[dict[str, float]]] = {}
        for name, ledger in [s for _ in range(a.repeat) for s in servers]:
            port = free_port()
            if ledger is None:
                cmd = [
                    PY,
                    str(HERE / "bare_proxy.py"),
                    "--port",
                    str(port),
                    "--upstream",
                    f"{sim_url}/openai",
                ]
            else:
                cfg = tmp / f"{name}.toml"
                cfg.write_text(
                    f'[server]\nstate_dir = "{tmp / name}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
                    f'api_key = "sim"\n{ledger}'
                )
                cmd = [*fareway, "serve", "--config", str(cfg), "--port", str(port)]
            proc = start(pinned(cmd, server_core), {"FAREWAY_MASTER_KEY": KEY})
            try:
                wait_port(port)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                load(url, payload, 2, a.connections, load_core)  # warm-up
                cpu0 = tree_cpu_seconds(proc.pid) if HAS_PROC else 0.0
                r = load(url, payload, a.duration, a.connections, load_core)
                if HAS_PROC:
                    r["cpu_us"] = (tree_cpu_seconds(proc.pid) - cpu0) / max(r["requests"], 1.0) * 1e6
                runs.setdefault(name, []).append(r)
            finally:
                stop(proc)
                err = proc.stderr.read().decode() if proc.stderr else ""
                if "Traceback" in err:
                    print(err[-3000:], file=sys.stderr)
        for name, rs in runs.items():
            rounds[name] = list(rs)  # in run order: round i of every server ran back to back
            rs = sorted(rs, key=lambda r: r["rps"])
            results[name] = rs[len(rs) // 2]  # the median run
            if len(rs) > 1:
                results[name]["all_rps"] = [round(r["rps"]) for r in rs]  # type: ignore[assignment]
            cpus = sorted(r["cpu_us"] for r in rs if "cpu_us" in r)
            if cpus:
                results[name]["cpu_us"] = statistics.median(cpus)
                results[name]["all_cpu_us"] = [round(c) for c in cpus]  # type: ignore[assignment]
    finally:
        stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        print(json.dumps(results, indent=2))
        return
    mode = "streaming" if a.stream else "non-streaming"
    gen = "wrk" if shutil.which("wrk") else "python aiohttp load generator"
    print(
        f"# {mode}, {a.connections} connections, {a.duration}s each, load by {gen}; server pinned to core {server_core}"
    )
    print(
        f"{'target':<26} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'CPU us/req':>10}"
    )
    for name, r in results.items():
        runs_note = f"  runs: {r['all_rps']}" if "all_rps" in r else ""
        if "all_cpu_us" in r and len(r["all_cpu_us"]) > 1:  # type: ignore[arg-type]
            runs_note += f" req/s; {r['all_cpu_us']} CPU us/req"
        cpu = f"{r['cpu_us']:>10.0f}" if "cpu_us" in r else f"{'-':>10}"
        print(
            f"{name:<26} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p90']:>8.2f} {r['p99']:>8.2f}"
            f" {r['non2xx']:>8.0f} {cpu}{runs_note}"
        )
    if "proxy" in results and "fareway" in results:
        print(f"fareway / bare proxy requests/s: {results['fareway']['rps'] / results['proxy']['rps']:.1%}")
    if "direct" in results and "proxy" in results:
        print(f"bare proxy / direct requests/s:  {results['proxy']['rps'] / results['direct']['rps']:.1%}")
    base = results.get("fareway-noledger")
    if base is not None:
        print(
            "ledger cost vs fareway-noledger: in req/s (median runs) | in server CPU per request (medians)"
            " | paired: median over rounds of the req/s cost within the round"
        )
        for name, label in (
            ("fareway", "SQLite, the default (auto: the writer thread, one core)"),
            ("fareway-processledger", "SQLite, writer process on the server's core"),
            ("fareway-processledger-cpu1", f"SQLite, writer process on core {load_core} (writer_cpus)"),
            ("fareway-pgledger", "PostgreSQL"),
        ):
            r = results.get(name)
            if r is None:
                continue
            by_rps = 1 - r["rps"] / base["rps"]
            by_cpu = f"{1 - base['cpu_us'] / r['cpu_us']:.1%}" if "cpu_us" in r and "cpu_us" in base else "-"
            pairs = sorted(
                1 - v["rps"] / b["rps"]
                for v, b in zip(rounds[name], rounds["fareway-noledger"], strict=False)
            )
            paired = f"{statistics.median(pairs):.1%} (rounds: {', '.join(f'{x:.1%}' for x in pairs)})"
            print(f"  {label:<58} {by_rps:>6.1%} | {by_cpu} | {paired}")


if __name__ == "__main__":
    main()
