"""The Responses API wire parser refuses bad input with a 400 naming the parameter (OpenAI's
error JSON), and maps what it accepts onto the canonical request as its docstring says."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fareway.errors import BadRequest, NotFound
from fareway.types import ImagePart, OpaquePart, TextPart, ToolCallPart, ToolResultPart
from fareway.wire import openai_responses as wire


def parse(body: dict[str, Any]) -> Any:
    return wire.parse_request(orjson.dumps(body), {})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": [3]}, "input[0]"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "message", "role": "user"}]}, "input[0].content"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "output_audio"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"model": "m", "input": [{"content": "x"}]}, "input[0].type"),
        ({"model": "m", "input": "hi", "tools": [{"name": "f"}]}, "tools[0].type"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format.name"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "temperature": 3}, "temperature"),
        ({"model": "m", "input": "hi", "store": "yes"}, "store"),
        ({"model": "m", "input": "hi", "background": True}, "background"),
        ({"model": "m", "input": "hi", "conversation": "conv_1"}, "conversation"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse(body)
    assert exc.value.param == param
    status, raw = wire.encode_error(exc.value)
    err = orjson.loads(raw)["error"]
    assert status == 400 and err["param"] == param and err["type"] == "invalid_request_error"


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(BadRequest):
        wire.parse_request(b"{not json", {})
    with pytest.raises(BadRequest):
        wire.parse_request(b"[1, 2]", {})


def test_unknown_model_is_a_400_as_openai_answers() -> None:
    status, raw = wire.encode_error(NotFound("The model `x` does not exist.", param="model"))
    err = orjson.loads(raw)["error"]
    assert status == 400 and err["code"] == "model_not_found" and err["param"] == "model"


def test_items_map_to_canonical_messages() -> None:
    req = parse(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,iVBORw0KGgo=",
                            "detail": "low",
                        },
                        {"type": "input_file", "file_id": "file-1"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": ""},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "two"}],
                },
            ],
            "max_output_tokens": 64,
            "reasoning": {"effort": "high", "summary": "auto"},
            "text": {
                "format": {"type": "json_schema", "name": "S", "schema": {"type": "object"}},
                "verbosity": "low",
            },
            "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g", "strict": False}],
            "parallel_tool_calls": False,
            "include": ["reasoning.encrypted_content"],
        }
    )
    roles = [m.role for m in req.messages]
    assert roles == ["system", "system", "user", "assistant", "tool"]
    assert (
        req.messages[0].text() == "Be brief." and req.messages[1].extensions["openai"]["role"] == "developer"
    )
    user = req.messages[2].content
    assert (
        isinstance(user[0], TextPart) and isinstance(user[1], ImagePart) and isinstance(user[2], OpaquePart)
    )
    assert user[1].media_type == "image/png" and user[1].data == "iVBORw0KGgo=" and user[1].detail == "low"
    calls = req.messages[3].content
    assert [(c.id, c.name, c.arguments) for c in calls if isinstance(c, ToolCallPart)] == [
        ("c1", "f", '{"a":1}'),
        ("c2", "g", ""),
    ]
    results = req.messages[4].content
    assert [(r.tool_call_id, r.text()) for r in results if isinstance(r, ToolResultPart)] == [
        ("c1", "one"),
        ("c2", "two"),
    ]
    assert req.max_tokens == 64
    assert req.thinking is not None and req.thinking.effort == "high"
    assert req.response_format is not None and req.response_format.name == "S"
    assert [t.strict for t in req.tools] == [True, False]  # omitted strict means strict on this API
    assert req.tool_choice is not None and req.tool_choice.parallel is False
    ext = req.extensions["openai_responses"]
    assert ext["include"] == ["reasoning.encrypted_content"]
    assert ext["reasoning"] == {"summary": "auto"} and ext["text"] == {"verbosity": "low"}


# ----------------------------------------- streamed text: every .done holds what its deltas spelled

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _canonical_streams(draw: st.DrawFn) -> list[Any]:
    """Canonical events of an answer: text and refusal parts (some grouped into one message by an
    upstream item id), thinking parts (some grouped into one reasoning item), tool calls; each
    with a run of deltas."""
    from fareway.events import Finish, PartDelta, PartEnd, PartStart, ResponseStart
    from fareway.types import ThinkingPart

    events: list[Any] = [ResponseStart("resp_1", "gpt-x", 1)]
    for index in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["text", "refusal", "thinking", "tool"]))
        group = draw(st.sampled_from([None, "g1", "g2"]))
        ext = {"openai_responses": {"item_id": group}} if group else {}
        # (a tool call's arguments without blanks: the encoder closes blank arguments with "{}")
        texts = st.text('ab{}":,1', max_size=4) if kind == "tool" else st.text(max_size=4)
        first = draw(texts)
        if kind == "tool":
            events.append(PartStart(index, ToolCallPart(f"call_{index}", "f", first)))
            delta_kind = "tool_args"
        elif kind == "thinking":
            events.append(PartStart(index, ThinkingPart(first, extensions=ext)))
            delta_kind = "thinking"
        else:
            ext = {
                "openai_responses": {
                    **ext.get("openai_responses", {}),
                    **({"refusal": True} if kind == "refusal" else {}),
                }
            }
            events.append(PartStart(index, TextPart(first, ext)))
            delta_kind = "text"
        events += [PartDelta(index, delta_kind, t) for t in draw(st.lists(texts, max_size=8))]
        events.append(PartEnd(index))
    events.append(Finish("stop"))
    return events


@settings(max_examples=200, deadline=None)
@given(_canonical_streams())
def test_every_done_event_holds_what_its_deltas_spelled(events: list[Any]) -> None:
    """OpenAI's Responses stream contract: ``output_text.done``, ``refusal.done``,
    ``reasoning_summary_text.done`` and ``function_call_arguments.done`` carry the whole of what the
    deltas of that part sent, and so do the ``content_part.done`` part, the ``output_item.done``
    item and ``response.completed``.  (The builder joins deltas once, not one by one.)"""
    from fareway.wire.base import ResponseMeta

    req = wire.parse_request(orjson.dumps({"model": "gpt-x", "input": "hi", "stream": True}), {})
    enc = wire.WIRE.stream_encoder(req, ResponseMeta("req_1", "openai"))
    out = (
        enc.start()
        + b"".join(enc.encode(e) for e in events)
        + enc.close(ResponseMeta("req_1", "openai", "0.1"))
    )
    sent = [orjson.loads(b.split(b"\ndata: ", 1)[1]) for b in out.split(b"\n\n") if b.strip()]
    spelled: dict[tuple[str, int, int], str] = {}  # (kind, output index, part index)
    done: dict[tuple[str, int, int], str] = {}
    for e in sent:
        t = e["type"]
        if t in ("response.output_text.delta", "response.refusal.delta"):
            k = ("text", e["output_index"], e["content_index"])
            spelled[k] = spelled.get(k, "") + e["delta"]
        elif t == "response.reasoning_summary_text.delta":
            k = ("summary", e["output_index"], e["summary_index"])
            spelled[k] = spelled.get(k, "") + e["delta"]
        elif t == "response.function_call_arguments.delta":
            k = ("args", e["output_index"], 0)
            spelled[k] = spelled.get(k, "") + e["delta"]
        elif t in ("response.output_text.done", "response.refusal.done"):
            done[("text", e["output_index"], e["content_index"])] = e.get("text", e.get("refusal"))
        elif t == "response.content_part.done":
            part = e["part"]
            assert part.get("text", part.get("refusal")) == spelled.get(
                ("text", e["output_index"], e["content_index"]), ""
            )
        elif t == "response.reasoning_summary_text.done":
            done[("summary", e["output_index"], e["summary_index"])] = e["text"]
        elif t == "response.function_call_arguments.done":
            done[("args", e["output_index"], 0)] = e["arguments"]
    for k, text in done.items():
        want = spelled.get(k, "")
        assert text == (want if k[0] != "args" or want.strip() else "{}")
    completed = sent[-1]["response"]
    for n, item in enumerate(completed["output"]):
        if item["type"] == "message":
            for i, cp in enumerate(item["content"]):
                assert cp.get("text", cp.get("refusal")) == spelled.get(("text", n, i), "")
        elif item["type"] == "reasoning":
            for i, s in enumerate(item["summary"]):
                assert s["text"] == spelled.get(("summary", n, i), "")
        elif item["type"] == "function_call":
            want = spelled.get(("args", n, 0), "")
            assert item["arguments"] == (want if want.strip() else "{}")
