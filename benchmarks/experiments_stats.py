"""The experiments' statistics over many seeded simulated pairs (no HTTP): how often the always-valid
interval covers the true win rate at every step of a run, and how often a winner is declared at a
true tie when the decision is read after every pair, next to a fixed-sample z-test read the same
way.  The pairs go through the gateway's judge prompt, the simulator's judge (sim/judge.py), the
strict verdict reader and the both-orders rule, as in tests/test_experiments_stats.py.

    python benchmarks/experiments_stats.py                 # 500 runs of 500 pairs each
    python benchmarks/experiments_stats.py --runs 1000 --pairs 1000
"""

from __future__ import annotations

import argparse
import math

from fareway.experiments.judge import as_variant, judge_request
from fareway.experiments.stats import Tally, combine, decide
from fareway.sim.content import lorem
from fareway.sim.judge import JudgeSpec, letter


def _hint(req: object) -> str:
    msgs = req.messages  # type: ignore[attr-defined]
    return str(msgs[0].text() + "\n" + msgs[-1].text())


def pair(spec: JudgeSpec, seed: int, i: int) -> tuple[str, bool]:
    body = "".join(lorem(i, 14))
    control, challenger = f"[control] {body}", f"[challenger] {body}"
    convo = f"[user]\nquestion number {i}: what should I do?"
    l1 = letter(spec, _hint(judge_request("j", convo, control, challenger)), seed)
    l2 = letter(spec, _hint(judge_request("j", convo, challenger, control)), seed)
    return combine(as_variant(l1, True), as_variant(l2, False))


def naive_rejects(xs: list[float]) -> bool:
    s = s2 = 0.0
    for n, x in enumerate(xs, 1):
        s += x
        s2 += x * x
        if n >= 10:
            mean = s / n
            var = max(s2 / n - mean * mean, 1e-12)
            if abs(mean - 0.5) > 1.96 * math.sqrt(var / n):
                return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--pairs", type=int, default=500)
    a = ap.parse_args()
    print(f"# {a.runs} seeded runs of {a.pairs} pairs each, alpha = 0.05, margin = 0.05")
    print(
        f"{'judge (preference p, position bias b, tie t)':<46} {'true win rate':>13} {'covered at every n':>19} {'mean final':>10} {'inconsistent':>12}"
    )
    for p, b, t in ((0.7, 0.0, 0.0), (0.7, 0.2, 0.0), (0.35, 0.2, 0.0), (0.8, 0.1, 0.2), (0.5, 0.45, 0.0)):
        truth = t / 2 + (1 - t) * (b / 2 + p * (1 - b))
        spec = JudgeSpec(prefer="[challenger]", over="[control]", preference=p, position_bias=b, tie=t)
        covered = 0
        finals = incons = 0.0
        for seed in range(a.runs):
            tally = Tally(0.05)
            ok = True
            for i in range(a.pairs):
                tally.add(*pair(spec, seed, i))
                lo, hi = tally.cs.interval
                ok = ok and lo <= truth <= hi
            covered += ok
            finals += tally.win_rate or 0.0
            incons += tally.inconsistency_rate or 0.0
        print(
            f"{f'p={p}, b={b}, t={t}':<46} {truth:>13.3f} {covered / a.runs:>19.1%} {finals / a.runs:>10.3f} "
            f"{incons / a.runs:>12.1%}"
        )
    spec = JudgeSpec(prefer="[challenger]", over="[control]", preference=0.5)
    declared = naive = 0
    for seed in range(a.runs):
        tally = Tally(0.05)
        scores: list[float] = []
        winner = False
        for i in range(a.pairs):
            outcome, consistent = pair(spec, seed, i)
            tally.add(outcome, consistent)
            scores.append({"win": 1.0, "loss": 0.0}.get(outcome, 0.5))
            d = decide(tally, 0.05, 0.5, estimate=False)
            winner = winner or d.code == "control_better" or d.challenger_better
        declared += winner
        naive += naive_rejects(scores)
    print(
        f"true tie, decision read after every pair: a winner declared in {declared / a.runs:.1%} of runs "
        f"(always-valid interval); a fixed-sample 95% z-test read the same way: {naive / a.runs:.1%}"
    )


if __name__ == "__main__":
    main()
