"""Inbound OpenAI Chat Completions dialect (``POST /v1/chat/completions``).

What clients of the official ``openai`` SDK send, parsed strictly into a canonical
:class:`~fareway.types.ChatRequest`, and the canonical answer encoded back in OpenAI's exact shape
(the stream encoder lives in :mod:`fareway.wire.openai_stream`).

Where things go, so a same-dialect (OpenAI-compatible) upstream receives what the client sent (the
conventions are shared with ``fareway.adapters.openai_chat``, which spreads these bags back):

* ``req.extensions["openai"]``: every top-level request field the canonical model does not model,
  verbatim (``logprobs``, ``logit_bias``, penalties, ``service_tier``, ``store``, ``prediction``,
  ``modalities``, ``web_search_options``, ``prompt_cache_key``, ... and any unknown field).
  ``stream_options`` keys other than ``include_usage`` are kept there as ``stream_options``
  (``include_usage`` is the gateway's own business: adapters always ask for usage).
  ``parallel_tool_calls`` without any ``tools`` is kept there too (there is nothing to choose).
* ``req.extensions["fareway"]["max_tokens_field"]``: ``"max_tokens"`` or
  ``"max_completion_tokens"``, whichever the client used (the value is ``req.max_tokens``).  A
  note, not a wire field: no adapter sends the ``"fareway"`` bag anywhere.
* ``message.extensions["openai"]``: unknown per-message fields verbatim (an echoed
  ``reasoning_content``, ``audio``...), plus ``role: "developer"`` for developer messages.  A tool
  message's unknown fields go on its :class:`~fareway.types.ToolResultPart` instead.
* An assistant ``refusal`` (the field or a ``refusal`` content part) is a ``TextPart`` with
  ``extensions["openai"]["refusal"] = True``.
* ``TextPart/ImagePart/ToolCallPart.extensions["openai"]``: unknown keys of the part or tool call
  (``cache_control`` on OpenRouter text parts, Gemini's ``extra_content``...);
  ``ToolSpec.extensions["openai"]``: unknown keys of the tool's ``function`` object.
* ``input_audio`` and ``file`` user parts become :class:`~fareway.types.OpaquePart`
  ``(dialect="openai", data=<the part>)``: they pass through to an OpenAI-dialect upstream verbatim
  and are for other adapters to refuse or drop with a note.
* Legacy ``functions`` / ``function_call`` / ``role: "function"`` are refused with a 400 naming
  ``tools`` / ``tool_choice`` (translating them would also need legacy-shaped responses).

Response side (what the OpenAI adapter puts in ``resp.extensions["openai"]``): ``extra_choices``
(choices 1..n-1 as the upstream sent them) are appended after choice 0, and so are the
canonical ``ChatResponse.more_choices`` of other dialects (Gemini candidates), index ``i``; ``message_extra`` is
merged into choice 0's message (``annotations``, ``audio``...); ``choice_extra`` into choice 0
(``logprobs``, ``native_finish_reason``...); every other key is a top-level field
(``system_fingerprint``, ``service_tier``, ``time_info``, ``x_groq``, ``provider``...).
``usage.extensions["openai"]`` is the base of the usage object (``queue_time``, the ``*_details``
objects...), with the canonical counts and the gateway's ``cost`` written over it (an upstream's
own ``cost`` is never shown as the gateway's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson

from fareway.errors import BadRequest, FarewayError, client_status
from fareway.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
)
from fareway.wire.base import ResponseMeta
from fareway.wire.limits import (
    INT64,
    MAX_OUTPUT_TOKENS,
    bounded_int,
    bounded_number,
    check_depth,
    check_model,
)
from fareway.wire.openai_stream import (
    OpenAIStreamEncoder,
    error_object,
    finish_to_openai,
    is_refusal,
    new_completion_id,
    usage_object,
)

__all__ = ["WIRE", "OpenAIChatWire", "parse_request"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Message keys the parser models; anything else goes to message.extensions["openai"].
_MODELLED_MESSAGE_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "refusal"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
_TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})


def _bad(message: str, param: str | None) -> BadRequest:
    return BadRequest(message, param=param)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _want_str(value: Any, param: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{param}' must be a string, got {_type_name(value)}", param)
    if nonempty and not value:
        raise _bad(f"'{param}' must not be empty", param)
    return value


def _want_int(value: Any, param: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{param}' must be an integer, got {_type_name(value)}", param)
    if minimum is not None and value < minimum:
        raise _bad(f"'{param}' must be at least {minimum}, got {value}", param)
    return value


def _want_number(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{param}' must be a number, got {_type_name(value)}", param)
    f = float(value)
    if not math.isfinite(f):
        raise _bad(f"'{param}' must be a finite number", param)
    return f


def _want_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"'{param}' must be a boolean, got {_type_name(value)}", param)
    return value


def _want_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"'{param}' must be an object, got {_type_name(value)}", param)
    return value


def _want_list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"'{param}' must be an array, got {_type_name(value)}", param)
    return value


def _extras(obj: dict[str, Any], modelled: frozenset[str] | set[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in modelled}


# ------------------------------------------------------------------------------------ content


def _text_part(part: dict[str, Any], param: str) -> TextPart:
    text = _want_str(part.get("text"), f"{param}.text")
    extra = _extras(part, {"type", "text"})
    return TextPart(text, {"openai": extra} if extra else {})


def _image_part(part: dict[str, Any], param: str) -> ImagePart:
    img = _want_dict(part.get("image_url"), f"{param}.image_url")
    url = _want_str(img.get("url"), f"{param}.image_url.url", nonempty=True)
    detail = img.get("detail")
    if detail is not None:
        detail = _want_str(detail, f"{param}.image_url.detail")
    extra = _extras(part, {"type", "image_url"})
    ext = {"openai": extra} if extra else {}
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if sep and header.endswith(";base64"):
            return ImagePart(data=data, media_type=header[:-7] or None, detail=detail, extensions=ext)
        return ImagePart(url=url, detail=detail, extensions=ext)
    if not (url.startswith("http://") or url.startswith("https://")):
        raise _bad(
            f"'{param}.image_url.url' must be an http(s) URL or a base64 data: URL", f"{param}.image_url.url"
        )
    return ImagePart(url=url, detail=detail, extensions=ext)


def _content_parts(content: Any, param: str, allowed: frozenset[str]) -> list[Part]:
    """``content`` of a message: a string, or a list of typed parts whose types are in ``allowed``."""
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise _bad(
            f"'{param}' must be a string or an array of content parts, got {_type_name(content)}", param
        )
    parts: list[Part] = []
    for i, raw in enumerate(content):
        p = f"{param}[{i}]"
        part = _want_dict(raw, p)
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            shown = repr(kind) if isinstance(kind, str) else _type_name(kind)
            raise _bad(
                f"'{p}.type' is {shown}; this message accepts content parts of type {', '.join(sorted(allowed))}",
                f"{p}.type",
            )
        if kind == "text":
            parts.append(_text_part(part, p))
        elif kind == "image_url":
            parts.append(_image_part(part, p))
        elif kind == "refusal":
            parts.append(
                TextPart(_want_str(part.get("refusal"), f"{p}.refusal"), {"openai": {"refusal": True}})
            )
        else:  # input_audio, file: kept verbatim for an OpenAI-dialect upstream
            if kind == "input_audio":
                _want_dict(part.get("input_audio"), f"{p}.input_audio")
            elif kind == "file":
                _want_dict(part.get("file"), f"{p}.file")
            parts.append(OpaquePart("openai", part))
    return parts


_SYSTEM_PARTS = frozenset({"text"})
_USER_PARTS = frozenset({"text", "image_url", "input_audio", "file"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
_TOOL_PARTS = frozenset({"text"})


def _tool_calls(value: Any, param: str) -> list[Part]:
    calls = _want_list(value, param)
    out: list[Part] = []
    for i, raw in enumerate(calls):
        p = f"{param}[{i}]"
        call = _want_dict(raw, p)
        ctype = call.get("type", "function")
        if ctype != "function":
            raise _bad(f"'{p}.type' must be 'function' (custom tool calls are not supported)", f"{p}.type")
        call_id = _want_str(call.get("id"), f"{p}.id")
        fn = _want_dict(call.get("function"), f"{p}.function")
        name = _want_str(fn.get("name"), f"{p}.function.name", nonempty=True)
        args = fn.get("arguments", "")
        if args is None:
            args = ""
        args = _want_str(args, f"{p}.function.arguments")
        extra = _extras(call, {"id", "type", "function"})
        out.append(ToolCallPart(call_id, name, args, {"openai": extra} if extra else {}))
    return out


def _message(raw: Any, param: str) -> Message:
    msg = _want_dict(raw, param)
    role = msg.get("role")
    if role == "function":
        raise _bad(
            f"'{param}.role' is the legacy 'function' role; send tool results as role 'tool' with a tool_call_id",
            f"{param}.role",
        )
    if not isinstance(role, str) or role not in _ROLES:
        shown = repr(role) if isinstance(role, str) else _type_name(role)
        raise _bad(
            f"'{param}.role' is {shown}; expected one of system, developer, user, assistant, tool",
            f"{param}.role",
        )
    canon = "system" if role == "developer" else role
    modelled = _MODELLED_MESSAGE_KEYS[canon]
    extra = {} if msg.keys() <= modelled else _extras(msg, modelled)
    if role == "developer":
        extra["role"] = "developer"
    name = msg.get("name")
    if name is not None and canon != "tool":
        name = _want_str(name, f"{param}.name")
    content = msg.get("content")
    if (canon == "user" or canon == "system") and isinstance(content, str):
        # the usual system or user message: plain text (what _content_parts makes of it)
        return Message(canon, [TextPart(content)], name, {"openai": extra} if extra else {})  # type: ignore[arg-type]
    cparam = f"{param}.content"

    parts: list[Part]
    if canon == "system":
        if content is None:
            raise _bad(f"'{cparam}' is required for a {role} message", cparam)
        parts = _content_parts(content, cparam, _SYSTEM_PARTS)
    elif canon == "user":
        if content is None:
            raise _bad(f"'{cparam}' is required for a user message", cparam)
        parts = _content_parts(content, cparam, _USER_PARTS)
    elif canon == "assistant":
        if "function_call" in msg and msg["function_call"] is not None:
            raise _bad(
                f"'{param}.function_call' is the legacy function-calling form; use tool_calls",
                f"{param}.function_call",
            )
        extra.pop("function_call", None)
        parts = [] if content is None else _content_parts(content, cparam, _ASSISTANT_PARTS)
        refusal = msg.get("refusal")
        if refusal is not None:
            parts.append(TextPart(_want_str(refusal, f"{param}.refusal"), {"openai": {"refusal": True}}))
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None:
            parts += _tool_calls(tool_calls, f"{param}.tool_calls")
    else:  # tool
        call_id = _want_str(msg.get("tool_call_id"), f"{param}.tool_call_id")
        if content is None:
            raise _bad(f"'{cparam}' is required for a tool message", cparam)
        result = _content_parts(content, cparam, _TOOL_PARTS)
        if name is not None:  # not in the spec, but some clients send it: keep it verbatim
            extra["name"] = name = _want_str(name, f"{param}.name")
        # A tool message's unknown fields belong to its one result (adapters echo them there).
        parts = [ToolResultPart(call_id, result, name=name, extensions={"openai": extra} if extra else {})]
        return Message("tool", parts)
    return Message(canon, parts, name, {"openai": extra} if extra else {})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ tools & format


def _tools(value: Any) -> list[ToolSpec]:
    tools = _want_list(value, "tools")
    out: list[ToolSpec] = []
    for i, raw in enumerate(tools):
        p = f"tools[{i}]"
        tool = _want_dict(raw, p)
        if tool.get("type") != "function":
            raise _bad(f"'{p}.type' must be 'function' (only function tools are supported)", f"{p}.type")
        fn = _want_dict(tool.get("function"), f"{p}.function")
        name = _want_str(fn.get("name"), f"{p}.function.name", nonempty=True)
        desc = fn.get("description")
        if desc is not None:
            desc = _want_str(desc, f"{p}.function.description")
        spec = ToolSpec(name, desc)
        params = fn.get("parameters")
        if params is not None:
            spec.parameters = _want_dict(params, f"{p}.function.parameters")
        strict = fn.get("strict")
        if strict is not None:
            spec.strict = _want_bool(strict, f"{p}.function.strict")
        # Unknown keys of the function object are kept (adapters spread them back into it); unknown
        # keys beside "function" (OpenRouter's cache_control on a tool) are not representable yet.
        extra = _extras(fn, {"name", "description", "parameters", "strict"})
        if extra:
            spec.extensions = {"openai": extra}
        out.append(spec)
    return out


def _tool_choice(value: Any) -> ToolChoice:
    if isinstance(value, str):
        if value not in _TOOL_CHOICE_MODES:
            raise _bad(
                f"'tool_choice' is {value!r}; expected none, auto, required or a function object",
                "tool_choice",
            )
        return ToolChoice(value)  # type: ignore[arg-type]
    obj = _want_dict(value, "tool_choice")
    if obj.get("type") != "function":
        raise _bad(
            "'tool_choice.type' must be 'function' (allowed_tools and custom choices are not supported)",
            "tool_choice.type",
        )
    fn = _want_dict(obj.get("function"), "tool_choice.function")
    return ToolChoice("tool", _want_str(fn.get("name"), "tool_choice.function.name", nonempty=True))


def _response_format(value: Any) -> ResponseFormat:
    obj = _want_dict(value, "response_format")
    kind = obj.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise _bad("'response_format.type' must be text, json_object or json_schema", "response_format.type")
    js = _want_dict(obj.get("json_schema"), "response_format.json_schema")
    rf = ResponseFormat(
        "json_schema", _want_str(js.get("name"), "response_format.json_schema.name", nonempty=True)
    )
    if js.get("schema") is not None:
        rf.schema = _want_dict(js["schema"], "response_format.json_schema.schema")
    if js.get("strict") is not None:
        rf.strict = _want_bool(js["strict"], "response_format.json_schema.strict")
    if js.get("description") is not None:
        rf.description = _want_str(js["description"], "response_format.json_schema.description")
    return rf


# ------------------------------------------------------------------------------------ request

_MODELLED_TOP = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "metadata",
        "functions",
        "function_call",
    }
)


_LEGACY_TOP = frozenset({"functions", "function_call"})
# The fields _optional_fields reads (every field after ``stream``).
_OPTIONAL_TOP = frozenset(
    {
        "stream_options",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
        "stop",
        "seed",
        "n",
        "user",
        "metadata",
        "reasoning_effort",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)


def parse_request(body: bytes, headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Parse a Chat Completions request body.  Raises BadRequest with ``param`` set."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad(
            "could not parse the JSON body of your request: it is not valid JSON (send a JSON object "
            "with 'model' and 'messages', and Content-Type: application/json)",
            None,
        ) from None
    if not isinstance(data, dict):
        raise _bad(f"the request body must be a JSON object, got {_type_name(data)}", None)
    check_depth(body, data)

    if not _LEGACY_TOP.isdisjoint(data):
        for legacy, modern in (("functions", "tools"), ("function_call", "tool_choice")):
            if data.get(legacy) is not None:
                raise _bad(f"'{legacy}' is the legacy function-calling form; use '{modern}'", legacy)

    model = data.get("model")
    if model is None:
        raise _bad("you must provide a 'model' parameter", "model")
    model = check_model(_want_str(model, "model", nonempty=True))

    raw_messages = data.get("messages")
    if raw_messages is None:
        raise _bad("you must provide a 'messages' parameter", "messages")
    raw_messages = _want_list(raw_messages, "messages")
    if not raw_messages:
        raise _bad("'messages' must contain at least one message", "messages")
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages)]

    req = ChatRequest(model=model, messages=messages, source_dialect="openai")
    # (one C-level test instead of the comprehension when every field is modelled: most calls)
    ext: dict[str, Any] = {} if data.keys() <= _MODELLED_TOP else _extras(data, _MODELLED_TOP)
    get = data.get

    mct, mt = get("max_completion_tokens"), get("max_tokens")
    if mct is not None:
        req.max_tokens = bounded_int(
            _want_int(mct, "max_completion_tokens", minimum=1), "max_completion_tokens", 1, MAX_OUTPUT_TOKENS
        )
        if mt is not None and _want_int(mt, "max_tokens", minimum=1) != req.max_tokens:
            raise _bad(
                "give either 'max_tokens' or 'max_completion_tokens', not two different values", "max_tokens"
            )
        req.extensions["fareway"] = {"max_tokens_field": "max_completion_tokens"}
    elif mt is not None:
        req.max_tokens = bounded_int(
            _want_int(mt, "max_tokens", minimum=1), "max_tokens", 1, MAX_OUTPUT_TOKENS
        )
        req.extensions["fareway"] = {"max_tokens_field": "max_tokens"}

    if (v := get("stream")) is not None:
        req.stream = _want_bool(v, "stream")
    if not _OPTIONAL_TOP.isdisjoint(data):
        _optional_fields(data, req, ext)
    if ext:
        req.extensions["openai"] = ext
    return req


def _optional_fields(data: dict[str, Any], req: ChatRequest, ext: dict[str, Any]) -> None:
    """The fields after ``stream``, checked in this order; called only when one is present (each
    check is a no-op for an absent field, and most calls send none of them)."""
    get = data.get
    if (v := get("stream_options")) is not None:
        so = _want_dict(v, "stream_options")
        if so.get("include_usage") is not None:
            req.include_usage = _want_bool(so["include_usage"], "stream_options.include_usage")
        rest = _extras(so, {"include_usage"})
        if rest:
            ext["stream_options"] = rest
    if (v := get("temperature")) is not None:
        req.temperature = bounded_number(_want_number(v, "temperature"), "temperature", 0, 2)
    if (v := get("top_p")) is not None:
        req.top_p = bounded_number(_want_number(v, "top_p"), "top_p", 0, 1)
    for penalty in ("frequency_penalty", "presence_penalty"):
        if (v := get(penalty)) is not None:
            bounded_number(_want_number(v, penalty), penalty, -2, 2)
    if (v := get("stop")) is not None:
        if isinstance(v, str):
            req.stop = [v]
        else:
            req.stop = [_want_str(s, f"stop[{i}]") for i, s in enumerate(_want_list(v, "stop"))]
    if (v := get("seed")) is not None:
        req.seed = bounded_int(_want_int(v, "seed"), "seed", *INT64)
    if (v := get("n")) is not None:
        req.n = bounded_int(_want_int(v, "n", minimum=1), "n", 1, 128)
    if (v := get("user")) is not None:
        req.user = _want_str(v, "user")
    if (v := get("metadata")) is not None:
        req.metadata = _want_dict(v, "metadata")
    if (v := get("reasoning_effort")) is not None:
        effort = _want_str(v, "reasoning_effort", nonempty=True)
        req.thinking = ThinkingConfig("disabled" if effort == "none" else "enabled", effort=effort)
    if (v := get("response_format")) is not None:
        req.response_format = _response_format(v)
    if (v := get("tools")) is not None:
        req.tools = _tools(v)
    if (v := get("tool_choice")) is not None:
        req.tool_choice = _tool_choice(v)
    if (v := get("parallel_tool_calls")) is not None:
        parallel = _want_bool(v, "parallel_tool_calls")
        if req.tool_choice is not None:
            req.tool_choice.parallel = parallel
        elif req.tools:
            req.tool_choice = ToolChoice("auto", parallel=parallel)
        else:
            ext["parallel_tool_calls"] = parallel


# ----------------------------------------------------------------------------------- response


def _message_object(resp: ChatResponse, extra: dict[str, Any]) -> dict[str, Any]:
    texts: list[str] = []
    refusals: list[str] = []
    thinking: list[str] | None = None
    calls: list[dict[str, Any]] = []
    for part in resp.content:
        if isinstance(part, TextPart):
            if is_refusal(part):
                refusals.append(part.text)
            else:
                texts.append(part.text)
        elif isinstance(part, ToolCallPart):
            call: dict[str, Any] = {
                "id": part.id,
                "type": "function",
                "function": {"name": part.name, "arguments": part.arguments or "{}"},
            }
            cext = part.extensions.get("openai")
            if cext:
                call = {**cext, **call}
                if isinstance(cext.get("function"), dict):
                    call["function"] = {
                        **cext["function"],
                        "name": part.name,
                        "arguments": part.arguments or "{}",
                    }
            calls.append(call)
        elif isinstance(part, ThinkingPart):
            if thinking is None:
                thinking = []
            thinking.append(part.text)
    # content is null when the reply has tool calls or thinking but no text; "" for an empty
    # reply (the same rule the stream encoder's first chunk follows, so both accumulate alike).
    content = "".join(texts) if texts else (None if calls or refusals or thinking is not None else "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "refusal": "".join(refusals) if refusals else None,
    }
    if thinking is not None:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    if extra:
        for k, v in extra.items():
            if k not in ("role", "content", "tool_calls"):
                message[k] = v
    return message


def encode_response(resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes:
    """A ``chat.completion`` object.  Thinking parts are exposed as ``message.reasoning_content``
    (the de-facto field DeepSeek, vLLM and others use; OpenAI itself shows no reasoning text),
    never as content text."""
    ext = dict(resp.extensions.get("openai") or {})
    extra_choices = ext.pop("extra_choices", None)
    msg_extra = ext.pop("message_extra", None)
    choice_extra = ext.pop("choice_extra", None)
    ext.pop("usage", None)
    out: dict[str, Any] = {
        "id": resp.id or new_completion_id(),
        "object": "chat.completion",
        "created": resp.created if resp.created is not None else int(time.time()),
        "model": resp.model or req.model,
    }
    choice: dict[str, Any] = {
        "index": 0,
        "message": _message_object(resp, msg_extra if isinstance(msg_extra, dict) else {}),
        "logprobs": None,
        "finish_reason": finish_to_openai(resp.finish_reason),
    }
    if isinstance(choice_extra, dict):
        for k, v in choice_extra.items():
            if k not in ("index", "message", "finish_reason"):
                choice[k] = v
    choices = [choice]
    if isinstance(extra_choices, list):
        choices += extra_choices
    for more in resp.more_choices:
        choices.append(
            {
                "index": len(choices),
                "message": _message_object(more, {}),
                "logprobs": None,
                "finish_reason": finish_to_openai(more.finish_reason),
            }
        )
    out["choices"] = choices
    for k, v in ext.items():
        if k not in out:
            out[k] = v
    if resp.usage is not None:
        out["usage"] = usage_object(resp.usage, meta.cost_usd)
    return orjson.dumps(out)


def encode_error(exc: FarewayError) -> tuple[int, bytes]:
    return client_status(exc), orjson.dumps({"error": error_object(exc)})


class OpenAIChatWire:
    """The OpenAI Chat Completions inbound dialect (implements ``wire.base.WireDialect``)."""

    name = "openai"

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return parse_request(body, headers)

    def encode_response(self, resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes:
        return encode_response(resp, req, meta)

    def stream_encoder(self, req: ChatRequest, meta: ResponseMeta) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(req, meta)

    def encode_error(self, exc: FarewayError) -> tuple[int, bytes]:
        return encode_error(exc)


WIRE = OpenAIChatWire()
