"""Anthropic Messages content blocks, usage and enums <-> the canonical model.

Shared by the inbound dialect (``wire.anthropic``) and the outbound adapter
(``adapters.anthropic``): both read and write the same block shapes.

Rules kept here so both sides agree:

* Block fields the canonical part does not model (``cache_control``, ``citations``, ``caller``...)
  live in ``part.extensions["anthropic"]`` and are re-emitted verbatim.
* Block types the canonical model does not know (``server_tool_use``, ``web_search_tool_result``,
  ``compaction``, ``document``, image sources other than base64/url, future types) become
  ``OpaquePart("anthropic", data)``; streamed deltas of such blocks are kept as raw JSON text and
  folded back into the block by :func:`fold_opaque`.
* Usage: canonical ``input_tokens`` = Anthropic ``input_tokens + cache_creation + cache_read``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from fareway.types import (
    FinishReason,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

DIALECT = "anthropic"


class BlockError(ValueError):
    """A block that does not have the shape Anthropic defines.  ``param`` is the JSON path."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# ---------------------------------------------------------------------------------- enum tables

STOP_TO_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop_sequence",
    "max_tokens": "length",
    "model_context_window_exceeded": "context_window",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause",
}

FINISH_TO_STOP: dict[str, str] = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "context_window": "model_context_window_exceeded",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "pause": "pause_turn",
    "error": "end_turn",
}

ERROR_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    if status in ERROR_TYPE_BY_STATUS:
        return ERROR_TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


# ---------------------------------------------------------------------------------------- usage

_USAGE_KNOWN = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def merge_usage(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``message_delta`` usage over ``message_start`` usage: counts are cumulative totals, so a
    present value replaces the earlier one and an absent (or null) one keeps it."""
    out = dict(base)
    for k, v in update.items():
        if v is not None:
            out[k] = v
    return out


def usage_from_wire(u: Mapping[str, Any] | None) -> Usage:
    u = u or {}
    inp, cw, cr = (
        _int(u.get("input_tokens")),
        _int(u.get("cache_creation_input_tokens")),
        _int(u.get("cache_read_input_tokens")),
    )
    extras = {k: v for k, v in u.items() if k not in _USAGE_KNOWN}
    return Usage(
        input_tokens=inp + cw + cr,
        output_tokens=_int(u.get("output_tokens")),
        cached_input_tokens=cr,
        cache_write_tokens=cw,
        extensions={DIALECT: extras} if extras else {},
    )


def usage_to_wire(u: Usage | None) -> dict[str, Any]:
    if u is None:
        u = Usage()
    out: dict[str, Any] = {
        "input_tokens": u.uncached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    }
    out.update(u.extensions.get(DIALECT, {}))
    return out


# ------------------------------------------------------------------------------------ tool ids

_TOOL_ID_OK = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def sanitize_tool_id(tool_id: str) -> str:
    """Anthropic tool ids allow only ``[a-zA-Z0-9_-]``.  Valid ids are kept; others are rewritten
    deterministically (bad characters -> ``_`` plus a short hash against collisions), so a
    tool_use and its tool_result, rewritten separately, still match."""
    if _TOOL_ID_OK.match(tool_id):
        return tool_id
    digest = hashlib.sha1(tool_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    cleaned = _TOOL_ID_BAD.sub("_", tool_id)[:48]
    return f"{cleaned}_{digest}" if cleaned else f"toolu_{digest}"


# ------------------------------------------------------------------------------- wire -> parts


def _extras(block: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    rest = {k: v for k, v in block.items() if k not in known}
    return {DIALECT: rest} if rest else {}


def _str(block: Mapping[str, Any], key: str, param: str, *, optional: bool = False) -> str:
    value = block.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise BlockError(f"{param}.{key}: Input should be a valid string", f"{param}.{key}")
    return value


def _image(block: Mapping[str, Any], param: str) -> Part:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BlockError(f"{param}.source: Field required (an object)", f"{param}.source")
    stype = source.get("type")
    ext = _extras(block, ("type", "source"))
    if stype == "base64" and set(source) <= {"type", "media_type", "data"}:
        return ImagePart(
            data=_str(source, "data", f"{param}.source"),
            media_type=_str(source, "media_type", f"{param}.source"),
            extensions=ext,
        )
    if stype == "url" and set(source) <= {"type", "url"}:
        return ImagePart(url=_str(source, "url", f"{param}.source"), extensions=ext)
    if not isinstance(stype, str):
        raise BlockError(f"{param}.source.type: Input should be a valid string", f"{param}.source.type")
    return OpaquePart(DIALECT, dict(block))


def block_to_part(block: Any, param: str) -> Part:
    """One content block (of a request message or a response) as a canonical part.  Raises
    BlockError for a malformed block; unknown block types become OpaquePart."""
    if not isinstance(block, dict):
        raise BlockError(f"{param}: Input should be an object", param)
    btype = block.get("type")
    if not isinstance(btype, str):
        raise BlockError(f"{param}.type: Field required", f"{param}.type")
    if btype == "text":
        return TextPart(_str(block, "text", param), _extras(block, ("type", "text")))
    if btype == "image":
        return _image(block, param)
    if btype == "tool_use":
        inp = block.get("input", {})
        if not isinstance(inp, dict):
            raise BlockError(f"{param}.input: Input should be an object", f"{param}.input")
        return ToolCallPart(
            id=_str(block, "id", param),
            name=_str(block, "name", param),
            arguments=orjson.dumps(inp).decode(),
            extensions=_extras(block, ("type", "id", "name", "input")),
        )
    if btype == "thinking":
        sig = block.get("signature")
        if sig is not None and not isinstance(sig, str):
            raise BlockError(f"{param}.signature: Input should be a valid string", f"{param}.signature")
        return ThinkingPart(
            text=_str(block, "thinking", param),
            signature=sig or None,
            extensions=_extras(block, ("type", "thinking", "signature")),
        )
    if btype == "redacted_thinking":
        return ThinkingPart(redacted=_str(block, "data", param), extensions=_extras(block, ("type", "data")))
    if btype == "tool_result":
        return tool_result_to_part(block, param)
    return OpaquePart(DIALECT, dict(block))


def tool_result_to_part(block: Mapping[str, Any], param: str) -> ToolResultPart:
    content = block.get("content")
    parts: list[Part]
    if content is None:
        parts = []
    elif isinstance(content, str):
        parts = [TextPart(content)]
    elif isinstance(content, list):
        parts = []
        for j, b in enumerate(content):
            p = block_to_part(b, f"{param}.content[{j}]")
            if isinstance(p, ToolCallPart | ToolResultPart | ThinkingPart):
                # Not allowed inside a tool result; keep it verbatim rather than guess.
                p = OpaquePart(DIALECT, dict(b))
            parts.append(p)
    else:
        raise BlockError(f"{param}.content: Input should be a valid string or list", f"{param}.content")
    is_error = block.get("is_error", False)
    if is_error is None:
        is_error = False
    if not isinstance(is_error, bool):
        raise BlockError(f"{param}.is_error: Input should be a valid boolean", f"{param}.is_error")
    return ToolResultPart(
        tool_call_id=_str(block, "tool_use_id", param),
        content=parts,
        is_error=is_error,
        extensions=_extras(block, ("type", "tool_use_id", "content", "is_error")),
    )


# ------------------------------------------------------------------------------- parts -> wire


def fold_opaque(part: OpaquePart) -> dict[str, Any]:
    """The final block of an OpaquePart: its start data with its streamed deltas applied the way
    the Anthropic SDK accumulates them (``input_json_delta`` -> ``input``, ``citations_delta`` ->
    ``citations``, string fields of any other delta concatenated)."""
    data = dict(part.data)
    json_buf = ""
    saw_json = False
    for raw in part.deltas:
        try:
            delta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(delta, dict):
            continue
        dtype = delta.get("type")
        if dtype == "input_json_delta":
            saw_json = True
            json_buf += str(delta.get("partial_json") or "")
            continue
        if dtype == "citations_delta":
            data["citations"] = [*(data.get("citations") or []), delta.get("citation")]
            continue
        for key, value in delta.items():
            if key == "type":
                continue
            old = data.get(key)
            if isinstance(value, str) and isinstance(old, str):
                data[key] = old + value
            else:
                data[key] = value
    if saw_json and json_buf.strip():
        try:
            data["input"] = orjson.loads(json_buf)
        except orjson.JSONDecodeError:
            data["input"] = {}
    return data


def tool_input(part: ToolCallPart, *, strict: bool) -> dict[str, Any]:
    """``input`` for a tool_use block.  ``""`` -> ``{}``.  Invalid JSON or a non-object: with
    ``strict`` a BlockError; otherwise ``{"_invalid_json": <text>}`` so the client's schema check
    fails loudly instead of running the tool with no arguments."""
    try:
        value = part.parsed_arguments()
    except ValueError:
        if strict:
            raise BlockError(
                f"tool call {part.id!r} ({part.name}) has arguments that are not valid JSON", "tool_calls"
            ) from None
        return {"_invalid_json": part.arguments}
    if not isinstance(value, dict):
        if strict:
            raise BlockError(
                f"tool call {part.id!r} ({part.name}) has arguments that are not a JSON object", "tool_calls"
            )
        return {"_invalid_json": part.arguments}
    return value


def image_source(part: ImagePart) -> dict[str, Any]:
    if part.data is not None:
        return {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
    url = part.url or ""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return {"type": "base64", "media_type": head[5:] or "image/png", "data": data}
    return {"type": "url", "url": url}


def part_to_block(part: Part, *, upstream: bool) -> dict[str, Any] | None:
    """A canonical part as an Anthropic block, or None when it has no Anthropic form here.

    ``upstream=True`` (the adapter): empty text and unsigned thinking are dropped (Anthropic 400s
    on them), tool ids are sanitised, invalid tool arguments raise BlockError.
    ``upstream=False`` (the inbound encoder answering a client): everything is shown."""
    ext = part.extensions.get(DIALECT, {})
    if isinstance(part, TextPart):
        if upstream and part.text == "":
            return None
        return {"type": "text", "text": part.text, **ext}
    if isinstance(part, ImagePart):
        return {"type": "image", "source": image_source(part), **ext}
    if isinstance(part, ToolCallPart):
        return {
            "type": "tool_use",
            "id": sanitize_tool_id(part.id) if upstream else part.id,
            "name": part.name,
            "input": tool_input(part, strict=upstream),
            **ext,
        }
    if isinstance(part, ThinkingPart):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted, **ext}
        if upstream and not part.signature:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or "", **ext}
    if isinstance(part, OpaquePart):
        return fold_opaque(part) if part.dialect == DIALECT else None
    if isinstance(part, ToolResultPart):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": sanitize_tool_id(part.tool_call_id) if upstream else part.tool_call_id,
        }
        inner = [b for b in (part_to_block(p, upstream=upstream) for p in part.content) if b is not None]
        if (
            len(part.content) == 1
            and isinstance(part.content[0], TextPart)
            and not part.content[0].extensions
        ):
            block["content"] = part.content[0].text
        elif inner:
            block["content"] = inner
        if part.is_error:
            block["is_error"] = True
        block.update(ext)
        return block
    return None
