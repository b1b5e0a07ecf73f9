"""Replay of the recorded Responses API traffic (../shared/fixtures/openai-responses).

For every recorded ``POST /v1/responses``:

* the request, parsed by the inbound wire (``wire/openai_responses``), means what was recorded:
  each input item's text, call, output and reasoning state is in the canonical messages; and the
  native adapter rebuilds from it the request that was sent (same items, ids, tools, options);
* a 200 body, parsed by the native adapter, gives the recorded output: texts, calls (call id,
  name, arguments), reasoning (summary, encrypted content), built-in tool items, usage, finish;
  encoded back by the wire it gives the recorded items (same ids, same content);
* a recorded stream, fed in pieces of every size to the native stream parser, folds to what its
  own ``response.completed`` event says;
* error bodies are classified by status and carry OpenAI's message and ``param``.

The expected values are the recordings themselves.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from fareway.adapters.openai_fields import classify_error
from fareway.adapters.openai_responses import build_body, parse_responses_body
from fareway.adapters.openai_responses_stream import ResponsesStreamParser
from fareway.dialects.openai_responses import unseal
from fareway.errors import BadRequest, UpstreamClientError, UpstreamError, UpstreamQuotaExceeded
from fareway.events import Accumulator, Finish, UsageUpdate
from fareway.types import (
    ChatResponse,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Upstream,
)
from fareway.wire import openai_responses as wire
from fareway.wire.base import ResponseMeta

from .recorded import Interaction, fixtures_dir, load_cassette

FIX = fixtures_dir()
pytestmark = pytest.mark.skipif(FIX is None, reason="../shared/fixtures is not next to the checkout")
DIR = (FIX / "openai-responses") if FIX is not None else Path("/nonexistent")
UP = Upstream("openai", "openai_responses", "https://api.openai.com/v1", "gpt-x", api_key="sk-test")


def _interactions() -> list[Interaction]:
    if FIX is None:
        return []
    out = []
    for f in sorted(DIR.glob("*.yaml")):
        out += [
            it for it in load_cassette(f) if it.uri.endswith("/responses") and it.method.upper() == "POST"
        ]
    return out


def _case_id(it: Interaction) -> str:
    return f"{it.file}#{it.index}"


CASES = _interactions()
IDS = [f"{c.file}#{c.index}" for c in CASES]
OK = [c for c in CASES if c.status == 200]
OK_IDS = [f"{c.file}#{c.index}" for c in OK]


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value or [])


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") or p.get("refusal", "") for p in content if isinstance(p, dict))


def _events_of(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    out.append(json.loads(data))
    return out


def _done_items(body: bytes) -> list[dict[str, Any]]:
    """The items of a stream's ``response.output_item.done`` events, in output order (their
    ``encrypted_content`` is the one to send back; ``response.completed`` re-encrypts it)."""
    done = [e for e in _events_of(body) if e.get("type") == "response.output_item.done"]
    return [e["item"] for e in sorted(done, key=lambda e: e["output_index"])]


def _completed_response(body: bytes) -> dict[str, Any]:
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    obj = json.loads(data)
                    if obj.get("type") in ("response.completed", "response.incomplete"):
                        return dict(obj["response"])
    raise AssertionError("no response.completed in the recorded stream")


# ------------------------------------------------------------------------------ requests


@pytest.mark.parametrize("it", CASES, ids=IDS)
def test_recorded_request_parses_to_its_meaning(it: Interaction) -> None:
    data = it.request_json
    if it.status == 400 and it.response_json()["error"]["param"] == "temperature":
        # OpenAI refused it (temperature -1); so does the gateway, before sending anything
        with pytest.raises(BadRequest) as exc:
            wire.parse_request(orjson.dumps(data), {})
        assert exc.value.param == "temperature"
        return
    req = wire.parse_request(orjson.dumps(data), {})
    echo = wire.echo_of(req)
    assert echo["previous_response_id"] == data.get("previous_response_id")
    assert req.stream == bool(data.get("stream"))
    if data.get("previous_response_id"):
        return  # the history is upstream's (the responses state stage resolves Fareway's own)
    items = _items(data["input"])
    msgs = req.messages
    if data.get("instructions"):
        assert msgs[0].role == "system" and msgs[0].text() == data["instructions"]
        msgs = msgs[1:]
    parts = [p for m in msgs for p in m.content]
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    results = [p for p in parts if isinstance(p, ToolResultPart)]
    thinking = [p for p in parts if isinstance(p, ThinkingPart)]
    texts = [p.text for p in parts if isinstance(p, TextPart)]
    want_calls = [i for i in items if i.get("type") == "function_call"]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        (i["call_id"], i["name"], i["arguments"]) for i in want_calls
    ]
    want_out = [i for i in items if i.get("type") == "function_call_output"]
    assert [(r.tool_call_id, r.text()) for r in results] == [(i["call_id"], i["output"]) for i in want_out]
    want_texts = [_text(i["content"]) for i in items if i.get("type", "message") == "message"]
    assert "".join(texts) == "".join(want_texts)
    want_reasoning = [i for i in items if i.get("type") == "reasoning" and i.get("encrypted_content")]
    assert [t.signature for t in thinking if t.signature] == [i["encrypted_content"] for i in want_reasoning]
    assert all((t.extensions.get("fareway") or {}).get("origin") == "openai" for t in thinking)
    tools = [t for t in data.get("tools") or [] if t.get("type") == "function"]
    assert [t.name for t in req.tools] == [t["name"] for t in tools]
    builtin = [t["type"] for t in data.get("tools") or [] if t.get("type") != "function"]
    native_only = (req.extensions.get("fareway") or {}).get("native_only") or []
    assert [n.split("`")[1] for n in native_only] == builtin


@pytest.mark.parametrize("it", CASES, ids=IDS)
def test_native_adapter_rebuilds_the_recorded_request(it: Interaction) -> None:
    data = it.request_json
    if data.get("temperature", 0) < 0:
        pytest.skip("an invalid request (the gateway refuses it; see the test above)")
    if data.get("previous_response_id"):
        pytest.skip("continues upstream state; Fareway expands its own previous_response_id instead")
    req = wire.parse_request(orjson.dumps(data), {})
    body, dropped = build_body(req, UP)
    assert dropped == []
    assert body["store"] is False  # Fareway keeps the state itself
    sent = [dict(i) for i in _items(data["input"])]
    for i in sent:  # the documented normal form: a message is typed, its string content a part
        if "role" in i:
            i.setdefault("type", "message")
            if isinstance(i["content"], str):
                kind = "output_text" if i["role"] == "assistant" else "input_text"
                i["content"] = [{"type": kind, "text": i["content"]}]
    assert body["input"] == sent
    for key in ("instructions", "tool_choice", "text", "max_output_tokens", "service_tier", "temperature"):
        if data.get(key) is not None:
            assert body[key] == data[key], key
    want_tools = [
        {k: v for k, v in dict(t, strict=t.get("strict", True)).items() if v is not None}
        if t["type"] == "function"
        else t
        for t in data.get("tools") or []
    ]
    assert sorted(body.get("tools", []), key=json.dumps) == sorted(want_tools, key=json.dumps)
    assert set(data.get("include") or []) <= set(body.get("include") or [])
    if data.get("reasoning"):
        assert body["reasoning"] == {k: v for k, v in data["reasoning"].items() if v is not None} | (
            {"summary": None}
            if "summary" in data["reasoning"] and data["reasoning"]["summary"] is None
            else {}
        )


# ----------------------------------------------------------------------------- responses


def _meaning(output: list[dict[str, Any]]) -> dict[str, Any]:
    """What a recorded ``output`` says, in the terms the canonical model keeps."""
    return {
        "text": "".join(_text(i["content"]) for i in output if i["type"] == "message"),
        "calls": [(i["call_id"], i["name"], i["arguments"]) for i in output if i["type"] == "function_call"],
        "summaries": [
            s["text"]
            for i in output
            if i["type"] == "reasoning"
            for s in (i.get("summary") or i.get("content") or [])
            if s.get("text")
        ],
        "encrypted": [
            i["encrypted_content"] for i in output if i["type"] == "reasoning" and i.get("encrypted_content")
        ],
        "builtin": [i["type"] for i in output if i["type"] not in ("message", "function_call", "reasoning")],
    }


def _canonical_meaning(resp: ChatResponse) -> dict[str, Any]:
    return {
        "text": resp.text(),
        "calls": [(c.id, c.name, c.arguments) for c in resp.tool_calls()],
        "summaries": [p.text for p in resp.content if isinstance(p, ThinkingPart) and p.text],
        "encrypted": [p.signature for p in resp.content if isinstance(p, ThinkingPart) and p.signature],
        "builtin": [p.data["type"] for p in resp.content if isinstance(p, OpaquePart)],
    }


def _usage_meaning(u: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        u["input_tokens"],
        u["output_tokens"],
        u["input_tokens_details"]["cached_tokens"],
        u["output_tokens_details"]["reasoning_tokens"],
    )


@pytest.mark.parametrize("it", [c for c in OK if not c.is_stream], ids=_case_id)
def test_recorded_response_parses_and_encodes_back(it: Interaction) -> None:
    recorded = it.response_json()
    resp = parse_responses_body(it.body, UP)
    assert _canonical_meaning(resp) == _meaning(recorded["output"])
    u = resp.usage
    assert u is not None
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == _usage_meaning(
        recorded["usage"]
    )
    assert resp.finish_reason == ("tool_calls" if _meaning(recorded["output"])["calls"] else "stop")
    # encoded for a Responses client (with reasoning state asked for): the recorded items again
    req = wire.parse_request(
        orjson.dumps({**it.request_json, "include": ["reasoning.encrypted_content"]}), {}
    )
    out = orjson.loads(wire.encode_response(resp, req, ResponseMeta("req_1", "openai", "0.001")))
    assert [(i["type"], i["id"]) for i in out["output"]] == [(i["type"], i["id"]) for i in recorded["output"]]
    shown = _meaning(out["output"])
    shown["encrypted"] = [unseal(e)["s"] for e in shown["encrypted"]]  # type: ignore[index]
    assert shown == _meaning(recorded["output"])
    for mine, theirs in zip(out["output"], recorded["output"], strict=True):
        if theirs["type"] == "message":
            assert [p.get("annotations") for p in mine["content"]] == [
                p.get("annotations") for p in theirs["content"]
            ]
        elif theirs["type"] not in ("function_call", "reasoning"):
            assert mine == theirs  # a built-in tool call: passed through whole
    assert out["usage"]["cost"] == 0.001


def _chunked(body: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(body):
        j = min(len(body), i + rng.randint(1, 700))
        out.append(body[i:j])
        i = j
    return out


@pytest.mark.parametrize("it", [c for c in OK if c.is_stream], ids=_case_id)
def test_recorded_stream_folds_to_its_completed_response(it: Interaction) -> None:
    final = _completed_response(it.body)
    for seed in range(3):
        parser = ResponsesStreamParser(UP)
        acc = Accumulator()
        events = []
        for chunk in _chunked(it.body, random.Random(seed)):
            events += parser.feed(chunk)
        events += parser.close()
        for e in events:
            acc.add(e)
        resp = acc.result()
        want = _meaning(_done_items(it.body))
        got = _canonical_meaning(resp)
        assert got == want, seed
        assert got["text"] == _meaning(final["output"])["text"]
        assert got["calls"] == _meaning(final["output"])["calls"]
        usage = [e.usage for e in events if isinstance(e, UsageUpdate)][-1]
        assert (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.reasoning_tokens,
        ) == (_usage_meaning(final["usage"]))
        assert isinstance([e for e in events if isinstance(e, Finish)][-1], Finish)


@pytest.mark.parametrize("it", [c for c in OK if c.is_stream], ids=_case_id)
def test_recorded_stream_reencoded_keeps_items_and_text(it: Interaction) -> None:
    """Native upstream stream -> canonical -> Fareway's Responses stream: the client sees the same
    items (ids, order, text) and the same event kinds for them."""
    final = _completed_response(it.body)
    parser = ResponsesStreamParser(UP)
    events = parser.feed(it.body) + parser.close()
    req = wire.parse_request(orjson.dumps(it.request_json), {})
    enc = wire.WIRE.stream_encoder(req, ResponseMeta("req_1", "openai"))
    out = b"".join(enc.encode(e) for e in events) + enc.close(ResponseMeta("req_1", "openai", "0.002"))
    mine = [json.loads(b.split(b"\ndata: ", 1)[1]) for b in out.split(b"\n\n") if b.strip()]
    assert [e["sequence_number"] for e in mine] == list(range(len(mine)))
    completed = mine[-1]["response"]
    assert _meaning(completed["output"])["text"] == _meaning(final["output"])["text"]
    assert _meaning(completed["output"])["calls"] == _meaning(final["output"])["calls"]
    if "openrouter" not in it.uri:  # OpenRouter renames its temporary item ids in response.completed
        assert [(i["type"], i["id"]) for i in completed["output"]] == [
            (i["type"], i["id"]) for i in final["output"]
        ]
    kinds = {e["type"] for e in _events_of(it.body)} | {"response.created", "response.in_progress"}
    if "openrouter" in it.uri:  # its raw chain of thought (reasoning_text) is shown as a summary
        kinds |= {
            f"response.reasoning_summary_{k}" for k in ("part.added", "text.delta", "text.done", "part.done")
        }
    assert {e["type"] for e in mine} <= kinds


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("it", [c for c in CASES if c.status >= 400], ids=_case_id)
def test_recorded_errors_are_classified(it: Interaction) -> None:
    err = classify_error(it.status, it.response_headers, it.body, UP)
    body = it.response_json()["error"]
    assert isinstance(err, UpstreamClientError) and err.status == it.status
    assert body["message"] in err.message
    assert err.param == body.get("param")


def _chunks_file(name: str) -> bytes:
    lines = (DIR / name).read_text().splitlines()
    return b"".join(
        b"event: " + json.loads(line)["type"].encode() + b"\ndata: " + line.encode() + b"\n\n"
        for line in lines
    )


def test_in_stream_error_before_output_raises_the_upstream_error() -> None:
    body = _chunks_file("openai-error.1.chunks.txt")
    parser = ResponsesStreamParser(UP)
    with pytest.raises(UpstreamError) as exc:
        parser.feed(body)
        parser.close()
    assert isinstance(exc.value, UpstreamQuotaExceeded)
    assert "quota" in exc.value.message


def test_xai_stream_folds_to_its_completed_response() -> None:
    body = _chunks_file("xai-text-with-reasoning-streaming.1.chunks.txt")
    final = _completed_response(body)
    parser = ResponsesStreamParser(UP)
    acc = Accumulator()
    for chunk in _chunked(body, random.Random(7)):
        for e in parser.feed(chunk):
            acc.add(e)
    for e in parser.close():
        acc.add(e)
    resp = acc.result()
    want = _meaning(final["output"])
    assert resp.text() == want["text"] and resp.text()
    assert [p.text for p in resp.content if isinstance(p, ThinkingPart)] == want["summaries"]
    assert (
        resp.usage is not None
        and resp.usage.cached_input_tokens == 192
        and resp.usage.reasoning_tokens == 323
    )


def test_xai_web_search_body_keeps_its_server_side_call() -> None:
    raw = (DIR / "xai-web-search-tool.1.json").read_bytes()
    recorded = json.loads(raw)
    resp = parse_responses_body(raw, UP)
    assert _canonical_meaning(resp) == _meaning(recorded["output"])
    assert (
        resp.usage is not None
        and resp.usage.extensions["openai_responses"]["num_server_side_tools_used"] == 1
    )


# ------------------------------------------------------------------- stored-state shapes


def _ruby(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((DIR / name).read_text())
    return list(data["http_interactions"])


def test_input_items_and_delete_have_openais_shape(tmp_path: Path) -> None:
    listed = json.loads(_ruby("responses_input_items.yml")[0]["response"]["body"]["string"])
    deleted = json.loads(_ruby("responses_delete.yml")[0]["response"]["body"]["string"])
    from fareway.pipeline.responses_state import with_ids

    # a string input is stored as one user input_text message, as OpenAI lists it
    req = wire.parse_request(
        orjson.dumps({"model": "m", "input": listed["data"][0]["content"][0]["text"]}), {}
    )
    mine = with_ids(wire.echo_of(req)["input"])
    theirs = listed["data"][0]
    assert set(mine[0]) == set(theirs) and mine[0]["content"] == theirs["content"]
    assert mine[0]["role"] == theirs["role"] and mine[0]["status"] == theirs["status"]
    assert set(listed) == {"object", "data", "first_id", "last_id", "has_more"}
    assert set(deleted) == {"id", "object", "deleted"} and deleted["object"] == "response.deleted"


@pytest.mark.parametrize("deltas", [[], ['{"a":', "1}"]])
def test_function_arguments_come_once_whether_in_deltas_or_only_in_the_done_event(deltas: list[str]) -> None:
    """A function call's arguments streamed as deltas are not sent again from
    ``function_call_arguments.done``; a stream that gives them only there still gives them."""

    def ev(kind: str, **body: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **body})}\n\n".encode()

    item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    }
    body = ev(
        "response.created", response={"id": "resp_1", "model": "gpt-x", "status": "in_progress", "output": []}
    )
    body += ev("response.output_item.added", output_index=0, item=item)
    for d in deltas:
        body += ev("response.function_call_arguments.delta", item_id="fc_1", output_index=0, delta=d)
    body += ev("response.function_call_arguments.done", item_id="fc_1", output_index=0, arguments='{"a":1}')
    done = {**item, "status": "completed", "arguments": '{"a":1}'}
    body += ev("response.output_item.done", output_index=0, item=done)
    body += ev(
        "response.completed",
        response={
            "id": "resp_1",
            "model": "gpt-x",
            "status": "completed",
            "output": [done],
            "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        },
    )
    parser = ResponsesStreamParser(UP)
    acc = Accumulator()
    for e in parser.feed(body) + parser.close():
        acc.add(e)
    calls = [p for p in acc.result().content if isinstance(p, ToolCallPart)]
    assert [(c.name, c.arguments) for c in calls] == [("f", '{"a":1}')]
