"""One experiment's results, the same for ``GET /v1/experiments/NAME``, ``fareway experiments
show`` and the dashboard: a plain dict (JSON-ready) built from the settings, the state row, the
judged pairs in order and the per-variant numbers, and its text form for the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fareway.experiments.queries import VariantStats, money_text
from fareway.experiments.settings import ExperimentSettings
from fareway.experiments.stats import Tally, decide
from fareway.experiments.store import COUNTERS, PairRecord

MAX_POINTS = 200
"""The interval-over-time series is thinned to between this many and twice as many points."""


@dataclass(slots=True)
class State:
    """What the results are made of (besides the pairs and the ledger's numbers)."""

    settings: ExperimentSettings
    source: str = "config"
    status: str = "running"
    promoted_to: str | None = None
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    spend: Decimal = Decimal(0)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    in_flight: int = 0


class History:
    """The judged pairs of one experiment folded in order: the tally (and so the interval and the
    decision) and the interval over time, thinned as it grows (every ``stride``-th valid pair, the
    stride doubling whenever the points pass twice MAX_POINTS), so neither grows with the pairs."""

    def __init__(self, settings: ExperimentSettings) -> None:
        self.tally = Tally(settings.alpha)
        self._points: list[dict[str, Any]] = []
        self._stride = 1
        self._last: dict[str, Any] | None = None

    @classmethod
    def of(cls, settings: ExperimentSettings, pairs: list[PairRecord]) -> History:
        h = cls(settings)
        for p in pairs:
            h.add(p)
        return h

    def add(self, pair: PairRecord) -> None:
        self.tally.add(pair.outcome, pair.consistent)
        if pair.outcome not in ("win", "loss", "tie"):
            return
        t = self.tally
        lo, hi = t.cs.interval
        point = {
            "pairs": t.pairs,
            "time": pair.time.isoformat(),
            "win_rate": _r(t.win_rate),
            "lower": _r(lo),
            "upper": _r(hi),
        }
        self._last = point
        if t.pairs % self._stride == 0:
            self._points.append(point)
            if len(self._points) > 2 * MAX_POINTS:
                self._points = self._points[1::2]
                self._stride *= 2

    def series(self) -> list[dict[str, Any]]:
        """The win rate and its interval after each judged pair (thinned; the latest always in)."""
        out = list(self._points)
        if self._last is not None and (not out or out[-1]["pairs"] != self._last["pairs"]):
            out.append(self._last)
        return out


def tally_of(settings: ExperimentSettings, pairs: list[PairRecord]) -> Tally:
    return History.of(settings, pairs).tally


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def summarize(
    state: State,
    history: History,
    variants: dict[str, VariantStats] | None = None,
    *,
    with_series: bool = False,
) -> dict[str, Any]:
    s = state.settings
    t = history.tally
    d = decide(t, s.margin, s.max_inconsistency)
    lo, hi = t.cs.interval
    budget = Decimal(str(s.judge_budget_usd))
    out: dict[str, Any] = {
        "name": s.name,
        "model": s.model,
        "mode": s.mode,
        "control": s.control,
        "challenger": s.challenger,
        "judge": s.judge,
        "source": state.source,
        "status": state.status,
        "promoted_to": state.promoted_to,
        "settings": {
            "split": s.split,
            "sticky": s.sticky,
            "sample": s.sample,
            "margin": s.margin,
            "alpha": s.alpha,
            "judge_budget_usd": s.judge_budget_usd,
            "max_concurrent": s.max_concurrent,
            "timeout": s.timeout,
            "max_inconsistency": s.max_inconsistency,
        },
        "pairs": {
            "judged": t.pairs,
            "wins": t.wins,
            "ties": t.ties,
            "losses": t.losses,
            "unparseable": t.unparseable,
            "errors": t.errors,
            "order_inconsistent": t.inconsistent,
            "order_inconsistency_rate": _r(t.inconsistency_rate),
            "in_flight": state.in_flight,
        },
        "win_rate": _r(t.win_rate),
        "interval": {
            "lower": _r(lo),
            "upper": _r(hi),
            "confidence": round(1 - s.alpha, 6),
            "kind": "always-valid confidence sequence (predictable plug-in empirical Bernstein)",
        },
        "decision": {
            "code": d.code,
            "text": d.text,
            "winner": d.winner,
            "winner_model": s.arm_model(d.winner) if d.winner else None,
            "challenger_better": d.challenger_better,
            "more_pairs": d.more_pairs,
        },
        "calls": {
            "control": state.counters.get("calls_control", 0),
            "challenger": state.counters.get("calls_challenger", 0),
            "sampled": state.counters.get("sampled", 0),
            "dropped": state.counters.get("dropped", 0),
            "over_budget": state.counters.get("over_budget", 0),
        },
        "spend": {
            "judge_and_shadow_usd": money_text(state.spend),
            "budget_usd": money_text(budget),
            "remaining_usd": money_text(max(Decimal(0), budget - state.spend)),
            "unpriced_calls": state.counters.get("unpriced", 0),
        },
        "variants": {k: v.as_dict() for k, v in (variants or {}).items()},
        "warnings": list(state.warnings),
        "notes": list(state.notes),
    }
    if with_series:
        out["series"] = history.series()
    return out


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The list form: no per-variant numbers, no series."""
    keep = ("name", "model", "mode", "control", "challenger", "judge", "status", "promoted_to", "win_rate")
    out = {k: summary[k] for k in keep}
    out["pairs"] = summary["pairs"]["judged"]
    out["interval"] = [summary["interval"]["lower"], summary["interval"]["upper"]]
    out["decision"] = summary["decision"]["text"]
    out["spend_usd"] = summary["spend"]["judge_and_shadow_usd"]
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}ms"


def text(summary: dict[str, Any]) -> str:
    """``fareway experiments show NAME`` without --json."""
    s = summary
    p = s["pairs"]
    iv = s["interval"]
    lines = [
        f"experiment {s['name']} ({s['mode']}, {s['status']}"
        + (f", promoted to {s['promoted_to']}" if s["promoted_to"] else "")
        + ")",
        f"  model {s['model']}: control {s['control']}  challenger {s['challenger']}  judge {s['judge']}",
        f"  pairs judged {p['judged']}: wins {p['wins']}, ties {p['ties']}, losses {p['losses']}"
        f"  (unparseable {p['unparseable']}, errors {p['errors']}, in flight {p['in_flight']})",
        f"  order inconsistency {_pct(p['order_inconsistency_rate'])} of pairs",
        f"  challenger win rate {_pct(s['win_rate'])}, {iv['confidence']:.0%} always-valid interval "
        f"[{_pct(iv['lower'])}, {_pct(iv['upper'])}]  margin {s['settings']['margin']:.1%}",
        f"  decision: {s['decision']['text']}",
        f"  calls: control {s['calls']['control']}, challenger {s['calls']['challenger']}, sampled "
        f"{s['calls']['sampled']}, dropped {s['calls']['dropped']}, over budget {s['calls']['over_budget']}",
        f"  judge + shadow spend ${s['spend']['judge_and_shadow_usd']} of ${s['spend']['budget_usd']}"
        + (f" ({s['spend']['unpriced_calls']} unpriced calls)" if s["spend"]["unpriced_calls"] else ""),
    ]
    for name, v in s["variants"].items():
        per = v["cost_per_call_usd"]
        lines.append(
            f"  {name:<10} calls {v['calls']:>6}  cost/call {'$' + per if per is not None else '-':<14} "
            f"ttft p50 {_ms(v['ttft_p50_ms'])} p95 {_ms(v['ttft_p95_ms'])}  "
            f"total p50 {_ms(v['latency_p50_ms'])} p95 {_ms(v['latency_p95_ms'])}  errors {_pct(v['error_rate'])}"
        )
    for w in s["warnings"]:
        lines.append(f"  warning: {w}")
    for n in s["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
