"""The statistics of an experiment: an always-valid interval for the challenger's win rate, the
tally of judged pairs, and the decision.

Each judged pair scores the challenger 1 (both orders prefer it), 0 (both prefer the control) or
1/2 (a tie: the judge said tie, or the two orders disagree).  The *win rate* is the mean score,
``(wins + ties / 2) / pairs``; 0.5 means the judge cannot tell the two apart.

Why a confidence sequence.  The results are watched while they come in, and a decision is read
off them whenever someone looks.  A fixed-sample interval checked after every pair declares a
difference far more often than its nominal 5 % (the false-positive rate grows without bound as
the looks go on; 25 % and more at realistic lengths).  A *confidence sequence* is a sequence of
intervals ``C_1, C_2, ...`` that covers the true mean at *every* n at once with probability at
least ``1 - alpha``, so it may be checked after every pair, and an experiment stopped whenever
it is decisive, without inflating the error rate.

The interval is the predictable plug-in empirical-Bernstein confidence sequence of

    Ian Waudby-Smith and Aaditya Ramdas, "Estimating means of bounded random variables by
    betting", Journal of the Royal Statistical Society Series B 86(1), 2024, pp. 1-27
    (arXiv:2010.09686), Theorem 2 (the PrPl-EB CS, eqs. (13)-(15)).

For observations ``X_i`` in [0, 1] with (conditional) mean ``m``, with

    mu_t      = (1/2 + sum_{i<=t} X_i) / (t + 1)                      mu_0 = 1/2
    sigma2_t  = (1/4 + sum_{i<=t} (X_i - mu_i)^2) / (t + 1)           sigma2_0 = 1/4
    lambda_t  = min( sqrt( 2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)) ), c )      c = 1/2
    v_t       = 4 (X_t - mu_{t-1})^2
    psi(l)    = (-log(1 - l) - l) / 4

the intervals

    C_t = sum(lambda_i X_i) / sum(lambda_i)  +-  (log(2/alpha) + sum(v_i psi(lambda_i))) / sum(lambda_i)

form a (1 - alpha) confidence sequence for ``m``.  Validity holds for any predictable choice of
``lambda_i`` in [0, 1) (the tuning above only makes it tight); the running intersection of a
confidence sequence is again one, which is what :class:`ConfidenceSequence` reports.  Every
update is O(1).  (Written from the paper's formulas; no code was copied.)

The decision, with the non-inferiority ``margin``:

* the lower bound above ``0.5 - margin``: **challenger not worse within the margin** (it is
  *better* when the lower bound is above 0.5 too);
* the upper bound below 0.5: **control better**;
* otherwise **keep collecting**, with an estimate of how many more pairs a decision takes at the
  current win rate and spread (projected from the same formula, not a guarantee).

A judge that contradicts itself under swapped order on more than ``max_inconsistency`` of the
pairs (once there are 10) gives no decision at all (its verdicts are mostly position bias: every pair is a tie, and
"not worse" would follow from nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["control", "challenger", "tie", "unparseable", "error"]
"""One order's verdict, in terms of the variants."""
Outcome = Literal["win", "loss", "tie", "unparseable", "error"]
"""A pair's outcome, from the challenger's side."""
SCORE: dict[str, float] = {"win": 1.0, "tie": 0.5, "loss": 0.0}
LAMBDA_CAP = 0.5


def psi_e(lam: float) -> float:
    """The paper's ``psi_E(lambda) = (-log(1 - lambda) - lambda) / 4``."""
    return (-math.log1p(-lam) - lam) / 4.0


class ConfidenceSequence:
    """A two-sided (1 - alpha) confidence sequence for the mean of [0, 1] observations (PrPl-EB,
    see the module docstring)."""

    __slots__ = ("_hi", "_lo", "alpha", "log_term", "n", "sum_l", "sum_lx", "sum_sq", "sum_vpsi", "sum_x")

    def __init__(self, alpha: float = 0.05) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        self.alpha = alpha
        self.log_term = math.log(2.0 / alpha)
        self.n = 0
        self.sum_x = 0.0
        self.sum_sq = 0.0
        self.sum_l = 0.0
        self.sum_lx = 0.0
        self.sum_vpsi = 0.0
        self._lo = 0.0
        self._hi = 1.0

    def mu_hat(self) -> float:
        return (0.5 + self.sum_x) / (self.n + 1)

    def sigma2_hat(self) -> float:
        return (0.25 + self.sum_sq) / (self.n + 1)

    def _lambda(self, t: int, sigma2: float) -> float:
        return min(math.sqrt(2.0 * self.log_term / (sigma2 * t * math.log1p(t))), LAMBDA_CAP)

    def add(self, x: float) -> None:
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"an observation must be in [0, 1], not {x!r}")
        t = self.n + 1
        mu_prev = self.mu_hat()
        lam = self._lambda(t, self.sigma2_hat())
        self.sum_l += lam
        self.sum_lx += lam * x
        self.sum_vpsi += 4.0 * (x - mu_prev) ** 2 * psi_e(lam)
        self.n = t
        self.sum_x += x
        self.sum_sq += (x - self.mu_hat()) ** 2
        center = self.sum_lx / self.sum_l
        width = (self.log_term + self.sum_vpsi) / self.sum_l
        self._lo = max(self._lo, center - width)
        self._hi = min(self._hi, center + width)
        if self._lo > self._hi:  # the running intersection emptied: an event of probability < alpha
            mid = (self._lo + self._hi) / 2.0
            self._lo = self._hi = mid

    @property
    def interval(self) -> tuple[float, float]:
        """(lower, upper), inside [0, 1]; (0, 1) before any observation."""
        return max(0.0, self._lo), min(1.0, self._hi)

    def more_for_width(self, half_width: float, cap: int = 10_000_000) -> int | None:
        """About how many more observations until the half width is below ``half_width``, if they
        keep the current spread (None: not within ``cap``).  A projection for "keep collecting"."""
        if half_width <= 0.0:
            return None
        sigma2 = self.sigma2_hat()
        sum_l, sum_vpsi, t = self.sum_l, self.sum_vpsi, self.n
        if sum_l > 0 and (self.log_term + sum_vpsi) / sum_l < half_width:
            return 0
        while t < cap:
            step = max(1, t // 64)
            k = t + (step + 1) / 2.0
            lam = min(math.sqrt(2.0 * self.log_term / (sigma2 * k * math.log1p(k))), LAMBDA_CAP)
            sum_l += step * lam
            sum_vpsi += step * 4.0 * sigma2 * psi_e(lam)
            t += step
            if (self.log_term + sum_vpsi) / sum_l < half_width:
                return t - self.n
        return None


def combine(first: Verdict, second: Verdict) -> tuple[Outcome, bool]:
    """The pair's outcome from its two verdicts (``first``: control shown first; ``second``:
    challenger shown first), and whether the two orders agreed.  A win or a loss needs both
    orders to agree; two different verdicts are a tie (and an inconsistent pair).  An order that
    failed makes the pair an error; an unreadable verdict makes it unparseable (never guessed)."""
    if "error" in (first, second):
        return "error", False
    if "unparseable" in (first, second):
        return "unparseable", False
    if first != second:
        return "tie", False
    if first == "challenger":
        return "win", True
    if first == "control":
        return "loss", True
    return "tie", True


@dataclass(slots=True)
class Tally:
    """The judged pairs of one experiment, folded in order."""

    alpha: float = 0.05
    wins: int = 0
    ties: int = 0
    losses: int = 0
    unparseable: int = 0
    errors: int = 0
    inconsistent: int = 0
    """Valid pairs whose two orders gave different verdicts."""
    cs: ConfidenceSequence = field(init=False)

    def __post_init__(self) -> None:
        self.cs = ConfidenceSequence(self.alpha)

    def add(self, outcome: str, consistent: bool) -> None:
        if outcome == "unparseable":
            self.unparseable += 1
            return
        if outcome == "error":
            self.errors += 1
            return
        if outcome == "win":
            self.wins += 1
        elif outcome == "loss":
            self.losses += 1
        elif outcome == "tie":
            self.ties += 1
        else:
            raise ValueError(f"unknown pair outcome {outcome!r}")
        if not consistent:
            self.inconsistent += 1
        self.cs.add(SCORE[outcome])

    @property
    def pairs(self) -> int:
        """Pairs with two valid verdicts (the ones the statistics count)."""
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float | None:
        n = self.pairs
        return None if n == 0 else (self.wins + 0.5 * self.ties) / n

    @property
    def inconsistency_rate(self) -> float | None:
        n = self.pairs
        return None if n == 0 else self.inconsistent / n


DecisionCode = Literal["challenger_not_worse", "control_better", "keep_collecting"]


@dataclass(frozen=True, slots=True)
class Decision:
    code: DecisionCode
    text: str
    winner: Literal["control", "challenger"] | None = None
    challenger_better: bool = False
    more_pairs: int | None = None
    """For keep_collecting: about how many more pairs a decision takes (None: none in sight)."""


def decide(tally: Tally, margin: float, max_inconsistency: float = 1.0, *, estimate: bool = True) -> Decision:
    """The decision from the interval (see the module docstring).  ``estimate=False`` leaves out
    the "about N more pairs" projection (for checking the decision after every pair cheaply)."""
    n = tally.pairs
    rate = tally.inconsistency_rate
    if rate is not None and n >= 10 and rate > max_inconsistency:
        return Decision(
            "keep_collecting",
            f"keep collecting (no decision: the judge contradicts itself under swapped order on "
            f"{rate:.0%} of pairs, above max_inconsistency {max_inconsistency:.0%})",
        )
    lo, hi = tally.cs.interval
    threshold = 0.5 - margin
    if n and lo > threshold:
        better = lo > 0.5
        text = "challenger not worse within the margin" + (" (and better)" if better else "")
        return Decision("challenger_not_worse", text, "challenger", better)
    if n and hi < 0.5:
        return Decision("control_better", "control better", "control")
    if not estimate:
        return Decision("keep_collecting", "keep collecting")
    mean = tally.win_rate if tally.win_rate is not None else 0.5
    gap = max(mean - threshold, 0.5 - mean)
    more = tally.cs.more_for_width(gap)
    if more is None:
        return Decision("keep_collecting", "keep collecting (no decision in sight at the current win rate)")
    more = max(1, more)
    return Decision("keep_collecting", f"keep collecting (about {more:,} more pairs)", more_pairs=more)
