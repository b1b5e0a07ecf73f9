"""Inbound Anthropic Messages dialect: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Request mapping (Anthropic -> canonical):

* ``system`` (string or text blocks) -> leading ``system`` messages; a block's ``cache_control``
  stays in ``part.extensions["anthropic"]``.  Inline ``role: "system"`` messages (beta, newer
  models) stay where they are.
* A user turn's ``tool_result`` blocks -> one canonical ``tool`` message holding every
  ToolResultPart, followed by a ``user`` message with the remaining blocks (if any).
* ``thinking`` / ``redacted_thinking`` -> ThinkingPart; ``document``, server-tool blocks and
  any unknown block type -> ``OpaquePart("anthropic")`` (an Anthropic upstream gets them back
  verbatim; other adapters drop or refuse them).
* Client tools -> ToolSpec (extra fields such as ``cache_control``/``defer_loading`` in its
  extensions); typed server tools (``web_search_2025...``) -> ``extensions["anthropic"]["tools"]``.
* Fields partly modelled keep their remainder in ``extensions["anthropic"]`` under the same key
  (``thinking.display``, ``output_config.effort``, ``metadata`` keys other than ``user_id``); the
  Anthropic adapter merges it back.  Unknown top-level fields go there whole.
* ``output_format`` (deprecated) is read like ``output_config.format``.

Response encoding notes: a tool call whose arguments are ``""`` gets ``input: {}``; arguments that
are not a JSON object (an OpenAI-dialect upstream can produce that) get
``input: {"_invalid_json": "<text>"}`` so the client's schema validation rejects the call loudly
instead of running the tool with no arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fareway.dialects.anthropic_blocks import (
    DIALECT,
    BlockError,
    block_to_part,
    part_to_block,
    usage_to_wire,
)
from fareway.errors import BadRequest, FarewayError
from fareway.types import (
    ChatRequest,
    ChatResponse,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
)
from fareway.wire.anthropic_common import error_payload, message_id, stop_reason
from fareway.wire.anthropic_stream import AnthropicStreamEncoder
from fareway.wire.base import ResponseMeta, StreamEncoder
from fareway.wire.limits import MAX_OUTPUT_TOKENS, bounded_int, bounded_number, check_depth, check_model

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")

_MODELLED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "stream",
    "output_config",
    "output_format",
}


def _bad(message: str, param: str | None) -> BadRequest:
    return BadRequest(message, param=param)


def _number(data: Mapping[str, Any], key: str) -> float | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(f"{key}: Input should be a valid number", key)
    return float(v)


def _integer(data: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(f"{key}: Input should be a valid integer", key)
    if minimum is not None and v < minimum:
        raise _bad(f"{key}: Input should be greater than or equal to {minimum}", key)
    return v


def _parts(content: Any, param: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise _bad(f"{param}: Input should be a valid string or list of content blocks", param)
    out = []
    for j, block in enumerate(content):
        try:
            out.append(block_to_part(block, f"{param}[{j}]"))
        except BlockError as exc:
            raise _bad(exc.message, exc.param) from None
    return out


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list):
        raise _bad("messages: Input should be a valid list", "messages")
    out: list[Message] = []
    for i, m in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{param}: Input should be an object", param)
        role = m.get("role")
        if role not in ("user", "assistant", "system"):
            raise _bad(f"{param}.role: Input should be 'user' or 'assistant'", f"{param}.role")
        if "content" not in m:
            raise _bad(f"{param}.content: Field required", f"{param}.content")
        parts = _parts(m["content"], f"{param}.content")
        rest = {k: v for k, v in m.items() if k not in ("role", "content")}
        ext = {DIALECT: rest} if rest else {}
        results = [p for p in parts if isinstance(p, ToolResultPart)]
        if results and role != "user":
            raise _bad(
                f"{param}.content: tool_result blocks are only allowed in user messages", f"{param}.content"
            )
        if results:
            out.append(Message("tool", list(results)))
            others: list[Part] = [p for p in parts if not isinstance(p, ToolResultPart)]
            if others or ext:
                out.append(Message("user", others, extensions=ext))
            continue
        out.append(Message(role, parts, extensions=ext))
    return out


def _system(raw: Any) -> list[Message]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [Message("system", [TextPart(raw)])]
    if not isinstance(raw, list):
        raise _bad("system: Input should be a valid string or list of text blocks", "system")
    parts: list[Part] = []
    for j, block in enumerate(raw):
        param = f"system[{j}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"{param}: system blocks must be text blocks", param)
        try:
            parts.append(block_to_part(block, param))
        except BlockError as exc:
            raise _bad(exc.message, exc.param) from None
    return [Message("system", parts)] if parts else []


def _tools(raw: Any, ext: dict[str, Any]) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("tools: Input should be a valid list", "tools")
    specs: list[ToolSpec] = []
    server: list[dict[str, Any]] = []
    for i, t in enumerate(raw):
        param = f"tools[{i}]"
        if not isinstance(t, dict):
            raise _bad(f"{param}: Input should be an object", param)
        ttype = t.get("type")
        if ttype is not None and not isinstance(ttype, str):
            raise _bad(f"{param}.type: Input should be a valid string", f"{param}.type")
        if ttype not in (None, "custom") and "input_schema" not in t:
            server.append(t)  # a typed server tool: passed through verbatim
            continue
        name, desc, schema, strict = (
            t.get("name"),
            t.get("description"),
            t.get("input_schema"),
            t.get("strict"),
        )
        if not isinstance(name, str) or not name:
            raise _bad(f"{param}.name: Field required", f"{param}.name")
        if desc is not None and not isinstance(desc, str):
            raise _bad(f"{param}.description: Input should be a valid string", f"{param}.description")
        if not isinstance(schema, dict):
            raise _bad(f"{param}.input_schema: Field required (an object)", f"{param}.input_schema")
        if strict is not None and not isinstance(strict, bool):
            raise _bad(f"{param}.strict: Input should be a valid boolean", f"{param}.strict")
        rest = {k: v for k, v in t.items() if k not in ("name", "description", "input_schema", "strict")}
        specs.append(ToolSpec(name, desc, schema, strict, {DIALECT: rest} if rest else {}))
    if server:
        ext["tools"] = server
    return specs


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad("tool_choice: Input should be an object", "tool_choice")
    ttype = raw.get("type")
    modes = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
    if ttype not in modes:
        raise _bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", "tool_choice.type")
    name = raw.get("name")
    if ttype == "tool" and (not isinstance(name, str) or not name):
        raise _bad("tool_choice.name: Field required", "tool_choice.name")
    dp = raw.get("disable_parallel_tool_use")
    if dp is not None and not isinstance(dp, bool):
        raise _bad(
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean",
            "tool_choice.disable_parallel_tool_use",
        )
    mode: Any = modes[ttype]
    return ToolChoice(mode, name if ttype == "tool" else None, None if dp is None else not dp)


def _thinking(raw: Any, ext: dict[str, Any]) -> ThinkingConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad("thinking: Input should be an object", "thinking")
    ttype = raw.get("type")
    if ttype == "enabled":
        budget = _integer(raw, "budget_tokens", minimum=0)
        if budget is None:
            raise _bad("thinking.enabled.budget_tokens: Field required", "thinking.budget_tokens")
        rest = {k: v for k, v in raw.items() if k not in ("type", "budget_tokens")}
        cfg = ThinkingConfig("enabled", budget)
    elif ttype in ("adaptive", "disabled"):
        rest = {k: v for k, v in raw.items() if k != "type"}
        cfg = ThinkingConfig(ttype)
    elif isinstance(ttype, str):
        ext["thinking"] = raw  # a type this code does not know: pass it through whole
        return None
    else:
        raise _bad("thinking.type: Field required", "thinking.type")
    if rest:
        ext["thinking"] = rest
    return cfg


def _format(raw: Any, key: str) -> ResponseFormat | None:
    if not isinstance(raw, dict):
        raise _bad(f"{key}: Input should be an object", key)
    if raw.get("type") != "json_schema" or set(raw) - {"type", "schema"}:
        return None
    schema = raw.get("schema")
    if not isinstance(schema, dict):
        raise _bad(f"{key}.schema: Field required (an object)", f"{key}.schema")
    return ResponseFormat("json_schema", schema=schema)


def _output(data: Mapping[str, Any], ext: dict[str, Any]) -> ResponseFormat | None:
    rf = None
    oc = data.get("output_config")
    if oc is not None:
        if not isinstance(oc, dict):
            raise _bad("output_config: Input should be an object", "output_config")
        rest = dict(oc)
        if "format" in oc and oc["format"] is not None:
            rf = _format(oc["format"], "output_config.format")
            if rf is not None:
                del rest["format"]
        if rest:
            ext["output_config"] = rest
    of = data.get("output_format")
    if of is not None:
        legacy = _format(of, "output_format")
        if legacy is None:
            ext["output_format"] = of
        elif rf is None:
            rf = legacy
    return rf


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers.items():
        lk = str(k).lower()
        if lk in FORWARDED_HEADERS and isinstance(v, str):
            out[lk] = v
    return out


def _parse(body: bytes, headers: Mapping[str, str], *, count_only: bool) -> ChatRequest:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"The request body is not valid JSON: {exc}", None) from None
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object", None)
    check_depth(body, data)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: Field required", "model")
    check_model(model)
    if "messages" not in data:
        raise _bad("messages: Field required", "messages")
    ext: dict[str, Any] = {k: v for k, v in data.items() if k not in _MODELLED}
    if count_only:
        ext.pop("max_tokens", None)
    max_tokens = _integer(data, "max_tokens", minimum=1)
    if max_tokens is None and not count_only:
        raise _bad("max_tokens: Field required", "max_tokens")
    if max_tokens is not None:
        bounded_int(max_tokens, "max_tokens", 1, MAX_OUTPUT_TOKENS)
    if data["messages"] == [] and not count_only:
        raise _bad("messages: at least one message is required", "messages")
    stop = data.get("stop_sequences")
    if stop is None:
        stop = []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _bad("stop_sequences: Input should be a valid list of strings", "stop_sequences")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream: Input should be a valid boolean", "stream")
    user = None
    meta = data.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise _bad("metadata: Input should be an object", "metadata")
        user = meta.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _bad("metadata.user_id: Input should be a valid string", "metadata.user_id")
        rest = {k: v for k, v in meta.items() if k != "user_id"}
        if rest:
            ext["metadata"] = rest
    messages = _system(data.get("system")) + _messages(data["messages"])
    top_k = _integer(data, "top_k", minimum=0)
    if top_k is not None:
        bounded_int(top_k, "top_k", 0, MAX_OUTPUT_TOKENS)
    temperature = _number(data, "temperature")
    if temperature is not None:  # Anthropic's own range is 0..1; the call may go to an OpenAI upstream
        bounded_number(temperature, "temperature", 0, 2)
    top_p = _number(data, "top_p")
    if top_p is not None:
        bounded_number(top_p, "top_p", 0, 1)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        stream=stream and not count_only,
        include_usage=True,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=list(stop),
        tools=_tools(data.get("tools"), ext),
        tool_choice=_tool_choice(data.get("tool_choice")),
        response_format=_output(data, ext),
        thinking=_thinking(data.get("thinking"), ext),
        user=user,
        extensions={DIALECT: ext} if ext else {},
        headers=_headers(headers),
        source_dialect="anthropic",
    )


def count_tokens_request(body: bytes, headers: Mapping[str, str]) -> ChatRequest:
    """The canonical request of a ``/v1/messages/count_tokens`` body (``max_tokens`` optional)."""
    return _parse(body, headers, count_only=True)


# ------------------------------------------------------------------------------------ encoding


class AnthropicWire:
    name = "anthropic"

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return _parse(body, headers, count_only=False)

    def count_tokens_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        return count_tokens_request(body, headers)

    def encode_response(self, resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes:
        content = [b for b in (part_to_block(p, upstream=False) for p in resp.content) if b is not None]
        stop_seq = resp.stop_sequence if resp.finish_reason == "stop_sequence" else None
        out: dict[str, Any] = {
            "id": message_id(resp.id, meta),
            "type": "message",
            "role": "assistant",
            "model": resp.model or req.model,
            "content": content,
            "stop_reason": stop_reason(
                resp.finish_reason, any(isinstance(p, ToolCallPart) for p in resp.content)
            ),
            "stop_sequence": stop_seq,
            "usage": usage_to_wire(resp.usage),
        }
        out.update(resp.extensions.get(DIALECT, {}))
        return orjson.dumps(out)

    def stream_encoder(self, req: ChatRequest, meta: ResponseMeta) -> StreamEncoder:
        return AnthropicStreamEncoder(req, meta)

    def encode_error(self, exc: FarewayError) -> tuple[int, bytes]:
        status, payload = error_payload(exc)
        return status, orjson.dumps(payload)


WIRE = AnthropicWire()
