"""Rollup tables: per-minute, per-hour and per-day aggregates of the ledger's raw rows, kept by
the writer in the same transaction as the rows they count (see rollup_store.py), read by every
aggregate query (rollup_queries.py).  This module holds what both backends share: the tables'
shape (dimensions and measures), the in-memory aggregation of one batch, the dimension key and
the latency histograms.

Two tables:

* ``rollup_calls``: one row per (grain, bucket, dimensions) of the ``calls`` table, by
  :data:`CALL_DIMS`: calls, tokens by bucket, known cost, cost saved by the cache, calls of
  unknown cost, and the sum and count of latency and TTFT;
* ``rollup_attempts``: the same for ``attempts`` (where the money went: a failed try or a losing
  race leg is billed to its own provider), by :data:`ATTEMPT_DIMS`, with latency and TTFT
  histograms over :data:`HIST_BOUNDS_MS` (plus min and max), so percentiles and Prometheus
  histograms are read from it.

A row's identity is ``(grain, bucket, dims)``: ``bucket`` is the start of its UTC minute, hour or
day, ``dims`` a text key of its dimension values (:func:`dims_key`: NULL and ``''`` differ, no
separator can be faked by a value, long keys are hashed so the index never refuses one).

Adding a dimension (e.g. ``team_id`` once calls carry it): append the raw column's name to
:data:`CALL_DIMS` (or :data:`ATTEMPT_DIMS`) and add the column to the rollup table in a new
migration (``ALTER TABLE rollup_calls ADD COLUMN team_id TEXT``).  Rows written before have NULL
there and keep their shorter key; new rows get the new key; sums over both stay right.  A query
that groups by it only needs its name in the group expressions (rollup_queries.py).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

from fareway.ledger.records import ATTEMPT_COLUMNS, CALL_COLUMNS

MINUTE, HOUR, DAY = 1, 2, 3
GRAINS = (MINUTE, HOUR, DAY)
GRAIN_SPAN = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}

HIST_BOUNDS_MS: tuple[float, ...] = (
    10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000,
    5000, 7500, 10000, 15000, 20000, 30000, 40000, 60000, 80000, 120000, 160000, 300000,
)  # fmt: skip
"""Upper bounds (inclusive, as Prometheus ``le``) of the histogram buckets, in milliseconds; one
more bucket holds what is above the last.  They include every bound of the Prometheus histograms
in fareway.metrics, so those are sums of these."""
N_BUCKETS = len(HIST_BOUNDS_MS) + 1

TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
CALL_DIMS: tuple[str, ...] = (
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
ATTEMPT_DIMS: tuple[str, ...] = ("provider", "model", "outcome", "role", "status")
INT_DIMS = frozenset({"status"})

_MAX_KEY = 200
_MAX_KEYS = 50_000
"""Dimension keys a Roller remembers (then it starts again)."""
_MONEY = Context(prec=80)  # exact for any realistic ledger, like Postgres NUMERIC sums


def dims_key(values: Iterable[Any]) -> str:
    """The text identity of a tuple of dimension values: each value as ``len:text`` (``-`` for
    NULL), concatenated; a key over 200 characters is ``#`` and its SHA-256 instead.  The SQL
    backfill builds the same text (rollup_store.py)."""
    parts = []
    for v in values:
        if v is None:
            parts.append("-")
        else:
            s = str(v)
            parts.append(f"{len(s)}:{s}")
    enc = "".join(parts)
    if len(enc) <= _MAX_KEY:
        return enc
    return "#" + hashlib.sha256(enc.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- table shapes


@dataclass(frozen=True)
class Table:
    """One rollup table: its raw table, dimensions and measures (in the order of its columns)."""

    name: str
    raw: str
    time: str
    """The raw table's time column (a row's bucket is the start of its minute, hour, day)."""
    dims: tuple[str, ...]
    counter: str
    counts: tuple[str, ...]
    """Integer measures other than the counter and the tokens (see :data:`COUNT_SQL`)."""
    money: tuple[str, ...]
    histograms: bool
    measures: tuple[str, ...] = field(init=False)
    money_at: tuple[int, ...] = field(init=False)
    """Where the money measures are in :attr:`measures`."""

    def __post_init__(self) -> None:
        timing = ["latency_count", "latency_sum", "ttft_count", "ttft_sum"]
        if self.histograms:
            timing += ["latency_min", "latency_max", "ttft_min", "ttft_max"]
            timing += [f"lat_{i}" for i in range(N_BUCKETS)] + [f"ttft_{i}" for i in range(N_BUCKETS)]
        cols = (self.counter, *TOKENS, *self.counts, *self.money, *timing)
        object.__setattr__(self, "measures", cols)
        object.__setattr__(self, "money_at", tuple(cols.index(m) for m in self.money))

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column, as the upsert writes them."""
        return ("grain", "bucket", "dims", *self.dims, *self.measures)

    def index(self, name: str) -> int:
        return self.measures.index(name)


CALLS = Table(
    name="rollup_calls",
    raw="calls",
    time="time",
    dims=CALL_DIMS,
    counter="calls",
    counts=("unknown_cost_calls", "unpriced_calls"),
    money=("cost", "cost_saved"),
    histograms=False,
)
ATTEMPTS = Table(
    name="rollup_attempts",
    raw="attempts",
    time="started_at",
    dims=ATTEMPT_DIMS,
    counter="attempts",
    counts=("unpriced_attempts",),
    money=("cost",),
    histograms=True,
)
TABLES = (CALLS, ATTEMPTS)

COUNT_SQL = {
    "unknown_cost_calls": "CASE WHEN cost IS NULL THEN 1 ELSE 0 END",
    "unpriced_calls": "CASE WHEN cost IS NULL AND input_tokens + output_tokens > 0 THEN 1 ELSE 0 END",
    "unpriced_attempts": "CASE WHEN cost IS NULL AND input_tokens + output_tokens > 0 THEN 1 ELSE 0 END",
}
"""How each count is computed from a raw row (the raw edges of a query, and the backfill)."""


def measure_kind(name: str) -> str:
    """``int``, ``money``, ``float`` (a sum), ``min`` or ``max``: how two values combine."""
    if name in ("cost", "cost_saved"):
        return "money"
    if name in ("latency_sum", "ttft_sum"):
        return "float"
    if name.endswith("_min"):
        return "min"
    if name.endswith("_max"):
        return "max"
    return "int"


def raw_measure_sql(table: Table, name: str) -> str:
    """A measure of one raw row, as SQL over the raw table (the same value :class:`Aggregate`
    computes in Python)."""
    if name == table.counter:
        return "1"
    if name in TOKENS or name in table.money:
        return name
    if name in COUNT_SQL:
        return COUNT_SQL[name]
    what, _, tail = name.partition("_")
    col = "latency_ms" if what in ("latency", "lat") else "ttft_ms"
    if tail == "count":
        return f"CASE WHEN {col} IS NULL THEN 0 ELSE 1 END"
    if tail == "sum":
        return f"COALESCE({col}, 0)"
    if tail in ("min", "max"):
        return col
    i = int(tail)
    lo = f"{col} > {HIST_BOUNDS_MS[i - 1]!r}" if i else f"{col} IS NOT NULL"
    hi = f" AND {col} <= {HIST_BOUNDS_MS[i]!r}" if i < len(HIST_BOUNDS_MS) else ""
    return f"CASE WHEN {lo}{hi} THEN 1 ELSE 0 END"


# ------------------------------------------------------------------------------- buckets


class Clock:
    """How a backend's raw time values become bucket tokens (hashable, cheap to make per row)
    and stored bucket values."""

    def minute(self, t: Any) -> Any:
        raise NotImplementedError

    def up(self, token: Any, grain: int) -> Any:
        """The token of the hour or day a minute token is in."""
        raise NotImplementedError

    def stored(self, token: Any, grain: int) -> Any:
        raise NotImplementedError


class TextClock(Clock):
    """SQLite: times are fixed-width ISO text (``2026-11-20T10:15:00.000000+00:00``)."""

    _TAIL = {MINUTE: ":00.000000+00:00", HOUR: ":00:00.000000+00:00", DAY: "T00:00:00.000000+00:00"}

    def minute(self, t: Any) -> Any:
        return t[:16]

    def up(self, token: Any, grain: int) -> Any:
        return token[:13] if grain == HOUR else token[:10] if grain == DAY else token

    def stored(self, token: Any, grain: int) -> Any:
        return token + self._TAIL[grain]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EpochClock(Clock):
    """Postgres: times are aware datetimes; a token is the Unix minute."""

    def minute(self, t: Any) -> Any:
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return int(t.timestamp() // 60)

    def up(self, token: Any, grain: int) -> Any:
        return token // 60 * 60 if grain == HOUR else token // 1440 * 1440 if grain == DAY else token

    def stored(self, token: Any, grain: int) -> Any:
        return _EPOCH + timedelta(minutes=token)


def floor_to(t: datetime, grain: int) -> datetime:
    t = t.astimezone(UTC)
    if grain == MINUTE:
        return t.replace(second=0, microsecond=0)
    if grain == HOUR:
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_to(t: datetime, grain: int) -> datetime:
    f = floor_to(t, grain)
    return f if f == t else f + GRAIN_SPAN[grain]


# --------------------------------------------------------------------- in-memory aggregation


def _fold_source(table: Table, columns: Sequence[str]) -> str:
    """Python source of ``fold(states, rows, sign)``: adds ``sign`` times each raw row (a tuple
    in ``columns`` order) to the per-(minute, dims) state lists.  Generated once per table, so
    the loop has every index as a constant (it runs for every call the ledger writes)."""
    col = {name: i for i, name in enumerate(columns)}
    m = {name: i for i, name in enumerate(table.measures)}
    dims = ", ".join(f"r[{col[d]}]" for d in table.dims)
    lines = [
        "def fold(states, rows, sign):",
        "    for r in rows:",
        f"        k = (minute(r[{col[table.time]}]), {dims},)",
        "        s = states.get(k)",
        "        if s is None:",
        "            s = states[k] = new()",
        f"        s[{m[table.counter]}] += sign",
    ]
    for t in TOKENS:
        lines.append(f"        s[{m[t]}] += sign * r[{col[t]}]")
    cost = col["cost"]
    lines.append(f"        c = r[{cost}]")
    lines.append("        if c is None:")
    if "unknown_cost_calls" in m:
        lines.append(f"            s[{m['unknown_cost_calls']}] += sign")
    unpriced = "unpriced_calls" if "unpriced_calls" in m else "unpriced_attempts"
    lines.append(f"            if r[{col['input_tokens']}] + r[{col['output_tokens']}] > 0:")
    lines.append(f"                s[{m[unpriced]}] += sign")
    lines.append("        else:")
    lines.append(f"            s[{m['cost']}] = (add if sign > 0 else sub)(s[{m['cost']}], money(c))")
    if "cost_saved" in m:
        lines.append(f"        c = r[{col['cost_saved']}]")
        lines.append("        if c is not None:")
        lines.append(
            f"            s[{m['cost_saved']}] = (add if sign > 0 else sub)(s[{m['cost_saved']}], money(c))"
        )
    for what, raw, hist in (("latency", "latency_ms", "lat"), ("ttft", "ttft_ms", "ttft")):
        lines.append(f"        v = r[{col[raw]}]")
        lines.append("        if v is not None:")
        lines.append(f"            s[{m[what + '_count']}] += sign")
        lines.append(f"            s[{m[what + '_sum']}] += sign * v")
        if table.histograms:
            lines.append(f"            s[{m[hist + '_0']} + bisect_left(BOUNDS, v)] += sign")
            lines.append("            if sign > 0:")
            lo, hi = m[what + "_min"], m[what + "_max"]
            lines.append(f"                if s[{lo}] is None or v < s[{lo}]:")
            lines.append(f"                    s[{lo}] = v")
            lines.append(f"                if s[{hi}] is None or v > s[{hi}]:")
            lines.append(f"                    s[{hi}] = v")
    return "\n".join(lines) + "\n"


def _zero(table: Table) -> list[Any]:
    kinds = {"int": 0, "money": Decimal(0), "float": 0.0, "min": None, "max": None}
    return [kinds[measure_kind(n)] for n in table.measures]


Fold = Callable[[dict[tuple[Any, ...], list[Any]], Iterable[Sequence[Any]], int], None]


def make_fold(table: Table, columns: Sequence[str], clock: Clock, money: Callable[[Any], Decimal]) -> Fold:
    template = _zero(table)
    namespace: dict[str, Any] = {}
    env = {
        "minute": clock.minute,
        "new": template.copy,
        "money": money,
        "add": _MONEY.add,  # exact: the default context would round past 28 digits
        "sub": _MONEY.subtract,
        "bisect_left": bisect_left,
        "BOUNDS": HIST_BOUNDS_MS,
    }
    exec(_fold_source(table, columns), env, namespace)  # source built above from column names
    fold: Fold = namespace["fold"]
    return fold


def _money_in(value: Any) -> Decimal:
    return value if type(value) is Decimal else Decimal(value)


def _combine_source(table: Table) -> str:
    """Python source of ``combine(into, other)``: adds one state list into another."""
    lines = ["def combine(a, b):"]
    for i, name in enumerate(table.measures):
        kind = measure_kind(name)
        if kind in ("int", "float"):
            lines.append(f"    a[{i}] += b[{i}]")
        elif kind == "money":
            lines.append(f"    a[{i}] = add(a[{i}], b[{i}])")
        else:
            op = "<" if kind == "min" else ">"
            lines.append(f"    v = b[{i}]")
            lines.append(f"    if v is not None and (a[{i}] is None or v {op} a[{i}]):")
            lines.append(f"        a[{i}] = v")
    return "\n".join(lines) + "\n"


Combine = Callable[[list[Any], Sequence[Any]], None]


def make_combine(table: Table) -> Combine:
    namespace: dict[str, Any] = {}
    exec(_combine_source(table), {"add": _MONEY.add}, namespace)  # source built from measure names
    combine: Combine = namespace["combine"]
    return combine


@dataclass(slots=True)
class Aggregate:
    """The rollup deltas of some raw rows (a batch, or rows being deleted with ``sign=-1``),
    per (minute, dims); :meth:`rows` expands them to every grain."""

    table: Table
    fold: Fold
    combine: Combine
    clock: Clock
    keys: dict[tuple[Any, ...], str]
    """Dimension keys already made (shared by the Roller's aggregates: dimension sets recur)."""
    states: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)

    def add(self, rows: Iterable[Sequence[Any]], sign: int = 1) -> None:
        self.fold(self.states, rows, sign)

    def __bool__(self) -> bool:
        return bool(self.states)

    def rows(self, money_out: Callable[[Decimal], Any]) -> list[tuple[Any, ...]]:
        """Upsert rows in the column order of :attr:`Table.columns`, sorted by identity (so that
        two writers upserting the same rows lock them in the same order: no deadlock).  Call it
        once: the money in the states is converted in place."""
        money = self.table.money_at
        combine, up, stored = self.combine, self.clock.up, self.clock.stored
        hours: dict[tuple[Any, ...], list[Any]] = {}
        days: dict[tuple[Any, ...], list[Any]] = {}
        for k, state in self.states.items():
            dims = k[1:]
            for coarse, grain in ((hours, HOUR), (days, DAY)):
                ck = (up(k[0], grain), *dims)
                cur = coarse.get(ck)
                if cur is None:
                    coarse[ck] = state.copy()
                else:
                    combine(cur, state)
        keys = self.keys
        if len(keys) > _MAX_KEYS:
            keys.clear()
        out = []
        for grain, states in ((MINUTE, self.states), (HOUR, hours), (DAY, days)):
            for k, state in states.items():
                dims = k[1:]
                key = keys.get(dims)
                if key is None:
                    key = keys[dims] = dims_key(dims)
                for i in money:
                    state[i] = money_out(state[i])
                out.append((grain, stored(k[0], grain), key, *dims, *state))
        out.sort(key=_identity)
        return out


def _identity(row: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    return row[0], row[1], row[2]


@dataclass(slots=True)
class Deltas:
    """A batch's deltas for both tables."""

    calls: Aggregate
    attempts: Aggregate

    def add(self, calls: Iterable[Sequence[Any]], attempts: Iterable[Sequence[Any]], sign: int = 1) -> Deltas:
        self.calls.add(calls, sign)
        self.attempts.add(attempts, sign)
        return self


class Roller:
    """Makes :class:`Deltas` for one backend's row format."""

    def __init__(self, clock: Clock, money: Callable[[Any], Decimal] = _money_in) -> None:
        self.clock = clock
        self._calls = make_fold(CALLS, CALL_COLUMNS, clock, money)
        self._attempts = make_fold(ATTEMPTS, ATTEMPT_COLUMNS, clock, money)
        self._combine_calls = make_combine(CALLS)
        self._combine_attempts = make_combine(ATTEMPTS)
        self._keys: tuple[dict[tuple[Any, ...], str], dict[tuple[Any, ...], str]] = ({}, {})

    def deltas(self) -> Deltas:
        return Deltas(
            Aggregate(CALLS, self._calls, self._combine_calls, self.clock, self._keys[0]),
            Aggregate(ATTEMPTS, self._attempts, self._combine_attempts, self.clock, self._keys[1]),
        )


# ------------------------------------------------------------------------ percentiles


def hist_percentile(
    counts: Sequence[int], q: float, lo: float | None = None, hi: float | None = None
) -> float | None:
    """The ``q`` quantile, as ``percentile_cont`` (linear between the values at ranks
    ``floor(q * (n - 1))`` and ``ceil(...)``), of values known only by their histogram over
    :data:`HIST_BOUNDS_MS` and their smallest (``lo``) and largest (``hi``) value.  A bucket's
    values are taken as spread evenly over its range (clipped to ``[lo, hi]``).  None when there
    are no values.  Exact when every value is in one bucket and equal, and for ``q`` 0 and 1;
    otherwise within the range of the bucket(s) that hold the true quantile's neighbours."""
    n = sum(counts)
    if n <= 0:
        return None
    rank = q * (n - 1)
    k0 = int(rank)
    k1 = min(k0 + 1, n - 1)
    v0 = _value_at(counts, k0, lo, hi)
    if k1 == k0 or rank == k0:
        return v0
    return v0 + (rank - k0) * (_value_at(counts, k1, lo, hi) - v0)


def _value_at(counts: Sequence[int], k: int, lo: float | None, hi: float | None) -> float:
    """The estimated ``k``-th smallest value (0-based): the smallest and largest are known
    (``lo``, ``hi``); the others sit at the midpoints of equal shares of their bucket."""
    n = sum(counts)
    if k == 0 and lo is not None:
        return float(lo)
    if k == n - 1 and hi is not None:
        return float(hi)
    seen = 0
    last = len(HIST_BOUNDS_MS)
    for i, c in enumerate(counts):
        if c <= 0:
            continue
        if k < seen + c:
            b_lo = float(HIST_BOUNDS_MS[i - 1]) if i else 0.0
            b_hi = float(HIST_BOUNDS_MS[i]) if i < last else (hi if hi is not None else b_lo)
            if lo is not None:
                b_lo = min(max(b_lo, lo), b_hi)
            if hi is not None:
                b_hi = max(min(b_hi, hi), b_lo)
            return b_lo + (k - seen + 0.5) / c * (b_hi - b_lo)
        seen += c
    return float(hi) if hi is not None else float(HIST_BOUNDS_MS[-1])
