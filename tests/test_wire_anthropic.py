"""The inbound Anthropic Messages dialect: request parsing, response and SSE encoding (checked with
the official ``anthropic`` SDK's types and stream accumulator), errors, count_tokens."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2 as httpx
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SdkMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    StreamInterrupted,
    UpstreamAuthError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamServerError,
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
from fareway.tokens import count_tokens, estimate_text_tokens
from fareway.types import (
    ChatResponse,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from fareway.wire.anthropic import WIRE, count_tokens_request
from fareway.wire.base import ResponseMeta

META = ResponseMeta(request_id="req_abc", provider="test")


def _req(**kw: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(kw)
    return json.dumps(body).encode()


def _parse(**kw: Any) -> Any:
    return WIRE.parse_request(
        _req(**kw), {"Anthropic-Version": "2023-06-01", "anthropic-beta": "x-1", "x-api-key": "k"}
    )


# ---------------------------------------------------------------------------------- parsing


def test_parse_basic_fields_and_headers() -> None:
    req = _parse(
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["END"],
        temperature=0.5,
        top_k=5,
        metadata={"user_id": "u1", "other": 1},
        stream=True,
        service_tier="auto",
    )
    assert req.source_dialect == "anthropic" and req.stream and req.include_usage
    assert req.headers == {"anthropic-version": "2023-06-01", "anthropic-beta": "x-1"}
    assert req.messages[0].role == "system"
    assert req.messages[0].content[0].extensions == {"anthropic": {"cache_control": {"type": "ephemeral"}}}
    assert req.stop == ["END"] and req.temperature == 0.5 and req.top_k == 5 and req.user == "u1"
    assert req.extensions["anthropic"] == {"service_tier": "auto", "metadata": {"other": 1}}


def test_max_tokens_is_required() -> None:
    body = json.dumps({"model": "m", "messages": []}).encode()
    with pytest.raises(BadRequest) as ei:
        WIRE.parse_request(body, {})
    assert ei.value.param == "max_tokens" and "Field required" in ei.value.message
    assert count_tokens_request(body, {}).max_tokens is None


def test_tool_results_split_into_tool_then_user_message() -> None:
    req = _parse(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "r1"}],
                        "is_error": True,
                    },
                    {"type": "tool_result", "tool_use_id": "t2", "content": "r2"},
                    {"type": "text", "text": "and now?"},
                ],
            },
        ]
    )
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "user"]
    call = req.messages[1].content[0]
    assert isinstance(call, ToolCallPart) and json.loads(call.arguments) == {"a": 1}
    results = req.messages[2].content
    assert all(isinstance(p, ToolResultPart) for p in results) and len(results) == 2
    assert isinstance(results[0], ToolResultPart) and results[0].is_error and results[0].text() == "r1"
    assert req.messages[3].text() == "and now?"


def test_thinking_unknown_blocks_and_server_tools() -> None:
    req = _parse(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "abc"},
                    {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {"query": "q"}},
                ],
            },
        ],
        tools=[
            {"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
    )
    doc = req.messages[0].content[0]
    assert isinstance(doc, OpaquePart) and doc.data["type"] == "document"
    th, red, srv = req.messages[1].content
    assert isinstance(th, ThinkingPart) and (th.text, th.signature) == ("hmm", "sig")
    assert isinstance(red, ThinkingPart) and red.redacted == "abc"
    assert isinstance(srv, OpaquePart)
    assert [t.name for t in req.tools] == ["f"] and req.tools[0].extensions["anthropic"] == {
        "cache_control": {"type": "ephemeral"}
    }
    assert req.extensions["anthropic"]["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.parallel) == (
        "required",
        False,
    )
    assert req.thinking is not None and (req.thinking.type, req.thinking.budget_tokens) == ("enabled", 2048)
    assert req.extensions["anthropic"]["thinking"] == {"display": "summarized"}
    assert req.response_format is not None and req.response_format.schema == {"type": "object"}
    assert req.extensions["anthropic"]["output_config"] == {"effort": "high"}


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("max_tokens", "10", "max_tokens"),
        ("max_tokens", 0, "max_tokens"),
        ("temperature", "hot", "temperature"),
        ("stop_sequences", "END", "stop_sequences"),
        ("stream", "yes", "stream"),
        ("tools", [{"name": "f"}], "tools[0].input_schema"),
        ("tool_choice", {"type": "tool"}, "tool_choice.name"),
        ("thinking", {"type": "enabled"}, "thinking.budget_tokens"),
        ("system", 5, "system"),
        ("messages", [{"role": "bot", "content": "x"}], "messages[0].role"),
        (
            "messages",
            [{"role": "user", "content": [{"type": "text", "text": 3}]}],
            "messages[0].content[0].text",
        ),
        (
            "messages",
            [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}],
            "messages[0].content[0].source.media_type",
        ),
        ("metadata", {"user_id": 5}, "metadata.user_id"),
    ],
)
def test_wrong_types_are_bad_requests_with_param(field: str, value: Any, param: str) -> None:
    with pytest.raises(BadRequest) as ei:
        _parse(**{field: value})
    assert ei.value.param == param


def test_not_json_is_bad_request() -> None:
    for body in (b"{", b"[]", b"\xff\xfe", b'{"model": 1}'):
        with pytest.raises(BadRequest):
            WIRE.parse_request(body, {})


_KEYS = st.sampled_from(
    ["model", "messages", "max_tokens", "role", "content", "type", "text", "system", "tools", "tool_choice", "thinking",
     "name", "input", "input_schema", "tool_use_id", "is_error", "source", "data", "media_type", "url", "id", "signature",
     "thinking", "budget_tokens", "stop_sequences", "metadata", "user_id", "output_config", "format", "schema", "stream",
     "temperature", "top_k", "disable_parallel_tool_use", "output_format"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.sampled_from(["user", "assistant", "system", "text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
                     "base64", "url", "enabled", "adaptive", "auto", "any", "tool", "none", "json_schema", "document", ""]),
    st.text(max_size=5),
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {
            "model": st.one_of(st.just("m"), _SCALARS),
            "max_tokens": st.one_of(st.just(10), _SCALARS),
            "messages": _JSON,
        },
        optional={
            k: _JSON
            for k in (
                "system",
                "tools",
                "tool_choice",
                "thinking",
                "metadata",
                "output_config",
                "stop_sequences",
                "temperature",
            )
        },
    )
)
def test_hostile_requests_only_raise_bad_request(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    for parse in (WIRE.parse_request, count_tokens_request):
        try:
            parse(raw, {"anthropic-version": "2023-06-01"})
        except BadRequest:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_hostile_bytes_only_raise_bad_request(raw: bytes) -> None:
    try:
        WIRE.parse_request(raw, {})
    except BadRequest:
        pass


# --------------------------------------------------------------------------------- encoding


def _resp(content: list[Any], finish: Any = "stop", usage: Usage | None = None, **kw: Any) -> ChatResponse:
    return ChatResponse(
        id=kw.pop("id", "chatcmpl-123"),
        model="gpt-x",
        content=content,
        finish_reason=finish,
        usage=usage
        or Usage(input_tokens=120, output_tokens=30, cached_input_tokens=100, cache_write_tokens=5),
        **kw,
    )


SAMPLES = {
    "text": _resp([TextPart("Hello")]),
    "tools": _resp(
        [TextPart("calling"), ToolCallPart("call_1", "f", '{"x": 1}'), ToolCallPart("call_2", "g", "")],
        "tool_calls",
    ),
    "invalid_args": _resp([ToolCallPart("call_1", "f", '{"x": ')], "tool_calls"),
    "thinking": _resp(
        [ThinkingPart("let me think", "sig=="), ThinkingPart(redacted="opaque=="), TextPart("42")]
    ),
    "stop_sequence": _resp([TextPart("abc")], "stop_sequence", stop_sequence="END"),
    "opaque": _resp(
        [
            OpaquePart(
                "anthropic",
                {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
                ['{"type":"input_json_delta","partial_json":"{\\"q\\": 1}"}'],
            ),
            OpaquePart("gemini", {"x": 1}),
            TextPart("done"),
        ]
    ),
    "length": _resp([TextPart("trunc")], "length", usage=Usage(input_tokens=3, output_tokens=9)),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_encode_response_validates_with_sdk(name: str) -> None:
    resp = SAMPLES[name]
    out = json.loads(WIRE.encode_response(resp, _parse_plain(), META))
    msg = SdkMessage.model_validate(out)
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.usage.input_tokens == resp.usage.uncached_input_tokens if resp.usage else True
    if name == "tools":
        assert msg.stop_reason == "tool_use"
        assert [b.input for b in msg.content if b.type == "tool_use"] == [{"x": 1}, {}]
    if name == "invalid_args":
        assert out["content"][0]["input"] == {"_invalid_json": '{"x": '}
    if name == "stop_sequence":
        assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "END")
    if name == "opaque":
        assert out["content"][0]["input"] == {"q": 1} and len(out["content"]) == 2
    if name == "length":
        assert msg.stop_reason == "max_tokens"


def _parse_plain() -> Any:
    return WIRE.parse_request(_req(), {})


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"), ("stop_sequence", "stop_sequence"), ("length", "max_tokens"),
        ("context_window", "model_context_window_exceeded"), ("tool_calls", "tool_use"),
        ("content_filter", "refusal"), ("pause", "pause_turn"), ("error", "end_turn"), (None, "end_turn"),
    ],
)  # fmt: skip
def test_finish_mapping(finish: Any, stop: str) -> None:
    out = json.loads(WIRE.encode_response(_resp([TextPart("x")], finish), _parse_plain(), META))
    assert out["stop_reason"] == stop


def test_usage_mapping_splits_cache_counters() -> None:
    out = json.loads(WIRE.encode_response(SAMPLES["text"], _parse_plain(), META))
    assert out["usage"] == {
        "input_tokens": 15,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
        "output_tokens": 30,
    }


# ------------------------------------------------------------------------------------ stream


def _sse_events(raw: bytes) -> list[dict[str, Any]]:
    p = SseParser()
    evs = p.feed(raw) + p.close()
    out = []
    for e in evs:
        data = json.loads(e.data)
        assert e.event == data["type"]
        out.append(data)
    return out


def _check_sequence(evs: list[dict[str, Any]], *, terminal: str = "message_stop") -> None:
    types = [e["type"] for e in evs]
    assert types[0] == "message_start" and types[1] == "ping" and types[-1] == terminal
    open_idx: int | None = None
    seen: list[int] = []
    for e in evs:
        if e["type"] == "content_block_start":
            assert open_idx is None
            open_idx = e["index"]
            seen.append(e["index"])
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_idx
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_idx
            open_idx = None
        elif e["type"] in ("message_delta", "error"):
            assert open_idx is None
    assert seen == list(range(len(seen)))
    for e in evs:
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use":
            assert any(
                d["type"] == "content_block_delta"
                and d["index"] == e["index"]
                and d["delta"]["type"] == "input_json_delta"
                for d in evs
            )


def _encode(events: list[StreamEvent]) -> bytes:
    enc = WIRE.stream_encoder(_parse_plain(), META)
    return enc.start() + b"".join(enc.encode(e) for e in events) + enc.close(META)


def _sdk_accumulate(raw: bytes) -> SdkMessage:
    snap = None
    bufs: dict[int, bytes] = {}
    for data in _sse_events(raw):
        if data["type"] != "ping":
            snap = accumulate_event(event=data, current_snapshot=snap, json_bufs=bufs)
    assert snap is not None
    return SdkMessage.model_validate(snap.to_dict(warnings=False))


def _norm(m: SdkMessage) -> dict[str, Any]:
    d = m.to_dict(warnings=False)
    if d.get("stop_details") is None:
        d.pop("stop_details", None)
    for b in d["content"]:
        b.pop("parsed_output", None)
        if b.get("citations") is None:
            b.pop("citations", None)
    return d


@pytest.mark.parametrize("name", [n for n in SAMPLES if n != "invalid_args"])
def test_stream_accumulates_to_the_non_streamed_message(name: str) -> None:
    resp = SAMPLES[name]
    raw = _encode(response_to_events(resp))
    _check_sequence(_sse_events(raw))
    streamed = _sdk_accumulate(raw)
    whole = SdkMessage.model_validate(json.loads(WIRE.encode_response(resp, _parse_plain(), META)))
    assert _norm(streamed) == _norm(whole)


def test_openai_shaped_upstream_events() -> None:
    """Finish before usage, args arriving whole in the PartStart (Gemini), no-arg call, no PartEnd
    for an interleaved second call: the client still gets a complete, valid Anthropic stream."""
    events: list[StreamEvent] = [
        ResponseStart("chatcmpl-9", "gpt-x"),
        PartStart(0, TextPart("")),
        PartDelta(0, "text", "Let me check."),
        PartStart(1, ToolCallPart("call_a", "weather", '{"city": "Paris"}')),
        PartStart(2, ToolCallPart("call_b", "now", "")),
        PartEnd(1),
        PartEnd(2),
        Finish("tool_calls"),
        UsageUpdate(Usage(input_tokens=50, output_tokens=20, cached_input_tokens=10)),
    ]
    raw = _encode(events)
    evs = _sse_events(raw)
    _check_sequence(evs)
    assert (
        evs[0]["message"]["usage"]["input_tokens"] == 0 and evs[0]["message"]["usage"]["output_tokens"] == 1
    )
    final = next(e for e in evs if e["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {
        "input_tokens": 40,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 20,
    }
    msg = _sdk_accumulate(raw)
    assert [b.input for b in msg.content if b.type == "tool_use"] == [{"city": "Paris"}, {}]


def test_message_start_shows_upstream_input_usage() -> None:
    events: list[StreamEvent] = [
        ResponseStart("msg_1", "claude-x"),
        UsageUpdate(Usage(input_tokens=1000, output_tokens=1, cached_input_tokens=900)),
        PartStart(0, TextPart("")),
        PartDelta(0, "text", "hi"),
        PartEnd(0),
        UsageUpdate(Usage(input_tokens=1000, output_tokens=12, cached_input_tokens=900)),
        Finish("stop"),
    ]
    evs = _sse_events(_encode(events))
    assert evs[0]["message"]["id"] == "msg_1"
    assert (
        evs[0]["message"]["usage"]["input_tokens"] == 100
        and evs[0]["message"]["usage"]["cache_read_input_tokens"] == 900
    )
    assert evs[-2]["usage"]["output_tokens"] == 12


def test_stream_error_closes_block_then_sdk_raises_overloaded() -> None:
    enc = WIRE.stream_encoder(_parse_plain(), META)
    raw = b"".join(
        enc.encode(e)
        for e in [ResponseStart("x", "m"), PartStart(0, TextPart("")), PartDelta(0, "text", "par")]
    )
    raw += enc.error(StreamInterrupted(UpstreamOverloaded("Overloaded", provider="p")))
    evs = _sse_events(raw)
    _check_sequence(evs, terminal="error")
    assert evs[-2] == {"type": "content_block_stop", "index": 0}
    assert evs[-1]["error"]["type"] == "overloaded_error"
    # The SDK turns `event: error` into an exception while iterating the stream.
    client = anthropic.Anthropic(api_key="k", base_url="http://fareway.test")
    response = httpx.Response(
        200,
        content=raw,
        headers={"content-type": "text/event-stream"},
        request=httpx.Request("POST", "http://fareway.test/v1/messages"),
    )
    stream = anthropic.Stream(cast_to=anthropic.types.RawMessageStreamEvent, response=response, client=client)  # type: ignore[type-var]
    with pytest.raises(anthropic.APIStatusError):
        for _ in stream:
            pass


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("exc", "status", "etype"),
    [
        (BadRequest("bad"), 400, "invalid_request_error"),
        (NotFound("no model"), 404, "not_found_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (UpstreamRateLimited("slow"), 429, "rate_limit_error"),
        (UpstreamOverloaded("Overloaded"), 529, "overloaded_error"),
        (UpstreamServerError("boom", status=500), 500, "api_error"),
        (UpstreamAuthError("bad stored key", status=401), 502, "api_error"),
    ],
)
def test_encode_error(exc: Any, status: int, etype: str) -> None:
    got_status, body = WIRE.encode_error(exc)
    data = json.loads(body)
    assert got_status == status and data["type"] == "error" and data["error"]["type"] == etype


def test_overloaded_becomes_sdk_overloaded_error_and_keys_are_redacted() -> None:
    status, body = WIRE.encode_error(UpstreamOverloaded("upstream sk-ant-abcdefghijklmnop overloaded"))
    assert b"sk-ant-abcdefghijklmnop" not in body
    client = anthropic.Anthropic(api_key="k")
    resp = httpx.Response(status, content=body, request=httpx.Request("POST", "http://x/v1/messages"))
    err = client._make_status_error("x", body=json.loads(body), response=resp)
    assert isinstance(err, anthropic.OverloadedError)


# ----------------------------------------------------------------------------------- tokens


def test_count_tokens_estimates() -> None:
    assert estimate_text_tokens("") == 0
    assert 3 <= estimate_text_tokens("hello world, how are you?") <= 10
    req = count_tokens_request(
        _req(
            system="You are terse.",
            tools=[
                {
                    "name": "f",
                    "description": "d",
                    "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            ],
        ),
        {},
    )
    n = count_tokens(req)
    assert 20 <= n <= 80
