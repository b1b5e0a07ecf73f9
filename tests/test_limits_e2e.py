"""Budgets, rate limits, allow-lists and team keys on a live gateway, with the official SDKs.

* 200 concurrent calls against a budget that admits 50 never overshoot it by more than one
  request's reserved estimate: in-process, and on the real Redis with two gateways sharing it;
* the 402 carries the remaining budget (message, ``x-fareway-budget-remaining-usd``), in
  OpenAI's and in Anthropic's shape;
* a key limited to some models gets a 403 for others;
* requests per minute hold over two simulated minutes (a fake clock: no waiting), with OpenAI's
  ``x-ratelimit-*`` headers on every answer and ``Retry-After`` on a 429.

Expected money comes from Groq's public price list for llama-3.1-8b-instant ($0.05 input,
$0.08 output per million tokens) and from the ``x-fareway-cost-usd`` the calls were billed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from fareway.config import Config
from fareway.keys.settings import KeySettings
from fareway.limits.settings import LimitSettings
from fareway.server.keys_wiring import services_of
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

MODEL = "groq/llama-3.1-8b-instant"
PROMPT = [{"role": "user", "content": "Say hi"}]
MAX_TOKENS = 16
IN_PRICE, OUT_PRICE = Decimal("0.05"), Decimal("0.08")  # USD per million tokens (Groq's list)
REDIS_URL = "redis://127.0.0.1:6379/0"


def reservation_bound() -> Decimal:
    """An upper bound on one call's reserved estimate, by hand: "Say hi" is at most 6 tokens,
    plus 3 per message and 3 for the reply (OpenAI's chat overhead), times the 1.2 margin; the
    output at most max_tokens."""
    prompt = Decimal(6 + 3 + 3) * Decimal("1.2")
    return (prompt * IN_PRICE + MAX_TOKENS * OUT_PRICE) / 1_000_000


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(sim: Any, tmp_path: Path, **limits: Any) -> Config:
    cfg = gateway_config(sim.url, tmp_path)
    return dataclasses.replace(
        cfg,
        key_settings=KeySettings(vault_key=Fernet.generate_key().decode()),
        limit_settings=LimitSettings(**limits),
    )


async def admin_api(gw: LiveGateway, method: str, path: str, body: Any = None, key: str = MASTER_KEY) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.request(
            method, gw.url + path, json=body, headers={"authorization": f"Bearer {key}"}
        ) as r:
            data = await r.json()
            assert r.status < 300, (r.status, data)
            return data


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"fwtest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def _one_call_cost(gw: LiveGateway) -> Decimal:
    """What one such call really costs, billed to a key without limits."""
    probe = await admin_api(gw, "POST", "/v1/admin/keys", {"name": f"probe-{uuid.uuid4().hex[:6]}"})
    raw = await openai_client(gw.url + "/v1", probe["key"]).chat.completions.with_raw_response.create(
        model=MODEL, messages=PROMPT, max_tokens=MAX_TOKENS
    )
    return Decimal(raw.headers["x-fareway-cost-usd"])


async def _burst(
    gws: list[LiveGateway], secret: str, n: int
) -> tuple[list[Decimal], list[openai.APIStatusError]]:
    clients = [openai_client(gw.url + "/v1", secret) for gw in gws]

    async def call(i: int) -> Decimal | openai.APIStatusError:
        try:
            raw = await clients[i % len(clients)].chat.completions.with_raw_response.create(
                model=MODEL, messages=PROMPT, max_tokens=MAX_TOKENS
            )
            return Decimal(raw.headers["x-fareway-cost-usd"])
        except openai.APIStatusError as exc:
            return exc

    results = await asyncio.gather(*(call(i) for i in range(n)))
    return [r for r in results if isinstance(r, Decimal)], [
        r for r in results if isinstance(r, openai.APIStatusError)
    ]


async def _check_burst(gws: list[LiveGateway], budget_gw: LiveGateway) -> None:
    one = await _one_call_cost(budget_gw)
    budget = one * 50
    created = await admin_api(
        budget_gw,
        "POST",
        "/v1/admin/keys",
        {"name": f"budget-{uuid.uuid4().hex[:6]}", "budget_daily_usd": str(budget)},
    )
    costs, refused = await _burst(gws, created["key"], 200)
    spent = sum(costs, Decimal(0))
    bound = reservation_bound()
    print(f"budget {budget} USD, one call {one}, bound {bound}: {len(costs)} admitted, spent {spent}")
    assert spent <= budget + bound, (spent, budget, bound)
    assert 40 <= len(costs) <= 50 + int(bound / one) + 1, len(costs)
    assert len(costs) + len(refused) == 200 and {e.status_code for e in refused} == {402}
    for e in refused[:5]:
        body = e.body if isinstance(e.body, dict) else {}
        assert body.get("type") == "budget_exceeded" or body.get("code") == "budget_exceeded", body
        remaining = Decimal(e.response.headers["x-fareway-budget-remaining-usd"])
        assert Decimal(0) <= remaining <= budget and "remaining" in e.message
        assert e.response.headers["x-fareway-budget-window"] == "daily"
        assert int(e.response.headers["retry-after"]) >= 1
    # what the key's own view says it spent, once every call settled
    await asyncio.sleep(0)
    me = await admin_api(budget_gw, "GET", "/v1/key", key=created["key"])
    daily = me["limits"]["key"]["budgets"]["daily"]
    assert Decimal(daily["spent_usd"]) == spent and Decimal(daily["held_usd"]) == 0


async def test_200_concurrent_calls_never_overshoot_the_budget(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        await _check_burst([gw], gw)
    finally:
        await gw.stop()


@pytest.mark.redis
async def test_200_concurrent_calls_on_two_gateways_sharing_redis(
    sim: Any, tmp_path: Path, redis_prefix: str
) -> None:
    """Two gateways (one state DB, one Redis): the budget holds across both of them."""
    cfg = config(sim, tmp_path, store="redis", redis_url=REDIS_URL, redis_prefix=redis_prefix)
    gw1 = await start_gateway(cfg)
    gw2 = await start_gateway(dataclasses.replace(cfg, ledger_enabled=False))
    try:
        await _check_burst([gw1, gw2], gw1)
    finally:
        await gw2.stop()
        await gw1.stop()


async def test_402_carries_the_remaining_budget_in_both_dialects(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        k = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "tiny", "budget_total_usd": "0.000001"})
        with pytest.raises(openai.APIStatusError) as oai:
            await openai_client(gw.url + "/v1", k["key"]).chat.completions.create(
                model=MODEL, messages=PROMPT, max_tokens=MAX_TOKENS
            )
        assert oai.value.status_code == 402
        assert oai.value.response.headers["x-fareway-budget-remaining-usd"] == "0.000001"
        assert "$0.000001 remaining" in oai.value.message
        assert "retry-after" not in oai.value.response.headers  # a total budget never resets
        with pytest.raises(anthropic.APIStatusError) as ant:
            await anthropic_client(gw.url, k["key"]).messages.create(
                model=MODEL, max_tokens=MAX_TOKENS, messages=PROMPT
            )
        assert ant.value.status_code == 402
        assert ant.value.body["error"]["type"] == "billing_error"
        assert "$0.000001 remaining" in ant.value.body["error"]["message"]
        # nothing was spent by the refusals: the key's view still shows all of it
        me = await admin_api(gw, "GET", "/v1/key", key=k["key"])
        assert me["limits"]["key"]["budgets"]["total"]["remaining_usd"] == "0.000001"
    finally:
        await gw.stop()


async def test_a_key_limited_to_some_models_gets_403_for_others(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        k = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "groq-only", "allowed_models": ["groq/*"]})
        client = openai_client(gw.url + "/v1", k["key"])
        ok = await client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=5)
        assert ok.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.chat.completions.create(model="openai/gpt-4o-mini", messages=PROMPT)
        assert denied.value.code == "model_not_allowed"
        with pytest.raises(anthropic.PermissionDeniedError):
            await anthropic_client(gw.url, k["key"]).messages.create(
                model="anthropic/claude-haiku-4-5", max_tokens=5, messages=PROMPT
            )
        # a bare id served by several providers keeps only what the key may use
        raw = await client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b-instant", messages=PROMPT, max_tokens=5
        )
        assert raw.headers["x-fareway-provider"] == "groq"
    finally:
        await gw.stop()


async def test_rate_limit_holds_over_simulated_minutes(sim: Any, tmp_path: Path) -> None:
    """20 requests a minute, one request a simulated second for 130 seconds: 20 in the first
    seconds, then one a second again from +61 s as the first ones leave the (61-slot) window,
    20 more, and again from +122 s."""
    gw = await start_gateway(config(sim, tmp_path))
    try:
        k = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "rl", "rpm": 20, "tpm": 1_000_000})
        services = services_of(gw.app.gateway)
        assert services is not None
        clock = Clock(1_800_000_000.0)
        services.limits.clock = clock
        services.store.clock = clock  # type: ignore[attr-defined]
        client = openai_client(gw.url + "/v1", k["key"])
        admitted: list[int] = []
        for second in range(130):
            clock.t = 1_800_000_000.0 + second
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=PROMPT, max_tokens=3
                )
            except openai.RateLimitError as exc:
                h = exc.response.headers
                assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("20", "0")
                assert 1 <= int(h["retry-after"]) <= 61
                continue
            admitted.append(second)
            h = raw.headers
            assert h["x-ratelimit-limit-requests"] == "20"
            in_window = sum(1 for s in admitted if s > second - 61)
            assert h["x-ratelimit-remaining-requests"] == str(20 - in_window)
            assert h["x-ratelimit-limit-tokens"] == "1000000"
        assert admitted == [*range(20), *range(61, 81), *range(122, 130)]
        for s in admitted:
            assert sum(1 for u in admitted if s <= u < s + 60) <= 20
    finally:
        await gw.stop()


async def test_tokens_per_minute_count_the_reservation(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        k = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "tpm", "tpm": 100})
        client = openai_client(gw.url + "/v1", k["key"])
        with pytest.raises(openai.RateLimitError) as big:  # 200 output tokens alone are over 100
            await client.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=200)
        assert "more than the key" in big.value.message and "retry-after" not in big.value.response.headers
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=PROMPT, max_tokens=20
        )
        left = int(raw.headers["x-ratelimit-remaining-tokens"])
        usage = raw.parse().usage
        assert usage is not None
        # the answer's header shows the reservation; the settle replaced it by what was used
        me = await admin_api(gw, "GET", "/v1/key", key=k["key"])
        assert (
            me["limits"]["key"]["rate_limits"]["tokens_per_minute"]["remaining"] == 100 - usage.total_tokens
        )
        assert left <= 100 - usage.total_tokens
    finally:
        await gw.stop()


async def test_streams_and_embeddings_settle_their_real_cost(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        k = await admin_api(
            gw, "POST", "/v1/admin/keys", {"name": "st", "budget_daily_usd": "1", "tpm": 100_000}
        )
        client = openai_client(gw.url + "/v1", k["key"])
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=PROMPT,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [c.usage async for c in stream if c.usage is not None]
        assert len(usage) == 1
        chat_cost = Decimal(str((usage[0].model_extra or {})["cost"]))
        emb = await client.embeddings.with_raw_response.create(
            model="openai/text-embedding-3-small", input=["one line", "another line"]
        )
        emb_cost = Decimal(emb.headers["x-fareway-cost-usd"])
        assert emb.headers["x-ratelimit-limit-tokens"] == "100000"
        me = await admin_api(gw, "GET", "/v1/key", key=k["key"])
        daily = me["limits"]["key"]["budgets"]["daily"]
        assert Decimal(daily["spent_usd"]) == chat_cost + emb_cost and daily["held_usd"] == "0"
        tokens = usage[0].total_tokens + emb.parse().usage.total_tokens
        assert me["limits"]["key"]["rate_limits"]["tokens_per_minute"]["remaining"] == 100_000 - tokens
    finally:
        await gw.stop()


async def test_an_unpriceable_call_is_refused_or_admitted_by_the_setting(sim: Any, tmp_path: Path) -> None:
    """A provider with no price anywhere (a private endpoint, here the simulator's OpenAI face)."""
    cfg = config(sim, tmp_path / "refuse")
    spec = dataclasses.replace(cfg.providers["openai"].spec, name="private", builtin=False)
    private = dataclasses.replace(cfg.providers["openai"], spec=spec)
    for setting, dirname in (("refuse", "refuse"), ("admit", "admit")):
        c = dataclasses.replace(
            config(sim, tmp_path / dirname, unpriced=setting), providers={**cfg.providers, "private": private}
        )
        gw = await start_gateway(c)
        try:
            k = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "b", "budget_total_usd": "5"})
            client = openai_client(gw.url + "/v1", k["key"])
            if setting == "refuse":
                with pytest.raises(openai.APIStatusError) as exc:
                    await client.chat.completions.create(
                        model="private/anything", messages=PROMPT, max_tokens=3
                    )
                assert exc.value.status_code == 402 and "cannot be estimated" in exc.value.message
            else:
                raw = await client.chat.completions.with_raw_response.create(
                    model="private/anything", messages=PROMPT, max_tokens=3
                )
                assert raw.headers["x-fareway-cost-usd"] == "unknown"
                # it held nothing and was charged nothing; a priced call on the same key counts in full
                priced = await client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=PROMPT, max_tokens=3
                )
                me = await admin_api(gw, "GET", "/v1/key", key=k["key"])
                total = me["limits"]["key"]["budgets"]["total"]
                assert (total["spent_usd"], total["held_usd"]) == (priced.headers["x-fareway-cost-usd"], "0")
        finally:
            await gw.stop()
