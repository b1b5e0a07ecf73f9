"""Prometheus metrics, fed once per call from the ledger records that accounting builds.

:meth:`Metrics.observe` runs on the request path, so it only adds to plain dicts (no locks, no
prometheus_client objects per call); a collector turns the tallies into metric families when
``/metrics`` is scraped.  The event loop is the only writer, so no lock is needed.

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
    cache_lookups_total{model}                         calls that used the response cache (hit, miss, stored)
    cache_hits_total{model} / cache_saved_usd_total{model}   answers served from the cache and what they
                                                       cost when they were made (hit rate: hits / lookups)
    cache_store{store,kind}                            the cache store's counters (entries, bytes, errors...)

Tokens and cost are counted per *attempt* (where the money went: a failed try or a losing race
leg is billed by its own provider), as ``ledger.queries.spend_over_time`` does.

Label values come from the gateway's own tables (provider names, upstream model ids), never from
free client input: a call that never reached a provider is labelled ``provider="none"`` and
``model="none"``, so a client cannot blow up the series count with made-up model names.

Each :class:`Metrics` owns its own ``CollectorRegistry`` (no global state: tests build several).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from fareway.ledger.base import LedgerStats
from fareway.ledger.records import AttemptRecord, CallRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = ("input", "cached_input", "cache_write", "output", "reasoning")
NONE = "none"


@runtime_checkable
class StoreCounters(Protocol):
    """A cache store whose counters can be exported (``fareway.cache.stores`` stores fit)."""

    name: str

    @property
    def stats(self) -> Any: ...


class _StoreCollector(Collector):
    """Gauges read from the cache store's counters at scrape time."""

    def __init__(self, store: StoreCounters) -> None:
        self.store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "fareway_cache_store",
            "Response cache store counters (hits, misses, stores, evictions, errors, entries, bytes).",
            labels=["store", "kind"],
        )
        for kind, value in sorted(self.store.stats.as_dict().items()):
            g.add_metric([self.store.name, kind], float(value))
        return [g]


@runtime_checkable
class LedgerCounters(Protocol):
    """A ledger whose writer counters can be exported (``ledger.writer.Ledger`` fits)."""

    @property
    def stats(self) -> LedgerStats: ...


class _LedgerCollector(Collector):
    """Gauges read from the ledger's writer stats at scrape time (queue depth, drops)."""

    def __init__(self, ledger: LedgerCounters) -> None:
        self.ledger = ledger

    def collect(self) -> Iterable[GaugeMetricFamily]:
        values = self.ledger.stats.as_dict()
        g = GaugeMetricFamily(
            "fareway_ledger_records",
            "Ledger writer counters (enqueued, written, queued, dropped, ...) by kind.",
            labels=["kind"],
        )
        for kind, value in sorted(values.items()):
            g.add_metric([kind], float(value))
        return [g]


_COUNTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("requests", "Client calls by answering provider, upstream model, HTTP status and client dialect.",
     ("provider", "model", "status", "dialect")),
    ("call_errors", "Client calls that ended in an error.", ("provider", "model", "dialect")),
    ("upstream_attempts", "Upstream tries by outcome (ok, error, cancelled, skipped, cache_hit).",
     ("provider", "model", "outcome")),
    ("upstream_errors", "Upstream tries that failed.", ("provider", "model")),
    ("tokens", "Tokens consumed, per attempt, by bucket (input and output are totals; "
     "cached_input/cache_write are parts of input, reasoning part of output).", ("provider", "model", "bucket")),
    ("cost_usd", "Known spend in USD, billed per attempt.", ("provider", "model")),
    ("unpriced_attempts", "Attempts that consumed tokens at an unknown price (not in cost).", ("provider", "model")),
    ("cache_lookups", "Calls that used the response cache (hit, miss or stored).", ("model",)),
    ("cache_hits", "Calls answered from the response cache.", ("model",)),
    ("cache_saved_usd", "What the cached answers served cost when they were made (USD).", ("model",)),
)  # fmt: skip
_HISTOGRAMS: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("upstream_latency_seconds", "Successful upstream tries: request sent to last byte.", LATENCY_BUCKETS),
    ("upstream_ttft_seconds", "Successful upstream tries: time to the first content token.", TTFT_BUCKETS),
)


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.total += v


class _Collector(Collector):
    """Turns the plain in-memory tallies into metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        for name, doc, labels in _COUNTERS:
            fam = CounterMetricFamily(f"fareway_{name}", doc, labels=list(labels))
            for key, v in sorted(m.counters[name].items()):
                fam.add_metric(list(key), v)
            yield fam
        for name, doc, bounds in _HISTOGRAMS:
            hfam = HistogramMetricFamily(f"fareway_{name}", doc, labels=["provider"])
            for provider, h in sorted(m.histograms[name].items()):
                cumulative, buckets = 0, []
                for bound, n in zip((*bounds, float("inf")), h.counts, strict=True):
                    cumulative += n
                    buckets.append((_le(bound), float(cumulative)))
                hfam.add_metric([provider], buckets, h.total)
            yield hfam


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """Prometheus metrics for one gateway.  ``observe`` only adds to dicts (a few microseconds on
    the request path); ``render`` builds the exposition at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counters: dict[str, dict[tuple[str, ...], float]] = {name: {} for name, _, _ in _COUNTERS}
        self.histograms: dict[str, dict[str, _Histogram]] = {name: {} for name, _, _ in _HISTOGRAMS}
        self._bounds = {name: bounds for name, _, bounds in _HISTOGRAMS}
        self.registry.register(_Collector(self))
        self._ledger: _LedgerCollector | None = None
        self._store: _StoreCollector | None = None

    def bind_ledger(self, ledger: LedgerCounters) -> None:
        """Also export the ledger writer's counters (queue depth, dropped records) at scrape time."""
        if self._ledger is None:
            self._ledger = _LedgerCollector(ledger)
            self.registry.register(self._ledger)
        else:
            self._ledger.ledger = ledger

    def bind_cache_store(self, store: StoreCounters) -> None:
        """Also export the response cache store's counters at scrape time."""
        if self._store is None:
            self._store = _StoreCollector(store)
            self.registry.register(self._store)
        else:
            self._store.store = store

    def _inc(self, name: str, key: tuple[str, ...], v: float = 1.0) -> None:
        d = self.counters[name]
        d[key] = d.get(key, 0.0) + v

    def _hist(self, name: str, provider: str, v: float) -> None:
        d = self.histograms[name]
        h = d.get(provider)
        if h is None:
            h = d[provider] = _Histogram(self._bounds[name])
        h.observe(v)

    def observe(self, call: CallRecord, attempts: list[AttemptRecord]) -> None:
        """Count one finished call and its attempts."""
        provider = call.provider or NONE
        model = (call.upstream_model or NONE) if call.provider else NONE
        self._inc("requests", (provider, model, str(call.status), call.client_dialect))
        if call.outcome == "error":
            self._inc("call_errors", (provider, model, call.client_dialect))
        if call.cache != "bypass":
            self._inc("cache_lookups", (model,))
            if call.cache == "hit":
                self._inc("cache_hits", (model,))
                if call.cost_saved:
                    self._inc("cache_saved_usd", (model,), float(call.cost_saved))
        for a in attempts:
            self._attempt(a)

    def _attempt(self, a: AttemptRecord) -> None:
        p, m = a.provider, a.model
        self._inc("upstream_attempts", (p, m, a.outcome))
        if a.outcome == "error":
            self._inc("upstream_errors", (p, m))
        elif a.outcome == "ok":
            if a.latency_ms is not None:
                self._hist("upstream_latency_seconds", p, a.latency_ms / 1000.0)
            if a.ttft_ms is not None:
                self._hist("upstream_ttft_seconds", p, a.ttft_ms / 1000.0)
        if a.input_tokens:
            self._inc("tokens", (p, m, "input"), a.input_tokens)
        if a.cached_input_tokens:
            self._inc("tokens", (p, m, "cached_input"), a.cached_input_tokens)
        if a.cache_write_tokens:
            self._inc("tokens", (p, m, "cache_write"), a.cache_write_tokens)
        if a.output_tokens:
            self._inc("tokens", (p, m, "output"), a.output_tokens)
        if a.reasoning_tokens:
            self._inc("tokens", (p, m, "reasoning"), a.reasoning_tokens)
        if a.cost is not None:
            if a.cost:
                self._inc("cost_usd", (p, m), float(a.cost))
        elif a.input_tokens or a.output_tokens:
            self._inc("unpriced_attempts", (p, m))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "LedgerCounters", "Metrics"]
