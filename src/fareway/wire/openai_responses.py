"""Inbound OpenAI Responses API dialect (``POST /v1/responses``).

A request is parsed strictly into a canonical :class:`~fareway.types.ChatRequest` (items map to
messages as :mod:`fareway.dialects.openai_responses` says), and the canonical answer is encoded as
a ``response`` object (the stream encoder and the item builder live in
:mod:`fareway.wire.openai_responses_stream`).

Where things go:

* ``instructions`` -> a leading system message (not inherited through ``previous_response_id``, as
  OpenAI does); ``max_output_tokens`` -> ``max_tokens``; ``reasoning.effort`` -> ``thinking``;
  ``text.format`` -> ``response_format``; function tools (flat) -> ``tools``; ``tool_choice``,
  ``parallel_tool_calls``, ``temperature``, ``top_p``, ``metadata``, ``user`` as in chat.
* Built-in tools (``web_search``, ``file_search``, ``code_interpreter``, ``computer_use_preview``,
  ``mcp``, ...) and a ``tool_choice`` naming one are kept in ``extensions["openai_responses"]``
  and listed in ``extensions["fareway"]["native_only"]``: only a provider that speaks the
  Responses API natively can run them; the executor refuses any other with a 400 naming the tool.
* Every other top-level field the canonical model does not have (``include``, ``truncation``,
  ``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``text.verbosity``,
  ``reasoning.summary``, ``top_logprobs``, ``max_tool_calls``, unknown ones) goes to
  ``extensions["openai_responses"]`` verbatim, for the native adapter.
* ``extensions["fareway"]["responses"]``: what the response echoes and the state stage needs
  (``id``, ``created_at``, ``store``, ``previous_response_id``, ``input`` items, the request's
  ``tools`` / ``tool_choice`` / ``text`` / ``reasoning`` as given...).  A note, never sent upstream.

Errors are OpenAI's error JSON; an unknown model is a 400 ``model_not_found`` (``param: model``),
as OpenAI's ``/v1/responses`` answers (chat completions says 404).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from fareway.dialects.openai_responses import (
    DIALECT,
    FW,
    item_type,
    items_to_messages,
    strip_private,
    want_dict,
    want_list,
    want_str,
)
from fareway.errors import BadRequest, FarewayError, NotFound, client_status
from fareway.types import (
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ToolChoice,
    ToolSpec,
)
from fareway.wire.base import ResponseMeta
from fareway.wire.limits import MAX_OUTPUT_TOKENS, bounded_int, bounded_number, check_depth, check_model
from fareway.wire.openai_responses_stream import ResponseBuilder, ResponsesStreamEncoder, error_object

__all__ = [
    "DIALECT",
    "WIRE",
    "OpenAIResponsesWire",
    "echo_of",
    "item_type",
    "items_to_messages",
    "new_response_id",
    "parse_request",
    "strip_private",
]

_MODELLED_TOP = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "max_output_tokens",
        "metadata",
        "stream",
        "stream_options",
        "store",
        "previous_response_id",
        "temperature",
        "top_p",
        "user",
        "conversation",
        "background",
    }
)


def new_response_id() -> str:
    return "resp_" + os.urandom(24).hex()


def _bad(message: str, param: str | None) -> BadRequest:
    return BadRequest(message, param=param)


def _want_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"'{param}' must be a boolean", param)
    return value


def _want_number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise _bad(f"'{param}' must be a finite number", param)
    return float(value)


def _want_int(value: Any, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{param}' must be an integer", param)
    return value


def _tools(value: Any, native_only: list[str], builtins: list[dict[str, Any]]) -> list[ToolSpec]:
    out: list[ToolSpec] = []
    for i, raw in enumerate(want_list(value, "tools")):
        p = f"tools[{i}]"
        tool = want_dict(raw, p)
        kind = tool.get("type")
        if kind == "function":
            name = want_str(tool.get("name"), f"{p}.name", nonempty=True)
            desc = tool.get("description")
            spec = ToolSpec(name, want_str(desc, f"{p}.description") if desc is not None else None)
            if tool.get("parameters") is not None:
                spec.parameters = want_dict(tool["parameters"], f"{p}.parameters")
            # Omitted `strict` means strict on the Responses API (WIRE.md 1f): say so explicitly.
            strict = tool.get("strict")
            spec.strict = True if strict is None else _want_bool(strict, f"{p}.strict")
            extra = {
                k: v
                for k, v in tool.items()
                if k not in ("type", "name", "description", "parameters", "strict")
            }
            if extra:
                spec.extensions = {DIALECT: extra}
            out.append(spec)
        elif isinstance(kind, str) and kind:
            native_only.append(kind)
            builtins.append(tool)
        else:
            raise _bad(
                f"'{p}.type' is required (function, or a built-in tool such as web_search)", f"{p}.type"
            )
    return out


def _tool_choice(value: Any, native_only: list[str], ext: dict[str, Any]) -> ToolChoice | None:
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise _bad(
                f"'tool_choice' is {value!r}; expected none, auto, required or an object", "tool_choice"
            )
        return ToolChoice(value)  # type: ignore[arg-type]
    obj = want_dict(value, "tool_choice")
    kind = obj.get("type")
    if kind == "function":
        return ToolChoice("tool", want_str(obj.get("name"), "tool_choice.name", nonempty=True))
    if kind == "allowed_tools":
        mode = obj.get("mode", "auto")
        ext["tool_choice"] = obj
        return ToolChoice("required" if mode == "required" else "auto")
    if isinstance(kind, str) and kind:
        native_only.append(kind)
        ext["tool_choice"] = obj
        return None
    raise _bad("'tool_choice.type' is required", "tool_choice.type")


def _text_format(value: Any, ext: dict[str, Any]) -> ResponseFormat | None:
    text = want_dict(value, "text")
    rest = {k: v for k, v in text.items() if k != "format"}
    if rest:
        ext["text"] = rest
    fmt = text.get("format")
    if fmt is None:
        return None
    fmt = want_dict(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise _bad("'text.format.type' must be text, json_object or json_schema", "text.format.type")
    rf = ResponseFormat("json_schema", want_str(fmt.get("name"), "text.format.name", nonempty=True))
    if fmt.get("schema") is not None:
        rf.schema = want_dict(fmt["schema"], "text.format.schema")
    if fmt.get("strict") is not None:
        rf.strict = _want_bool(fmt["strict"], "text.format.strict")
    if fmt.get("description") is not None:
        rf.description = want_str(fmt["description"], "text.format.description")
    return rf


def input_items(value: Any) -> list[dict[str, Any]]:
    """``input`` as a list of items: a string is one user message."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    items = want_list(value, "input")
    for i, it in enumerate(items):
        want_dict(it, f"input[{i}]")
    return items


def parse_request(body: bytes, headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Parse a ``POST /v1/responses`` body.  Raises BadRequest with ``param`` set.  Items that
    reference stored state (``item_reference``, and everything ``previous_response_id`` names)
    are resolved by the responses state stage, which rebuilds the messages."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad(
            "could not parse the JSON body of your request: it is not valid JSON (send a JSON object with "
            "'model' and 'input', and Content-Type: application/json)",
            None,
        ) from None
    if not isinstance(data, dict):
        raise _bad("the request body must be a JSON object", None)
    check_depth(body, data)
    model = data.get("model")
    if model is None:
        raise _bad("you must provide a 'model' parameter", "model")
    model = check_model(want_str(model, "model", nonempty=True))
    get = data.get
    if get("conversation") is not None:
        raise _bad(
            "'conversation' is not supported by this gateway; use previous_response_id", "conversation"
        )
    if get("background"):
        raise _bad("'background' mode is not supported by this gateway", "background")

    prev = get("previous_response_id")
    if prev is not None:
        prev = want_str(prev, "previous_response_id", nonempty=True)
    raw_input = get("input")
    if raw_input is None:
        if prev is None:
            raise _bad("you must provide 'input' (or a 'previous_response_id' to continue)", "input")
        items: list[dict[str, Any]] = []
    else:
        items = input_items(raw_input)
        if not items and prev is None:
            raise _bad("'input' must contain at least one item", "input")
    instructions = get("instructions")
    if instructions is not None:
        instructions = want_str(instructions, "instructions")

    ext: dict[str, Any] = {k: v for k, v in data.items() if k not in _MODELLED_TOP}
    native_only: list[str] = []
    refs = any(isinstance(it, dict) and it.get("type") == "item_reference" for it in items)
    messages = [] if refs or prev is not None else items_to_messages(items)
    if instructions:
        messages.insert(0, Message("system", [TextPart(instructions)]))
    req = ChatRequest(model=model, messages=messages, source_dialect="openai_responses")

    if (v := get("stream")) is not None:
        req.stream = _want_bool(v, "stream")
    req.include_usage = True
    store = True
    if (v := get("store")) is not None:
        store = _want_bool(v, "store")
    if (v := get("max_output_tokens")) is not None:
        req.max_tokens = bounded_int(
            _want_int(v, "max_output_tokens"), "max_output_tokens", 1, MAX_OUTPUT_TOKENS
        )
    if (v := get("temperature")) is not None:
        req.temperature = bounded_number(_want_number(v, "temperature"), "temperature", 0, 2)
    if (v := get("top_p")) is not None:
        req.top_p = bounded_number(_want_number(v, "top_p"), "top_p", 0, 1)
    if (v := get("user")) is not None:
        req.user = want_str(v, "user")
    if (v := get("metadata")) is not None:
        req.metadata = want_dict(v, "metadata")
    reasoning = get("reasoning")
    if reasoning is not None:
        r = want_dict(reasoning, "reasoning")
        effort = r.get("effort")
        if effort is not None:
            effort = want_str(effort, "reasoning.effort", nonempty=True)
            req.thinking = ThinkingConfig("disabled" if effort == "none" else "enabled", effort=effort)
        rest = {k: v for k, v in r.items() if k != "effort"}
        if rest:
            ext["reasoning"] = rest
    if (v := get("text")) is not None:
        req.response_format = _text_format(v, ext)
    builtins: list[dict[str, Any]] = []
    if (v := get("tools")) is not None:
        req.tools = _tools(v, native_only, builtins)
    if builtins:
        ext["builtin_tools"] = builtins
    if (v := get("tool_choice")) is not None:
        req.tool_choice = _tool_choice(v, native_only, ext)
    if (v := get("parallel_tool_calls")) is not None:
        parallel = _want_bool(v, "parallel_tool_calls")
        if req.tool_choice is not None:
            req.tool_choice.parallel = parallel
        elif req.tools:
            req.tool_choice = ToolChoice("auto", parallel=parallel)
        else:
            ext["parallel_tool_calls"] = parallel
    if ext:
        req.extensions[DIALECT] = ext
    include = ext.get("include")
    echo: dict[str, Any] = {
        "id": new_response_id(),
        "created_at": int(time.time()),
        "store": store,
        "previous_response_id": prev,
        "input": items,
        "instructions": instructions,
        "tools": get("tools") or [],
        "tool_choice": get("tool_choice") if get("tool_choice") is not None else "auto",
        "parallel_tool_calls": get("parallel_tool_calls") if get("parallel_tool_calls") is not None else True,
        "text": get("text") if isinstance(get("text"), dict) else {"format": {"type": "text"}},
        "reasoning": reasoning if isinstance(reasoning, dict) else {"effort": None, "summary": None},
        "max_output_tokens": req.max_tokens,
        "metadata": req.metadata,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "user": req.user,
        "include": list(include) if isinstance(include, list) else [],
        "needs_state": refs or prev is not None,
    }
    fw: dict[str, Any] = {"responses": echo}
    if native_only:
        fw["native_only"] = [f"the built-in tool `{t}`" for t in dict.fromkeys(native_only)]
    req.extensions[FW] = fw
    return req


def echo_of(req: ChatRequest) -> dict[str, Any]:
    """What the parser noted for the response (see the module docstring)."""
    fw = req.extensions.get(FW) or {}
    echo = fw.get("responses")
    if not isinstance(echo, dict):  # a request that did not come through this parser
        echo = {"id": new_response_id(), "created_at": int(time.time()), "store": False, "include": []}
        req.extensions.setdefault(FW, {})["responses"] = echo
    return echo


def encode_response(resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes:
    builder = ResponseBuilder(echo_of(req), meta.provider, req.model)
    return orjson.dumps(builder.whole(resp, meta.cost_usd))


def encode_error(exc: FarewayError) -> tuple[int, bytes]:
    if isinstance(exc, NotFound) and exc.param == "model":
        # OpenAI's /v1/responses answers an unknown model with a 400 (chat completions: 404)
        obj = error_object(exc)
        obj["type"] = "invalid_request_error"
        return 400, orjson.dumps({"error": obj})
    return client_status(exc), orjson.dumps({"error": error_object(exc)})


class OpenAIResponsesWire:
    """The OpenAI Responses inbound dialect (implements ``wire.base.WireDialect``)."""

    name = "openai_responses"

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return parse_request(body, headers)

    def encode_response(self, resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes:
        return encode_response(resp, req, meta)

    def stream_encoder(self, req: ChatRequest, meta: ResponseMeta) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(echo_of(req), meta, req.model)

    def encode_error(self, exc: FarewayError) -> tuple[int, bytes]:
        return encode_error(exc)


WIRE = OpenAIResponsesWire()
