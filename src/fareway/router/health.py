"""The health seam: what routing reads about an offer's health, and what the executor reports.

Two interfaces, so that a shared (Redis-backed) implementation can drop in beside the in-process
one (:class:`fareway.router.stats.Stats`, which implements both):

* :class:`HealthView` — read by the routing policies (router.policies): ``available`` (the O(1)
  check before an attempt) and ``snapshot`` (latency numbers, error rate, the circuit breaker's
  state, the cooldown or rate-limit wait and its reason, as an :class:`OfferStats`);
* :class:`HealthRecorder` — written by the executor (router.executor): ``begin`` →
  ``first_token`` → ``end`` per attempt, plus ``cool_down`` for a signal found elsewhere.

Keys are ``"provider/model"`` (what ``Target.key`` gives).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fareway.router.breaker import Clock, State


@dataclass(frozen=True, slots=True)
class OfferStats:
    key: str
    ttft_p50: float
    ttft_p90: float
    tps: float
    """Decayed average of output tokens per second."""
    error_rate: float
    in_flight: int
    available: bool
    cooldown_until: float | None
    """Monotonic time the offer is unavailable until (circuit open, Retry-After, or an exhausted
    rate-limit bucket); None when available or when the wait has no known end."""
    ttft_p99: float = 0.0
    ttft_ewma: float = 0.0
    tps_p50: float = 0.0
    latency_p50: float = 0.0
    latency_p90: float = 0.0
    latency_p99: float = 0.0
    latency_ewma: float = 0.0
    samples: int = 0
    """TTFT samples in the window; 0 means every latency number above is the prior."""
    state: State = "closed"
    reason: str = ""
    """Why unavailable: ``circuit open: ...``, ``cooling down: ...``, ``rate limit: ...``."""

    def expected_latency(self, output_tokens: int) -> float:
        """TTFT p50 + output tokens / tokens-per-second: the basis of ``auto:fast``."""
        return self.ttft_p50 + output_tokens / max(self.tps, 1e-6)


@runtime_checkable
class HealthView(Protocol):
    @property
    def clock(self) -> Clock:
        """The monotonic clock that ``OfferStats.cooldown_until`` is on."""
        ...

    def available(self, key: str, prompt_tokens: int = 0, output_tokens: int = 0) -> bool:
        """Circuit closed (or a half-open probe free), not cooling down, and no rate-limit bucket
        short of this request's need.  Agrees with ``snapshot(...).available``."""
        ...

    def snapshot(self, key: str, prompt_tokens: int = 0, output_tokens: int = 0) -> OfferStats:
        """Numbers and health for one offer, including the breaker ``state``, ``cooldown_until``
        and the ``reason`` it is unavailable."""
        ...


@runtime_checkable
class HealthRecorder(Protocol):
    """What the executor tells live statistics.  ``begin`` returns a token that identifies the
    attempt in ``first_token`` and ``end``."""

    def available(self, key: str) -> bool: ...

    def begin(self, key: str) -> Any: ...

    def first_token(self, key: Any, ttft_s: float) -> None: ...

    def end(
        self,
        key: Any,
        ok: bool,
        latency_s: float,
        output_tokens: int,
        status: int | None,
        retry_after: float | None,
        headers: Mapping[str, str] | None,
    ) -> None: ...

    def cool_down(self, key: str, seconds: float, reason: str) -> None:
        """Avoid an offer for ``seconds`` (operator action, or a signal found elsewhere)."""
        ...


__all__ = ["HealthRecorder", "HealthView", "OfferStats"]
