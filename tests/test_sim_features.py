"""The simulator honours what requests ask, in all three upstream dialects, streamed and not:
structured output (OpenAI ``response_format``, Anthropic ``output_config`` and forced tools, Gemini
``responseMimeType``/``responseSchema``), parallel tool calls, ``n``, ``logprobs``, stop sequences and
output-token limits.  Checked with the official ``openai`` and ``anthropic`` SDKs and raw aiohttp for
Gemini; whether generated JSON is valid is decided by ``jsonschema``, never by the generator."""

from __future__ import annotations

import datetime
import enum
import json
import random
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import anthropic
import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from fareway.sim import SimConfig, start_sim
from fareway.sim.schema import value_for
from fareway.sse import SseParser

GOOG = {"x-goog-api-key": "g-key"}
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    # jsonschema checks date-time only with an optional extra; RFC 3339 needs a "T" and an offset
    if not isinstance(value, str):
        return True
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value and parsed.tzinfo is not None


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def assert_valid(value: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=FORMATS).validate(value)


# --- models as users write them ------------------------------------------------------------------


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class LineItem(BaseModel):
    sku: str = Field(min_length=3, max_length=12)
    quantity: int = Field(ge=1, le=9)
    price: float = Field(gt=0, le=1000)


class Address(BaseModel):
    city: str
    postcode: str | None = None


class Order(BaseModel):
    order_id: str
    status: Literal["open", "shipped", "cancelled"]
    priority: Priority
    items: list[LineItem] = Field(min_length=1, max_length=4)
    shipping: Address
    billing: Address | None = None
    tags: list[str] = []
    gift: bool


class Weather(BaseModel):
    city: str
    days: int = Field(ge=1, le=7)


class StockPrice(BaseModel):
    ticker: str
    exchange: Literal["NYSE", "NASDAQ"]


ORDER_SCHEMA = Order.model_json_schema()


@pytest.fixture(scope="module")
async def sim_url() -> AsyncIterator[str]:
    cfg = SimConfig.default()
    cfg.seed = 23
    handle = await start_sim("127.0.0.1", 0, cfg)
    yield handle.url
    await handle.stop()


@pytest.fixture
async def oai(sim_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=sim_url + "/openai/v1", api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def claude(sim_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=sim_url + "/anthropic", api_key="sk-ant", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# --- OpenAI: structured output -------------------------------------------------------------------


async def test_openai_parse_returns_a_parsed_pydantic_object(oai: openai.AsyncOpenAI) -> None:
    for prompt in ("Make up an order.", "Another order, please.", "A third one."):
        r = await oai.chat.completions.parse(model="gpt-4o", messages=user(prompt), response_format=Order)
        msg = r.choices[0].message
        assert isinstance(msg.parsed, Order)
        assert_valid(json.loads(msg.content or ""), ORDER_SCHEMA)
        assert r.choices[0].finish_reason == "stop"
    async with oai.chat.completions.stream(
        model="gpt-4o", messages=user("Stream an order."), response_format=Order
    ) as stream:
        final = await stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Order)


async def test_openai_json_schema_request_shape_and_strict_schema(oai: openai.AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string", "enum": ["yes", "no"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "sources": {"type": "array", "items": {"type": "string", "format": "uri"}, "maxItems": 2},
        },
        "required": ["answer", "confidence", "sources"],
        "additionalProperties": False,
    }
    r = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=user("Is it raining?"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": True},
        },
    )
    text = r.choices[0].message.content or ""
    assert_valid(json.loads(text), schema)
    assert r.usage is not None and r.usage.completion_tokens > 0


async def test_openai_json_object_mode_and_instructor_style_embedded_schema(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(
        model="gpt-4o",
        messages=user("Reply in JSON."),
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    # instructor's JSON mode: the schema travels in the system prompt, json_object on the wire
    system = (
        "As a genius expert, your task is to understand the content and provide the parsed objects in json "
        f"that match the following json_schema:\n\n{json.dumps(ORDER_SCHEMA, indent=2)}\n\n"
        "Make sure to return an instance of the JSON, not the schema itself"
    )
    msgs: list[Any] = [{"role": "system", "content": system}, *user("Order 3 widgets")]
    r = await oai.chat.completions.create(
        model="gpt-4o", messages=msgs, response_format={"type": "json_object"}
    )
    assert_valid(json.loads(r.choices[0].message.content or ""), ORDER_SCHEMA)
    # instructor's MD_JSON mode: no response_format, the prompt alone asks for JSON of a schema
    r = await oai.chat.completions.create(model="gpt-4o", messages=msgs)
    Order.model_validate_json(r.choices[0].message.content or "")
    with pytest.raises(openai.BadRequestError) as exc:
        await oai.chat.completions.create(
            model="gpt-4o", messages=user("hello"), response_format={"type": "json_object"}
        )
    assert exc.value.param == "messages" and "json" in exc.value.message


async def test_openai_parse_hits_the_length_limit(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        await oai.chat.completions.parse(
            model="gpt-4o", messages=user("order"), response_format=Order, max_completion_tokens=3
        )
    r = await oai.chat.completions.create(
        model="gpt-4o",
        messages=user("order"),
        response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": ORDER_SCHEMA}},
        max_tokens=3,
    )
    assert r.choices[0].finish_reason == "length" and r.usage is not None
    assert r.usage.completion_tokens == 3


# --- OpenAI: n, parallel tools, logprobs, stop, max_tokens ---------------------------------------


async def test_openai_n_choices(oai: openai.AsyncOpenAI) -> None:
    one = await oai.chat.completions.create(model="gpt-4o", messages=user("tell me more"))
    r = await oai.chat.completions.create(model="gpt-4o", messages=user("tell me more"), n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) == 3 and texts[0] == one.choices[0].message.content
    assert r.usage is not None and one.usage is not None
    words = sum(len((t or "").split()) for t in texts)
    assert r.usage.completion_tokens == words and r.usage.prompt_tokens == one.usage.prompt_tokens
    async with oai.chat.completions.stream(
        model="gpt-4o", messages=user("tell me more"), n=2, stream_options={"include_usage": True}
    ) as stream:
        seen = set()
        async for event in stream:
            if event.type == "chunk":
                seen.update(c.index for c in event.chunk.choices)
        final = await stream.get_final_completion()
    assert seen == {0, 1}
    assert [c.finish_reason for c in final.choices] == ["stop", "stop"]
    assert [c.message.content for c in final.choices] == texts[:2]
    r2 = await oai.chat.completions.parse(model="gpt-4o", messages=user("orders"), response_format=Order, n=2)
    assert all(isinstance(c.message.parsed, Order) for c in r2.choices)


async def test_groq_refuses_n_and_logprobs_as_groq_does(sim_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=sim_url + "/groq/v1", api_key="k", max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="llama-3.3-70b", messages=user("hi"), n=2)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="llama-3.3-70b", messages=user("hi"), logprobs=True)
    finally:
        await client.close()


WEATHER_TOOL = openai.pydantic_function_tool(Weather)
STOCK_TOOL = openai.pydantic_function_tool(StockPrice)
SCHEMAS = {"Weather": Weather.model_json_schema(), "StockPrice": StockPrice.model_json_schema()}


async def test_openai_parallel_tool_calls(oai: openai.AsyncOpenAI) -> None:
    tools = [WEATHER_TOOL, STOCK_TOOL]
    r = await oai.chat.completions.parse(model="gpt-4o", messages=user("weather and a stock"), tools=tools)
    calls = r.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["Weather", "StockPrice"]
    assert isinstance(calls[0].function.parsed_arguments, Weather)
    assert isinstance(calls[1].function.parsed_arguments, StockPrice)
    assert len({c.id for c in calls}) == 2 and r.choices[0].finish_reason == "tool_calls"
    r = await oai.chat.completions.parse(
        model="gpt-4o", messages=user("weather and a stock"), tools=tools, parallel_tool_calls=False
    )
    assert len(r.choices[0].message.tool_calls or []) == 1
    # one tool, several calls asked for in the prompt
    r = await oai.chat.completions.parse(
        model="gpt-4o", messages=user("Make 3 parallel calls for Paris, Oslo and Lima"), tools=[WEATHER_TOOL]
    )
    calls = r.choices[0].message.tool_calls or []
    assert len(calls) == 3 and all(isinstance(c.function.parsed_arguments, Weather) for c in calls)
    # the prompt names one of the tools
    r = await oai.chat.completions.create(
        model="gpt-4o", messages=user("use StockPrice for AAPL"), tools=tools
    )
    assert [c.function.name for c in r.choices[0].message.tool_calls or []] == ["StockPrice"]


async def test_openai_parallel_tool_calls_streamed(oai: openai.AsyncOpenAI, sim_url: str) -> None:
    tools = [WEATHER_TOOL, STOCK_TOOL]
    async with oai.chat.completions.stream(model="gpt-4o", messages=user("both"), tools=tools) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert len(calls) == 2
    for c in calls:
        assert_valid(json.loads(c.function.arguments), SCHEMAS[c.function.name])
    # the raw chunks: each call's first fragment has id/type/name under its own index
    async with aiohttp.ClientSession() as s:
        body = {"model": "gpt-4o", "stream": True, "messages": user("both"), "tools": tools}
        async with s.post(
            sim_url + "/openai/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}
        ) as resp:
            raw = await resp.read()
    p = SseParser()
    deltas = [json.loads(e.data) for e in p.feed(raw) + p.close() if e.data != "[DONE]"]
    tcs = [tc for d in deltas for c in d["choices"] for tc in c["delta"].get("tool_calls") or ()]
    heads = [tc for tc in tcs if "id" in tc]
    assert [h["index"] for h in heads] == [0, 1] and all(h["type"] == "function" for h in heads)
    args = {i: "".join(tc["function"].get("arguments", "") for tc in tcs if tc["index"] == i) for i in (0, 1)}
    for h in heads:
        assert_valid(json.loads(args[h["index"]]), SCHEMAS[h["function"]["name"]])
    # groq sends every call whole in one chunk
    client = openai.AsyncOpenAI(base_url=sim_url + "/groq/v1", api_key="k", max_retries=0)
    try:
        async with client.chat.completions.stream(model="m", messages=user("both"), tools=tools) as stream:
            final = await stream.get_final_completion()
        assert len(final.choices[0].message.tool_calls or []) == 2
    finally:
        await client.close()


async def test_openai_logprobs(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(
        model="gpt-4o", messages=user("echo: Hello there, world"), logprobs=True, top_logprobs=3
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None and lp.refusal is None
    assert "".join(t.token for t in lp.content) == r.choices[0].message.content == "Hello there, world"
    for t in lp.content:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert len({a.token for a in t.top_logprobs}) == 3
        assert all(a.logprob <= t.logprob for a in t.top_logprobs)
    plain = await oai.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert plain.choices[0].logprobs is None
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=user("echo: a b c"), logprobs=True, stream=True
    )
    tokens = []
    async for chunk in stream:
        for c in chunk.choices:
            if c.logprobs and c.logprobs.content:
                tokens += [t.token for t in c.logprobs.content]
                assert all(t.top_logprobs == [] for t in c.logprobs.content)
    assert "".join(tokens) == "a b c"
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(model="gpt-4o", messages=user("hi"), top_logprobs=2)


async def test_openai_stop_sequences_and_max_tokens(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(
        model="gpt-4o", messages=user("echo: one two three END four five"), stop=["END", "five"]
    )
    assert r.choices[0].message.content == "one two three " and r.choices[0].finish_reason == "stop"
    r = await oai.chat.completions.create(model="gpt-4o", messages=user("echo: a b c"), stop="zzz")
    assert r.choices[0].message.content == "a b c" and r.choices[0].finish_reason == "stop"
    # lorem text is cut at a word it contains
    full = await oai.chat.completions.create(model="gpt-4o", messages=user("describe"))
    text = full.choices[0].message.content or ""
    word = text.split()[3]
    r = await oai.chat.completions.create(model="gpt-4o", messages=user("describe"), stop=[word])
    assert r.choices[0].message.content == text[: text.index(word)]
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=user("echo: x y STOP z"), stop=["STOP"], stream=True
    )
    got, finish = "", None
    async for chunk in stream:
        for c in chunk.choices:
            got += c.delta.content or ""
            finish = c.finish_reason or finish
    assert got == "x y " and finish == "stop"
    r = await oai.chat.completions.create(model="gpt-4o", messages=user("describe"), max_completion_tokens=4)
    assert r.choices[0].finish_reason == "length" and r.usage is not None and r.usage.completion_tokens == 4
    assert len((r.choices[0].message.content or "").split()) == 4
    stream = await oai.chat.completions.create(
        model="gpt-4o",
        messages=user("describe"),
        max_tokens=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage, finish = None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
    assert finish == "length" and usage is not None and usage.completion_tokens == 2


# --- Anthropic -----------------------------------------------------------------------------------


async def test_anthropic_forced_tool_input_matches_its_schema(claude: anthropic.AsyncAnthropic) -> None:
    tools: Any = [
        {"name": "record_order", "description": "save", "input_schema": ORDER_SCHEMA},
        {"name": "other", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    ]
    for prompt in ("order one", "order two", "order three"):
        m = await claude.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=1024,
            tools=tools,
            tool_choice={"type": "tool", "name": "record_order"},
            messages=user(prompt),
        )
        blocks = [b for b in m.content if b.type == "tool_use"]
        assert [b.name for b in blocks] == ["record_order"] and m.stop_reason == "tool_use"
        assert_valid(blocks[0].input, ORDER_SCHEMA)
        Order.model_validate(blocks[0].input)
    async with claude.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        tools=tools,
        tool_choice={"type": "tool", "name": "record_order"},
        messages=user("streamed order"),
    ) as stream:
        final = await stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    Order.model_validate(block.input)


async def test_anthropic_structured_output_parse(claude: anthropic.AsyncAnthropic) -> None:
    for prompt in ("an order", "another order"):
        m = await claude.messages.parse(
            model="claude-sonnet-4-5", max_tokens=2048, messages=user(prompt), output_format=Order
        )
        assert isinstance(m.parsed_output, Order) and m.stop_reason == "end_turn"


async def test_anthropic_parallel_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    tools: Any = [
        {"name": "get_weather", "input_schema": SCHEMAS["Weather"]},
        {"name": "get_stock", "input_schema": SCHEMAS["StockPrice"]},
    ]
    m = await claude.messages.create(
        model="claude-haiku-4-5", max_tokens=1024, tools=tools, messages=user("weather and stock")
    )
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [b.name for b in uses] == ["get_weather", "get_stock"] and len({b.id for b in uses}) == 2
    assert_valid(uses[0].input, SCHEMAS["Weather"])
    assert_valid(uses[1].input, SCHEMAS["StockPrice"])
    m = await claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=1024,
        tools=tools,
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=user("weather and stock"),
    )
    assert len([b for b in m.content if b.type == "tool_use"]) == 1
    async with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=1024, tools=tools, messages=user("weather and stock")
    ) as stream:
        indexes = [e.index async for e in stream if e.type == "content_block_start"]
        final = await stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert indexes == [0, 1] and len(uses) == 2
    assert_valid(uses[1].input, SCHEMAS["StockPrice"])


async def test_anthropic_stop_sequences_and_max_tokens(claude: anthropic.AsyncAnthropic) -> None:
    m = await claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        stop_sequences=["Paris"],
        messages=user("echo: The beautiful city of Paris is lovely"),
    )
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "Paris"
    assert m.content[0].type == "text" and m.content[0].text == "The beautiful city of "
    async with claude.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=100,
        stop_sequences=["```"],
        messages=user("echo: code: ``` x"),
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "```"
    assert final.content[0].type == "text" and final.content[0].text == "code: "
    m = await claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=user("describe"))
    assert m.stop_reason == "max_tokens" and m.stop_sequence is None and m.usage.output_tokens == 5
    assert m.content[0].type == "text" and len(m.content[0].text.split()) == 5
    m = await claude.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=user("describe"))
    assert m.stop_reason == "end_turn"


# --- Gemini (raw HTTP) ---------------------------------------------------------------------------


async def gemini(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], stream: bool = False
) -> list[dict[str, Any]]:
    model = "gemini-2.0-flash"
    path = f"{url}/gemini/v1beta/models/{model}:" + (
        "streamGenerateContent?alt=sse" if stream else "generateContent"
    )
    async with http.post(path, json=body, headers=GOOG) as r:
        raw = await r.read()
        assert r.status == 200, raw
    if not stream:
        return [json.loads(raw)]
    return [json.loads(f[6:]) for f in raw.split(b"\r\n\r\n") if f.startswith(b"data: ")]


def gtext(docs: list[dict[str, Any]]) -> str:
    return "".join(
        p.get("text", "") for d in docs for c in d["candidates"] for p in c["content"].get("parts", ())
    )


def contents(text: str) -> list[Any]:
    return [{"role": "user", "parts": [{"text": text}]}]


async def test_gemini_json_output_with_a_schema(http: aiohttp.ClientSession, sim_url: str) -> None:
    schema = Order.model_json_schema()
    for stream in (False, True):
        body = {
            "contents": contents("an order"),
            "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
        }
        docs = await gemini(http, sim_url, body, stream)
        assert_valid(json.loads(gtext(docs)), schema)
        assert docs[-1]["candidates"][0]["finishReason"] == "STOP"
    # the OpenAPI-subset responseSchema with upper-case types, as google SDKs send it
    openapi = {
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING"},
            "rank": {"type": "INTEGER", "minimum": 1, "maximum": 3},
            "alias": {"type": "STRING", "nullable": True},
            "kind": {"type": "STRING", "format": "enum", "enum": ["capital", "port"]},
        },
        "required": ["city", "rank", "kind"],
    }
    body = {
        "contents": contents("a city"),
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": openapi},
    }
    value = json.loads(gtext(await gemini(http, sim_url, body)))
    lowered = json.loads(json.dumps(openapi).replace('"OBJECT"', '"object"').replace('"STRING"', '"string"'))
    lowered = json.loads(json.dumps(lowered).replace('"INTEGER"', '"integer"'))
    del lowered["properties"]["kind"]["format"], lowered["properties"]["alias"]["nullable"]
    assert_valid(value, lowered)
    body = {
        "contents": contents("pick"),
        "generationConfig": {
            "responseMimeType": "text/x.enum",
            "responseSchema": {"type": "STRING", "enum": ["a", "b"]},
        },
    }
    assert gtext(await gemini(http, sim_url, body)) in ("a", "b")


async def test_gemini_parallel_function_calls(http: aiohttp.ClientSession, sim_url: str) -> None:
    decls = [
        {"name": "get_weather", "parameters": SCHEMAS["Weather"]},
        {"name": "get_stock", "parametersJsonSchema": SCHEMAS["StockPrice"]},
    ]
    body = {"contents": contents("weather and stock"), "tools": [{"functionDeclarations": decls}]}
    for stream in (False, True):
        docs = await gemini(http, sim_url, body, stream)
        calls = [
            p["functionCall"]
            for d in docs
            for c in d["candidates"]
            for p in c["content"].get("parts", ())
            if "functionCall" in p
        ]
        assert [c["name"] for c in calls] == ["get_weather", "get_stock"]
        assert_valid(calls[0]["args"], SCHEMAS["Weather"])
        assert_valid(calls[1]["args"], SCHEMAS["StockPrice"])
        assert docs[-1]["candidates"][0]["finishReason"] == "STOP"
    body["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_stock"]}}
    docs = await gemini(http, sim_url, body)
    parts = docs[0]["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["name"] for p in parts] == ["get_stock"]


async def test_gemini_stop_sequences_and_max_output_tokens(http: aiohttp.ClientSession, sim_url: str) -> None:
    body: dict[str, Any] = {
        "contents": contents("echo: alpha beta STOP gamma"),
        "generationConfig": {"stopSequences": ["STOP"]},
    }
    for stream in (False, True):
        docs = await gemini(http, sim_url, body, stream)
        assert gtext(docs) == "alpha beta " and docs[-1]["candidates"][0]["finishReason"] == "STOP"
    body = {"contents": contents("describe"), "generationConfig": {"maxOutputTokens": 6}}
    for stream in (False, True):
        docs = await gemini(http, sim_url, body, stream)
        assert docs[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert docs[-1]["usageMetadata"]["candidatesTokenCount"] == 6
        assert len(gtext(docs).split()) == 6


# --- the generator against jsonschema ------------------------------------------------------------


def test_pydantic_schemas_validate_over_many_seeds() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = []
        parent: Node | None = None

    class Everything(BaseModel):
        order: Order
        orders: list[Order] = Field(max_length=2)
        pair: tuple[int, str]
        unique: set[Priority]
        scores: dict[str, float]
        node: Node
        ratio: float = Field(multiple_of=0.25, ge=0, lt=10)
        step: int = Field(multiple_of=5, gt=-20, le=20)
        code: str = Field(pattern=r"^[a-z]+$", min_length=2)
        maybe: int | str | None = None

    for model in (Order, Node, Everything):
        schema = model.model_json_schema()
        for seed in range(150):
            value = value_for(schema, random.Random(seed))
            assert_valid(value, schema)
            model.model_validate(value)


_LEAVES = st.one_of(
    st.just({"type": "string"}),
    st.builds(
        lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
        st.integers(0, 20),
        st.integers(0, 20),
    ),
    st.sampled_from(
        [{"type": "string", "format": f} for f in ("date-time", "date", "email", "uuid", "ipv4", "uri")]
    ),
    st.builds(
        lambda lo, span, excl: {
            "type": "integer",
            "minimum": lo,
            ("exclusiveMaximum" if excl else "maximum"): lo + span + 1,
        },
        st.integers(-1000, 1000),
        st.integers(0, 1000),
        st.booleans(),
    ),
    st.builds(lambda m: {"type": "integer", "multipleOf": m}, st.integers(1, 50)),
    st.builds(
        lambda lo, span: {"type": "number", "exclusiveMinimum": lo, "maximum": lo + span},
        st.floats(-1e6, 1e6, allow_nan=False),
        st.floats(0.01, 1e6, allow_nan=False),
    ),
    st.builds(lambda m: {"type": "number", "multipleOf": m}, st.sampled_from([0.5, 0.25, 2.5, 3, 0.1])),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(
        lambda xs: {"enum": xs},
        st.lists(st.one_of(st.integers(), st.text(max_size=5)), min_size=1, max_size=4),
    ),
    st.builds(lambda x: {"const": x}, st.one_of(st.integers(), st.text(max_size=5), st.booleans())),
    st.just({}),
)


def _compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.text("abcdefgh", min_size=1, max_size=4)
    obj = st.builds(
        lambda props, req_mask, extra: {
            "type": "object",
            "properties": props,
            "required": [k for k, r in zip(props, req_mask, strict=False) if r],
            "additionalProperties": extra,
        },
        st.dictionaries(names, children, max_size=4),
        st.lists(st.booleans(), min_size=4, max_size=4),
        st.one_of(st.booleans(), children),
    )
    arr = st.builds(
        lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra},
        children,
        st.integers(0, 3),
        st.integers(0, 3),
    )
    tup = st.builds(
        lambda xs: {
            "type": "array",
            "prefixItems": xs,
            "minItems": len(xs),
            "maxItems": len(xs),
            "items": False,
        },
        st.lists(children, min_size=1, max_size=3),
    )
    union = st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3))
    optional = st.builds(lambda x: {"anyOf": [x, {"type": "null"}]}, children)
    nullable_type = st.builds(
        lambda t: {"type": [t, "null"]}, st.sampled_from(["string", "integer", "boolean"])
    )
    return st.one_of(obj, arr, tup, union, optional, nullable_type)


SCHEMA_STRATEGY = st.recursive(_LEAVES, _compound, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMA_STRATEGY, seed=st.integers(0, 2**32 - 1), use_defs=st.booleans())
def test_generated_values_validate_for_generated_schemas(
    schema: dict[str, Any], seed: int, use_defs: bool
) -> None:
    if use_defs:  # the same schema reached through $ref, as Pydantic emits nested models
        schema = {
            "$defs": {"Inner": schema},
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/Inner"}},
            "required": ["x"],
        }
    value = value_for(schema, random.Random(seed))
    assert_valid(value, schema)


async def test_gemini_candidate_count(http: aiohttp.ClientSession, sim_url: str) -> None:
    body: dict[str, Any] = {"contents": contents("describe"), "generationConfig": {"candidateCount": 2}}
    doc = (await gemini(http, sim_url, body))[0]
    cands = doc["candidates"]
    assert [c["index"] for c in cands] == [0, 1] and all(c["finishReason"] == "STOP" for c in cands)
    texts = [c["content"]["parts"][0]["text"] for c in cands]
    assert texts[0] != texts[1]
    assert doc["usageMetadata"]["candidatesTokenCount"] == sum(len(t.split()) for t in texts)
    docs = await gemini(http, sim_url, body, stream=True)
    streamed = {0: "", 1: ""}
    for d in docs:
        for c in d["candidates"]:
            streamed[c["index"]] += "".join(p.get("text", "") for p in c["content"]["parts"])
    assert list(streamed.values()) == texts
    assert docs[-1]["usageMetadata"]["candidatesTokenCount"] == doc["usageMetadata"]["candidatesTokenCount"]


async def test_thinking_counts_against_the_output_limit(
    http: aiohttp.ClientSession, sim_url: str, oai: openai.AsyncOpenAI
) -> None:
    # as recorded (fixtures/gemini/test_google_model_max_tokens_thinking_model_empty_response.yaml):
    # a 2.5 model whose thoughts use the limit answers with no parts, MAX_TOKENS, no candidate tokens
    body = {
        "contents": contents("What is the capital of France?"),
        "generationConfig": {"maxOutputTokens": 5},
    }
    path = f"{sim_url}/gemini/v1beta/models/gemini-2.5-pro:generateContent"
    async with http.post(path, json=body, headers=GOOG) as r:
        doc = await r.json()
    cand = doc["candidates"][0]
    assert cand["content"] == {"role": "model"} and cand["finishReason"] == "MAX_TOKENS"
    meta = doc["usageMetadata"]
    assert "candidatesTokenCount" not in meta and meta["thoughtsTokenCount"] == 5
    assert meta["totalTokenCount"] == meta["promptTokenCount"] + 5
    r2 = await oai.chat.completions.create(
        model="o3", messages=user("think"), reasoning_effort="high", max_completion_tokens=6
    )
    assert r2.choices[0].finish_reason == "length" and r2.choices[0].message.content == ""
    assert r2.usage is not None and r2.usage.completion_tokens == 6
    assert r2.usage.completion_tokens_details is not None
    assert r2.usage.completion_tokens_details.reasoning_tokens == 6
