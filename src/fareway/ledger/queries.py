"""Named queries over the ledger, the same results from SQLite and Postgres.

Each query builds its SQL from the backend's :class:`~fareway.ledger.base.Dialect` (placeholders,
time buckets, exact money sums, percentiles) and post-processes the rows in Python (types,
ordering: rows are sorted in Python so collation and NULL ordering cannot differ).

* :func:`usage` is a per-*call* view: a call counts once, under its final provider and model.
* :func:`spend_over_time` by provider/model is a per-*attempt* view: where the money went (a
  failed try or a losing race leg is billed to its own provider).  By key it reads calls.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from fareway.ledger.base import Store
from fareway.ledger.records import (
    ATTEMPT_COLUMNS,
    BOOL_COLUMNS,
    CALL_COLUMNS,
    MONEY_COLUMNS,
    TIME_COLUMNS,
    AttemptRecord,
    CallRecord,
)

GroupBy = Literal["provider", "model", "key", "day", "user", "tag"]
GROUPS: tuple[str, ...] = ("provider", "model", "key", "day", "user", "tag")
_GROUP_EXPR = {
    "provider": "provider",
    "model": "COALESCE(upstream_model, requested_model)",
    "key": "key_id",
    "user": "user_id",
    "tag": "tags",
}
"""The SQL of each grouping; ``tag`` groups by the call's whole tag set, which
:func:`split_tags` then splits into one group per tag."""


# ------------------------------------------------------------------------------- results


@dataclass(slots=True)
class UsageRow:
    provider: str | None = None
    model: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    day: date | None = None
    user: str | None = None
    """The end user (None: calls that named none)."""
    tag: str | None = None
    """One request tag (None: untagged calls).  A call with several tags counts under each."""
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    """Sum of the known costs; see ``unknown_cost_calls`` for calls whose price is unknown."""
    cost_saved: Decimal = Decimal(0)
    """What the cached answers served in the window cost when they were made."""
    unknown_cost_calls: int = 0
    cache_hits: int = 0
    """Calls answered from the response cache."""
    cache_lookups: int = 0
    """Calls that used the response cache (cache hit, miss or stored; not bypass)."""

    @property
    def cache_hit_rate(self) -> float | None:
        """cache_hits / cache_lookups, None when no call used the cache."""
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None


@dataclass(slots=True)
class LoggedCall:
    call: CallRecord
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(slots=True)
class ProviderLatency:
    provider: str
    attempts: int
    errors: int
    error_rate: float
    """errors / (ok + error attempts); cancelled, skipped and cache-hit attempts are left out."""
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p90_ms: float | None
    ttft_p99_ms: float | None


@dataclass(slots=True)
class SpendPoint:
    bucket: datetime
    """Start of the UTC hour or day."""
    group: str | None
    cost: Decimal
    unknown_cost: int
    """Rows in the bucket that consumed tokens at an unknown price."""


# ------------------------------------------------------------------------------- helpers


class _Params:
    def __init__(self, store: Store) -> None:
        self.d = store.dialect
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return self.d.ph(len(self.values))

    def time(self, value: datetime) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return self.add(self.d.time_param(value))


def _money(value: Any) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _bucket_start(text: str) -> datetime:
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.fromisoformat(text + ":00:00").replace(tzinfo=UTC)


def _typed(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in zip(columns, row, strict=True):
        if name in MONEY_COLUMNS:
            value = _money(value)
        elif name in TIME_COLUMNS:
            value = _when(value)
        elif name in BOOL_COLUMNS:
            value = bool(value)
        out[name] = value
    return out


def _sort_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple((v is not None, v if v is not None else "") for v in values)


def _window(p: _Params, column: str, since: datetime | None, until: datetime | None) -> list[str]:
    where = []
    if since is not None:
        where.append(f"{column} >= {p.time(since)}")
    if until is not None:
        where.append(f"{column} < {p.time(until)}")
    return where


def _where(conds: list[str]) -> str:
    return f" WHERE {' AND '.join(conds)}" if conds else ""


# ------------------------------------------------------------------------------- queries


async def usage(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Sequence[GroupBy] = (),
    key_id: str | None = None,
) -> list[UsageRow]:
    """Call totals in ``[since, until)``, grouped by any of provider, model (the upstream model,
    else the requested one), key and UTC day.  No grouping gives one row (zeros when empty)."""
    for g in group_by:
        if g not in GROUPS:
            raise ValueError(f"cannot group usage by {g!r}")
    d = store.dialect
    p = _Params(store)
    conds = _window(p, "time", since, until)
    if key_id is not None:
        conds.append(f"key_id = {p.add(key_id)}")
    exprs = [d.bucket("time", "day") if g == "day" else _GROUP_EXPR[g] for g in group_by]
    select = [*exprs, "MAX(key_name)"] if "key" in group_by else list(exprs)
    sql = (
        f"SELECT {', '.join([*select, ''])}"
        "COUNT(*), SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), "
        "SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), "
        f"SUM(output_tokens), SUM(reasoning_tokens), {d.money_sum('cost')}, {d.money_sum('cost_saved')}, "
        "SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END), SUM(CASE WHEN cache <> 'bypass' THEN 1 ELSE 0 END) "
        f"FROM calls{_where(conds)}"
    )
    if exprs:
        sql += f" GROUP BY {', '.join(exprs)}"
    rows = await store.fetch(sql, p.values)
    out: list[UsageRow] = []
    for row in rows:
        n = len(select)
        keys, totals = row[:n], row[n:]
        out.append(usage_row(group_by, keys, totals))
    out = split_tags(out, group_by)
    out.sort(key=lambda r: _sort_key([getattr(r, _FIELD[g]) for g in group_by]))
    return out


def usage_row(group_by: Sequence[GroupBy], keys: Sequence[Any], totals: Sequence[Any]) -> UsageRow:
    """One usage row from a grouped query's group values and its twelve totals (calls, errors,
    the five token buckets, cost, cost saved, calls of unknown cost, cache hits, cache lookups):
    the raw-row and the rollup queries select them in this order."""
    r = UsageRow()
    for g, value in zip(group_by, keys, strict=False):
        if g == "provider":
            r.provider = value
        elif g == "model":
            r.model = value
        else:
            set_group(r, g, value)
    if "key" in group_by:
        r.key_name = keys[-1]
    r.calls, r.errors = int(totals[0] or 0), int(totals[1] or 0)
    r.input_tokens, r.cached_input_tokens = int(totals[2] or 0), int(totals[3] or 0)
    r.cache_write_tokens, r.output_tokens = int(totals[4] or 0), int(totals[5] or 0)
    r.reasoning_tokens = int(totals[6] or 0)
    r.cost = _money(totals[7]) or Decimal(0)
    r.cost_saved = _money(totals[8]) or Decimal(0)
    r.unknown_cost_calls = int(totals[9] or 0)
    r.cache_hits, r.cache_lookups = int(totals[10] or 0), int(totals[11] or 0)
    return r


_FIELD = {
    "provider": "provider",
    "model": "model",
    "key": "key_id",
    "day": "day",
    "user": "user",
    "tag": "tag",
}
_SUMMED = (
    "calls",
    "errors",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost",
    "cost_saved",
    "unknown_cost_calls",
    "cache_hits",
    "cache_lookups",
)


def set_group(r: UsageRow, g: str, value: Any) -> None:
    """Set grouping ``g`` of ``r`` from its SQL value (``key``'s name is set by the caller)."""
    if g == "provider":
        r.provider = value
    elif g == "model":
        r.model = value
    elif g == "key":
        r.key_id = value
    elif g == "user":
        r.user = value
    elif g == "tag":
        r.tag = value  # the whole tag set until split_tags
    else:
        r.day = date.fromisoformat(value)


def split_tags(rows: list[UsageRow], group_by: Sequence[str]) -> list[UsageRow]:
    """Rows grouped by tag *set* -> rows grouped by tag: a set's totals are added to the group
    of each of its tags (untagged calls stay under ``None``).  The other groupings are kept.
    Exact, since each tag set's totals are exact."""
    if "tag" not in group_by:
        return rows
    merged: dict[tuple[Any, ...], UsageRow] = {}
    for r in rows:
        for tag in r.tag.split(",") if r.tag else [None]:
            key = (*(getattr(r, _FIELD[g]) for g in group_by if g != "tag"), tag)
            into = merged.get(key)
            if into is None:
                into = merged[key] = UsageRow(
                    provider=r.provider, model=r.model, key_id=r.key_id, key_name=r.key_name,
                    day=r.day, user=r.user, tag=tag,
                )  # fmt: skip
            else:
                for name in _SUMMED:
                    setattr(into, name, getattr(into, name) + getattr(r, name))
                if r.key_name is not None and (into.key_name is None or r.key_name > into.key_name):
                    into.key_name = r.key_name
                continue
            for name in _SUMMED:
                setattr(into, name, getattr(r, name))
    return list(merged.values())


async def recent_calls(
    store: Store, n: int = 20, model: str | None = None, key_id: str | None = None
) -> list[LoggedCall]:
    """The ``n`` most recent calls, newest first, each with its attempts in order.  ``model``
    matches the requested or the upstream model."""
    p = _Params(store)
    conds = []
    if model is not None:
        ph = p.add(model)
        conds.append(f"(requested_model = {ph} OR upstream_model = {p.add(model)})")
    if key_id is not None:
        conds.append(f"key_id = {p.add(key_id)}")
    sql = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls{_where(conds)} ORDER BY time DESC, id DESC LIMIT {p.add(int(n))}"
    rows = await store.fetch(sql, p.values)
    calls = [LoggedCall(CallRecord(**_typed(CALL_COLUMNS, row))) for row in rows]
    if not calls:
        return calls
    ids = sorted({c.call.request_id for c in calls})
    member, as_array = store.dialect.in_list("request_id", 1, len(ids))
    params: list[Any] = [ids] if as_array else list(ids)
    att_rows = await store.fetch(
        f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE {member} ORDER BY request_id, attempt_no, id",
        params,
    )
    by_request: dict[str, list[AttemptRecord]] = {}
    for row in att_rows:
        a = AttemptRecord(**_typed(ATTEMPT_COLUMNS, row))
        by_request.setdefault(a.request_id, []).append(a)
    for c in calls:
        c.attempts = by_request.get(c.call.request_id, [])
    return calls


async def latency_by_provider(store: Store, since: datetime | None = None) -> list[ProviderLatency]:
    """Per provider, over attempts since ``since``: p50/p90/p99 of latency and TTFT (successful
    attempts only) and the error rate."""
    d = store.dialect
    p = _Params(store)
    conds = [*_window(p, "started_at", since, None), "outcome IN ('ok', 'error')"]
    ok_latency = "CASE WHEN outcome = 'ok' THEN latency_ms END"
    ok_ttft = "CASE WHEN outcome = 'ok' THEN ttft_ms END"
    pct = [d.percentile(expr, q) for expr in (ok_latency, ok_ttft) for q in (0.5, 0.9, 0.99)]
    sql = (
        "SELECT provider, COUNT(*), SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), "
        f"{', '.join(pct)} FROM attempts{_where(conds)} GROUP BY provider"
    )
    out = []
    for row in await store.fetch(sql, p.values):
        total, errors = int(row[1]), int(row[2] or 0)
        vals = [None if v is None else float(v) for v in row[3:]]
        out.append(ProviderLatency(row[0], total, errors, errors / total if total else 0.0, *vals))
    out.sort(key=lambda r: r.provider)
    return out


async def spend_over_time(
    store: Store,
    since: datetime | None = None,
    bucket: Literal["hour", "day"] = "hour",
    by: Literal["provider", "model", "key"] | None = "provider",
    until: datetime | None = None,
) -> list[SpendPoint]:
    """Known spend per UTC hour/day, per provider or upstream model (from attempts) or per key
    (from calls); ``by=None`` gives one series (from calls)."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")
    d = store.dialect
    p = _Params(store)
    if by in ("provider", "model"):
        table, tcol, gcol = "attempts", "started_at", str(by)
    elif by in ("key", None):
        table, tcol, gcol = "calls", "time", "key_id" if by == "key" else "NULL"
    else:
        raise ValueError(f"cannot split spend by {by!r}")
    conds = _window(p, tcol, since, until)
    b = d.bucket(tcol, bucket)
    group = f"{b}, {gcol}" if by is not None else b
    sql = (
        f"SELECT {b}, {gcol}, {d.money_sum('cost')}, "
        "SUM(CASE WHEN cost IS NULL AND input_tokens + output_tokens > 0 THEN 1 ELSE 0 END) "
        f"FROM {table}{_where(conds)} GROUP BY {group}"
    )
    rows = await store.fetch(sql, p.values)
    out = [SpendPoint(_bucket_start(r[0]), r[1], _money(r[2]) or Decimal(0), int(r[3] or 0)) for r in rows]
    out.sort(key=lambda s: (s.bucket, _sort_key([s.group])))
    return out


async def export_csv(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    key_id: str | None = None,
) -> str:
    """Calls in ``[since, until)`` as CSV (header = :data:`CALL_COLUMNS`), oldest first; money as
    exact decimal text, times as ISO-8601 UTC."""
    p = _Params(store)
    conds = _window(p, "time", since, until)
    if key_id is not None:
        conds.append(f"key_id = {p.add(key_id)}")
    rows = await store.fetch(
        f"SELECT {', '.join(CALL_COLUMNS)} FROM calls{_where(conds)} ORDER BY time, id", p.values
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CALL_COLUMNS)
    for row in rows:
        typed = _typed(CALL_COLUMNS, row)
        w.writerow(
            ["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in typed.values()]
        )
    return buf.getvalue()
