"""Anthropic Messages SSE -> canonical stream events, and Anthropic error classification.

Tolerates what real streams do: JSON padded with trailing spaces, ``ping`` anywhere, events with
or without ``event:`` names (the ``type`` inside the data is what counts), unknown event types
(ignored) and unknown block or delta types (OpaquePart / ``raw`` deltas).  ``message_delta`` usage
is cumulative and is merged over the ``message_start`` usage field by field, as the SDK does.
``event: error`` raises the classified UpstreamError; a body that ends before ``message_stop``
raises UpstreamConnectionError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fareway.dialects.anthropic_blocks import (
    DIALECT,
    STOP_TO_FINISH,
    BlockError,
    block_to_part,
    merge_usage,
    usage_from_wire,
)
from fareway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
    retry_after_seconds,
)
from fareway.events import Finish, PartDelta, PartEnd, PartStart, ResponseStart, StreamEvent, UsageUpdate
from fareway.sse import SseEvent, SseParser
from fareway.types import OpaquePart, TextPart, ThinkingPart, ToolCallPart, Upstream

_MESSAGE_KNOWN = ("id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage")
_CONTEXT_MARKERS = ("prompt is too long", "context window", "context length", "too many tokens")


# ------------------------------------------------------------------------------------ errors


def error_from_body(
    data: Any, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
) -> UpstreamError:
    """Classify an Anthropic error: by HTTP status first, the error type and message second.
    ``status`` 200 means an error sent inside a 2xx stream or body."""
    err = data.get("error") if isinstance(data, dict) else None
    etype = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace")[:500] or f"HTTP {status}"
    etype = etype if isinstance(etype, str) else None
    kw: dict[str, Any] = {
        "provider": up.provider,
        "body": body,
        "headers": {str(k).lower(): str(v) for k, v in headers.items()},
        "retry_after": retry_after_seconds(headers),
        "code": etype,
    }
    if status and status != 200:
        kw["status"] = status
    text = f"{up.provider or 'anthropic'}: {message}"
    low = message.lower()
    if status == 529 or etype == "overloaded_error" or status == 503:
        return UpstreamOverloaded(text, **kw)
    if status == 429 or etype == "rate_limit_error":
        return UpstreamRateLimited(text, **kw)
    if status == 402 or etype == "billing_error":
        return UpstreamQuotaExceeded(text, **kw)
    if status in (401, 403) or etype in ("authentication_error", "permission_error"):
        return UpstreamAuthError(text, **kw)
    if status == 504 or etype == "timeout_error":
        return UpstreamTimeout(text, phase="total", **kw)
    if status >= 500 or etype == "api_error":
        return UpstreamServerError(text, **kw)
    if 400 <= status < 500 or etype is not None:
        ctx = any(m in low for m in _CONTEXT_MARKERS) and status in (400, 413, 200)
        return UpstreamClientError(text, context_length=ctx, **kw)
    return UpstreamServerError(text, **kw)


# ------------------------------------------------------------------------------------ stream


class AnthropicStreamParser:
    def __init__(self, up: Upstream) -> None:
        self._up = up
        self._sse = SseParser()
        self._index: dict[int, int] = {}  # Anthropic block index -> canonical part index
        self._kind: dict[int, str] = {}  # canonical index -> "text" | "tool" | "thinking" | "opaque"
        self._next = 0
        self._usage: dict[str, Any] = {}
        self._started = False
        self._done = False

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        """More of the body, for a consumer that folds the events: the events of :meth:`feed`."""
        return self.feed(chunk)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(chunk):
            self._event(ev, out)
        return out

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.close():
            self._event(ev, out)
        if not self._done:
            raise UpstreamConnectionError(
                f"{self._up.provider or 'anthropic'}: the stream ended before message_stop",
                provider=self._up.provider,
            )
        return out

    def _fail(self, message: str, raw: str) -> UpstreamError:
        return UpstreamServerError(
            f"{self._up.provider or 'anthropic'}: {message}", provider=self._up.provider, body=raw.encode()
        )

    def _event(self, ev: SseEvent, out: list[StreamEvent]) -> None:
        if self._done:
            return
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            raise self._fail("the stream sent an event that is not JSON", ev.data) from None
        if not isinstance(data, dict):
            raise self._fail("the stream sent an unexpected event", ev.data)
        etype = data.get("type", ev.event)
        if etype == "error" or ev.event == "error":
            raise error_from_body(data, 200, {}, ev.data.encode(), self._up)
        if etype == "message_start":
            self._message_start(data, out)
        elif etype == "content_block_start":
            self._block_start(data, out, ev.data)
        elif etype == "content_block_delta":
            self._block_delta(data, out)
        elif etype == "content_block_stop":
            idx = self._index.get(data.get("index", -1))
            if idx is not None:
                out.append(PartEnd(idx))
        elif etype == "message_delta":
            self._message_delta(data, out)
        elif etype == "message_stop":
            self._done = True
        # ping and unknown event types: ignored

    def _message_start(self, data: dict[str, Any], out: list[StreamEvent]) -> None:
        msg = data.get("message")
        if not isinstance(msg, dict):
            raise self._fail("message_start without a message", orjson.dumps(data).decode())
        self._started = True
        ext = {k: v for k, v in msg.items() if k not in _MESSAGE_KNOWN}
        out.append(
            ResponseStart(
                str(msg.get("id") or ""),
                str(msg.get("model") or self._up.model),
                extensions={DIALECT: ext} if ext else {},
            )
        )
        usage = msg.get("usage")
        if isinstance(usage, dict):
            self._usage = dict(usage)
            out.append(UsageUpdate(usage_from_wire(self._usage)))

    def _block_start(self, data: dict[str, Any], out: list[StreamEvent], raw: str) -> None:
        a_idx = data.get("index")
        block = data.get("content_block")
        if not isinstance(a_idx, int) or not isinstance(block, dict):
            raise self._fail("content_block_start without index or block", raw)
        try:
            part = block_to_part(block, f"content[{a_idx}]")
        except BlockError:
            part = OpaquePart(DIALECT, dict(block))
        if isinstance(part, ToolCallPart):
            # The block's input is {} at the start; the arguments arrive as input_json_delta.
            if part.arguments.strip() in ("{}", ""):
                part.arguments = ""
            kind = "tool"
        elif isinstance(part, TextPart):
            kind = "text"
        elif isinstance(part, ThinkingPart):
            kind = "thinking"
        else:
            if not isinstance(part, OpaquePart):
                part = OpaquePart(DIALECT, dict(block))
            kind = "opaque"
        idx = self._next
        self._next += 1
        self._index[a_idx] = idx
        self._kind[idx] = kind
        out.append(PartStart(idx, part))

    def _block_delta(self, data: dict[str, Any], out: list[StreamEvent]) -> None:
        idx = self._index.get(data.get("index", -1))
        delta = data.get("delta")
        if idx is None or not isinstance(delta, dict):
            return
        kind = self._kind[idx]
        dtype = delta.get("type")
        if dtype == "text_delta" and kind == "text":
            out.append(PartDelta(idx, "text", str(delta.get("text") or "")))
        elif dtype == "input_json_delta" and kind == "tool":
            out.append(PartDelta(idx, "tool_args", str(delta.get("partial_json") or "")))
        elif dtype == "thinking_delta" and kind == "thinking":
            out.append(PartDelta(idx, "thinking", str(delta.get("thinking") or "")))
        elif dtype == "signature_delta" and kind == "thinking":
            out.append(PartDelta(idx, "signature", str(delta.get("signature") or "")))
        else:
            out.append(PartDelta(idx, "raw", orjson.dumps(delta).decode()))

    def _message_delta(self, data: dict[str, Any], out: list[StreamEvent]) -> None:
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = merge_usage(self._usage, usage)
            out.append(UsageUpdate(usage_from_wire(self._usage)))
        delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
        assert isinstance(delta, dict)
        ext = {k: v for k, v in delta.items() if k not in ("stop_reason", "stop_sequence")}
        ext.update({k: v for k, v in data.items() if k not in ("type", "delta", "usage")})
        raw_stop = delta.get("stop_reason")
        finish = STOP_TO_FINISH.get(raw_stop) if isinstance(raw_stop, str) else None
        if isinstance(raw_stop, str) and finish is None:
            finish = "stop"
            ext["stop_reason"] = raw_stop
        stop_seq = delta.get("stop_sequence")
        out.append(
            Finish(finish, stop_seq if isinstance(stop_seq, str) else None, {DIALECT: ext} if ext else {})
        )
