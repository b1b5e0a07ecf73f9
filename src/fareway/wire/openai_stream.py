"""OpenAI Chat Completions streaming: canonical stream events -> ``chat.completion.chunk`` SSE.

The chunk sequence is the one OpenAI sends (see WIRE.md 1a):

* every chunk has the same ``id``, ``object: "chat.completion.chunk"``, ``created``, ``model``
  (and ``service_tier`` / ``system_fingerprint`` when the upstream gave them);
* the first chunk carries ``delta.role: "assistant"``: ``content: ""`` and ``refusal: null`` for a
  text reply, ``content: null`` plus the first tool-call fragment for a tool reply;
* tool-call fragments are keyed by ``tool_calls[].index`` = the ordinal of the call (0, 1, ...),
  never the canonical part index; the first fragment of a call has ``id``, ``type`` and
  ``function{name, arguments: ""}``, later ones only ``function.arguments``;
* thinking text streams as ``delta.reasoning_content`` (the de-facto field; OpenAI shows none);
* the finish is held until :meth:`OpenAIStreamEncoder.close`, which sends the finish chunk (empty
  delta), then, only when the client asked with ``stream_options.include_usage``, the usage chunk
  (``choices: []``; every earlier chunk then carries ``"usage": null``), then ``data: [DONE]``.

Chunks are assembled from pre-encoded byte prefixes: one ``orjson.dumps`` of the delta text per
event and no per-chunk dict on the text path.
"""

from __future__ import annotations

import math
import os
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from fareway.errors import FarewayError, redact
from fareway.events import Finish, PartDelta, PartEnd, PartStart, ResponseStart, StreamEvent, UsageUpdate
from fareway.types import ChatRequest, FinishReason, TextPart, ThinkingPart, ToolCallPart, Usage
from fareway.wire.base import ResponseMeta

__all__ = [
    "OpenAIStreamEncoder",
    "error_object",
    "finish_to_openai",
    "is_refusal",
    "new_completion_id",
    "usage_object",
]

_FINISH: dict[str | None, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "pause": "stop",
    "error": "stop",
    "length": "length",
    "context_window": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    None: "stop",
}

# Top-level response extras repeated on every chunk (as OpenAI does); others go on the first only.
_EVERY_CHUNK_KEYS = ("service_tier", "system_fingerprint")
# Keys of resp.extensions["openai"] that are conventions of the non-stream encoder, not fields.
_NOT_TOP_LEVEL = frozenset({"extra_choices", "message_extra", "choice_extra", "usage"})
_EVERY_CHUNK_OR_HIDDEN = _NOT_TOP_LEVEL | frozenset(_EVERY_CHUNK_KEYS)


def is_refusal(part: TextPart) -> bool:
    """A TextPart that is an OpenAI ``refusal`` (marked by the OpenAI adapter and parser)."""
    ext = part.extensions.get("openai")
    return bool(ext and ext.get("refusal"))


def finish_to_openai(reason: FinishReason | None) -> str:
    """Canonical finish reason -> OpenAI ``finish_reason``."""
    return _FINISH.get(reason, "stop")


def new_completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def _cost_number(cost_usd: str | None) -> float | None:
    if cost_usd is None:
        return None
    # float() first: a string it reads as a finite number is one Decimal reads as the same number
    # (float(Decimal(s)) goes through the same decimal text), at a third of the cost
    try:
        f = float(cost_usd)
    except ValueError:
        f = math.inf
    if math.isfinite(f):
        return f
    try:
        d = Decimal(cost_usd)
    except InvalidOperation:
        return None
    return float(d) if d.is_finite() else None


def usage_object(usage: Usage, cost_usd: str | None) -> dict[str, Any]:
    """The OpenAI ``usage`` object: provider extras first, canonical counts and cost over them."""
    base = usage.extensions.get("openai")
    out: dict[str, Any] = dict(base) if base else {}
    out["prompt_tokens"] = usage.input_tokens
    out["completion_tokens"] = usage.output_tokens
    out["total_tokens"] = usage.input_tokens + usage.output_tokens
    ptd = out.get("prompt_tokens_details")
    ptd = dict(ptd) if isinstance(ptd, dict) else {}
    ptd["cached_tokens"] = usage.cached_input_tokens
    if usage.cache_write_tokens:
        ptd["cache_write_tokens"] = usage.cache_write_tokens
    out["prompt_tokens_details"] = ptd
    ctd = out.get("completion_tokens_details")
    ctd = dict(ctd) if isinstance(ctd, dict) else {}
    ctd["reasoning_tokens"] = usage.reasoning_tokens
    out["completion_tokens_details"] = ctd
    cost = _cost_number(cost_usd)
    # never an upstream's own price as the gateway's cost: the gateway's figure, or "unknown"
    # when the call could not be priced (the x-fareway-cost-usd header says the same)
    out["cost"] = cost if cost is not None else "unknown"
    return out


def error_object(exc: FarewayError) -> dict[str, Any]:
    return {
        "message": redact(exc.message),
        "type": exc.type,
        "param": exc.param,
        "code": exc.code,
    }


_DONE = b"data: [DONE]\n\n"


# The finish chunk's choice for each canonical finish reason (finish_to_openai's, encoded once);
# a reason it does not know is "stop", as there.
_FINISH_CHOICE = {
    reason: b'{"index":0,"delta":{},"logprobs":null,"finish_reason":"%s"}' % openai.encode()
    for reason, openai in _FINISH.items()
}
_STOP_CHOICE = _FINISH_CHOICE["stop"]
_CHOICE_HEAD = b'{"index":0,"delta":'
_CHOICE_TAIL = b',"logprobs":null,"finish_reason":null}'


class OpenAIStreamEncoder:
    """Implements ``wire.base.StreamEncoder`` for OpenAI Chat Completions clients."""

    __slots__ = (
        "_content_shown",
        "_finish",
        "_first_extra",
        "_include_usage",
        "_no_args",
        "_prefix",
        "_reasoning_shown",
        "_refusal_shown",
        "_refusals",
        "_req",
        "_sent_first",
        "_suffix",
        "_text_head",
        "_text_tail",
        "_tool_ordinal",
        "_usage",
        "meta",
    )

    def __init__(self, req: ChatRequest, meta: ResponseMeta) -> None:
        self._req = req
        self.meta = meta
        self._include_usage = req.include_usage
        self._suffix = b'],"usage":null}\n\n' if req.include_usage else b"]}\n\n"
        self._text_tail = b"}" + _CHOICE_TAIL + self._suffix
        """What follows a text chunk's content string (see _text_head)."""
        self._prefix: bytes | None = None
        self._text_head = b""
        """A text chunk up to its content string, once the first chunk went out (the common
        chunk of a stream, made in one concatenation: :meth:`encode`)."""
        self._first_extra = b""
        self._sent_first = False
        self._reasoning_shown = False
        self._content_shown = False
        """Whether content (even "") was sent: an empty text part after a null first chunk
        still turns ``content`` from null into "" (as the non-stream encoder shows it)."""
        self._tool_ordinal: dict[int, int] = {}
        self._no_args: set[int] = set()
        self._refusals: set[int] = set()
        self._refusal_shown = False
        """Tool calls (canonical index) whose arguments are still empty: closed with "{}"."""
        self._finish: Finish | None = None
        self._usage: Usage | None = None

    # ------------------------------------------------------------------------------ framing

    def _set_head(self, id_: str, model: str, created: int | None, ext: dict[str, Any]) -> None:
        # the head's fields in one dumps, its closing brace cut off
        fields: dict[str, Any] = {
            "id": id_ or new_completion_id(),
            "object": "chat.completion.chunk",
            "created": int(created) if created is not None else int(time.time()),
            "model": model or self._req.model,
        }
        self._first_extra = b""
        if ext:
            for key in _EVERY_CHUNK_KEYS:
                if (v := ext.get(key)) is not None:
                    fields[key] = v
            if not ext.keys() <= _EVERY_CHUNK_OR_HIDDEN:  # (usually only every-chunk keys)
                first = {k: v for k, v in ext.items() if k not in _EVERY_CHUNK_OR_HIDDEN}
                self._first_extra = b"," + orjson.dumps(first)[1:-1]
        self._prefix = b"data: " + orjson.dumps(fields)[:-1]
        self._text_head = b""

    def _head(self) -> bytes:
        if self._prefix is None:
            self._set_head("", self._req.model, None, {})
        assert self._prefix is not None
        if self._first_extra:
            extra, self._first_extra = self._first_extra, b""
            return self._prefix + extra + b',"choices":['
        return self._prefix + b',"choices":['

    def _chunk(self, delta: bytes) -> bytes:
        return self._head() + _CHOICE_HEAD + delta + _CHOICE_TAIL + self._suffix

    def _first(self, delta: dict[str, Any]) -> bytes:
        self._sent_first = True
        return self._chunk(orjson.dumps({"role": "assistant", **delta}))

    # ----------------------------------------------------------------------------- protocol

    def start(self) -> bytes:
        return b""

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, PartDelta):
            text_head = self._text_head
            if text_head and event.kind == "text" and event.text and event.index not in self._refusals:
                # most chunks of a stream: what _delta, _text and _chunk make of it, in one step
                return text_head + orjson.dumps(event.text) + self._text_tail
            return self._delta(event)
        if isinstance(event, PartStart):
            return self._part_start(event)
        if isinstance(event, ResponseStart):
            self._set_head(event.id, event.model, event.created, event.extensions.get("openai") or {})
            return b""
        if isinstance(event, PartEnd):
            return self._end_tool(event.index) if event.index in self._no_args else b""
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, Finish):
            self._finish = event
        return b""

    def _text(self, text: str) -> bytes:
        shown, self._content_shown = self._content_shown, True
        if not self._sent_first:
            # what _first({"content": text, "refusal": None}) makes, without the dict
            self._sent_first = True
            return self._chunk(b'{"role":"assistant","content":' + orjson.dumps(text) + b',"refusal":null}')
        if not text and shown:
            return b""
        if not self._first_extra:  # (the head every later chunk has, with _CHOICE_HEAD)
            self._text_head = text_head = self._head() + _CHOICE_HEAD + b'{"content":'
            return text_head + orjson.dumps(text) + self._text_tail
        return self._chunk(b'{"content":' + orjson.dumps(text) + b"}")

    def _refusal(self, text: str) -> bytes:
        shown, self._refusal_shown = self._refusal_shown, True
        if not self._sent_first:
            return self._first({"content": None, "refusal": text})
        if not text and shown:
            return b""
        return self._chunk(b'{"refusal":' + orjson.dumps(text) + b"}")

    def _thinking(self, text: str) -> bytes:
        shown, self._reasoning_shown = self._reasoning_shown, True
        if not self._sent_first:
            return self._first({"content": None, "reasoning_content": text})
        if not text and shown:
            return b""
        return self._chunk(b'{"reasoning_content":' + orjson.dumps(text) + b"}")

    def _tool_header(self, index: int, call_id: str, name: str, arguments: str) -> bytes:
        ordinal = len(self._tool_ordinal)
        self._tool_ordinal[index] = ordinal
        if not arguments:
            self._no_args.add(index)
        frag = {
            "index": ordinal,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        if not self._sent_first:
            return self._first({"content": None, "tool_calls": [frag], "refusal": None})
        return self._chunk(b'{"tool_calls":[' + orjson.dumps(frag) + b"]}")

    def _part_start(self, event: PartStart) -> bytes:
        part = event.part
        if isinstance(part, TextPart):
            if is_refusal(part):
                self._refusals.add(event.index)
                return self._refusal(part.text)
            return self._text(part.text) if (part.text or not self._content_shown) else b""
        if isinstance(part, ToolCallPart):
            return self._tool_header(event.index, part.id, part.name, part.arguments)
        if isinstance(part, ThinkingPart):
            return self._thinking(part.text) if (part.text or not self._reasoning_shown) else b""
        return b""  # an opaque part: nothing an OpenAI client can show

    def _delta(self, event: PartDelta) -> bytes:
        kind = event.kind
        if kind == "text":
            if event.index in self._refusals:
                return self._refusal(event.text) if (event.text or not self._refusal_shown) else b""
            return self._text(event.text) if (event.text or not self._content_shown) else b""
        if kind == "tool_args":
            ordinal = self._tool_ordinal.get(event.index)
            if ordinal is None:  # arguments for a call whose start we never saw
                return self._tool_header(event.index, "", "", event.text)
            if not event.text:
                return b""
            self._no_args.discard(event.index)
            return self._chunk(
                b'{"tool_calls":[{"index":'
                + str(ordinal).encode()
                + b',"function":{"arguments":'
                + orjson.dumps(event.text)
                + b"}}]}"
            )
        if kind == "thinking":
            return self._thinking(event.text) if (event.text or not self._reasoning_shown) else b""
        return b""  # signature, raw: not expressible to an OpenAI client

    def _end_tool(self, index: int) -> bytes:
        """A call that ended with no arguments (Anthropic streams ``""`` for a no-argument tool):
        send ``"{}"`` so the client's accumulated arguments parse, as OpenAI's own do."""
        self._no_args.discard(index)
        ordinal = self._tool_ordinal[index]
        return self._chunk(
            b'{"tool_calls":[{"index":' + str(ordinal).encode() + b',"function":{"arguments":"{}"}}]}'
        )

    def error(self, exc: FarewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": error_object(exc)}) + b"\n\n"

    def close(self, meta: ResponseMeta) -> bytes:
        out: list[bytes] = []
        if self._no_args:
            for index in sorted(self._no_args):
                out.append(self._end_tool(index))
        if not self._sent_first:
            out.append(self._first({"content": "", "refusal": None}))
        finish = self._finish
        out += (
            self._head(),
            _FINISH_CHOICE.get(finish.reason if finish is not None else None, _STOP_CHOICE),
            self._suffix,
        )
        if self._include_usage and self._usage is not None:
            cost = meta.cost_usd if meta.cost_usd is not None else self.meta.cost_usd
            out += (self._head(), b'],"usage":', orjson.dumps(usage_object(self._usage, cost)), b"}\n\n")
        out.append(_DONE)
        return b"".join(out)
