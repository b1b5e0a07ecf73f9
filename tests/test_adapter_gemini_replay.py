"""Replay every recorded Gemini interaction (../shared/fixtures/gemini) through the Gemini adapter.

Expectations are computed straight from the recorded JSON with deliberately naive code (join the
text parts, list the functionCall parts, read the last usageMetadata), so the adapter is checked
against the recording, not against itself.  The OpenAI-compatibility recording is routed to the
openai_chat adapter when it exists.  Tests at the end marked "synthetic" cover what the recordings
lack (GAPS.md): 429/5xx/auth errors, safety blocks, in-stream errors, truncation.
"""

from __future__ import annotations

import importlib
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.adapters.gemini import ADAPTER
from fareway.adapters.gemini_stream import mint_call_id
from fareway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamRateLimited,
    UpstreamServerError,
)
from fareway.events import Accumulator, Finish, PartEnd, PartStart, StreamEvent
from fareway.types import ChatResponse, TextPart, ThinkingPart, ToolCallPart, Upstream
from tests.recorded import Interaction, cassettes, load_cassette

UP = Upstream("gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta", "gemini-test")

FILES = cassettes("gemini")
if not FILES:
    pytest.skip("no recorded fixtures (../shared/fixtures or $FAREWAY_FIXTURES)", allow_module_level=True)

INTERACTIONS = [it for path in FILES for it in load_cassette(path)]


def _id(it: Interaction) -> str:
    return f"{it.file.removesuffix('.yaml')}#{it.index}"


def _is_compat(it: Interaction) -> bool:
    return "/openai/" in it.uri


NATIVE = [it for it in INTERACTIONS if not _is_compat(it)]
NATIVE_OK = [it for it in NATIVE if it.status < 400]
STREAMS = [it for it in NATIVE_OK if "streamGenerateContent" in it.uri]


# ----------------------------------------------------------------- naive reading of the record


def recorded_chunks(it: Interaction) -> list[dict[str, Any]]:
    """The GenerateContentResponse objects of a recorded body, decoded the simple way."""
    text = it.body.decode("utf-8")
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    if text.lstrip().startswith("{"):
        return [json.loads(text)]
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                out.append(json.loads(line[5:]))
    return out


class Expected:
    def __init__(self, it: Interaction) -> None:
        chunks = recorded_chunks(it)
        self.text = ""
        self.thinking = ""
        self.calls: list[tuple[str, Any]] = []
        self.signatures: list[str] = []
        self.finish_raw: str | None = None
        self.usage: dict[str, Any] = {}
        self.response_id = chunks[0].get("responseId", "")
        self.model = chunks[0].get("modelVersion")
        for chunk in chunks:
            for cand in chunk.get("candidates", [])[:1]:
                for part in cand.get("content", {}).get("parts", []):
                    if "thoughtSignature" in part:
                        self.signatures.append(part["thoughtSignature"])
                    if "functionCall" in part:
                        self.calls.append(
                            (part["functionCall"]["name"], part["functionCall"].get("args", {}))
                        )
                    elif part.get("thought"):
                        self.thinking += part.get("text", "")
                    else:
                        self.text += part.get("text", "")
                if cand.get("finishReason"):
                    self.finish_raw = cand["finishReason"]
            if "usageMetadata" in chunk:
                self.usage = chunk["usageMetadata"]

    @property
    def finish(self) -> str:
        return {"STOP": "tool_calls" if self.calls else "stop", "MAX_TOKENS": "length"}[self.finish_raw or ""]


def run_stream(body: bytes, pieces: list[bytes] | None = None) -> tuple[ChatResponse, list[StreamEvent]]:
    parser = ADAPTER.stream_parser(UP)
    events: list[StreamEvent] = []
    for piece in pieces if pieces is not None else [body]:
        events += parser.feed(piece)
    events += parser.close()
    acc = Accumulator()
    for ev in events:
        acc.add(ev)
    return acc.result(), events


def split_randomly(body: bytes, rng: random.Random) -> list[bytes]:
    pieces, i = [], 0
    while i < len(body):
        n = rng.choice([1, 2, 3, 7, 64, 500, 4096])
        pieces.append(body[i : i + n])
        i += n
    return pieces


def parse(it: Interaction) -> ChatResponse:
    if "streamGenerateContent" in it.uri:
        return run_stream(it.body)[0]
    return ADAPTER.parse_response(it.body, UP)


def summary(resp: ChatResponse) -> Any:
    """Everything a client could observe, for comparing two parses."""
    parts: list[tuple[Any, ...]] = []
    for p in resp.content:
        if isinstance(p, ToolCallPart):
            parts.append(("call", p.id, p.name, p.parsed_arguments(), p.extensions))
        elif isinstance(p, ThinkingPart):
            parts.append(("thinking", p.text, p.signature))
        elif isinstance(p, TextPart):
            parts.append(("text", p.text))
        else:
            parts.append((p.kind,))
    u = resp.usage
    usage = u and (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens)
    return resp.id, resp.model, parts, resp.finish_reason, usage


# ------------------------------------------------------------------------------ replays


@pytest.mark.parametrize("it", NATIVE_OK, ids=_id)
def test_replay_matches_the_recording(it: Interaction) -> None:
    exp = Expected(it)
    resp = parse(it)

    assert resp.id == exp.response_id
    assert resp.model == exp.model
    assert resp.text() == exp.text
    thinking = "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))
    assert thinking == exp.thinking
    assert [(c.name, c.parsed_arguments()) for c in resp.tool_calls()] == exp.calls
    assert resp.finish_reason == exp.finish

    # Usage: totals per the canonical convention, breakdowns inside them.
    u = resp.usage
    assert u is not None
    prompt = exp.usage.get("promptTokenCount", 0) + exp.usage.get("toolUsePromptTokenCount", 0)
    thoughts = exp.usage.get("thoughtsTokenCount", 0)
    assert u.input_tokens == prompt
    assert u.output_tokens == exp.usage.get("candidatesTokenCount", 0) + thoughts
    assert u.reasoning_tokens == thoughts
    assert u.cached_input_tokens == exp.usage.get("cachedContentTokenCount", 0)
    assert u.input_tokens + u.output_tokens == exp.usage["totalTokenCount"]

    # Every thought signature the model sent is kept, in order, on a ThinkingPart.
    assert [
        p.signature for p in resp.content if isinstance(p, ThinkingPart) and p.signature
    ] == exp.signatures


@pytest.mark.parametrize("it", [it for it in NATIVE_OK if Expected(it).calls], ids=_id)
def test_minted_call_ids_are_deterministic(it: Interaction) -> None:
    exp = Expected(it)
    first, second = parse(it), parse(it)
    ids = [c.id for c in first.tool_calls()]
    assert ids == [c.id for c in second.tool_calls()]
    assert len(set(ids)) == len(ids)
    # No recorded native call carries an id, so every id is minted from (responseId, ordinal, name).
    assert ids == [mint_call_id(exp.response_id, i, name) for i, (name, _) in enumerate(exp.calls)]
    assert all(i.startswith("call_") for i in ids)


@pytest.mark.parametrize("it", [it for it in NATIVE_OK if Expected(it).calls], ids=_id)
def test_function_call_keeps_its_own_signature(it: Interaction) -> None:
    signed: dict[int, str | None] = {}
    for chunk in recorded_chunks(it):
        for part in chunk["candidates"][0]["content"].get("parts", []):
            if "functionCall" in part:
                signed[len(signed)] = part.get("thoughtSignature")
    calls = parse(it).tool_calls()
    assert len(calls) == len(signed)
    for i, call in enumerate(calls):
        assert call.extensions.get("gemini", {}).get("thoughtSignature") == signed[i]


@pytest.mark.parametrize("it", STREAMS, ids=_id)
def test_stream_in_random_chunks_equals_one_feed(it: Interaction) -> None:
    whole, events = run_stream(it.body)
    assert isinstance(events[-1], Finish) or any(isinstance(e, Finish) for e in events)
    for seed in range(5):
        pieces = split_randomly(it.body, random.Random(seed))
        assert summary(run_stream(it.body, pieces)[0]) == summary(whole)


@pytest.mark.parametrize("it", STREAMS, ids=_id)
def test_stream_parts_are_well_formed(it: Interaction) -> None:
    _, events = run_stream(it.body)
    open_: set[int] = set()
    started: list[int] = []
    for ev in events:
        if isinstance(ev, PartStart):
            assert ev.index not in open_
            open_.add(ev.index)
            started.append(ev.index)
        elif isinstance(ev, PartEnd):
            open_.remove(ev.index)
        elif isinstance(ev, Finish):
            assert not open_, "every part is closed before Finish"
    assert started == list(range(len(started)))


@pytest.mark.parametrize("it", [it for it in STREAMS if it.body.lstrip()[:1] == b"["], ids=_id)
def test_json_array_stream_parses_the_same_whole(it: Interaction) -> None:
    # A streamGenerateContent body read in one go (no alt=sse) is also a valid parse_response input.
    assert summary(ADAPTER.parse_response(it.body, UP)) == summary(run_stream(it.body)[0])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_split_of_any_recorded_stream_gives_the_same_result(data: st.DataObject) -> None:
    it = data.draw(st.sampled_from(STREAMS))
    body = it.body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=12)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert summary(run_stream(body, pieces)[0]) == summary(run_stream(body)[0])


def test_recorded_404_is_a_client_error() -> None:
    (it,) = [it for it in NATIVE if it.status >= 400]
    exc = ADAPTER.parse_error(it.status, it.response_headers, it.body, UP)
    assert type(exc) is UpstreamClientError
    assert exc.status == 404
    assert exc.code == "NOT_FOUND"
    assert not exc.retryable and not exc.context_length
    assert "gemini-3.6-flahs is not found" in exc.message
    assert exc.provider == "gemini"


@pytest.mark.parametrize("it", [it for it in INTERACTIONS if _is_compat(it)], ids=_id)
def test_openai_compat_recording_goes_to_openai_chat(it: Interaction) -> None:
    try:
        mod = importlib.import_module("fareway.adapters.openai_chat")
    except ImportError:
        pytest.skip("fareway.adapters.openai_chat does not exist yet (the compat endpoint speaks OpenAI)")
    adapter = mod.ADAPTER
    up = Upstream("gemini-openai", "openai", "https://generativelanguage.googleapis.com/v1beta/openai", "x")
    resp = adapter.parse_response(it.body, up)
    message = it.response_json()["choices"][0]["message"]
    assert resp.text() == (message.get("content") or "")
    assert [c.name for c in resp.tool_calls()] == [
        t["function"]["name"] for t in message.get("tool_calls", [])
    ]
    assert resp.usage is not None and resp.usage.input_tokens == it.response_json()["usage"]["prompt_tokens"]


# --------------------------------------------------------------- synthetic (not in the record)


def _err(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json.dumps({"error": err}).encode()


def test_synthetic_429_retry_info() -> None:
    body = _err(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"},
        ],
    )
    exc = ADAPTER.parse_error(429, {}, body, UP)
    assert isinstance(exc, UpstreamRateLimited) and exc.retry_after == 13.0 and exc.retryable


def test_synthetic_429_retry_after_header_and_list_body() -> None:
    body = b"[" + _err(429, "RESOURCE_EXHAUSTED", "slow down") + b"]"
    exc = ADAPTER.parse_error(429, {"Retry-After": "7"}, body, UP)
    assert isinstance(exc, UpstreamRateLimited) and exc.retry_after == 7.0
    assert "slow down" in exc.message


@pytest.mark.parametrize(
    ("status", "rpc", "message", "cls", "context"),
    [
        (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            UpstreamClientError,
            True,
        ),
        (400, "INVALID_ARGUMENT", "Invalid JSON payload received.", UpstreamClientError, False),
        (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            UpstreamAuthError,
            False,
        ),
        (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.", UpstreamAuthError, False),
        (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", UpstreamAuthError, False),
        (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", UpstreamOverloaded, False),
        (500, "INTERNAL", "An internal error has occurred.", UpstreamServerError, False),
        (
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
            UpstreamServerError,
            False,
        ),
    ],
)
def test_synthetic_error_classes(status: int, rpc: str, message: str, cls: type, context: bool) -> None:
    exc = ADAPTER.parse_error(status, {}, _err(status, rpc, message), UP)
    assert type(exc) is cls
    assert exc.status == status
    if isinstance(exc, UpstreamClientError):
        assert exc.context_length is context
        assert exc.retryable is (context or isinstance(exc, UpstreamAuthError))


def test_synthetic_non_json_error_body() -> None:
    exc = ADAPTER.parse_error(502, {}, b"<html>Bad Gateway</html>", UP)
    assert isinstance(exc, UpstreamServerError) and "Bad Gateway" in exc.message


def _sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)


def _chunk(parts: list[dict[str, Any]], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "responseId": "r1", "modelVersion": "gemini-2.5-flash", **extra}


def test_synthetic_error_inside_a_stream_raises() -> None:
    parser = ADAPTER.stream_parser(UP)
    parser.feed(_sse(_chunk([{"text": "Hel"}])))
    with pytest.raises(UpstreamOverloaded):
        parser.feed(
            b'data: {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}\r\n\r\n'
        )


def test_synthetic_error_inside_a_json_array_stream_raises() -> None:
    parser = ADAPTER.stream_parser(UP)
    with pytest.raises(UpstreamRateLimited):
        parser.feed(b'[{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}]')


@pytest.mark.parametrize(
    "body",
    [
        _sse(_chunk([{"text": "Hel"}]), _chunk([{"text": "lo"}])),  # no finishReason
        b'[{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}\n,\r\n{"candi',
        b"",
    ],
)
def test_synthetic_truncated_stream_is_an_error(body: bytes) -> None:
    parser = ADAPTER.stream_parser(UP)
    parser.feed(body)
    with pytest.raises(UpstreamConnectionError):
        parser.close()


def test_synthetic_safety_and_unknown_finish_reasons() -> None:
    resp = ADAPTER.parse_response(json.dumps(_chunk([{"text": "x"}], "SAFETY")).encode(), UP)
    assert resp.finish_reason == "content_filter"
    resp = ADAPTER.parse_response(json.dumps(_chunk([{"text": "x"}], "SOMETHING_NEW")).encode(), UP)
    assert resp.finish_reason == "stop"
    assert resp.extensions["gemini"]["finishReason"] == "SOMETHING_NEW"
    resp = ADAPTER.parse_response(json.dumps(_chunk([], "MALFORMED_FUNCTION_CALL")).encode(), UP)
    assert (
        resp.finish_reason == "stop"
        and resp.extensions["gemini"]["finishReason"] == "MALFORMED_FUNCTION_CALL"
    )


def test_synthetic_blocked_prompt() -> None:
    body = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "responseId": "b",
    }
    resp = ADAPTER.parse_response(json.dumps(body).encode(), UP)
    assert resp.finish_reason == "content_filter" and resp.content == []
    assert resp.usage is not None and resp.usage.input_tokens == 9
    stream, _ = run_stream(_sse(body))
    assert stream.finish_reason == "content_filter" and stream.content == []


def test_synthetic_gemini_issued_call_id_and_cached_tokens() -> None:
    chunk = _chunk(
        [{"functionCall": {"id": "fc_abc", "name": "f", "args": {"a": 1}}}],
        "STOP",
        usageMetadata={
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 3,
            "totalTokenCount": 108,
        },
    )
    resp = ADAPTER.parse_response(json.dumps(chunk).encode(), UP)
    (call,) = resp.tool_calls()
    assert call.id == "fc_abc" and call.extensions["gemini"]["id"] == "fc_abc"
    assert call.arguments == '{"a":1}' and resp.finish_reason == "tool_calls"
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.cached_input_tokens, resp.usage.output_tokens) == (105, 60, 3)


def test_synthetic_non_json_stream_chunk_raises() -> None:
    parser = ADAPTER.stream_parser(UP)
    with pytest.raises(UpstreamError):
        parser.feed(b"data: {not json}\r\n\r\n")


def test_synthetic_utf8_split_across_reads() -> None:
    body = _sse(_chunk([{"text": "caf\u00e9 \u2014 \U0001f426"}], "STOP"))
    pieces = [body[i : i + 1] for i in range(len(body))]
    assert run_stream(body, pieces)[0].text() == "caf\u00e9 \u2014 \U0001f426"


def test_synthetic_several_candidates_become_choices_in_index_order() -> None:
    body = {
        "candidates": [
            {"index": 1, "content": {"parts": [{"text": "second"}]}, "finishReason": "STOP"},
            {"index": 0, "content": {"parts": [{"text": "first"}]}, "finishReason": "MAX_TOKENS"},
        ],
        "responseId": "r",
    }
    resp = ADAPTER.parse_response(json.dumps(body).encode(), UP)
    assert resp.text() == "first" and resp.finish_reason == "length"
    assert [(m.text(), m.finish_reason, m.usage) for m in resp.more_choices] == [("second", "stop", None)]
    assert "candidates" not in resp.extensions.get("gemini", {})
