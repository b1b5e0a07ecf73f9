"""Routing benchmark: one request stream through a single provider, a fallback chain, a race of two
and a hedge, against simulated providers with independent heavy-tailed TTFT and error storms.

Starts ``fareway sim`` (profiles from benchmarks/routing_sim.toml) and, for each strategy in turn,
a fresh ``fareway serve`` (fresh ledger, fresh health statistics) whose aliases route to the
simulator.  Every strategy gets the *same* stream: the same prompts, the same arrival times (an
open-loop Poisson schedule from ``--seed``), the same storm timeline (aligned to the run's start),
and the simulator's per-provider latency RNGs re-seeded before each run.

Measured client-side (aiohttp, streaming, OpenAI dialect): success (HTTP 200, content, a clean
end), TTFT = request sent -> first content chunk, total latency = request sent -> end of stream.
Cost from the gateway's ledger after it shut down: the sum of every attempt's cost (failed tries,
cancelled race losers with their estimated prompt tokens), per call and per successful call.

    python benchmarks/bench_routing.py                     # default run, about 3 minutes
    python benchmarks/bench_routing.py --calls 200 --rate 10
    python benchmarks/bench_routing.py --hedge-ms 400       # fixed hedge delay
    python benchmarks/bench_routing.py --down-mode refused  # the down provider refuses connections
    python benchmarks/bench_routing.py --only race2 --only single_groq

Prints measured figures and the routing issue's three targets as MET/MISSED lines; it asserts
nothing.  See docs/benchmarks-routing.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
PY = sys.executable
KEY = "bench-routing-master-key"

GROQ = "groq/llama-3.3-70b-versatile"
CEREBRAS = "cerebras/llama-3.3-70b"
DEEPINFRA = "deepinfra/meta-llama/Llama-3.3-70B-Instruct"
WARM = "mistral/mistral-small-latest"
BENCH_PROVIDERS = ("groq", "cerebras", "deepinfra")

# A vocabulary of common English words (about one token each for real tokenizers and for the
# simulator's word count), so the gateway's offline estimate for cancelled attempts and the
# simulator's reported usage agree.
_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one "
    "had by word but not what all were we when your can said there use an each which she do how their "
    "if will up other about out many then them these so some her would make like him into time has "
    "look two more write go see number no way could people my than first water been call who oil its "
    "now find long down day did get come made may part over new sound take only little work know place "
    "year live me back give most very after thing our just name good sentence man think say great where "
    "help through much before line right too mean old any same tell boy follow came want show also "
    "around form three small set put end does another well large must big even such because turn here "
    "why ask went men read need land different home us move try kind hand picture again change off play "
    "spell air away animal house point page letter mother answer found study still learn should world"
).split()


# ----------------------------------------------------------------------------- the stream


@dataclass(slots=True)
class Req:
    i: int
    at: float
    """Send time, seconds after the run's start."""
    messages: list[dict[str, str]]
    max_tokens: int


def make_stream(n: int, rate: float, seed: int) -> list[Req]:
    """``n`` chat requests with Poisson arrivals at ``rate``/s, prompt lengths lognormal (median
    ~450 words, 40..4000) and max_tokens lognormal (median 150, 16..400)."""
    rng = random.Random(f"{seed}:stream")
    t = 0.0
    out = []
    for i in range(n):
        t += rng.expovariate(rate)
        n_words = int(min(4000, max(40, 450 * math.exp(0.6 * rng.gauss(0, 1)))))
        text = " ".join(rng.choices(_WORDS, k=n_words))
        system = "You are a concise assistant. Answer in plain prose."
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": f"[{i}] {text}"}]
        max_tokens = int(min(400, max(16, 150 * math.exp(0.5 * rng.gauss(0, 1)))))
        out.append(Req(i, t, msgs, max_tokens))
    return out


@dataclass(slots=True)
class Storm:
    provider: str
    start: float
    end: float
    kind: str
    retry_after: float | None


def make_storms(spec: dict[str, Any], horizon: float, seed: int) -> list[Storm]:
    """Per provider, from its own RNG: Poisson storm starts, uniform durations, weighted kinds."""
    storms: list[Storm] = []
    for provider, s in sorted(spec.items()):
        rng = random.Random(f"{seed}:storms:{provider}")
        kinds = list(s["kinds"].items())
        t = 0.0
        while True:
            t += rng.expovariate(1.0 / float(s["every_s"]))
            if t >= horizon:
                break
            dur = rng.uniform(float(s["min_s"]), float(s["max_s"]))
            kind = rng.choices([k for k, _ in kinds], weights=[float(w) for _, w in kinds])[0]
            ra = float(s["retry_after"]) if kind == "429" else None
            storms.append(Storm(provider, t, t + dur, kind, ra))
            t += dur
    return storms


# ------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode}:\n{err[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def fareway_cmd() -> list[str]:
    exe = Path(PY).with_name("fareway")
    return [str(exe)] if exe.exists() else [PY, "-m", "fareway.cli"]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment without real provider keys (only the simulator is ever called)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, **extra}


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(p: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------- strategies


@dataclass(slots=True)
class Strategy:
    name: str
    alias: Any
    """The alias value in the gateway's [aliases] table."""
    down: str | None = None
    """A provider that is down for the whole run (100% 503, or connection refused)."""


def gateway_toml(state_dir: Path, sim_url: str, alias: Any, refused: set[str]) -> str:
    lines = [
        "[server]",
        f'state_dir = "{state_dir}"',
        "[timeouts]",
        "first_token = 20",
        "total = 120",
    ]
    for p in (*BENCH_PROVIDERS, "mistral"):
        base = f"http://127.0.0.1:{free_port()}/{p}/v1" if p in refused else f"{sim_url}/{p}/v1"
        lines += [f"[providers.{p}]", f'base_url = "{base}"', 'api_key = "sim-bench-key"']
    lines += ["[aliases]", f"bench = {toml_value(alias)}", f'warm = "{WARM}"']
    return "\n".join(lines) + "\n"


def toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"


# ------------------------------------------------------------------------------- the client


@dataclass(slots=True)
class Result:
    i: int
    ok: bool = False
    status: int = 0
    ttft: float | None = None
    total: float | None = None
    provider: str = ""
    route: str = ""
    cost: Decimal | None = None
    error: str = ""


async def one_call(session: aiohttp.ClientSession, url: str, req: Req) -> Result:
    res = Result(req.i)
    body = {
        "model": "bench",
        "messages": req.messages,
        "max_tokens": req.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    t0 = time.perf_counter()
    done = False
    try:
        async with session.post(url, data=json.dumps(body), headers=headers) as r:
            res.status = r.status
            res.provider = r.headers.get("x-fareway-provider", "")
            res.route = r.headers.get("x-fareway-route", "")
            if r.status != 200:
                res.error = f"HTTP {r.status}: {(await r.text())[:800]}"
                return res
            async for raw in r.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                obj = json.loads(data)
                if "error" in obj:
                    res.error = f"in-stream error: {str(obj['error'])[:800]}"
                    return res
                for ch in obj.get("choices") or []:
                    if res.ttft is None and (ch.get("delta") or {}).get("content"):
                        res.ttft = time.perf_counter() - t0
                usage = obj.get("usage")
                if usage and usage.get("cost") is not None:
                    res.cost = Decimal(str(usage["cost"]))
    except (aiohttp.ClientError, TimeoutError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    res.total = time.perf_counter() - t0
    res.ok = done and res.ttft is not None
    if not res.ok and not res.error:
        res.error = "no content" if res.ttft is None else "stream ended without [DONE]"
    return res


async def storm_driver(
    session: aiohttp.ClientSession,
    sim_url: str,
    storms: list[Storm],
    permanent: list[dict[str, Any]],
    t0: float,
) -> None:
    """Keep the simulator's armed faults equal to the storms active now (plus ``permanent``)."""
    edges = sorted({s.start for s in storms} | {s.end for s in storms})
    last: list[dict[str, Any]] | None = None
    for edge in [0.0, *edges]:
        delay = t0 + edge - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        active = list(permanent)
        for s in storms:
            if s.start <= edge < s.end:  # by the schedule, not the clock (a sleep may wake early)
                f: dict[str, Any] = {"provider": s.provider, "kind": s.kind, "rate": 1.0}
                if s.retry_after is not None:
                    f["retry_after"] = s.retry_after
                active.append(f)
        if active == last:
            continue
        async with session.delete(f"{sim_url}/_sim/faults") as r:
            await r.read()
        if active:
            async with session.post(f"{sim_url}/_sim/faults", data=json.dumps(active)) as r:
                await r.read()
        last = active


async def drive(
    gw_url: str, sim_url: str, stream: list[Req], storms: list[Storm], permanent: list[dict[str, Any]]
) -> tuple[list[Result], float, int]:
    url = f"{gw_url}/v1/chat/completions"
    timeout = aiohttp.ClientTimeout(total=150)
    in_flight = 0
    peak = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        # warm the gateway's code paths on a provider that is not measured, then re-seed the sim
        warm = {
            "model": "warm",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 8,
            "stream": True,
        }
        for _ in range(3):
            async with session.post(
                url, data=json.dumps(warm), headers={"authorization": f"Bearer {KEY}"}
            ) as r:
                await r.read()
        async with session.delete(f"{sim_url}/_sim/faults") as r:
            await r.read()
        async with session.post(f"{sim_url}/_sim/reset", data=json.dumps({"rng": True})) as r:
            await r.read()

        t0 = time.perf_counter()

        async def timed(req: Req) -> Result:
            nonlocal in_flight, peak
            delay = t0 + req.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await one_call(session, url, req)
            finally:
                in_flight -= 1

        storms_task = asyncio.ensure_future(storm_driver(session, sim_url, storms, permanent, t0))
        results = await asyncio.gather(*(timed(r) for r in stream))
        wall = time.perf_counter() - t0
        storms_task.cancel()
        try:
            await storms_task
        except asyncio.CancelledError:
            pass
        async with session.delete(f"{sim_url}/_sim/faults") as r:
            await r.read()
    return list(results), wall, peak


# ------------------------------------------------------------------------------- the ledger


@dataclass(slots=True)
class LedgerFigures:
    calls: int = 0
    cost: Decimal = Decimal(0)
    unknown_cost_calls: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    """outcome -> count over every attempt."""
    roles: dict[str, int] = field(default_factory=dict)
    cancelled_cost: Decimal = Decimal(0)
    estimated_attempts: int = 0


def ledger_path(cfg: Path) -> Path:
    """Where the gateway run with ``cfg`` keeps its SQLite ledger."""
    from fareway.config import load_config

    c = load_config(cfg)
    return Path(getattr(c, "ledger_file", c.state_dir / "ledger.db"))


async def read_ledger(db: Path) -> LedgerFigures:
    from fareway.ledger.writer import Ledger

    out = LedgerFigures()
    async with Ledger.open(None, path=str(db)) as ledger:
        rows = await ledger.recent_calls(n=1_000_000, model="bench")
    for lc in rows:
        c = lc.call
        if c.requested_model != "bench":
            continue
        out.calls += 1
        if c.cost is None:
            out.unknown_cost_calls += 1
        else:
            out.cost += c.cost
        for a in lc.attempts:
            out.attempts[a.outcome] = out.attempts.get(a.outcome, 0) + 1
            out.roles[a.role] = out.roles.get(a.role, 0) + 1
            if a.estimated:
                out.estimated_attempts += 1
            if a.outcome == "cancelled" and a.cost is not None:
                out.cancelled_cost += a.cost
    return out


# ---------------------------------------------------------------------------------- running


@dataclass(slots=True)
class RunFigures:
    name: str
    describe: str
    results: list[Result]
    ledger: LedgerFigures
    wall_s: float
    peak_in_flight: int
    gateway_cpu_s: float
    sim_cpu_s: float

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def success(self) -> float:
        return len(self.ok) / self.n if self.n else 0.0

    def ttft(self, q: float) -> float:
        return quantile([r.ttft for r in self.ok if r.ttft is not None], q)

    def total(self, q: float) -> float:
        return quantile([r.total for r in self.ok if r.total is not None], q)

    @property
    def cost_per_call(self) -> float:
        return float(self.ledger.cost) / self.n if self.n else math.nan

    @property
    def cost_per_ok(self) -> float:
        return float(self.ledger.cost) / len(self.ok) if self.ok else math.nan

    @property
    def streamed_cost(self) -> float:
        return float(sum((r.cost for r in self.results if r.cost is not None), Decimal(0)))


def quantile(xs: list[float], q: float) -> float:
    """Nearest-rank quantile (the p99 of 400 samples is the 4th largest)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


def run_strategy(
    strat: Strategy,
    stream: list[Req],
    storms: list[Storm],
    sim: subprocess.Popen[bytes],
    sim_url: str,
    tmp: Path,
    down_mode: str,
) -> RunFigures:
    state = tmp / f"state-{strat.name}"
    cfg = tmp / f"fareway-{strat.name}.toml"
    refused = {strat.down} if strat.down and down_mode == "refused" else set()
    permanent = (
        [{"provider": strat.down, "kind": "503", "rate": 1.0}] if strat.down and down_mode == "503" else []
    )
    cfg.write_text(gateway_toml(state, sim_url, strat.alias, refused))
    port = free_port()
    gw = start(
        [*fareway_cmd(), "serve", "--config", str(cfg), "--port", str(port)],
        clean_env({"FAREWAY_MASTER_KEY": KEY}),
    )
    try:
        wait_port(port, gw)
        cpu0, sim_cpu0 = cpu_seconds(gw.pid), cpu_seconds(sim.pid)
        results, wall, peak = asyncio.run(
            drive(f"http://127.0.0.1:{port}", sim_url, stream, storms, permanent)
        )
        cpu1, sim_cpu1 = cpu_seconds(gw.pid), cpu_seconds(sim.pid)
    finally:
        stop(gw)
        err = gw.stderr.read().decode() if gw.stderr else ""
        if "Traceback" in err:
            print(f"--- gateway stderr ({strat.name}) ---\n{err[-4000:]}", file=sys.stderr)
    db = ledger_path(cfg)
    if db.exists():
        ledger = asyncio.run(read_ledger(db))
    else:
        print(f"no ledger at {db}", file=sys.stderr)
        ledger = LedgerFigures()
    desc = strat.alias if isinstance(strat.alias, str) else describe_alias(strat.alias)
    if strat.down:
        desc += f"  [{strat.down} down: {down_mode}]"
    return RunFigures(strat.name, desc, results, ledger, wall, peak, cpu1 - cpu0, sim_cpu1 - sim_cpu0)


def describe_alias(a: dict[str, Any]) -> str:
    short = ",".join(t.split("/")[0] for t in a["targets"])
    extra = f" hedge_ms={a['hedge_ms']:g}" if "hedge_ms" in a else ""
    return f"{a['strategy']}({short}){extra}"


# --------------------------------------------------------------------------------- printing


def ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1000:.0f}"


def usd(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1e6:.1f}"


def print_table(runs: list[RunFigures], baseline: RunFigures | None) -> None:
    print()
    head = (
        f"{'run':<16} {'ok %':>6} {'TTFT p50':>9} {'p99':>6} {'total p50':>10} {'p99':>6}"
        f" {'u$/call':>8} {'u$/ok':>7} {'vs base':>8}  route"
    )
    print(head)
    print("-" * (len(head) + 30))
    for r in runs:
        over = "-"
        if baseline is not None and not math.isnan(baseline.cost_per_ok) and baseline.cost_per_ok > 0:
            over = f"{r.cost_per_ok / baseline.cost_per_ok - 1:+.1%}"
        print(
            f"{r.name:<16} {r.success:>6.1%} {ms(r.ttft(0.5)):>9} {ms(r.ttft(0.99)):>6}"
            f" {ms(r.total(0.5)):>10} {ms(r.total(0.99)):>6} {usd(r.cost_per_call):>8}"
            f" {usd(r.cost_per_ok):>7} {over:>8}  {r.describe}"
        )
    print("(times in ms, client-side; u$ = micro-dollars from the gateway's ledger, every attempt")
    print(" included; 'vs base' = cost per successful call relative to the baseline single provider)")


def print_details(runs: list[RunFigures]) -> None:
    print()
    print("per run: attempts by outcome (ledger) | winners (x-fareway-provider) | failures | load")
    for r in runs:
        att = ", ".join(f"{k}={v}" for k, v in sorted(r.ledger.attempts.items()))
        roles = ", ".join(f"{k}={v}" for k, v in sorted(r.ledger.roles.items()))
        winners: dict[str, int] = {}
        for x in r.ok:
            winners[x.provider] = winners.get(x.provider, 0) + 1
        win = ", ".join(f"{k}={v}" for k, v in sorted(winners.items()))
        fails: dict[str, int] = {}
        for x in r.results:
            if not x.ok:
                key = x.error.split(":")[0] if x.error else "?"
                fails[key] = fails.get(key, 0) + 1
        fail = ", ".join(f"{k}={v}" for k, v in sorted(fails.items())) or "none"
        share = float(r.ledger.cancelled_cost / r.ledger.cost) if r.ledger.cost else 0.0
        print(f"  {r.name}:")
        print(f"    attempts {att}; roles {roles}; cancelled losers = {share:.1%} of spend")
        print(f"    winners {win}; failures {fail}")
        print(
            f"    ledger calls {r.ledger.calls}/{r.n} (unknown cost {r.ledger.unknown_cost_calls}),"
            f" streamed usage.cost total {r.streamed_cost * 1e6:.0f} u$ vs ledger {float(r.ledger.cost) * 1e6:.0f} u$;"
            f" wall {r.wall_s:.1f}s, peak in flight {r.peak_in_flight},"
            f" CPU gateway {r.gateway_cpu_s:.1f}s sim {r.sim_cpu_s:.1f}s"
        )


def verdict(ok: bool | None) -> str:
    return "n/a   " if ok is None else ("MET   " if ok else "MISSED")


def print_targets(by: dict[str, RunFigures], primary: str) -> None:
    print()
    print("targets (routing issue), as measured:")
    down = by.get("chain_down")
    if down is not None:
        print(
            f"  [{verdict(down.success == 1.0)}] one of three providers down: the fallback chain served"
            f" {len(down.ok)}/{down.n} calls ({down.success:.1%}; target 100%)"
        )
    singles = [r for k, r in by.items() if k.startswith("single_")]
    best = min(singles, key=lambda r: r.ttft(0.99)) if singles else None
    race = by.get("race2")
    if race is not None and best is not None:
        ratio = race.ttft(0.99) / best.ttft(0.99)
        print(
            f"  [{verdict(ratio <= 0.5)}] race of 2: p99 TTFT {ms(race.ttft(0.99))} ms vs {ms(best.ttft(0.99))} ms for the"
            f" better single provider ({best.name}): x{ratio:.2f} (target <= x0.50)"
        )
    hedge = by.get("hedge2")
    base = by.get(primary)
    if hedge is not None and base is not None and best is not None:
        extra = hedge.cost_per_ok / base.cost_per_ok - 1
        race_extra = (
            f" (the race: {race.cost_per_ok / base.cost_per_ok - 1:+.1%})" if race is not None else ""
        )
        gain_h = best.ttft(0.99) - hedge.ttft(0.99)
        gain_r = best.ttft(0.99) - race.ttft(0.99) if race is not None else math.nan
        if gain_r > 0:
            kept = gain_h / gain_r
            gain_ok: bool | None = kept >= 0.5
            gain_txt = f"keeps {kept:.0%} of the race's p99 TTFT gain (target: most, >= 50%)"
        else:
            gain_ok = None
            gain_txt = "the race has no p99 TTFT gain to keep"
        gain_txt += f"; hedge p99 TTFT {ms(hedge.ttft(0.99))} ms = x{hedge.ttft(0.99) / best.ttft(0.99):.2f} of {best.name}"
        print(
            f"  [{verdict(extra < 0.15)}] hedge: extra cost {extra:+.1%} per successful call vs {base.name}"
            f" (target < +15%){race_extra}"
        )
        print(f"  [{verdict(gain_ok)}] hedge: {gain_txt}")


# ------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=400, help="calls per run (default 400)")
    ap.add_argument("--rate", type=float, default=16.0, help="mean arrivals per second (default 16)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sim-config", type=Path, default=HERE / "routing_sim.toml")
    ap.add_argument(
        "--hedge-ms",
        default="p90",
        help="hedge delay: a number of ms, or pNN = that percentile of the primary's TTFT measured"
        " in its single-provider run (default p90)",
    )
    ap.add_argument("--down-mode", choices=["503", "refused"], default="503")
    ap.add_argument("--no-storms", action="store_true", help="heavy tails only, no error storms")
    ap.add_argument(
        "--only",
        action="append",
        choices=["single_groq", "single_cerebras", "chain", "race2", "hedge2", "chain_down"],
    )
    ap.add_argument("--json", type=Path, help="also write per-run figures here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, ledgers)")
    ap.add_argument("--dump", type=Path, help="write every call's result here (JSON lines)")
    a = ap.parse_args()

    raw = tomllib.loads(a.sim_config.read_text())
    storm_spec = raw.pop("storms", {})
    sim_seed = raw.get("seed")
    stream = make_stream(a.calls, a.rate, a.seed)
    horizon = stream[-1].at + 30.0
    storms = [] if a.no_storms else make_storms(storm_spec, horizon, a.seed)

    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-routing-"))
    sim_toml = tmp / "sim.toml"
    sim_toml.write_text(dump_sim_toml(raw))
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = start([*fareway_cmd(), "sim", "--config", str(sim_toml), "--port", str(sim_port)], clean_env({}))

    wanted = a.only or ["single_groq", "single_cerebras", "chain", "race2", "hedge2", "chain_down"]
    primary = "single_groq"
    runs: dict[str, RunFigures] = {}
    hedge_ms_used: float | None = None
    t_start = time.monotonic()
    print(
        f"# {a.calls} streaming calls per run, Poisson arrivals at {a.rate:g}/s (seed {a.seed}), sim seed {sim_seed},"
        f" {len(storms)} storms over {stream[-1].at:.0f}s: "
        + ", ".join(
            f"{s.provider} {s.kind} {s.start:.1f}-{s.end:.1f}s" for s in storms if s.start < stream[-1].at
        )
    )
    try:
        wait_port(sim_port, sim)
        chain = {"strategy": "fallback", "targets": [GROQ, CEREBRAS, DEEPINFRA]}
        for name in ["single_groq", "single_cerebras", "chain", "race2", "hedge2", "chain_down"]:
            if name not in wanted:
                continue
            if name == "single_groq":
                strat = Strategy(name, GROQ)
            elif name == "single_cerebras":
                strat = Strategy(name, CEREBRAS)
            elif name == "chain":
                strat = Strategy(name, chain)
            elif name == "race2":
                strat = Strategy(name, {"strategy": "race", "targets": [GROQ, CEREBRAS]})
            elif name == "hedge2":
                hedge_ms_used = hedge_delay(a.hedge_ms, runs.get(primary))
                strat = Strategy(
                    name, {"strategy": "hedge", "hedge_ms": hedge_ms_used, "targets": [GROQ, CEREBRAS]}
                )
            else:
                strat = Strategy(name, chain, down="groq")
            t = time.monotonic()
            runs[name] = run_strategy(strat, stream, storms, sim, sim_url, tmp, a.down_mode)
            r = runs[name]
            print(
                f"  {name}: {r.success:.1%} ok, p99 TTFT {ms(r.ttft(0.99))} ms ({time.monotonic() - t:.0f}s)",
                flush=True,
            )
    finally:
        stop(sim)
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if hedge_ms_used is not None:
        print(f"\nhedge delay: {hedge_ms_used:g} ms ({a.hedge_ms} of {primary}'s measured TTFT when 'pNN')")
    ordered = list(runs.values())
    print_table(ordered, runs.get(primary))
    print_details(ordered)
    print_targets(runs, primary)
    print(f"\ntotal time {time.monotonic() - t_start:.0f}s")
    if a.json:
        a.json.write_text(json.dumps({k: summary(r) for k, r in runs.items()}, indent=2))
    if a.dump:
        with a.dump.open("w") as fh:
            for name, r in runs.items():
                for x in r.results:
                    row = {"run": name, "i": x.i, "at": stream[x.i].at, "ok": x.ok, "status": x.status}
                    row |= {"ttft": x.ttft, "total": x.total, "provider": x.provider, "route": x.route}
                    row |= {"cost": None if x.cost is None else str(x.cost), "error": x.error}
                    fh.write(json.dumps(row) + "\n")


def hedge_delay(spec: str, primary: RunFigures | None) -> float:
    if not spec.startswith("p"):
        return float(spec)
    q = float(spec[1:]) / 100
    if primary is None or not primary.ok:
        print("no single-provider run of the primary to take the hedge delay from; using 1000 ms")
        return 1000.0
    return float(round(primary.ttft(q) * 1000 / 10) * 10)


def summary(r: RunFigures) -> dict[str, Any]:
    return {
        "route": r.describe,
        "calls": r.n,
        "success": r.success,
        "ttft_p50_s": r.ttft(0.5),
        "ttft_p99_s": r.ttft(0.99),
        "total_p50_s": r.total(0.5),
        "total_p99_s": r.total(0.99),
        "cost_per_call_usd": r.cost_per_call,
        "cost_per_ok_usd": r.cost_per_ok,
        "attempts": r.ledger.attempts,
    }


def dump_sim_toml(data: dict[str, Any]) -> str:
    """The simulator part of the config back to TOML (top-level scalars, then provider tables)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict | list)]
    for name, table in (data.get("providers") or {}).items():
        lines.append(f"[providers.{name}]")
        for k, v in table.items():
            if k == "models":
                continue
            lines.append(f"{k} = {toml_value(v)}")
        for model, mt in (table.get("models") or {}).items():
            lines.append(f"[providers.{name}.models.{json.dumps(model)}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in mt.items()]
    for f in data.get("faults") or []:
        lines.append("[[faults]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in f.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
