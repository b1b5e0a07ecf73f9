"""GeminiAdapter.build_request: canonical requests reproduce the request bodies real clients sent
(../shared/fixtures/gemini), plus the translation rules the recordings do not exercise.

Recorded requests differ from ours in ways that are client choices, not Gemini requirements; the
comparison normalises exactly these (see ``normalise``):

* pydantic-ai sends ``responseModalities`` and ``systemInstruction.role``; llm-gemini sends
  ``safetySettings``, ``description: null`` and snake_case ``function_call``/``function_response``.
* Both clients send their own minted call ids (``pyd_ai_...``, ``call_...``); Gemini-2/3 issue
  none, and we send an id only when Gemini issued it.
* pydantic-ai re-encodes thought signatures as URL-safe base64; we echo Gemini's bytes as sent.
* pydantic-ai sends ``parameters_json_schema`` (with ``additionalProperties``); we send the
  reduced ``parameters`` schema.  Tool outputs are wrapped as ``{"return_value": ..}`` /
  ``{"output": ..}`` by the clients and ``{"result": ..}`` by us.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from fareway.adapters.gemini import ADAPTER
from fareway.errors import BadRequest
from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Upstream,
)
from tests.recorded import Interaction, cassettes, load_cassette

BASE = "https://generativelanguage.googleapis.com/v1beta"


def up_for(model: str) -> Upstream:
    return Upstream(
        "gemini", "gemini", BASE, model, api_key="AIza-test", auth_header="x-goog-api-key", auth_scheme=None
    )


def cassette(name: str) -> list[Interaction]:
    matches = [p for p in cassettes("gemini") if p.name == name]
    if not matches:
        pytest.skip("no recorded fixtures (../shared/fixtures or $FAREWAY_FIXTURES)")
    return load_cassette(matches[0])


def model_of(it: Interaction) -> str:
    return it.uri.split("/models/")[1].split(":")[0]


def parse(it: Interaction) -> ChatResponse:
    if "streamGenerateContent" in it.uri:
        from fareway.events import Accumulator

        parser = ADAPTER.stream_parser(up_for(model_of(it)))
        acc = Accumulator()
        for ev in parser.feed(it.body) + parser.close():
            acc.add(ev)
        return acc.result()
    return ADAPTER.parse_response(it.body, up_for(model_of(it)))


def _sig(value: str) -> bytes:
    return base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_"))


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w.title() for w in rest)


def normalise(body: Any, *, tool_output_keys: tuple[str, ...] = ("return_value", "output")) -> Any:
    """Remove the client-specific differences listed in the module docstring."""

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            k2 = _camel(k) if k in ("function_call", "function_response") else k
            if k2 in ("responseModalities", "safetySettings"):
                continue
            if k2 == "id" and key in ("functionCall", "functionResponse"):
                continue
            if k2 == "description" and v is None:
                continue
            if k2 == "thoughtSignature":
                out[k2] = _sig(v)
                continue
            if k2 == "parameters_json_schema":
                k2, v = "parameters", {kk: vv for kk, vv in v.items() if kk != "additionalProperties"}
            if (
                k2 == "response"
                and key == "functionResponse"
                and len(v) == 1
                and next(iter(v)) in tool_output_keys
            ):
                v = {"result": next(iter(v.values()))}
            out[k2] = walk(v, k2)
        if key == "systemInstruction":
            out.pop("role", None)
        if key == "generationConfig" and not out:
            return None
        if "parts" in out:  # an empty text part next to others carries nothing
            parts = [p for p in out["parts"] if p != {"text": ""}]
            out["parts"] = parts or [{"text": ""}]
        return {k: v for k, v in out.items() if v is not None}

    return walk(body)


def built(req: ChatRequest, model: str) -> tuple[dict[str, Any], Any]:
    http = ADAPTER.build_request(req, up_for(model))
    return json.loads(http.body), http


# ------------------------------------------------------------------ recorded request bodies


def test_system_instruction_request() -> None:
    (it,) = cassette("test_google_model_instructions.yaml")
    req = ChatRequest(
        model="x",
        messages=[
            Message("system", [TextPart("You are a helpful assistant.")]),
            Message("user", [TextPart("What is the capital of France?")]),
        ],
    )
    body, http = built(req, model_of(it))
    assert http.url == it.uri and http.method == "POST" and not http.stream
    assert http.headers["x-goog-api-key"] == "AIza-test"
    assert http.headers["content-type"] == "application/json"
    assert normalise(body) == normalise(it.request_json)
    assert http.dropped == []


def test_streaming_request_uses_alt_sse() -> None:
    (it,) = cassette("test_google_model_stream.yaml")
    req = ChatRequest(
        model="x",
        messages=[
            Message("system", [TextPart("You are a helpful chatbot.")]),
            Message("user", [TextPart("What is the capital of France?")]),
        ],
        temperature=0.0,
        stream=True,
    )
    body, http = built(req, model_of(it))
    assert http.url == it.uri and http.url.endswith(":streamGenerateContent?alt=sse") and http.stream
    assert normalise(body) == normalise(it.request_json)


def test_max_tokens_request() -> None:
    (it,) = cassette("test_google_model_max_tokens_thinking_model_empty_response.yaml")
    req = ChatRequest(
        model="x",
        messages=[
            Message("system", [TextPart("You are a helpful chatbot.")]),
            Message("user", [TextPart("What is the capital of France?")]),
        ],
        max_tokens=5,
    )
    body, _ = built(req, model_of(it))
    assert body["generationConfig"]["maxOutputTokens"] == 5
    assert normalise(body) == normalise(it.request_json)


def test_json_schema_request() -> None:
    (it,) = cassette("test_google_native_output.yaml")
    schema = it.request_json["generationConfig"]["responseJsonSchema"]
    req = ChatRequest(
        model="x",
        messages=[Message("user", [TextPart("What is the largest city in Mexico?")])],
        response_format=ResponseFormat("json_schema", name="CityLocation", schema=schema),
    )
    body, _ = built(req, model_of(it))
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert normalise(body) == normalise(it.request_json)


def test_tool_choice_required_request() -> None:
    (it,) = cassette("test_tool_choice_matrix[required-google].yaml")
    decl = it.request_json["tools"][0]["functionDeclarations"][0]
    req = ChatRequest(
        model="x",
        messages=[Message("user", [TextPart("What's the weather in Paris?")])],
        tools=[ToolSpec(decl["name"], decl["description"], decl["parameters_json_schema"])],
        tool_choice=ToolChoice("required"),
    )
    body, _ = built(req, model_of(it))
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert normalise(body) == normalise(it.request_json)


def _history(its: list[Interaction], upto: int, first: list[Message], tool_key: str) -> list[Message]:
    """The canonical conversation behind request ``upto``: the opening messages, then for each
    earlier turn our parse of the recorded response and the tool results the client sent back
    (matched to our minted ids by position, with no function name, so it must be looked up)."""
    messages = list(first)
    later = its[upto].request_json["contents"]
    model_turns = [i for i, c in enumerate(later) if c["role"] == "model"]
    for turn, at in enumerate(model_turns):
        resp = parse(its[turn])
        messages.append(Message("assistant", resp.content))
        results = [p.get("functionResponse") or p.get("function_response") for p in later[at + 1]["parts"]]
        calls = resp.tool_calls()
        assert len(calls) == len(results)
        for call, result in zip(calls, results, strict=True):
            value = result["response"][tool_key]
            messages.append(Message("tool", [ToolResultPart(call.id, [TextPart(str(value))])]))
    return messages


def test_multi_turn_parallel_calls_with_signatures() -> None:
    its = cassette("test_google_instructions_only_with_tool_calls.yaml")
    recorded = its[4].request_json
    decls = recorded["tools"][0]["functionDeclarations"]
    req = ChatRequest(
        model="x",
        messages=_history(
            its,
            4,
            [
                Message(
                    "system", [TextPart("Tell three jokes. Generate topics with the generate_topic tool.")]
                ),
                Message("user", [TextPart("")]),
            ],
            "return_value",
        ),
        tools=[ToolSpec(d["name"], d["description"], d["parameters_json_schema"]) for d in decls],
        tool_choice=ToolChoice("required"),
    )
    body, http = built(req, model_of(its[4]))
    # pydantic-ai lists every tool in allowedFunctionNames, which is what ANY means anyway.
    expected = normalise(recorded)
    del expected["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]
    assert normalise(body) == expected
    # The three parallel calls of turn 1 come back in one model content, only the first signed,
    # and their three responses in one user content.
    model_turn = body["contents"][1]
    assert [("thoughtSignature" in p) for p in model_turn["parts"]] == [True, False, False]
    assert [list(p) for p in body["contents"][2]["parts"]] == [["functionResponse"]] * 3
    assert "id" not in model_turn["parts"][0]["functionCall"]
    assert http.dropped == ["tools.parameters.additionalProperties"]


def test_streamed_tool_call_signature_is_echoed() -> None:
    its = cassette("test_google_streaming_tool_call_thought_signature.yaml")
    recorded = its[1].request_json
    decl = recorded["tools"][0]["functionDeclarations"][0]
    req = ChatRequest(
        model="x",
        messages=_history(
            its,
            1,
            [Message("user", [TextPart("What is the capital of the user country? Call the tool")])],
            "return_value",
        ),
        tools=[ToolSpec(decl["name"], decl["description"], decl["parameters_json_schema"])],
        stream=True,
    )
    body, _ = built(req, model_of(its[1]))
    assert normalise(body) == normalise(recorded)
    sent = body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == recorded_signature(its[0])
    assert body["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_country",
        "response": {"result": "Mexico"},
    }


def recorded_signature(it: Interaction) -> str:
    for line in it.body.decode().split("\r\n"):
        if line.startswith("data:") and "thoughtSignature" in line:
            return str(json.loads(line[5:])["candidates"][0]["content"]["parts"][0]["thoughtSignature"])
    raise AssertionError("no signature in the recording")


@pytest.mark.parametrize(
    ("name", "opening", "upto"),
    [
        ("test_tools_with_gemini_3_thought_signatures.yaml", "What is 5 times 3?", 1),
        ("test_tools.yaml", "Two names for a pet pelican", 2),
    ],
)
def test_llm_gemini_tool_turns(name: str, opening: str, upto: int) -> None:
    its = cassette(name)
    recorded = its[upto].request_json
    decl = recorded["tools"][0]["functionDeclarations"][0]
    req = ChatRequest(
        model="x",
        messages=_history(its, upto, [Message("user", [TextPart(opening)])], "output"),
        tools=[ToolSpec(decl["name"], decl["description"], decl["parameters"])],
    )
    if "thinkingConfig" in recorded.get("generationConfig", {}):
        req.thinking = ThinkingConfig("adaptive")
        recorded = json.loads(json.dumps(recorded))
        recorded["generationConfig"]["thinkingConfig"]["thinkingBudget"] = -1
    body, _ = built(req, model_of(its[upto]))
    assert normalise(body) == normalise(recorded)


def test_openai_compat_conversation_translates_to_native() -> None:
    # The compat recording's second turn, as an OpenAI client sends it: a client-minted tool call
    # id and a tool message that carries no function name.
    (_, it) = cassette("test_compatible_api_with_tool_calls_without_id.yaml")
    sent = it.request_json
    tool = sent["tools"][0]["function"]
    call = sent["messages"][1]["tool_calls"][0]
    req = ChatRequest(
        model="x",
        messages=[
            Message("user", [TextPart(sent["messages"][0]["content"])]),
            Message(
                "assistant",
                [ToolCallPart(call["id"], call["function"]["name"], call["function"]["arguments"])],
            ),
            Message(
                "tool",
                [
                    ToolResultPart(
                        sent["messages"][2]["tool_call_id"], [TextPart(sent["messages"][2]["content"])]
                    )
                ],
            ),
        ],
        tools=[ToolSpec(tool["name"], tool["description"], tool["parameters"])],
        tool_choice=ToolChoice("auto"),
    )
    body, http = built(req, sent["model"])
    assert body == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is the current time?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_current_time", "args": {}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_current_time", "response": {"result": "Noon"}}}],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_current_time",
                        "description": "Get the current time.",
                        "parameters": {"properties": {}, "type": "object"},
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }
    assert http.dropped == ["tools.parameters.additionalProperties"]
    assert http.url == f"{BASE}/models/gemini-2.5-pro-preview-05-06:generateContent"


# ------------------------------------------------------------------ rules without recordings


def _req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="x", messages=list(messages), **kw)


def _body(req: ChatRequest, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    return dict(orjson.loads(ADAPTER.build_request(req, up_for(model)).body))


def test_tool_arguments_empty_and_invalid() -> None:
    base = [Message("user", [TextPart("hi")])]
    body = _body(_req(*base, Message("assistant", [ToolCallPart("c1", "f", "")])))
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
    with pytest.raises(BadRequest, match="not valid JSON"):
        _body(_req(*base, Message("assistant", [ToolCallPart("c1", "f", "{oops")])))


def test_tool_result_needs_a_name() -> None:
    with pytest.raises(BadRequest, match="function name"):
        _body(_req(Message("tool", [ToolResultPart("nope", [TextPart("x")])])))
    body = _body(_req(Message("tool", [ToolResultPart("nope", [TextPart('{"temp": 21}')], name="weather")])))
    assert body["contents"][0]["parts"][0]["functionResponse"] == {
        "name": "weather",
        "response": {"temp": 21},
    }


def test_error_tool_result() -> None:
    body = _body(_req(Message("tool", [ToolResultPart("c", [TextPart("boom")], is_error=True, name="f")])))
    assert body["contents"][0]["parts"][0]["functionResponse"]["response"] == {"error": "boom"}


def test_gemini_issued_ids_round_trip() -> None:
    call = ToolCallPart("fc_1", "f", '{"a": 1}', {"gemini": {"id": "fc_1"}})
    body = _body(
        _req(
            Message("user", [TextPart("go")]),
            Message("assistant", [call]),
            Message("tool", [ToolResultPart("fc_1", [TextPart("ok")])]),
        )
    )
    assert body["contents"][1]["parts"][0]["functionCall"] == {"name": "f", "args": {"a": 1}, "id": "fc_1"}
    assert body["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "f",
        "response": {"result": "ok"},
        "id": "fc_1",
    }


def test_gemini_3_unsigned_first_call_gets_the_bypass_signature() -> None:
    msgs = (
        Message("user", [TextPart("go")]),
        Message("assistant", [ToolCallPart("a", "f", "{}"), ToolCallPart("b", "f", "{}")]),
    )
    parts = _body(_req(*msgs), "gemini-3-flash-preview")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]
    assert all(
        "thoughtSignature" not in p for p in _body(_req(*msgs), "gemini-2.5-flash")["contents"][1]["parts"]
    )


def test_signature_from_an_anthropic_style_thinking_block_goes_on_the_next_part() -> None:
    assistant = Message("assistant", [ThinkingPart("summary", signature="U0lH"), TextPart("answer")])
    parts = _body(_req(Message("user", [TextPart("q")]), assistant))["contents"][1]["parts"]
    assert parts == [{"text": "answer", "thoughtSignature": "U0lH"}]
    trailing = Message("assistant", [TextPart("Scoop"), ThinkingPart("", signature="U0lH")])
    parts = _body(_req(Message("user", [TextPart("q")]), trailing))["contents"][1]["parts"]
    assert parts == [{"text": "Scoop"}, {"text": "", "thoughtSignature": "U0lH"}]


def test_images() -> None:
    msg = Message(
        "user",
        [
            ImagePart(data="iVBOR", media_type="image/png"),
            ImagePart(url="data:image/jpeg;base64,/9j/4AAQ"),
            ImagePart(url="https://example.com/cat.webp", detail="high"),
        ],
    )
    http = ADAPTER.build_request(_req(msg), up_for("gemini-2.5-flash"))
    assert json.loads(http.body)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"fileData": {"fileUri": "https://example.com/cat.webp", "mimeType": "image/webp"}},
    ]
    assert http.dropped == ["image_detail"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice(choice: ToolChoice, expected: dict[str, Any]) -> None:
    body = _body(_req(Message("user", [TextPart("q")]), tools=[ToolSpec("f")], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_generation_config_and_dropped_fields() -> None:
    req = _req(
        Message("user", [TextPart("q")]),
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        max_tokens=100,
        stop=["END"],
        seed=7,
        n=2,
        user="u1",
        thinking=ThinkingConfig("enabled", budget_tokens=1024),
        response_format=ResponseFormat("json_object"),
        tools=[ToolSpec("f")],
        tool_choice=ToolChoice("auto", parallel=False),
        extensions={"openai": {"frequency_penalty": 0.5, "presence_penalty": 0.1, "logit_bias": {"1": 5}}},
    )
    http = ADAPTER.build_request(req, up_for("gemini-2.5-flash"))
    assert json.loads(http.body)["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 100,
        "candidateCount": 2,
        "seed": 7,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
        "frequencyPenalty": 0.5,
        "presencePenalty": 0.1,
    }
    assert sorted(http.dropped) == ["logit_bias", "parallel_tool_calls", "user"]


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (ThinkingConfig("disabled"), {"thinkingBudget": 0}),
        (ThinkingConfig("adaptive"), {"includeThoughts": True, "thinkingBudget": -1}),
        (ThinkingConfig("enabled", effort="high"), {"includeThoughts": True, "thinkingLevel": "high"}),
    ],
)
def test_thinking_config(thinking: ThinkingConfig, expected: dict[str, Any]) -> None:
    assert (
        _body(_req(Message("user", [TextPart("q")]), thinking=thinking))["generationConfig"]["thinkingConfig"]
        == expected
    )


def test_schema_reduction() -> None:
    params = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
        "properties": {
            "unit": {"$ref": "#/$defs/Unit"},
            "city": {"type": ["string", "null"], "examples": ["Paris"]},
            "kind": {"const": "weather"},
            "alt": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        },
        "required": ["city"],
    }
    http = ADAPTER.build_request(
        _req(Message("user", [TextPart("q")]), tools=[ToolSpec("f", "d", params)]), up_for("m")
    )
    decl = json.loads(http.body)["tools"][0]["functionDeclarations"][0]
    assert decl["parameters"] == {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["c", "f"]},
            "city": {"type": "string", "nullable": True},
            "kind": {"enum": ["weather"], "type": "string"},
            "alt": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
        "required": ["city"],
    }
    assert sorted(http.dropped) == [
        "tools.parameters.$schema",
        "tools.parameters.additionalProperties",
        "tools.parameters.examples",
    ]


def test_recursive_schema_falls_back_to_json_schema() -> None:
    params = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    body = _body(_req(Message("user", [TextPart("q")]), tools=[ToolSpec("f", None, params)]))
    assert body["tools"][0]["functionDeclarations"][0] == {"name": "f", "parametersJsonSchema": params}


def test_gemini_extensions_pass_through() -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    req = _req(
        Message("user", [TextPart("q")]),
        temperature=1.0,
        extensions={"gemini": {"safetySettings": safety, "generationConfig": {"responseLogprobs": True}}},
    )
    body = _body(req)
    assert body["safetySettings"] == safety
    assert body["generationConfig"] == {"responseLogprobs": True, "temperature": 1.0}


def test_consecutive_tool_messages_share_one_content_but_user_text_does_not() -> None:
    req = _req(
        Message("user", [TextPart("q")]),
        Message("assistant", [ToolCallPart("a", "f", "{}"), ToolCallPart("b", "g", "{}")]),
        Message("tool", [ToolResultPart("a", [TextPart("1")])]),
        Message("tool", [ToolResultPart("b", [TextPart("2")])]),
        Message("user", [TextPart("and?")]),
    )
    contents = _body(req)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "user"]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["f", "g"]


def test_model_resource_names() -> None:
    req = _req(Message("user", [TextPart("q")]))
    assert (
        ADAPTER.build_request(req, up_for("models/gemini-2.5-flash")).url
        == f"{BASE}/models/gemini-2.5-flash:generateContent"
    )
    assert (
        ADAPTER.build_request(req, up_for("tunedModels/mine")).url
        == f"{BASE}/tunedModels/mine:generateContent"
    )


def test_schema_formats_and_non_string_enums() -> None:
    params = {
        "type": "object",
        "properties": {
            "u": {"type": "string", "format": "uri"},
            "t": {"type": "string", "format": "date-time"},
        },
    }
    http = ADAPTER.build_request(
        _req(Message("user", [TextPart("q")]), tools=[ToolSpec("f", None, params)]), up_for("m")
    )
    props = json.loads(http.body)["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]
    assert props == {"u": {"type": "string"}, "t": {"type": "string", "format": "date-time"}}
    assert http.dropped == ["tools.parameters.format"]
    ints = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}
    body = _body(_req(Message("user", [TextPart("q")]), tools=[ToolSpec("f", None, ints)]))
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == ints
