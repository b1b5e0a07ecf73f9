"""Usage, logs and metrics routes (the dashboard under ``/ui`` is server.routes_dashboard).

``GET /v1/usage?since=7d&until=...&group_by=provider,model,key,day,user,tag&format=json|csv[&key_id=K]``
    Call totals from the ledger, grouped, with grand totals.  ``since``/``until`` take an ISO date,
    an ISO datetime or a relative span (``7d``, ``24h``, ``30m``, ``2w``); the window is
    ``[since, until)``.  An admin key, or a key with the read-only ``usage`` scope, sees every
    key's calls (and may narrow to one with ``key_id``); any other key sees only its own,
    whatever the query says.  ``format=csv`` gives
    the same groups as CSV.
``GET /v1/usage/export?since=...&until=...``
    Every call in the window as CSV, one row per call (same key scoping).
``GET /v1/logs?n=20&model=M``
    The most recent calls, newest first, each with its upstream attempts (same key scoping).
``GET /metrics``
    Prometheus text.  Needs an admin key unless the config sets ``metrics_public`` (for a scraper
    on a private network); it carries provider/model names and spend, which is why it is not public
    by default.

Bad parameters are a 400 in the OpenAI error shape; no ledger configured, or its database
unreachable (a Postgres outage), is a 503 in the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fareway.dashboard import data
from fareway.errors import BadRequest, FarewayError
from fareway.ledger.base import StoreUnavailable
from fareway.ledger.seams import LedgerReader
from fareway.metrics import CONTENT_TYPE, LedgerCounters, Metrics
from fareway.pipeline.gateway import Gateway, Reply
from fareway.server.app import App, Request, json_reply

USAGE_PARAMS = {"since", "until", "group_by", "format", "key_id"}
EXPORT_PARAMS = {"since", "until", "key_id"}
LOGS_PARAMS = {"n", "model", "key_id"}
CSV = "text/csv; charset=utf-8"
T = TypeVar("T")


class LedgerUnavailable(FarewayError):
    status = 503
    type = "service_unavailable"
    code = "ledger_unavailable"


async def ledger_read(aw: Awaitable[T]) -> T:
    """A ledger query; its database being unreachable is a 503, not a 500."""
    try:
        return await aw
    except StoreUnavailable as exc:
        raise LedgerUnavailable(
            "The usage ledger's database is unavailable right now (calls are still being served and "
            "recorded); try again shortly."
        ) from exc


class MetricsUnavailable(FarewayError):
    status = 503
    type = "service_unavailable"
    code = "metrics_unavailable"


def query_params(req: Request, allowed: set[str]) -> dict[str, str]:
    """The query string as a dict (the last value of a repeated name wins).  An unknown name is a
    400, so a typo (``groupby=``) is not silently ignored."""
    raw = parse_qs(req.query.decode("latin-1"), keep_blank_values=True)
    for name in raw:
        if name not in allowed:
            raise BadRequest(
                f"Unknown query parameter `{name}`; this route takes: {', '.join(sorted(allowed))}.",
                param=name,
            )
    return {k: v[-1] for k, v in raw.items()}


def ledger_of(gateway: Gateway) -> LedgerReader:
    """The ledger's named queries, or 503 when no ledger is enabled (or it cannot be queried)."""
    ledger = gateway.accounting.ledger
    if not isinstance(ledger, LedgerReader):
        raise LedgerUnavailable("The usage ledger is not enabled on this gateway.")
    return ledger


def _scope(req: Request, params: dict[str, str]) -> str | None:
    """The key whose calls the caller may see: any (None) or a chosen one for an admin or a key
    with the ``usage`` scope, always its own for any other key."""
    p = req.principal
    if p is None or not p.allows("usage"):
        if p is None:
            raise BadRequest("No principal on an authenticated route.")
        return p.key_id
    return params.get("key_id") or None


def _window(params: dict[str, str]) -> tuple[Any, Any]:
    since = data.parse_time(params.get("since"), "since")
    until = data.parse_time(params.get("until"), "until")
    data.check_window(since, until)
    return since, until


async def usage_reply(req: Request, gateway: Gateway, *, own_key: str | None) -> Reply:
    """The ``/v1/usage`` answer for ``req``'s query, restricted to ``own_key`` when given (else
    to the query's ``key_id``, if any)."""
    params = query_params(req, USAGE_PARAMS)
    since, until = _window(params)
    group_by = data.parse_group_by(params.get("group_by"))
    fmt = params.get("format", "json").strip().lower() or "json"
    if fmt not in ("json", "csv"):
        raise BadRequest(f"Invalid `format`: {fmt!r}. Use json or csv.", param="format")
    key_id = own_key if own_key is not None else (params.get("key_id") or None)
    ledger = ledger_of(gateway)

    async def read(by: list[data.GroupBy]) -> list[Any]:
        return await ledger_read(ledger.usage(since, until, by, key_id))

    rows, total_rows = await data.usage_rows(read, since, until, group_by, key_id)
    payload = data.usage_payload(rows, group_by, since, until, key_id, total_rows)
    if fmt == "csv":
        disposition = ("content-disposition", 'attachment; filename="fareway-usage.csv"')
        return Reply(200, [disposition], data.usage_csv(payload).encode(), content_type=CSV)
    return json_reply(payload)


def add_admin_routes(app: App, gateway: Gateway, *, metrics_public: bool | None = None) -> None:
    """Add ``/v1/usage``, ``/v1/usage/export``, ``/v1/logs`` and ``/metrics``.  Uses
    ``gateway.accounting.ledger`` (read at request time) and ``gateway.accounting.metrics`` (a
    :class:`Metrics` is created and attached if there is none)."""
    accounting = gateway.accounting
    if accounting.metrics is None:
        accounting.metrics = Metrics()
    if metrics_public is None:
        metrics_public = bool(getattr(gateway.config, "metrics_public", False))

    async def usage(req: Request) -> Reply:
        params = query_params(req, USAGE_PARAMS)
        return await usage_reply(req, gateway, own_key=_scope(req, params))

    async def export(req: Request) -> Reply:
        params = query_params(req, EXPORT_PARAMS)
        since, until = _window(params)
        body = await ledger_read(ledger_of(gateway).export_csv(since, until, _scope(req, params)))
        disposition = ("content-disposition", 'attachment; filename="fareway-calls.csv"')
        return Reply(200, [disposition], body.encode(), content_type=CSV)

    async def logs(req: Request) -> Reply:
        params = query_params(req, LOGS_PARAMS)
        n = data.parse_int(params.get("n"), "n", 20, 1, data.MAX_LOGS)
        model = params.get("model") or None
        calls = await ledger_read(ledger_of(gateway).recent_calls(n, model, _scope(req, params)))
        return json_reply(data.logs_payload(calls))

    async def metrics(req: Request) -> Reply:
        m = accounting.metrics
        if not isinstance(m, Metrics):
            raise MetricsUnavailable("This gateway's metrics sink has no Prometheus exposition.")
        if isinstance(accounting.ledger, LedgerCounters):
            m.bind_ledger(accounting.ledger)
        body = await m.scrape()  # from the ledger's rollups when it has them (metrics.py)
        return Reply(200, [("cache-control", "no-store")], body, content_type=CONTENT_TYPE)

    app.add("GET", "/v1/usage", usage, auth="key")
    app.add("GET", "/v1/usage/export", export, auth="key")
    app.add("GET", "/v1/logs", logs, auth="key")
    app.add("GET", "/metrics", metrics, auth="none" if metrics_public else "admin")
