"""The aggregate queries (usage, spend over time, latency by provider, the Prometheus totals)
answered from the rollup tables, with the same results as the raw-row queries of queries.py.

A window ``[since, until)`` is cut into pieces (:func:`plan`): whole days from the day rollups,
the whole hours at its edges from the hour rollups, whole minutes from the minute rollups, and
the parts of a minute at its two ends from the raw rows (at most two minutes of them, found by
the time index).  One SQL statement reads the pieces (``UNION ALL``) and aggregates them, so
its cost grows with the number of rollup rows in the window, not with the number of calls.

Where the raw rows of an edge were pruned (retention.py), that edge is read from its minute's
rollup instead, or from its hour's where the minute rollups were pruned too: a window that
starts (or ends) in pruned history is taken from the start of that minute (or hour).

Percentiles come from the attempts rollup's histograms (rollups.py: fixed buckets, plus the
smallest and largest value), not from the values themselves: within a bucket's width of the
raw ``percentile_cont``.  Every count, token sum and money sum is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from fareway.ledger.base import Store
from fareway.ledger.queries import (
    _FIELD,
    _GROUP_EXPR,
    GROUPS,
    GroupBy,
    ProviderLatency,
    SpendPoint,
    UsageRow,
    _bucket_start,
    _money,
    _Params,
    _sort_key,
    _where,
    _window,
    split_tags,
    usage_row,
)
from fareway.ledger.rollup_store import PRUNED_TABLE
from fareway.ledger.rollups import (
    ATTEMPTS,
    CALLS,
    DAY,
    HOUR,
    MINUTE,
    N_BUCKETS,
    TOKENS,
    Table,
    ceil_to,
    floor_to,
    hist_percentile,
    raw_measure_sql,
)

RAW = 0


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a window read from one place: rollups of ``grain`` (``RAW``: the raw rows) with
    their bucket (or time) in ``[lo, hi)``; None is unbounded."""

    grain: int
    lo: datetime | None
    hi: datetime | None


def plan(
    since: datetime | None, until: datetime | None, top: int = DAY, raw_from: datetime | None = None
) -> list[Piece]:
    """The pieces of ``[since, until)``, coarsest first, using grains up to ``top``.

    ``raw_from``: raw rows before it were pruned (a minute boundary), and minute rollups before
    its hour (retention.py).  A bound in pruned history is moved to the start of its minute, or
    of its hour where the minute rollups are gone too, so that no piece needs what was pruned."""
    since, until = _utc(since), _utc(until)
    if raw_from is not None:
        since, until = _snap(since, raw_from), _snap(until, raw_from)
    if since is not None and until is not None and since >= until:
        return []
    out: list[Piece] = []

    def cut(lo: datetime | None, hi: datetime | None, grain: int) -> None:
        if grain == RAW:
            assert lo is not None and hi is not None
            if lo < hi:
                out.append(Piece(RAW, lo, hi))
            return
        a = None if lo is None else ceil_to(lo, grain)
        b = None if hi is None else floor_to(hi, grain)
        if a is None or b is None or a < b:
            out.append(Piece(grain, a, b))
            if lo is not None:
                assert a is not None
                cut(lo, a, grain - 1)
            if hi is not None:
                assert b is not None
                cut(b, hi, grain - 1)
        else:
            cut(lo, hi, grain - 1)

    cut(since, until, top)
    return out


def _snap(t: datetime | None, raw_from: datetime) -> datetime | None:
    if t is None or t >= raw_from:
        return t
    return floor_to(t, MINUTE) if t >= floor_to(raw_from, HOUR) else floor_to(t, HOUR)


def _utc(t: datetime | None) -> datetime | None:
    """``t`` in UTC (naive means UTC, as the raw-row queries take it)."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


async def pruned_before(store: Store, raw: str) -> datetime | None:
    """Where the raw rows of ``raw`` (``calls``/``attempts``) start after pruning, if they were."""
    p = _Params(store)
    rows = await store.fetch(f"SELECT before FROM {PRUNED_TABLE} WHERE tbl = {p.add(raw)}", p.values)
    if not rows or rows[0][0] is None:
        return None
    value = rows[0][0]
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


Conds = Callable[[_Params], list[str]]


def _union(
    p: _Params,
    table: Table,
    pieces: Sequence[Piece],
    dims: Sequence[str],
    measures: Sequence[str],
    conds: Conds,
) -> str:
    """``SELECT t, <dims>, <measures>`` over every piece, as one ``UNION ALL``."""
    parts = []
    for piece in pieces:
        if piece.grain == RAW:
            cols = [f"{table.time} AS t", *dims, *(f"{raw_measure_sql(table, m)} AS {m}" for m in measures)]
            where = [*_window(p, table.time, piece.lo, piece.hi), *conds(p)]
            parts.append(f"SELECT {', '.join(cols)} FROM {table.raw}{_where(where)}")
        else:
            cols = ["bucket AS t", *dims, *measures]
            where = [f"grain = {piece.grain}", *_window(p, "bucket", piece.lo, piece.hi), *conds(p)]
            parts.append(f"SELECT {', '.join(cols)} FROM {table.name}{_where(where)}")
    return " UNION ALL ".join(parts)


def _no_conds(p: _Params) -> list[str]:
    return []


async def _aggregate(
    store: Store,
    table: Table,
    since: datetime | None,
    until: datetime | None,
    top: int,
    dims: Sequence[str],
    measures: Sequence[str],
    select: Sequence[str],
    group: Sequence[str],
    conds: Conds = _no_conds,
) -> list[tuple[Any, ...]] | None:
    """``SELECT <select> ... GROUP BY <group>`` over the window's pieces; None for an empty
    window."""
    raw_from = await pruned_before(store, table.raw)
    pieces = plan(since, until, top, raw_from)
    if not pieces:
        return None
    p = _Params(store)
    union = _union(p, table, pieces, dims, measures, conds)
    sql = f"SELECT {', '.join(select)} FROM ({union}) u"
    if group:
        sql += f" GROUP BY {', '.join(group)}"
    return await store.fetch(sql, p.values)


# ------------------------------------------------------------------------------- usage


async def usage(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Sequence[GroupBy] = (),
    key_id: str | None = None,
) -> list[UsageRow]:
    """As :func:`fareway.ledger.queries.usage`, from the rollups (``tag``: grouped by tag set
    in SQL, then split per tag, :func:`~fareway.ledger.queries.split_tags`)."""
    for g in group_by:
        if g not in GROUPS:
            raise ValueError(f"cannot group usage by {g!r}")
    d = store.dialect
    exprs = [d.bucket("t", "day") if g == "day" else _GROUP_EXPR[g] for g in group_by]
    select = [*exprs, "MAX(key_name)"] if "key" in group_by else list(exprs)
    n = len(select)
    select += [
        "SUM(calls)",
        "SUM(CASE WHEN outcome = 'error' THEN calls ELSE 0 END)",
        *(f"SUM({t})" for t in TOKENS),
        d.money_sum("cost"),
        d.money_sum("cost_saved"),
        "SUM(unknown_cost_calls)",
        "SUM(CASE WHEN cache = 'hit' THEN calls ELSE 0 END)",
        "SUM(CASE WHEN cache <> 'bypass' THEN calls ELSE 0 END)",
    ]
    dims = [
        "provider", "requested_model", "upstream_model", "key_id", "key_name", "outcome", "cache",
        "user_id", "tags",
    ]  # fmt: skip
    measures = ["calls", *TOKENS, "cost", "cost_saved", "unknown_cost_calls"]

    def conds(p: _Params) -> list[str]:
        return [] if key_id is None else [f"key_id = {p.add(key_id)}"]

    rows = await _aggregate(store, CALLS, since, until, DAY, dims, measures, select, exprs, conds)
    if rows is None:
        rows = [] if group_by else [(None,) * (n + 12)]
    out: list[UsageRow] = []
    for row in rows:
        keys, totals = row[:n], row[n:]
        out.append(usage_row(group_by, keys, totals))
    out = split_tags(out, group_by)
    out.sort(key=lambda r: _sort_key([getattr(r, _FIELD[g]) for g in group_by]))
    return out


# --------------------------------------------------------------------- latency by provider

_LAT = [f"lat_{i}" for i in range(N_BUCKETS)]
_TTFT = [f"ttft_{i}" for i in range(N_BUCKETS)]


async def latency_by_provider(store: Store, since: datetime | None = None) -> list[ProviderLatency]:
    """As :func:`fareway.ledger.queries.latency_by_provider`, from the attempts rollup: the
    percentiles estimated from its histograms (see the module docstring)."""
    ok = "outcome = 'ok'"
    select = [
        "provider",
        "SUM(attempts)",
        "SUM(CASE WHEN outcome = 'error' THEN attempts ELSE 0 END)",
        *(f"SUM(CASE WHEN {ok} THEN {c} ELSE 0 END)" for c in (*_LAT, *_TTFT)),
        *(f"{f}(CASE WHEN {ok} THEN {c} END)" for f, c in _EXTREMES),
    ]
    measures = ["attempts", *_LAT, *_TTFT, "latency_min", "latency_max", "ttft_min", "ttft_max"]

    def conds(p: _Params) -> list[str]:
        return ["outcome IN ('ok', 'error')"]

    rows = await _aggregate(
        store, ATTEMPTS, since, None, DAY, ["provider", "outcome"], measures, select, ["provider"], conds
    )
    out = []
    for row in rows or []:
        total, errors = int(row[1] or 0), int(row[2] or 0)
        lat = [int(v or 0) for v in row[3 : 3 + N_BUCKETS]]
        ttft = [int(v or 0) for v in row[3 + N_BUCKETS : 3 + 2 * N_BUCKETS]]
        lat_lo, lat_hi, ttft_lo, ttft_hi = (None if v is None else float(v) for v in row[3 + 2 * N_BUCKETS :])
        vals = [hist_percentile(lat, q, lat_lo, lat_hi) for q in (0.5, 0.9, 0.99)]
        vals += [hist_percentile(ttft, q, ttft_lo, ttft_hi) for q in (0.5, 0.9, 0.99)]
        out.append(ProviderLatency(row[0], total, errors, errors / total if total else 0.0, *vals))
    out.sort(key=lambda r: r.provider)
    return out


_EXTREMES = (("MIN", "latency_min"), ("MAX", "latency_max"), ("MIN", "ttft_min"), ("MAX", "ttft_max"))


# ------------------------------------------------------------------------ spend over time


async def spend_over_time(
    store: Store,
    since: datetime | None = None,
    bucket: Literal["hour", "day"] = "hour",
    by: Literal["provider", "model", "key"] | None = "provider",
    until: datetime | None = None,
) -> list[SpendPoint]:
    """As :func:`fareway.ledger.queries.spend_over_time`, from the rollups."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")
    d = store.dialect
    if by in ("provider", "model"):
        table, gcol, unpriced = ATTEMPTS, str(by), "unpriced_attempts"
        dims = [gcol]
    elif by in ("key", None):
        table, gcol, unpriced = CALLS, "key_id" if by == "key" else "NULL", "unpriced_calls"
        dims = ["key_id"] if by == "key" else []
    else:
        raise ValueError(f"cannot split spend by {by!r}")
    b = d.bucket("t", bucket)
    group = [b, gcol] if by is not None else [b]
    select = [b, gcol, d.money_sum("cost"), f"SUM({unpriced})"]
    top = HOUR if bucket == "hour" else DAY
    rows = await _aggregate(store, table, since, until, top, dims, ["cost", unpriced], select, group)
    out = [
        SpendPoint(_bucket_start(r[0]), r[1], _money(r[2]) or Decimal(0), int(r[3] or 0)) for r in rows or []
    ]
    out.sort(key=lambda s: (s.bucket, _sort_key([s.group])))
    return out


# ------------------------------------------------------------------- Prometheus totals


@dataclass(slots=True)
class CallTotal:
    provider: str | None
    upstream_model: str | None
    status: int
    client_dialect: str
    outcome: str
    calls: int
    cache: str = "bypass"
    cost_saved: Decimal = Decimal(0)


@dataclass(slots=True)
class AttemptTotal:
    provider: str
    model: str
    outcome: str
    attempts: int
    tokens: dict[str, int]
    cost: Decimal
    unpriced: int
    latency_sum: float
    ttft_sum: float
    latency_hist: list[int]
    ttft_hist: list[int]


@dataclass(slots=True)
class LedgerTotals:
    """Everything the ledger ever recorded (from the day rollups), grouped as the Prometheus
    metrics label it (fareway.metrics)."""

    calls: list[CallTotal] = field(default_factory=list)
    attempts: list[AttemptTotal] = field(default_factory=list)


async def ledger_totals(store: Store) -> LedgerTotals:
    d = store.dialect
    call_dims = ["provider", "upstream_model", "status", "client_dialect", "outcome", "cache"]
    rows = await store.fetch(
        f"SELECT {', '.join(call_dims)}, SUM(calls), {d.money_sum('cost_saved')} FROM {CALLS.name} "
        f"WHERE grain = {DAY} GROUP BY {', '.join(call_dims)}",
        [],
    )
    out = LedgerTotals()
    for r in rows:
        out.calls.append(
            CallTotal(
                r[0],
                r[1],
                int(r[2]),
                r[3],
                r[4],
                int(r[6] or 0),
                r[5] or "bypass",
                _money(r[7]) or Decimal(0),
            )
        )
    att_dims = ["provider", "model", "outcome"]
    sums = ["attempts", *TOKENS]
    tail = ["unpriced_attempts", "latency_sum", "ttft_sum", *_LAT, *_TTFT]
    rows = await store.fetch(
        f"SELECT {', '.join(att_dims)}, {', '.join(f'SUM({c})' for c in sums)}, {d.money_sum('cost')}, "
        f"{', '.join(f'SUM({c})' for c in tail)} FROM {ATTEMPTS.name} WHERE grain = {DAY} "
        f"GROUP BY {', '.join(att_dims)}",
        [],
    )
    for r in rows:
        i = len(att_dims)
        counts = [int(v or 0) for v in r[i : i + len(sums)]]
        cost = _money(r[i + len(sums)]) or Decimal(0)
        rest = r[i + len(sums) + 1 :]
        out.attempts.append(
            AttemptTotal(
                provider=r[0],
                model=r[1],
                outcome=r[2],
                attempts=counts[0],
                tokens=dict(zip(TOKENS, counts[1:], strict=True)),
                cost=cost,
                unpriced=int(rest[0] or 0),
                latency_sum=float(rest[1] or 0),
                ttft_sum=float(rest[2] or 0),
                latency_hist=[int(v or 0) for v in rest[3 : 3 + N_BUCKETS]],
                ttft_hist=[int(v or 0) for v in rest[3 + N_BUCKETS :]],
            )
        )
    return out
