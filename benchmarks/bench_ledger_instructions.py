"""The ledger's cost in CPU instructions per request, counted by valgrind (callgrind).

bench_gateway.py measures requests/s, which on a shared machine moves by +-10-30 % from one run
to the next (neighbours take the core).  Instruction counts do not: the same program fed the same
requests executes the same instructions whatever else the machine does.  This script runs the
real server (``fareway serve``, and its ledger writer process) under callgrind against the
provider simulator, sends the same N non-streaming requests to each variant, and counts the
instructions executed by the server and its children while those requests were served (the
start-up and the warm-up are not counted: instrumentation is switched on for the measured
window only).

    python benchmarks/bench_ledger_instructions.py                 # 1,280 requests per variant
    python benchmarks/bench_ledger_instructions.py -n 640 --variants noledger,process
    python benchmarks/bench_ledger_instructions.py -n 320 --variants noledger,noledger-direct --stream
    python benchmarks/bench_ledger_instructions.py -n 640 --variants proxy,default   # vs the bare proxy

The ledger batches by count here (batch_size 64, no time trigger), so every variant writes the
same batches whatever valgrind's slowdown: 64 is what the default 50 ms window gathers at
~1,300 requests/s.  What this does not count: the kernel's work (pipe and file writes, fsync);
bench_gateway.py's CPU-time column includes it.  Needs valgrind (Debian package).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import KEY, body, fareway_cmd, free_port, wait_port

FAREWAY = fareway_cmd()
BATCH = 64
VARIANTS = {
    "default": "",  # everything as shipped (the SQLite ledger's thread writer, its 50 ms window)
    "noledger": "[ledger]\nenabled = false\n",
    "process": f'[ledger]\nwriter = "process"\nbatch_size = {BATCH}\nmax_delay = 3600\n',
    "thread": f'[ledger]\nwriter = "thread"\nbatch_size = {BATCH}\nmax_delay = 3600\n',
    # non-streamed calls sent upstream as one JSON request instead of read as a stream
    "noledger-direct": "[ledger]\nenabled = false\n[timeouts]\nstream_upstream = false\n",
    "thread-direct": f'[ledger]\nwriter = "thread"\nbatch_size = {BATCH}\nmax_delay = 3600\n'
    "[timeouts]\nstream_upstream = false\n",
    # not Fareway: the bare aiohttp pass-through (benchmarks/bare_proxy.py), for a ratio that does
    # not move with the machine's noise
    "proxy": "",
}
STREAM = False


async def send(url: str, n: int, concurrency: int) -> int:
    import aiohttp

    payload = body(STREAM)
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    todo = iter(range(n))
    ok = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:

        async def worker() -> None:
            nonlocal ok
            for _ in todo:
                async with s.post(url, data=payload, headers=headers) as r:
                    await r.read()
                    ok += r.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def callgrind_control(prefix: Path, *args: str) -> None:
    # only this run's valgrind: without a prefix of its own, callgrind_control zeroes and
    # switches every callgrind process of the machine (another run's counts with them)
    subprocess.run(["callgrind_control", f"--vgdb-prefix={prefix}", *args], check=True, capture_output=True)


def run_variant(name: str, ledger: str, sim_url: str, n: int, tmp: Path) -> tuple[int, int, int]:
    """Instructions counted over the n requests in the gateway process (its threads included)
    and in the ledger writer process, and how many requests were ok."""
    out = tmp / name
    out.mkdir()
    cfg = out / "fareway.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{out / "state"}"\n[providers.openai]\nbase_url = "{sim_url}/openai/v1"\n'
        f'api_key = "sim"\n{ledger}'
    )
    port = free_port()
    vgdb = out / "vgdb"
    bare = str(Path(__file__).resolve().parent / "bare_proxy.py")
    server = (
        [sys.executable, bare, "--port", str(port), "--upstream", f"{sim_url}/openai"]
        if name == "proxy"
        else [*FAREWAY, "serve", "--config", str(cfg), "--port", str(port)]
    )
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--vgdb-prefix={vgdb}",
        "--trace-children=yes",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}/cg.%p",
        *server,
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "FAREWAY_MASTER_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=open(out / "stderr.txt", "wb"),
    )
    try:
        wait_port(port, 600)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asyncio.run(send(url, BATCH * 2, 8))  # warm-up: two full ledger batches
        callgrind_control(vgdb, "-z")  # zero what start-up and warm-up counted
        callgrind_control(vgdb, "-i", "on")
        ok = asyncio.run(send(url, n, 16))
        callgrind_control(vgdb, "-i", "off")
        callgrind_control(vgdb, "-d")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(600)
        except subprocess.TimeoutExpired:
            proc.kill()
    gateway = writer = 0
    for f in glob.glob(str(out / "cg.*")):
        text = Path(f).read_text(errors="replace")
        # one file per process and dump: the dump taken after the measured window holds its
        # count; the final part written at exit holds 0 (instrumentation was off by then)
        n = sum(int(m) for m in re.findall(r"^totals:\s+(\d+)", text, re.M))
        if "sqlite_child" in text[:2000]:
            writer += n
        else:
            gateway += n
    return gateway, writer, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=BATCH * 20, help="requests per variant (default 1,280)")
    ap.add_argument("--variants", default="noledger,process,thread")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files (for callgrind_annotate)")
    ap.add_argument("--stream", action="store_true", help="streamed requests (default: non-streamed)")
    a = ap.parse_args()
    global STREAM
    STREAM = a.stream
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("needs valgrind (apt-get install valgrind)")
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="fareway-cg-"))
    sim_port = free_port()
    sim = subprocess.Popen(
        [*FAREWAY, "sim", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, tuple[int, int, int]] = {}
    try:
        wait_port(sim_port, 30)
        kind = "streamed" if a.stream else "non-streamed"
        print(f"# {a.n} {kind} requests per variant; instructions per request (callgrind)")
        print(f"{'variant':<10} {'gateway':>12} {'writer':>10} {'total':>12}   ok")
        for name in names:
            gw, wr, ok = results[name] = run_variant(
                name, VARIANTS[name], f"http://127.0.0.1:{sim_port}", a.n, tmp
            )
            print(
                f"{name:<10} {gw / a.n:>12,.0f} {wr / a.n:>10,.0f} {(gw + wr) / a.n:>12,.0f}   {ok}/{a.n}",
                flush=True,
            )
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:  # a busy machine: the figures are printed already
            sim.kill()
            sim.wait()
        if a.keep:
            print(f"callgrind files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    proxy = results.get("proxy")
    if proxy:
        for name, (gw, wr, _) in results.items():
            if name != "proxy":
                print(
                    f"{name} / proxy instructions: {(gw + wr) / proxy[0]:.2f} (proxy / {name}: {proxy[0] / (gw + wr):.2f})"
                )
    base = results.get("noledger")
    if base:
        for name, (gw, wr, _) in results.items():
            if name == "noledger":
                continue
            # the share of a request's instructions that the ledger adds: with everything on one
            # core, and for the gateway process alone (the writer process on a core of its own)
            one_core = 1 - base[0] / (gw + wr)
            print(f"ledger cost ({name}): {one_core:.1%} on one core", end="")
            print(f"; {1 - base[0] / gw:.1%} in the gateway process alone" if wr else "")


if __name__ == "__main__":
    main()
