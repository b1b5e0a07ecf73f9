"""Fallback, circuit breaking, timeouts, mid-stream failures and racing, over the simulator."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

ALIASES = {
    "chain": {"strategy": "fallback", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]},
    "chain3": {
        "strategy": "fallback",
        "targets": ["mistral/mistral-small-latest", "groq/llama-3.1-8b-instant", "openai/gpt-4o-mini"],
    },
    "duo": {"strategy": "race", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]},
    "hedged": {
        "strategy": "hedge",
        "hedge_ms": 200,
        "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"],
    },
    "claude-chain": {"strategy": "fallback", "targets": ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini"]},
    "duo-chain": {
        "strategy": "fallback",
        "targets": ["mistral/mistral-small-latest", "groq/llama-3.1-8b-instant"],
    },
    "capped": {
        "strategy": "race",
        "targets": ["groq/llama-3.1-8b-instant", "anthropic/claude-sonnet-4-5"],
        "max_cost_usd": 0.0001,
    },
    "hedge-p90": {"strategy": "hedge", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]},
}


@pytest.fixture
async def rgw(sim: Any, tmp_path: Any) -> AsyncIterator[LiveGateway]:
    """A fresh gateway per test: live statistics (cooldowns, circuits) must not leak between tests."""
    cfg = gateway_config(sim.url, tmp_path)
    cfg = dataclasses.replace(cfg, aliases=ALIASES)
    gw = await start_gateway(cfg)
    yield gw
    await gw.stop()


def oai(gw: LiveGateway) -> openai.AsyncOpenAI:
    return openai_client(gw.url + "/v1")


def attempts(route_header: str) -> dict[str, str]:
    part = route_header.split("attempts=", 1)[1]
    return dict(item.rsplit("=", 1) for item in part.split(",") if item)


def provider_count(stats: dict[str, Any], provider: str, field: str) -> int:
    p = stats.get(provider) or stats.get("providers", {}).get(provider) or {}
    return int(p.get(field, 0))


async def test_429_falls_back_to_next_offer_at_once(rgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="429", count=1, retry_after=30)
    t0 = time.monotonic()
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:served"}]
    )
    elapsed = time.monotonic() - t0
    assert raw.parse().choices[0].message.content == "served"
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"]) == {
        "openai/gpt-4o-mini": "error",
        "groq/llama-3.1-8b-instant": "ok",
    }
    assert elapsed < 30, "the fallback must not wait out the failed provider's Retry-After"


async def test_client_error_is_not_a_fallback_trigger(rgw: LiveGateway, sim_control: Any) -> None:
    before = await sim_control.stats()
    with pytest.raises(openai.BadRequestError):
        await oai(rgw).chat.completions.create(
            model="chain", messages=[{"role": "user", "content": "hi"}], n=0
        )
    after = await sim_control.stats()
    assert provider_count(after, "groq", "requests") == provider_count(before, "groq", "requests")


async def test_stall_before_first_token_falls_back_at_ttft_timeout(
    rgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="openai", kind="stall", count=1)
    stream = await oai(rgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:after stall"}], stream=True
    )
    assert stream.headers["x-fareway-provider"] == "groq"
    assert attempts(stream.headers["x-fareway-route"])["openai/gpt-4o-mini"] == "error"
    text = ""
    async for chunk in stream.parse():
        for c in chunk.choices:
            text += c.delta.content or ""
    assert text == "after stall"


async def test_in_stream_error_before_content_falls_back(rgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="stream_error", count=1, after_chunks=0)
    stream = await oai(rgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:fine"}], stream=True
    )
    assert stream.headers["x-fareway-provider"] == "groq"


async def test_failure_after_first_token_is_a_clean_openai_error_event(
    rgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="openai", kind="reset", count=1, after_chunks=2)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            rgw.url + "/v1/chat/completions",
            json={
                "model": "chain",
                "messages": [{"role": "user", "content": "tell me a long story"}],
                "stream": True,
            },
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        ) as r:
            assert r.status == 200
            body = (await r.read()).decode()
    frames = [f for f in body.split("\n\n") if f.strip()]
    assert frames[-1].startswith('data: {"error"')
    assert "[DONE]" not in body
    # The official SDK turns it into an exception rather than a silently truncated answer.
    await sim_control.fault(provider="openai", kind="reset", count=1, after_chunks=2)
    with pytest.raises(openai.APIError):
        stream = await oai(rgw).chat.completions.create(
            model="chain", messages=[{"role": "user", "content": "tell me a long story"}], stream=True
        )
        async for _ in stream:
            pass


async def test_failure_after_first_token_is_a_clean_anthropic_error_event(
    rgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="anthropic", kind="reset", count=1, after_chunks=2)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            rgw.url + "/v1/messages",
            json={
                "model": "claude-chain",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "tell me a long story"}],
                "stream": True,
            },
            headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
        ) as r:
            assert r.status == 200
            body = (await r.read()).decode()
    events = [line[len("event: ") :] for line in body.splitlines() if line.startswith("event: ")]
    assert events[-1] == "error"
    assert "message_stop" not in events
    # every opened block was closed before the error
    assert events.count("content_block_start") == events.count("content_block_stop")
    await sim_control.fault(provider="anthropic", kind="reset", count=1, after_chunks=2)
    client = anthropic_client(rgw.url)
    with pytest.raises(anthropic.APIError):
        async with client.messages.stream(
            model="claude-chain",
            max_tokens=200,
            messages=[{"role": "user", "content": "tell me a long story"}],
        ) as stream:
            async for _ in stream:
                pass


async def test_race_returns_the_faster_and_cancels_the_loser(rgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="stall", count=1)
    before = await sim_control.stats()
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="duo", messages=[{"role": "user", "content": "echo:race won"}], stream=True
    )
    text = ""
    async for chunk in raw.parse():
        for c in chunk.choices:
            text += c.delta.content or ""
    assert text == "race won"
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"])["openai/gpt-4o-mini"] == "cancelled"
    after = await sim_control.stats()
    for _ in range(100):  # the disconnect is observed asynchronously by the simulator
        if provider_count(after, "openai", "disconnects") > provider_count(before, "openai", "disconnects"):
            break
        import asyncio

        await asyncio.sleep(0.02)
        after = await sim_control.stats()
    assert (
        provider_count(after, "openai", "disconnects") == provider_count(before, "openai", "disconnects") + 1
    )
    # ...and the cancelled loser has its own ledger record, with its (estimated) usage and cost.
    ledger = rgw.app.gateway.accounting.ledger
    await ledger.flush()
    rid = raw.headers["x-request-id"]
    row = next(r for r in await ledger.recent_calls(n=50) if r.call.request_id == rid)
    by_provider = {a.provider: a for a in row.attempts}
    loser = by_provider["openai"]
    assert (loser.outcome, loser.role) == ("cancelled", "race")
    assert loser.estimated and loser.input_tokens > 0 and loser.cost is not None
    assert by_provider["groq"].outcome == "ok"


async def test_one_of_three_providers_down_all_calls_succeed(rgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="mistral", kind="503", rate=1.0)
    for i in range(10):
        resp = await oai(rgw).chat.completions.create(
            model="chain3", messages=[{"role": "user", "content": f"echo:{i}"}]
        )
        assert resp.choices[0].message.content == str(i)


async def test_open_circuit_skips_a_dead_provider_without_an_attempt(
    rgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="mistral", kind="500", rate=1.0)
    threshold = rgw.app.gateway.stats.breaker_config.failure_threshold
    for i in range(threshold):
        raw = await oai(rgw).chat.completions.with_raw_response.create(
            model="chain3", messages=[{"role": "user", "content": f"echo:{i}"}]
        )
        assert attempts(raw.headers["x-fareway-route"])["mistral/mistral-small-latest"] == "error"
    before = provider_count(await sim_control.stats(), "mistral", "requests")
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="chain3", messages=[{"role": "user", "content": "echo:skip"}]
    )
    assert raw.parse().choices[0].message.content == "skip"
    tried = attempts(raw.headers["x-fareway-route"])
    assert tried["mistral/mistral-small-latest"] == "skipped"
    assert tried["groq/llama-3.1-8b-instant"] == "ok"
    assert provider_count(await sim_control.stats(), "mistral", "requests") == before, (
        "no request may reach it"
    )


async def test_hedge_starts_the_second_offer_only_after_the_delay(rgw: LiveGateway, sim_control: Any) -> None:
    # The first offer answers at once: the hedge never starts the second one.
    before = provider_count(await sim_control.stats(), "groq", "requests")
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="hedged", messages=[{"role": "user", "content": "echo:quick"}], stream=True
    )
    async for _ in raw.parse():
        pass
    assert raw.headers["x-fareway-provider"] == "openai"
    assert "groq/llama-3.1-8b-instant" not in attempts(raw.headers["x-fareway-route"])
    assert provider_count(await sim_control.stats(), "groq", "requests") == before
    # The first offer stalls: after hedge_ms the second starts and wins; the first is cancelled.
    await sim_control.fault(provider="openai", kind="stall", count=1)
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="hedged", messages=[{"role": "user", "content": "echo:hedged"}], stream=True
    )
    text = ""
    async for chunk in raw.parse():
        for c in chunk.choices:
            text += c.delta.content or ""
    assert text == "hedged"
    assert raw.headers["x-fareway-provider"] == "groq"
    tried = attempts(raw.headers["x-fareway-route"])
    assert tried["openai/gpt-4o-mini"] == "cancelled"


async def test_race_cost_cap_does_not_start_a_contender_past_it(rgw: LiveGateway, sim_control: Any) -> None:
    before = provider_count(await sim_control.stats(), "anthropic", "requests")
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="capped", messages=[{"role": "user", "content": "echo:cheap"}], max_tokens=50
    )
    assert raw.parse().choices[0].message.content == "cheap"
    assert list(attempts(raw.headers["x-fareway-route"])) == ["groq/llama-3.1-8b-instant"]
    assert provider_count(await sim_control.stats(), "anthropic", "requests") == before


async def test_hedge_delay_defaults_to_the_first_offers_p90_ttft(rgw: LiveGateway) -> None:
    from fareway.types import ChatRequest, Message, TextPart

    router = rgw.app.gateway.resolver.router
    req = ChatRequest(model="hedge-p90", messages=[Message("user", [TextPart("hi")])])
    decision = router.decide(req)
    p90 = rgw.app.gateway.stats.snapshot("openai/gpt-4o-mini").ttft_p90
    assert decision.route.hedge_ms == pytest.approx(p90 * 1000)
    assert any("p90 TTFT" in n for n in decision.notes)


async def test_when_every_offer_is_out_the_skipped_ones_get_a_last_try(
    rgw: LiveGateway, sim_control: Any
) -> None:
    """An open circuit reorders offers; it never turns a call one of them could serve into an error."""
    stats = rgw.app.gateway.stats
    stats.breaker("mistral/mistral-small-latest").force_open(60, "test: opened by hand")
    stats.cool_down("groq/llama-3.1-8b-instant", 60, "test: cooling by hand")
    raw = await oai(rgw).chat.completions.with_raw_response.create(
        model="duo-chain", messages=[{"role": "user", "content": "echo:still served"}]
    )
    assert raw.parse().choices[0].message.content == "still served"
    route = raw.headers["x-fareway-route"]
    assert "mistral/mistral-small-latest=skipped" in route and "mistral/mistral-small-latest=ok" in route
