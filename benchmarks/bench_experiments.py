"""The caller's latency with and without a shadow experiment, in one run.

Starts the provider simulator with realistic small latencies (the control answers 64 tokens after
20 ms at 2,000 tokens/s, the challenger after 10 ms, the judge after 50 ms) and a simulated judge,
then Fareway (pinned to one core) in turn without an experiment and with a shadow experiment on
the model name the load calls (judging 20 % and 100 % of calls), interleaved over ``--repeat``
rounds.  The same closed-loop load (``--connections`` callers, each sending its next call when the
last one is answered) drives each; the caller's p50 and p99 latency are printed per variant, with
the pairs the experiment judged and dropped, so the background work is shown to have happened.

    python benchmarks/bench_experiments.py                    # 5 s per variant per round, 2 rounds
    python benchmarks/bench_experiments.py --duration 10 --connections 16 --repeat 3

The experiment's background calls (the challenger's answer and two verdicts per judged call) run
on the gateway's event loop, off the request path: what they can cost the caller is CPU time on
that loop, which is what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gateway import KEY, fareway_cmd, free_port, pinned, start, stop, wait_port  # noqa: E402

SIM_TOML = """
seed = 1
[providers.openai.models."gpt-4o"]
ttft = 0.02
tokens_per_s = 2000
output_tokens = 64
signature = "[control]"
[providers.groq.models."llama-3.3-70b-versatile"]
ttft = 0.01
tokens_per_s = 4000
output_tokens = 64
signature = "[challenger]"
[providers.anthropic.models."claude-sonnet-4-5"]
ttft = 0.05
tokens_per_s = 1000
[judges."claude-sonnet-4-5"]
prefer = "[challenger]"
over = "[control]"
preference = 0.6
position_bias = 0.1
"""

EXPERIMENT = """
[experiments.support]
model = "support"
mode = "shadow"
control = "openai/gpt-4o"
challenger = "groq/llama-3.3-70b-versatile"
judge = "anthropic/claude-sonnet-4-5"
sample = {sample}
judge_budget_usd = 1000.0
max_concurrent = 64
"""


async def _load(url: str, seconds: float, conns: int) -> tuple[list[float], int]:
    import aiohttp

    lat: list[float] = []
    bad = 0
    deadline = time.monotonic() + seconds
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def caller(c: int) -> None:
            nonlocal bad
            i = 0
            while time.monotonic() < deadline:
                payload = {
                    "model": "support",
                    "user": f"user-{c}",
                    "messages": [{"role": "user", "content": f"caller {c} question {i}: what now?"}],
                }
                i += 1
                t = time.perf_counter()
                async with s.post(url, json=payload, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        bad += 1
                lat.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(caller(c) for c in range(conns)))
    return lat, bad


def _get(url: str) -> dict[str, object]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fareway-bench-exp-"))
    fareway = fareway_cmd()
    (tmp / "sim.toml").write_text(SIM_TOML)
    sim_port = free_port()
    sim = start(pinned([*fareway, "sim", "--port", str(sim_port), "--config", str(tmp / "sim.toml")], 1))
    variants = [("without experiment", None), ("shadow, sample 0.2", 0.2), ("shadow, sample 1.0", 1.0)]
    lat: dict[str, list[float]] = {n: [] for n, _ in variants}
    p50s: dict[str, list[float]] = {n: [] for n, _ in variants}
    p99s: dict[str, list[float]] = {n: [] for n, _ in variants}
    bad: dict[str, int] = dict.fromkeys(lat, 0)
    judged: dict[str, list[str]] = {n: [] for n, _ in variants}
    try:
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        for rnd in range(a.repeat):
            for name, sample in variants:
                port = free_port()
                state = tmp / f"state-{rnd}-{sample}"
                cfg = tmp / f"gw-{rnd}-{sample}.toml"
                providers = "".join(
                    f'[providers.{p}]\nbase_url = "{sim_url}/{p}{suffix}"\napi_key = "sim"\n'
                    for p, suffix in (("openai", "/v1"), ("groq", "/v1"), ("anthropic", ""))
                )
                text = f'[server]\nstate_dir = "{state}"\n{providers}[aliases]\nsupport = "openai/gpt-4o"\n'
                if sample is not None:
                    text += EXPERIMENT.format(sample=sample)
                cfg.write_text(text)
                proc = start(
                    pinned([*fareway, "serve", "--config", str(cfg), "--port", str(port)], 0),
                    {"FAREWAY_MASTER_KEY": KEY},
                )
                try:
                    wait_port(port)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    asyncio.run(_load(url, 1.0, a.connections))  # warm-up
                    xs, b = asyncio.run(_load(url, a.duration, a.connections))
                    lat[name] += xs
                    bad[name] += b
                    q = statistics.quantiles(xs, n=100)
                    p50s[name].append(q[49])
                    p99s[name].append(q[98])
                    if sample is not None:
                        time.sleep(1.5)  # let the last pairs finish and the state be written
                        e = _get(f"http://127.0.0.1:{port}/v1/experiments/support")
                        pairs, calls = e["pairs"], e["calls"]
                        assert isinstance(pairs, dict) and isinstance(calls, dict)
                        judged[name].append(
                            f"{pairs['judged']} judged, {calls['dropped']} dropped of {calls['sampled']} sampled"
                        )
                finally:
                    stop(proc)
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    if "Traceback" in err:
                        print(err[-3000:], file=sys.stderr)
    finally:
        stop(sim)

    print(
        f"# caller latency, {a.connections} closed-loop callers, {a.duration:g}s per variant x {a.repeat} rounds "
        "(interleaved); gateway pinned to core 0, simulator on core 1; shared machine"
    )
    print(
        f"{'variant':<22} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8}   per-round p50 / p99 ms      experiment"
    )
    for name, _ in variants:
        xs = lat[name]
        q = statistics.quantiles(xs, n=100)
        rounds = ", ".join(f"{p:.1f}/{r:.1f}" for p, r in zip(p50s[name], p99s[name], strict=True))
        note = "; ".join(judged[name]) or "-"
        print(f"{name:<22} {len(xs):>7} {q[49]:>8.2f} {q[98]:>8.2f}   {rounds:<27} {note}")
        if bad[name]:
            print(f"  {bad[name]} non-200 answers")


if __name__ == "__main__":
    main()
