"""The inbound OpenAI Chat Completions dialect: request parsing, response / stream / error encoding.

Encoded output is validated with the real ``openai`` SDK types (``ChatCompletion``,
``ChatCompletionChunk``), streams are folded with the SDK's own ``ChatCompletionStreamState`` and
also read end to end by an ``openai.OpenAI`` client over an in-process httpx transport.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from fareway.errors import (
    BadRequest,
    NotFound,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
    response_to_events,
)
from fareway.sse import SseParser
from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from fareway.wire.base import ResponseMeta, StreamEncoder, WireDialect
from fareway.wire.openai_chat import WIRE, OpenAIChatWire
from tests.recorded import cassettes, load_cassette

META = ResponseMeta(request_id="req_1", provider="openai")


def parse(body: dict[str, Any]) -> ChatRequest:
    return WIRE.parse_request(orjson.dumps(body), {})


def req_with(**fields: Any) -> ChatRequest:
    return parse({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields})


def bad(body: Any, raw: bytes | None = None) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        WIRE.parse_request(raw if raw is not None else orjson.dumps(body), {})
    return info.value


# ============================================================================ request parsing


def test_protocol_and_name() -> None:
    wire: WireDialect = WIRE
    assert isinstance(WIRE, OpenAIChatWire)
    assert wire.name == "openai"
    enc: StreamEncoder = WIRE.stream_encoder(req_with(), META)
    assert enc.start() == b""


def test_minimal_request() -> None:
    req = req_with()
    assert req.model == "gpt-4o-mini"
    assert req.source_dialect == "openai"
    assert len(req.messages) == 1
    assert req.messages[0].role == "user"
    assert req.messages[0].content == [TextPart("hi")]
    assert req.stream is False and req.include_usage is False
    assert req.max_tokens is None and req.extensions == {}


def test_system_and_developer_roles() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "be kind"}]},
                {"role": "user", "content": "hi", "name": "bob"},
            ],
        }
    )
    sys_msg, dev_msg, user_msg = req.messages
    assert sys_msg.role == "system" and sys_msg.text() == "be brief" and sys_msg.extensions == {}
    assert dev_msg.role == "system" and dev_msg.text() == "be kind"
    assert dev_msg.extensions == {"openai": {"role": "developer"}}
    assert user_msg.name == "bob"
    assert req.system_text() == "be brief\nbe kind"


def test_user_content_parts() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
                        {"type": "file", "file": {"file_id": "file-1"}},
                    ],
                }
            ],
        }
    )
    text, inline, remote, audio, file = req.messages[0].content
    assert text == TextPart("look", {"openai": {"cache_control": {"type": "ephemeral"}}})
    assert isinstance(inline, ImagePart)
    assert (inline.data, inline.media_type, inline.url, inline.detail) == (
        "iVBORw0K",
        "image/png",
        None,
        "low",
    )
    assert inline.as_data_url() == "data:image/png;base64,iVBORw0K"
    assert isinstance(remote, ImagePart)
    assert (remote.url, remote.data, remote.detail) == ("https://example.com/cat.jpg", None, None)
    assert audio == OpaquePart(
        "openai", {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
    )
    assert isinstance(file, OpaquePart) and file.data["file"] == {"file_id": "file-1"}
    assert req.needs_vision()


def test_assistant_tool_calls_and_tool_results() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "name": "helper",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris" }'},
                            "extra_content": {"google": {"thought_signature": "sig"}},
                        },
                        {"id": "call_2", "type": "function", "function": {"name": "noargs"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
        }
    )
    asst = req.messages[1]
    assert asst.role == "assistant" and asst.name == "helper"
    c1, c2 = asst.content
    assert isinstance(c1, ToolCallPart) and isinstance(c2, ToolCallPart)
    assert (c1.id, c1.name, c1.arguments) == ("call_1", "get_weather", '{"city": "Paris" }')  # verbatim
    assert c1.extensions == {"openai": {"extra_content": {"google": {"thought_signature": "sig"}}}}
    assert (c2.arguments, c2.parsed_arguments()) == ("", {})
    t1, t2 = req.messages[2], req.messages[3]
    assert t1.role == "tool" and t2.role == "tool"
    assert t1.content == [ToolResultPart("call_1", [TextPart("sunny")])] and t1.extensions == {}
    r2 = t2.content[0]
    assert isinstance(r2, ToolResultPart) and r2.tool_call_id == "call_2" and r2.text() == "ab"


def test_tool_message_extras_go_on_the_result() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "tool", "tool_call_id": "c", "content": "ok", "name": "f", "is_error": False}
            ],
        }
    )
    (result,) = req.messages[0].content
    assert isinstance(result, ToolResultPart) and result.name == "f"
    assert result.extensions == {"openai": {"name": "f", "is_error": False}}
    assert req.messages[0].extensions == {}


def test_assistant_text_refusal_and_unknown_fields() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "x", "cache_hint": 1},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "no"}, {"type": "refusal", "refusal": "nope"}],
                },
                {"role": "assistant", "content": "", "refusal": "I can't", "reasoning_content": "hmm"},
            ],
        }
    )
    assert req.messages[0].extensions == {"openai": {"cache_hint": 1}}
    text, refusal = req.messages[1].content
    assert text == TextPart("no")
    assert refusal == TextPart("nope", {"openai": {"refusal": True}})
    last = req.messages[2]
    assert last.content == [TextPart(""), TextPart("I can't", {"openai": {"refusal": True}})]
    assert last.extensions == {"openai": {"reasoning_content": "hmm"}}


@pytest.mark.parametrize(
    ("fields", "max_tokens", "field"),
    [
        ({"max_tokens": 100}, 100, "max_tokens"),
        ({"max_completion_tokens": 200}, 200, "max_completion_tokens"),
        ({"max_completion_tokens": 50, "max_tokens": 50}, 50, "max_completion_tokens"),
        ({"max_tokens": None}, None, None),
    ],
)
def test_max_tokens_fields(fields: dict[str, Any], max_tokens: int | None, field: str | None) -> None:
    req = req_with(**fields)
    assert req.max_tokens == max_tokens
    if field is None:
        assert "fareway" not in req.extensions
    else:
        assert req.extensions["fareway"] == {"max_tokens_field": field}
    assert "max_tokens" not in req.extensions.get("openai", {})


def test_stream_options() -> None:
    req = req_with(stream=True, stream_options={"include_usage": True, "include_obfuscation": False})
    assert req.stream and req.include_usage
    assert req.extensions["openai"] == {"stream_options": {"include_obfuscation": False}}
    req = req_with(stream=True, stream_options={"include_usage": False})
    assert not req.include_usage and req.extensions == {}


def test_sampling_and_misc_fields() -> None:
    req = req_with(
        temperature=0,
        top_p=0.5,
        stop="END",
        seed=7,
        n=2,
        user="u-1",
        metadata={"k": "v"},
        reasoning_effort="high",
    )
    assert (req.temperature, req.top_p, req.stop, req.seed, req.n) == (0.0, 0.5, ["END"], 7, 2)
    assert (req.user, req.metadata) == ("u-1", {"k": "v"})
    assert req.thinking is not None and (req.thinking.type, req.thinking.effort) == ("enabled", "high")
    assert req_with(stop=["a", "b"]).stop == ["a", "b"]
    none = req_with(reasoning_effort="none").thinking
    assert none is not None and none.type == "disabled"


def test_tools_and_tool_choice() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping", "x_hint": 1}},
    ]
    req = req_with(tools=tools, tool_choice="required", parallel_tool_calls=False)
    t1, t2 = req.tools
    assert (t1.name, t1.description, t1.strict) == ("get_weather", "Weather", True)
    assert t1.parameters["properties"] == {"city": {"type": "string"}}
    assert (t2.name, t2.parameters, t2.extensions) == (
        "ping",
        {"type": "object", "properties": {}},
        {"openai": {"x_hint": 1}},
    )
    assert req.tool_choice is not None
    assert (req.tool_choice.mode, req.tool_choice.parallel) == ("required", False)
    named = req_with(tools=tools, tool_choice={"type": "function", "function": {"name": "ping"}}).tool_choice
    assert named is not None and (named.mode, named.name, named.parallel) == ("tool", "ping", None)
    for mode in ("none", "auto"):
        choice = req_with(tools=tools, tool_choice=mode).tool_choice
        assert choice is not None and choice.mode == mode
    implicit = req_with(tools=tools, parallel_tool_calls=True).tool_choice
    assert implicit is not None and (implicit.mode, implicit.parallel) == ("auto", True)
    # Without tools there is nothing to choose: passed through verbatim, no tool_choice invented.
    lone = req_with(parallel_tool_calls=False)
    assert lone.tool_choice is None and lone.extensions["openai"] == {"parallel_tool_calls": False}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "text"}, ("text", None, None, None, None)),
        ({"type": "json_object"}, ("json_object", None, None, None, None)),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "r",
                    "schema": {"type": "object"},
                    "strict": True,
                    "description": "d",
                },
            },
            ("json_schema", "r", {"type": "object"}, True, "d"),
        ),
    ],
)
def test_response_format(value: dict[str, Any], expected: tuple[Any, ...]) -> None:
    rf = req_with(response_format=value).response_format
    assert rf is not None
    assert (rf.type, rf.name, rf.schema, rf.strict, rf.description) == expected


def test_unmodelled_fields_pass_through_verbatim() -> None:
    extras = {
        "logprobs": True,
        "top_logprobs": 3,
        "logit_bias": {"50256": -100},
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "service_tier": "flex",
        "store": False,
        "prompt_cache_key": "k",
        "verbosity": "low",
        "modalities": ["text"],
        "prediction": {"type": "content", "content": "x"},
        "web_search_options": {},
        "safety_identifier": "s",
        "moderation": {"model": "omni-moderation-latest"},
        "something_new": [1, {"a": None}],
    }
    req = req_with(**extras, temperature=1)
    assert req.extensions["openai"] == extras
    assert req.temperature == 1.0


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ([1, 2], None, "JSON object"),
        ("text", None, "JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "model"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model", "empty"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model", "string"),
        ({"model": "m"}, "messages", "messages"),
        ({"model": "m", "messages": []}, "messages", "at least one"),
        ({"model": "m", "messages": {"role": "user"}}, "messages", "array"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "object"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", "null"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", "required"),
        (
            {"model": "m", "messages": [{"role": "system", "content": None}]},
            "messages[0].content",
            "required",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": [{"type": "video"}]},
                ],
            },
            "messages[1].content[0].type",
            "'video'",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}
                ],
            },
            "messages[0].content[0].type",
            "text",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages[0].content[0].text",
            "string",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ],
            },
            "messages[0].content[0].image_url.url",
            "http",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]}],
            },
            "messages[0].content[0].image_url",
            "object",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": {"id": "x"}}]},
            "messages[0].tool_calls",
            "array",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}
                ],
            },
            "messages[0].tool_calls[0].id",
            "string",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
            "string",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]}
                ],
            },
            "messages[0].tool_calls[0].type",
            "function",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "string",
        ),
        (
            {"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]},
            "messages[0].role",
            "legacy",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            },
            "messages[0].function_call",
            "legacy",
        ),
    ],
)
def test_malformed_requests(body: Any, param: str | None, needle: str) -> None:
    exc = bad(body)
    assert exc.param == param
    assert needle in exc.message
    assert exc.status == 400 and exc.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"max_completion_tokens": 5, "max_tokens": 6}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": []}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": True}, "stream_options"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"stop": 5}, "stop"),
        ({"stop": ["a", 1]}, "stop[1]"),
        ({"n": "2"}, "n"),
        ({"n": 0}, "n"),
        ({"seed": 1.0}, "seed"),
        ({"user": 1}, "user"),
        ({"metadata": []}, "metadata"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
            "tools[0].function.strict",
        ),
        ({"tool_choice": "any"}, "tool_choice"),
        ({"tool_choice": {"type": "allowed_tools"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
    ],
)
def test_malformed_fields(fields: dict[str, Any], param: str) -> None:
    exc = bad({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields})
    assert exc.param == param, exc.message
    assert param.split("[")[0].split(".")[0] in exc.message


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"model": "m",}', b"\xff\xfe{}", b"[" * 5000])
def test_unparseable_bodies(raw: bytes) -> None:
    exc = bad(None, raw)
    assert exc.message.startswith("could not parse the JSON body")
    assert exc.param is None


# ======================================================================= recorded OpenAI requests


def _recorded_requests() -> list[tuple[str, Any]]:
    out = []
    for path in cassettes("openai"):
        for it in load_cassette(path):
            if it.uri.endswith("/chat/completions") and isinstance(it.request_json, dict):
                out.append((f"{it.file}#{it.index}", it.request_json))
    return out


RECORDED = _recorded_requests()


@pytest.mark.skipif(not RECORDED, reason="shared/fixtures is not present")
@pytest.mark.parametrize(("name", "body"), RECORDED, ids=[n for n, _ in RECORDED])
def test_recorded_requests_parse(name: str, body: dict[str, Any]) -> None:
    req = WIRE.parse_request(orjson.dumps(body), {})
    assert req.model == body["model"]
    assert len(req.messages) == len(body["messages"])
    assert req.stream == bool(body.get("stream"))
    assert req.include_usage == bool((body.get("stream_options") or {}).get("include_usage"))
    assert [t.name for t in req.tools] == [t["function"]["name"] for t in body.get("tools", [])]
    for msg, raw in zip(req.messages, body["messages"], strict=True):
        if raw["role"] == "tool":
            assert isinstance(msg.content[0], ToolResultPart)
            assert msg.content[0].tool_call_id == raw["tool_call_id"]
        for call, raw_call in zip(
            [p for p in msg.content if isinstance(p, ToolCallPart)], raw.get("tool_calls") or [], strict=True
        ):
            assert call.arguments == raw_call["function"]["arguments"]


@pytest.mark.skipif(not RECORDED, reason="shared/fixtures is not present")
def test_recorded_specifics() -> None:
    by = dict(RECORDED)
    native = WIRE.parse_request(orjson.dumps(by["test_openai_native_output.yaml#0"]), {})
    assert native.response_format is not None and native.response_format.name == "result"
    assert native.response_format.strict is False
    assert native.n == 1 and native.tool_choice is not None and native.tool_choice.mode == "auto"
    moderation = WIRE.parse_request(orjson.dumps(by["test_openai_moderation_stream.yaml#0"]), {})
    assert moderation.extensions["openai"] == {"moderation": {"model": "omni-moderation-latest"}}
    required = WIRE.parse_request(orjson.dumps(by["test_tool_choice_matrix[required-openai].yaml#0"]), {})
    assert required.tool_choice is not None and required.tool_choice.mode == "required"
    assert required.tools[0].strict is True
    system = WIRE.parse_request(orjson.dumps(by["test_openai_o1_mini_system_role[system].yaml#0"]), {})
    assert system.system_text() == "You are a helpful assistant."


# =========================================================================== response encoding


def completion(
    resp: ChatResponse, req: ChatRequest | None = None, meta: ResponseMeta = META
) -> ChatCompletion:
    body = WIRE.encode_response(resp, req or req_with(), meta)
    return ChatCompletion.model_validate_json(body)


def test_encode_text_response() -> None:
    resp = ChatResponse(
        id="chatcmpl-abc",
        model="gpt-4o-mini-2024-07-18",
        content=[TextPart("Hello "), TextPart("there")],
        finish_reason="stop",
        usage=Usage(input_tokens=12, output_tokens=3, cached_input_tokens=4, reasoning_tokens=1),
        created=1_700_000_000,
    )
    raw = orjson.loads(WIRE.encode_response(resp, req_with(), META))
    assert raw == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 1},
            "cost": "unknown",  # no cost in the meta: the call could not be priced
        },
    }
    cc = completion(resp)
    assert cc.choices[0].message.content == "Hello there"
    assert cc.usage is not None and cc.usage.prompt_tokens_details is not None
    assert cc.usage.prompt_tokens_details.cached_tokens == 4


def test_encode_tool_calls_and_thinking() -> None:
    resp = ChatResponse(
        id="",
        model="claude-x",
        content=[
            ThinkingPart("let me think", signature="sig"),
            ToolCallPart("toolu_1", "get_weather", '{"city":"Paris"}'),
            ToolCallPart("toolu_2", "ping", ""),
        ],
        finish_reason="tool_calls",
    )
    body = WIRE.encode_response(resp, req_with(), META)
    raw = orjson.loads(body)
    msg = raw["choices"][0]["message"]
    assert raw["id"].startswith("chatcmpl-") and isinstance(raw["created"], int)
    assert msg["content"] is None
    assert msg["reasoning_content"] == "let me think"
    assert "usage" not in raw
    cc = ChatCompletion.model_validate_json(body)
    calls = cc.choices[0].message.tool_calls or []
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_1", "function", "get_weather", '{"city":"Paris"}'),
        ("toolu_2", "function", "ping", "{}"),
    ]
    assert cc.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("canonical", "openai_reason"),
    [
        ("stop", "stop"),
        ("stop_sequence", "stop"),
        ("pause", "stop"),
        ("error", "stop"),
        (None, "stop"),
        ("length", "length"),
        ("context_window", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
    ],
)
def test_finish_mapping(canonical: Any, openai_reason: str) -> None:
    resp = ChatResponse("id", "m", [TextPart("x")], finish_reason=canonical)
    assert completion(resp).choices[0].finish_reason == openai_reason
    enc = WIRE.stream_encoder(req_with(stream=True), META)
    body = b"".join(enc.encode(e) for e in response_to_events(resp)) + enc.close(META)
    final, _ = accumulate(body)
    assert final.choices[0].finish_reason == openai_reason


def test_cost_only_when_known() -> None:
    resp = ChatResponse("id", "m", [TextPart("x")], "stop", usage=Usage(10, 2, cache_write_tokens=3))
    priced = orjson.loads(WIRE.encode_response(resp, req_with(), ResponseMeta("r", cost_usd="0.0001234")))
    assert priced["usage"]["cost"] == 0.0001234
    assert b'"cost":0.0001234' in WIRE.encode_response(
        resp, req_with(), ResponseMeta("r", cost_usd="0.0001234")
    )
    assert priced["usage"]["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 3}
    unpriced = orjson.loads(WIRE.encode_response(resp, req_with(), ResponseMeta("r", cost_usd=None)))
    assert unpriced["usage"]["cost"] == "unknown"  # an unpriced call says so (issue 16)
    zero = orjson.loads(WIRE.encode_response(resp, req_with(), ResponseMeta("r", cost_usd="0")))
    assert zero["usage"]["cost"] == 0


def test_extensions_re_emitted() -> None:
    second = {
        "index": 1,
        "message": {"role": "assistant", "content": "Other", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = Usage(
        5,
        1,
        extensions={
            "openai": {"queue_time": 0.01, "cost": 9.9, "prompt_tokens_details": {"audio_tokens": 0}}
        },
    )
    resp = ChatResponse(
        "chatcmpl-1",
        "llama-3.3-70b",
        [TextPart("One")],
        "stop",
        usage=usage,
        created=5,
        extensions={
            "openai": {
                "system_fingerprint": "fp_1",
                "service_tier": "default",
                "time_info": {"queue_time": 0.1, "created": 1.5},
                "x_groq": {"id": "req_x"},
                "extra_choices": [second],
                "message_extra": {
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {"url": "u", "title": "t", "start_index": 0, "end_index": 1},
                        }
                    ]
                },
                "choice_extra": {"logprobs": {"content": []}},
            },
            "anthropic": {"ignored": True},
        },
    )
    body = WIRE.encode_response(resp, req_with(n=2), META)
    raw = orjson.loads(body)
    assert raw["system_fingerprint"] == "fp_1" and raw["service_tier"] == "default"
    assert raw["time_info"] == {"queue_time": 0.1, "created": 1.5} and raw["x_groq"] == {"id": "req_x"}
    assert "ignored" not in raw and "extra_choices" not in raw
    assert raw["choices"][1] == second
    assert raw["choices"][0]["logprobs"] == {"content": []}
    assert raw["choices"][0]["message"]["annotations"][0]["type"] == "url_citation"
    assert raw["usage"]["queue_time"] == 0.01
    assert raw["usage"]["cost"] == "unknown"  # the upstream's price (9.9) is not the gateway's cost
    assert raw["usage"]["prompt_tokens_details"] == {"audio_tokens": 0, "cached_tokens": 0}
    cc = ChatCompletion.model_validate_json(body)
    assert [c.message.content for c in cc.choices] == ["One", "Other"]


def test_refusal_response_and_stream() -> None:
    resp = ChatResponse("chatcmpl-r", "m", [TextPart("I can't help", {"openai": {"refusal": True}})], "stop")
    msg = completion(resp).choices[0].message
    assert (msg.content, msg.refusal) == (None, "I can't help")
    events = response_to_events(resp)
    events.insert(3, PartDelta(0, "text", " with that"))
    body = run_stream(events, req_with(stream=True))
    first = orjson.loads(frames(body)[0])["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": None, "refusal": ""}
    final, _ = accumulate(body)
    assert (final.choices[0].message.content, final.choices[0].message.refusal) == (
        None,
        "I can't help with that",
    )


def test_empty_response() -> None:
    cc = completion(ChatResponse("id", "m", [], "stop"))
    assert cc.choices[0].message.content == ""


# =========================================================================== error encoding


def test_encode_errors() -> None:
    status, body = WIRE.encode_error(
        BadRequest("'messages[2].content' must be a string", param="messages[2].content")
    )
    assert status == 400
    assert orjson.loads(body) == {
        "error": {
            "message": "'messages[2].content' must be a string",
            "type": "invalid_request_error",
            "param": "messages[2].content",
            "code": None,
        }
    }
    status, body = WIRE.encode_error(NotFound("no model 'x'"))
    assert status == 404 and orjson.loads(body)["error"]["code"] == "model_not_found"
    status, body = WIRE.encode_error(UpstreamRateLimited("slow down", provider="groq"))
    assert status == 429 and orjson.loads(body)["error"]["type"] == "rate_limit_error"
    status, _ = WIRE.encode_error(UpstreamServerError("boom", status=0))
    assert status == 502
    status, _ = WIRE.encode_error(UpstreamTimeout("slow", phase="first_token"))
    assert status == 504


def test_error_messages_are_redacted() -> None:
    leak = "bad key sk-proj-ABCDEFGHIJKLMNOP1234 rejected"
    _, body = WIRE.encode_error(UpstreamServerError(leak))
    assert b"sk-proj" not in body and b"[redacted key " in body  # the key's fingerprint
    enc = WIRE.stream_encoder(req_with(stream=True), META)
    assert b"sk-proj" not in enc.error(UpstreamServerError(leak))


# ============================================================================= streaming


def frames(body: bytes) -> list[str]:
    parser = SseParser()
    events = parser.feed(body) + parser.close()
    assert all(e.event is None for e in events)
    return [e.data for e in events]


def accumulate(
    body: bytes, *, tools: list[Any] | None = None
) -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    """Feed an encoded stream to the SDK's own chunk accumulator; checks the framing on the way."""
    data = frames(body)
    assert data[-1] == "[DONE]" and "[DONE]" not in data[:-1]
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(input_tools=tools or [])
    chunks = []
    for payload in data[:-1]:
        chunk = ChatCompletionChunk.model_validate_json(payload)
        chunks.append(chunk)
        state.handle_chunk(chunk)
    # get_final_completion() refuses finish_reason "length"; the snapshot is the same fold.
    snapshot = state.current_completion_snapshot.model_dump(mode="json", exclude_unset=False)
    return ChatCompletion.model_validate(snapshot), chunks


def run_stream(events: list[StreamEvent], req: ChatRequest, meta: ResponseMeta = META) -> bytes:
    enc = WIRE.stream_encoder(req, meta)
    return enc.start() + b"".join(enc.encode(e) for e in events) + enc.close(meta)


def test_stream_text_golden() -> None:
    events: list[StreamEvent] = [
        ResponseStart(
            "chatcmpl-9", "gpt-4o-mini-2024-07-18", 1_700_000_000, {"openai": {"system_fingerprint": "fp_9"}}
        ),
        PartStart(0, TextPart("")),
        PartDelta(0, "text", "Hel"),
        PartDelta(0, "text", ""),
        PartDelta(0, "text", "lo"),
        PartEnd(0),
        Finish("stop"),
        UsageUpdate(Usage(9, 2)),
    ]
    body = run_stream(events, req_with(stream=True))
    head = '{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_9","choices":['
    tail = ',"logprobs":null,"finish_reason":null}]}'
    assert frames(body) == [
        head + '{"index":0,"delta":{"role":"assistant","content":"","refusal":null}' + tail,
        head + '{"index":0,"delta":{"content":"Hel"}' + tail,
        head + '{"index":0,"delta":{"content":"lo"}' + tail,
        head + '{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}',
        "[DONE]",
    ]
    assert body.endswith(b"data: [DONE]\n\n")
    final, chunks = accumulate(body)
    assert final.choices[0].message.content == "Hello" and final.usage is None
    assert {(c.id, c.model, c.created, c.system_fingerprint) for c in chunks} == {
        ("chatcmpl-9", "gpt-4o-mini-2024-07-18", 1_700_000_000, "fp_9")
    }


def test_stream_usage_only_when_asked() -> None:
    events: list[StreamEvent] = [
        ResponseStart("chatcmpl-1", "m", 1),
        PartStart(0, TextPart("")),
        PartDelta(0, "text", "hi"),
        PartEnd(0),
        Finish("length"),
        UsageUpdate(Usage(7, 3, cached_input_tokens=2, reasoning_tokens=1)),
    ]
    meta = ResponseMeta("r", cost_usd="0.5")
    body = run_stream(events, req_with(stream=True, stream_options={"include_usage": True}), meta)
    data = [orjson.loads(d) for d in frames(body)[:-1]]
    assert all("usage" in d for d in data)
    assert all(d["usage"] is None for d in data[:-1])
    assert data[-2]["choices"][0]["finish_reason"] == "length"
    assert data[-1]["choices"] == []
    assert data[-1]["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
        "cost": 0.5,
    }
    final, _ = accumulate(body)
    assert final.usage is not None and final.usage.total_tokens == 10
    # Not asked: no usage chunk and no usage key at all, although the gateway had usage.
    plain = run_stream(events, req_with(stream=True), meta)
    assert all("usage" not in orjson.loads(d) for d in frames(plain)[:-1])


def test_stream_tool_calls_use_ordinals_and_reassemble() -> None:
    # Anthropic-shaped upstream: thinking at 0, text at 1, tool calls at canonical 2 and 3,
    # arguments in fragments, the second call a no-argument tool streaming only "".
    events: list[StreamEvent] = [
        ResponseStart("msg_1", "claude-sonnet", 3),
        PartStart(0, ThinkingPart("")),
        PartDelta(0, "thinking", "plan"),
        PartDelta(0, "signature", "sig"),
        PartEnd(0),
        PartStart(1, TextPart("")),
        PartDelta(1, "text", "Checking."),
        PartEnd(1),
        PartStart(2, ToolCallPart("toolu_a", "get_weather")),
        PartDelta(2, "tool_args", ""),
        PartDelta(2, "tool_args", '{"ci'),
        PartDelta(2, "tool_args", 'ty": "Par'),
        PartDelta(2, "tool_args", 'is"}'),
        PartEnd(2),
        PartStart(3, ToolCallPart("toolu_b", "ping")),
        PartDelta(3, "tool_args", ""),
        PartEnd(3),
        Finish("tool_calls"),
        UsageUpdate(Usage(30, 20)),
    ]
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "ping"}},
    ]
    body = run_stream(events, req_with(stream=True, tools=tools))
    data = [orjson.loads(d) for d in frames(body)[:-1]]
    assert data[0]["choices"][0]["delta"] == {"role": "assistant", "content": None, "reasoning_content": ""}
    fragments = [f for d in data for c in d["choices"] for f in c["delta"].get("tool_calls", [])]
    assert [f["index"] for f in fragments] == [0, 0, 0, 0, 1, 1]
    assert fragments[0] == {
        "index": 0,
        "id": "toolu_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(
        set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments[1:4]
    )
    assert fragments[5] == {"index": 1, "function": {"arguments": "{}"}}
    final, _ = accumulate(body, tools=tools)
    msg = final.choices[0].message
    assert msg.content == "Checking."
    assert msg.model_extra is not None and msg.model_extra["reasoning_content"] == "plan"
    calls = msg.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_a", "get_weather", '{"city": "Paris"}'),
        ("toolu_b", "ping", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_stream_no_argument_tool_without_part_end_is_closed_with_empty_object() -> None:
    # the stream ends (close) with the call's arguments never given and no PartEnd: close still
    # sends "{}", so the client's accumulated arguments parse (OpenAI's own no-argument calls)
    events: list[StreamEvent] = [
        ResponseStart("chatcmpl-n", "m", 1),
        PartStart(0, ToolCallPart("call_1", "ping")),
        Finish("tool_calls"),
    ]
    body = run_stream(events, req_with(stream=True))
    data = [orjson.loads(d) for d in frames(body)[:-1]]
    fragments = [f for d in data for c in d["choices"] for f in c["delta"].get("tool_calls", [])]
    assert fragments[-1] == {"index": 0, "function": {"arguments": "{}"}}
    final, _ = accumulate(body, tools=[{"type": "function", "function": {"name": "ping"}}])
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.arguments) for c in calls] == [("call_1", "{}")]  # type: ignore[union-attr]


def test_stream_finish_reason_unknown_to_the_mapping_is_stop_as_in_a_whole_response() -> None:
    resp = ChatResponse("id", "m", [TextPart("x")], finish_reason="no_such_reason")  # type: ignore[arg-type]
    assert completion(resp).choices[0].finish_reason == "stop"
    enc = WIRE.stream_encoder(req_with(stream=True), META)
    body = b"".join(enc.encode(e) for e in response_to_events(resp)) + enc.close(META)
    final, _ = accumulate(body)
    assert final.choices[0].finish_reason == "stop"


def test_stream_tool_first_chunk_shape() -> None:
    events: list[StreamEvent] = [
        ResponseStart("chatcmpl-t", "gpt-4o-mini", 1),
        PartStart(0, ToolCallPart("call_1", "multiply")),
        PartDelta(0, "tool_args", '{"a":'),
        PartDelta(0, "tool_args", "2}"),
        PartEnd(0),
        Finish("tool_calls"),
    ]
    data = [orjson.loads(d) for d in frames(run_stream(events, req_with(stream=True)))[:-1]]
    assert data[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "multiply", "arguments": ""},
            }
        ],
        "refusal": None,
    }
    assert len(data) == 4


def test_stream_without_response_start_synthesizes_id() -> None:
    events: list[StreamEvent] = [PartStart(0, TextPart("")), PartDelta(0, "text", "x"), Finish("stop")]
    data = [orjson.loads(d) for d in frames(run_stream(events, req_with(stream=True)))[:-1]]
    ids = {d["id"] for d in data}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    assert {d["model"] for d in data} == {"gpt-4o-mini"}
    assert len({d["created"] for d in data}) == 1


def test_stream_extras_and_opaque_parts() -> None:
    events: list[StreamEvent] = [
        ResponseStart("id1", "m", 1, {"openai": {"service_tier": "on_demand", "x_groq": {"id": "req_1"}}}),
        PartStart(0, OpaquePart("anthropic", {"type": "server_tool_use"})),
        PartDelta(0, "raw", "{}"),
        PartEnd(0),
        PartStart(1, TextPart("Hi")),
        Finish("stop"),
    ]
    data = [orjson.loads(d) for d in frames(run_stream(events, req_with(stream=True)))[:-1]]
    assert data[0]["x_groq"] == {"id": "req_1"} and all("x_groq" not in d for d in data[1:])
    assert all(d["service_tier"] == "on_demand" for d in data)
    assert data[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hi", "refusal": None}


def test_stream_error_frame_and_sdk_raises() -> None:
    enc = WIRE.stream_encoder(req_with(stream=True), META)
    body = enc.encode(ResponseStart("chatcmpl-e", "m", 1))
    body += enc.encode(PartStart(0, TextPart("")))
    body += enc.encode(PartDelta(0, "text", "partial"))
    err = enc.error(UpstreamServerError("upstream went away", provider="groq"))
    assert err == (
        b'data: {"error":{"message":"upstream went away","type":"api_error","param":null,"code":null}}\n\n'
    )
    client = sdk_client(body + err)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="upstream went away"):
        for chunk in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "partial"


def test_stream_empty_reply() -> None:
    body = run_stream([ResponseStart("i", "m", 1), Finish("stop")], req_with(stream=True))
    final, chunks = accumulate(body)
    assert final.choices[0].message.content == "" and len(chunks) == 2


def sdk_client(body: bytes, content_type: str = "text/event-stream") -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    return openai.OpenAI(
        api_key="test",
        base_url="http://fareway.test/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_sdk_client_reads_stream_and_response() -> None:
    resp = ChatResponse(
        "chatcmpl-s",
        "m",
        [TextPart("Hi "), ToolCallPart("call_1", "f", '{"x": 1}')],
        "tool_calls",
        usage=Usage(3, 4),
        created=2,
    )
    req = req_with(stream=True, stream_options={"include_usage": True})
    client = sdk_client(run_stream(response_to_events(resp), req))
    chunks = list(
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    client = sdk_client(WIRE.encode_response(resp, req_with(), META), "application/json")
    cc = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert (
        cc.choices[0].message.tool_calls is not None and cc.usage is not None and cc.usage.total_tokens == 7
    )


# =========================================================================== property tests

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["model", "messages", "role", "content", "type", "text", "image_url", "url", "tool_calls", "id", "function",
     "name", "arguments", "tool_call_id", "tools", "tool_choice", "stop", "max_tokens", "stream", "stream_options",
     "response_format", "json_schema", "parameters", "n", "temperature"]
)  # fmt: skip
_roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "x"])
_part_types = st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "video"])
shaped = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 5) | st.text(max_size=6) | _roles | _part_types
    | st.just("data:image/png;base64,AAAA") | st.just("https://x.test/a.png"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=16,
)  # fmt: skip
_near = st.one_of(  # values that are often almost right, to reach deep into the parser
    shaped,
    st.fixed_dictionaries(
        {"type": _part_types},
        optional={"text": shaped, "refusal": shaped, "input_audio": shaped, "file": shaped,
                  "image_url": st.one_of(shaped, st.fixed_dictionaries({"url": shaped}, optional={"detail": shaped}))},
    ),
    st.fixed_dictionaries(
        {"id": st.one_of(st.just("call_1"), shaped), "function": st.one_of(shaped, st.fixed_dictionaries(
            {"name": st.one_of(st.just("f"), shaped)}, optional={"arguments": shaped, "parameters": shaped}))},
        optional={"type": st.one_of(st.just("function"), shaped)},
    ),
)  # fmt: skip
_near_list = st.one_of(_near, st.lists(_near, max_size=3))
_message_shapes = st.fixed_dictionaries(
    {"role": _roles},
    optional={"content": _near_list, "tool_calls": _near_list, "tool_call_id": st.one_of(st.just("c"), shaped), "name": shaped,
              "refusal": shaped, "function_call": shaped},
)  # fmt: skip
shaped_request = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "messages": st.one_of(st.lists(_message_shapes, min_size=1, max_size=3), shaped),
    },
    optional={
        k: _near_list
        for k in ("tools", "tool_choice", "stop", "max_tokens", "stream_options", "response_format", "n")
    },
)


def _only_bad_request(raw: bytes) -> None:
    try:
        req = WIRE.parse_request(raw, {})
    except BadRequest as exc:
        assert exc.message and exc.status == 400
    else:
        assert isinstance(req, ChatRequest) and req.messages


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_hostile_json_values_only_raise_bad_request(value: Any) -> None:
    _only_bad_request(json.dumps(value).encode())  # stdlib: big integers too


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_request)
def test_hostile_request_shapes_only_raise_bad_request(value: Any) -> None:
    _only_bad_request(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_only_raise_bad_request(raw: bytes) -> None:
    _only_bad_request(raw)


_text = st.text(max_size=12)
_parts: st.SearchStrategy[Part] = st.one_of(
    st.builds(TextPart, _text),
    st.builds(TextPart, _text, st.just({"openai": {"refusal": True}})),
    st.builds(ThinkingPart, _text),
    st.builds(
        ToolCallPart,
        st.text("abcdef0123_", min_size=1, max_size=8).map(lambda s: "call_" + s),
        st.text("abcdefgh_", min_size=1, max_size=8),
        st.one_of(
            st.just(""),
            st.text(max_size=10),  # arguments are kept verbatim, even when not JSON
            st.dictionaries(st.text(max_size=4), st.integers(-(2**40), 2**40), max_size=3).map(
                lambda d: orjson.dumps(d).decode()
            ),
        ),
    ),
)
_usage = st.builds(
    lambda i, o, c, r: Usage(
        input_tokens=i, output_tokens=o, cached_input_tokens=min(c, i), reasoning_tokens=min(r, o)
    ),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
_responses = st.builds(
    ChatResponse,
    id=st.one_of(st.just(""), st.text("abc123", min_size=1, max_size=6).map(lambda s: "chatcmpl-" + s)),
    model=st.sampled_from(["gpt-4o-mini", "claude-x", "llama-3.3-70b"]),
    content=st.lists(_parts, max_size=5),
    finish_reason=st.sampled_from(["stop", "stop_sequence", "length", "context_window", "tool_calls", "content_filter", "pause", "error", None]),
    usage=st.one_of(st.none(), _usage),
    created=st.one_of(st.none(), st.integers(0, 2**31)),
)  # fmt: skip
_costs = st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=8).map(str))


def _expected(resp: ChatResponse) -> dict[str, Any]:
    texts = [p.text for p in resp.content if isinstance(p, TextPart) and not p.extensions]
    refusals = [p.text for p in resp.content if isinstance(p, TextPart) and p.extensions]
    calls = [p for p in resp.content if isinstance(p, ToolCallPart)]
    return {
        "text": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
        "calls": [(c.id, c.name, c.arguments or "{}") for c in calls],
        "thinking": "".join(p.text for p in resp.content if isinstance(p, ThinkingPart)),
        "finish": {
            "stop": "stop",
            "stop_sequence": "stop",
            "pause": "stop",
            "error": "stop",
            None: "stop",
            "length": "length",
            "context_window": "length",
            "tool_calls": "tool_calls",
            "content_filter": "content_filter",
        }[resp.finish_reason],
    }


def _seen(cc: ChatCompletion) -> dict[str, Any]:
    msg = cc.choices[0].message
    extra = msg.model_extra or {}
    return {
        "text": msg.content or None,
        "refusal": msg.refusal,
        "calls": [(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []],  # type: ignore[union-attr]
        "thinking": extra.get("reasoning_content") or "",
        "finish": cc.choices[0].finish_reason,
    }


def _usage_tuple(cc: ChatCompletion) -> tuple[int, int, int, int, int, float | str | None] | None:
    u = cc.usage
    if u is None:
        return None
    assert u.prompt_tokens_details is not None and u.completion_tokens_details is not None
    cost = (u.model_extra or {}).get("cost")
    return (
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        u.prompt_tokens_details.cached_tokens or 0,
        u.completion_tokens_details.reasoning_tokens or 0,
        cost,
    )


@settings(max_examples=200, deadline=None)
@given(_responses, _costs)
def test_encoded_responses_parse_back(resp: ChatResponse, cost: str | None) -> None:
    cc = completion(resp, meta=ResponseMeta("r", cost_usd=cost))
    expected = _expected(resp)
    expected["text"] = expected["text"] or None
    assert _seen(cc) == expected
    assert cc.object == "chat.completion" and cc.model == resp.model
    if resp.id:
        assert cc.id == resp.id
    if resp.usage is None:
        assert cc.usage is None
    else:
        u = resp.usage
        assert _usage_tuple(cc) == (
            u.input_tokens,
            u.output_tokens,
            u.total_tokens,
            u.cached_input_tokens,
            u.reasoning_tokens,
            "unknown" if cost is None else float(cost),
        )


@settings(max_examples=200, deadline=None)
@given(_responses, _costs, st.booleans())
def test_stream_accumulates_to_the_same_completion(
    resp: ChatResponse, cost: str | None, include_usage: bool
) -> None:
    meta = ResponseMeta("r", cost_usd=cost)
    req = req_with(stream=True, stream_options={"include_usage": include_usage})
    streamed, chunks = accumulate(run_stream(response_to_events(resp), req, meta))
    whole = completion(resp, req, meta)
    assert _seen(streamed) == _seen(whole)
    assert streamed.choices[0].message.content == whole.choices[0].message.content
    assert streamed.model == whole.model and len({c.id for c in chunks}) == 1
    if resp.id:
        assert streamed.id == whole.id == resp.id
    if include_usage:
        assert _usage_tuple(streamed) == _usage_tuple(whole)
        assert [bool(c.choices) for c in chunks][-1] is (resp.usage is None)
    else:
        assert streamed.usage is None


@st.composite
def _event_runs(draw: st.DrawFn) -> list[StreamEvent]:
    """A stream's events with runs of text deltas among the other kinds: refusal parts, empty
    texts, tool calls, thinking, an extra first-chunk field, usage."""
    ext = draw(st.sampled_from([{}, {"service_tier": "default"}, {"system_fingerprint": "fp", "x_extra": 1}]))
    events: list[StreamEvent] = [ResponseStart("chatcmpl-1", "gpt-4o-mini", 7, extensions={"openai": ext})]
    index = 0
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "refusal", "tool", "thinking"]))
        texts = draw(st.lists(st.text(max_size=5), max_size=6))
        if kind == "tool":
            events.append(PartStart(index, ToolCallPart(id=f"call_{index}", name="f")))
            events += [PartDelta(index, "tool_args", t) for t in texts]
        elif kind == "thinking":
            events.append(PartStart(index, ThinkingPart("")))
            events += [PartDelta(index, "thinking", t) for t in texts]
        else:
            part = TextPart("", {"openai": {"refusal": True}}) if kind == "refusal" else TextPart("")
            events.append(PartStart(index, part))
            events += [PartDelta(index, "text", t) for t in texts]
        events.append(PartEnd(index))
        index += 1
    events.append(Finish("stop"))
    if draw(st.booleans()):
        events.append(UsageUpdate(Usage(input_tokens=3, output_tokens=5)))
    return events


@settings(max_examples=200, deadline=None)
@given(events=_event_runs(), include_usage=st.booleans())
def test_the_text_chunk_shortcut_writes_what_the_general_encoder_writes(
    events: list[StreamEvent], include_usage: bool
) -> None:
    """The stream encoder makes the common chunk (a text delta after the first chunk) in one
    step; for any stream the bytes are those of the step-by-step path (``_delta``)."""
    req = ChatRequest(model="gpt-4o-mini", messages=[], stream=True, include_usage=include_usage)

    def run(shortcut: bool) -> bytes:
        enc: Any = WIRE.stream_encoder(req, ResponseMeta("req_1", "openai", "0.1"))
        out = [enc.start()]
        for e in events:
            out.append(enc.encode(e) if shortcut or type(e) is not PartDelta else enc._delta(e))
        out.append(enc.close(ResponseMeta("req_1", "openai", "0.1")))
        return b"".join(out)

    assert run(True) == run(False)
