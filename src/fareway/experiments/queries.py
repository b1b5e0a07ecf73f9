"""Per-variant numbers from the ledger: cost per call, time to first token and total latency
(p50, p95) and error rate, from the ``calls`` rows an experiment tagged (``experiment``,
``experiment_role``).

A variant's calls are the callers' calls it served plus the experiment's background runs of it
(``shadow-control`` / ``shadow-challenger``): in shadow mode the challenger has only the latter.
Latency percentiles are over successful calls; the error rate is errors over ok + error calls
(a caller who went away is neither); the cost per call is over calls with a known price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fareway.ledger.base import Store

_VARIANT = (
    "CASE WHEN experiment_role IN ('control', 'shadow-control') THEN 'control' "
    "WHEN experiment_role IN ('challenger', 'shadow-challenger') THEN 'challenger' "
    "ELSE experiment_role END"
)


@dataclass(slots=True)
class VariantStats:
    variant: str
    """``control``, ``challenger`` or ``judge``."""
    calls: int = 0
    background: int = 0
    """Of ``calls``, the experiment's own (shadow runs, verdicts)."""
    errors: int = 0
    cancelled: int = 0
    cost: Decimal = Decimal(0)
    priced: int = 0
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        done = self.calls - self.cancelled
        return None if done <= 0 else self.errors / done

    @property
    def cost_per_call(self) -> Decimal | None:
        return None if self.priced == 0 else self.cost / self.priced

    def as_dict(self) -> dict[str, Any]:
        per = self.cost_per_call
        return {
            "calls": self.calls,
            "background_calls": self.background,
            "errors": self.errors,
            "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
            "cost_usd": money_text(self.cost),
            "cost_per_call_usd": None if per is None else money_text(per),
            "unpriced_calls": self.calls - self.priced,
            "ttft_p50_ms": _ms(self.ttft_p50_ms),
            "ttft_p95_ms": _ms(self.ttft_p95_ms),
            "latency_p50_ms": _ms(self.latency_p50_ms),
            "latency_p95_ms": _ms(self.latency_p95_ms),
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(float(v), 1)


def money_text(d: Decimal) -> str:
    q = d.quantize(Decimal("1e-10")).normalize()
    s = format(q, "f")
    return "0" if s in ("-0", "") else s


async def variant_stats(store: Store, experiment: str) -> dict[str, VariantStats]:
    """``{"control": ..., "challenger": ..., "judge": ...}`` for ``experiment`` (the variants
    with no call yet are present with zeros)."""
    d = store.dialect
    ok_ttft = "CASE WHEN outcome = 'ok' THEN ttft_ms END"
    ok_latency = "CASE WHEN outcome = 'ok' THEN latency_ms END"
    sql = (
        f"SELECT {_VARIANT} AS variant, COUNT(*), "
        "SUM(CASE WHEN experiment_role LIKE 'shadow-%' OR experiment_role = 'judge' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN outcome = 'cancelled' THEN 1 ELSE 0 END), "
        f"{d.money_sum('cost')}, SUM(CASE WHEN cost IS NOT NULL THEN 1 ELSE 0 END), "
        f"{d.percentile(ok_ttft, 0.5)}, {d.percentile(ok_ttft, 0.95)}, "
        f"{d.percentile(ok_latency, 0.5)}, {d.percentile(ok_latency, 0.95)} "
        f"FROM calls WHERE experiment = {d.ph(1)} GROUP BY {_VARIANT}"
    )
    rows = await store.fetch(sql, [experiment])
    out = {v: VariantStats(v) for v in ("control", "challenger", "judge")}
    for r in rows:
        name = str(r[0])
        out[name] = VariantStats(
            variant=name,
            calls=int(r[1] or 0),
            background=int(r[2] or 0),
            errors=int(r[3] or 0),
            cancelled=int(r[4] or 0),
            cost=Decimal(str(r[5])) if r[5] is not None else Decimal(0),
            priced=int(r[6] or 0),
            ttft_p50_ms=r[7],
            ttft_p95_ms=r[8],
            latency_p50_ms=r[9],
            latency_p95_ms=r[10],
        )
    return out
