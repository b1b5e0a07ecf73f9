"""Two live gateways on one Redis (``[shared] health = "redis"``, ``experiments = "redis"``) over
the simulator, called with the official SDK and plain HTTP.

* A 429 with Retry-After seen by gateway A cools the provider for gateway B: B's next call skips
  it (``x-fareway-route`` says ``skipped``, B's ledger records it as ``skipped``) and the simulator
  receives no request for it.
* The judge budget of an experiment holds across both (one budget, not one per gateway).
* An experiment's subject gets the same arm on both gateways (the arm each user should get is
  computed here from the documented hash, not by the code under test), and the calls counted by
  each gateway add up on both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from fareway.experiments.manager import ExperimentManager
from fareway.experiments.settings import parse
from fareway.ledger.writer import Ledger
from fareway.router.shared_health import SharedStats
from fareway.router.shared_settings import SharedSettings
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, openai_client, start_gateway

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"
CHAIN = {"strategy": "fallback", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]}
CONTROL, CHALLENGER = "openai/gpt-4o", "groq/llama-3.3-70b-versatile"


def attempts(route_header: str) -> dict[str, str]:
    part = route_header.split("attempts=", 1)[1]
    return dict(item.rsplit("=", 1) for item in part.split(",") if item)


def requests_to(stats: dict[str, Any], provider: str) -> int:
    p = stats.get(provider) or stats.get("providers", {}).get(provider) or {}
    return int(p.get("requests", 0))


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"fwtest-{uuid.uuid4().hex[:10]}:"
    yield p
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{p}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def pair(sim: Any, tmp_path: Path, prefix: str, **changes: Any) -> tuple[LiveGateway, LiveGateway]:
    shared = SharedSettings(
        health="redis", experiments="redis", redis_url=REDIS_URL, prefix=prefix, sync_interval=0.2
    )
    gws = []
    for name in ("a", "b"):
        cfg = gateway_config(sim.url, tmp_path / name, aliases={"chain": CHAIN}, **changes)
        gws.append(await start_gateway(dataclasses.replace(cfg, shared=shared)))
    return gws[0], gws[1]


def health(gw: LiveGateway) -> SharedStats:
    s = gw.app.gateway.stats
    assert isinstance(s, SharedStats)
    return s


async def test_a_429_cooldown_learned_by_one_gateway_routes_the_other_away(
    sim: Any, tmp_path: Path, sim_control: Any, prefix: str
) -> None:
    a, b = await pair(sim, tmp_path, prefix)
    try:
        assert health(b).available("openai/gpt-4o-mini")
        await sim_control.fault(provider="openai", kind="429", count=1, retry_after=30)
        first = raw = await openai_client(a.url + "/v1").chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": "echo:from a"}]
        )
        assert attempts(raw.headers["x-fareway-route"]) == {
            "openai/gpt-4o-mini": "error",
            "groq/llama-3.1-8b-instant": "ok",
        }
        t0 = time.monotonic()
        for _ in range(500):  # pub/sub delivery is asynchronous: wait for it (at most 5 s)
            if not health(b).available("openai/gpt-4o-mini"):
                break
            await asyncio.sleep(0.01)
        print(f"b learned the cooldown {1000 * (time.monotonic() - t0):.1f} ms after a's answer")
        snap = health(b).snapshot("openai/gpt-4o-mini")
        assert not snap.available
        assert snap.reason.startswith("cooling down: retry-after 30s after status 429 (learned by ")
        before = requests_to(await sim_control.stats(), "openai")
        raw = await openai_client(b.url + "/v1").chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": "echo:from b"}]
        )
        assert raw.parse().choices[0].message.content == "from b"
        assert raw.headers["x-fareway-provider"] == "groq"
        assert attempts(raw.headers["x-fareway-route"]) == {
            "openai/gpt-4o-mini": "skipped",
            "groq/llama-3.1-8b-instant": "ok",
        }
        assert requests_to(await sim_control.stats(), "openai") == before, "b must not try openai"
        # the attempt records agree: a tried openai (error) then groq; b skipped openai unsent
        for gw, rid, tried in (
            (a, first.headers["x-request-id"], [("openai", "error"), ("groq", "ok")]),
            (b, raw.headers["x-request-id"], [("openai", "skipped"), ("groq", "ok")]),
        ):
            ledger = gw.app.gateway.accounting.ledger
            assert isinstance(ledger, Ledger)
            await ledger.flush()
            row = next(r for r in await ledger.recent_calls(50) if r.call.request_id == rid)
            assert [(t.provider, t.outcome) for t in row.attempts] == tried
    finally:
        await a.stop()
        await b.stop()


def expected_arm(experiment: str, unit: str, split: float) -> str:
    """The documented assignment (fareway.experiments.assign), computed here: BLAKE2b-64 of the
    unit keyed by the experiment's name with the person ``arm``, as a fraction of 2**64."""
    h = hashlib.blake2b(unit.encode(), digest_size=8, key=experiment.encode(), person=b"arm")
    return "challenger" if int.from_bytes(h.digest(), "big") / 2**64 < split else "control"


async def test_an_experiment_subject_gets_the_same_arm_on_both_gateways(
    sim: Any, tmp_path: Path, prefix: str
) -> None:
    name = f"ab-{uuid.uuid4().hex[:6]}"
    exp = parse(
        name,
        {
            "model": "support",
            "mode": "split",
            "split": 0.5,
            "control": CONTROL,
            "challenger": CHALLENGER,
            "judge": "anthropic/claude-sonnet-4-5",
            "sample": 0.0,
        },
    )
    a, b = await pair(sim, tmp_path, prefix, experiments={name: exp})
    users = [f"user-{i}" for i in range(30)]
    model_of = {"control": CONTROL.split("/", 1)[1], "challenger": CHALLENGER.split("/", 1)[1]}
    try:
        seen: dict[str, set[str]] = {}
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        async with aiohttp.ClientSession() as s:
            for round_ in range(4):  # each user twice on each gateway
                for i, user in enumerate(users):
                    gw = (a, b)[(i + round_) % 2]
                    body = {"model": "support", "user": user, "messages": [{"role": "user", "content": "hi"}]}
                    async with s.post(gw.url + "/v1/chat/completions", headers=headers, json=body) as r:
                        assert r.status == 200, await r.text()
                        seen.setdefault(user, set()).add(r.headers["x-fareway-model"])
        for user in users:
            assert seen[user] == {model_of[expected_arm(name, "user:" + user, 0.5)]}, user
        challengers = sum(1 for u in users if expected_arm(name, "user:" + u, 0.5) == "challenger")
        assert 0 < challengers < len(users)
        # the counts of both gateways add up, on both
        managers = [gw.app.gateway.parts["experiments"] for gw in (a, b)]
        assert all(isinstance(m, ExperimentManager) for m in managers)
        for m in managers:
            await m.share()
        await managers[0].share()  # a takes back b's counts too
        for m in managers:
            counters = m.experiments[name].counters
            assert counters["calls_control"] + counters["calls_challenger"] == 4 * len(users)
            assert counters["calls_challenger"] == 4 * challengers
            assert not any("different definition" in w for w in m.experiments[name].warnings)
    finally:
        await a.stop()
        await b.stop()


async def test_the_judge_budget_holds_across_both_gateways(sim: Any, tmp_path: Path, prefix: str) -> None:
    """Judge and shadow spend is counted together: two gateways stop at ONE budget, not one each."""
    name = f"budget-{uuid.uuid4().hex[:6]}"
    budget = Decimal("0.004")
    exp = parse(
        name,
        {
            "model": "support",
            "control": CONTROL,
            "challenger": CHALLENGER,
            "judge": "anthropic/claude-sonnet-4-5",
            "sample": 1.0,
            "max_concurrent": 1,
            "judge_budget_usd": float(budget),
        },
    )
    a, b = await pair(sim, tmp_path, prefix, experiments={name: exp})
    managers = [gw.app.gateway.parts["experiments"] for gw in (a, b)]
    assert all(isinstance(m, ExperimentManager) for m in managers)
    try:
        for i in range(16):
            gw, m = ((a, managers[0]), (b, managers[1]))[i % 2]
            await openai_client(gw.url + "/v1").chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"question {i}"}]
            )
            await m.drain()  # the pair judged, its spend added to Redis
            for other in managers:
                await other.share()  # both take back the totals
        costs: list[Decimal] = []
        for gw in (a, b):
            ledger = gw.app.gateway.accounting.ledger
            assert isinstance(ledger, Ledger)
            await ledger.flush()
            costs += [
                c.call.cost
                for c in await ledger.recent_calls(500)
                if c.call.key_id == f"experiment:{name}" and c.call.cost is not None
            ]
        spent = sum(costs, Decimal(0))
        runs = [m.experiments[name] for m in managers]
        print(f"budget {budget}: spent {spent} in {len(costs)} background calls, biggest {max(costs)}")
        assert runs[0].spend == runs[1].spend == spent  # both see every gateway's spend
        assert spent <= budget + max(costs)  # one budget for both (at most one call past it)
        over = runs[0].counters["over_budget"]
        assert over >= 1 and over == runs[1].counters["over_budget"]
    finally:
        await a.stop()
        await b.stop()


async def test_gateways_running_different_definitions_of_an_experiment_are_warned(
    sim: Any, tmp_path: Path, prefix: str
) -> None:
    name = f"ab-{uuid.uuid4().hex[:6]}"
    table = {
        "model": "support",
        "mode": "split",
        "control": CONTROL,
        "challenger": CHALLENGER,
        "judge": "anthropic/claude-sonnet-4-5",
        "sample": 0.0,
    }
    shared = SharedSettings(experiments="redis", redis_url=REDIS_URL, prefix=prefix)
    gws = []
    for gw_name, split in (("a", 0.5), ("b", 0.2)):  # b's config says another split
        exp = parse(name, {**table, "split": split})
        cfg = gateway_config(sim.url, tmp_path / gw_name, experiments={name: exp})
        gws.append(await start_gateway(dataclasses.replace(cfg, shared=shared)))
    try:
        managers = [gw.app.gateway.parts["experiments"] for gw in gws]
        assert all(isinstance(m, ExperimentManager) for m in managers)
        for m in (*managers, managers[0]):
            await m.share()
        for gw, m in zip(gws, managers, strict=True):
            other = managers[1 - managers.index(m)]
            async with (
                aiohttp.ClientSession() as s,
                s.get(
                    f"{gw.url}/v1/experiments/{name}", headers={"authorization": f"Bearer {MASTER_KEY}"}
                ) as r,
            ):
                body = await r.json()
            warned = [w for w in body["warnings"] if "different definition" in w]
            assert len(warned) == 1 and other.counters.instance in warned[0], body["warnings"]
    finally:
        for gw in gws:
            await gw.stop()
