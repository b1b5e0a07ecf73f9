"""Live statistics per offer (``provider/model``): latency, throughput, errors, health.

For each key the executor reports ``begin`` → ``first_token`` → ``end``; from that we keep

* decayed averages (EWMA) of time to first token, output tokens per second and total latency,
  seeded from the catalog's cold-start priors.  The prior counts as ``prior_weight`` pseudo
  samples: the n-th real sample gets weight ``max(alpha, 1 / (n + prior_weight))``, so the first
  few calls move the average quickly and later ones at the steady ``alpha``;
* percentiles (p50/p90/p99, linear interpolation) over a recent window (the last ``window``
  samples no older than ``window_s``); with no samples yet they report the prior;
* an error rate over the breaker's window, an in-flight count, a :class:`CircuitBreaker`,
  an explicit cooldown (Retry-After on a 429/503), and the provider's rate-limit buckets
  (router.ratelimit), so an offer whose remaining requests or tokens reached zero is avoided
  until the bucket resets, before the provider has to answer 429.

All times come from an injectable monotonic ``clock`` (and ``wall`` for RFC 3339 resets), so
tests are deterministic without sleeping.

Conventions for :meth:`Stats.end` (matching router.executor):

* ``ok=True`` with ``status=None`` means the attempt was cancelled (a race loser): it frees the
  in-flight slot and the half-open probe but records no sample and no outcome.
* A Retry-After is honoured only on a failure: Anthropic sends ``retry-after`` on some 200s.
* A failure counts against the breaker per :func:`router.breaker.counts_as_failure`; a 400-class
  error that is the request's fault does not make the provider look unhealthy.
"""

from __future__ import annotations

import itertools
import math
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fareway.errors import retry_after_seconds
from fareway.providers.catalog import DEFAULT_PRIOR, Catalog, Prior
from fareway.router.breaker import BreakerConfig, CircuitBreaker, Clock, counts_as_failure
from fareway.router.health import OfferStats
from fareway.router.ratelimit import BucketKind, need_for, parse_rate_limit_headers

Key = str | tuple[str, str]
"""``"provider/model"`` (what ``Target.key`` gives) or ``(provider, model)``."""


def key_of(key: Key | CallToken) -> str:
    if isinstance(key, CallToken):
        return key.key
    if isinstance(key, tuple):
        return f"{key[0]}/{key[1]}"
    return key


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th quantile (0..1) of already sorted values, linear interpolation between ranks
    (numpy's default method).  Raises ValueError on an empty list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(slots=True)
class CallToken:
    """Returned by :meth:`Stats.begin`; pass it back to ``first_token``/``end`` for exact pairing."""

    key: str
    started: float
    probe: bool = False
    """This call is the half-open circuit's probe."""
    ttft_s: float | None = None
    ended: bool = False
    id: int = 0


class _Series:
    """An EWMA seeded from a prior plus a bounded recent window for percentiles.

    The window's values are also kept sorted (inserted and removed by bisection as samples come
    and expire), so a snapshot reads its percentiles without sorting the window: a router reads
    them for every candidate of every call."""

    __slots__ = ("alpha", "count", "ewma", "prior", "prior_weight", "samples", "sorted")

    def __init__(self, prior: float, alpha: float, prior_weight: float, window: int) -> None:
        self.prior = prior
        self.ewma = prior
        self.alpha = alpha
        self.prior_weight = prior_weight
        self.count = 0
        self.samples: deque[tuple[float, float]] = deque(maxlen=window)
        self.sorted: list[float] = []
        """The values of ``samples``, ascending (NaN left out: it has no place in an order)."""

    def add(self, now: float, value: float) -> None:
        self.count += 1
        w = max(self.alpha, 1.0 / (self.count + self.prior_weight))
        self.ewma = w * value + (1.0 - w) * self.ewma
        samples = self.samples
        if len(samples) == samples.maxlen:
            self._forget(samples[0][1])  # the deque drops its oldest on this append
        samples.append((now, value))
        if value == value:
            insort(self.sorted, value)

    def _forget(self, value: float) -> None:
        if value == value:
            del self.sorted[bisect_left(self.sorted, value)]

    def recent(self, horizon: float) -> list[float]:
        """The values younger than ``horizon``, ascending (the series' own list: do not change it)."""
        samples = self.samples
        while samples and samples[0][0] < horizon:
            self._forget(samples.popleft()[1])
        return self.sorted

    def quantiles(self, horizon: float, qs: tuple[float, ...]) -> tuple[list[float], int]:
        values = self.recent(horizon)
        if not values:
            return [self.prior] * len(qs), 0
        return [percentile(values, q) for q in qs], len(values)


@dataclass(slots=True)
class _Limit:
    kind: BucketKind
    remaining: float
    reset_at: float | None
    """Monotonic time the bucket refills; None when the provider gave no reset."""
    seen_at: float
    window: str = ""


@dataclass(slots=True)
class _Entry:
    ttft: _Series
    tps: _Series
    latency: _Series
    breaker: CircuitBreaker
    in_flight: int = 0
    last_ttft: float | None = None
    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    limits_parsed_at: float = -1e18
    limits: dict[tuple[BucketKind, str], _Limit] = field(default_factory=dict)


class Stats:
    """Per-offer live statistics and health.  Single-threaded (one event loop); no locking."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        priors: Callable[[str], Prior] | None = None,
        clock: Clock | None = None,
        wall: Clock | None = None,
        alpha: float = 0.2,
        prior_weight: float = 2.0,
        window: int = 200,
        window_s: float = 600.0,
        breaker: BreakerConfig | None = None,
        min_tps_tokens: int = 16,
        default_429_cooldown_s: float = 5.0,
        unknown_reset_s: float = 60.0,
    ) -> None:
        self.clock: Clock = clock or time.monotonic
        self.wall: Clock = wall or time.time
        if priors is not None:
            self._prior = priors
        elif catalog is not None:
            self._prior = catalog.prior_for_key
        else:
            self._prior = lambda _key: DEFAULT_PRIOR
        self.alpha = alpha
        self.prior_weight = prior_weight
        self.window = window
        self.window_s = window_s
        self.breaker_config = breaker or BreakerConfig()
        self.min_tps_tokens = min_tps_tokens
        """Calls with fewer output tokens give no tokens/s sample (too noisy)."""
        self.default_429_cooldown_s = default_429_cooldown_s
        """Cooldown after a 429 that carried neither Retry-After nor rate-limit headers."""
        self.unknown_reset_s = unknown_reset_s
        """How long an exhausted bucket with no reset time is avoided."""
        self._entries: dict[str, _Entry] = {}
        self._ids = itertools.count(1)
        self.limits_refresh_s = 0.05
        """Rate-limit headers are parsed at most this often per offer (they come on every response)."""
        self.limits_low_water = 50.0
        """...but on every response once a bucket's remaining count is at or under this."""

    # ------------------------------------------------------------------ entries

    def _entry(self, key: Key | CallToken) -> _Entry:
        k = key_of(key)
        e = self._entries.get(k)
        if e is None:
            p = self._prior(k)
            e = _Entry(
                ttft=_Series(p.ttft_s, self.alpha, self.prior_weight, self.window),
                tps=_Series(p.tps, self.alpha, self.prior_weight, self.window),
                # a prior total latency: TTFT plus 256 tokens at the prior rate (a typical reply)
                latency=_Series(
                    p.ttft_s + 256.0 / max(p.tps, 1e-6), self.alpha, self.prior_weight, self.window
                ),
                breaker=CircuitBreaker(self.breaker_config, self.clock),
            )
            self._entries[k] = e
        return e

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def breaker(self, key: Key) -> CircuitBreaker:
        return self._entry(key).breaker

    # ------------------------------------------------------------------ events

    def begin(self, key: Key) -> CallToken:
        """An attempt starts.  Claims the half-open probe when the circuit is half-open."""
        k = key_of(key)
        e = self._entry(k)
        if e.in_flight == 0:
            e.last_ttft = None
        e.in_flight += 1
        probe = e.breaker.state == "half_open" and e.breaker.try_acquire()
        for lim in e.limits.values():
            if lim.kind == "requests":
                lim.remaining -= 1  # local accounting until the next response refreshes it
        return CallToken(k, self.clock(), probe=probe, id=next(self._ids))

    def first_token(self, key: Key | CallToken, ttft_s: float) -> None:
        e = self._entry(key)
        e.ttft.add(self.clock(), ttft_s)
        e.last_ttft = ttft_s
        if isinstance(key, CallToken):
            key.ttft_s = ttft_s

    def end(
        self,
        key: Key | CallToken,
        ok: bool,
        latency_s: float,
        output_tokens: int = 0,
        status: int | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """An attempt ended.  See the module docstring for the conventions."""
        if isinstance(key, CallToken):
            if key.ended:
                return
            key.ended = True
        e = self._entry(key)
        now = self.clock()
        call_ttft = key.ttft_s if isinstance(key, CallToken) else (e.last_ttft if e.in_flight == 1 else None)
        e.in_flight = max(0, e.in_flight - 1)
        if e.in_flight == 0:
            e.last_ttft = None
        if headers:
            self._update_limits(e, headers, now)
        if ok and status is None:  # cancelled
            e.breaker.release()
            return
        if ok:
            e.latency.add(now, latency_s)
            if output_tokens >= self.min_tps_tokens:
                ttft = call_ttft if call_ttft is not None else min(e.ttft.ewma, 0.5 * latency_s)
                gen = latency_s - ttft
                if gen > 0:
                    e.tps.add(now, output_tokens / gen)
            e.breaker.record_success()
            return
        if not counts_as_failure(status):
            e.breaker.release()
            return
        wait = retry_after
        if wait is None and headers:
            wait = retry_after_seconds(headers, self.wall())
        if status == 429:
            # A rate limit is not a broken provider: it cools down for Retry-After (or the reset of
            # its rate-limit bucket, or a short default) and does not count toward the circuit.
            e.breaker.release()
            if wait is not None:
                self._cool(e, now, wait, f"retry-after {wait:g}s after status 429")
            elif not self._limited(e, now, 0, 0)[0]:
                self._cool(e, now, self.default_429_cooldown_s, "429 without retry hints")
            return
        e.breaker.record_failure()
        if wait is not None:
            self._cool(e, now, wait, f"retry-after {wait:g}s after status {status}")
        elif status == 429 and not self._limited(e, now, 0, 0)[0]:
            self._cool(e, now, self.default_429_cooldown_s, "429 without retry hints")

    def cool_down(self, key: Key, seconds: float, reason: str) -> None:
        """Avoid an offer for ``seconds`` (operator action, or a signal found elsewhere)."""
        e = self._entry(key)
        self._cool(e, self.clock(), seconds, reason)

    @staticmethod
    def _cool(e: _Entry, now: float, seconds: float, reason: str) -> None:
        until = now + max(0.0, seconds)
        if until > e.cooldown_until:
            e.cooldown_until = until
            e.cooldown_reason = reason

    def _update_limits(self, e: _Entry, headers: Mapping[str, str], now: float) -> None:
        # Providers send rate-limit headers on every response; between two parses the local
        # decrement in begin() keeps the count.  Parse at most every limits_refresh_s per offer,
        # and always when a bucket is close to empty.
        if now - e.limits_parsed_at < self.limits_refresh_s:
            low = self.limits_low_water
            for lim in e.limits.values():
                if lim.remaining <= low:
                    break
            else:  # (a loop, not any() over a generator: this runs on every response)
                return
        e.limits_parsed_at = now
        info = parse_rate_limit_headers(headers, self.wall())
        for b in info.buckets:
            reset_at = now + b.reset_in_s if b.reset_in_s is not None else None
            e.limits[(b.kind, b.window)] = _Limit(b.kind, b.remaining, reset_at, now, b.window)

    def _limited(
        self, e: _Entry, now: float, prompt_tokens: int, output_tokens: int
    ) -> tuple[bool, float | None, str]:
        """(blocked, until, reason) from the rate-limit buckets."""
        blocked_until: float | None = None
        reason = ""
        blocked = False
        for (kind, window), lim in list(e.limits.items()):
            end = lim.reset_at if lim.reset_at is not None else lim.seen_at + self.unknown_reset_s
            if now >= end:
                del e.limits[(kind, window)]  # refilled
                continue
            need = need_for(kind, prompt_tokens, output_tokens)
            if lim.remaining <= 0 or lim.remaining < need:
                blocked = True
                if blocked_until is None or end > blocked_until:
                    blocked_until = end
                    label = f"{kind}/{window}" if window else kind
                    reason = f"rate limit: {label} remaining {lim.remaining:g} < need {need:g}"
        return blocked, blocked_until, reason

    # ------------------------------------------------------------------ queries

    def available(self, key: Key, prompt_tokens: int = 0, output_tokens: int = 0) -> bool:
        """Health only (circuit, cooldown, rate-limit buckets): O(1), called before every attempt.
        Agrees with ``snapshot(...).available``, without computing any percentile."""
        e = self._entry(key)
        if not e.breaker.available():
            return False
        now = self.clock()
        if now < e.cooldown_until:
            return False
        if e.limits:
            return not self._limited(e, now, prompt_tokens, output_tokens)[0]
        return True

    def snapshot(self, key: Key, prompt_tokens: int = 0, output_tokens: int = 0) -> OfferStats:
        """Numbers and health for one offer.  ``prompt_tokens``/``output_tokens`` are the next
        request's estimated need, checked against the token buckets."""
        k = key_of(key)
        e = self._entry(k)
        now = self.clock()
        horizon = now - self.window_s
        (t50, t90, t99), n = e.ttft.quantiles(horizon, (0.5, 0.9, 0.99))
        (tps50,), _ = e.tps.quantiles(horizon, (0.5,))
        (l50, l90, l99), _ = e.latency.quantiles(horizon, (0.5, 0.9, 0.99))
        state = e.breaker.state
        available = True
        until: float | None = None
        reason = ""
        if not e.breaker.available():
            available = False
            until = e.breaker.open_until
            reason = (
                f"circuit {state.replace('_', '-')}: {e.breaker.reason}"
                if state == "open"
                else "half-open probe in flight"
            )
        if now < e.cooldown_until:
            available = False
            if until is None or e.cooldown_until > until:
                until = e.cooldown_until
                reason = f"cooling down: {e.cooldown_reason}"
        blocked, b_until, b_reason = self._limited(e, now, prompt_tokens, output_tokens)
        if blocked:
            available = False
            if until is None or (b_until is not None and b_until > until):
                until = b_until
                reason = b_reason
        return OfferStats(
            key=k,
            ttft_p50=t50,
            ttft_p90=t90,
            tps=e.tps.ewma,
            error_rate=e.breaker.error_rate(),
            in_flight=e.in_flight,
            available=available,
            cooldown_until=None if available else until,
            ttft_p99=t99,
            ttft_ewma=e.ttft.ewma,
            tps_p50=tps50,
            latency_p50=l50,
            latency_p90=l90,
            latency_p99=l99,
            latency_ewma=e.latency.ewma,
            samples=n,
            state=state,
            reason=reason,
        )

    def expected_latency(self, key: Key, output_tokens: int) -> float:
        return self.snapshot(key).expected_latency(output_tokens)
