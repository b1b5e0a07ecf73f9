"""A/B experiments end to end: a live gateway over a simulator whose models sign their answers and
whose judge models have a set taste (sim/judge.py), with the official SDKs as callers.

What the caller sees is compared with a call of the control's own model name (not under the
experiment): the simulator's answers depend only on the conversation, so an experiment that
changed anything would show.
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
import orjson
import pytest
from click.testing import CliRunner

from fareway.cli import main as cli_main
from fareway.config import Timeouts
from fareway.experiments.manager import ExperimentManager
from fareway.experiments.settings import parse
from fareway.ledger.queries import LoggedCall
from fareway.ledger.writer import Ledger
from fareway.sim.server import SimConfig, start_sim
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

CONTROL = "openai/gpt-4o"
CHALLENGER = "groq/llama-3.3-70b-versatile"
JUDGE = "anthropic/claude-sonnet-4-5"  # prefers the challenger 70 %, 10 % position bias
FIRST_JUDGE = "anthropic/claude-haiku-4-5"  # always names the first answer
PROSE_JUDGE = "gemini/gemini-2.5-flash"  # never answers the verdict schema
H = {"authorization": f"Bearer {MASTER_KEY}"}

SIM = {
    "providers": {
        "openai": {"models": {"gpt-4o": {"signature": "[control]"}}},
        "groq": {"models": {"llama-3.3-70b-versatile": {"signature": "[challenger]"}}},
    },
    "judges": {
        "claude-sonnet-4-5": {
            "prefer": "[challenger]",
            "over": "[control]",
            "preference": 0.7,
            "position_bias": 0.1,
        },
        "claude-haiku-4-5": {"prefer": "[challenger]", "over": "[control]", "position_bias": 1.0},
        "gemini-2.5-flash": {"unparseable": 1.0},
    },
}


@pytest.fixture(scope="module")
async def xsim() -> AsyncIterator[Any]:
    handle = await start_sim("127.0.0.1", 0, SimConfig.from_dict(SIM))
    yield handle
    await handle.stop()


def experiment(name: str = "bot", **table: Any) -> Any:
    base = {"model": "support", "control": CONTROL, "challenger": CHALLENGER, "judge": JUDGE, "sample": 1.0}
    return parse(name, {**base, **table})


async def live(xsim: Any, state: Path, *exps: Any, **changes: Any) -> LiveGateway:
    cfg = gateway_config(xsim.url, state, experiments={e.name: e for e in exps}, **changes)
    return await start_gateway(cfg)


def manager(gw: LiveGateway) -> ExperimentManager:
    m = gw.app.gateway.parts["experiments"]
    assert isinstance(m, ExperimentManager)
    return m


async def settle(gw: LiveGateway) -> None:
    """Every pair finished and the state and the ledger written."""
    await manager(gw).drain()
    ledger = gw.app.gateway.accounting.ledger
    assert isinstance(ledger, Ledger)
    await ledger.flush()


async def ledger_calls(gw: LiveGateway, n: int = 500) -> dict[str, LoggedCall]:
    ledger = gw.app.gateway.accounting.ledger
    assert isinstance(ledger, Ledger)
    return {c.call.request_id: c for c in await ledger.recent_calls(n)}


async def get(gw: LiveGateway, path: str, key: str = MASTER_KEY) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.url + path, headers={"authorization": f"Bearer {key}"}) as r,
    ):
        return r.status, await r.json()


async def post(gw: LiveGateway, path: str, body: Any = None, key: str = MASTER_KEY) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        kw: dict[str, Any] = {"headers": {"authorization": f"Bearer {key}"}}
        if body is not None:
            kw["data"] = orjson.dumps(body)
        async with s.post(gw.url + path, **kw) as r:
            return r.status, await r.json()


async def fault(xsim: Any, **spec: Any) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{xsim.url}/_sim/faults", json=spec) as r:
        assert r.status == 200, await r.text()


async def clear_faults(xsim: Any) -> None:
    async with aiohttp.ClientSession() as s, s.delete(f"{xsim.url}/_sim/faults") as r:
        assert r.status == 200


# ------------------------------------------------------------------------ shadow mode


async def test_shadow_judges_in_both_orders_and_never_touches_the_callers_answer(
    xsim: Any, tmp_path: Path
) -> None:
    gw = await live(xsim, tmp_path, experiment())
    try:
        client = openai_client(gw.url + "/v1")
        ids: list[str] = []
        for i in range(8):
            msgs = [{"role": "user", "content": f"shadow question {i}"}]
            raw = await client.chat.completions.with_raw_response.create(model="support", messages=msgs)  # type: ignore[arg-type]
            direct = await client.chat.completions.with_raw_response.create(model=CONTROL, messages=msgs)  # type: ignore[arg-type]
            got, want = raw.parse(), direct.parse()
            assert got.choices[0].message.content == want.choices[0].message.content
            assert got.choices[0].message.content.startswith("[control] ")
            assert raw.headers["x-fareway-model"] == "gpt-4o"
            # the caller pays for its own call only: the same cost as the control's own call
            assert raw.headers["x-fareway-cost-usd"] == direct.headers["x-fareway-cost-usd"]
            ids.append(raw.headers["x-request-id"])
        stream = await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "a streamed one"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text.startswith("[control] ")
        await settle(gw)

        status, body = await get(gw, "/v1/experiments/bot")
        assert status == 200
        p = body["pairs"]
        assert p["judged"] == 9 and p["wins"] + p["ties"] + p["losses"] == 9
        assert p["unparseable"] == 0 and p["errors"] == 0
        assert body["calls"] == {"control": 9, "challenger": 0, "sampled": 9, "dropped": 0, "over_budget": 0}
        assert 0 <= body["interval"]["lower"] <= body["win_rate"] <= body["interval"]["upper"] <= 1
        assert body["decision"]["code"] in ("keep_collecting", "challenger_not_worse", "control_better")
        assert len(body["series"]) == 9 and body["series"][-1]["pairs"] == 9
        v = body["variants"]
        assert v["control"]["calls"] == 9 and v["control"]["background_calls"] == 0
        assert v["challenger"]["calls"] == 9 and v["challenger"]["background_calls"] == 9
        assert v["judge"]["calls"] == 18
        for k in ("control", "challenger", "judge"):
            assert v[k]["latency_p50_ms"] is not None and v[k]["ttft_p95_ms"] is not None
            assert v[k]["error_rate"] == 0.0 and Decimal(v[k]["cost_per_call_usd"]) > 0
        assert body["warnings"] == []  # a Claude judge for a GPT and a Llama

        rows = await ledger_calls(gw)
        spend = Decimal(0)
        for rid in ids:
            caller = rows[rid].call
            assert (caller.experiment, caller.experiment_role, caller.key_id) == ("bot", "control", "master")
            shadow = rows[rid + ".shadow"].call
            assert (shadow.experiment, shadow.experiment_role) == ("bot", "shadow-challenger")
            assert shadow.key_id == "experiment:bot" and shadow.upstream_model == "llama-3.3-70b-versatile"
            for j in ("1", "2"):
                judge = rows[f"{rid}.judge{j}"]
                assert (judge.call.experiment_role, judge.call.key_id) == ("judge", "experiment:bot")
                assert [a.role for a in judge.attempts] == ["judge"]
                assert judge.call.upstream_model == "claude-sonnet-4-5"
        for c in rows.values():
            if c.call.key_id == "experiment:bot":
                assert c.call.cost is not None
                spend += c.call.cost
        # the experiment's spend is exactly its own ledger rows, nothing of the callers'
        assert Decimal(body["spend"]["judge_and_shadow_usd"]) == spend

        status, listing = await get(gw, "/v1/experiments")
        assert status == 200 and [e["name"] for e in listing["data"]] == ["bot"]
        assert listing["data"][0]["pairs"] == 9
    finally:
        await gw.stop()


async def test_an_anthropic_caller_streamed_is_judged_too(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment())
    try:
        client = anthropic_client(gw.url)
        async with client.messages.stream(
            model="support", max_tokens=200, messages=[{"role": "user", "content": "hello from anthropic"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text.startswith("[control] ")
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["pairs"]["judged"] == 1
    finally:
        await gw.stop()


# ------------------------------------------------------------------------- split mode


async def test_split_assignment_is_sticky_by_user_over_a_thousand_calls(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment(mode="split", split=0.5, sample=0.0))
    try:
        seen: dict[str, set[str]] = {}

        async def one(s: aiohttp.ClientSession, i: int) -> None:
            user = f"user-{i % 40}"
            body = {"model": "support", "user": user, "messages": [{"role": "user", "content": f"q{i}"}]}
            async with s.post(gw.url + "/v1/chat/completions", headers=H, json=body) as r:
                assert r.status == 200
                data = await r.json()
                seen.setdefault(user, set()).add(r.headers["x-fareway-model"])
                sig = data["choices"][0]["message"]["content"].split(" ")[0]
                assert (
                    sig
                    == {"gpt-4o": "[control]", "llama-3.3-70b-versatile": "[challenger]"}[
                        r.headers["x-fareway-model"]
                    ]
                )

        async with aiohttp.ClientSession() as s:
            for start in range(0, 1000, 25):
                await asyncio.gather(*(one(s, i) for i in range(start, start + 25)))
        assert all(len(models) == 1 for models in seen.values()), seen
        challengers = sum(1 for m in seen.values() if m == {"llama-3.3-70b-versatile"})
        assert 8 <= challengers <= 32  # about half of 40 users
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["calls"]["control"] + body["calls"]["challenger"] == 1000
        assert body["calls"]["challenger"] == 25 * challengers  # each user made 25 calls
    finally:
        await gw.stop()


async def test_split_by_header_and_by_key_and_judged_from_either_side(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment(mode="split", sticky="header", split=0.5))
    try:
        arms: dict[str, set[str]] = {}
        async with aiohttp.ClientSession() as s:
            for i in range(60):
                key = f"tenant-{i % 6}"
                body = {"model": "support", "messages": [{"role": "user", "content": f"h{i}"}]}
                hdrs = {**H, "x-fareway-ab-key": key}
                async with s.post(gw.url + "/v1/chat/completions", headers=hdrs, json=body) as r:
                    assert r.status == 200
                    arms.setdefault(key, set()).add(r.headers["x-fareway-model"])
        assert all(len(v) == 1 for v in arms.values())
        assert len({next(iter(v)) for v in arms.values()}) == 2  # both arms in use
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["pairs"]["judged"] == 60
        rows = await ledger_calls(gw, 1000)
        roles = {c.call.experiment_role for c in rows.values()}
        # the challenger served some callers (its shadow is the control) and the control others
        assert {"control", "challenger", "shadow-control", "shadow-challenger", "judge"} <= roles
    finally:
        await gw.stop()


# ------------------------------------------------------------- the judge misbehaving


async def test_a_stalled_judge_never_delays_or_fails_the_caller_and_shutdown_does_not_wait(
    xsim: Any, tmp_path: Path
) -> None:
    slow = Timeouts(connect=2.0, first_token=120.0, idle=120.0, total=300.0)
    gw = await live(xsim, tmp_path, experiment(max_concurrent=2), timeouts=slow)
    try:
        client = openai_client(gw.url + "/v1")
        # one pair judged normally first: until a pair's cost is known pairs run one at a time
        await client.chat.completions.create(model="support", messages=[{"role": "user", "content": "first"}])
        await settle(gw)
        await fault(xsim, provider="anthropic", model="claude-sonnet-4-5", kind="stall", rate=1.0)
        for i in range(6):
            msgs = [{"role": "user", "content": f"stall {i}"}]
            got = await client.chat.completions.create(model="support", messages=msgs)  # type: ignore[arg-type]
            want = await client.chat.completions.create(model=CONTROL, messages=msgs)  # type: ignore[arg-type]
            assert got.choices[0].message.content == want.choices[0].message.content
        # every caller was answered while the judge calls of two pairs hang (they would hang for
        # 120 s): the caller never waited on them; beyond max_concurrent = 2 pairs the sampled
        # calls were dropped, and counted
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["pairs"]["in_flight"] == 2 and body["calls"]["dropped"] == 4
        assert body["pairs"]["judged"] == 1
    finally:
        await gw.stop()  # cancels the stalled pairs instead of waiting for them
        await clear_faults(xsim)
    # the cancelled judge calls were still accounted, as the experiment's
    ledger = Ledger.open(None, str(tmp_path / "fareway.db"), writer="thread")
    await ledger.start()
    try:
        judged = [c for c in await ledger.recent_calls(100) if c.call.experiment_role == "judge"]
    finally:
        await ledger.close()
    assert sorted(c.call.outcome for c in judged) == ["cancelled"] * 4 + ["ok"] * 2
    assert {c.call.key_id for c in judged} == {"experiment:bot"}


async def test_a_failing_judge_or_a_slow_pair_is_an_error_pair_not_a_verdict(
    xsim: Any, tmp_path: Path
) -> None:
    slow = Timeouts(connect=2.0, first_token=120.0, idle=120.0, total=300.0)
    gw = await live(xsim, tmp_path, experiment(timeout=0.5), timeouts=slow)
    try:
        client = openai_client(gw.url + "/v1")
        await fault(xsim, provider="anthropic", model="claude-sonnet-4-5", kind="500", rate=1.0)
        r = await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "x1"}]
        )
        assert r.choices[0].message.content.startswith("[control]")
        await settle(gw)
        await clear_faults(xsim)
        await fault(xsim, provider="anthropic", model="claude-sonnet-4-5", kind="stall", rate=1.0)
        r = await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "x2"}]
        )
        assert r.choices[0].message.content.startswith("[control]")
        await settle(gw)  # the pair ends at its 0.5 s timeout
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["pairs"]["errors"] == 2 and body["pairs"]["judged"] == 0
        assert body["decision"]["code"] == "keep_collecting"
        pairs = await gw.app.gateway.parts["experiments"].store.pairs("bot")
        assert [p.outcome for p in pairs] == ["error", "error"]
        assert "judge's call failed" in (pairs[0].note or "") and "timeout" in (pairs[1].note or "")
    finally:
        await gw.stop()
        await clear_faults(xsim)


async def test_an_unparseable_verdict_is_recorded_as_such(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment(judge=PROSE_JUDGE))
    try:
        client = openai_client(gw.url + "/v1")
        for i in range(3):
            await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"u{i}"}]
            )
            # each pair ends before the next call: until a pair's cost is known, a call
            # made while one runs is not paired (experiments.manager: one at a time)
            await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["pairs"]["unparseable"] == 3 and body["pairs"]["judged"] == 0
        assert body["win_rate"] is None
        pairs = await manager(gw).store.pairs("bot")  # type: ignore[union-attr]
        assert {(p.verdict_1, p.verdict_2, p.outcome) for p in pairs} == {
            ("unparseable", "unparseable", "unparseable")
        }
    finally:
        await gw.stop()


async def test_a_judge_that_always_names_the_first_answer_gives_ties_and_no_winner(
    xsim: Any, tmp_path: Path
) -> None:
    gw = await live(xsim, tmp_path, experiment(judge=FIRST_JUDGE))
    try:
        client = openai_client(gw.url + "/v1")
        for i in range(12):
            await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"f{i}"}]
            )
            # each pair ends before the next call: until a pair's cost is known, a call
            # made while one runs is not paired (experiments.manager: one at a time)
            await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert (body["pairs"]["ties"], body["pairs"]["wins"], body["pairs"]["losses"]) == (12, 0, 0)
        assert body["pairs"]["order_inconsistency_rate"] == 1.0
        assert body["decision"]["winner"] is None and "contradicts itself" in body["decision"]["text"]
        # a Claude judge for a Claude-free pair, but the same maker as itself is not a variant here
        assert body["warnings"] == []
    finally:
        await gw.stop()


# ------------------------------------------------------------------------------ budget


async def test_judge_and_shadow_spend_stop_at_the_cap(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment(judge_budget_usd=0.004, max_concurrent=1))
    try:
        client = openai_client(gw.url + "/v1")
        for i in range(12):
            await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"b{i}"}]
            )
            await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        judged, over = body["pairs"]["judged"], body["calls"]["over_budget"]
        assert judged >= 1 and over >= 1 and judged + over == 12
        rows = await ledger_calls(gw)
        background = [c.call for c in rows.values() if c.call.key_id == "experiment:bot"]
        spend = sum((c.cost for c in background if c.cost is not None), Decimal(0))
        assert Decimal(body["spend"]["judge_and_shadow_usd"]) == spend
        biggest = max(c.cost for c in background if c.cost is not None)
        assert spend <= Decimal("0.004") + biggest  # stops at the cap (at most one call past it)
        assert sum(1 for c in background if c.experiment_role == "judge") == 2 * judged
        assert "judge_budget_usd is spent" in " ".join(body["notes"])
        # and it stays stopped
        await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "one more"}]
        )
        await settle(gw)
        _, after = await get(gw, "/v1/experiments/bot")
        assert after["pairs"]["judged"] == judged and after["spend"] == body["spend"]
    finally:
        await gw.stop()


async def test_pairs_judged_at_once_cannot_pass_the_cap_together(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment(judge_budget_usd=0.004, max_concurrent=4))
    try:
        client = openai_client(gw.url + "/v1")
        for burst in range(4):
            await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="support", messages=[{"role": "user", "content": f"burst {burst} call {i}"}]
                    )
                    for i in range(6)
                )
            )
            await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        calls = body["calls"]
        assert calls["sampled"] == 24 and body["pairs"]["judged"] >= 2
        assert body["pairs"]["judged"] + calls["dropped"] + calls["over_budget"] == 24
        # pair costs differ by a token or two between prompts: within a few percent of the cap
        assert Decimal(body["spend"]["judge_and_shadow_usd"]) <= Decimal("0.004") * Decimal("1.05")
    finally:
        await gw.stop()


# ------------------------------------------------------- control, promotion, persistence


async def test_pause_resume_stop_promote_and_promotion_survives_a_restart(xsim: Any, tmp_path: Path) -> None:
    exps = (experiment(), experiment("other", model="other-model", sample=0.0))
    gw = await live(xsim, tmp_path, *exps)
    try:
        client = openai_client(gw.url + "/v1")
        status, err = await post(gw, "/v1/experiments/bot/promote")
        assert (
            status == 409
            and err["error"]["code"] == "conflict"
            and "no decision yet" in err["error"]["message"]
        )
        status, err = await post(gw, "/v1/experiments/nope/pause")
        assert status == 404 and err["error"]["type"] == "not_found_error"
        status, err = await post(gw, "/v1/experiments/bot/explode")
        assert status == 404

        status, body = await post(gw, "/v1/experiments/bot/pause")
        assert status == 200 and body["status"] == "paused"
        await client.chat.completions.create(model="support", messages=[{"role": "user", "content": "p"}])
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["calls"]["sampled"] == 0 and body["calls"]["control"] == 0  # paused: not part of it
        status, body = await post(gw, "/v1/experiments/bot/resume")
        assert status == 200 and body["status"] == "running"
        await client.chat.completions.create(model="support", messages=[{"role": "user", "content": "r"}])
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["calls"]["sampled"] == 1 and body["pairs"]["judged"] == 1

        status, body = await post(gw, "/v1/experiments/bot/promote", {"to": "challenger"})
        assert status == 200 and body["status"] == "promoted" and body["promoted_to"] == CHALLENGER
        raw = await client.chat.completions.with_raw_response.create(
            model="support", messages=[{"role": "user", "content": "after"}]
        )
        assert raw.headers["x-fareway-model"] == "llama-3.3-70b-versatile"
        status, err = await post(gw, "/v1/experiments/bot/resume")
        assert status == 409
        status, body = await post(gw, "/v1/experiments/other/stop")
        assert status == 200 and body["status"] == "stopped"
        raw = await client.chat.completions.with_raw_response.create(
            model="other-model", messages=[{"role": "user", "content": "stopped"}]
        )
        assert raw.headers["x-fareway-model"] == "gpt-4o"  # stopped: callers stay on the control
    finally:
        await gw.stop()

    gw = await live(xsim, tmp_path, *exps)
    try:
        client = openai_client(gw.url + "/v1")
        raw = await client.chat.completions.with_raw_response.create(
            model="support", messages=[{"role": "user", "content": "restarted"}]
        )
        assert raw.headers["x-fareway-model"] == "llama-3.3-70b-versatile"
        _, body = await get(gw, "/v1/experiments/bot")
        assert body["status"] == "promoted" and body["pairs"]["judged"] == 1  # pairs reloaded
        assert body["calls"]["sampled"] == 1
    finally:
        await gw.stop()


async def test_the_admin_api_creates_experiments_and_refuses_bad_ones(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path)
    try:
        status, listing = await get(gw, "/v1/experiments")
        assert status == 200 and listing["data"] == []
        spec = {
            "name": "made",
            "model": "made-model",
            "control": CONTROL,
            "challenger": CHALLENGER,
            "judge": JUDGE,
            "sample": 1.0,
        }
        status, body = await post(gw, "/v1/experiments", spec)
        assert status == 201 and body["name"] == "made" and body["source"] == "api"
        status, err = await post(gw, "/v1/experiments", spec)
        assert status == 409
        status, err = await post(gw, "/v1/experiments", {**spec, "name": "x", "model": "m2", "splt": 0.3})
        assert status == 400 and "splt" in err["error"]["message"]
        status, err = await post(gw, "/v1/experiments", {**spec, "name": "y", "model": "m3", "sample": "all"})
        assert status == 400 and "sample" in err["error"]["message"]
        status, err = await post(
            gw, "/v1/experiments", {**spec, "name": "z", "model": "m4", "control": "nowhere/x"}
        )
        assert status == 400 and err["error"]["param"] == "control"
        status, err = await post(gw, "/v1/experiments", {**spec, "name": "w"})  # same model as "made"
        assert status == 400 and "both on the model name" in err["error"]["message"]
        # a judge of the control's maker is allowed, with a warning (self-preference)
        status, body = await post(
            gw, "/v1/experiments", {**spec, "name": "selfish", "model": "m5", "judge": "openai/gpt-4o-mini"}
        )
        assert status == 201 and len(body["warnings"]) == 1
        assert (
            "openai/gpt-4o-mini and the control openai/gpt-4o are both OpenAI models" in body["warnings"][0]
        )

        client = openai_client(gw.url + "/v1")
        await client.chat.completions.create(model="made-model", messages=[{"role": "user", "content": "hi"}])
        await settle(gw)
        _, body = await get(gw, "/v1/experiments/made")
        assert body["pairs"]["judged"] == 1

        # an inference key may neither read nor change experiments
        async with aiohttp.ClientSession() as s:
            keys = gw.app.gateway.keys
            secret, _ = keys.create("inference-user", "inference")
            async with s.get(gw.url + "/v1/experiments", headers={"authorization": f"Bearer {secret}"}) as r:
                assert r.status == 403
    finally:
        await gw.stop()
    gw = await live(xsim, tmp_path)
    try:
        _, listing = await get(gw, "/v1/experiments")
        assert [e["name"] for e in listing["data"]] == [
            "made",
            "selfish",
        ]  # API experiments survive a restart
    finally:
        await gw.stop()


async def test_the_cli_lists_shows_and_controls_a_running_gateways_experiment(
    xsim: Any, tmp_path: Path
) -> None:
    gw = await live(xsim, tmp_path, experiment())
    conf = tmp_path / "fareway.toml"
    conf.write_text(
        f'[server]\nstate_dir = "{tmp_path}"\n\n[experiments.bot]\nmodel = "support"\ncontrol = "{CONTROL}"\n'
        f'challenger = "{CHALLENGER}"\njudge = "{JUDGE}"\nsample = 1.0\n'
    )
    runner = CliRunner()

    async def cli(*args: str) -> Any:
        result = await asyncio.to_thread(runner.invoke, cli_main, [*args, "--config", str(conf)])
        assert result.exit_code == 0, result.output
        return result.output

    try:
        client = openai_client(gw.url + "/v1")
        for i in range(4):
            await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"c{i}"}]
            )
            # each pair ends before the next call: until a pair's cost is known, a call
            # made while one runs is not paired (experiments.manager: one at a time)
            await settle(gw)
        shown = orjson.loads(await cli("experiments", "show", "bot", "--json"))
        _, api = await get(gw, "/v1/experiments/bot")
        for k in ("pairs", "win_rate", "interval", "decision", "spend"):
            assert shown[k] == api[k], k
        assert shown["variants"]["control"]["calls"] == 4
        assert "experiment bot (shadow, running)" in await cli("experiments", "show", "bot")
        listed = orjson.loads(await cli("experiments", "list", "--json"))
        assert listed["data"][0]["pairs"] == 4
        assert "paused" in await cli("experiments", "pause", "bot")
        await manager(gw).refresh()  # what the gateway's once-a-second tick does
        _, api = await get(gw, "/v1/experiments/bot")
        assert api["status"] == "paused"
        result = await asyncio.to_thread(
            runner.invoke, cli_main, ["experiments", "show", "nope", "--config", str(conf)]
        )
        assert result.exit_code != 0 and "no experiment named" in result.output
    finally:
        await gw.stop()


# --------------------------------------------------------------------------- dashboard


async def test_the_dashboard_page_shows_the_interval_over_time(xsim: Any, tmp_path: Path) -> None:
    gw = await live(xsim, tmp_path, experiment())
    try:
        client = openai_client(gw.url + "/v1")
        for i in range(3):
            await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": f"d{i}"}]
            )
            # each pair ends before the next call: until a pair's cost is known, a call
            # made while one runs is not paired (experiments.manager: one at a time)
            await settle(gw)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(gw.url + "/ui/api/experiments") as r:
                assert r.status == 401
            async with s.post(gw.url + "/ui/login", data={"key": MASTER_KEY}, allow_redirects=False) as r:
                assert r.status == 303
            async with s.get(gw.url + "/ui/experiments") as r:
                page = await r.text()
                assert r.status == 200 and "/ui/static/experiments.js" in page
                assert "script-src 'self'" in r.headers["content-security-policy"]
            async with s.get(gw.url + "/ui/static/experiments.js") as r:
                assert r.status == 200 and "series" in await r.text()
            async with s.get(gw.url + "/ui/api/experiments/bot") as r:
                data = await r.json()
                assert [p["pairs"] for p in data["series"]] == [1, 2, 3]
                assert all(p["lower"] <= p["win_rate"] <= p["upper"] for p in data["series"])
    finally:
        await gw.stop()


# ---------------------------------------------------------------------------- Postgres

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
async def test_experiment_state_on_postgres(xsim: Any, tmp_path: Path) -> None:
    import asyncpg

    schema = f"fw_exp_{uuid.uuid4().hex[:12]}"
    exp = experiment()
    try:
        gw = await live(xsim, tmp_path, exp, ledger_url=PG_URL, ledger_schema=schema)
        try:
            client = openai_client(gw.url + "/v1")
            for i in range(5):
                await client.chat.completions.create(
                    model="support", messages=[{"role": "user", "content": f"pg{i}"}]
                )
                # each pair ends before the next call: until a pair's cost is known, a call
                # made while one runs is not paired (experiments.manager: one at a time)
                await settle(gw)
            _, body = await get(gw, "/v1/experiments/bot")
            assert body["pairs"]["judged"] == 5
            assert (
                body["variants"]["judge"]["calls"] == 10
                and body["variants"]["control"]["latency_p95_ms"] is not None
            )
            await post(gw, "/v1/experiments/bot/pause")
        finally:
            await gw.stop()
        gw = await live(xsim, tmp_path / "again", exp, ledger_url=PG_URL, ledger_schema=schema)
        try:
            _, body = await get(gw, "/v1/experiments/bot")
            assert body["pairs"]["judged"] == 5 and body["status"] == "paused"
            assert body["calls"]["sampled"] == 5
        finally:
            await gw.stop()
    finally:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def test_experiment_settings_in_the_config(tmp_path: Path) -> None:
    from fareway.config import ConfigError, load_config

    conf = tmp_path / "c.toml"
    conf.write_text(
        '[experiments.support-bot]\nmodel = "support"\nmode = "split"\ncontrol = "openai/gpt-4o"\n'
        'challenger = "groq/llama-3.3-70b-versatile"\nsplit = 0.3\nsticky = "header"\n'
        'judge = "anthropic/claude-sonnet-4-5"\nsample = 0.2\njudge_budget_usd = 5.0\nmargin = 0.05\n'
    )
    e = load_config(conf, env={}).experiments["support-bot"]
    assert (e.mode, e.split, e.sticky, e.sample, e.margin, e.alpha, e.max_concurrent) == (
        "split",
        0.3,
        "header",
        0.2,
        0.05,
        0.05,
        4,
    )
    bad = {
        "splitt = 0.3": 'unknown key "splitt"; did you mean "split"?',
        'split = "half"': "split must be a number",
        "split = 1.5": "split must be at least 0 and at most 1",
        'mode = "ab"': 'mode must be "shadow" or "split"',
        'sticky = "cookie"': "sticky must be",
        "max_concurrent = 0": "max_concurrent must be an integer",
        "alpha = 0": "alpha must be above 0",
        'challenger = "openai/gpt-4o"': "control and challenger are the same model",
    }
    base = 'model = "m"\ncontrol = "openai/gpt-4o"\njudge = "anthropic/claude-sonnet-4-5"\n'
    for line, message in bad.items():
        body = base + ("" if line.startswith("challenger") else 'challenger = "groq/x"\n') + line + "\n"
        conf.write_text("[experiments.e]\n" + body)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(conf, env={})
    conf.write_text('[experiments.e]\nmodel = "m"\ncontrol = "a/b"\n')
    with pytest.raises(ConfigError, match=r"\[experiments.e\] needs challenger"):
        load_config(conf, env={})
    conf.write_text('[experiments."bad name!"]\nmodel = "m"\n')
    with pytest.raises(ConfigError, match="must be 1-64 letters"):
        load_config(conf, env={})
    two = base + 'challenger = "groq/x"\n'
    conf.write_text(f"[experiments.a]\n{two}\n[experiments.b]\n{two}")
    with pytest.raises(ConfigError, match="both on the model name 'm'"):
        load_config(conf, env={})
    assert dataclasses.asdict(e)["name"] == "support-bot"


def test_an_experiment_on_a_model_nothing_serves_stops_start_up(tmp_path: Path) -> None:
    from fareway.server.factory import StartupError, build_app

    cfg = gateway_config(
        "http://127.0.0.1:9", tmp_path, experiments={"e": experiment("e", challenger="nowhere/model")}
    )
    with pytest.raises(StartupError, match=r"\[experiments\]: `challenger`"):
        build_app(cfg)


async def test_experiments_go_on_in_memory_while_their_database_is_down(xsim: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    gw = await live(
        xsim, tmp_path, experiment(), ledger_url=down, ledger_connect_timeout=0.5, ledger_close_timeout=0.5
    )
    try:
        client = openai_client(gw.url + "/v1")
        r = await client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "down"}]
        )
        assert r.choices[0].message.content.startswith("[control]")
        await manager(gw).drain()
        status, body = await get(gw, "/v1/experiments/bot")
        assert status == 200 and body["pairs"]["judged"] == 1
        assert any("per-variant numbers unavailable" in n for n in body["notes"])
        status, err = await post(gw, "/v1/experiments/bot/pause")
        assert status == 503 and err["error"]["code"] == "experiments_unavailable"
    finally:
        await gw.stop()
