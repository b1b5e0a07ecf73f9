"""The simulator's request features through the GATEWAY in demo mode (tests/conftest.py): the official
``openai`` SDK on ``/v1/chat/completions`` to ``openai/``, ``anthropic/`` and ``gemini/`` models, so the
gateway's translation into each upstream dialect and back is what is checked; then the official
``anthropic`` SDK on ``/v1/messages`` to the same three (``messages.parse``, parallel ``tool_use``).

Cases the gateway does not carry yet are ``xfail(strict=True)`` with the reason: they turn into failures
(to be unmarked) the day the gateway handles them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import anthropic
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import MASTER_KEY, LiveGateway

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]


class Part(BaseModel):
    name: str
    qty: int = Field(ge=1, le=5)


class Ticket(BaseModel):
    title: str
    severity: Literal["low", "high"]
    parts: list[Part] = Field(min_length=1)
    assignee: str | None = None


class Weather(BaseModel):
    city: str
    days: int = Field(ge=1, le=7)


class Stock(BaseModel):
    ticker: str


TOOLS = [openai.pydantic_function_tool(Weather), openai.pydantic_function_tool(Stock)]
SCHEMAS = {"Weather": Weather.model_json_schema(), "Stock": Stock.model_json_schema()}
INSTRUCTOR_SYSTEM = (
    "As a genius expert, your task is to understand the content and provide the parsed objects in json that "
    f"match the following json_schema:\n\n{json.dumps(Ticket.model_json_schema(), indent=2)}\n\n"
    "Make sure to return an instance of the JSON, not the schema itself"
)


@pytest.fixture
async def client(gateway: LiveGateway) -> Any:
    c = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0)
    yield c
    await c.close()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", MODELS)
async def test_parse_with_a_pydantic_model(client: openai.AsyncOpenAI, model: str) -> None:
    r = await client.chat.completions.parse(
        model=model, messages=user("file a ticket"), response_format=Ticket
    )
    assert isinstance(r.choices[0].message.parsed, Ticket)
    async with client.chat.completions.stream(
        model=model, messages=user("file a ticket"), response_format=Ticket
    ) as stream:
        final = await stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Ticket)


@pytest.mark.parametrize("model", MODELS)
async def test_parallel_tool_calls(client: openai.AsyncOpenAI, model: str) -> None:
    r = await client.chat.completions.parse(model=model, messages=user("weather and a stock"), tools=TOOLS)
    calls = r.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["Weather", "Stock"] and r.choices[
        0
    ].finish_reason == "tool_calls"
    assert isinstance(calls[0].function.parsed_arguments, Weather)
    assert isinstance(calls[1].function.parsed_arguments, Stock)
    assert len({c.id for c in calls}) == 2
    async with client.chat.completions.stream(model=model, messages=user("both"), tools=TOOLS) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert len(calls) == 2
    for c in calls:
        jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])


@pytest.mark.parametrize("model", MODELS[:2])
async def test_parallel_tool_calls_false_gives_one_call(client: openai.AsyncOpenAI, model: str) -> None:
    r = await client.chat.completions.create(
        model=model, messages=user("weather and a stock"), tools=TOOLS, parallel_tool_calls=False
    )
    assert len(r.choices[0].message.tool_calls or []) == 1


async def test_gemini_cannot_forbid_parallel_calls_and_says_so(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODELS[2], messages=user("weather and a stock"), tools=TOOLS, parallel_tool_calls=False
    )
    assert "parallel_tool_calls" in raw.headers.get("x-fareway-dropped-params", "")
    assert len(raw.parse().choices[0].message.tool_calls or []) == 2


@pytest.mark.parametrize("model", MODELS)
async def test_instructor_json_mode(client: openai.AsyncOpenAI, model: str) -> None:
    msgs: list[Any] = [{"role": "system", "content": INSTRUCTOR_SYSTEM}, *user("the printer is on fire")]
    r = await client.chat.completions.create(
        model=model, messages=msgs, response_format={"type": "json_object"}
    )
    Ticket.model_validate_json(r.choices[0].message.content or "")


@pytest.mark.parametrize("model", MODELS)
async def test_json_object_without_a_schema_is_a_json_object(client: openai.AsyncOpenAI, model: str) -> None:
    # no schema anywhere in the prompt: the reply is still one JSON object (on anthropic/ by the
    # instruction the gateway adds to the system prompt, streamed or not)
    msgs: list[Any] = [{"role": "user", "content": "describe the weather as json"}]
    r = await client.chat.completions.create(
        model=model, messages=msgs, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
    text = ""
    async for chunk in await client.chat.completions.create(
        model=model, messages=msgs, response_format={"type": "json_object"}, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("model", MODELS)
async def test_instructor_md_json_mode(client: openai.AsyncOpenAI, model: str) -> None:
    msgs: list[Any] = [{"role": "system", "content": INSTRUCTOR_SYSTEM}, *user("the printer is on fire")]
    r = await client.chat.completions.create(model=model, messages=msgs)
    Ticket.model_validate_json(r.choices[0].message.content or "")


async def test_n_choices_openai(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model=MODELS[0], messages=user("say more"), n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content != r.choices[1].message.content


async def test_n_choices_anthropic_is_refused_in_openai_shape(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model=MODELS[1], messages=user("say more"), n=2)
    assert exc.value.param == "n"


async def test_n_choices_gemini(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model=MODELS[2], messages=user("say more"), n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert all(texts) and len(set(texts)) == 3
    assert [c.finish_reason for c in r.choices] == ["stop"] * 3
    # choice 0 is what n=1 gets (the simulator's content is keyed by the conversation)
    one = await client.chat.completions.create(model=MODELS[2], messages=user("say more"))
    assert one.choices[0].message.content == texts[0]


async def test_n_choices_gemini_with_tools_have_distinct_call_ids(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model=MODELS[2], messages=user("weather and a stock"), tools=TOOLS, n=2
    )
    assert [c.index for c in r.choices] == [0, 1]
    ids = [t.id for c in r.choices for t in c.message.tool_calls or []]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert all(c.finish_reason == "tool_calls" for c in r.choices)


async def test_logprobs_openai(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model=MODELS[0], messages=user("echo: a b c"), logprobs=True, top_logprobs=2
    )
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None
    assert "".join(t.token for t in lp.content) == "a b c"


@pytest.mark.parametrize("model", MODELS)
async def test_stop_and_max_tokens(client: openai.AsyncOpenAI, model: str) -> None:
    r = await client.chat.completions.create(
        model=model, messages=user("echo: one two STOP three"), stop=["STOP"]
    )
    assert r.choices[0].message.content == "one two " and r.choices[0].finish_reason == "stop"
    r = await client.chat.completions.create(model=model, messages=user("describe"), max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


# ---------------------------------------------------------------- the Anthropic SDK as the client


@pytest.fixture
async def claude(gateway: LiveGateway) -> Any:
    c = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0)
    yield c
    await c.close()


@pytest.mark.parametrize("model", MODELS)
async def test_anthropic_client_parse_with_a_pydantic_model(
    claude: anthropic.AsyncAnthropic, model: str
) -> None:
    m = await claude.messages.parse(
        model=model, max_tokens=1024, messages=user("file a ticket"), output_format=Ticket
    )
    assert isinstance(m.parsed_output, Ticket) and m.stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
async def test_anthropic_client_parallel_tool_use(claude: anthropic.AsyncAnthropic, model: str) -> None:
    tools: Any = [
        {"name": name, "description": name, "input_schema": schema} for name, schema in SCHEMAS.items()
    ]
    m = await claude.messages.create(
        model=model, max_tokens=1024, messages=user("weather and a stock"), tools=tools
    )
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [b.name for b in uses] == ["Weather", "Stock"] and m.stop_reason == "tool_use"
    for b in uses:
        jsonschema.validate(b.input, SCHEMAS[b.name])
    assert len({b.id for b in uses}) == 2


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_gemini_dropped_params_name_only_client_parameters(
    client: openai.AsyncOpenAI, field: str
) -> None:
    # the gateway's note of how max_tokens was spelt is not a parameter the client sent and lost
    raw = await client.chat.completions.with_raw_response.create(
        model=MODELS[2], messages=user("hi"), logit_bias={"1": 2}, **{field: 20}
    )
    assert raw.headers.get("x-fareway-dropped-params") == "logit_bias"
