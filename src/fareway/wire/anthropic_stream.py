"""Anthropic Messages SSE encoder: canonical stream events -> the exact event sequence the
Anthropic API sends and its SDK (and Claude Code) expect::

    message_start  ping
    ( content_block_start  content_block_delta*  content_block_stop )*
    message_delta  message_stop

* ``message_start`` is held until the first content (or the end) so the upstream's
  message_start usage, which an Anthropic upstream sends right after it, can be shown;
  otherwise ``input_tokens`` is 0 there and ``output_tokens`` 1, like the real API.
* Block indexes are Anthropic's own, contiguous from 0; a block is closed before the next opens.
* A tool_use block always gets at least one ``input_json_delta`` (``""`` for a no-argument call,
  which the SDK folds to ``{}``): arguments that arrived whole in the PartStart are sent as a
  delta, never dropped.
* Finish is held until ``close()``: OpenAI-dialect upstreams report usage after the finish chunk;
  ``message_delta.usage`` carries the final cumulative totals including input and cache counters.
* ``error()`` closes the open block, then sends ``event: error``.
"""

from __future__ import annotations

from typing import Any

import orjson

from fareway.dialects.anthropic_blocks import DIALECT, usage_to_wire
from fareway.errors import FarewayError
from fareway.events import Finish, PartDelta, PartEnd, PartStart, ResponseStart, StreamEvent, UsageUpdate
from fareway.sse import frame
from fareway.types import ChatRequest, OpaquePart, TextPart, ThinkingPart, ToolCallPart, Usage
from fareway.wire.anthropic_common import error_payload, message_id, stop_reason
from fareway.wire.base import ResponseMeta

_DELTA_KEY_IN_DELTA = ("stop_reason", "stop_sequence", "stop_details", "container")


def _ev(etype: str, payload: dict[str, Any]) -> bytes:
    return frame(orjson.dumps({"type": etype, **payload}), etype)


class AnthropicStreamEncoder:
    def __init__(self, req: ChatRequest, meta: ResponseMeta) -> None:
        self._req = req
        self._meta = meta
        self._start: ResponseStart | None = None
        self._started = False
        self._usage: Usage | None = None
        self._finish: Finish | None = None
        self._index: dict[int, int] = {}  # canonical part index -> Anthropic block index
        self._kind: dict[int, str] = {}  # Anthropic index -> block type
        self._got_delta: set[int] = set()
        self._open: int | None = None
        self._next = 0
        self._tool_calls = False

    # ---------------------------------------------------------------------------- framing

    def start(self) -> bytes:
        return b""

    def _message_start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        st = self._start
        usage = usage_to_wire(self._usage)
        if self._usage is None:
            usage["output_tokens"] = 1
        message: dict[str, Any] = {
            "id": message_id(st.id if st else "", self._meta),
            "type": "message",
            "role": "assistant",
            "model": (st.model if st and st.model else self._req.model),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        if st is not None:
            message.update(st.extensions.get(DIALECT, {}))
        return _ev("message_start", {"message": message}) + _ev("ping", {})

    def _close_open(self) -> bytes:
        if self._open is None:
            return b""
        idx = self._open
        self._open = None
        out = b""
        if self._kind.get(idx) == "tool_use" and idx not in self._got_delta:
            out += self._delta(idx, {"type": "input_json_delta", "partial_json": ""})
        return out + _ev("content_block_stop", {"index": idx})

    def _delta(self, idx: int, delta: dict[str, Any]) -> bytes:
        self._got_delta.add(idx)
        return _ev("content_block_delta", {"index": idx, "delta": delta})

    def _open_block(self, canon: int, block: dict[str, Any]) -> tuple[int, bytes]:
        out = self._close_open()
        idx = self._next
        self._next += 1
        self._index[canon] = idx
        self._kind[idx] = str(block.get("type"))
        self._open = idx
        return idx, out + _ev("content_block_start", {"index": idx, "content_block": block})

    # ---------------------------------------------------------------------------- events

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, ResponseStart):
            self._start = event
            return b""
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, Finish):
            self._finish = event
            return b""
        out = self._message_start()
        if isinstance(event, PartStart):
            return out + self._part_start(event)
        if isinstance(event, PartDelta):
            return out + self._part_delta(event)
        if isinstance(event, PartEnd):
            idx = self._index.get(event.index)
            if idx is not None and idx == self._open:
                out += self._close_open()
            return out
        return out

    def _part_start(self, ev: PartStart) -> bytes:
        part = ev.part
        ext = part.extensions.get(DIALECT, {})
        if isinstance(part, TextPart):
            idx, out = self._open_block(ev.index, {"type": "text", "text": "", **ext})
            if part.text:
                out += self._delta(idx, {"type": "text_delta", "text": part.text})
            return out
        if isinstance(part, ToolCallPart):
            self._tool_calls = True
            block = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}, **ext}
            idx, out = self._open_block(ev.index, block)
            if part.arguments:
                out += self._delta(idx, {"type": "input_json_delta", "partial_json": part.arguments})
            return out
        if isinstance(part, ThinkingPart):
            if part.redacted is not None:
                return self._open_block(
                    ev.index, {"type": "redacted_thinking", "data": part.redacted, **ext}
                )[1]
            idx, out = self._open_block(
                ev.index, {"type": "thinking", "thinking": "", "signature": "", **ext}
            )
            if part.text:
                out += self._delta(idx, {"type": "thinking_delta", "thinking": part.text})
            if part.signature:
                out += self._delta(idx, {"type": "signature_delta", "signature": part.signature})
            return out
        if isinstance(part, OpaquePart):
            if part.dialect != DIALECT:
                return b""
            idx, out = self._open_block(ev.index, dict(part.data))
            for raw in part.deltas:
                out += self._raw_delta(idx, raw)
            return out
        return b""

    def _raw_delta(self, idx: int, raw: str) -> bytes:
        try:
            delta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return b""
        return self._delta(idx, delta) if isinstance(delta, dict) else b""

    def _part_delta(self, ev: PartDelta) -> bytes:
        idx = self._index.get(ev.index)
        out = b""
        if idx is None:
            # A delta without a PartStart: open the block its kind implies.
            if ev.kind == "text":
                idx, out = self._open_block(ev.index, {"type": "text", "text": ""})
            elif ev.kind in ("thinking", "signature"):
                idx, out = self._open_block(ev.index, {"type": "thinking", "thinking": "", "signature": ""})
            else:
                return b""  # tool arguments with no id/name, or raw data with no block: unshowable
        if ev.kind == "text":
            return out + self._delta(idx, {"type": "text_delta", "text": ev.text})
        if ev.kind == "tool_args":
            return out + self._delta(idx, {"type": "input_json_delta", "partial_json": ev.text})
        if ev.kind == "thinking":
            return out + self._delta(idx, {"type": "thinking_delta", "thinking": ev.text})
        if ev.kind == "signature":
            return out + self._delta(idx, {"type": "signature_delta", "signature": ev.text})
        return out + self._raw_delta(idx, ev.text)

    def error(self, exc: FarewayError) -> bytes:
        out = self._close_open()
        _, payload = error_payload(exc)
        return out + _ev("error", {"error": payload["error"]})

    def close(self, meta: ResponseMeta) -> bytes:
        out = self._message_start() + self._close_open()
        fin = self._finish
        reason = fin.reason if fin else None
        fext = dict(fin.extensions.get(DIALECT, {})) if fin else {}
        delta: dict[str, Any] = {
            "stop_reason": stop_reason(reason, self._tool_calls),
            "stop_sequence": fin.stop_sequence if fin and reason == "stop_sequence" else None,
        }
        top: dict[str, Any] = {}
        for k, v in fext.items():
            (delta if k in _DELTA_KEY_IN_DELTA else top)[k] = v
        usage = usage_to_wire(self._usage)
        out += _ev("message_delta", {"delta": delta, "usage": usage, **top})
        return out + _ev("message_stop", {})


__all__ = ["AnthropicStreamEncoder"]
