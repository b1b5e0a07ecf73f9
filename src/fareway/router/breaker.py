"""A circuit breaker per (provider, model), on an injectable monotonic clock.

::

    closed ──(N consecutive failures, or error rate ≥ threshold over the window)──► open
    open ──(cooldown elapsed)──► half-open ──(the one probe succeeds)──► closed
                                      └──────(the probe fails)──► open, cooldown doubled (capped)

* **closed**: every call goes through; failures are counted.
* **open**: nothing goes through until ``open_until``.  The cooldown starts at
  ``cooldown_s`` and doubles on each failed probe up to ``max_cooldown_s``; a Retry-After longer
  than the cooldown wins.
* **half-open**: exactly one probe call is let through (:meth:`CircuitBreaker.try_acquire`
  claims it); its outcome decides.  While the probe is in flight the offer counts as unavailable.

What counts as a failure is the caller's decision (:func:`counts_as_failure` is the default rule:
network errors, timeouts, 408, 429, 5xx, 401/403; a 400/404/413/422 is the request's fault).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Clock = Callable[[], float]
State = Literal["closed", "open", "half_open"]


def counts_as_failure(status: int | None) -> bool:
    """Whether an unsuccessful attempt with this HTTP status should count against the upstream.

    ``None`` (no HTTP response: timeout, connection error, error inside a 200 stream) counts."""
    if status is None:
        return True
    return status in (401, 403, 408, 409, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    """Consecutive failures that open the circuit."""
    window_s: float = 60.0
    """The sliding window for the error-rate rule."""
    error_rate_threshold: float = 0.5
    """Open when failures / calls in the window reach this..."""
    min_calls: int = 10
    """...and the window holds at least this many calls."""
    cooldown_s: float = 5.0
    """How long the circuit stays open before a half-open probe (doubled after a failed probe)."""
    max_cooldown_s: float = 120.0
    backoff: float = 2.0


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None, clock: Clock | None = None) -> None:
        import time

        self.config = config or BreakerConfig()
        self.clock: Clock = clock or time.monotonic
        self._state: State = "closed"
        self._open_until = 0.0
        self._cooldown = self.config.cooldown_s
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._failures = 0
        """Failures currently in the window (kept in step with it, so error_rate is O(1))."""
        self._probe_in_flight = False
        self.reason = ""
        """Why the circuit last opened (for explain output)."""

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock() >= self._open_until:
            self._state = "half_open"
            self._probe_in_flight = False
        return self._state

    @property
    def open_until(self) -> float | None:
        """Monotonic time the circuit stays open until; None unless open."""
        return self._open_until if self.state == "open" else None

    def available(self) -> bool:
        """Would a call be let through now?  (Does not claim the half-open probe.)"""
        s = self.state
        return s == "closed" or (s == "half_open" and not self._probe_in_flight)

    def try_acquire(self) -> bool:
        """Claim permission for one call: always in closed, once in half-open, never in open."""
        s = self.state
        if s == "closed":
            return True
        if s == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def release(self) -> None:
        """A claimed call ended without an outcome (cancelled): free the probe slot."""
        self._probe_in_flight = False

    def error_rate(self) -> float:
        self._prune()
        if not self._window:
            return 0.0
        return self._failures / len(self._window)

    def window_calls(self) -> int:
        self._prune()
        return len(self._window)

    # ---------------------------------------------------------------- outcomes

    def record_success(self) -> None:
        now = self.clock()
        self._window.append((now, True))
        self._prune()  # else a run of successes grows the window by one entry per call, for ever
        self._consecutive = 0
        if self.state == "half_open":
            self._close()
        self._probe_in_flight = False

    def record_failure(self, retry_after: float | None = None) -> None:
        now = self.clock()
        self._window.append((now, False))
        self._failures += 1
        self._consecutive += 1
        state = self.state
        if state == "half_open":
            self._cooldown = min(self._cooldown * self.config.backoff, self.config.max_cooldown_s)
            self._open(self._cooldown, retry_after, "probe failed")
        elif state == "closed":
            if self._consecutive >= self.config.failure_threshold:
                self._open(self._cooldown, retry_after, f"{self._consecutive} consecutive failures")
            else:
                self._prune()
                n = len(self._window)
                rate = self.error_rate()
                if n >= self.config.min_calls and rate >= self.config.error_rate_threshold:
                    self._open(self._cooldown, retry_after, f"error rate {rate:.0%} over {n} calls")
        elif retry_after is not None:
            # already open: a longer Retry-After extends the cooldown
            self._open_until = max(self._open_until, now + retry_after)
        self._probe_in_flight = False

    def force_open(self, seconds: float, reason: str) -> None:
        """Open now for at least ``seconds`` (an explicit cooldown, e.g. Retry-After on a 429)."""
        until = self.clock() + max(0.0, seconds)
        if self.state == "open":
            self._open_until = max(self._open_until, until)
        else:
            self._state = "open"
            self._open_until = until
        self.reason = reason
        self._probe_in_flight = False

    # --------------------------------------------------------------- internal

    def _open(self, cooldown: float, retry_after: float | None, reason: str) -> None:
        wait = max(cooldown, retry_after or 0.0)
        self._state = "open"
        self._open_until = self.clock() + wait
        self.reason = reason

    def _close(self) -> None:
        self._state = "closed"
        self._consecutive = 0
        self._cooldown = self.config.cooldown_s
        self._window.clear()
        self._failures = 0
        self.reason = ""

    def _prune(self) -> None:
        horizon = self.clock() - self.config.window_s
        while self._window and self._window[0][0] < horizon:
            _, ok = self._window.popleft()
            if not ok:
                self._failures -= 1
