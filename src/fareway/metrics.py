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

Where they come from.  With a ledger bound (:meth:`Metrics.bind_ledger`, as the server does),
these families are read from the ledger's day rollups at scrape time (:meth:`Metrics.scrape`):
everything the ledger ever committed, so they survive restarts and equal what ``/v1/usage``
and the dashboard say.  With several gateways on one Postgres ledger every one of them exports
the same ledger-wide totals: scrape one, or aggregate with ``max``, not ``sum``.  A call shows
once the ledger has committed it (``max_delay``, 50 ms by default).  If the ledger's database
cannot be read, the scrape still answers, with the writer gauges and
``fareway_ledger_readable 0``.  Without a ledger, :meth:`Metrics.observe` counts the calls of
this process in memory instead.

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

from fareway.ledger.base import LedgerStats, StoreUnavailable
from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.ledger.rollup_queries import LedgerTotals
from fareway.ledger.rollups import HIST_BOUNDS_MS, TOKENS

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


@runtime_checkable
class LedgerTotalsSource(Protocol):
    """A ledger whose rollups can be read as metric totals (``ledger.writer.Ledger`` fits)."""

    async def ledger_totals(self) -> LedgerTotals: ...


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


class _Fixed(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self.families


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
        self._source: LedgerTotalsSource | None = None

    def bind_ledger(self, ledger: LedgerCounters) -> None:
        """Also export the ledger writer's counters (queue depth, dropped records) at scrape time;
        a ledger with rollups becomes the source of every call family (module docstring)."""
        if self._ledger is None:
            self._ledger = _LedgerCollector(ledger)
            self.registry.register(self._ledger)
        else:
            self._ledger.ledger = ledger
        self._source = ledger if isinstance(ledger, LedgerTotalsSource) else None

    async def scrape(self) -> bytes:
        """The exposition: from the ledger's rollups when one is bound, else as :meth:`render`."""
        if self._source is None:
            return self.render()
        try:
            totals = await self._source.ledger_totals()
        except StoreUnavailable:
            return self._from(None)
        return self._from(totals)

    def _from(self, totals: LedgerTotals | None) -> bytes:
        """A one-off exposition of ``totals`` (None: the ledger could not be read) with this
        instance's ledger gauges."""
        view = Metrics()
        if totals is not None:
            view._load(totals)
        if self._ledger is not None:
            view.bind_ledger(self._ledger.ledger)
        if self._store is not None:
            view.bind_cache_store(self._store.store)
        readable = GaugeMetricFamily(
            "fareway_ledger_readable", "1 when the call metrics could be read from the ledger's rollups."
        )
        readable.add_metric([], 1.0 if totals is not None else 0.0)
        view.registry.register(_Fixed([readable]))
        return view.render()

    def _load(self, totals: LedgerTotals) -> None:
        for c in totals.calls:
            provider = c.provider or NONE
            model = (c.upstream_model or NONE) if c.provider else NONE
            self._inc("requests", (provider, model, str(c.status), c.client_dialect), c.calls)
            if c.outcome == "error":
                self._inc("call_errors", (provider, model, c.client_dialect), c.calls)
            if c.cache != "bypass":
                self._inc("cache_lookups", (model,), c.calls)
                if c.cache == "hit":
                    self._inc("cache_hits", (model,), c.calls)
                    if c.cost_saved:
                        self._inc("cache_saved_usd", (model,), float(c.cost_saved))
        for a in totals.attempts:
            p, m = a.provider, a.model
            self._inc("upstream_attempts", (p, m, a.outcome), a.attempts)
            if a.outcome == "error":
                self._inc("upstream_errors", (p, m), a.attempts)
            for bucket, name in zip(TOKEN_BUCKETS, TOKENS, strict=True):
                if a.tokens[name]:
                    self._inc("tokens", (p, m, bucket), a.tokens[name])
            if a.cost:
                self._inc("cost_usd", (p, m), float(a.cost))
            if a.unpriced:
                self._inc("unpriced_attempts", (p, m), a.unpriced)
            if a.outcome == "ok":
                self._load_hist("upstream_latency_seconds", p, a.latency_hist, a.latency_sum)
                self._load_hist("upstream_ttft_seconds", p, a.ttft_hist, a.ttft_sum)

    def _load_hist(self, name: str, provider: str, counts: list[int], total_ms: float) -> None:
        if not any(counts):
            return
        d = self.histograms[name]
        h = d.get(provider)
        if h is None:
            h = d[provider] = _Histogram(self._bounds[name])
        for i, n in enumerate(counts):
            if n:
                # every bound of h is one of the rollup's, so a rollup bucket falls in one of h's
                upper = HIST_BOUNDS_MS[i] / 1000.0 if i < len(HIST_BOUNDS_MS) else float("inf")
                h.counts[bisect_left(h.bounds, upper)] += n
        h.total += total_ms / 1000.0

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
        """Count one finished call and its attempts (in memory: nothing to do when the ledger's
        rollups are the source)."""
        if self._source is not None:
            return
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


__all__ = ["CONTENT_TYPE", "LedgerCounters", "LedgerTotalsSource", "Metrics"]
