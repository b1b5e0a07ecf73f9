"""Every call and every attempt has its ledger record, and each cost is the price data times the
tokens, bucket by bucket — through a live gateway over the simulator, with both SDKs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from aiohttp import web

from fareway.config import ProviderConfig
from fareway.ledger.queries import LoggedCall
from fareway.providers.registry import ProviderSpec
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

M = Decimal(1_000_000)


async def _no_usage_upstream() -> tuple[web.AppRunner, int]:
    """An OpenAI-compatible server whose streams never report usage (like some self-hosted ones)."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        base = {
            "id": "chatcmpl-nousage",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
        }
        for delta, finish in (
            ({"role": "assistant", "content": ""}, None),
            ({"content": "twelve chars"}, None),
            ({}, "stop"),
        ):
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.fixture
async def lgw(sim: Any, tmp_path: Any) -> AsyncIterator[LiveGateway]:
    runner, port = await _no_usage_upstream()
    cfg = gateway_config(sim.url, tmp_path)
    providers = dict(cfg.providers)
    providers["selfhosted"] = ProviderConfig(
        ProviderSpec("selfhosted", "openai", f"http://127.0.0.1:{port}/v1", builtin=False), api_key="k"
    )
    cfg = dataclasses.replace(
        cfg,
        providers=providers,
        aliases={
            "chain": {"strategy": "fallback", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]}
        },
        prices={"selfhosted": {"*": {"input": "0.5", "output": "1.5"}}},
    )
    gw = await start_gateway(cfg)
    yield gw
    await gw.stop()
    await runner.cleanup()


async def logged(gw: LiveGateway, request_id: str) -> LoggedCall:
    ledger = gw.app.gateway.accounting.ledger
    await ledger.flush()
    for row in await ledger.recent_calls(n=200):
        if row.call.request_id == request_id:
            return row
    raise AssertionError(f"no ledger row for {request_id}")


def check_cost(gw: LiveGateway, a: Any) -> None:
    """cost == price data x tokens, bucket by bucket, for one attempt record."""
    rates = gw.app.gateway.accounting.pricebook.rates(a.provider, a.model)
    assert rates is not None, f"no price for {a.provider}/{a.model}"
    prompt = a.input_tokens
    uncached = a.input_tokens - a.cached_input_tokens - a.cache_write_tokens
    assert a.cost_input == rates.input.at(prompt) * uncached / M
    assert a.cost_cached_input == (rates.cached_input or rates.input).at(prompt) * a.cached_input_tokens / M
    assert a.cost_cache_write == (rates.cache_write or rates.input).at(prompt) * a.cache_write_tokens / M
    if rates.reasoning is None:
        assert a.cost_output == rates.output.at(prompt) * a.output_tokens / M
        assert a.cost_reasoning == 0
    assert (
        a.cost == a.cost_input + a.cost_cached_input + a.cost_cache_write + a.cost_output + a.cost_reasoning
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_client_call_is_recorded_and_priced(lgw: LiveGateway, stream: bool) -> None:
    client = openai_client(lgw.url + "/v1")
    raw = await client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "Write a haiku."}], stream=stream
    )
    if stream:
        chunks = [c async for c in raw.parse()]
        assert all(c.usage is None for c in chunks), "no usage chunk the client did not ask for"
    row = await logged(lgw, raw.headers["x-request-id"])
    assert row.call.stream is stream and row.call.outcome == "ok" and row.call.client_dialect == "openai"
    assert len(row.attempts) == 1 and row.call.attempts == 1
    a = row.attempts[0]
    assert a.provider == "openai" and a.input_tokens > 0 and a.output_tokens > 0 and not a.estimated
    check_cost(lgw, a)
    assert row.call.cost == a.cost
    if not stream:
        assert Decimal(raw.headers["x-fareway-cost-usd"]) == row.call.cost


async def test_streamed_usage_carries_the_cost_when_asked(lgw: LiveGateway) -> None:
    client = openai_client(lgw.url + "/v1")
    raw = await client.chat.completions.with_raw_response.create(
        model="groq/llama-3.1-8b-instant",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in [c async for c in raw.parse()] if c.usage is not None]
    assert len(usage) == 1
    row = await logged(lgw, raw.headers["x-request-id"])
    cost = (usage[0].model_extra or {}).get("cost")
    assert cost is not None and Decimal(str(cost)) == row.call.cost


async def test_anthropic_client_call_is_recorded_and_priced(lgw: LiveGateway) -> None:
    client = anthropic_client(lgw.url)
    kwargs: dict[str, Any] = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Write a haiku."}],
    }
    raw = await client.messages.with_raw_response.create(**kwargs)
    row = await logged(lgw, raw.headers["x-request-id"])
    assert row.call.client_dialect == "anthropic" and row.call.provider == "anthropic"
    check_cost(lgw, row.attempts[0])


async def test_anthropic_stream_is_recorded(lgw: LiveGateway) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(
            lgw.url + "/v1/messages",
            json={
                "model": "anthropic/claude-haiku-4-5",
                "max_tokens": 100,
                "stream": True,
                "messages": [{"role": "user", "content": "Write a haiku."}],
            },
            headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
        ) as r:
            await r.read()
            rid = r.headers["x-request-id"]
    row = await logged(lgw, rid)
    assert row.call.stream and row.call.outcome == "ok"
    a = row.attempts[0]
    assert a.output_tokens > 0 and not a.estimated
    check_cost(lgw, a)


async def test_stream_without_upstream_usage_is_estimated(lgw: LiveGateway) -> None:
    client = openai_client(lgw.url + "/v1")
    raw = await client.chat.completions.with_raw_response.create(
        model="selfhosted/any", messages=[{"role": "user", "content": "hello there"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == "twelve chars"
    row = await logged(lgw, raw.headers["x-request-id"])
    a = row.attempts[0]
    assert a.estimated and row.call.estimated
    assert a.input_tokens > 0 and a.output_tokens == 3  # 12 characters at ~4 a token
    assert a.cost == Decimal("0.5") * a.input_tokens / M + Decimal("1.5") * a.output_tokens / M


async def test_fallback_records_the_failed_attempt(lgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="500", count=1)
    client = openai_client(lgw.url + "/v1")
    raw = await client.chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "hi"}]
    )
    row = await logged(lgw, raw.headers["x-request-id"])
    assert [(a.provider, a.outcome, a.role) for a in row.attempts] == [
        ("openai", "error", "primary"),
        ("groq", "ok", "fallback"),
    ]
    assert row.attempts[0].status == 500 and row.attempts[0].tokens == 0
    assert row.call.provider == "groq" and row.call.attempts == 2
    for a in row.attempts:
        check_cost(lgw, a)
    assert row.call.cost == sum((a.cost for a in row.attempts), Decimal(0))


async def test_failed_call_is_recorded(lgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="429", count=1, retry_after=1)
    client = openai_client(lgw.url + "/v1")
    with pytest.raises(openai.RateLimitError) as ei:
        await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    rid = ei.value.response.headers["x-request-id"]
    row = await logged(lgw, rid)
    assert row.call.outcome == "error" and row.call.status == 429
    assert [a.outcome for a in row.attempts] == ["error"]


async def test_two_thousand_calls_lose_no_record(sim: Any, tmp_path: Any) -> None:
    import asyncio

    import aiohttp

    gw = await start_gateway(gateway_config(sim.url, tmp_path))
    body = {"model": "cerebras/llama3.1-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    ids: list[str] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:

            async def one() -> None:
                async with s.post(
                    gw.url + "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                ) as r:
                    assert r.status == 200
                    await r.read()
                    ids.append(r.headers["x-request-id"])

            for _ in range(20):
                await asyncio.gather(*(one() for _ in range(100)))
    finally:
        await gw.stop()  # graceful shutdown flushes the ledger
    from fareway.ledger.writer import Ledger

    ledger = Ledger.open(None, path=str(tmp_path / "fareway.db"))
    await ledger.start()
    try:
        rows = await ledger.usage()
        assert sum(r.calls for r in rows) == 2000
        recent = await ledger.recent_calls(n=2000)
        assert {r.call.request_id for r in recent} == set(ids)
        assert all(len(r.attempts) == 1 for r in recent)
    finally:
        await ledger.close()


@pytest.mark.parametrize(
    ("body", "model", "status"),
    [
        (b'{"model": "openai/gpt-4o-mini", "messages": [', "", 400),
        (b'{"model": "openai/gpt-4o-mini", "messages": "nope"}', "openai/gpt-4o-mini", 400),
        (
            b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}',
            "no-such-model",
            404,
        ),
    ],
)
async def test_refused_requests_are_recorded_too(
    lgw: LiveGateway, body: bytes, model: str, status: int
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(
            lgw.url + "/v1/chat/completions", data=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
        ) as r:
            assert r.status == status
            rid = r.headers["x-request-id"]
    row = await logged(lgw, rid)
    assert (row.call.status, row.call.outcome, row.call.requested_model) == (status, "error", model)
    assert row.attempts == [] and row.call.cost == 0
