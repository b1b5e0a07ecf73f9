"""Response headers of budgets and rate limits.

Rate limits, as OpenAI sends them (WIRE.md; the recorded values look like ``4ms``, ``6m0s``)::

    x-ratelimit-limit-requests      x-ratelimit-limit-tokens
    x-ratelimit-remaining-requests  x-ratelimit-remaining-tokens
    x-ratelimit-reset-requests      x-ratelimit-reset-tokens     (Go-style durations)

When both the key and its team limit requests (or tokens), the one with less remaining is shown.

Budgets (Fareway's own): ``x-fareway-budget-remaining-usd``, ``x-fareway-budget-limit-usd``,
``x-fareway-budget-window`` (``daily``, ``monthly``, ``total``) and ``x-fareway-budget-scope``
(``key`` or ``team``), for the budget with the least remaining.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

from fareway.limits.store import NANO, Level


def go_duration(seconds: float) -> str:
    """``0s``, ``4ms``, ``1.5s``, ``59s``, ``6m0s``, ``1h2m3s`` (as Go's time.Duration prints)."""
    if seconds <= 0 or not math.isfinite(seconds):
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m}m{s}s" if h else f"{m}m{s}s"


def usd(nano: int) -> str:
    """Nano-dollars (at least 0) as a plain decimal USD string: ``1.5``, ``0.000001``, ``0``."""
    whole, frac = divmod(max(0, nano), NANO)
    return str(whole) if not frac else f"{whole}.{frac:09d}".rstrip("0")


def to_nano(amount: Decimal) -> int:
    """USD to nano-dollars, rounded up (a reservation or a charge never rounds down to nothing)."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def _tightest(levels: list[Level], suffix: str) -> Level | None:
    found = [lv for lv in levels if lv.bucket.kind == "window" and lv.bucket.key.endswith(suffix)]
    return min(found, key=lambda lv: lv.remaining) if found else None


def rate_headers(levels: list[Level]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for suffix, name in ((":rpm", "requests"), (":tpm", "tokens")):
        lv = _tightest(levels, suffix)
        if lv is not None:
            out += [
                (f"x-ratelimit-limit-{name}", str(lv.bucket.limit)),
                (f"x-ratelimit-remaining-{name}", str(lv.remaining)),
                (f"x-ratelimit-reset-{name}", go_duration(lv.reset_s)),
            ]
    return out


def budget_headers(levels: list[Level]) -> list[tuple[str, str]]:
    found = [lv for lv in levels if lv.bucket.kind == "budget"]
    if not found:
        return []
    lv = min(found, key=lambda lv: lv.remaining)
    _, scope, _, window, _ = lv.bucket.key.split(":", 4)
    return [
        ("x-fareway-budget-remaining-usd", usd(lv.remaining)),
        ("x-fareway-budget-limit-usd", usd(lv.bucket.limit)),
        ("x-fareway-budget-window", window),
        ("x-fareway-budget-scope", scope),
    ]
