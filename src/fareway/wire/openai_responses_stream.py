"""OpenAI Responses API output: canonical stream events -> output items and SSE events.

:class:`ResponseBuilder` folds canonical events into the ``response`` object's ``output`` items,
with ids that depend only on the response id and the order of the items (or, from a native
OpenAI upstream, the upstream's own item ids): the stream encoder, the non-streamed encoder and the
responses store each fold the same events and get the same ids, so an item has one id in
``response.output_item.added``, its deltas, ``response.completed``, ``GET /v1/responses/{id}`` and
``input_items``.

Canonical part -> item:

* TextPart -> a ``message`` item (``output_text``, or ``refusal`` for a refusal); text parts of one
  upstream message (same ``extensions["openai_responses"]["item_id"]``) share one message item;
* ToolCallPart -> ``function_call`` (``call_id`` = the canonical id; ``arguments`` ``""`` -> ``"{}"``);
* ThinkingPart -> ``reasoning`` (``summary_text`` = the thinking text; ``encrypted_content`` = the
  sealed proof of the provider that made it, shown when the request's ``include`` has
  ``reasoning.encrypted_content``, always kept in the store);
* OpaquePart of this dialect (a built-in tool call from a native upstream) -> the item itself, its
  own events passed through (renumbered); other dialects' opaque parts are not shown.

The stream is the sequence OpenAI sends (fixtures ``test_responses_basic_streaming.yaml``,
``test_responses_tool_use_streaming.yaml``): ``response.created``, ``response.in_progress``, per
item ``response.output_item.added`` ... ``response.output_item.done`` with the content-part,
text, arguments and reasoning-summary events between, then ``response.completed`` (or
``response.incomplete`` when cut by the output limit) carrying the whole response with ``usage``
(and the gateway's ``cost``).  Every event has an ``event:`` line and a contiguous
``sequence_number``; there is no ``[DONE]``.  A failure after the commit point is an ``error``
event then ``response.failed``.
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from fareway.dialects.openai_responses import DIALECT, PRIVATE, seal
from fareway.errors import FarewayError, redact
from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
    response_to_events,
)
from fareway.types import (
    ChatResponse,
    FinishReason,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)
from fareway.wire.base import ResponseMeta

__all__ = [
    "PRIVATE",
    "ResponseBuilder",
    "ResponsesStreamEncoder",
    "error_object",
    "status_of",
    "usage_object",
]

ENCRYPTED = "reasoning.encrypted_content"
MINTED = "fw"
"""Item ids Fareway mints are ``<prefix>_fw<hex>`` (``fw`` is not hex, so no upstream id looks like
one): the native adapter does not send them to an upstream that never issued them."""


def error_object(exc: FarewayError) -> dict[str, Any]:
    return {"message": redact(exc.message), "type": exc.type, "param": exc.param, "code": exc.code}


def _cost_number(cost_usd: str | None) -> float | None:
    if cost_usd is None:
        return None
    try:
        d = Decimal(cost_usd)
    except InvalidOperation:
        return None
    return float(d) if d.is_finite() else None


def usage_object(usage: Usage, cost_usd: str | None) -> dict[str, Any]:
    base = usage.extensions.get(DIALECT)
    out: dict[str, Any] = dict(base) if base else {}
    out["input_tokens"] = usage.input_tokens
    itd = dict(out.get("input_tokens_details") or {})
    itd["cached_tokens"] = usage.cached_input_tokens
    if usage.cache_write_tokens:
        itd["cache_write_tokens"] = usage.cache_write_tokens
    out["input_tokens_details"] = itd
    out["output_tokens"] = usage.output_tokens
    otd = dict(out.get("output_tokens_details") or {})
    otd["reasoning_tokens"] = usage.reasoning_tokens
    out["output_tokens_details"] = otd
    out["total_tokens"] = usage.input_tokens + usage.output_tokens
    cost = _cost_number(cost_usd)
    if cost is not None:
        out["cost"] = cost
    else:
        out.pop("cost", None)  # never show an upstream's price as the gateway's cost
    return out


def status_of(reason: FinishReason | None) -> tuple[str, dict[str, Any] | None]:
    """(status, incomplete_details) of a finished response."""
    if reason in ("length", "context_window"):
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _is_refusal(part: TextPart) -> bool:
    return bool((part.extensions.get("openai") or {}).get("refusal"))


class _Item:
    __slots__ = ("content_index", "data", "done", "group", "item", "kind", "output_index", "pieces", "text")

    def __init__(self, kind: str, output_index: int, item: dict[str, Any], group: str | None) -> None:
        self.kind = kind
        self.output_index = output_index
        self.item = item
        self.group = group
        """The upstream item id text/reasoning parts are grouped by (None: not groupable)."""
        self.text = ""
        self.content_index = -1
        self.done = False
        self.data: Any = None
        self.pieces: list[str] = []
        """Deltas of the part's growing string (its text, refusal, summary text or arguments) not
        yet joined into it: joined once, by ``ResponseBuilder._flush``, before anything reads it
        or the part changes (adding each delta to the string copies the whole of it every time:
        quadratic in a long answer)."""


class ResponseBuilder:
    """Folds canonical events into output items; with ``emit`` it also renders the SSE events."""

    def __init__(
        self,
        echo: dict[str, Any],
        provider: str,
        requested_model: str,
        *,
        emit: bool = False,
        full: bool | None = None,
        private: bool = False,
    ) -> None:
        self.echo = echo
        self.private = private
        """Keep what only the provider needs back (a Gemini call's thoughtSignature) in the items,
        under PRIVATE: for the store, never shown (the routes strip it)."""
        self.provider = provider
        self.model = requested_model
        self.emit = emit
        self.full = ENCRYPTED in (echo.get("include") or []) if full is None else full
        self.response_id: str = echo.get("id") or ""
        self._hex = self.response_id.removeprefix("resp_")[:40].ljust(40, "0")
        self.items: list[_Item] = []
        self._parts: dict[int, _Item] = {}
        self._pending: _Item | None = None
        """A message or reasoning item whose parts ended; it stays open for a next part of the
        same upstream item, and is closed when another part starts or the response ends."""
        self.usage: Usage | None = None
        self.finish: Finish | None = None
        self.extra: dict[str, Any] = {}
        self.seq = 0
        self.out: list[bytes] = []
        self.started = False

    # ---------------------------------------------------------------------------- events

    def _event(self, kind: str, body: dict[str, Any]) -> None:
        if not self.emit:
            return
        data = {"type": kind, **body, "sequence_number": self.seq}
        self.seq += 1
        self.out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def _raw(self, text: str, it: _Item) -> None:
        if not self.emit:
            return
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return
        if data["type"] in ("response.output_item.done", "response.output_item.added"):
            return
        data["output_index"] = it.output_index
        if "item_id" in data:
            data["item_id"] = it.item.get("id")
        data["sequence_number"] = self.seq
        self.seq += 1
        self.out.append(b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def start(self, model: str | None = None, extensions: dict[str, Any] | None = None) -> None:
        if self.started:
            return
        self.started = True
        if model:
            self.model = model
        if extensions:
            self.extra = dict(extensions)
        if self.emit:
            r = self.response("in_progress")
            self._event("response.created", {"response": r})
            self._event("response.in_progress", {"response": r})

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, PartDelta):
            self._delta(event)
        elif isinstance(event, PartStart):
            self.start()
            self._part_start(event)
        elif isinstance(event, PartEnd):
            it = self._parts.get(event.index)
            if it is not None:
                self._part_end(it)
        elif isinstance(event, ResponseStart):
            self.start(event.model, event.extensions.get(DIALECT))
        elif isinstance(event, UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, Finish):
            self.finish = event

    # -------------------------------------------------------------------------- item ids

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{MINTED}{self._hex}{len(self.items):08x}"

    def _close_pending(self) -> None:
        it, self._pending = self._pending, None
        if it is None or it.done:
            return
        self._flush(it)
        it.done = True
        it.item["status"] = "completed"
        if it.kind == "reasoning":
            it.item.pop("status", None)
            self._seal(it)
        self._event("response.output_item.done", {"output_index": it.output_index, "item": self._shown(it)})

    def _open(self, kind: str, item: dict[str, Any], group: str | None) -> _Item:
        self._close_pending()
        it = _Item(kind, len(self.items), item, group)
        self.items.append(it)
        self._event("response.output_item.added", {"output_index": it.output_index, "item": self._shown(it)})
        return it

    def _shown(self, it: _Item) -> dict[str, Any]:
        item = it.item
        if it.kind == "reasoning" and not self.full and "encrypted_content" in item:
            return {k: v for k, v in item.items() if k != "encrypted_content"}
        return item

    @staticmethod
    def _flush(it: _Item) -> None:
        """Join the item's pending deltas into the string they grow."""
        pieces = it.pieces
        if not pieces:
            return
        joined = "".join(pieces)
        pieces.clear()
        if it.kind == "message":
            key = "refusal" if it.data["type"] == "refusal" else "text"
            it.data[key] += joined
        elif it.kind == "reasoning":
            it.item["summary"][it.content_index]["text"] += joined
        else:
            it.text += joined

    # ------------------------------------------------------------------------------- parts

    def _part_start(self, event: PartStart) -> None:
        part = event.part
        ext = part.extensions.get(DIALECT) or {}
        group = ext.get("item_id") if isinstance(ext.get("item_id"), str) else None
        if isinstance(part, TextPart):
            pend = self._pending
            if pend is not None and pend.kind == "message" and group is not None and pend.group == group:
                it = pend
                self._flush(it)
                self._pending = None
            else:
                item: dict[str, Any] = {
                    "id": group or self._new_id("msg"),
                    "type": "message",
                    "status": "in_progress",
                    "content": [],
                    "role": "assistant",
                }
                extra = ext.get("item")
                if isinstance(extra, dict):
                    for k, v in extra.items():
                        if k not in ("id", "type", "status", "content", "role"):
                            item[k] = v
                it = self._open("message", item, group)
            it.content_index += 1
            it.text = part.text
            if _is_refusal(part):
                cp: dict[str, Any] = {"type": "refusal", "refusal": ""}
            else:
                cp = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                extra_part = ext.get("part")
                if isinstance(extra_part, dict):
                    cp.update({k: v for k, v in extra_part.items() if k not in ("type", "text")})
            it.data = cp
            self._parts[event.index] = it
            self._event(
                "response.content_part.added",
                {
                    "item_id": it.item["id"],
                    "output_index": it.output_index,
                    "content_index": it.content_index,
                    "part": cp,
                },
            )
            if part.text:
                self._text_delta(it, part.text)
        elif isinstance(part, ToolCallPart):
            item = {
                "id": (ext.get("id") if isinstance(ext.get("id"), str) else None) or self._new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": part.id,
                "name": part.name,
            }
            if self.private and part.extensions.get("gemini"):
                item[PRIVATE] = {"gemini": part.extensions["gemini"]}
            it = self._open("function_call", item, None)
            it.text = part.arguments
            self._parts[event.index] = it
            if part.arguments:
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": item["id"], "output_index": it.output_index, "delta": part.arguments},
                )
        elif isinstance(part, ThinkingPart):
            pend = self._pending
            if pend is not None and pend.kind == "reasoning" and group is not None and pend.group == group:
                it = pend
                self._flush(it)
                self._pending = None
            else:
                item = {"id": group or self._new_id("rs"), "type": "reasoning", "summary": []}
                it = self._open("reasoning", item, group)
                it.data = {"signature": None, "redacted": None}
            if part.redacted:
                it.data["redacted"] = part.redacted
            if part.signature:
                it.data["signature"] = (it.data["signature"] or "") + part.signature
            self._parts[event.index] = it
            if part.text:
                self._summary_delta(it, part.text)
        elif isinstance(part, OpaquePart) and part.dialect == DIALECT and part.data:
            item = dict(part.data)
            item.setdefault("id", self._new_id("item"))
            it = self._open("opaque", item, None)
            self._parts[event.index] = it

    def _text_delta(self, it: _Item, text: str) -> None:
        cp = it.data
        if cp["type"] == "refusal":
            it.pieces.append(text)
            self._event(
                "response.refusal.delta",
                {
                    "item_id": it.item["id"],
                    "output_index": it.output_index,
                    "content_index": it.content_index,
                    "delta": text,
                },
            )
        else:
            it.pieces.append(text)
            self._event(
                "response.output_text.delta",
                {
                    "item_id": it.item["id"],
                    "output_index": it.output_index,
                    "content_index": it.content_index,
                    "delta": text,
                    "logprobs": [],
                },
            )

    def _summary_delta(self, it: _Item, text: str) -> None:
        summary = it.item["summary"]
        if it.content_index < 0 or it.content_index >= len(summary):
            self._flush(it)
            it.content_index = len(summary)
            summary.append({"type": "summary_text", "text": ""})
            self._event(
                "response.reasoning_summary_part.added",
                {
                    "item_id": it.item["id"],
                    "output_index": it.output_index,
                    "summary_index": it.content_index,
                    "part": {"type": "summary_text", "text": ""},
                },
            )
        it.pieces.append(text)
        self._event(
            "response.reasoning_summary_text.delta",
            {
                "item_id": it.item["id"],
                "output_index": it.output_index,
                "summary_index": it.content_index,
                "delta": text,
            },
        )

    def _delta(self, event: PartDelta) -> None:
        it = self._parts.get(event.index)
        if it is None or it.done:
            return
        kind = event.kind
        if kind == "text" and it.kind == "message":
            if event.text:
                self._text_delta(it, event.text)
        elif kind == "tool_args" and it.kind == "function_call":
            if event.text:
                it.pieces.append(event.text)
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": it.item["id"], "output_index": it.output_index, "delta": event.text},
                )
        elif kind == "thinking" and it.kind == "reasoning":
            if event.text:
                self._summary_delta(it, event.text)
        elif kind == "signature" and it.kind == "reasoning":
            it.data["signature"] = (it.data["signature"] or "") + event.text
        elif kind == "raw":
            if it.kind == "opaque":
                try:
                    data = orjson.loads(event.text)
                except orjson.JSONDecodeError:
                    data = None
                if isinstance(data, dict) and data.get("type") == "response.output_item.done":
                    if isinstance(data.get("item"), dict):
                        it.item = {**data["item"], "id": it.item["id"]}
                    return
            self._raw(event.text, it)

    def _seal(self, it: _Item) -> None:
        sig, red = it.data["signature"], it.data["redacted"]
        if sig or red:
            it.item["encrypted_content"] = seal(self.provider, signature=sig or None, redacted=red)

    def _part_end(self, it: _Item) -> None:
        if it.done:
            return
        self._flush(it)
        iid, oi = it.item["id"], it.output_index
        if it.kind == "message":
            cp = it.data
            it.item["content"].append(cp)
            if cp["type"] == "refusal":
                self._event(
                    "response.refusal.done",
                    {
                        "item_id": iid,
                        "output_index": oi,
                        "content_index": it.content_index,
                        "refusal": cp["refusal"],
                    },
                )
            else:
                self._event(
                    "response.output_text.done",
                    {
                        "item_id": iid,
                        "output_index": oi,
                        "content_index": it.content_index,
                        "text": cp["text"],
                        "logprobs": [],
                    },
                )
            self._event(
                "response.content_part.done",
                {"item_id": iid, "output_index": oi, "content_index": it.content_index, "part": cp},
            )
            self._pending = it
        elif it.kind == "reasoning":
            summary = it.item["summary"]
            if 0 <= it.content_index < len(summary):
                s = summary[it.content_index]
                self._event(
                    "response.reasoning_summary_text.done",
                    {
                        "item_id": iid,
                        "output_index": oi,
                        "summary_index": it.content_index,
                        "text": s["text"],
                    },
                )
                self._event(
                    "response.reasoning_summary_part.done",
                    {"item_id": iid, "output_index": oi, "summary_index": it.content_index, "part": s},
                )
            it.content_index = len(summary)  # a next part of the same item starts a new summary part
            self._pending = it
        elif it.kind == "function_call":
            args = it.text if it.text.strip() else "{}"
            if not it.text.strip():
                self._event(
                    "response.function_call_arguments.delta",
                    {"item_id": iid, "output_index": oi, "delta": args},
                )
            it.item["arguments"] = args
            it.item["status"] = "completed"
            it.done = True
            self._event(
                "response.function_call_arguments.done",
                {"item_id": iid, "output_index": oi, "arguments": args},
            )
            self._event("response.output_item.done", {"output_index": oi, "item": it.item})
        else:
            it.done = True
            self._event("response.output_item.done", {"output_index": oi, "item": it.item})

    # ---------------------------------------------------------------------------- results

    def finish_items(self) -> None:
        self._close_pending()
        for it in self.items:
            self._flush(it)
            if not it.done:  # a part that never ended (a truncated upstream): close what it has
                if it.kind == "message" and it.data is not None and it.data not in it.item["content"]:
                    it.item["content"].append(it.data)
                if it.kind == "function_call":
                    it.item["arguments"] = it.text or "{}"
                if it.kind == "reasoning":
                    self._seal(it)
                else:
                    it.item["status"] = "completed"
                it.done = True

    def output(self, *, full: bool | None = None) -> list[dict[str, Any]]:
        show = self.full if full is None else full
        out = []
        for it in self.items:
            self._flush(it)
            item = it.item
            if it.kind == "reasoning" and not show:
                item = {k: v for k, v in item.items() if k != "encrypted_content"}
            out.append(item)
        return out

    def response(
        self,
        status: str,
        cost_usd: str | None = None,
        *,
        error: dict[str, Any] | None = None,
        full: bool | None = None,
    ) -> dict[str, Any]:
        echo = self.echo
        incomplete = None
        if status in ("completed", "incomplete"):
            status, incomplete = status_of(self.finish.reason if self.finish is not None else None)
        now = int(time.time())
        tools = [
            dict(t, strict=t.get("strict", True)) if t.get("type") == "function" else t
            for t in echo.get("tools") or []
            if isinstance(t, dict)
        ]
        r: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": echo.get("created_at") or now,
            "status": status,
            "background": False,
            "completed_at": now if status == "completed" else None,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.model,
            "output": self.output(full=full) if status != "in_progress" else [],
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": echo.get("previous_response_id"),
            "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
            "store": echo.get("store", True),
            "temperature": echo.get("temperature", 1.0),
            "text": echo.get("text") or {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": tools,
            "top_p": echo.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage_object(self.usage, cost_usd)
            if self.usage is not None and status != "in_progress"
            else None,
            "user": echo.get("user"),
            "metadata": echo.get("metadata") or {},
        }
        for k, v in self.extra.items():
            if k not in r:
                r[k] = v
        return r

    def whole(self, resp: ChatResponse, cost_usd: str | None) -> dict[str, Any]:
        """The ``response`` object of a whole (non-streamed) answer."""
        for e in response_to_events(resp):
            self.add(e)
        self.finish_items()
        return self.response("completed", cost_usd)


class ResponsesStreamEncoder:
    """Implements ``wire.base.StreamEncoder`` for Responses API clients."""

    __slots__ = ("builder", "meta")

    def __init__(self, echo: dict[str, Any], meta: ResponseMeta, requested_model: str) -> None:
        self.meta = meta
        self.builder = ResponseBuilder(echo, meta.provider, requested_model, emit=True)

    def _take(self) -> bytes:
        b = self.builder
        if not b.out:
            return b""
        out = b"".join(b.out)
        b.out.clear()
        return out

    def start(self) -> bytes:
        return b""

    def encode(self, event: StreamEvent) -> bytes:
        self.builder.add(event)
        return self._take()

    def error(self, exc: FarewayError) -> bytes:
        b = self.builder
        b.start()
        b.finish_items()
        err = error_object(exc)
        b._event("error", {"error": err})
        failed = {"code": str(exc.code or exc.type or "server_error"), "message": err["message"]}
        b._event("response.failed", {"response": b.response("failed", error=failed)})
        return self._take()

    def close(self, meta: ResponseMeta) -> bytes:
        b = self.builder
        b.start()
        b.finish_items()
        cost = meta.cost_usd if meta.cost_usd is not None else self.meta.cost_usd
        r = b.response("completed", cost)
        b._event(
            "response.completed" if r["status"] == "completed" else "response.incomplete", {"response": r}
        )
        return self._take()
