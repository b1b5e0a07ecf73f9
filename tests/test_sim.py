"""The provider simulator: wire shapes against the recordings, framing, tools, determinism, faults,
disconnect counting, and the official SDKs parsing everything it sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from fareway.sim import Dist, Profile, SimConfig, start_sim
from fareway.sim.content import value_for
from fareway.sim.profiles import INF
from fareway.sse import SseParser
from tests.conftest import anthropic_client, openai_client
from tests.recorded import fixtures_dir, load_cassette

BEARER = {"Authorization": "Bearer sk-test"}
ANTH = {"x-api-key": "sk-ant", "anthropic-version": "2023-06-01"}
GOOG = {"x-goog-api-key": "g-key"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city", "days", "unit"],
        },
    },
}


class Sim:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.s = session

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, Any]:
        async with self.s.post(self.url + path, json=body, headers=headers) as r:
            return r.status, await r.read(), r.headers

    async def chat(self, provider: str, **body: Any) -> tuple[int, bytes, Any]:
        body.setdefault("model", "m-1")
        body.setdefault("messages", [{"role": "user", "content": "hello there"}])
        return await self.post(f"/{provider}/v1/chat/completions", body, BEARER)

    async def stats(self, provider: str) -> dict[str, int]:
        async with self.s.get(self.url + "/_sim/stats") as r:
            data = await r.json()
        return data["providers"].get(provider, {})

    async def fault(self, **spec: Any) -> None:
        async with self.s.post(self.url + "/_sim/faults", json=spec) as r:
            assert r.status == 200, await r.text()


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Sim]:
    cfg = SimConfig.default()
    cfg.seed = 11
    cfg.providers["slowai"] = Profile(ttft=Dist.fixed(0.0), tokens_per_s=40.0, output_tokens=200)
    handle = await start_sim("127.0.0.1", 0, cfg)
    async with aiohttp.ClientSession() as s:
        yield Sim(handle.url, s)
    await handle.stop()


@pytest.fixture(autouse=True)
async def _clear_faults(sim: Sim) -> AsyncIterator[None]:
    yield
    async with sim.s.delete(sim.url + "/_sim/faults") as r:
        assert r.status == 200


def sse_events(body: bytes) -> list[Any]:
    p = SseParser()
    return p.feed(body) + p.close()


def chunks(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in sse_events(body) if e.data != "[DONE]"]


def recorded_json(provider: str, name: str, index: int = 0) -> dict[str, Any]:
    d = fixtures_dir()
    if d is None:
        pytest.skip("recorded fixtures not found")
    it = load_cassette(d / provider / name)[index]
    return json.loads(it.body)


def recorded_stream(provider: str, name: str, index: int = 0) -> list[dict[str, Any]]:
    d = fixtures_dir()
    if d is None:
        pytest.skip("recorded fixtures not found")
    it = load_cassette(d / provider / name)[index]
    return [json.loads(e.data) for e in sse_events(it.body) if e.data.strip() not in ("[DONE]", "")]


# --- shapes against the recordings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "fixture"),
    [
        ("openai", "test_valid_response.yaml"),
        ("cerebras", "test_cerebras_model_simple.yaml"),
        ("groq", "test_tool_choice_matrix[tools_plus_output-groq].yaml"),
        ("mistral", "test_mistral_forwards_penalties.yaml"),
        ("openrouter", "test_openrouter_cache_messages_anthropic_real_api.yaml"),
    ],
)
async def test_non_stream_top_level_keys_match_recording(sim: Sim, provider: str, fixture: str) -> None:
    rec = recorded_json(provider, fixture)
    status, body, _ = await sim.chat(provider)
    assert status == 200
    got = orjson.loads(body)
    assert set(got) == set(rec)
    assert set(got["choices"][0]) == set(rec["choices"][0])
    assert set(got["usage"]) <= set(rec["usage"]) | {"prompt_tokens_details", "completion_tokens_details"}


async def test_openai_usage_and_message_match_recording(sim: Sim) -> None:
    rec = recorded_json("openai", "test_valid_response.yaml")
    got = orjson.loads((await sim.chat("openai"))[1])
    assert set(got["usage"]) == set(rec["usage"])
    assert set(got["usage"]["completion_tokens_details"]) == set(rec["usage"]["completion_tokens_details"])
    assert set(got["choices"][0]["message"]) == set(rec["choices"][0]["message"])
    assert got["id"].startswith("chatcmpl-") and got["system_fingerprint"].startswith("fp_")
    u = got["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


async def test_cerebras_time_info_keys(sim: Sim) -> None:
    rec = recorded_json("cerebras", "test_cerebras_model_simple.yaml")
    got = orjson.loads((await sim.chat("cerebras"))[1])
    assert set(got["time_info"]) == set(rec["time_info"])
    _, body, _ = await sim.chat("cerebras", stream=True)
    last = chunks(body)[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and "time_info" in last and "usage" in last


async def test_anthropic_non_stream_keys_match_recording(sim: Sim) -> None:
    rec = recorded_json("anthropic", "test_multiple_parallel_tool_calls.yaml", 1)
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    status, raw, _ = await sim.post("/anthropic/v1/messages?beta=true", body, ANTH)
    assert status == 200
    got = orjson.loads(raw)
    assert set(got) == set(rec)
    assert set(rec["usage"]) <= set(got["usage"])
    assert got["id"].startswith("msg_01") and got["stop_reason"] == "end_turn"


async def test_gemini_non_stream_keys_match_recording(sim: Sim) -> None:
    rec = recorded_json("gemini", "test_tool_choice_matrix[required-google].yaml")
    body = {
        "contents": [{"role": "user", "parts": [{"text": "weather in Paris?"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
                ]
            }
        ],
    }
    status, raw, _ = await sim.post("/gemini/v1beta/models/gemini-2.5-flash:generateContent", body, GOOG)
    assert status == 200
    got = orjson.loads(raw)
    assert set(got) == set(rec)
    cand = got["candidates"][0]
    assert set(cand) == set(rec["candidates"][0])
    assert cand["finishReason"] == "STOP"
    part = cand["content"]["parts"][0]
    assert "id" not in part["functionCall"] and "thoughtSignature" in part
    assert set(part["functionCall"]["args"]) == {"city", "days", "unit"}


# --- streaming framing ---------------------------------------------------------------------------


async def test_openai_stream_sequence_with_and_without_usage(sim: Sim) -> None:
    _, body, headers = await sim.chat("openai", stream=True, stream_options={"include_usage": True})
    assert headers["Content-Type"].startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n")
    cs = chunks(body)
    assert cs[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert all(c["usage"] is None for c in cs[:-1])
    assert cs[-2]["choices"][0]["finish_reason"] == "stop"
    assert cs[-1]["choices"] == [] and cs[-1]["usage"]["completion_tokens"] == len(cs) - 3
    _, body2, _ = await sim.chat("openai", stream=True)
    cs2 = chunks(body2)
    assert "usage" not in cs2[-1] and cs2[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in cs2)
    full = orjson.loads((await sim.chat("openai"))[1])["choices"][0]["message"]["content"]
    assert text == full


async def test_groq_stream_usage_without_include_usage(sim: Sim) -> None:
    rec = recorded_stream("groq", "test_tool_use_failed_error_streaming.yaml", 2)
    _, body, _ = await sim.chat("groq", stream=True)
    cs = chunks(body)
    assert set(cs[0]["x_groq"]) == set(rec[0]["x_groq"])
    assert set(cs[-1]) == set(rec[-1])
    assert set(cs[-1]["x_groq"]) == {"id", "usage"}
    assert cs[-1]["usage"]["total_tokens"] == cs[-1]["x_groq"]["usage"]["total_tokens"]


async def test_mistral_stream_usage_on_finish_chunk(sim: Sim) -> None:
    rec = recorded_stream("mistral", "test_mistral_model_thinking_part_iter.yaml")
    _, body, _ = await sim.chat("mistral", stream=True, stream_options={"include_usage": True})
    cs = chunks(body)
    assert set(cs[-1]) == set(rec[-1]) and cs[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in cs[:-1])


async def test_openrouter_comments_and_usage_chunk_repeats_choice(sim: Sim) -> None:
    _, body, _ = await sim.chat("openrouter", stream=True, stream_options={"include_usage": True})
    assert body.startswith(b": OPENROUTER PROCESSING\n\n")
    cs = chunks(body)
    assert all(c["provider"] for c in cs)
    assert cs[-1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "cost" in cs[-1]["usage"]


async def test_anthropic_stream_padding_and_cumulative_usage(sim: Sim) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "hello"}],
    }
    _, raw, _ = await sim.post("/anthropic/v1/messages", body, ANTH)
    events = sse_events(raw)
    names = [e.event for e in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1:3] == ["content_block_start", "ping"]
    data_lines = [ln for ln in raw.split(b"\n") if ln.startswith(b'data: {"type":"content_block_delta')]
    assert any(ln.endswith(b" }") for ln in data_lines), "expected padded data lines"
    parsed = [json.loads(e.data) for e in events]
    deltas = [p["delta"]["type"] for p in parsed if p["type"] == "content_block_delta"]
    assert deltas[0] == "thinking_delta" and "signature_delta" in deltas and "text_delta" in deltas
    assert deltas.index("signature_delta") < deltas.index("text_delta")
    start_usage = parsed[0]["message"]["usage"]
    final = parsed[-2]["usage"]
    assert final["input_tokens"] == start_usage["input_tokens"]
    assert final["output_tokens"] > start_usage["output_tokens"]


async def test_gemini_sse_crlf_and_cumulative_usage(sim: Sim) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "tell me"}]}],
        "generationConfig": {"maxOutputTokens": 20},
    }
    path = "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    _, raw, headers = await sim.post(path, body, GOOG)
    assert headers["Content-Type"].startswith("text/event-stream")
    assert raw.endswith(b"\r\n\r\n") and b"[DONE]" not in raw
    frames = [f for f in raw.split(b"\r\n\r\n") if f]
    assert all(f.startswith(b"data: ") for f in frames)
    docs = [json.loads(f[6:]) for f in frames]
    counts = [d["usageMetadata"].get("candidatesTokenCount", 0) for d in docs]
    assert counts == sorted(counts) and counts[-1] == 16
    assert docs[-1]["candidates"][0]["finishReason"] == "STOP"


# --- tools ---------------------------------------------------------------------------------------


def _assert_weather_args(args: dict[str, Any]) -> None:
    assert set(args) == {"city", "days", "unit"}
    assert isinstance(args["city"], str) and isinstance(args["days"], int) and 1 <= args["days"] <= 7
    assert args["unit"] in ("c", "f")


async def test_openai_tool_call_fragments_reassemble_to_schema_valid_json(sim: Sim) -> None:
    _, body, _ = await sim.chat("openai", stream=True, tools=[WEATHER])
    cs = chunks(body)
    first = cs[0]["choices"][0]["delta"]
    assert first["content"] is None and first["tool_calls"][0]["function"]["name"] == "get_weather"
    frags = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in cs[1:-1]]
    assert len(frags) > 2
    _assert_weather_args(json.loads("".join(frags)))
    assert cs[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_result_gets_text_and_tool_choice_none(sim: Sim) -> None:
    msgs = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    got = orjson.loads((await sim.chat("openai", messages=msgs, tools=[WEATHER]))[1])
    assert got["choices"][0]["finish_reason"] == "stop" and got["choices"][0]["message"]["content"]
    got = orjson.loads((await sim.chat("openai", tools=[WEATHER], tool_choice="none"))[1])
    assert got["choices"][0]["finish_reason"] == "stop"


async def test_groq_tool_call_whole_in_one_chunk(sim: Sim) -> None:
    _, body, _ = await sim.chat("groq", stream=True, tools=[WEATHER])
    calls = [c for c in chunks(body) if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) == 1
    tc = calls[0]["choices"][0]["delta"]["tool_calls"][0]
    assert tc["id"].startswith("fc_")
    _assert_weather_args(json.loads(tc["function"]["arguments"]))


async def test_anthropic_tool_use_stream_and_no_argument_tool(sim: Sim) -> None:
    tools = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
    body = {
        "model": "c",
        "max_tokens": 100,
        "stream": True,
        "tools": tools,
        "messages": [{"role": "user", "content": "x"}],
    }
    _, raw, _ = await sim.post("/anthropic/v1/messages", body, ANTH)
    parsed = [json.loads(e.data) for e in sse_events(raw)]
    start = next(p for p in parsed if p["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["id"].startswith("toolu_")
    partial = [p["delta"]["partial_json"] for p in parsed if p["type"] == "content_block_delta"]
    assert partial[0] == "" and len(partial) > 2
    _assert_weather_args(json.loads("".join(partial)))
    assert parsed[-2]["delta"]["stop_reason"] == "tool_use"
    body["tools"] = [{"name": "noargs", "input_schema": {"type": "object", "properties": {}}}]
    _, raw, _ = await sim.post("/anthropic/v1/messages", body, ANTH)
    parsed = [json.loads(e.data) for e in sse_events(raw)]
    partial = [p["delta"]["partial_json"] for p in parsed if p["type"] == "content_block_delta"]
    assert partial == [""]


async def test_gemini_3_calls_have_ids_and_signatures(sim: Sim) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "weather"}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}},
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
    }
    _, raw, _ = await sim.post(
        "/gemini/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse", body, GOOG
    )
    docs = [json.loads(f[6:]) for f in raw.split(b"\r\n\r\n") if f]
    part = docs[0]["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["id"] and part["thoughtSignature"]
    assert isinstance(part["functionCall"]["args"]["city"], str)
    assert docs[-1]["candidates"][0]["finishReason"] == "STOP"
    _, raw, _ = await sim.post("/gemini/v1beta/models/gemini-2.0-flash:generateContent", body, GOOG)
    part = orjson.loads(raw)["candidates"][0]["content"]["parts"][0]
    assert "id" not in part["functionCall"] and "thoughtSignature" not in part


def test_schema_values_cover_common_keywords() -> None:
    import random

    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "maxLength": 4},
            "b": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 2},
            "c": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 5, "maximum": 6}]},
            "d": {"const": 3},
            "e": {"type": "string", "format": "date"},
        },
        "required": ["a", "b", "c", "d", "e"],
        "$defs": {"item": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}},
    }
    v = value_for(schema, random.Random(1))
    assert isinstance(v["a"], str) and len(v["a"]) <= 4
    assert len(v["b"]) >= 2 and all(isinstance(i["ok"], bool) for i in v["b"])
    assert 5 <= v["c"] <= 6 and v["d"] == 3 and len(v["e"]) == 10


# --- determinism, echo, limits ------------------------------------------------------------------


async def test_same_seed_same_request_same_content_across_servers() -> None:
    cfg = SimConfig(seed=5)
    a = await start_sim("127.0.0.1", 0, cfg)
    b = await start_sim("127.0.0.1", 0, SimConfig(seed=5))
    c = await start_sim("127.0.0.1", 0, SimConfig(seed=6))
    try:
        async with aiohttp.ClientSession() as s:
            outs = []
            for h in (a, b, c):
                outs.append(orjson.loads((await Sim(h.url, s).chat("openai", tools=[WEATHER]))[1]))
                outs.append(orjson.loads((await Sim(h.url, s).chat("groq"))[1]))
    finally:
        for h in (a, b, c):
            await h.stop()
    args = [
        o["choices"][0]["message"].get("tool_calls", [{}])[0].get("function", {}).get("arguments")
        for o in outs[::2]
    ]
    texts = [o["choices"][0]["message"]["content"] for o in outs[1::2]]
    assert args[0] == args[1] and texts[0] == texts[1]
    assert texts[0] != texts[2]


def test_latency_draws_are_seeded() -> None:
    import random

    d = Dist("heavy", median=0.1, sigma=0.5, tail_p=0.2, tail_mult=5)
    r1, r2 = random.Random("7:groq"), random.Random("7:groq")
    assert [d.draw(r1) for _ in range(50)] == [d.draw(r2) for _ in range(50)]
    assert all(v >= 0 for v in (Dist("lognormal", median=0.2, sigma=1).draw(r1) for _ in range(100)))
    assert Dist.from_obj(0.25).draw(r1) == 0.25
    u = Dist.from_obj({"kind": "uniform", "low": 1, "high": 2})
    assert all(1 <= u.draw(r1) <= 2 for _ in range(20))


async def test_echo_and_max_tokens(sim: Sim) -> None:
    msgs = [{"role": "user", "content": "echo: Hello,  exact   words!"}]
    got = orjson.loads((await sim.chat("openai", messages=msgs))[1])
    assert got["choices"][0]["message"]["content"] == "Hello,  exact   words!"
    got = orjson.loads((await sim.chat("openai", max_completion_tokens=3))[1])
    assert got["choices"][0]["finish_reason"] == "length" and got["usage"]["completion_tokens"] == 3
    body = {"model": "c", "max_tokens": 2, "messages": [{"role": "user", "content": "echo: a b c d"}]}
    got = orjson.loads((await sim.post("/anthropic/v1/messages", body, ANTH))[1])
    assert got["stop_reason"] == "max_tokens" and got["content"][0]["text"] == "a b"


async def test_anthropic_prompt_cache_and_count_tokens(sim: Sim) -> None:
    system = [{"type": "text", "text": "cached system words " * 40, "cache_control": {"type": "ephemeral"}}]
    body: dict[str, Any] = {
        "model": "c",
        "max_tokens": 5,
        "system": system,
        "messages": [{"role": "user", "content": "q1"}],
    }
    u1 = orjson.loads((await sim.post("/anthropic/v1/messages", body, ANTH))[1])["usage"]
    body["messages"] = [{"role": "user", "content": "another question"}]
    u2 = orjson.loads((await sim.post("/anthropic/v1/messages", body, ANTH))[1])["usage"]
    assert u1["cache_creation_input_tokens"] > 0 and u1["cache_read_input_tokens"] == 0
    assert (
        u2["cache_read_input_tokens"] == u1["cache_creation_input_tokens"]
        and u2["cache_creation_input_tokens"] == 0
    )
    total2 = u2["input_tokens"] + u2["cache_read_input_tokens"] + u2["cache_creation_input_tokens"]
    del body["max_tokens"]
    status, raw, _ = await sim.post("/anthropic/v1/messages/count_tokens", body, ANTH)
    assert status == 200 and orjson.loads(raw) == {"input_tokens": total2}


# --- auth and malformed requests ----------------------------------------------------------------


async def test_auth_and_malformed_json_in_provider_shapes(sim: Sim) -> None:
    async with sim.s.post(sim.url + "/mistral/v1/chat/completions", json={"model": "m"}) as r:
        assert r.status == 401 and (await r.json())["object"] == "error"
    async with sim.s.post(sim.url + "/groq/v1/chat/completions", data=b"{nope", headers=BEARER) as r:
        assert r.status == 400 and "error" in await r.json()
    async with sim.s.post(
        sim.url + "/anthropic/v1/messages", data=b"{}", headers={"anthropic-version": "x"}
    ) as r:
        body = await r.json()
        assert r.status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    async with sim.s.post(
        sim.url + "/anthropic/v1/messages", json={"model": "c", "messages": []}, headers={"x-api-key": "k"}
    ) as r:
        assert r.status == 400
    async with sim.s.post(sim.url + "/gemini/v1beta/models/gemini-2.0-flash:generateContent", data=b"[") as r:
        assert r.status == 401 and (await r.json())["error"]["status"] == "UNAUTHENTICATED"
    async with sim.s.get(sim.url + "/cerebras/v1/models", headers=BEARER) as r:
        data = await r.json()
        assert data["object"] == "list" and data["data"][0]["object"] == "model"


async def test_mistral_rejects_bad_tool_call_ids(sim: Sim) -> None:
    msgs = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_abc", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "1"},
    ]
    status, raw, _ = await sim.chat("mistral", messages=msgs)
    body = orjson.loads(raw)
    assert status == 400 and body["object"] == "error" and "length of 9" in body["message"]
    msgs[1]["tool_calls"][0]["id"] = msgs[2]["tool_call_id"] = "abcDEF123"
    assert (await sim.chat("mistral", messages=msgs))[0] == 200


# --- faults --------------------------------------------------------------------------------------


async def test_http_faults_with_rate_limit_headers(sim: Sim) -> None:
    await sim.fault(provider="openai", kind="429", count=1, retry_after=2)
    status, raw, headers = await sim.chat("openai")
    assert status == 429 and headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert orjson.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    assert (await sim.chat("openai"))[0] == 200  # count exhausted
    await sim.fault(provider="openai", kind="quota")
    status, raw, _ = await sim.chat("openai")
    assert status == 429 and orjson.loads(raw)["error"]["code"] == "insufficient_quota"
    await sim.fault(provider="anthropic", kind="529")
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    status, raw, _ = await sim.post("/anthropic/v1/messages", body, ANTH)
    assert status == 529 and orjson.loads(raw)["error"]["type"] == "overloaded_error"
    await sim.fault(provider="anthropic", kind="429", retry_after=3)
    status, _, headers = await sim.post("/anthropic/v1/messages", body, ANTH)
    assert status == 429 and headers["anthropic-ratelimit-requests-remaining"] == "0"
    await sim.fault(provider="gemini", kind="429")
    gbody = {"contents": [{"parts": [{"text": "x"}]}]}
    status, raw, _ = await sim.post("/gemini/v1beta/models/gemini-2.0-flash:generateContent", gbody, GOOG)
    assert status == 429 and orjson.loads(raw)["error"]["status"] == "RESOURCE_EXHAUSTED"
    for kind in ("500", "503"):
        await sim.fault(provider="mistral", model="m-1", kind=kind)
        status, raw, _ = await sim.chat("mistral")
        assert status == int(kind) and orjson.loads(raw)["object"] == "error"


async def test_fault_model_filter_and_rate(sim: Sim) -> None:
    await sim.fault(provider="groq", model="other", kind="500", count=5)
    assert (await sim.chat("groq"))[0] == 200
    await sim.fault(provider="groq", model="m-1", kind="503", rate=1.0)
    assert [(await sim.chat("groq"))[0] for _ in range(3)] == [503, 503, 503]


@pytest.mark.parametrize(
    ("provider", "check"),
    [
        ("openai", lambda evs: json.loads(evs[-1].data)["error"]["type"] == "server_error"),
        (
            "groq",
            lambda evs: evs[-1].event == "error" and json.loads(evs[-1].data)["error"]["status_code"] == 500,
        ),
        ("cerebras", lambda evs: json.loads(evs[-1].data)["status_code"] == 500),
        (
            "openrouter",
            lambda evs: json.loads(evs[-2].data)["error"]["code"] == 500 and evs[-1].data == "[DONE]",
        ),
    ],
)
async def test_stream_error_in_provider_shape(sim: Sim, provider: str, check: Any) -> None:
    await sim.fault(provider=provider, kind="stream_error", after_chunks=2)
    status, raw, _ = await sim.chat(provider, stream=True)
    assert status == 200
    evs = sse_events(raw)
    contents = [
        e
        for e in evs
        if e.data.startswith("{")
        and (json.loads(e.data).get("choices") or [{}])[0].get("delta", {}).get("content")
    ]
    assert len(contents) == 2
    assert check(evs)


async def test_anthropic_and_gemini_stream_errors(sim: Sim) -> None:
    await sim.fault(provider="anthropic", kind="stream_error", after_chunks=0)
    body = {"model": "c", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    _, raw, _ = await sim.post("/anthropic/v1/messages", body, ANTH)
    evs = sse_events(raw)
    assert [e.event for e in evs] == ["message_start", "content_block_start", "ping", "error"]
    assert json.loads(evs[-1].data)["error"]["type"] == "overloaded_error"
    await sim.fault(provider="gemini", kind="stream_error", after_chunks=1)
    _, raw, _ = await sim.post(
        "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        {"contents": [{"parts": [{"text": "x"}]}]},
        GOOG,
    )
    assert json.loads(raw.split(b"\r\n\r\n")[-2][6:])["error"]["code"] == 500


async def test_reset_closes_mid_stream(sim: Sim) -> None:
    await sim.fault(provider="xai", kind="reset", after_chunks=2)
    before = await sim.stats("xai")
    with pytest.raises(aiohttp.ClientPayloadError):
        async with sim.s.post(
            sim.url + "/xai/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
            headers=BEARER,
        ) as r:
            assert r.status == 200
            await r.read()
    after = await sim.stats("xai")
    assert after["errors_injected"] == before.get("errors_injected", 0) + 1
    assert after["disconnects"] == before.get("disconnects", 0)


async def _wait_for(sim: Sim, provider: str, key: str, value: int) -> dict[str, int]:
    for _ in range(200):
        st = await sim.stats(provider)
        if st.get(key) == value:
            return st
        await asyncio.sleep(0.01)
    raise AssertionError(f"{provider}.{key} never reached {value}: {await sim.stats(provider)}")


async def test_stall_then_client_disconnect_is_counted(sim: Sim) -> None:
    await sim.fault(provider="deepinfra", kind="stall")
    with pytest.raises(asyncio.TimeoutError):
        async with sim.s.post(
            sim.url + "/deepinfra/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
            headers=BEARER,
            timeout=aiohttp.ClientTimeout(total=0.2),
        ) as r:
            await r.read()
    st = await _wait_for(sim, "deepinfra", "disconnects", 1)
    assert st["in_flight"] == 0 and st["errors_injected"] == 1 and st["completed"] == 0


async def test_stall_after_first_sends_one_content_chunk(sim: Sim) -> None:
    await sim.fault(provider="stallco", kind="stall_after_first")
    async with sim.s.post(
        sim.url + "/stallco/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers=BEARER,
    ) as r:
        p = SseParser()
        got: list[Any] = []
        while len(got) < 2:
            got += p.feed(await r.content.readany())
        assert json.loads(got[1].data)["choices"][0]["delta"]["content"]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.content.readany(), 0.1)
    await _wait_for(sim, "stallco", "disconnects", 1)


async def test_disconnect_counter_on_early_close(sim: Sim) -> None:
    async with sim.s.post(
        sim.url + "/slowai/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
        headers=BEARER,
    ) as r:
        assert r.status == 200
        await r.content.readany()
        st = await sim.stats("slowai")
        assert st["in_flight"] == 1
        r.close()
    st = await _wait_for(sim, "slowai", "disconnects", 1)
    assert st["in_flight"] == 0 and st["completed"] == 0


async def test_reset_endpoint_zeroes_stats(sim: Sim) -> None:
    await sim.chat("resetco")
    assert (await sim.stats("resetco"))["completed"] == 1
    async with sim.s.post(sim.url + "/_sim/reset", json={"rng": True}) as r:
        assert r.status == 200
    assert (await sim.stats("resetco"))["completed"] == 0


async def test_bad_fault_spec_is_rejected(sim: Sim) -> None:
    async with sim.s.post(sim.url + "/_sim/faults", json={"kind": "explode"}) as r:
        assert r.status == 400


# --- config --------------------------------------------------------------------------------------


def test_toml_config(tmp_path: Path) -> None:
    p = tmp_path / "sim.toml"
    p.write_text(
        """
seed = 9
[providers.groq]
ttft = { kind = "lognormal", median = 0.08, sigma = 0.4 }
tokens_per_s = 900
output_tokens = 64
[providers.groq.models."llama-3.3-70b-versatile"]
ttft = 0.05
[[faults]]
provider = "groq"
kind = "429"
rate = 0.05
"""
    )
    cfg = SimConfig.load(p)
    assert cfg.seed == 9
    assert cfg.profile("groq", "x").ttft.kind == "lognormal" and cfg.profile("groq", "x").tokens_per_s == 900
    m = cfg.profile("groq", "llama-3.3-70b-versatile")
    assert m.ttft == Dist.fixed(0.05) and m.output_tokens == 64
    assert cfg.profile("openai", "x").instant and cfg.faults[0]["rate"] == 0.05
    assert cfg.model_ids("groq") == ["llama-3.3-70b-versatile"]
    demo = SimConfig.demo()
    assert demo.profile("cerebras", "x").tokens_per_s > demo.profile("openai", "x").tokens_per_s
    assert SimConfig.default().profile("anything", "x").tokens_per_s == INF


async def test_latency_profile_delays_first_token() -> None:
    cfg = SimConfig(providers={"openai": Profile(ttft=Dist.fixed(0.15))})
    h = await start_sim("127.0.0.1", 0, cfg)
    try:
        async with aiohttp.ClientSession() as s:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert (await Sim(h.url, s).chat("openai"))[0] == 200
            assert loop.time() - t0 >= 0.15
    finally:
        await h.stop()


# --- official SDKs -------------------------------------------------------------------------------


async def test_openai_sdk_parses_everything(sim: Sim) -> None:
    client = openai_client(sim.url + "/openai/v1", "sk-test")
    try:
        r = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert r.choices[0].message.content and r.usage and r.usage.total_tokens > 0
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            tools=[WEATHER],  # type: ignore[list-item]
        )
        args = ""
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.tool_calls:
                args += chunk.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[union-attr]
            if chunk.usage:
                usage = chunk.usage
        _assert_weather_args(json.loads(args))
        assert usage is not None
        for provider in ("groq", "cerebras", "mistral", "openrouter"):
            c2 = openai_client(f"{sim.url}/{provider}/v1", "k")
            async with c2.chat.completions.stream(
                model="m", messages=[{"role": "user", "content": "hi"}]
            ) as s:
                final = await s.get_final_completion()
            assert final.choices[0].message.content
            await c2.close()
        await sim.fault(provider="openai", kind="429", retry_after=1)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        models = await client.models.list()
        assert models.data
    finally:
        await client.close()


async def test_anthropic_sdk_parses_everything(sim: Sim) -> None:
    client = anthropic_client(sim.url + "/anthropic", "sk-ant")
    try:
        m = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        assert m.content[0].type == "text" and m.usage.output_tokens > 0
        async with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=300,
            thinking={"type": "enabled", "budget_tokens": 1024},
            tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            final = await stream.get_final_message()
        kinds = [b.type for b in final.content]
        assert kinds == ["thinking", "tool_use"]
        tool = final.content[1]
        assert tool.type == "tool_use"
        _assert_weather_args(tool.input)  # type: ignore[arg-type]
        assert final.stop_reason == "tool_use"
        count = await client.messages.count_tokens(model="c", messages=[{"role": "user", "content": "hi"}])
        assert count.input_tokens > 0
        await sim.fault(provider="anthropic", kind="stream_error", after_chunks=1)
        with pytest.raises(anthropic.APIStatusError):
            async with client.messages.stream(
                model="c", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                await stream.get_final_message()
        await sim.fault(provider="anthropic", kind="529")
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(
                model="c", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await client.close()


async def test_reasoning_models_on_openai_dialect(sim: Sim) -> None:
    rec = recorded_stream("groq", "test_tool_use_failed_error_streaming.yaml", 2)
    rec_reasoning = next(c for c in rec if "reasoning" in c["choices"][0]["delta"])
    _, body, _ = await sim.chat("groq", model="openai/gpt-oss-120b", stream=True)
    cs = chunks(body)
    deltas = [c["choices"][0]["delta"] for c in cs]
    reasoning = [d for d in deltas if "reasoning" in d]
    assert reasoning and set(reasoning[0]) == set(rec_reasoning["choices"][0]["delta"])
    assert deltas.index(reasoning[-1]) < max(i for i, d in enumerate(deltas) if d.get("content"))
    assert cs[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == len(reasoning)
    got = orjson.loads((await sim.chat("cerebras", model="gpt-oss-120b"))[1])
    assert got["choices"][0]["message"]["reasoning"]
    got = orjson.loads((await sim.chat("openai", model="o3", reasoning_effort="high"))[1])
    assert "reasoning" not in got["choices"][0]["message"]
    assert got["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    got = orjson.loads((await sim.chat("groq", model="llama-3.3-70b"))[1])
    assert "reasoning" not in got["choices"][0]["message"]
