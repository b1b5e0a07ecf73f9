"""Replay every recorded OpenAI-dialect response through the OpenAI chat adapter.

Each fixture file under ``openai/``, ``cerebras/``, ``groq/``, ``mistral/`` and ``openrouter/``
(cassettes and raw ``.bin`` bodies) is one test case, so a new file is covered automatically.
Expectations are computed here from the recorded JSON, independently and simply (concatenate the
recorded deltas, group tool-call fragments by index, take the last usage), never from the adapter.
Stream bodies are also fed in seeded random-sized pieces and must give exactly the same events.
A file in which nothing could be checked fails, unless it is listed in ``NOT_CHAT`` with a reason.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.adapters.openai_chat import ADAPTER
from fareway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from fareway.events import Accumulator, Finish, StreamEvent, UsageUpdate
from fareway.providers.registry import BUILTIN_PROVIDERS
from fareway.types import ChatResponse, TextPart, ThinkingPart, Upstream
from tests.recorded import Interaction, cassettes, fixtures_dir, load_cassette, raw_bodies

PROVIDERS = ("openai", "cerebras", "groq", "mistral", "openrouter")
KEY = "sk-test-replay-0123456789abcdef"

NOT_CHAT = {
    "cerebras/test_known_model_names.yaml": "GET /v1/models listing plus an unrelated Heroku call: no chat traffic",
}

FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "model_length": "length",
    "error": "error",
}


def _files() -> list[Any]:
    out = []
    for prov in PROVIDERS:
        for path in [*cassettes(prov), *raw_bodies(prov)]:
            out.append(pytest.param(prov, path, id=f"{prov}/{path.name}"))
    return out or [pytest.param(None, None, id="no-fixtures")]


def _upstream(provider: str) -> Upstream:
    spec = BUILTIN_PROVIDERS[provider]
    return Upstream(provider, "openai", spec.base_url, "recorded-model", KEY, quirks=spec.quirks)


def _interactions(path: Path) -> list[Interaction]:
    if path.suffix == ".bin":  # openai-python raw SSE response bodies
        body = path.read_bytes()
        return [Interaction(path.name, 0, "POST", "/v1/chat/completions", {}, None, 200, {}, body)]
    return load_cassette(path)


# ------------------------------------------------------------------------ independent readers


def sse_payloads(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each SSE event, read simply: blank-line separated blocks."""
    out = []
    text = body.decode("utf-8").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            line = line.strip()
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((event, "\n".join(data)))
    return out


def _tc_args(fn: dict[str, Any]) -> str:
    a = fn.get("arguments")
    return a if isinstance(a, str) else ""


def expected_from_stream(body: bytes) -> dict[str, Any]:
    exp: dict[str, Any] = {"text": "", "refusal": "", "reasoning": "", "tools": {}, "finish": None}
    exp.update(usage=None, error=None, first=None)
    for event, data in sse_payloads(body):
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if exp["first"] is None and chunk.get("id"):
            exp["first"] = chunk
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if usage:
            exp["usage"] = usage
        if event == "error" or chunk.get("error"):
            exp["error"] = chunk
            break
        for ch in chunk.get("choices") or []:
            if ch.get("index", 0) != 0:
                continue
            d = ch.get("delta") or {}
            content = d.get("content")
            if isinstance(content, str):
                exp["text"] += content
            for item in content if isinstance(content, list) else []:
                if item["type"] == "text":
                    exp["text"] += item["text"]
                elif item["type"] == "thinking":
                    exp["reasoning"] += "".join(t["text"] for t in item["thinking"])
            exp["reasoning"] += d.get("reasoning_content") or d.get("reasoning") or ""
            exp["refusal"] += d.get("refusal") or ""
            for tc in d.get("tool_calls") or []:
                t = exp["tools"].setdefault(tc["index"], {"id": "", "name": "", "args": ""})
                fn = tc.get("function") or {}
                t["id"] = t["id"] or tc.get("id") or ""
                t["name"] = t["name"] or fn.get("name") or ""
                t["args"] += _tc_args(fn)
            if ch.get("finish_reason") and exp["finish"] is None:
                exp["finish"] = ch["finish_reason"]
    return exp


# --------------------------------------------------------------------------------- assertions


def _text(resp: ChatResponse, refusal: bool) -> str:
    return "".join(
        p.text
        for p in resp.content
        if isinstance(p, TextPart) and bool(p.extensions.get("openai", {}).get("refusal")) == refusal
    )


def _thinking(resp: ChatResponse) -> str:
    return "".join(p.text for p in resp.content if isinstance(p, ThinkingPart))


def check_usage(resp_usage: Any, raw: dict[str, Any] | None) -> None:
    if raw is None:
        assert resp_usage is None
        return
    assert resp_usage is not None
    assert resp_usage.input_tokens == raw["prompt_tokens"]
    assert resp_usage.output_tokens == raw["completion_tokens"]
    ptd = raw.get("prompt_tokens_details") or {}
    cached = ptd["cached_tokens"] if "cached_tokens" in ptd else raw.get("num_cached_tokens", 0)
    assert resp_usage.cached_input_tokens == (cached or 0)
    assert resp_usage.cache_write_tokens == (ptd.get("cache_write_tokens") or 0)
    assert resp_usage.reasoning_tokens == (
        (raw.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    )
    for extra in ("cost", "cost_details", "queue_time", "total_time"):
        if extra in raw:
            assert resp_usage.extensions["openai"][extra] == raw[extra]


def check_tools(resp: ChatResponse, tools: list[dict[str, str]]) -> None:
    got = resp.tool_calls()
    assert [(t.id, t.name) for t in got] == [(t["id"], t["name"]) for t in tools]
    for part, rec in zip(got, tools, strict=True):
        assert part.arguments == rec["args"]
        assert part.parsed_arguments() == (json.loads(rec["args"]) if rec["args"].strip() else {})


def expected_error_class(status: int, err: dict[str, Any]) -> type[UpstreamError]:
    text = f"{err.get('type')} {err.get('code')} {err.get('message')}"
    if status == 429:
        return UpstreamQuotaExceeded if "insufficient_quota" in text else UpstreamRateLimited
    table: dict[int, type[UpstreamError]] = {
        401: UpstreamAuthError,
        403: UpstreamAuthError,
        402: UpstreamQuotaExceeded,
    }
    table.update({408: UpstreamTimeout, 503: UpstreamOverloaded, 529: UpstreamOverloaded})
    if status in table:
        return table[status]
    return UpstreamClientError if status < 500 else UpstreamServerError


def check_error(exc: UpstreamError, status: int, payload: Any, provider: str) -> None:
    err = payload[0]["error"] if isinstance(payload, list) else payload.get("error", payload)
    assert type(exc) is expected_error_class(status, err)
    assert exc.status == status
    assert err["message"] in exc.message
    assert exc.provider == provider
    assert KEY not in exc.message
    ctx = err.get("code") == "context_length_exceeded" or "context length" in str(err.get("message")).lower()
    assert getattr(exc, "context_length", False) == ctx


# ------------------------------------------------------------------------------------ replays


def run_stream(up: Upstream, pieces: list[bytes]) -> tuple[list[StreamEvent], UpstreamError | None]:
    parser = ADAPTER.stream_parser(up)
    events: list[StreamEvent] = []
    try:
        for piece in pieces:
            events += parser.feed(piece)
        events += parser.close()
    except UpstreamError as exc:
        return events, exc
    return events, None


def split(body: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    out, i = [], 0
    while i < len(body):
        n = rng.randint(1, max_piece)
        out.append(body[i : i + n])
        i += n
    return out


def replay_stream(up: Upstream, it: Interaction) -> int:
    events, err = run_stream(up, [it.body])
    for seed, max_piece in ((1, 3), (2, 17), (3, 64), (4, 512)):
        ev2, err2 = run_stream(up, split(it.body, random.Random(seed), max_piece))
        assert ev2 == events, f"seed {seed}: chunked feed differs from one feed"
        assert (type(err2), err2 and err2.message) == (type(err), err and err.message)
    exp = expected_from_stream(it.body)
    acc = Accumulator()
    for e in events:
        acc.add(e)
    resp = acc.result()
    assert resp.id == exp["first"]["id"]
    assert resp.model == exp["first"]["model"]
    assert _text(resp, refusal=False) == exp["text"]
    assert _text(resp, refusal=True) == exp["refusal"]
    assert _thinking(resp) == exp["reasoning"]
    check_tools(resp, [exp["tools"][k] for k in sorted(exp["tools"])])
    if exp["error"] is not None:
        assert err is not None, "the recorded stream carries an error; the parser must raise it"
        sc = (
            exp["error"]["error"].get("status_code")
            or exp["error"].get("status_code")
            or exp["error"]["error"]["code"]
        )
        check_error(err, int(sc), exp["error"], up.provider)
        assert not any(isinstance(e, Finish) for e in events)
        if exp["usage"] is not None:  # usage carried by the error chunk still reaches the ledger
            check_usage(next(e.usage for e in reversed(events) if isinstance(e, UsageUpdate)), exp["usage"])
        return 1
    assert err is None, f"unexpected error {err!r}"
    assert acc.finished
    assert resp.finish_reason == (
        FINISH[exp["finish"]] if exp["finish"] else ("tool_calls" if exp["tools"] else "stop")
    )
    check_usage(resp.usage, exp["usage"])
    ends = [e for e in events if type(e).__name__ == "PartEnd"]
    starts = [e for e in events if type(e).__name__ == "PartStart"]
    assert sorted(e.index for e in starts) == sorted(e.index for e in ends) == list(range(len(starts)))
    return 1


def replay_json(up: Upstream, it: Interaction) -> int:
    data = it.response_json()
    if data.get("error"):
        with pytest.raises(UpstreamError) as info:
            ADAPTER.parse_response(it.body, up)
        check_error(info.value, int(data["error"].get("code") or 502), data, up.provider)
        return 1
    resp = ADAPTER.parse_response(it.body, up)
    ch = data["choices"][0]
    msg = ch["message"]
    content = msg.get("content")
    text = content if isinstance(content, str) else ""
    text += "".join(c["text"] for c in content if c["type"] == "text") if isinstance(content, list) else ""
    assert resp.id == data["id"] and resp.model == data["model"]
    assert _text(resp, refusal=False) == text
    assert _text(resp, refusal=True) == (msg.get("refusal") or "")
    assert _thinking(resp) == (msg.get("reasoning_content") or msg.get("reasoning") or "")
    tools = [
        {"id": tc["id"], "name": tc["function"]["name"], "args": _tc_args(tc["function"])}
        for tc in msg.get("tool_calls") or []
    ]
    check_tools(resp, tools)
    assert resp.finish_reason == FINISH[ch["finish_reason"]]
    check_usage(resp.usage, data.get("usage"))
    extras = {
        k: v for k, v in data.items() if k not in ("id", "object", "created", "model", "choices", "usage")
    }
    for k, v in extras.items():  # system_fingerprint, time_info, x_groq, provider... kept verbatim
        assert resp.extensions["openai"][k] == v
    if len(data["choices"]) > 1:
        assert resp.extensions["openai"]["extra_choices"] == data["choices"][1:]
    return 1


def replay_error(up: Upstream, it: Interaction) -> int:
    exc = ADAPTER.parse_error(it.status, it.response_headers, it.body, up)
    check_error(exc, it.status, it.response_json(), up.provider)
    ra = it.response_headers.get("retry-after")
    if ra is not None and ra.strip().isdigit():
        assert exc.retry_after == float(ra)
    return 1


@pytest.mark.parametrize(("provider", "path"), _files())
def test_replay_fixture(provider: str | None, path: Path | None) -> None:
    if fixtures_dir() is None or provider is None or path is None:
        pytest.skip("recorded fixtures not found (../shared/fixtures or $FAREWAY_FIXTURES)")
    key = f"{provider}/{path.name}"
    if key in NOT_CHAT:
        pytest.skip(NOT_CHAT[key])
    up = _upstream(provider)
    checked = 0
    for it in _interactions(path):
        if "/chat/completions" not in it.uri:
            continue
        if it.status >= 400:
            checked += replay_error(up, it)
        elif it.is_stream:
            checked += replay_stream(up, it)
        else:
            checked += replay_json(up, it)
    assert checked, (
        f"{key}: no chat-completions interaction could be checked; add it to NOT_CHAT with a reason"
    )


# ------------------------------------------------------------------- arbitrary split property


def _multibyte_stream() -> bytes | None:
    d = fixtures_dir()
    if d is None:
        return None
    body = (
        d / "openai" / "e2aad469b71d1d4894ff833ea147020a9d875eb7ce644a0ff355581690a4cbfd.bin"
    ).read_bytes()
    # The recordings are ASCII; put multi-byte UTF-8 (JSON-escaped and raw) into recorded deltas.
    return body.replace(b'"content":"I\'m"', '"content":"Ĩ\'m 😊 "'.encode()).replace(
        b" weather", " wéather".encode()
    )


def _split_at(body: bytes, points: list[int]) -> list[bytes]:
    points = sorted({min(max(p, 0), len(body)) for p in points})
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def test_every_cut_inside_multibyte_characters() -> None:
    body = _multibyte_stream()
    if body is None:
        pytest.skip("recorded fixtures not found")
    up = _upstream("openai")
    whole, _ = run_stream(up, [body])
    for char in ("😊", "Ĩ", "é"):
        at = body.index(char.encode())
        for cut in range(at, at + len(char.encode()) + 1):
            assert run_stream(up, _split_at(body, [cut]))[0] == whole, f"cut at {cut} inside {char!r}"


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=-6, max_value=6), max_size=12),
    spread=st.lists(st.integers(0, 1 << 16), max_size=20),
)
def test_arbitrary_splits_with_multibyte_text(cuts: list[int], spread: list[int]) -> None:
    body = _multibyte_stream()
    if body is None:
        pytest.skip("recorded fixtures not found")
    up = _upstream("openai")
    whole, _ = run_stream(up, [body])
    anchors = [body.index(c.encode()) for c in ("😊", "Ĩ", "é")]
    points = [anchors[i % 3] + c for i, c in enumerate(cuts)] + [s % (len(body) + 1) for s in spread]
    assert run_stream(up, _split_at(body, points))[0] == whole
    acc = Accumulator()
    for e in whole:
        acc.add(e)
    text = acc.result().text()
    assert "😊" in text and "wéather" in text
    assert text == expected_from_stream(body)["text"]
