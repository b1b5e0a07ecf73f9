"""The official `openai` SDK against a live Fareway over the simulator (foundation acceptance)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from fareway.config import load_config
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, openai_client, start_gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def client(gw: LiveGateway, key: str = MASTER_KEY) -> openai.AsyncOpenAI:
    return openai_client(gw.url + "/v1", key)


async def test_list_models(gateway: LiveGateway) -> None:
    models = await client(gateway).models.list()
    ids = {m.id for m in models.data}
    assert "openai/gpt-4o-mini" in ids
    assert "cerebras/llama3.1-8b" in ids
    assert all(m.object == "model" for m in models.data)


async def test_completion(gateway: LiveGateway) -> None:
    raw = await client(gateway).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "echo:hello there"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    assert raw.headers["x-fareway-provider"] == "openai"
    assert raw.headers["x-fareway-model"] == "gpt-4o-mini"
    assert raw.headers["x-request-id"].startswith("req_")


async def test_bare_model_resolves_through_catalog(gateway: LiveGateway) -> None:
    raw = await client(gateway).chat.completions.with_raw_response.create(
        model="llama3.1-8b", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-fareway-provider"] == "cerebras"
    assert raw.parse().choices[0].message.content


async def test_stream_with_include_usage(gateway: LiveGateway) -> None:
    stream = await client(gateway).chat.completions.create(
        model="groq/llama-3.1-8b-instant",
        messages=[{"role": "user", "content": "echo:one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage_chunks, finish = "", [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage_chunks.append(chunk)
            assert chunk.choices == []
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == "one two three four"
    assert finish == "stop"
    assert len(usage_chunks) == 1 and usage_chunks[0].usage.prompt_tokens > 0


async def test_stream_without_include_usage_shows_no_usage(gateway: LiveGateway) -> None:
    stream = await client(gateway).chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


async def test_streamed_tool_call_reassembles(gateway: LiveGateway) -> None:
    stream = await client(gateway).chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    fragments: dict[int, list[str]] = {}
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    async for chunk in stream:
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for tc in c.delta.tool_calls or []:
                if tc.id:
                    ids[tc.index] = tc.id
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
                if tc.function and tc.function.arguments:
                    fragments.setdefault(tc.index, []).append(tc.function.arguments)
    assert finish == "tool_calls"
    assert names == {0: "get_weather"} and ids[0]
    assert len(fragments[0]) > 1, "arguments should arrive in several fragments"
    args = json.loads("".join(fragments[0]))
    assert isinstance(args["city"], str) and isinstance(args["days"], int)


async def test_wrong_key_is_401(gateway: LiveGateway) -> None:
    with pytest.raises(openai.AuthenticationError) as ei:
        await client(gateway, key="not-a-key").models.list()
    assert ei.value.status_code == 401
    body: Any = ei.value.body
    assert body["type"] == "authentication_error"


async def test_missing_key_is_401(gateway: LiveGateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(gateway.url + "/v1/chat/completions", json={"model": "x", "messages": []}) as r:
            assert r.status == 401
            body = await r.json()
            assert set(body["error"]) >= {"message", "type", "param", "code"}


async def test_unknown_model_is_404(gateway: LiveGateway) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        await client(gateway).chat.completions.create(
            model="no-such-model-xyz", messages=[{"role": "user", "content": "hi"}]
        )
    assert "no-such-model-xyz" in ei.value.message


async def test_upstream_429_surfaces_as_rate_limit_error(gateway: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", kind="429", count=1, retry_after=7)
    with pytest.raises(openai.RateLimitError) as ei:
        await client(gateway).chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert ei.value.status_code == 429
    assert ei.value.response.headers.get("retry-after") == "7"


async def test_malformed_json_is_400(gateway: LiveGateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            gateway.url + "/v1/chat/completions",
            data=b'{"model": "openai/gpt-4o-mini", "messages": [',
            headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
        ) as r:
            assert r.status == 400
            body = await r.json()
            assert body["error"]["type"] == "invalid_request_error"
            assert "Traceback" not in json.dumps(body)


async def test_wrong_types_are_400_naming_the_param(gateway: LiveGateway) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client(gateway).chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens="ten",  # type: ignore[arg-type]
        )
    assert ei.value.param == "max_tokens" or "max_tokens" in ei.value.message


async def test_oversized_body_is_413(sim: Any, tmp_path: Any) -> None:
    gw = await start_gateway(gateway_config(sim.url, tmp_path, max_body_bytes=1000))
    try:
        async with aiohttp.ClientSession() as s:
            payload = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
            async with s.post(
                gw.url + "/v1/chat/completions",
                json=payload,
                headers={"authorization": f"Bearer {MASTER_KEY}"},
            ) as r:
                assert r.status == 413
                assert "limit" in (await r.json())["error"]["message"]
    finally:
        await gw.stop()


async def test_health_and_ready(gateway: LiveGateway) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(gateway.url + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with s.get(gateway.url + "/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["checks"]["state_db"] == "ok"


CONFIG_EXAMPLE = """\
[providers.local]
dialect = "openai"
base_url = "http://127.0.0.1:9100/v1"
api_key = "${LOCAL_KEY}"
"""


async def test_config_example_verbatim(tmp_path: Any) -> None:
    """The README's custom-provider example, verbatim, against an OpenAI-compatible server on
    127.0.0.1:9100 that records what it receives."""
    seen: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(
            {"path": request.path, "auth": request.headers.get("authorization"), "model": body["model"]}
        )
        return web.json_response(
            {
                "id": "chatcmpl-local",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "from local"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 9100)
        await site.start()
    except OSError:
        await runner.cleanup()
        pytest.skip("port 9100 is taken on this machine")
    cfg_file = tmp_path / "fareway.toml"
    cfg_file.write_text(CONFIG_EXAMPLE)
    import dataclasses

    cfg = load_config(cfg_file, env={"LOCAL_KEY": "local-secret", "FAREWAY_MASTER_KEY": MASTER_KEY})
    cfg = dataclasses.replace(cfg, state_dir=tmp_path / "state")
    assert cfg.master_key == MASTER_KEY
    gw = await start_gateway(cfg)
    try:
        resp = await client(gw).chat.completions.create(
            model="local/anything", messages=[{"role": "user", "content": "hi"}]
        )
        assert resp.choices[0].message.content == "from local"
        assert seen == [{"path": "/v1/chat/completions", "auth": "Bearer local-secret", "model": "anything"}]
    finally:
        await gw.stop()
        await runner.cleanup()
