"""Replay every recorded Anthropic interaction (../shared/fixtures/anthropic) through the outbound
adapter, and the recorded requests through inbound parse -> outbound build (same-dialect lossless).

Oracle for streams: the official ``anthropic`` SDK's own accumulator over the recorded SSE.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event

from fareway.adapters.anthropic import ADAPTER
from fareway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamServerError,
)
from fareway.events import Accumulator, PartEnd, PartStart, ResponseStart, StreamEvent
from fareway.sse import SseParser
from fareway.tokens import count_tokens
from fareway.types import OpaquePart, TextPart, ThinkingPart, ToolCallPart, ToolResultPart, Upstream
from fareway.wire.anthropic import WIRE, count_tokens_request
from fareway.wire.base import ResponseMeta
from tests.recorded import Interaction, cassettes, load_cassette

INTERACTIONS: list[Interaction] = [it for p in cassettes("anthropic") for it in load_cassette(p)]
if not INTERACTIONS:
    pytest.skip("recorded fixtures (../shared/fixtures/anthropic) not found", allow_module_level=True)

IDS = [f"{it.file}#{it.index}" for it in INTERACTIONS]


def _up(model: str = "claude-x") -> Upstream:
    return Upstream(
        provider="anthropic",
        dialect="anthropic",
        base_url="https://api.anthropic.com",
        model=model,
        api_key="sk-ant-test-0000000000",
        auth_header="x-api-key",
        auth_scheme=None,
    )


def _headers(it: Interaction) -> dict[str, str]:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in it.request_headers.items()}


def _is_messages(it: Interaction) -> bool:
    return it.uri.split("?")[0].endswith("/v1/messages")


def _sdk_final(sse_body: bytes) -> dict[str, Any]:
    """The message the anthropic SDK accumulates from an SSE body."""
    snap = None
    bufs: dict[int, bytes] = {}
    for ev in SseParser().feed(sse_body) + SseParser().close():
        data = json.loads(ev.data)
        if data["type"] in ("ping", "error"):
            continue
        snap = accumulate_event(event=data, current_snapshot=snap, json_bufs=bufs)
    assert snap is not None
    return snap.to_dict(warnings=False)


def _feed_random(body: bytes, seed: int) -> list[StreamEvent]:
    rnd = random.Random(seed)
    parser = ADAPTER.stream_parser(_up())
    events: list[StreamEvent] = []
    pos = 0
    while pos < len(body):
        n = rnd.randint(1, 200)
        events += parser.feed(body[pos : pos + n])
        pos += n
    events += parser.close()
    return events


def _check_blocks(parts: list[Any], blocks: list[dict[str, Any]]) -> None:
    assert len(parts) == len(blocks)
    for part, block in zip(parts, blocks, strict=True):
        t = block["type"]
        if t == "text":
            assert isinstance(part, TextPart) and part.text == block["text"]
        elif t == "tool_use":
            assert isinstance(part, ToolCallPart)
            assert (part.id, part.name) == (block["id"], block["name"])
            assert part.parsed_arguments() == block["input"]
        elif t == "thinking":
            assert isinstance(part, ThinkingPart) and part.text == block["thinking"]
            assert (part.signature or "") == block["signature"]
        elif t == "redacted_thinking":
            assert isinstance(part, ThinkingPart) and part.redacted == block["data"]
        else:
            assert isinstance(part, OpaquePart) and part.data["type"] == t


def _check_usage(resp_usage: Any, u: dict[str, Any]) -> None:
    cw, cr = u.get("cache_creation_input_tokens") or 0, u.get("cache_read_input_tokens") or 0
    assert resp_usage.input_tokens == u["input_tokens"] + cw + cr
    assert resp_usage.cached_input_tokens == cr
    assert resp_usage.cache_write_tokens == cw
    assert resp_usage.output_tokens == u["output_tokens"]


# ------------------------------------------------------------------------------- responses


@pytest.mark.parametrize("it", INTERACTIONS, ids=IDS)
def test_response_replay(it: Interaction) -> None:
    if it.status >= 400:
        err = ADAPTER.parse_error(it.status, it.response_headers, it.body, _up())
        recorded = it.response_json()["error"]
        assert isinstance(err, UpstreamError)
        assert err.status == it.status
        assert recorded["message"] in err.message
        assert err.code == recorded["type"]
        if it.status == 404:
            assert type(err) is UpstreamClientError and not err.retryable
        if it.status == 400:
            assert type(err) is UpstreamClientError and not err.context_length
        return
    if not _is_messages(it):
        # count_tokens: {"input_tokens": N}; our offline estimate should be in the right range.
        n = it.response_json()["input_tokens"]
        req = count_tokens_request(json.dumps(it.request_json).encode(), _headers(it))
        est = count_tokens(req)
        assert 0.5 * n <= est <= 1.5 * n, (est, n)
        return
    if it.is_stream:
        expected = _sdk_final(it.body)
        events = _feed_random(it.body, seed=it.index + len(it.file))
        assert isinstance(events[0], ResponseStart)
        starts = [e.index for e in events if isinstance(e, PartStart)]
        ends = [e.index for e in events if isinstance(e, PartEnd)]
        assert starts == list(range(len(starts))) and sorted(ends) == starts
        acc = Accumulator()
        for e in events:
            acc.add(e)
        assert acc.finished
        resp = acc.result()
        raw_usage = expected["usage"]
    else:
        expected = it.response_json()
        resp = ADAPTER.parse_response(it.body, _up())
        raw_usage = expected["usage"]
    assert resp.id == expected["id"] and resp.model == expected["model"]
    _check_blocks(resp.content, expected["content"])
    _check_usage(resp.usage, raw_usage)
    stop = {"end_turn": "stop", "tool_use": "tool_calls", "stop_sequence": "stop_sequence"}
    assert resp.finish_reason == stop[expected["stop_reason"]]
    assert resp.stop_sequence == expected["stop_sequence"]


def _normalise_response(msg: dict[str, Any]) -> dict[str, Any]:
    msg = json.loads(json.dumps(msg))
    for b in msg["content"]:
        if b.get("citations") is None:
            b.pop("citations", None)
        if b["type"] == "text":
            b.pop("parsed_output", None)
    return msg


@pytest.mark.parametrize(
    "it",
    [i for i in INTERACTIONS if i.status == 200 and _is_messages(i)],
    ids=lambda i: f"{i.file}#{i.index}",
)
def test_same_dialect_response_is_lossless(it: Interaction) -> None:
    """Recorded Anthropic answer -> canonical -> our Anthropic encoding == the recorded answer."""
    req = WIRE.parse_request(json.dumps(it.request_json).encode(), _headers(it))
    meta = ResponseMeta(request_id="req_1", provider="anthropic")
    if not it.is_stream:
        resp = ADAPTER.parse_response(it.body, _up())
        assert json.loads(WIRE.encode_response(resp, req, meta)) == it.response_json()
        return
    # Stream -> canonical events -> our SSE -> the SDK's accumulation == the SDK's over the recording.
    parser = ADAPTER.stream_parser(_up())
    events = parser.feed(it.body) + parser.close()
    enc = WIRE.stream_encoder(req, meta)
    out = enc.start() + b"".join(enc.encode(e) for e in events) + enc.close(meta)
    ours, theirs = _normalise_response(_sdk_final(out)), _normalise_response(_sdk_final(it.body))
    assert ours == theirs
    # And the streamed result, accumulated canonically, encodes to the same non-streamed message
    # (citations arrive as raw deltas on text blocks, which the canonical accumulator does not keep).
    acc = Accumulator()
    for e in events:
        acc.add(e)
    whole = json.loads(WIRE.encode_response(acc.result(), req, meta))
    for b in theirs["content"]:
        b.pop("citations", None)
    for b in whole["content"]:
        b.pop("citations", None)
    for mine, sdk in zip(whole["content"], theirs["content"], strict=True):
        if sdk["type"] == "compaction":
            # The SDK does not fold compaction_delta; we do (the delta's content is the summary).
            deltas = [
                json.loads(e.data)["delta"]
                for e in SseParser().feed(it.body)
                if '"compaction_delta"' in e.data
            ]
            sdk = {**sdk, "content": "".join(d["content"] for d in deltas)}
        assert mine == sdk


# -------------------------------------------------------------------------------- requests


def _normalise_request(body: dict[str, Any]) -> dict[str, Any]:
    """The documented normalisations of a same-dialect request round trip."""
    body = json.loads(json.dumps(body))
    if isinstance(body.get("system"), list) and all(set(b) == {"type", "text"} for b in body["system"]):
        body["system"] = "\n".join(b["text"] for b in body["system"])
    for m in body["messages"]:
        if isinstance(m["content"], str):
            m["content"] = [{"type": "text", "text": m["content"]}]
        for b in m["content"]:
            if b.get("type") != "tool_result":
                continue
            c = b.get("content")
            if isinstance(c, list) and len(c) == 1 and set(c[0]) == {"type", "text"}:
                b["content"] = c[0]["text"]
            if b.get("is_error") is False:
                del b["is_error"]
    if "tools" in body:
        client = [t for t in body["tools"] if "input_schema" in t]
        body["tools"] = client + [t for t in body["tools"] if "input_schema" not in t]
    if "output_format" in body:
        body.setdefault("output_config", {})["format"] = body.pop("output_format")
    return body


@pytest.mark.parametrize(
    "it", [i for i in INTERACTIONS if _is_messages(i)], ids=lambda i: f"{i.file}#{i.index}"
)
def test_request_round_trip(it: Interaction) -> None:
    headers = _headers(it)
    req = WIRE.parse_request(json.dumps(it.request_json).encode(), headers)
    http = ADAPTER.build_request(req, _up(it.request_json["model"]))
    assert http.method == "POST"
    assert http.url == it.uri.split("?")[0]
    assert http.headers["x-api-key"] == "sk-ant-test-0000000000"
    assert http.headers["anthropic-version"] == headers.get("anthropic-version", "2023-06-01")
    assert http.stream == bool(it.request_json.get("stream"))
    assert http.dropped == []
    assert json.loads(http.body) == _normalise_request(it.request_json)


@pytest.mark.parametrize(
    "it", [i for i in INTERACTIONS if not _is_messages(i)], ids=lambda i: f"{i.file}#{i.index}"
)
def test_count_tokens_request_parses(it: Interaction) -> None:
    req = count_tokens_request(json.dumps(it.request_json).encode(), _headers(it))
    assert req.max_tokens is None and req.model == it.request_json["model"]
    assert count_tokens(req) > 0


# ------------------------------------------------------------------- synthetic stream edges


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}   \n\n".encode() for e in events)


_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "usage": {"input_tokens": 5, "output_tokens": 1},
    },
}


def test_stream_error_event_mid_stream_is_classified() -> None:
    body = _sse(
        _START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    parser = ADAPTER.stream_parser(_up())
    with pytest.raises(UpstreamOverloaded) as ei:
        parser.feed(body)
    assert "Overloaded" in ei.value.message and ei.value.retryable


def test_stream_truncated_is_a_connection_error() -> None:
    parser = ADAPTER.stream_parser(_up())
    parser.feed(_sse(_START))
    with pytest.raises(UpstreamConnectionError):
        parser.close()


def test_stream_unknown_events_and_deltas_are_tolerated() -> None:
    body = _sse(
        _START,
        {"type": "future_event", "x": 1},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "future_delta", "y": 2}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "brand_new_reason", "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    )
    parser = ADAPTER.stream_parser(_up())
    events = parser.feed(body) + parser.close()
    acc = Accumulator()
    for e in events:
        acc.add(e)
    resp = acc.result()
    assert resp.finish_reason == "stop" and resp.extensions["anthropic"]["stop_reason"] == "brand_new_reason"
    assert resp.usage is not None and resp.usage.input_tokens == 5 and resp.usage.output_tokens == 7


def test_message_delta_usage_is_cumulative_not_summed() -> None:
    start = json.loads(json.dumps(_START))
    start["message"]["usage"] = {
        "input_tokens": 10,
        "cache_read_input_tokens": 90,
        "cache_creation_input_tokens": 0,
        "output_tokens": 1,
    }
    body = _sse(
        start,
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"input_tokens": 10, "output_tokens": 30},
        },
        {"type": "message_stop"},
    )
    parser = ADAPTER.stream_parser(_up())
    acc = Accumulator()
    for e in parser.feed(body) + parser.close():
        acc.add(e)
    u = acc.result().usage
    assert u is not None
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens) == (100, 90, 30)


@pytest.mark.parametrize(
    ("status", "etype", "message", "cls"),
    [
        (429, "rate_limit_error", "slow down", UpstreamRateLimited),
        (529, "overloaded_error", "Overloaded", UpstreamOverloaded),
        (500, "api_error", "boom", UpstreamServerError),
        (401, "authentication_error", "invalid x-api-key", UpstreamAuthError),
        (403, "permission_error", "nope", UpstreamAuthError),
    ],
)
def test_parse_error_classes(status: int, etype: str, message: str, cls: type) -> None:
    body = json.dumps({"type": "error", "error": {"type": etype, "message": message}}).encode()
    err = ADAPTER.parse_error(status, {"retry-after": "7"}, body, _up())
    assert type(err) is cls and err.status == status and err.retry_after == 7.0


def test_parse_error_prompt_too_long_is_context_length() -> None:
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}'
    err = ADAPTER.parse_error(400, {}, body, _up())
    assert isinstance(err, UpstreamClientError) and err.context_length and err.retryable


def test_parse_error_non_json_body() -> None:
    err = ADAPTER.parse_error(502, {}, b"<html>bad gateway</html>", _up())
    assert isinstance(err, UpstreamServerError) and "bad gateway" in err.message


def test_stream_parser_splits_at_every_byte() -> None:
    it = next(i for i in INTERACTIONS if i.is_stream and "thinking_part_stream" in i.file)
    parser = ADAPTER.stream_parser(_up())
    events: list[StreamEvent] = []
    for k in range(len(it.body)):
        events += parser.feed(it.body[k : k + 1])
    events += parser.close()
    acc = Accumulator()
    for e in events:
        acc.add(e)
    expected = _sdk_final(it.body)
    _check_blocks(acc.result().content, expected["content"])
    assert re.match(r"^msg_", acc.result().id)


# ------------------------------------------------- building from a non-Anthropic (OpenAI) client


def _openai_req(**kw: Any) -> Any:
    from fareway.types import ChatRequest, Message

    msgs = [
        Message("system", [TextPart("Be brief.")]),
        Message("system", [TextPart("Use tools.")]),
        Message("user", [TextPart("weather?")]),
        Message(
            "assistant",
            [
                TextPart(""),
                ToolCallPart("call:1/x", "weather", ""),
                ToolCallPart("call_2", "time", '{"tz": "UTC"}'),
            ],
        ),
        Message("tool", [ToolResultPart("call:1/x", [TextPart("sunny")])]),
        Message("tool", [ToolResultPart("call_2", [TextPart("noon")])]),
        Message("user", [TextPart("thanks")]),
        Message("system", [TextPart("late system")]),
    ]
    base: dict[str, Any] = {"model": "gpt-x", "messages": msgs, "source_dialect": "openai"}
    base.update(kw)
    return ChatRequest(**base)


def test_build_from_openai_request() -> None:
    from fareway.types import ToolChoice, ToolSpec

    req = _openai_req(
        temperature=1.5,
        seed=7,
        stop=["END", "  "],
        user="u-1",
        tools=[ToolSpec("weather", "w", {"type": "object"})],
        tool_choice=ToolChoice("required", parallel=False),
        extensions={"openai": {"frequency_penalty": 0.5}},
    )
    http = ADAPTER.build_request(req, _up("claude-y"))
    body = json.loads(http.body)
    assert (
        http.url == "https://api.anthropic.com/v1/messages"
        and http.headers["anthropic-version"] == "2023-06-01"
    )
    assert body["system"] == "Be brief.\nUse tools.\nlate system"
    assert body["max_tokens"] == 4096 and body["stop_sequences"] == ["END"] and body["temperature"] == 1.0
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    calls = body["messages"][1]["content"]
    assert [c["type"] for c in calls] == ["tool_use", "tool_use"]  # the empty text block is gone
    assert calls[0]["input"] == {} and calls[1]["input"] == {"tz": "UTC"}
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", calls[0]["id"])
    results = body["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    assert results[0]["tool_use_id"] == calls[0]["id"] and results[0]["content"] == "sunny"
    assert set(http.dropped) >= {
        "seed",
        "frequency_penalty",
        "stop (whitespace-only sequences)",
        "temperature (clamped to 1)",
    }


def test_build_refusals_and_version_2026() -> None:
    from fareway.errors import BadRequest
    from fareway.types import ChatRequest, Message, ResponseFormat

    bad = _openai_req()
    bad.messages[3].content[1] = ToolCallPart("call_1", "weather", "{not json")
    with pytest.raises(BadRequest) as ei:
        ADAPTER.build_request(bad, _up())
    assert "messages[3]" in ei.value.message
    with pytest.raises(BadRequest):
        ADAPTER.build_request(_openai_req(n=2), _up())
    req_json = ChatRequest(
        "claude-x",
        [Message("system", [TextPart("Be brief.")]), Message("user", [TextPart("a json ticket")])],
        response_format=ResponseFormat("json_object"),
    )
    body = json.loads(ADAPTER.build_request(req_json, _up()).body)
    # json_object has no Anthropic field: an instruction after the caller's system text, no prefill
    assert body["system"] == (
        "Be brief.\nRespond with a single valid JSON object and nothing else: no prose before or "
        "after it and no Markdown code fences."
    )
    assert body["messages"][-1]["role"] == "user" and "output_config" not in body
    req = ChatRequest(
        "claude-x",
        [Message("user", [TextPart("hi")])],
        temperature=0.3,
        top_k=3,
        source_dialect="anthropic",
        headers={"anthropic-version": "2026-10-21", "anthropic-beta": "b1"},
        response_format=ResponseFormat("json_schema", schema={"type": "object"}),
    )
    http = ADAPTER.build_request(req, _up())
    body = json.loads(http.body)
    assert "temperature" not in body and "top_k" not in body and http.dropped == ["temperature", "top_k"]
    assert http.headers["anthropic-version"] == "2026-10-21" and http.headers["anthropic-beta"] == "b1"
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}


@pytest.mark.parametrize("source", ["anthropic", "openai"])
def test_build_refuses_a_conversation_of_empty_turns_and_a_system_turn(source: str) -> None:
    """Empty user turns are dropped (Anthropic 400s on empty text blocks); what is left is a
    system turn, kept inline for an Anthropic client (it sent it there) and hoisted into
    ``system`` otherwise.  Either way no user or assistant turn remains: a BadRequest, as for a
    conversation that is all empty (found by test_property_translation's request round trip,
    which expected it; the adapter sent ``messages: [{"role": "system", ...}]``)."""
    from fareway.errors import BadRequest
    from fareway.types import ChatRequest, Message

    req = ChatRequest(
        "claude-x",
        [
            Message("user", [TextPart("")]),
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("")]),
        ],
        source_dialect=source,  # type: ignore[arg-type]
    )
    with pytest.raises(BadRequest) as ei:
        ADAPTER.build_request(req, _up())
    assert ei.value.param == "messages"
    # a user turn with content after it: sent, the system turn inline for an Anthropic client
    req.messages.append(Message("user", [TextPart("hi")]))
    body = json.loads(ADAPTER.build_request(req, _up()).body)
    roles = [m["role"] for m in body["messages"]]
    assert roles == (["system", "user"] if source == "anthropic" else ["user"])


def test_build_drops_unsigned_thinking_and_foreign_opaque_parts() -> None:
    from fareway.types import ChatRequest, Message

    req = ChatRequest(
        "m",
        [
            Message("user", [TextPart("q")]),
            Message(
                "assistant",
                [
                    ThinkingPart("unsigned"),
                    ThinkingPart("signed", "sig"),
                    OpaquePart("gemini", {"x": 1}),
                    TextPart("a"),
                ],
            ),
        ],
    )
    body = json.loads(ADAPTER.build_request(req, _up()).body)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "signed", "signature": "sig"},
        {"type": "text", "text": "a"},
    ]
