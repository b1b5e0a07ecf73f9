"""Test-only: random ledgers (hypothesis) and the rollups computed the plain way from the raw
rows read back from the database, to hold the writer's rollups and the rollup queries against.

The reference buckets times with datetime arithmetic, sums with Decimal at a precision no
ledger reaches, and counts histogram buckets by comparing with the bounds one by one: none of
it is the code under test (rollups.py, rollup_store.py, rollup_queries.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from hypothesis import strategies as st

from fareway.ledger.queries import _typed
from fareway.ledger.records import ATTEMPT_COLUMNS, CALL_COLUMNS, AttemptRecord, CallRecord
from fareway.ledger.rollups import HIST_BOUNDS_MS

T0 = datetime(2026, 11, 20, 22, 50, tzinfo=UTC)
SPAN = timedelta(days=2, hours=3)
"""Random calls fall in [T0, T0 + SPAN): across midnights, hours and minutes."""

CALL_DIMS = (
    "key_id",
    "key_name",
    "client_dialect",
    "provider",
    "requested_model",
    "upstream_model",
    "status",
    "outcome",
    "cache",
    "user_id",
    "tags",
)
ATTEMPT_DIMS = ("provider", "model", "outcome", "role", "status")

# ----------------------------------------------------------------------------- strategies

_money = st.one_of(
    st.none(),
    st.decimals(min_value=0, max_value=Decimal("50"), places=12, allow_nan=False, allow_infinity=False),
)
_ms = st.one_of(st.none(), st.floats(min_value=0.1, max_value=400_000, allow_nan=False))
_offset = st.integers(min_value=0, max_value=int(SPAN.total_seconds() * 1_000_000) - 1)
_model = st.sampled_from(["gpt-4o-mini", "llama", "héllo-模型", "", "m" * 150])
_user = st.sampled_from([None, None, "u1", "user-ü2", "", "u" * 240])
_tags = st.one_of(
    st.none(),
    st.sets(st.sampled_from(["a", "b", "feature:search", "t" * 64]), min_size=1).map(
        lambda s: ",".join(sorted(s))
    ),
)
"""As pipeline.attribution stores them: sorted, unique, joined by commas; None when untagged."""


@st.composite
def calls(draw: Any, max_calls: int = 40) -> list[tuple[CallRecord, list[AttemptRecord]]]:
    n = draw(st.integers(min_value=0, max_value=max_calls))
    out = []
    for i in range(n):
        when = T0 + timedelta(microseconds=draw(_offset))
        provider = draw(st.sampled_from([None, "openai", "groq"]))
        key = draw(st.sampled_from([None, "k1", "k2"]))
        outcome, status = draw(
            st.sampled_from([("ok", 200), ("ok", 200), ("error", 502), ("error", 429), ("cache_hit", 200)])
        )
        rid = f"r{i:05d}"
        attempts = []
        for j in range(draw(st.integers(min_value=0, max_value=3))):
            attempts.append(
                AttemptRecord(
                    request_id=rid,
                    attempt_no=j,
                    provider=draw(st.sampled_from(["openai", "groq", "deepinfra"])),
                    model=draw(_model),
                    outcome=draw(st.sampled_from(["ok", "ok", "error", "cancelled", "skipped"])),
                    role=draw(st.sampled_from(["primary", "fallback", "race"])),
                    status=draw(st.sampled_from([None, 200, 503])),
                    input_tokens=draw(st.integers(0, 5000)),
                    cached_input_tokens=draw(st.integers(0, 100)),
                    cache_write_tokens=draw(st.integers(0, 10)),
                    output_tokens=draw(st.integers(0, 900)),
                    reasoning_tokens=draw(st.integers(0, 50)),
                    cost=draw(_money),
                    latency_ms=draw(_ms),
                    ttft_ms=draw(_ms),
                    started_at=when + timedelta(milliseconds=draw(st.integers(0, 90_000))),
                )
            )
        call = CallRecord(
            request_id=rid,
            requested_model=draw(_model),
            time=when,
            key_id=key,
            key_name=None if key is None else draw(st.sampled_from([f"name-{key}", ""])),
            client_dialect=draw(st.sampled_from(["openai", "anthropic"])),
            provider=provider,
            upstream_model=None if provider is None else draw(st.one_of(st.none(), _model)),
            status=status,
            outcome=outcome,  # type: ignore[arg-type]
            input_tokens=draw(st.integers(0, 5000)),
            cached_input_tokens=draw(st.integers(0, 100)),
            cache_write_tokens=draw(st.integers(0, 10)),
            output_tokens=draw(st.integers(0, 900)),
            reasoning_tokens=draw(st.integers(0, 50)),
            cost=draw(_money),
            cost_saved=draw(_money) if outcome == "cache_hit" else None,
            cache="hit"
            if outcome == "cache_hit"
            else draw(st.sampled_from(["bypass", "bypass", "miss", "stored"])),
            latency_ms=draw(_ms),
            ttft_ms=draw(_ms),
            attempts=len(attempts),
            user_id=draw(_user),
            tags=draw(_tags),
        )
        out.append((call, attempts))
    return out


# ----------------------------------------------------------------------------- reference


async def raw_rows(store: Any) -> tuple[list[CallRecord], list[AttemptRecord]]:
    """Every raw row, read back from the database."""
    cs = await store.fetch(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls", [])
    ats = await store.fetch(f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts", [])
    return (
        [CallRecord(**_typed(CALL_COLUMNS, r)) for r in cs],
        [AttemptRecord(**_typed(ATTEMPT_COLUMNS, r)) for r in ats],
    )


def floor(t: datetime, grain: int) -> datetime:
    t = t.astimezone(UTC)
    if grain == 1:
        return t.replace(second=0, microsecond=0)
    if grain == 2:
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _bucket(v: float) -> int:
    for i, bound in enumerate(HIST_BOUNDS_MS):
        if v <= bound:
            return i
    return len(HIST_BOUNDS_MS)


@dataclass
class Sums:
    n: int = 0
    tokens: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    cost: Decimal = Decimal(0)
    cost_saved: Decimal = Decimal(0)
    unknown: int = 0
    unpriced: int = 0
    latency: tuple[int, float] = (0, 0.0)
    ttft: tuple[int, float] = (0, 0.0)
    lat_hist: tuple[int, ...] = ()
    ttft_hist: tuple[int, ...] = ()
    lat_range: tuple[float | None, float | None] = (None, None)
    ttft_range: tuple[float | None, float | None] = (None, None)


def _add(s: Sums, r: CallRecord | AttemptRecord, hist: bool) -> None:
    s.n += 1
    toks = (r.input_tokens, r.cached_input_tokens, r.cache_write_tokens, r.output_tokens, r.reasoning_tokens)
    s.tokens = tuple(a + b for a, b in zip(s.tokens, toks, strict=True))  # type: ignore[assignment]
    with localcontext(prec=100):
        if r.cost is None:
            s.unknown += 1
            if r.input_tokens + r.output_tokens > 0:
                s.unpriced += 1
        else:
            s.cost += r.cost
        saved = getattr(r, "cost_saved", None)
        if saved is not None:
            s.cost_saved += saved
    for what in ("latency", "ttft"):
        v = r.latency_ms if what == "latency" else r.ttft_ms
        if v is None:
            continue
        n, total = getattr(s, what)
        setattr(s, what, (n + 1, total + v))
        if hist:
            name = "lat_hist" if what == "latency" else "ttft_hist"
            h = list(getattr(s, name) or [0] * (len(HIST_BOUNDS_MS) + 1))
            h[_bucket(v)] += 1
            setattr(s, name, tuple(h))
            lo, hi = getattr(s, f"{what}_range" if what == "ttft" else "lat_range")
            rng = (v if lo is None else min(lo, v), v if hi is None else max(hi, v))
            setattr(s, "ttft_range" if what == "ttft" else "lat_range", rng)


def reference(calls: list[CallRecord], attempts: list[AttemptRecord]) -> dict[tuple[Any, ...], Sums]:
    """``(table, grain, bucket, dims...) -> Sums`` over the raw rows."""
    out: dict[tuple[Any, ...], Sums] = defaultdict(Sums)
    for c in calls:
        for g in (1, 2, 3):
            _add(out[("calls", g, floor(c.time, g), *(getattr(c, d) for d in CALL_DIMS))], c, False)
    for a in attempts:
        for g in (1, 2, 3):
            _add(
                out[("attempts", g, floor(a.started_at, g), *(getattr(a, d) for d in ATTEMPT_DIMS))], a, True
            )
    return dict(out)


async def stored_rollups(store: Any) -> dict[tuple[Any, ...], Sums]:
    """The rollup tables as read back, in the reference's shape (rows of zero calls left out:
    a subtraction can leave one)."""
    out: dict[tuple[Any, ...], Sums] = {}
    tokens = "input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens"
    for table, dims, extra in (
        ("calls", CALL_DIMS, "unknown_cost_calls, unpriced_calls, cost, cost_saved"),
        ("attempts", ATTEMPT_DIMS, "unpriced_attempts, cost"),
    ):
        hist = ""
        if table == "attempts":
            cols = [f"lat_{i}" for i in range(len(HIST_BOUNDS_MS) + 1)]
            cols += [f"ttft_{i}" for i in range(len(HIST_BOUNDS_MS) + 1)]
            hist = ", latency_min, latency_max, ttft_min, ttft_max, " + ", ".join(cols)
        rows = await store.fetch(
            f"SELECT grain, bucket, {', '.join(dims)}, {table}, {tokens}, {extra}, "
            f"latency_count, latency_sum, ttft_count, ttft_sum{hist} FROM rollup_{table}",
            [],
        )
        for r in rows:
            grain, bucket = int(r[0]), r[1]
            if not isinstance(bucket, datetime):
                bucket = datetime.fromisoformat(bucket)
            i = 2 + len(dims)
            s = Sums(n=int(r[i]), tokens=tuple(int(v) for v in r[i + 1 : i + 6]))  # type: ignore[arg-type]
            i += 6
            if table == "calls":
                s.unknown, s.unpriced = int(r[i]), int(r[i + 1])
                s.cost, s.cost_saved = Decimal(str(r[i + 2])), Decimal(str(r[i + 3]))
                i += 4
            else:
                s.unpriced, s.cost = int(r[i]), Decimal(str(r[i + 1]))
                s.unknown = -1  # not kept for attempts
                i += 2
            s.latency = (int(r[i]), float(r[i + 1]))
            s.ttft = (int(r[i + 2]), float(r[i + 3]))
            i += 4
            if table == "attempts":
                s.lat_range, s.ttft_range = (r[i], r[i + 1]), (r[i + 2], r[i + 3])
                n = len(HIST_BOUNDS_MS) + 1
                lat, ttft = tuple(int(v) for v in r[i + 4 : i + 4 + n]), tuple(int(v) for v in r[i + 4 + n :])
                s.lat_hist = lat if any(lat) else ()
                s.ttft_hist = ttft if any(ttft) else ()
            if s.n == 0 and not any(s.tokens):
                continue
            out[(table, grain, bucket.astimezone(UTC), *r[2 : 2 + len(dims)])] = s
    return out


def assert_same(got: dict[tuple[Any, ...], Sums], want: dict[tuple[Any, ...], Sums]) -> None:
    assert set(got) == set(want)
    for k, w in want.items():
        g = got[k]
        assert (g.n, g.tokens, g.cost, g.unpriced) == (w.n, w.tokens, w.cost, w.unpriced), k
        if k[0] == "calls":
            assert (g.unknown, g.cost_saved) == (w.unknown, w.cost_saved), k
        else:
            assert (g.lat_hist, g.ttft_hist) == (w.lat_hist, w.ttft_hist), k
            assert (g.lat_range, g.ttft_range) == (w.lat_range, w.ttft_range), k
        for what in ("latency", "ttft"):
            (gn, gs), (wn, ws) = getattr(g, what), getattr(w, what)
            assert gn == wn, k
            assert abs(gs - ws) <= 1e-9 * max(1.0, abs(ws)), k


def fixed_records(
    n: int, seed: int, end: datetime, span: timedelta
) -> list[tuple[CallRecord, list[AttemptRecord]]]:
    """``n`` calls like :func:`calls` draws, from a seeded ``random.Random``, in ``[end - span, end)``."""
    import random

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        when = end - timedelta(microseconds=rnd.randrange(1, int(span.total_seconds() * 1e6)))
        provider = rnd.choice([None, "openai", "groq", "anthropic"])
        key = rnd.choice([None, "k1", "k2"])
        outcome, status = rnd.choice([("ok", 200), ("ok", 200), ("error", 502), ("cache_hit", 200)])
        rid = f"f{seed}-{i:05d}"

        def money() -> Decimal | None:
            return None if rnd.random() < 0.15 else Decimal(rnd.randrange(0, 10**9)) / Decimal(10**10)

        def ms() -> float | None:
            return None if rnd.random() < 0.1 else round(rnd.lognormvariate(6.5, 1.0), 3)

        attempts = [
            AttemptRecord(
                request_id=rid,
                attempt_no=j,
                provider=rnd.choice(["openai", "groq", "anthropic"]),
                model=rnd.choice(["gpt-4o-mini", "llama", "haiku"]),
                outcome=rnd.choice(["ok", "ok", "ok", "error", "cancelled"]),  # type: ignore[arg-type]
                status=rnd.choice([200, 200, 503]),
                input_tokens=rnd.randrange(0, 3000),
                cached_input_tokens=rnd.randrange(0, 50),
                output_tokens=rnd.randrange(0, 500),
                reasoning_tokens=rnd.randrange(0, 20),
                cost=money(),
                latency_ms=ms(),
                ttft_ms=ms(),
                started_at=when + timedelta(milliseconds=rnd.randrange(0, 3000)),
            )
            for j in range(rnd.choice([0, 1, 1, 1, 2]))
        ]
        out.append(
            (
                CallRecord(
                    request_id=rid,
                    requested_model=rnd.choice(["gpt-4o-mini", "fast", "llama"]),
                    time=when,
                    key_id=key,
                    key_name=None if key is None else f"name-{key}",
                    client_dialect=rnd.choice(["openai", "anthropic"]),
                    provider=provider,
                    upstream_model=None
                    if provider is None
                    else rnd.choice(["gpt-4o-mini", "llama", "haiku"]),
                    status=status,
                    outcome=outcome,  # type: ignore[arg-type]
                    input_tokens=sum(a.input_tokens for a in attempts),
                    cached_input_tokens=sum(a.cached_input_tokens for a in attempts),
                    output_tokens=sum(a.output_tokens for a in attempts),
                    reasoning_tokens=sum(a.reasoning_tokens for a in attempts),
                    cost=money(),
                    cost_saved=money() if outcome == "cache_hit" else None,
                    cache="hit"
                    if outcome == "cache_hit"
                    else rnd.choice(["bypass", "bypass", "miss", "stored"]),
                    latency_ms=ms(),
                    ttft_ms=ms(),
                    attempts=len(attempts),
                ),
                attempts,
            )
        )
    return out
