"""The official `anthropic` SDK against a live Fareway, over an OpenAI-dialect, an Anthropic and a
Gemini upstream (simulated); and the `openai` SDK over the Anthropic and Gemini upstreams."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import MASTER_KEY, LiveGateway, anthropic_client, openai_client

UPSTREAMS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]
THINKING_UPSTREAMS = ["groq/openai/gpt-oss-120b", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}


def ant(gw: LiveGateway, key: str = MASTER_KEY) -> anthropic.AsyncAnthropic:
    return anthropic_client(gw.url, key)


def oai(gw: LiveGateway) -> openai.AsyncOpenAI:
    return openai_client(gw.url + "/v1")


@pytest.mark.parametrize("model", UPSTREAMS)
async def test_message(gateway: LiveGateway, model: str) -> None:
    msg = await ant(gateway).messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "echo:bonjour"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "bonjour"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", UPSTREAMS)
async def test_stream_final_message_equals_non_streamed(gateway: LiveGateway, model: str) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": "Write two sentences about the sea."}],
    }
    plain = await ant(gateway).messages.create(**kwargs)
    async with ant(gateway).messages.stream(**kwargs) as stream:
        deltas = [e async for e in stream]
        final = await stream.get_final_message()
    assert any(e.type == "content_block_delta" for e in deltas)
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in plain.content]
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens


@pytest.mark.parametrize("model", UPSTREAMS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_use_round_trip(gateway: LiveGateway, model: str, streamed: bool) -> None:
    client = ant(gateway)
    first_kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 200,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "What's the weather in Oslo?"}],
    }
    if streamed:
        async with client.messages.stream(**first_kwargs) as s:
            first = await s.get_final_message()
    else:
        first = await client.messages.create(**first_kwargs)
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(calls[0].input, dict) and isinstance(calls[0].input["city"], str)
    second = await client.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "12C, rain"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"


@pytest.mark.parametrize("model", THINKING_UPSTREAMS)
async def test_thinking_blocks(gateway: LiveGateway, model: str) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "What is 17 * 23?"}],
    }
    msg = await ant(gateway).messages.create(**kwargs)
    kinds = [b.type for b in msg.content]
    assert kinds[0] == "thinking" and "text" in kinds
    assert msg.content[0].thinking  # type: ignore[union-attr]
    async with ant(gateway).messages.stream(**kwargs) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == kinds
    assert final.content[0].thinking == msg.content[0].thinking  # type: ignore[union-attr]


async def test_count_tokens(gateway: LiveGateway) -> None:
    short = await ant(gateway).messages.count_tokens(
        model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello"}]
    )
    long = await ant(gateway).messages.count_tokens(
        model="anthropic/claude-sonnet-4-5",
        system="You are a careful assistant.",
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Hello " * 200}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens > 200


async def test_wrong_key_is_401(gateway: LiveGateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await ant(gateway, key="nope").messages.create(
            model="anthropic/claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert ei.value.status_code == 401
    assert ei.value.body["type"] == "error"  # type: ignore[index]


@pytest.mark.parametrize(
    "provider,model",
    [
        ("openai", "openai/gpt-4o-mini"),
        ("anthropic", "anthropic/claude-sonnet-4-5"),
        ("gemini", "gemini/gemini-2.5-flash"),
    ],
)
async def test_529_surfaces_as_overloaded(
    gateway: LiveGateway, sim_control: Any, provider: str, model: str
) -> None:
    await sim_control.fault(provider=provider, kind="529", count=1)
    with pytest.raises(anthropic.APIStatusError) as ei:
        await ant(gateway).messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert ei.value.status_code == 529
    assert type(ei.value).__name__ == "OverloadedError"


async def test_missing_max_tokens_is_anthropic_400(gateway: LiveGateway) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(
            gateway.url + "/v1/messages?beta=true",
            json={"model": "anthropic/claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {MASTER_KEY}", "anthropic-version": "2023-06-01"},
        ) as r:
            assert r.status == 400
            body = await r.json()
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in body["error"]["message"]


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"])
async def test_openai_sdk_reaches_anthropic_and_gemini(gateway: LiveGateway, model: str) -> None:
    client = oai(gateway)
    resp = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "echo:hi there"}]
    )
    assert resp.choices[0].message.content == "hi there"
    tools: Any = [
        {"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}
    ]
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "weather in Rome?"}],
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    args, name, finish, usage = "", None, None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for tc in c.delta.tool_calls or []:
                assert tc.index == 0
                name = tc.function.name if tc.function and tc.function.name else name
                args += tc.function.arguments if tc.function and tc.function.arguments else ""
    assert name == "get_weather" and finish == "tool_calls"
    assert isinstance(json.loads(args)["city"], str)
    assert usage is not None and usage.prompt_tokens > 0
