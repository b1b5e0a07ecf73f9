"""The call as stages (issue: staged call): one path for model names over HTTP, accounting exactly
once for every way a call ends, and the timeouts of non-streamed calls — through a live gateway
over the simulator, with the official SDKs and raw HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from fareway.config import ProviderConfig
from fareway.errors import RateLimited
from fareway.pipeline.context import CallContext
from fareway.providers.registry import ProviderSpec
from tests.conftest import MASTER_KEY, LiveGateway, anthropic_client, free_port, gateway_config, start_gateway
from tests.test_e2e_ledger import logged
from tests.test_e2e_routing import attempts, oai

ALIASES = {
    "chain": {"strategy": "fallback", "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"]},
    "refused-first": {
        "strategy": "fallback",
        "targets": ["dead/any-model", "groq/llama-3.1-8b-instant"],
    },
    "always-groq": {
        "strategy": "split",
        "targets": ["openai/gpt-4o-mini", "groq/llama-3.1-8b-instant"],
        "weights": [0, 1],
    },
}

# The gpt-oss-120b family as the built-in catalog lists it (provider -> upstream id, max output),
# without DeepInfra (genai-prices has no DeepInfra prices, so the test disables it).
GPT_OSS = {
    "cerebras": ("gpt-oss-120b", 32768),
    "groq": ("openai/gpt-oss-120b", 65536),
    "openrouter": ("openai/gpt-oss-120b", 16384),
}


def _closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    return free_port()


@pytest.fixture
async def sgw(sim: Any, tmp_path: Any) -> AsyncIterator[LiveGateway]:
    cfg = gateway_config(sim.url, tmp_path)
    providers = dict(cfg.providers)
    providers["deepinfra"] = ProviderConfig(providers["deepinfra"].spec, api_key=None)
    providers["dead"] = ProviderConfig(
        ProviderSpec("dead", "openai", f"http://127.0.0.1:{_closed_port()}/v1", builtin=False), api_key="k"
    )
    cfg = dataclasses.replace(cfg, providers=providers, aliases=ALIASES)
    gw = await start_gateway(cfg)
    yield gw
    await gw.stop()


def cheapest_by_genai_prices(output_tokens: int) -> list[str]:
    """The gpt-oss-120b providers that can give ``output_tokens``, cheapest first by genai-prices
    (a short prompt: the output price decides)."""
    costs: list[tuple[Decimal, str]] = []
    for provider, (model, max_out) in GPT_OSS.items():
        if output_tokens > max_out:
            continue
        p = calc_price(GPUsage(input_tokens=20, output_tokens=output_tokens), model, provider_id=provider)
        costs.append((p.total_price, provider))
    return [p for _, p in sorted(costs)]


# ------------------------------------------------------------------ one path for model names


async def test_a_bare_id_goes_to_the_cheapest_provider_for_the_request(sgw: LiveGateway) -> None:
    order = cheapest_by_genai_prices(1000)
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="gpt-oss-120b", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
    )
    assert raw.headers["x-fareway-provider"] == order[0]
    route = raw.headers["x-fareway-route"]
    assert "policy=family" in route
    # the fallbacks behind it are the other providers, cheapest next
    chain = route.split("route=fallback(", 1)[1].split(")", 1)[0].split(",")
    assert [c.split("/", 1)[0] for c in chain] == order


async def test_a_bare_id_skips_a_provider_that_cannot_serve_the_request(sgw: LiveGateway) -> None:
    # 20,000 output tokens: more than OpenRouter's max output for this model (16,384)
    order = cheapest_by_genai_prices(20_000)
    assert "openrouter" not in order
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="gpt-oss-120b", messages=[{"role": "user", "content": "hi"}], max_tokens=20_000
    )
    assert raw.headers["x-fareway-provider"] == order[0]
    assert "openrouter" not in raw.headers["x-fareway-route"]


async def test_auto_with_a_floor_routes_at_that_floor(sgw: LiveGateway) -> None:
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="auto@4", messages=[{"role": "user", "content": "hi"}]
    )
    route = raw.headers["x-fareway-route"]
    assert "policy=auto" in route and "floor=4" in route
    chosen = f"{raw.headers['x-fareway-provider']}/{raw.headers['x-fareway-model']}"
    offer = sgw.app.gateway.resolver.router.catalog.lookup(chosen)[0]
    assert offer.quality >= 4


async def test_auto_over_http_on_the_real_catalog(sgw: LiveGateway) -> None:
    """`auto` picks an offer the catalog has, at the default floor, with fallbacks behind."""
    reply = await oai(sgw).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}]
    )
    route = reply.headers["x-fareway-route"]
    assert "policy=auto" in route and "floor=3" in route and "route=fallback(" in route
    assert reply.parse().choices[0].message.content


@pytest.mark.parametrize("model", ["auto@9", "auto:slow", "no-such-model", "openai/"])
async def test_unknown_names_are_a_clean_404(sgw: LiveGateway, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await oai(sgw).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert "Traceback" not in str(info.value.body)


async def test_a_provider_prefix_passes_any_model_id_through(sgw: LiveGateway) -> None:
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="groq/a-model-the-catalog-does-not-list", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-fareway-provider"] == "groq"
    assert raw.headers["x-fareway-model"] == "a-model-the-catalog-does-not-list"


async def test_models_list_owner_matches_where_a_call_goes(sgw: LiveGateway) -> None:
    models = {m.id: m.owned_by for m in (await oai(sgw).models.list()).data}
    assert models.get("openai/gpt-oss-120b") in (None, "openai")
    for mid in ("groq/openai/gpt-oss-120b", "cerebras/gpt-oss-120b"):
        raw = await oai(sgw).chat.completions.with_raw_response.create(
            model=mid, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-provider"] == models[mid]


# ------------------------------------------------------------------ the route tree over HTTP


async def test_split_with_a_zero_weight_never_takes_that_arm(sgw: LiveGateway) -> None:
    for _ in range(5):
        raw = await oai(sgw).chat.completions.with_raw_response.create(
            model="always-groq", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-provider"] == "groq"
        assert "split(" in raw.headers["x-fareway-route"]


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_falls_back(sgw: LiveGateway, stream: bool) -> None:
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="refused-first", messages=[{"role": "user", "content": "echo:ok"}], stream=stream
    )
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"])["dead/any-model"] == "error"


async def test_a_streamed_call_answered_non_2xx_falls_back(sgw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="500", count=1)
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:second"}], stream=True
    )
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"])["openai/gpt-4o-mini"] == "error"
    text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == "second"


async def test_a_non_streamed_call_to_a_stalled_upstream_falls_back_at_the_first_token_timeout(
    sgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="openai", kind="stall", count=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:after stall"}]
    )
    elapsed = loop.time() - t0
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"])["openai/gpt-4o-mini"] == "error"
    assert raw.parse().choices[0].message.content == "after stall"
    # the first-token timeout of this gateway is 1.5 s, its total timeout 30 s
    assert elapsed < sgw.config.timeouts.total / 2
    row = await logged(sgw, raw.headers["x-request-id"])
    assert "no first token within 1.5s" in row.attempts[0].error


async def test_idle_timeout_after_the_first_token_ends_the_stream_with_an_error(
    sgw: LiveGateway, sim_control: Any
) -> None:
    await sim_control.fault(provider="openai", kind="stall_after_first", count=1)
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "tell me a story"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        async for _ in raw.parse():
            pass
    assert "sent nothing for 1.5s" in str(info.value)
    row = await logged(sgw, raw.headers["x-request-id"])
    assert row.call.outcome == "error" and row.call.stream


async def test_the_total_limit_bounds_a_stream(sim: Any, tmp_path: Any, sim_control: Any) -> None:
    from fareway.config import Timeouts

    cfg = gateway_config(sim.url, tmp_path)
    cfg = dataclasses.replace(cfg, timeouts=Timeouts(connect=2.0, first_token=5.0, idle=5.0, total=0.4))
    gw = await start_gateway(cfg)
    try:
        # the upstream stalls after its first token: the idle timeout (5 s) would not fire in time
        await sim_control.fault(provider="openai", kind="stall_after_first", count=1)
        raw = await oai(gw).chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "a story"}], stream=True
        )
        with pytest.raises(openai.APIError) as info:
            async for _ in raw.parse():
                pass
        assert "total timeout" in str(info.value)
    finally:
        await gw.stop()


# ------------------------------------------------------------------ accounting exactly once


TOOL_HISTORY = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    {"role": "user", "content": "And what should I wear? Please answer at length."},
]


async def _cancel_after(gw: LiveGateway, model: str, lines: int) -> None:
    """Stream a call with tool history and walk away after ``lines`` SSE lines."""
    body = {"model": model, "messages": TOOL_HISTORY, "stream": True, "max_tokens": 300}
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        n = 0
        async for _ in resp.content:
            n += 1
            if n >= lines:
                break
        resp.close()


def _send_and_hang_up(port: int, model: str) -> None:
    """Send a whole request and close the socket before reading anything."""
    body = json.dumps({"model": model, "messages": TOOL_HISTORY, "stream": True}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {MASTER_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + body)


@pytest.mark.parametrize("fareway_protocol", [True, False], ids=["fareway-protocol", "uvicorn-protocol"])
@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "cerebras/llama3.1-8b"])
async def test_a_cancel_at_every_point_of_a_stream_leaves_exactly_one_row(
    sim: Any, tmp_path: Any, sim_control: Any, model: str, fareway_protocol: bool
) -> None:
    """The client going away is told by Fareway's HTTP protocol (server.protocol), or watched by
    a task on another server's protocol: either way, one row per call."""
    gw = await start_gateway(gateway_config(sim.url, tmp_path), fareway_protocol=fareway_protocol)
    provider = model.split("/", 1)[0]
    port = int(gw.url.rsplit(":", 1)[1])
    # Cut while the upstream is still generating (it stalls after its first content chunk, so
    # the attempt has no usage yet and its tokens must be estimated from a history that holds a
    # tool call and its result), then at every line of a complete stream, then before any byte.
    stalled_cuts = [1, 2, 3, 4]
    cut_points = [1, 2, 3, 4, 6, 8, 12, 20]
    try:
        for lines in stalled_cuts:
            await sim_control.fault(provider=provider, kind="stall_after_first", count=1)
            await _cancel_after(gw, model, lines)
        await sim_control.clear()
        for lines in cut_points:
            await _cancel_after(gw, model, lines)
        for _ in range(3):
            await asyncio.to_thread(_send_and_hang_up, port, model)
    finally:
        await gw.stop()  # drains the ledger
    expected = len(stalled_cuts) + len(cut_points) + 3
    db = sqlite3.connect(gw.config.ledger_file)
    try:
        rows = db.execute("SELECT request_id, outcome, status FROM calls").fetchall()
    finally:
        db.close()
    assert len(rows) == expected, rows
    assert len({r[0] for r in rows}) == expected
    assert {r[1] for r in rows} <= {"cancelled", "ok"}
    assert sum(1 for r in rows if r[1] == "cancelled") >= len(stalled_cuts)


async def test_a_refusing_admission_answers_in_the_callers_dialect_and_is_recorded(
    sgw: LiveGateway,
) -> None:
    """The admit stage's seam: a check that refuses gets the caller's error shape and a row; a
    check that admits is settled exactly once with the finished call."""
    settled: list[tuple[str, str]] = []

    class OnlyShort:
        async def admit(self, ctx: CallContext) -> None:
            if len(ctx.body) > 400:
                raise RateLimited("too long for this test key", retry_after=3)

        def settle(self, ctx: CallContext) -> None:
            settled.append((ctx.request_id, ctx.outcome))

    gw = sgw.app.gateway
    gw.admit.admissions.append(OnlyShort())
    try:
        with pytest.raises(openai.RateLimitError) as info:
            await oai(sgw).chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x" * 500}]
            )
        assert info.value.response.headers["retry-after"] == "3"
        refused = await logged(sgw, info.value.response.headers["x-request-id"])
        assert refused.call.status == 429 and refused.call.attempts == 0
        raw = await oai(sgw).chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "short"}]
        )
        assert settled == [(raw.headers["x-request-id"], "ok")]
    finally:
        gw.admit.admissions.clear()


# ------------------------------------------------------------------ model ids as clients write them


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [
        # Claude Code's default ids (dated snapshots, optionally with its 1M-context marker)
        ("claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929[1m]", "anthropic", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "anthropic", "claude-haiku-4-5"),
        ("anthropic/claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5-20250929"),
        ("anthropic/claude-sonnet-4-5-20250929[1m]", "anthropic", "claude-sonnet-4-5-20250929"),
        ("gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),
        ("claude-sonnet-4-5-latest", "anthropic", "claude-sonnet-4-5"),
    ],
)
async def test_dated_and_marked_ids_route(sgw: LiveGateway, model: str, provider: str, upstream: str) -> None:
    client = anthropic_client(sgw.url)
    raw = await client.messages.with_raw_response.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-fareway-provider"] == provider
    assert raw.headers["x-fareway-model"] == upstream


async def test_default_model_takes_names_nothing_routes(sim: Any, tmp_path: Any) -> None:
    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path), default_model="groq/llama-3.1-8b-instant")
    gw = await start_gateway(cfg)
    try:
        raw = await oai(gw).chat.completions.with_raw_response.create(
            model="some-model-this-gateway-does-not-know", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-provider"] == "groq"
        row = await logged(gw, raw.headers["x-request-id"])
        assert row.call.requested_model == "some-model-this-gateway-does-not-know"
    finally:
        await gw.stop()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\ndefault_model = 3\n", "default_model"),
        ('[timeouts]\nstream_upstream = "yes"\n', "stream_upstream"),
    ],
)
def test_new_settings_refuse_a_wrong_type(tmp_path: Any, toml: str, key: str) -> None:
    from fareway.config import ConfigError, load_config

    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=key):
        load_config(f, env={})


@pytest.mark.parametrize("stream", [False, True])
async def test_stream_wrappers_see_the_committed_events_and_after_hooks_run(
    sgw: LiveGateway, stream: bool
) -> None:
    """The encode stage's seam (a cache tee, a budget settling as tokens arrive) and the after
    stage's (a judge): both see the call, streamed or not."""
    from fareway.events import PartDelta

    seen: list[str] = []
    after: list[tuple[str, str | None]] = []
    done = asyncio.Event()

    class Tee:
        def wrap(self, ctx: CallContext, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async def run() -> AsyncIterator[Any]:
                async for e in events:
                    if isinstance(e, PartDelta) and e.kind == "text":
                        seen.append(e.text)
                    yield e

            return run()

    class Judge:
        def wants(self, ctx: CallContext) -> bool:
            return True

        async def after(self, ctx: CallContext) -> None:
            after.append((ctx.request_id, ctx.outcome))
            done.set()

    class Idle:
        """A hook with nothing to do for this call: its ``after`` is never scheduled."""

        def wants(self, ctx: CallContext) -> bool:
            return False

        async def after(self, ctx: CallContext) -> None:
            after.append(("idle", None))

    gw = sgw.app.gateway
    gw.wrappers.append(Tee())
    gw.after_hooks.append(Idle())
    gw.after_hooks.append(Judge())
    try:
        raw = await oai(sgw).chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "echo:one two"}], stream=stream
        )
        if stream:
            text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        else:
            text = raw.parse().choices[0].message.content or ""
        assert text == "one two" and "".join(seen) == "one two"
        await asyncio.wait_for(done.wait(), 10)
        # Idle comes first in the list: had its after been scheduled, it would have run before Judge's
        assert after == [(raw.headers["x-request-id"], "ok")]
    finally:
        gw.wrappers.clear()
        gw.after_hooks.clear()


@pytest.mark.parametrize("stream_upstream", [True, False])
async def test_how_a_non_streamed_call_is_sent_upstream(
    sim: Any, tmp_path: Any, stream_upstream: bool
) -> None:
    """By default a non-streamed call is read as a stream (so its first-token timeout holds);
    `[timeouts] stream_upstream = false` sends it as asked."""
    from aiohttp import web

    from fareway.config import Timeouts

    seen: list[Any] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body.get("stream"))
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = gateway_config(sim.url, tmp_path)
    providers = dict(cfg.providers)
    providers["rec"] = ProviderConfig(
        ProviderSpec("rec", "openai", f"http://127.0.0.1:{port}/v1", builtin=False), api_key="k"
    )
    t = Timeouts(connect=2.0, first_token=1.5, idle=1.5, total=30.0, stream_upstream=stream_upstream)
    gw = await start_gateway(dataclasses.replace(cfg, providers=providers, timeouts=t))
    try:
        reply = await oai(gw).chat.completions.create(
            model="rec/m", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.choices[0].message.content == "hi"
        assert seen == [stream_upstream]
    finally:
        await gw.stop()
        await runner.cleanup()


async def _stalled_call_left_by_its_client(gw: LiveGateway, sim_control: Any, after: float) -> list[Any]:
    """A non-streamed call to a stalled upstream whose client leaves after ``after`` seconds; the
    ledger's cancelled (499) rows once one is written (up to 10 s)."""
    await sim_control.fault(provider="openai", kind="stall", count=1)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(after):
                await s.post(
                    gw.url + "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                )
    ledger = gw.app.gateway.accounting.ledger
    deadline = asyncio.get_running_loop().time() + 10
    rows: list[Any] = []
    while asyncio.get_running_loop().time() < deadline:
        await ledger.flush()
        rows = [r for r in await ledger.recent_calls(n=20) if r.call.status == 499]
        if rows:
            break
        await asyncio.sleep(0.05)
    return rows


async def test_a_non_streamed_call_is_cancelled_when_its_client_goes_away(
    sgw: LiveGateway, sim_control: Any
) -> None:
    rows = await _stalled_call_left_by_its_client(sgw, sim_control, 0.5)
    assert rows, "no cancelled row"
    call = rows[0].call
    assert call.outcome == "cancelled" and not call.stream
    # cancelled well before the gateway's first-token timeout (1.5 s) would have fired
    assert rows[0].attempts[0].outcome == "cancelled"


async def test_a_non_streamed_call_whose_upstream_breaks_part_way_falls_back(
    sgw: LiveGateway, sim_control: Any
) -> None:
    """Nothing was sent to a non-streamed client yet, so an upstream stream that breaks after its
    first tokens is that attempt's failure: the next target answers."""
    await sim_control.fault(provider="openai", kind="reset", after_chunks=2, count=1)
    raw = await oai(sgw).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "echo:whole answer"}]
    )
    assert raw.headers["x-fareway-provider"] == "groq"
    assert attempts(raw.headers["x-fareway-route"])["openai/gpt-4o-mini"] == "error"
    assert raw.parse().choices[0].message.content == "whole answer"


async def test_fareway_protocol_tells_the_app_of_a_gone_client_without_a_watching_task(
    sim: Any, tmp_path: Any, sim_control: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``fareway serve``'s protocol no task watches ``receive()``: the protocol's
    connection_lost cancels the request's own task.  A stalled non-streamed call whose client
    leaves is still cancelled (and accounted) at once, long before any timeout."""
    from fareway.server import app as app_module
    from fareway.server import http as http_module

    def no_watching_task(*_: Any, **__: Any) -> Any:
        raise AssertionError("a task watched receive() under Fareway's protocol")

    monkeypatch.setattr(app_module, "_unless_disconnected", no_watching_task)
    fired: list[bool] = []
    real_fire = http_module.DisconnectWatch._fire

    def fire(self: Any) -> None:
        fired.append(True)
        real_fire(self)

    monkeypatch.setattr(http_module.DisconnectWatch, "_fire", fire)
    gw = await start_gateway(gateway_config(sim.url, tmp_path))
    try:
        reply = await oai(gw).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "echo:ok"}]
        )
        assert reply.choices[0].message.content == "ok"
        rows = await _stalled_call_left_by_its_client(gw, sim_control, 0.3)
        assert rows and rows[0].call.outcome == "cancelled"
        assert fired == [True]
    finally:
        await gw.stop()


# ----------------------------------------------- the executor's cheap pieces behave as the originals


def test_a_request_copy_is_dataclasses_replace_without_changes() -> None:
    """``ChatRequest.copy`` (the executor's stream flag is set on a copy) carries every field,
    shares the field values (a shallow copy, as ``dataclasses.replace``) and is a new object."""
    from fareway.types import ChatRequest, Message, TextPart

    values: dict[str, Any] = {}
    for f in dataclasses.fields(ChatRequest):
        values[f.name] = {
            "model": "m",
            "messages": [Message("user", [TextPart("hi")])],
            "max_tokens": 9,
            "stream": True,
            "include_usage": True,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 3,
            "stop": ["x"],
            "seed": 4,
            "n": 1,
            "tools": [],
            "user": "u",
            "metadata": {"a": "b"},
            "extensions": {"openai": {"logprobs": False}},
            "headers": {"anthropic-version": "2023-06-01"},
            "source_dialect": "anthropic",
        }.get(f.name, object())  # a field this test does not know yet still must be carried
    req = ChatRequest(**values)
    copy = req.copy()
    assert copy is not req
    assert copy == dataclasses.replace(req)
    for f in dataclasses.fields(ChatRequest):
        assert getattr(copy, f.name) is getattr(req, f.name)
    copy.stream = False
    assert req.stream is True


async def test_the_first_token_deadline_times_out_and_leaves_other_cancels_alone() -> None:
    """The executor's first-token scope (``_Deadline``) acts as ``asyncio.timeout``: its own expiry
    becomes TimeoutError and leaves the task with no cancel pending; a cancel from outside stays
    a CancelledError; a scope left in time changes nothing."""
    from fareway.router.executor import _Deadline

    never = asyncio.Event()

    async def waits(delay: float) -> str:
        try:
            with _Deadline(delay):
                await never.wait()
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            await asyncio.sleep(0)  # no cancel left pending on the task
            return "timed out"
        return "woke"

    assert await asyncio.create_task(waits(0.0)) == "timed out"

    outside = asyncio.create_task(waits(3600.0))
    await asyncio.sleep(0)
    outside.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outside

    async def in_time() -> str:
        with _Deadline(3600.0) as d:
            await asyncio.sleep(0)
        assert not d.expired
        await asyncio.sleep(0)
        return "done"

    assert await asyncio.create_task(in_time()) == "done"
