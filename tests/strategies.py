"""Hypothesis strategies for canonical requests and responses (test-only).

The conversations are *realistic*: system prompts first (sometimes one later, as developer messages
are), user turns with text and images, assistant turns with thinking, text and 0-3 (parallel) tool
calls, then the results of every call in call order (grouped one per tool message, OpenAI style,
or all in one, Anthropic style), sometimes as errors, sometimes with an image.  Everything a
dialect refuses by design (tool arguments that are not a JSON object for Anthropic, a tool result
naming no known call for Gemini) is never generated; what a dialect carries lossily is left in,
for the per-dialect normalisation in ``test_property_translation`` to describe.

Deliberate limits (so the properties test translation, not these ambiguities):

* Tool-result text is either plain text that does not start with ``{`` or the JSON text of an
  object without ``result``/``error`` keys: Gemini's ``functionResponse.response`` reads
  ``{"result": x}`` and ``{"error": x}`` as a plain / an error result.
* Tool-call ids are unique within a conversation.
* Tool parameter schemas use only the OpenAPI subset Gemini's ``parameters`` accepts unchanged.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import strategies as st

from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Usage,
)

# ------------------------------------------------------------------------------------ scalars

_ALPHABET = st.characters(codec="utf-8", exclude_categories=["Cs"])
_SPECIAL = st.sampled_from(
    ["", " ", "\n", "\r\n", "\t", "é", "ß", "中文", "🙂", "👩‍💻", "\u2028", '"', "\\", "{}", "data: x"]
)

text = st.one_of(
    st.text(_ALPHABET, max_size=12),
    st.lists(st.one_of(_SPECIAL, st.text(_ALPHABET, max_size=4)), max_size=4).map("".join),
)
"""Short unicode text with emoji (incl. ZWJ sequences), newlines, CRLF, quotes and backslashes."""

nonempty_text = text.map(lambda t: t or "·")

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ALNUM = _LOWER + _LOWER.upper() + "0123456789"
identifier = st.builds(
    lambda a, b: a + b, st.sampled_from(_LOWER), st.text(_LOWER + "0123456789_", max_size=8)
)

b64 = st.binary(min_size=1, max_size=24).map(lambda b: __import__("base64").b64encode(b).decode())

_tool_id = st.builds(
    lambda prefix, body: prefix + body,
    # call_ (OpenAI), toolu_ (Anthropic), none (Mistral-style alnum), fc.x: (not valid for Anthropic)
    st.sampled_from(["call_", "toolu_", "", "fc.a1:"]),
    st.text(_ALNUM, min_size=6, max_size=9),
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(identifier, inner, max_size=3)),
    max_leaves=6,
)
json_object = st.dictionaries(identifier, json_value, max_size=4)


@st.composite
def _arguments(draw: st.DrawFn) -> str:
    """Tool-call arguments as a model writes them: ``""`` (no arguments) or an object's JSON
    text, compact or spaced."""
    if draw(st.integers(0, 5)) == 0:
        return ""
    obj = draw(json_object)
    if draw(st.booleans()):
        return orjson.dumps(obj).decode()
    import json

    return json.dumps(obj, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))


_plain_result = text.map(lambda t: "(" + t if t.lstrip().startswith("{") else t)
result_text = st.one_of(
    _plain_result,
    _plain_result,
    _plain_result,
    st.dictionaries(st.sampled_from(["city", "temp", "items", "ok", "n"]), json_value, max_size=3).map(
        lambda o: orjson.dumps(o).decode()
    ),
)
"""A tool's output: plain text not starting with ``{``, or an object's JSON text."""


_MEDIA = st.sampled_from(["image/png", "image/jpeg", "image/webp", "image/gif"])


@st.composite
def _image(draw: st.DrawFn) -> ImagePart:
    detail = draw(st.sampled_from([None, None, "auto", "low", "high"]))
    if draw(st.booleans()):
        return ImagePart(data=draw(b64), media_type=draw(_MEDIA), detail=detail)
    ext = draw(st.sampled_from(["png", "jpg", "webp", "gif", ""]))
    path = draw(identifier)
    return ImagePart(url=f"https://img.example.com/{path}{'.' + ext if ext else ''}", detail=detail)


arguments = _arguments()
image = _image()

# ------------------------------------------------------------------------------------- tools

_param_schema = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean"])},
    optional={"description": text},
)


@st.composite
def tool_spec(draw: st.DrawFn, name: str) -> ToolSpec:
    props = draw(st.dictionaries(identifier, _param_schema, max_size=3))
    params: dict[str, Any] = {"type": "object", "properties": props}
    if draw(st.booleans()) and props:
        params["required"] = sorted(props)[:1]
    return ToolSpec(
        name=name,
        description=draw(st.one_of(st.none(), text)),
        parameters=params,
        strict=draw(st.sampled_from([None, None, True, False])),
    )


# ------------------------------------------------------------------------------------- parts


@st.composite
def _thinking(draw: st.DrawFn, *, redacted: bool = True) -> ThinkingPart:
    kind = draw(
        st.sampled_from(["signed", "signed", "unsigned", "redacted"] if redacted else ["signed", "unsigned"])
    )
    if kind == "redacted":
        return ThinkingPart(redacted=draw(b64))
    sig = draw(b64) if kind == "signed" else None
    return ThinkingPart(text=draw(text), signature=sig)


THINKING = {True: _thinking(redacted=True), False: _thinking(redacted=False)}


class _Ids:
    """Unique tool-call ids within one conversation."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def new(self, draw: st.DrawFn) -> str:
        i = draw(_tool_id)
        while i in self.used:
            i += "x"
        self.used.add(i)
        return i


@st.composite
def conversation(draw: st.DrawFn, tools: list[ToolSpec]) -> list[Message]:
    ids = _Ids()
    names = [t.name for t in tools] or ["lookup"]
    msgs: list[Message] = []
    for _ in range(draw(st.integers(0, 2))):
        msgs.append(Message("system", draw(st.lists(text.map(TextPart), min_size=1, max_size=2))))
    for turn in range(draw(st.integers(1, 3))):
        if turn and draw(st.integers(0, 5)) == 0:  # a mid-conversation system/developer message
            msgs.append(Message("system", [TextPart(draw(nonempty_text))]))
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):  # sometimes two user turns in a row
            parts: list[Part] = draw(st.lists(st.one_of(text.map(TextPart), image), min_size=1, max_size=3))
            name = draw(st.sampled_from([None, None, None, "alice"]))
            msgs.append(Message("user", parts, name=name))
        for _ in range(draw(st.integers(0, 2))):  # assistant turns (each followed by its results)
            content: list[Part] = []
            content += draw(st.lists(THINKING[True], max_size=2))
            content += draw(st.lists(text.map(TextPart), max_size=2))
            calls = [
                ToolCallPart(ids.new(draw), draw(st.sampled_from(names)), draw(arguments))
                for _ in range(draw(st.integers(0, 3)))
            ]
            content += calls
            msgs.append(Message("assistant", content))
            if not calls:
                break
            results: list[Part] = []
            for call in calls:
                body: list[Part] = [TextPart(draw(result_text))]
                if draw(st.integers(0, 4)) == 0:
                    body.append(TextPart(draw(_plain_result)))
                if draw(st.integers(0, 6)) == 0:
                    body.append(draw(image))
                if draw(st.integers(0, 8)) == 0:
                    body = []
                results.append(
                    ToolResultPart(
                        call.id,
                        body,
                        is_error=draw(st.integers(0, 4)) == 0,
                        name=call.name if draw(st.booleans()) else None,
                    )
                )
            if draw(st.booleans()):
                msgs += [Message("tool", [r]) for r in results]
            else:
                msgs.append(Message("tool", results))
    return msgs


_thinking_config = st.one_of(
    st.builds(ThinkingConfig, st.just("enabled"), st.one_of(st.none(), st.integers(1024, 8192))),
    st.builds(
        ThinkingConfig,
        st.sampled_from(["enabled", "adaptive"]),
        st.none(),
        st.sampled_from(["minimal", "low", "medium", "high"]),
    ),
    st.just(ThinkingConfig("adaptive")),
    st.just(ThinkingConfig("disabled")),
    st.just(ThinkingConfig("disabled", effort="none")),
)


@st.composite
def chat_request(draw: st.DrawFn) -> ChatRequest:
    tool_names = draw(st.lists(identifier, max_size=3, unique=True))
    tools = [draw(tool_spec(n)) for n in tool_names]
    req = ChatRequest(model="m-" + draw(identifier), messages=draw(conversation(tools)), tools=tools)
    req.stream = draw(st.booleans())
    req.max_tokens = draw(st.one_of(st.none(), st.integers(1, 40000)))
    req.temperature = draw(st.one_of(st.none(), st.floats(0, 2, allow_nan=False)))
    req.top_p = draw(st.one_of(st.none(), st.floats(0, 1, allow_nan=False)))
    req.top_k = draw(st.one_of(st.none(), st.integers(1, 100)))
    req.stop = draw(st.lists(st.sampled_from(["END", "\n\n", " ", "###", "🛑"]), max_size=3, unique=True))
    req.seed = draw(st.one_of(st.none(), st.integers(0, 2**31)))
    req.n = draw(st.sampled_from([None, None, 1, 2]))
    req.user = draw(st.one_of(st.none(), identifier))
    if draw(st.integers(0, 4)) == 0:
        req.metadata = {"tag": draw(identifier)}
    if draw(st.booleans()):
        mode: Any = draw(st.sampled_from(["auto", "none", "required", "tool"]))
        req.tool_choice = ToolChoice(
            mode,
            draw(st.sampled_from(tool_names))
            if mode == "tool" and tool_names
            else ("x" if mode == "tool" else None),
            draw(st.sampled_from([None, True, False])),
        )
    rf: Any = draw(st.sampled_from([None, None, "text", "json_object", "json_schema"]))
    if rf == "json_schema":
        req.response_format = ResponseFormat(
            "json_schema",
            name=draw(identifier),
            schema={"type": "object", "properties": {"a": {"type": "string"}}},
            strict=draw(st.sampled_from([None, True])),
        )
    elif rf is not None:
        req.response_format = ResponseFormat(rf)
    if draw(st.booleans()):
        req.thinking = draw(_thinking_config)
    req.source_dialect = draw(st.sampled_from(["openai", "anthropic"]))
    return req


# ---------------------------------------------------------------------------------- responses


@st.composite
def usage(draw: st.DrawFn) -> Usage:
    """Consistent buckets: cached + cache_write <= input, reasoning <= output."""
    inp = draw(st.integers(0, 200_000))
    cached = draw(st.integers(0, inp))
    write = draw(st.integers(0, inp - cached))
    out = draw(st.integers(0, 50_000))
    return Usage(inp, out, cached, write, draw(st.integers(0, out)))


_FINISH = st.sampled_from(
    [
        "stop",
        "stop",
        "stop_sequence",
        "length",
        "tool_calls",
        "content_filter",
        "pause",
        "context_window",
        "error",
        None,
    ]
)


@st.composite
def chat_response(draw: st.DrawFn, *, redacted: bool = True) -> ChatResponse:
    """A model's answer: thinking, text and parallel tool calls in any order."""
    ids = _Ids()
    parts: list[Part] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "text", "thinking", "tool"]))
        if kind == "text":
            parts.append(TextPart(draw(text)))
        elif kind == "thinking":
            parts.append(draw(THINKING[redacted]))
        else:
            parts.append(ToolCallPart(ids.new(draw), draw(identifier), draw(arguments)))
    finish: Any = draw(_FINISH)
    return ChatResponse(
        id=draw(st.sampled_from(["msg_", "chatcmpl-", "resp-", ""]))
        + draw(st.text(_ALNUM, min_size=6, max_size=12)),
        model="m-" + draw(identifier),
        content=parts,
        finish_reason=finish,
        stop_sequence=draw(st.sampled_from(["END", "###"])) if finish == "stop_sequence" else None,
        usage=draw(st.one_of(st.none(), usage(), usage(), usage())),
        created=draw(st.integers(1_600_000_000, 1_900_000_000)),
    )


@st.composite
def cut_points(draw: st.DrawFn, size: int) -> list[int]:
    """Sorted byte offsets to split a body of ``size`` bytes at (may cut inside a UTF-8 char)."""
    if size <= 1:
        return []
    return sorted(set(draw(st.lists(st.integers(1, size - 1), max_size=12))))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# ------------------------------------------------------------------- OpenAI Responses items

_item_hex = st.text("0123456789abcdef", min_size=8, max_size=8)
_PROVIDERS = st.sampled_from(["openai", "anthropic", "gemini"])


@st.composite
def _responses_reasoning(draw: st.DrawFn) -> dict[str, Any]:
    """A reasoning item as a client sends it back: OpenAI's own encrypted content, or the envelope
    Fareway put on another provider's reasoning (signature or redacted data inside)."""
    from fareway.dialects.openai_responses import seal

    item: dict[str, Any] = {"type": "reasoning", "id": "rs_" + draw(_item_hex)}
    item["summary"] = [{"type": "summary_text", "text": t} for t in draw(st.lists(nonempty_text, max_size=2))]
    kind = draw(st.sampled_from(["raw", "sealed", "sealed", "redacted"]))
    if kind == "raw":
        item["encrypted_content"] = "gAAAAA" + draw(b64)
    elif kind == "sealed":
        item["encrypted_content"] = seal(draw(_PROVIDERS), signature=draw(b64))
    else:  # redacted thinking is Anthropic's own
        item["encrypted_content"] = seal("anthropic", redacted=draw(b64))
    return item


@st.composite
def responses_input(draw: st.DrawFn, tools: list[str]) -> list[dict[str, Any]]:
    """A Responses ``input``: user/system/developer messages (string or typed content, images),
    assistant turns of reasoning, messages and function calls, then every call's output; and
    sometimes a built-in tool's call item (kept whole for an OpenAI upstream)."""
    ids = _Ids()
    names = tools or ["lookup"]
    items: list[dict[str, Any]] = []
    if draw(st.booleans()):
        items.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(nonempty_text)})
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            items.append({"role": "user", "content": draw(nonempty_text)})
        else:
            parts: list[dict[str, Any]] = [{"type": "input_text", "text": draw(text)}]
            if draw(st.integers(0, 3)) == 0:
                img = draw(image)
                parts.append({"type": "input_image", "image_url": img.as_data_url(), "detail": "auto"})
            items.append({"type": "message", "role": "user", "content": parts})
        calls = []
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.integers(0, 2)) == 0:
                items.append(draw(_responses_reasoning()))
            if draw(st.booleans()):
                msg: dict[str, Any] = {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": draw(nonempty_text), "annotations": []}],
                }
                if draw(st.booleans()):
                    msg["id"] = "msg_" + draw(_item_hex)
                    msg["status"] = "completed"
                items.append(msg)
            for _ in range(draw(st.integers(0, 2))):
                call = {
                    "type": "function_call",
                    "call_id": ids.new(draw),
                    "name": draw(st.sampled_from(names)),
                    "arguments": draw(arguments) or "{}",
                }
                if draw(st.booleans()):
                    call["id"] = "fc_" + draw(_item_hex)
                calls.append(call)
                items.append(call)
            if draw(st.integers(0, 5)) == 0:
                items.append(
                    {
                        "type": "web_search_call",
                        "id": "ws_" + draw(_item_hex),
                        "status": "completed",
                        "action": {"type": "search", "query": draw(text)},
                    }
                )
        for call in calls:
            items.append(
                {"type": "function_call_output", "call_id": call["call_id"], "output": draw(result_text)}
            )
    seen: set[str] = set()
    for it in items:  # item ids are unique, as an upstream issues them
        while "id" in it and it["id"] in seen:
            it["id"] += "0"
        if "id" in it:
            seen.add(it["id"])
    return items


@st.composite
def responses_request(draw: st.DrawFn) -> dict[str, Any]:
    """A ``POST /v1/responses`` body."""
    tool_names = draw(st.lists(identifier, max_size=3, unique=True))
    body: dict[str, Any] = {"model": "m-" + draw(identifier), "input": draw(responses_input(tool_names))}
    if tool_names:
        body["tools"] = [
            {
                "type": "function",
                "name": n,
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            }
            for n in tool_names
        ]
    if draw(st.booleans()):
        body["instructions"] = draw(nonempty_text)
    if draw(st.booleans()):
        body["max_output_tokens"] = draw(st.integers(1, 4000))
    if draw(st.booleans()):
        body["reasoning"] = {"effort": draw(st.sampled_from(["low", "medium", "high"]))}
    body["stream"] = draw(st.booleans())
    return body
