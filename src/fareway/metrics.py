"""Prometheus metrics, fed once per call from the ledger records that accounting builds.

:meth:`Metrics.observe` runs on the request path, so it does only dictionary look-ups and a few
float additions: the labelled children are cached per label tuple, so after warm-up a call costs
no ``labels()`` lookup (each of which takes a lock and builds a tuple inside prometheus_client).

Metric families (all names prefixed ``fareway_``)::

    requests_total{provider,model,status,dialect}      one per client call, by returned HTTP status
    call_errors_total{provider,model,dialect}          calls that ended in an error
    upstream_attempts_total{provider,model,outcome}    every upstream try (ok/error/cancelled/skipped)
    upstream_errors_total{provider,model}              upstream tries that failed
    upstream_latency_seconds{provider}                 histogram, successful tries, request to last byte
    upstream_ttft_seconds{provider}                    histogram, successful tries, time to first token
    tokens_total{provider,model,bucket}                bucket: input, cached_input, cache_write, output, reasoning
    cost_usd_total{provider,model}                     known spend (USD), billed per attempt
    unpriced_attempts_total{provider,model}            attempts that consumed tokens at an unknown price
    cache_hits_total / cache_saved_usd_total           answers served from the cache and what they saved

Tokens and cost are counted per *attempt* (where the money went: a failed try or a losing race
leg is billed by its own provider), as ``ledger.queries.spend_over_time`` does.

Label values come from the gateway's own tables (provider names, upstream model ids), never from
free client input: a call that never reached a provider is labelled ``provider="none"`` and
``model="none"``, so a client cannot blow up the series count with made-up model names.

Each :class:`Metrics` owns its own ``CollectorRegistry`` (no global state: tests build several).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fareway.ledger.records import AttemptRecord, CallRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = ("input", "cached_input", "cache_write", "output", "reasoning")
NONE = "none"


class _LedgerCollector(Collector):
    """Gauges read from the ledger's writer stats at scrape time (queue depth, drops)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def collect(self) -> Iterable[GaugeMetricFamily]:
        stats = getattr(self.ledger, "stats", None)
        as_dict = getattr(stats, "as_dict", None)
        if as_dict is None:
            return []
        values: dict[str, int] = as_dict()
        g = GaugeMetricFamily(
            "fareway_ledger_records",
            "Ledger writer counters (enqueued, written, queued, dropped, ...) by kind.",
            labels=["kind"],
        )
        for kind, value in sorted(values.items()):
            g.add_metric([kind], float(value))
        return [g]


class Metrics:
    """Prometheus metrics for one gateway.  ``observe`` is cheap; ``render`` is the scrape body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fareway_requests", "Client calls by answering provider, upstream model, HTTP status and client dialect.",
            ["provider", "model", "status", "dialect"], registry=r,
        )  # fmt: skip
        self.call_errors = Counter(
            "fareway_call_errors", "Client calls that ended in an error.",
            ["provider", "model", "dialect"], registry=r,
        )  # fmt: skip
        self.attempts = Counter(
            "fareway_upstream_attempts", "Upstream tries by outcome (ok, error, cancelled, skipped, cache_hit).",
            ["provider", "model", "outcome"], registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "fareway_upstream_errors", "Upstream tries that failed.", ["provider", "model"], registry=r
        )
        self.latency = Histogram(
            "fareway_upstream_latency_seconds", "Successful upstream tries: request sent to last byte.",
            ["provider"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "fareway_upstream_ttft_seconds", "Successful upstream tries: time to the first content token.",
            ["provider"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "fareway_tokens", "Tokens consumed, per attempt, by bucket (input and output are totals; "
            "cached_input/cache_write are parts of input, reasoning part of output).",
            ["provider", "model", "bucket"], registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "fareway_cost_usd", "Known spend in USD, billed per attempt.", ["provider", "model"], registry=r
        )
        self.unpriced = Counter(
            "fareway_unpriced_attempts", "Attempts that consumed tokens at an unknown price (not in cost).",
            ["provider", "model"], registry=r,
        )  # fmt: skip
        self.cache_hits = Counter(
            "fareway_cache_hits", "Calls answered from the cache.", ["model"], registry=r
        )
        self.cache_saved = Counter(
            "fareway_cache_saved_usd",
            "What cached answers cost when they were made (USD).",
            ["model"],
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._ledger: _LedgerCollector | None = None

    def bind_ledger(self, ledger: Any) -> None:
        """Also export the ledger writer's counters (queue depth, dropped records) at scrape time."""
        if self._ledger is None:
            self._ledger = _LedgerCollector(ledger)
            self.registry.register(self._ledger)
        else:
            self._ledger.ledger = ledger

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, call: CallRecord, attempts: list[AttemptRecord]) -> None:
        """Count one finished call and its attempts."""
        provider = call.provider or NONE
        model = (call.upstream_model or NONE) if call.provider else NONE
        self._child(self.requests, provider, model, str(call.status), call.client_dialect).inc()
        if call.outcome == "error":
            self._child(self.call_errors, provider, model, call.client_dialect).inc()
        if call.cache == "hit":
            self._child(self.cache_hits, model).inc()
            if call.cost_saved:
                self._child(self.cache_saved, model).inc(float(call.cost_saved))
        for a in attempts:
            self._attempt(a)

    def _attempt(self, a: AttemptRecord) -> None:
        p, m = a.provider, a.model
        self._child(self.attempts, p, m, a.outcome).inc()
        if a.outcome == "error":
            self._child(self.upstream_errors, p, m).inc()
        elif a.outcome == "ok":
            if a.latency_ms is not None:
                self._child(self.latency, p).observe(a.latency_ms / 1000.0)
            if a.ttft_ms is not None:
                self._child(self.ttft, p).observe(a.ttft_ms / 1000.0)
        for bucket, n in (
            ("input", a.input_tokens),
            ("cached_input", a.cached_input_tokens),
            ("cache_write", a.cache_write_tokens),
            ("output", a.output_tokens),
            ("reasoning", a.reasoning_tokens),
        ):
            if n:
                self._child(self.tokens, p, m, bucket).inc(n)
        if a.cost is not None:
            if a.cost:
                self._child(self.cost, p, m).inc(float(a.cost))
        elif a.input_tokens or a.output_tokens:
            self._child(self.unpriced, p, m).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]
