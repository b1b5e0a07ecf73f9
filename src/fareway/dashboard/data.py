"""The ledger's named queries shaped as JSON-ready dicts, shared by the usage API
(``/v1/usage``, ``/v1/logs``), the dashboard's data calls and the ``fareway usage``/``logs`` CLI.

Money leaves here as a plain decimal string (``"0.0000123"``, never a float, never an exponent);
times as ISO-8601 UTC.  Query parameters are parsed strictly: anything malformed raises
:class:`fareway.errors.BadRequest` naming the parameter, which the server turns into a 400 in the
OpenAI error shape.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from fareway.errors import BadRequest
from fareway.ledger.queries import GroupBy, LoggedCall, ProviderLatency, SpendPoint, UsageRow
from fareway.ledger.records import AttemptRecord, CallRecord

GROUPS: tuple[GroupBy, ...] = ("provider", "model", "key", "day", "user", "tag")
COUNT_FIELDS = (
    "calls",
    "errors",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "unknown_cost_calls",
    "cache_hits",
    "cache_lookups",
)
MONEY_FIELDS = ("cost", "cost_saved")
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "provider": ("provider",),
    "model": ("model",),
    "key": ("key_id", "key_name"),
    "day": ("day",),
    "user": ("user",),
    "tag": ("tag",),
}
MAX_LOGS = 1000

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# ----------------------------------------------------------------------------- parsing


def money(value: Decimal | None) -> str | None:
    """A Decimal as plain text without exponent or trailing zeros; None stays None."""
    if value is None:
        return None
    s = format(value.normalize(), "f")
    return "0" if s in ("-0", "") else s


def parse_time(value: str | None, param: str, now: datetime | None = None) -> datetime | None:
    """``7d``, ``24h``, ``30m``, ``2w`` (that long before ``now``), an ISO date (midnight UTC) or
    an ISO datetime (naive means UTC).  Empty means no bound."""
    if value is None or not value.strip():
        return None
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value)
    if m:
        amount = float(m.group(1))
        try:
            return now - timedelta(seconds=amount * _UNIT_SECONDS[m.group(2).lower()])
        except (OverflowError, ValueError):
            raise BadRequest(
                f"Invalid `{param}`: {value[:40]!r} reaches before the year 1; use a shorter span or an ISO date.",
                param=param,
            ) from None
    text = value.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+", 1) if "T" in text else text)
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"Invalid `{param}`: {value!r}. Use an ISO date (2025-01-31), an ISO datetime "
            "(2025-01-31T12:00:00Z) or a relative span such as 7d, 24h, 30m.",
            param=param,
        ) from None
    return dt


def parse_group_by(value: str | Sequence[str] | None) -> list[GroupBy]:
    """``provider,model`` -> ["provider", "model"] (order kept, duplicates dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    out: list[GroupBy] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in GROUPS:
            raise BadRequest(
                f"Invalid `group_by`: {raw!r}. Group by any of: {', '.join(GROUPS)} (comma-separated).",
                param="group_by",
            )
        g = cast(GroupBy, name)
        if g not in out:
            out.append(g)
    return out


def parse_int(value: str | None, param: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"Invalid `{param}`: {value!r} is not an integer.", param=param) from None
    if not lo <= n <= hi:
        raise BadRequest(f"Invalid `{param}`: {n} is outside {lo}..{hi}.", param=param)
    return n


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise BadRequest("`until` must be later than `since`.", param="until")


# ----------------------------------------------------------------------------- usage


def usage_group(row: UsageRow, group_by: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in group_by:
        for f in GROUP_FIELDS[g]:
            value = getattr(row, f)
            out[f] = value.isoformat() if isinstance(value, date) else value
    for f in COUNT_FIELDS:
        out[f] = getattr(row, f)
    out["cost"] = money(row.cost)
    out["cost_saved"] = money(row.cost_saved)
    out["cache_hit_rate"] = _rate(row.cache_hits, row.cache_lookups)
    return out


def _rate(hits: int, lookups: int) -> float | None:
    """The cache hit rate (hits over calls that used the cache), None when none did."""
    return round(hits / lookups, 4) if lookups else None


def totals(rows: Sequence[UsageRow]) -> dict[str, Any]:
    """Grand totals summed from the groups (exact: counts are ints, money is Decimal)."""
    out: dict[str, Any] = {f: sum(getattr(r, f) for r in rows) for f in COUNT_FIELDS}
    out["cost"] = money(sum((r.cost for r in rows), Decimal(0)))
    out["cost_saved"] = money(sum((r.cost_saved for r in rows), Decimal(0)))
    out["cache_hit_rate"] = _rate(out["cache_hits"], out["cache_lookups"])
    return out


def usage_payload(
    rows: Sequence[UsageRow],
    group_by: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    key_id: str | None = None,
    total_rows: Sequence[UsageRow] | None = None,
) -> dict[str, Any]:
    """The ``/v1/usage`` body: one entry per group (none when not grouped) and the totals.

    ``total_rows``: what the totals are summed from when that is not ``rows`` (grouped by
    ``tag``, a call with several tags is in several groups; the totals count it once)."""
    return {
        "object": "usage",
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "group_by": list(group_by),
        "key_id": key_id,
        "currency": "USD",
        "groups": [usage_group(r, group_by) for r in rows] if group_by else [],
        "totals": totals(rows if total_rows is None else total_rows),
    }


async def usage_rows(
    read: Any,
    since: datetime | None,
    until: datetime | None,
    group_by: Sequence[GroupBy],
    key_id: str | None,
) -> tuple[list[UsageRow], list[UsageRow] | None]:
    """The rows of a usage query and, when grouped by tag, the ungrouped rows its totals come
    from.  ``read(group_by)`` awaits the ledger's usage query."""
    rows = await read(list(group_by))
    if "tag" not in group_by:
        return rows, None
    return rows, await read([])


def usage_csv(payload: Mapping[str, Any]) -> str:
    """The groups of a usage payload as CSV (the totals row alone when not grouped)."""
    group_cols = [f for g in payload["group_by"] for f in GROUP_FIELDS[g]]
    cols = [*group_cols, *COUNT_FIELDS, *MONEY_FIELDS, "cache_hit_rate"]
    rows = payload["groups"] if payload["group_by"] else [payload["totals"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


# ------------------------------------------------------------------------------ calls


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def attempt_dict(a: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt_no": a.attempt_no,
        "provider": a.provider,
        "model": a.model,
        "role": a.role,
        "outcome": a.outcome,
        "status": a.status,
        "error": a.error,
        "started_at": _iso(a.started_at),
        "ttft_ms": _ms(a.ttft_ms),
        "latency_ms": _ms(a.latency_ms),
        "tokens_per_s": a.tokens_per_s,
        "input_tokens": a.input_tokens,
        "cached_input_tokens": a.cached_input_tokens,
        "cache_write_tokens": a.cache_write_tokens,
        "output_tokens": a.output_tokens,
        "reasoning_tokens": a.reasoning_tokens,
        "estimated": a.estimated,
        "cost": money(a.cost),
    }


def call_dict(c: CallRecord, attempts: Sequence[AttemptRecord]) -> dict[str, Any]:
    return {
        "request_id": c.request_id,
        "time": _iso(c.time),
        "key_id": c.key_id,
        "key_name": c.key_name,
        "client_dialect": c.client_dialect,
        "requested_model": c.requested_model,
        "user": c.user_id,
        "tags": c.tags.split(",") if c.tags else [],
        "provider": c.provider,
        "upstream_model": c.upstream_model,
        "status": c.status,
        "outcome": c.outcome,
        "stream": c.stream,
        "cache": c.cache,
        "route": c.route,
        "error": c.error,
        "input_tokens": c.input_tokens,
        "cached_input_tokens": c.cached_input_tokens,
        "cache_write_tokens": c.cache_write_tokens,
        "output_tokens": c.output_tokens,
        "reasoning_tokens": c.reasoning_tokens,
        "estimated": c.estimated,
        "cost": money(c.cost),
        "cost_saved": money(c.cost_saved),
        "price_source": c.price_source,
        "ttft_ms": _ms(c.ttft_ms),
        "latency_ms": _ms(c.latency_ms),
        "tokens_per_s": c.tokens_per_s,
        "attempts": [attempt_dict(a) for a in attempts],
    }


def logs_payload(calls: Sequence[LoggedCall]) -> dict[str, Any]:
    return {"object": "list", "data": [call_dict(c.call, c.attempts) for c in calls]}


# --------------------------------------------------------------------------- dashboard


def latency_dict(r: ProviderLatency) -> dict[str, Any]:
    return {
        "provider": r.provider,
        "attempts": r.attempts,
        "errors": r.errors,
        "error_rate": round(r.error_rate, 4),
        "latency_p50_ms": _ms(r.latency_p50_ms),
        "latency_p90_ms": _ms(r.latency_p90_ms),
        "latency_p99_ms": _ms(r.latency_p99_ms),
        "ttft_p50_ms": _ms(r.ttft_p50_ms),
        "ttft_p90_ms": _ms(r.ttft_p90_ms),
        "ttft_p99_ms": _ms(r.ttft_p99_ms),
    }


def spend_series(points: Sequence[SpendPoint]) -> dict[str, Any]:
    """``{"buckets": [iso...], "series": [{"name", "values": [str...], "total", "unpriced"}]}``
    (``unpriced``: rows that consumed tokens at an unknown price, not in the values); the series
    ordered by total spend (largest first), every series with a value for every bucket."""
    buckets = sorted({p.bucket for p in points})
    index = {b: i for i, b in enumerate(buckets)}
    series: dict[str, list[Decimal]] = {}
    unknown: dict[str, int] = {}
    for p in points:
        name = p.group or "(none)"
        values = series.setdefault(name, [Decimal(0)] * len(buckets))
        values[index[p.bucket]] += p.cost
        unknown[name] = unknown.get(name, 0) + p.unknown_cost
    ordered = sorted(series.items(), key=lambda kv: (-sum(kv[1], Decimal(0)), kv[0]))
    return {
        "buckets": [_iso(b) for b in buckets],
        "series": [
            {
                "name": name,
                "values": [money(v) for v in values],
                "total": money(sum(values, Decimal(0))),
                "unpriced": unknown[name],
            }
            for name, values in ordered
        ],
    }
