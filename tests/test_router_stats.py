"""Live statistics, circuit breaker and rate-limit headers: deterministic, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.errors import retry_after_seconds
from fareway.providers.catalog import Catalog, Offer, Prior
from fareway.router.breaker import BreakerConfig, CircuitBreaker, counts_as_failure
from fareway.router.ratelimit import (
    parse_duration,
    parse_rate_limit_headers,
    parse_rfc3339,
)
from fareway.router.stats import CallToken, Stats, percentile
from tests.recorded import cassettes, fixtures_dir, load_cassette


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


WALL0 = 1_775_384_634.0  # 2026-04-05T10:23:54Z


def make_stats(clock: FakeClock, **kw: object) -> Stats:
    cat = Catalog(
        [Offer("p", "m", "m"), Offer("fast", "m", "m")],
        {"p": Prior(ttft_s=1.0, tps=50.0), "fast": Prior(ttft_s=0.2, tps=1000.0)},
    )
    return Stats(cat, clock=clock, wall=lambda: WALL0 + clock.t - 1000.0, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ ratelimit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2ms", 0.002),
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("11.38", 11.38),
        ("59m59.999s", 3599.999),
        ("750us", 0.00075),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5x", "s", "1m x", "-3"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


def test_parse_rfc3339() -> None:
    assert parse_rfc3339("2026-04-05T10:23:54Z") == WALL0
    assert parse_rfc3339("2026-04-05T12:23:54+02:00") == WALL0
    assert parse_rfc3339("2026-04-05T10:23:54") is None  # no zone: ambiguous
    assert parse_rfc3339("soon") is None


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "31"}, WALL0) == 31.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}, WALL0) == 1.5
    assert retry_after_seconds({"retry-after": "Sun, 05 Apr 2026 10:24:04 GMT"}, WALL0) == pytest.approx(10.0)
    assert retry_after_seconds({"retry-after": "garbage"}, WALL0) is None
    assert retry_after_seconds({}, WALL0) is None


def test_openai_groq_headers() -> None:
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-remaining-requests": "14",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-remaining-tokens": "5999",
            "x-ratelimit-reset-tokens": "2ms",
        },
        WALL0,
    )
    got = {(b.kind, b.window): (b.remaining, b.reset_in_s) for b in info.buckets}
    assert got == {("requests", ""): (14.0, 360.0), ("tokens", ""): (5999.0, pytest.approx(0.002))}


def test_cerebras_headers() -> None:
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-remaining-requests-day": "14399",
            "x-ratelimit-reset-requests-day": "33011.38",
            "x-ratelimit-remaining-tokens-minute": "59000",
            "x-ratelimit-reset-tokens-minute": "11.38",
        },
        WALL0,
    )
    got = {(b.kind, b.window): (b.remaining, b.reset_in_s) for b in info.buckets}
    assert got == {("requests", "day"): (14399.0, 33011.38), ("tokens", "minute"): (59000.0, 11.38)}


def test_anthropic_headers_rfc3339_reset() -> None:
    info = parse_rate_limit_headers(
        {
            "anthropic-ratelimit-requests-remaining": "3999",
            "anthropic-ratelimit-requests-reset": "2026-04-05T10:23:55Z",
            "anthropic-ratelimit-input-tokens-remaining": "400000",
            "anthropic-ratelimit-input-tokens-reset": "2026-04-05T10:24:54Z",
            "anthropic-ratelimit-output-tokens-remaining": "0",
            "anthropic-ratelimit-output-tokens-reset": "2026-04-05T10:23:53Z",  # already past: 0 s
        },
        WALL0,
    )
    got = {b.kind: (b.remaining, b.reset_in_s) for b in info.buckets}
    assert got == {"requests": (3999.0, 1.0), "input_tokens": (400000.0, 60.0), "output_tokens": (0.0, 0.0)}


def test_real_recorded_rate_limit_headers_parse() -> None:
    """The headers in the real OpenAI and Anthropic cassettes parse into sane buckets."""
    if fixtures_dir() is None:
        pytest.skip("../shared/fixtures not present")
    seen = 0
    for provider in ("openai", "anthropic"):
        for path in cassettes(provider):
            for it in load_cassette(path):
                if not any("ratelimit" in k for k in it.response_headers):
                    continue
                info = parse_rate_limit_headers(it.response_headers, WALL0)
                assert info.buckets, path.name
                for b in info.buckets:
                    assert b.remaining >= 0
                    assert b.reset_in_s is None or b.reset_in_s >= 0
                seen += 1
    assert seen >= 5


# -------------------------------------------------------------------------------- breaker


def test_counts_as_failure() -> None:
    for s in (None, 401, 403, 408, 429, 500, 502, 503, 529):
        assert counts_as_failure(s), s
    for s in (400, 404, 413, 422):
        assert not counts_as_failure(s), s


def test_breaker_opens_after_consecutive_failures_then_half_open_then_closes() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(failure_threshold=3, cooldown_s=10.0), clock)
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.available()
    b.record_failure()
    assert b.state == "open" and not b.available() and not b.try_acquire()
    assert b.open_until == clock.t + 10.0
    clock.advance(9.99)
    assert b.state == "open"
    clock.advance(0.01)
    assert b.state == "half_open" and b.available()
    assert b.try_acquire()  # the one probe
    assert not b.available() and not b.try_acquire()  # nobody else while it is in flight
    b.record_success()
    assert b.state == "closed" and b.available() and b.error_rate() == 0.0


def test_breaker_failed_probe_reopens_with_doubled_cooldown_capped() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_s=10.0, max_cooldown_s=25.0), clock)
    b.record_failure()
    expected = [20.0, 25.0, 25.0]
    for cooldown in expected:
        clock.advance(100)
        assert b.try_acquire()
        b.record_failure()
        assert b.state == "open"
        assert b.open_until == pytest.approx(clock.t + cooldown)
    clock.advance(100)
    assert b.try_acquire()
    b.record_success()
    b.record_failure()  # after closing, the cooldown is back to the base
    assert b.open_until == pytest.approx(clock.t + 10.0)


def test_breaker_error_rate_rule_needs_min_calls() -> None:
    clock = FakeClock()
    b = CircuitBreaker(
        BreakerConfig(failure_threshold=100, min_calls=10, error_rate_threshold=0.5, window_s=60), clock
    )
    for _ in range(4):
        b.record_success()
        b.record_failure()
    assert b.state == "closed"  # 50% but only 8 calls
    b.record_success()
    b.record_failure()
    assert b.state == "open" and "error rate 50%" in b.reason


def test_breaker_window_forgets_old_calls() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(failure_threshold=100, min_calls=4, window_s=60), clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(61)
    b.record_success()
    assert b.window_calls() == 1 and b.error_rate() == 0.0
    b.record_failure()
    assert b.state == "closed"


def test_breaker_release_frees_probe() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(failure_threshold=1, cooldown_s=1), clock)
    b.record_failure()
    clock.advance(1)
    assert b.try_acquire() and not b.available()
    b.release()
    assert b.available() and b.state == "half_open"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ok", "fail", "acquire", "release", "tick"]), st.floats(0, 30)),
        max_size=60,
    )
)
def test_breaker_invariants(ops: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerConfig(failure_threshold=3, cooldown_s=5, min_calls=5), clock)
    probes = 0
    for op, dt in ops:
        state = b.state
        if op == "ok":
            b.record_success()
            probes = 0
        elif op == "fail":
            b.record_failure()
            probes = 0
        elif op == "acquire":
            got = b.try_acquire()
            if state == "open":
                assert not got
            if state == "half_open" and got:
                probes += 1
            assert probes <= 1  # never two probes at once
        elif op == "release":
            b.release()
            probes = 0
        else:
            clock.advance(dt)
            probes = 0 if b.state != "half_open" else probes
        assert 0.0 <= b.error_rate() <= 1.0
        if b.state == "open":
            assert not b.available()


# ---------------------------------------------------------------------------------- stats


def test_percentile_linear_interpolation() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.9) == pytest.approx(90.1)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([3.0], 0.9) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


@given(
    st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=50), st.floats(0, 1), st.floats(0, 1)
)
def test_percentile_bounded_and_monotone(values: list[float], q1: float, q2: float) -> None:
    s = sorted(values)
    lo, hi = sorted((q1, q2))
    a, b = percentile(s, lo), percentile(s, hi)
    assert s[0] - 1e-9 <= a <= b + 1e-9 <= s[-1] + 2e-9


def test_cold_start_reports_priors() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    snap = stats.snapshot("fast/m")
    assert (snap.ttft_p50, snap.ttft_p90, snap.tps, snap.samples) == (0.2, 0.2, 1000.0, 0)
    assert snap.available and snap.cooldown_until is None and snap.in_flight == 0
    # builtin catalog priors seed too
    builtin = Stats(Catalog.builtin(), clock=clock)
    assert builtin.snapshot("cerebras/llama-3.3-70b").ttft_p50 == 0.3
    assert builtin.snapshot("some/unknown").ttft_p50 == 1.0  # DEFAULT_PRIOR


def test_ewma_with_prior_pseudo_samples() -> None:
    clock = FakeClock()
    stats = make_stats(clock, alpha=0.2, prior_weight=2.0)
    key = "p/m"  # prior ttft 1.0
    expected = 1.0
    for n, ttft in enumerate([0.4, 0.4, 0.4, 0.4, 2.0], start=1):
        tok = stats.begin(key)
        stats.first_token(tok, ttft)
        w = max(0.2, 1.0 / (n + 2.0))
        expected = w * ttft + (1 - w) * expected
        stats.end(tok, True, ttft + 1.0, 100, 200, None, None)
    snap = stats.snapshot(key)
    assert snap.ttft_ewma == pytest.approx(expected)
    # weights were 1/3, 1/4, 1/5, then alpha 0.2, 0.2
    assert expected == pytest.approx(
        ((((1 * 2 / 3 + 0.4 / 3) * 3 / 4 + 0.1) * 0.8 + 0.08) * 0.8 + 0.08) * 0.8 + 0.4
    )
    assert snap.ttft_p50 == pytest.approx(0.4)
    assert snap.ttft_p90 == pytest.approx(0.4 + (2.0 - 0.4) * 0.6)  # rank 3.6 of 5 sorted values
    assert snap.samples == 5


def test_tps_uses_generation_time_after_first_token() -> None:
    clock = FakeClock()
    stats = make_stats(clock, prior_weight=0.0)  # the first sample replaces the prior
    tok = stats.begin("p/m")
    stats.first_token(tok, 0.5)
    stats.end(tok, True, 2.5, 400, 200, None, None)  # 400 tokens in 2.0 s
    snap = stats.snapshot("p/m")
    assert snap.tps == pytest.approx(200.0) and snap.tps_p50 == pytest.approx(200.0)
    assert snap.latency_p50 == pytest.approx(2.5)


def test_plain_key_calls_like_the_executor() -> None:
    """The executor passes keys, not tokens: a lone in-flight call pairs its TTFT exactly."""
    clock = FakeClock()
    stats = make_stats(clock, prior_weight=0.0)
    stats.begin("p/m")
    assert stats.snapshot("p/m").in_flight == 1
    stats.first_token("p/m", 1.0)
    stats.end("p/m", True, 3.0, 300, 200, None, None)
    snap = stats.snapshot("p/m")
    assert snap.in_flight == 0 and snap.tps == pytest.approx(150.0)
    stats.end("p/m", True, 1.0, 0, 200, None, None)  # an unmatched end never goes negative
    assert stats.snapshot(("p", "m")).in_flight == 0


def test_small_outputs_give_no_tps_sample_and_cancel_records_nothing() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    tok = stats.begin("p/m")
    stats.end(tok, True, 0.5, 3, 200, None, None)
    assert stats.snapshot("p/m").tps == 50.0  # prior untouched: 3 tokens is noise
    tok = stats.begin("p/m")
    stats.end(tok, True, 9.0, 0, None, None, None)  # cancelled race loser
    snap = stats.snapshot("p/m")
    assert snap.latency_p50 == pytest.approx(0.5) and snap.in_flight == 0
    stats.end(tok, False, 1.0, 0, 500, None, None)  # a token ends once
    assert stats.snapshot("p/m").error_rate == 0.0


def test_failures_open_the_circuit_and_probe_closes_it() -> None:
    clock = FakeClock()
    stats = make_stats(clock, breaker=BreakerConfig(failure_threshold=2, cooldown_s=10))
    for _ in range(2):
        tok = stats.begin("p/m")
        stats.end(tok, False, 0.1, 0, 502, None, None)
    snap = stats.snapshot("p/m")
    assert not snap.available and snap.state == "open" and snap.cooldown_until == clock.t + 10
    assert snap.error_rate == 1.0 and "2 consecutive failures" in snap.reason
    clock.advance(10)
    assert stats.available("p/m")
    probe = stats.begin("p/m")
    assert probe.probe and not stats.available("p/m")  # half-open: the probe is out
    stats.end(probe, True, 1.0, 50, 200, None, None)
    assert stats.snapshot("p/m").state == "closed" and stats.available("p/m")


def test_client_errors_do_not_count_against_the_provider() -> None:
    clock = FakeClock()
    stats = make_stats(clock, breaker=BreakerConfig(failure_threshold=1))
    for status in (400, 404, 422):
        tok = stats.begin("p/m")
        stats.end(tok, False, 0.1, 0, status, None, None)
    snap = stats.snapshot("p/m")
    assert snap.available and snap.error_rate == 0.0


def test_retry_after_cooldown() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    tok = stats.begin("p/m")
    stats.end(tok, False, 0.2, 0, 429, 30.0, None)
    snap = stats.snapshot("p/m")
    assert not snap.available and snap.cooldown_until == clock.t + 30.0
    assert snap.reason.startswith("cooling down: retry-after 30s")
    assert snap.state == "closed"  # one 429 is a cooldown, not a broken provider
    clock.advance(29.9)
    assert not stats.available("p/m")
    clock.advance(0.1)
    assert stats.available("p/m")


def test_retry_after_header_used_when_no_argument_and_ignored_on_success() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    stats.end(stats.begin("p/m"), False, 0.2, 0, 503, None, {"Retry-After": "12"})
    assert stats.snapshot("p/m").cooldown_until == clock.t + 12
    # Anthropic sends retry-after on some 200s (recorded web search cassette): not a cooldown
    stats.end(stats.begin("fast/m"), True, 0.2, 20, 200, None, {"retry-after": "31"})
    assert stats.available("fast/m")


def test_bare_429_gets_a_short_default_cooldown() -> None:
    clock = FakeClock()
    stats = make_stats(clock, default_429_cooldown_s=5.0)
    stats.end(stats.begin("p/m"), False, 0.2, 0, 429, None, None)
    assert stats.snapshot("p/m").cooldown_until == clock.t + 5.0


def test_rate_limit_requests_exhausted_avoided_until_reset() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}
    stats.end(stats.begin("p/m"), True, 1.0, 20, 200, None, headers)
    snap = stats.snapshot("p/m")
    assert not snap.available and snap.cooldown_until == clock.t + 360.0
    assert "rate limit: requests remaining 0" in snap.reason
    clock.advance(360)
    assert stats.available("p/m")


def test_rate_limit_local_accounting_of_requests() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    stats.end(
        stats.begin("p/m"),
        True,
        1.0,
        20,
        200,
        None,
        {"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "10s"},
    )
    assert stats.available("p/m")
    stats.begin("p/m")  # uses the last request before the provider has to say so
    assert not stats.available("p/m")


def test_rate_limit_tokens_against_the_request_need() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    headers = {"x-ratelimit-remaining-tokens-minute": "1000", "x-ratelimit-reset-tokens-minute": "11.38"}
    stats.end(stats.begin("p/m"), True, 1.0, 20, 200, None, headers)
    assert stats.available("p/m", prompt_tokens=500, output_tokens=400)
    snap = stats.snapshot("p/m", prompt_tokens=900, output_tokens=200)
    assert not snap.available and snap.cooldown_until == pytest.approx(clock.t + 11.38)
    clock.advance(11.38)
    assert stats.available("p/m", prompt_tokens=900, output_tokens=200)


def test_rate_limit_anthropic_reset_uses_the_wall_clock() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-04-05T10:24:04Z",  # 10 s after WALL0
    }
    stats.end(stats.begin("p/m"), True, 1.0, 20, 200, None, headers)
    assert stats.snapshot("p/m").cooldown_until == pytest.approx(clock.t + 10.0)


def test_429_with_exhausted_bucket_waits_for_the_bucket_not_the_default() -> None:
    clock = FakeClock()
    stats = make_stats(clock, default_429_cooldown_s=5.0)
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"}
    stats.end(stats.begin("p/m"), False, 0.1, 0, 429, None, headers)
    assert stats.snapshot("p/m").cooldown_until == clock.t + 60.0


def test_window_expires_old_samples() -> None:
    clock = FakeClock()
    stats = make_stats(clock, window_s=60.0)
    stats.first_token(stats.begin("p/m"), 5.0)
    clock.advance(61)
    snap = stats.snapshot("p/m")
    assert snap.samples == 0 and snap.ttft_p50 == 1.0  # back to the prior for percentiles
    assert snap.ttft_ewma > 1.0  # the decayed average remembers


def test_call_token_shape() -> None:
    clock = FakeClock()
    stats = make_stats(clock)
    tok = stats.begin(("p", "m"))
    assert isinstance(tok, CallToken) and tok.key == "p/m" and tok.started == clock.t


# ------------------------------------------------------------------ the sorted window


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=5, allow_nan=False),  # time step
            st.one_of(st.floats(min_value=0, max_value=100, allow_nan=False), st.just(float("nan"))),
            st.floats(min_value=0, max_value=20, allow_nan=False),  # window age for the read
        ),
        max_size=120,
    ),
    st.integers(1, 25),
)
def test_series_percentiles_match_a_sort_of_the_window(
    ops: list[tuple[float, float, float]], window: int
) -> None:
    """The incrementally sorted window gives the percentiles a fresh sort of the live samples
    gives (the samples younger than the horizon, at most ``window`` of them, NaN left out)."""
    from fareway.router.stats import _Series

    s = _Series(prior=1.0, alpha=0.1, prior_weight=5, window=window)
    now = 0.0
    live: list[tuple[float, float]] = []
    for step, value, age in ops:
        now += step
        s.add(now, value)
        live = [*live, (now, value)][-window:]
        horizon = now - age
        live = [x for x in live if x[0] >= horizon] if live and live[0][0] < horizon else live
        want = sorted(v for _, v in live if v == v)
        assert s.recent(horizon) == want
        if want:
            got, n = s.quantiles(horizon, (0.5, 0.9, 0.99))
            assert n == len(want)
            assert got == [percentile(want, q) for q in (0.5, 0.9, 0.99)]
