"""Prometheus metrics: samples after observe(), isolation between instances, /metrics auth."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.metrics import Metrics
from tests.conftest import openai_client


def samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, frozenset(labels.items())))


def a_call() -> tuple[CallRecord, list[AttemptRecord]]:
    call = CallRecord(
        request_id="r1",
        requested_model="fast",
        provider="groq",
        upstream_model="llama-3.1-8b-instant",
        client_dialect="anthropic",
        status=200,
        input_tokens=1200,
        output_tokens=80,
        cost=Decimal("0.0031"),
    )
    failed = AttemptRecord(
        request_id="r1", attempt_no=0, provider="cerebras", model="llama3.1-8b", outcome="error", status=503,
        latency_ms=90.0, cost=None,
    )  # fmt: skip
    ok = AttemptRecord(
        request_id="r1", attempt_no=1, provider="groq", model="llama-3.1-8b-instant", role="fallback",
        input_tokens=1000, cached_input_tokens=200, output_tokens=80, reasoning_tokens=10, cost=Decimal("0.0021"),
        latency_ms=640.0, ttft_ms=120.0,
    )  # fmt: skip
    unpriced = AttemptRecord(
        request_id="r1", attempt_no=2, provider="deepinfra", model="odd-model", outcome="cancelled",
        role="race", input_tokens=200, cost=None,
    )  # fmt: skip
    return call, [failed, ok, unpriced]


def test_observe_counts_requests_tokens_cost_and_latency() -> None:
    m = Metrics()
    call, attempts = a_call()
    m.observe(call, attempts)
    m.observe(call, attempts)
    labels = {"provider": "groq", "model": "llama-3.1-8b-instant"}
    assert value(m, "fareway_requests_total", status="200", dialect="anthropic", **labels) == 2
    assert (
        value(m, "fareway_upstream_attempts_total", provider="cerebras", model="llama3.1-8b", outcome="error")
        == 2
    )
    assert value(m, "fareway_upstream_errors_total", provider="cerebras", model="llama3.1-8b") == 2
    assert value(m, "fareway_tokens_total", bucket="input", **labels) == 2000
    assert value(m, "fareway_tokens_total", bucket="cached_input", **labels) == 400
    assert value(m, "fareway_tokens_total", bucket="output", **labels) == 160
    assert value(m, "fareway_tokens_total", bucket="reasoning", **labels) == 20
    assert value(m, "fareway_cost_usd_total", **labels) == pytest.approx(0.0042)
    assert value(m, "fareway_unpriced_attempts_total", provider="deepinfra", model="odd-model") == 2
    assert value(m, "fareway_upstream_latency_seconds_count", provider="groq") == 2
    assert value(m, "fareway_upstream_latency_seconds_sum", provider="groq") == pytest.approx(1.28)
    assert value(m, "fareway_upstream_latency_seconds_bucket", provider="groq", le="0.75") == 2
    assert value(m, "fareway_upstream_latency_seconds_bucket", provider="groq", le="0.5") == 0
    assert value(m, "fareway_upstream_ttft_seconds_count", provider="groq") == 2
    # a failed try is not a latency sample
    assert value(m, "fareway_upstream_latency_seconds_count", provider="cerebras") is None


def test_errors_cache_hits_and_unrouted_calls() -> None:
    m = Metrics()
    refused = CallRecord(
        request_id="r2",
        requested_model="made-up/<model>",
        status=404,
        outcome="error",
        client_dialect="openai",
    )
    m.observe(refused, [])
    hit = CallRecord(
        request_id="r3", requested_model="gpt-4o-mini", provider="openai", upstream_model="gpt-4o-mini",
        cache="hit", cost=Decimal(0), cost_saved=Decimal("0.5"),
    )  # fmt: skip
    m.observe(hit, [])
    miss = CallRecord(
        request_id="r4", requested_model="gpt-4o-mini", provider="openai", upstream_model="gpt-4o-mini",
        cache="stored", cost=Decimal("0.5"),
    )  # fmt: skip
    m.observe(miss, [])
    m.observe(
        CallRecord(request_id="r5", requested_model="x", provider="openai", upstream_model="gpt-4o-mini"), []
    )
    # a client's made-up model name never becomes a label value
    text = m.render().decode()
    assert "made-up" not in text
    assert (
        value(m, "fareway_requests_total", provider="none", model="none", status="404", dialect="openai") == 1
    )
    assert value(m, "fareway_call_errors_total", provider="none", model="none", dialect="openai") == 1
    # one hit of two calls that used the cache (the third bypassed it), and what the hit saved
    assert value(m, "fareway_cache_hits_total", model="gpt-4o-mini") == 1
    assert value(m, "fareway_cache_lookups_total", model="gpt-4o-mini") == 2
    assert value(m, "fareway_cache_saved_usd_total", model="gpt-4o-mini") == 0.5


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    call, attempts = a_call()
    a.observe(call, attempts)
    assert value(a, "fareway_cost_usd_total", provider="groq", model="llama-3.1-8b-instant") is not None
    assert value(b, "fareway_cost_usd_total", provider="groq", model="llama-3.1-8b-instant") is None


def test_ledger_stats_are_exported() -> None:
    class FakeStats:
        def as_dict(self) -> dict[str, int]:
            return {"enqueued": 5, "written": 4, "queued": 1, "dropped": 0}

    class FakeLedger:
        stats = FakeStats()

    m = Metrics()
    m.bind_ledger(FakeLedger())
    m.bind_ledger(FakeLedger())  # idempotent
    assert value(m, "fareway_ledger_records", kind="queued") == 1
    assert value(m, "fareway_ledger_records", kind="written") == 4


# ------------------------------------------------------------------- /metrics over HTTP


async def test_metrics_endpoint_needs_admin_and_counts_real_calls(usage_world: Any) -> None:

    gw, alice = usage_world
    url = gw.url + "/metrics"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 401
        async with s.get(url, headers={"authorization": f"Bearer {alice}"}) as r:
            assert r.status == 403
        client = openai_client(gw.url + "/v1", alice)
        await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        await gw.app.gateway.accounting.ledger.flush()  # /metrics reads the ledger's rollups
        from tests.conftest import MASTER_KEY

        async with s.get(url, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith("text/plain")
            text = await r.text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    reqs = [s for s in fams["fareway_requests"].samples if s.name == "fareway_requests_total"]
    assert any(
        s.labels["provider"] == "openai" and s.labels["status"] == "200" and s.value >= 1 for s in reqs
    )
    assert "fareway_ledger_records" in fams


@pytest.fixture(scope="module")
async def usage_world(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import gateway_config
    from tests.test_usage_api import start_usage_gateway

    gw = await start_usage_gateway(gateway_config(sim.url, tmp_path_factory.mktemp("metrics-state")))
    secret, _ = gw.app.gateway.keys.create("alice")
    yield gw, secret
    await gw.stop()
