"""Opt-in response caching through a live gateway over the simulator, with the official SDKs
(issue: response caching): one entry for both endpoints, streamed and not; tenants never share
unless grouped; nothing cached unless asked; TTL expiry on an injected clock; failed and cut
streams never stored; replayed streams in many chunks with text, reasoning and tool calls;
coalescing; the Redis store shared by two gateways and a Redis outage; the ledger, usage and
metrics of hits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from fareway.cache.settings import CacheSettings
from fareway.cache.stage import ResponseCache
from fareway.config import Config, ProviderConfig
from fareway.keys.store import KeyStore
from fareway.providers.registry import ProviderSpec
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    free_port,
    gateway_config,
    openai_client,
    start_gateway,
)
from tests.test_e2e_ledger import logged

REDIS_URL = "redis://127.0.0.1:6379/0"
USE = {"x-fareway-cache": "use"}
HOWS = ["openai", "openai-stream", "anthropic", "anthropic-stream"]


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cache_of(gw: LiveGateway) -> ResponseCache:
    return next(s for s in gw.app.gateway.lookups if isinstance(s, ResponseCache))


def with_clock(gw: LiveGateway) -> Clock:
    clock = Clock()
    cache = cache_of(gw)
    cache.clock = clock
    cache.store.clock = clock  # type: ignore[attr-defined]
    return clock


async def upstream_calls(sim_control: Any) -> int:
    return int((await sim_control.stats())["total"]["requests"])


def config(sim: Any, tmp: Path, **cache: Any) -> Config:
    return dataclasses.replace(gateway_config(sim.url, tmp), cache=CacheSettings(**cache))


@pytest.fixture
async def cgw(sim: Any, tmp_path: Path) -> AsyncIterator[LiveGateway]:
    gw = await start_gateway(config(sim, tmp_path))
    yield gw
    await gw.stop()


def prompt() -> str:
    """A user turn no other test sends (entries of one gateway live as long as it does)."""
    return f"Tell me about harbors, please ({uuid.uuid4().hex[:8]})."


# --------------------------------------------------------------------------- one call, four ways


@dataclass
class Answer:
    headers: dict[str, str]
    text: str = ""
    reasoning: str = ""
    signature: str = ""
    tools: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    """Chunks (OpenAI) or content_block_delta events (Anthropic) that carried content."""
    usage: Any = None

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]

    @property
    def cache(self) -> str:
        return self.headers["x-fareway-cache"]


async def ask(
    gw: LiveGateway,
    how: str,
    user: str,
    *,
    model: str = "openai/gpt-4o-mini",
    headers: dict[str, str] | None = None,
    key: str = MASTER_KEY,
    tools: bool = False,
    thinking: bool = False,
    **extra: Any,
) -> Answer:
    hdrs = USE if headers is None else headers
    if how.startswith("openai"):
        return await _ask_openai(gw, how, user, model, hdrs, key, tools, thinking, extra)
    return await _ask_anthropic(gw, how, user, model, hdrs, key, tools, thinking, extra)


OAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANT_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


async def _ask_openai(
    gw: LiveGateway,
    how: str,
    user: str,
    model: str,
    hdrs: dict[str, str],
    key: str,
    tools: bool,
    thinking: bool,
    extra: dict[str, Any],
) -> Answer:
    client = openai_client(gw.url + "/v1", api_key=key)
    kw: dict[str, Any] = {
        "model": model,
        "max_tokens": 400,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}],
        "extra_headers": hdrs,
        **extra,
    }
    if tools:
        kw["tools"] = [OAI_TOOL]
    if thinking:
        kw["reasoning_effort"] = "low"
    if how == "openai":
        raw = await client.chat.completions.with_raw_response.create(**kw)
        r = raw.parse()
        msg = r.choices[0].message
        return Answer(
            dict(raw.headers),
            text=msg.content or "",
            reasoning=(msg.model_extra or {}).get("reasoning_content") or "",
            tools=[(t.function.name, t.function.arguments) for t in msg.tool_calls or []],  # type: ignore[union-attr]
            usage=r.usage,
        )
    raw = await client.chat.completions.with_raw_response.create(
        **kw, stream=True, stream_options={"include_usage": True}
    )
    ans = Answer(dict(raw.headers))
    calls: dict[int, list[str]] = {}
    async for c in raw.parse():
        if c.usage is not None:
            ans.usage = c.usage
        if not c.choices:
            continue
        d = c.choices[0].delta
        r_text = (d.model_extra or {}).get("reasoning_content") or ""
        if d.content or r_text or d.tool_calls:
            ans.chunks += 1
        ans.text += d.content or ""
        ans.reasoning += r_text
        for t in d.tool_calls or []:
            slot = calls.setdefault(t.index, ["", ""])
            if t.function and t.function.name:
                slot[0] = t.function.name
            if t.function and t.function.arguments:
                slot[1] += t.function.arguments
    ans.tools = [(n, a) for _, (n, a) in sorted(calls.items())]
    return ans


async def _ask_anthropic(
    gw: LiveGateway,
    how: str,
    user: str,
    model: str,
    hdrs: dict[str, str],
    key: str,
    tools: bool,
    thinking: bool,
    extra: dict[str, Any],
) -> Answer:
    client = anthropic_client(gw.url, api_key=key)
    kw: dict[str, Any] = {
        "model": model,
        "max_tokens": 400,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": user}],
        "extra_headers": hdrs,
        **extra,
    }
    if tools:
        kw["tools"] = [ANT_TOOL]
    if thinking:
        kw["max_tokens"] = 2000
        kw["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    if how == "anthropic":
        raw = await client.messages.with_raw_response.create(**kw)
        m = await raw.parse()
        ans = Answer(dict(raw.headers), usage=m.usage)
        for b in m.content:
            if b.type == "text":
                ans.text += b.text
            elif b.type == "thinking":
                ans.reasoning += b.thinking
                ans.signature += b.signature
            elif b.type == "tool_use":
                import json

                ans.tools.append((b.name, json.dumps(b.input, separators=(",", ":"))))
        return ans
    raw = await client.messages.with_raw_response.create(**kw, stream=True)
    ans = Answer(dict(raw.headers))
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    async for ev in await raw.parse():
        if ev.type == "content_block_start" and ev.content_block.type == "tool_use":
            names[ev.index] = ev.content_block.name
            args[ev.index] = ""
        elif ev.type == "content_block_delta":
            d = ev.delta
            if d.type == "text_delta":
                ans.text += d.text
            elif d.type == "thinking_delta":
                ans.reasoning += d.thinking
            elif d.type == "signature_delta":
                ans.signature += d.signature
            elif d.type == "input_json_delta":
                args[ev.index] += d.partial_json
            if getattr(d, "text", None) or getattr(d, "thinking", None) or getattr(d, "partial_json", None):
                ans.chunks += 1
        elif ev.type == "message_delta":
            ans.usage = ev.usage
    import json

    ans.tools = [
        (names[i], json.dumps(json.loads(args[i] or "{}"), separators=(",", ":"))) for i in sorted(names)
    ]
    return ans


# --------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("first", ["openai", "anthropic-stream"])
async def test_one_entry_serves_both_endpoints_streamed_and_not(
    cgw: LiveGateway, sim_control: Any, first: str
) -> None:
    user = prompt()
    before = await upstream_calls(sim_control)
    original = await ask(cgw, first, user)
    assert original.cache == ("stored" if first == "openai" else "miss")
    answers = [await ask(cgw, how, user) for how in HOWS]
    assert await upstream_calls(sim_control) - before == 1
    assert [a.cache for a in answers] == ["hit"] * 4
    assert {a.text for a in answers} == {original.text} and original.text
    for a in answers:
        assert a.headers["age"] == "0" and a.headers["x-fareway-cost-usd"] == "0"
        assert a.headers["x-fareway-provider"] == "openai" and a.headers["x-fareway-model"] == "gpt-4o-mini"
    stored = await logged(cgw, original.request_id)
    assert stored.call.cache == "stored" and stored.call.outcome == "ok"


async def test_tool_calls_are_replayed_to_either_dialect(cgw: LiveGateway, sim_control: Any) -> None:
    user = prompt() + " What is the weather in Paris?"
    before = await upstream_calls(sim_control)
    original = await ask(cgw, "openai-stream", user, tools=True)
    assert original.tools and original.tools[0][0] == "get_weather"
    answers = [await ask(cgw, how, user, tools=True) for how in HOWS]
    assert await upstream_calls(sim_control) - before == 1
    for a in answers:
        assert a.cache == "hit"
        # the same calls: same names, the same arguments as JSON values
        assert [(n, _json(x)) for n, x in a.tools] == [(n, _json(x)) for n, x in original.tools], a


def _json(text: str) -> Any:
    import json

    return json.loads(text or "{}")


@pytest.mark.parametrize(
    ("how", "tools"),
    [("anthropic-stream", False), ("anthropic-stream", True), ("openai-stream", False)],
)
async def test_a_replayed_stream_has_the_same_text_reasoning_and_tool_calls_in_many_chunks(
    cgw: LiveGateway, sim_control: Any, how: str, tools: bool
) -> None:
    """LiteLLM replays a cached stream as one chunk and loses reasoning on streamed hits (its
    issues 11145, 32068): here the replay is chunked like the original, thinking and its
    signature included."""
    user = prompt() + (" What is the weather in Paris?" if tools else "")
    model = "anthropic/claude-sonnet-4-5"
    before = await upstream_calls(sim_control)
    original = await ask(cgw, how, user, model=model, tools=tools, thinking=True)
    replayed = await ask(cgw, how, user, model=model, tools=tools, thinking=True)
    assert await upstream_calls(sim_control) - before == 1
    assert (original.cache, replayed.cache) == ("miss", "hit")
    assert original.reasoning and (original.text or original.tools)
    assert replayed.text == original.text
    assert replayed.reasoning == original.reasoning
    assert replayed.signature == original.signature
    assert replayed.tools == original.tools
    assert replayed.chunks == original.chunks > 1
    if how == "anthropic-stream":
        assert original.signature  # the thinking block's signature survived
        whole = await ask(cgw, "anthropic", user, model=model, tools=tools, thinking=True)
        assert whole.cache == "hit"
        assert (whole.reasoning, whole.signature, whole.text) == (
            original.reasoning,
            original.signature,
            original.text,
        )


async def test_a_whole_upstream_answer_is_replayed_as_a_stream_of_many_chunks(
    sim: Any, tmp_path: Path, sim_control: Any
) -> None:
    cfg = config(sim, tmp_path)
    cfg = dataclasses.replace(cfg, timeouts=dataclasses.replace(cfg.timeouts, stream_upstream=False))
    gw = await start_gateway(cfg)
    try:
        user = "echo:" + " ".join(f"harbor{i} lantern river" for i in range(20)) + " " + prompt()
        original = await ask(gw, "openai", user)
        assert original.cache == "stored" and len(original.text.split()) > 60
        for how in ("openai-stream", "anthropic-stream"):
            replayed = await ask(gw, how, user)
            assert replayed.cache == "hit" and replayed.text == original.text
            assert replayed.chunks > 5
    finally:
        await gw.stop()


async def test_nothing_is_cached_unless_asked(cgw: LiveGateway, sim_control: Any) -> None:
    user = prompt()
    before = await upstream_calls(sim_control)
    plain = [await ask(cgw, how, user, headers={}) for how in ("openai", "openai", "anthropic-stream")]
    bypass = await ask(cgw, "openai", user, headers={"x-fareway-cache": "bypass"})
    assert [a.cache for a in [*plain, bypass]] == ["bypass"] * 4
    assert await upstream_calls(sim_control) - before == 4
    # refresh stores without reading; use then reads what refresh stored
    r1 = await ask(cgw, "openai", user, headers={"x-fareway-cache": "refresh"})
    r2 = await ask(cgw, "openai", user, headers={"x-fareway-cache": "refresh"})
    assert (r1.cache, r2.cache) == ("stored", "stored")
    assert await upstream_calls(sim_control) - before == 6
    hit = await ask(cgw, "anthropic", user)
    assert hit.cache == "hit" and hit.text == r2.text
    row = await logged(cgw, plain[0].request_id)
    assert row.call.cache == "bypass" and row.call.outcome == "ok"


async def test_cache_control_no_store_and_no_cache(cgw: LiveGateway, sim_control: Any) -> None:
    user = prompt()
    before = await upstream_calls(sim_control)
    a = await ask(cgw, "openai", user, headers={**USE, "Cache-Control": "no-store"})
    b = await ask(cgw, "openai", user)
    assert (a.cache, b.cache) == ("miss", "stored")
    c = await ask(cgw, "openai", user, headers={**USE, "Cache-Control": "no-cache"})
    assert c.cache == "stored"  # not read: answered upstream, and stored again
    assert await upstream_calls(sim_control) - before == 3
    assert (await ask(cgw, "openai", user)).cache == "hit"


async def test_the_body_field_opts_in_and_never_goes_upstream(sim: Any, tmp_path: Path) -> None:
    """For clients that cannot set headers; a recording upstream shows what was sent."""
    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{sim.url}/openai/v1/chat/completions",
                json=body,
                headers={"authorization": request.headers.get("authorization", "")},
            ) as r,
        ):
            return web.Response(
                body=await r.read(), status=r.status, headers={"content-type": r.headers["content-type"]}
            )

    up = await _serve({"/v1/chat/completions": record})
    cfg = config(sim, tmp_path)
    providers = {
        **cfg.providers,
        "rec": ProviderConfig(ProviderSpec("rec", "openai", up.url + "/v1", builtin=False), "k"),
    }
    gw = await start_gateway(dataclasses.replace(cfg, providers=providers))
    try:
        user = prompt()
        first = await ask(
            gw, "openai", user, model="rec/gpt-4o-mini", headers={}, extra_body={"fareway_cache": "use"}
        )
        second = await ask(
            gw, "anthropic", user, model="rec/gpt-4o-mini", headers={},
            extra_body={"fareway_cache": {"mode": "use", "ttl": 60}},
        )  # fmt: skip
        assert (first.cache, second.cache) == ("stored", "hit")
        assert len(seen) == 1 and "fareway_cache" not in seen[0]
        with pytest.raises(openai.BadRequestError) as info:
            await ask(
                gw, "openai", user, model="rec/gpt-4o-mini", headers={}, extra_body={"fareway_cache": "yes"}
            )
        assert info.value.body["param"] == "fareway_cache"  # type: ignore[index]
    finally:
        await gw.stop()
        await up.stop()


async def test_bad_cache_headers_are_a_400_in_the_callers_dialect(cgw: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as oi:
        await ask(cgw, "openai", "hi", headers={"x-fareway-cache": "always"})
    assert oi.value.body["param"] == "x-fareway-cache"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as ai:
        await ask(cgw, "anthropic", "hi", headers={**USE, "x-fareway-cache-ttl": "soon"})
    assert "x-fareway-cache-ttl" in str(ai.value)
    row = await logged(cgw, oi.value.response.headers["x-request-id"])
    assert row.call.status == 400


async def test_two_keys_never_share_unless_grouped(sim: Any, tmp_path: Path, sim_control: Any) -> None:
    """Portkey, Envoy and LiteLLM (by default, its issue 29955) share entries across tenants."""
    keys = KeyStore(tmp_path / "state.db", master_key=MASTER_KEY)
    alice, a_info = keys.create("alice")
    bob, b_info = keys.create("bob")
    carol, _ = keys.create("carol")
    gw = await start_gateway(config(sim, tmp_path))
    try:
        user = prompt()
        before = await upstream_calls(sim_control)
        a1 = await ask(gw, "openai", user, key=alice)
        b1 = await ask(gw, "openai", user, key=bob)
        m1 = await ask(gw, "openai", user)
        assert [x.cache for x in (a1, b1, m1)] == ["stored"] * 3
        assert await upstream_calls(sim_control) - before == 3
        assert (await ask(gw, "anthropic", user, key=alice)).cache == "hit"
        assert (await ask(gw, "anthropic", user, key=bob)).cache == "hit"
    finally:
        await gw.stop()
    # an admin groups alice and bob: they now share one namespace
    gw = await start_gateway(config(sim, tmp_path, share={a_info.key_id: "team", b_info.key_id: "team"}))
    try:
        user = prompt()
        before = await upstream_calls(sim_control)
        assert (await ask(gw, "openai", user, key=alice)).cache == "stored"
        assert (await ask(gw, "openai-stream", user, key=bob)).cache == "hit"
        assert (await ask(gw, "openai", user, key=carol)).cache == "stored"
        assert await upstream_calls(sim_control) - before == 2
    finally:
        await gw.stop()


async def test_an_entry_expires_at_its_ttl(cgw: LiveGateway, sim_control: Any) -> None:
    clock = with_clock(cgw)
    user = prompt()
    before = await upstream_calls(sim_control)
    ttl = {**USE, "x-fareway-cache-ttl": "60"}
    assert (await ask(cgw, "openai", user, headers=ttl)).cache == "stored"
    clock.now += 59
    hit = await ask(cgw, "anthropic-stream", user, headers=ttl)
    assert hit.cache == "hit" and hit.headers["age"] == "59"
    clock.now += 1
    assert (await ask(cgw, "openai", user, headers=ttl)).cache == "stored"  # expired: asked again
    assert await upstream_calls(sim_control) - before == 2
    # the default TTL is [cache] ttl (3600)
    user2 = prompt()
    assert (await ask(cgw, "openai", user2)).cache == "stored"
    clock.now += 3599
    assert (await ask(cgw, "openai", user2)).cache == "hit"
    clock.now += 1
    assert (await ask(cgw, "openai", user2)).cache == "stored"


async def test_an_alias_default_opts_its_callers_in(sim: Any, tmp_path: Path, sim_control: Any) -> None:
    from fareway.cache.settings import parse

    aliases = {"cached-mini": {"targets": ["openai/gpt-4o-mini"], "cache": {"mode": "use", "ttl": 30}}}
    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path), aliases=aliases, cache=parse({}, aliases))
    gw = await start_gateway(cfg)
    clock = with_clock(gw)
    try:
        user = prompt()
        a = await ask(gw, "openai", user, model="cached-mini", headers={})
        b = await ask(gw, "anthropic", user, model="cached-mini", headers={})
        c = await ask(gw, "openai", user, model="cached-mini", headers={"x-fareway-cache": "bypass"})
        assert (a.cache, b.cache, c.cache) == ("stored", "hit", "bypass")
        clock.now += 30
        assert (await ask(gw, "openai", user, model="cached-mini", headers={})).cache == "stored"
    finally:
        await gw.stop()


@pytest.mark.parametrize(
    ("fault", "how"),
    [
        ({"kind": "stream_error", "after_chunks": 2}, "openai-stream"),
        ({"kind": "reset", "after_chunks": 2}, "anthropic-stream"),
        ({"kind": "500"}, "openai"),
    ],
)
async def test_a_failed_call_is_never_stored(
    cgw: LiveGateway, sim_control: Any, fault: dict[str, Any], how: str
) -> None:
    user = prompt()
    await sim_control.fault(provider="openai", **fault)
    with contextlib.suppress(openai.APIError, anthropic.APIError):
        await ask(cgw, how, user)
    ledger: Any = cgw.app.gateway.accounting.ledger
    await ledger.flush()
    failed = (await ledger.recent_calls(n=1))[0].call  # the call just made
    assert failed.outcome == "error" and failed.cache == "miss"
    before = await upstream_calls(sim_control)
    again = await ask(cgw, "openai", user)
    assert again.cache == "stored"  # the broken answer was not stored: asked upstream again
    assert await upstream_calls(sim_control) - before == 1


async def test_a_stream_the_client_cut_is_never_stored(cgw: LiveGateway, sim_control: Any) -> None:
    user = prompt()
    body = {
        "model": "openai/gpt-4o-mini",
        "max_tokens": 400,
        "stream": True,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}],
    }
    await sim_control.fault(provider="openai", kind="stall_after_first")  # the upstream is mid-answer
    async with aiohttp.ClientSession() as s:
        async with s.post(
            cgw.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {MASTER_KEY}", **USE},
        ) as r:
            assert r.headers["x-fareway-cache"] == "miss"
            await r.content.readline()  # the first chunk arrived; the client goes away
            cut_id = r.headers["x-request-id"]
            r.close()
    for _ in range(500):  # until the gateway noticed the cut and accounted it
        if await _has_row(cgw, cut_id):
            break
        await asyncio.sleep(0.02)
    row = await logged(cgw, cut_id)
    assert row.call.outcome == "cancelled" and row.call.cache == "miss"
    before = await upstream_calls(sim_control)
    assert (await ask(cgw, "openai-stream", user)).cache == "miss"
    assert await upstream_calls(sim_control) - before == 1
    assert (await ask(cgw, "openai", user)).cache == "hit"


async def _has_row(gw: LiveGateway, rid: str) -> bool:
    ledger = gw.app.gateway.accounting.ledger
    await ledger.flush()  # type: ignore[union-attr]
    return any(r.call.request_id == rid for r in await ledger.recent_calls(n=200))  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ coalescing


class _Server:
    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    async def stop(self) -> None:
        await self.runner.cleanup()


async def _serve(routes: dict[str, Any]) -> _Server:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return _Server(runner, f"http://127.0.0.1:{port}")


async def test_fifty_identical_concurrent_requests_make_one_upstream_call(sim: Any, tmp_path: Path) -> None:
    """The upstream holds its answer until all fifty are in the gateway, so they are concurrent
    for certain; then it answers once and every one of them gets that answer, in its dialect."""
    gate = asyncio.Event()
    arrived = asyncio.Event()
    calls = 0

    async def gated(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = await request.read()
        arrived.set()
        await gate.wait()
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{sim.url}/openai/v1/chat/completions",
                data=body,
                headers={"content-type": "application/json", "authorization": "Bearer k"},
            ) as r,
        ):
            resp = web.StreamResponse(status=r.status, headers={"content-type": r.headers["content-type"]})
            await resp.prepare(request)
            async for chunk in r.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    up = await _serve({"/v1/chat/completions": gated})
    cfg = config(sim, tmp_path)
    spec = ProviderSpec("gated", "openai", up.url + "/v1", builtin=False)
    gw = await start_gateway(
        dataclasses.replace(cfg, providers={**cfg.providers, "gated": ProviderConfig(spec, "k")})
    )
    try:
        user = prompt()
        tasks = [
            asyncio.ensure_future(ask(gw, HOWS[i % 4], user, model="gated/gpt-4o-mini")) for i in range(50)
        ]
        await asyncio.wait_for(arrived.wait(), 10)
        cache = cache_of(gw)
        flight = next(iter(cache.flights._flights.values()))
        for _ in range(1000):  # until the other 49 wait on the leader's flight
            if flight.waiters == 49:
                break
            await asyncio.sleep(0.01)
        assert flight.waiters == 49
        gate.set()
        answers = await asyncio.gather(*tasks)
    finally:
        await gw.stop()
        await up.stop()
    assert calls == 1
    assert len({a.text for a in answers}) == 1 and answers[0].text
    assert sorted(a.cache for a in answers).count("hit") == 49
    assert len(cache.flights) == 0


async def test_waiters_of_a_failed_leader_make_the_next_call(sim: Any, tmp_path: Path) -> None:
    gate = asyncio.Event()
    arrived = asyncio.Event()
    calls = 0

    async def first_fails(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = await request.read()
        if calls == 1:
            arrived.set()
            await gate.wait()
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{sim.url}/openai/v1/chat/completions",
                data=body,
                headers={"content-type": "application/json", "authorization": "Bearer k"},
            ) as r,
        ):
            return web.Response(
                body=await r.read(), status=r.status, headers={"content-type": r.headers["content-type"]}
            )

    up = await _serve({"/v1/chat/completions": first_fails})
    cfg = config(sim, tmp_path)
    spec = ProviderSpec("flaky", "openai", up.url + "/v1", builtin=False)
    gw = await start_gateway(
        dataclasses.replace(cfg, providers={**cfg.providers, "flaky": ProviderConfig(spec, "k")})
    )
    try:
        user = prompt()
        tasks = [asyncio.ensure_future(ask(gw, "openai", user, model="flaky/m")) for _ in range(5)]
        await asyncio.wait_for(arrived.wait(), 10)
        flight = next(iter(cache_of(gw).flights._flights.values()))
        for _ in range(1000):
            if flight.waiters == 4:
                break
            await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await gw.stop()
        await up.stop()
    errors = [r for r in results if isinstance(r, Exception)]
    answers = [r for r in results if isinstance(r, Answer)]
    assert len(errors) == 1 and isinstance(errors[0], openai.APIError)  # the leader's own failure
    assert sorted(a.cache for a in answers) == ["hit", "hit", "hit", "stored"]
    assert calls == 2  # the failed leader's call, then one for the four waiters


# ------------------------------------------------------------------------------ accounting


async def test_a_hit_is_a_ledger_row_with_what_it_saved(cgw: LiveGateway) -> None:
    user = prompt()
    original = await ask(cgw, "openai", user)
    hits = [await ask(cgw, how, user) for how in HOWS]
    made = await logged(cgw, original.request_id)
    assert made.call.cost is not None and made.call.cost > 0
    for h in hits:
        row = await logged(cgw, h.request_id)
        c = row.call
        assert (c.outcome, c.cache, c.status, c.attempts) == ("cache_hit", "hit", 200, 0)
        assert c.cost == Decimal(0) and c.cost_saved == made.call.cost
        assert (c.provider, c.upstream_model) == ("openai", "gpt-4o-mini")
        assert c.input_tokens == c.output_tokens == 0  # nothing was consumed from any provider
        assert c.latency_ms is not None and c.latency_ms > 0
    # what a hit shows the client: the answer's usage, at cost 0
    assert hits[0].usage.completion_tokens == original.usage.completion_tokens
    assert hits[1].usage.cost == 0  # type: ignore[union-attr]


async def test_hit_rate_and_savings_in_usage_and_metrics(cgw: LiveGateway) -> None:
    user = prompt()
    original = await ask(cgw, "openai", user)
    for how in ("openai", "anthropic-stream", "openai-stream"):
        await ask(cgw, how, user)
    await ask(cgw, "openai", prompt(), headers={})  # a call that bypassed the cache
    made = await logged(cgw, original.request_id)
    assert made.call.cost is not None
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(cgw.url + "/v1/usage", headers=headers) as r:
            t = (await r.json())["totals"]
        async with s.get(
            cgw.url + "/v1/usage", params={"group_by": "model", "format": "csv"}, headers=headers
        ) as r:
            csv_text = await r.text()
        async with s.get(cgw.url + "/metrics", headers=headers) as r:
            metrics = await r.text()
    assert (t["cache_hits"], t["cache_lookups"]) == (3, 4)
    assert t["cache_hit_rate"] == 0.75
    assert Decimal(t["cost_saved"]) == 3 * made.call.cost
    assert "cache_hits,cache_lookups" in csv_text.splitlines()[0] and "cache_hit_rate" in csv_text
    assert 'fareway_cache_hits_total{model="gpt-4o-mini"} 3.0' in metrics
    assert 'fareway_cache_lookups_total{model="gpt-4o-mini"} 4.0' in metrics
    saved = next(x for x in metrics.splitlines() if x.startswith("fareway_cache_saved_usd_total{"))
    assert float(saved.split()[-1]) == pytest.approx(float(3 * made.call.cost))
    assert 'fareway_cache_store{kind="hits",store="memory"} 3.0' in metrics


async def test_a_disabled_cache_says_bypass_and_still_drops_the_body_field(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path, enabled=False))
    try:
        user = prompt()
        a = await ask(gw, "openai", user, extra_body={"fareway_cache": "use"})
        b = await ask(gw, "openai", user)
        assert (a.cache, b.cache) == ("bypass", "bypass")
    finally:
        await gw.stop()


# ------------------------------------------------------------------------------ Redis


class TcpProxy:
    """A TCP proxy to Redis that the test can take down (an outage mid-run)."""

    def __init__(self, target_port: int = 6379) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, uw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        self.writers -= {writer, uw}

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()


async def _drop_prefix(prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(match=prefix + "*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


@pytest.mark.redis
async def test_two_gateways_share_entries_through_redis(sim: Any, tmp_path: Path, sim_control: Any) -> None:
    prefix = f"fareway-test:{uuid.uuid4().hex}:"
    one = await start_gateway(config(sim, tmp_path / "one", url=REDIS_URL, prefix=prefix))
    two = await start_gateway(config(sim, tmp_path / "two", url=REDIS_URL, prefix=prefix))
    try:
        user = prompt()
        before = await upstream_calls(sim_control)
        made = await ask(one, "anthropic-stream", user)
        # the stream's entry is stored before its last event is sent
        got = await ask(two, "openai", user)
        again = await ask(two, "anthropic-stream", user)
        assert (made.cache, got.cache, again.cache) == ("miss", "hit", "hit")
        assert got.text == made.text == again.text
        assert await upstream_calls(sim_control) - before == 1
    finally:
        await one.stop()
        await two.stop()
        await _drop_prefix(prefix)


@pytest.mark.redis
async def test_a_redis_outage_turns_hits_into_misses_and_every_call_is_answered(
    sim: Any, tmp_path: Path, sim_control: Any
) -> None:
    prefix = f"fareway-test:{uuid.uuid4().hex}:"
    proxy = TcpProxy()
    await proxy.start()
    gw = await start_gateway(config(sim, tmp_path, url=f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix))
    try:
        user = prompt()
        assert (await ask(gw, "openai", user)).cache == "stored"
        assert (await ask(gw, "openai-stream", user)).cache == "hit"
        await proxy.stop()  # Redis is gone
        before = await upstream_calls(sim_control)
        answers = [await ask(gw, how, user) for how in HOWS * 2]
        assert all(a.text for a in answers)
        assert [a.cache for a in answers] == ["miss"] * 8
        assert await upstream_calls(sim_control) - before == 8
        assert cache_of(gw).store.stats.errors >= 1
    finally:
        await gw.stop()
        await _drop_prefix(prefix)
    # a gateway whose Redis was never there answers too
    dead = await start_gateway(config(sim, tmp_path / "dead", url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        assert [(await ask(dead, how, prompt())).cache for how in HOWS] == ["miss"] * 4
    finally:
        await dead.stop()
