"""The Responses API stream (and output items) of a native upstream -> canonical events.

Events as OpenAI sends them (fixtures ``openai-responses/``): ``response.created`` /
``in_progress`` -> :class:`ResponseStart`; per output item:

* ``message``: each content part (``response.content_part.added`` ... ``.done``) is a TextPart
  (``output_text.delta`` / ``refusal.delta`` its deltas) carrying the item id, so a message of
  several parts stays one item;
* ``function_call``: a ToolCallPart (``call_id`` as the canonical id, the ``fc_`` id kept);
  arguments from ``function_call_arguments.delta``, or from ``.done`` / ``output_item.done``
  when a server sends them only there;
* ``reasoning``: a ThinkingPart per summary part (``reasoning_summary_text.delta``, or
  ``reasoning_text.delta`` for a raw chain of thought), all with the item id; the
  ``encrypted_content`` of ``output_item.done`` (the one in ``.added`` is a placeholder) is the
  last part's ``signature`` delta;
* any other item (``web_search_call``, ``file_search_call``, ``code_interpreter_call``, ...): an
  OpaquePart of the item, its events as ``raw`` deltas, the final item as a raw
  ``response.output_item.done`` delta.

Other events about an item (``output_text.annotation.added``...) are raw deltas of its part.
``response.completed`` / ``response.incomplete`` give usage and the finish; ``response.failed``
and ``error`` raise the upstream's error (before the commit point the call falls back).
OpenRouter's ``data: [DONE]`` and comment lines are ignored.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from fareway.adapters.openai_fields import classify_error
from fareway.dialects.openai_responses import DIALECT
from fareway.errors import UpstreamConnectionError, UpstreamError
from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.sse import SseEvent, SseParser
from fareway.types import (
    FinishReason,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Upstream,
    Usage,
)

_RESPONSE_KNOWN = frozenset(
    {
        "id",
        "object",
        "created_at",
        "status",
        "output",
        "usage",
        "model",
        "error",
        "incomplete_details",
        "completed_at",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "store",
        "temperature",
        "top_p",
        "truncation",
        "user",
        "metadata",
        "max_output_tokens",
        "previous_response_id",
        "background",
        "max_tool_calls",
        "include",
    }
)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def response_start_extras(data: dict[str, Any]) -> dict[str, Any]:
    """Response fields Fareway does not echo itself (``service_tier``, ``billing``, ...)."""
    return {k: v for k, v in data.items() if k not in _RESPONSE_KNOWN}


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None

    def num(v: Any) -> int:
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0

    itd = _obj(raw.get("input_tokens_details"))
    otd = _obj(raw.get("output_tokens_details"))
    u = Usage(
        input_tokens=num(raw.get("input_tokens")),
        output_tokens=num(raw.get("output_tokens")),
        cached_input_tokens=num(itd.get("cached_tokens")),
        cache_write_tokens=num(itd.get("cache_write_tokens")),
        reasoning_tokens=num(otd.get("reasoning_tokens")),
    )
    extra = {k: v for k, v in raw.items() if k not in ("input_tokens", "output_tokens", "total_tokens")}
    if extra:
        u.extensions[DIALECT] = extra
    return u


def finish_of(data: dict[str, Any], called: bool) -> FinishReason:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called else "stop"


def _item_extra(item: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in known}


def _text_parts(item: dict[str, Any]) -> list[Part]:
    iid = item.get("id")
    extra = _item_extra(item, ("id", "type", "status", "content", "role"))
    out: list[Part] = []
    for cp in item.get("content") or []:
        if not isinstance(cp, dict):
            continue
        ext: dict[str, Any] = {"item_id": iid} if isinstance(iid, str) else {}
        if extra:
            ext["item"] = extra
        if cp.get("type") == "refusal":
            out.append(TextPart(str(cp.get("refusal") or ""), {"openai": {"refusal": True}, DIALECT: ext}))
            continue
        part_extra = _item_extra(cp, ("type", "text"))
        if part_extra:
            ext["part"] = part_extra
        out.append(TextPart(str(cp.get("text") or ""), {DIALECT: ext}))
    return out


def _reasoning_parts(item: dict[str, Any]) -> list[Part]:
    iid = item.get("id")
    texts = [str(s.get("text") or "") for s in item.get("summary") or [] if isinstance(s, dict)]
    if not texts:
        texts = [str(c.get("text") or "") for c in item.get("content") or [] if isinstance(c, dict)] or [""]
    parts: list[Part] = []
    for t in texts:
        ext: dict[str, Any] = {"item_id": iid} if isinstance(iid, str) else {}
        parts.append(ThinkingPart(t, extensions={DIALECT: ext}))
    enc = item.get("encrypted_content")
    if isinstance(enc, str) and enc and parts:
        last = parts[-1]
        assert isinstance(last, ThinkingPart)
        last.signature = enc
    return parts


def _call_part(item: dict[str, Any]) -> ToolCallPart:
    extra = _item_extra(item, ("type", "call_id", "name", "arguments", "status"))
    args = item.get("arguments")
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCallPart(
        str(item.get("call_id") or item.get("id") or ""),
        str(item.get("name") or ""),
        args or "",
        {DIALECT: extra} if extra else {},
    )


def output_parts(items: list[dict[str, Any]]) -> list[Part]:
    """Canonical parts of a whole response's ``output`` items."""
    parts: list[Part] = []
    for item in items:
        t = item.get("type")
        if t == "message":
            parts += _text_parts(item)
        elif t == "function_call":
            parts.append(_call_part(item))
        elif t == "reasoning":
            parts += _reasoning_parts(item)
        elif isinstance(t, str):
            parts.append(OpaquePart(DIALECT, dict(item)))
    return parts


class _Open:
    __slots__ = ("args_seen", "content", "index", "item", "kind", "pending", "summary")

    def __init__(self, kind: str, item: dict[str, Any]) -> None:
        self.kind = kind
        self.item = item
        self.index: int | None = None
        """The canonical part open now for this item (None: none)."""
        self.content: dict[int, int] = {}
        self.summary = -1
        self.args_seen = False
        """Whether arguments came for this call (in deltas or with the item): the done event's
        arguments are then not sent again."""
        self.pending: Part | None = None
        """A text or summary part announced but not started: it starts (and so commits the
        stream) with its first delta, so a failure right after the announcement can fall back."""


class ResponsesStreamParser:
    """``feed(bytes) -> events``, ``close() -> events``; raises :class:`UpstreamError`."""

    def __init__(self, up: Upstream) -> None:
        self._up = up
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._sse = SseParser()
        self._started = False
        self._next = 0
        self._items: dict[str, _Open] = {}
        self._by_index: dict[int, _Open] = {}
        self._called = False
        self._done = False
        self._pending: UpstreamError | None = None

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        """More of the body, for a consumer that folds the events: the events of :meth:`feed`."""
        return self.feed(chunk)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        self._raise_pending()
        return self._events(self._sse.feed(self._decoder.decode(chunk)))

    def close(self) -> list[StreamEvent]:
        self._raise_pending()
        out = self._events(self._sse.feed(self._decoder.decode(b"", final=True)) + self._sse.close())
        self._raise_pending()
        if not self._done:
            raise UpstreamConnectionError(
                f"the Responses stream from {self._up.provider or 'upstream'} ended before response.completed: "
                "the response is truncated",
                provider=self._up.provider,
            )
        return out

    def _raise_pending(self) -> None:
        if self._pending is not None:
            exc, self._pending = self._pending, None
            self._done = True
            raise exc

    def _events(self, sse_events: list[SseEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in sse_events:
            if self._done or self._pending is not None:
                break
            data = ev.data.strip()
            if not data or data == "[DONE]":
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            try:
                self._event(obj, data, out)
            except UpstreamError as exc:
                if not out:
                    self._done = True
                    raise
                self._pending = exc
        return out

    # ---------------------------------------------------------------------------- helpers

    def _start(self, part: Part, out: list[StreamEvent]) -> int:
        i = self._next
        self._next += 1
        out.append(PartStart(i, part))
        return i

    def _announce(self, o: _Open, part: Part, out: list[StreamEvent]) -> None:
        self._end(o, out)
        o.pending = part

    def _ensure(self, o: _Open, out: list[StreamEvent]) -> None:
        if o.pending is not None:
            o.index = self._start(o.pending, out)
            o.pending = None

    def _end(self, o: _Open, out: list[StreamEvent]) -> None:
        self._ensure(o, out)
        if o.index is not None:
            out.append(PartEnd(o.index))
            o.index = None

    def _response_start(self, data: dict[str, Any], out: list[StreamEvent]) -> None:
        if self._started:
            return
        self._started = True
        r = _obj(data.get("response"))
        extras = response_start_extras(r)
        out.append(
            ResponseStart(
                str(r.get("id") or ""),
                str(r.get("model") or self._up.model),
                int(r["created_at"]) if isinstance(r.get("created_at"), int | float) else None,
                {DIALECT: extras} if extras else {},
            )
        )

    def _fail(self, payload: dict[str, Any]) -> UpstreamError:
        return classify_error(200, {}, orjson.dumps(payload), self._up, payload)

    # ----------------------------------------------------------------------------- events

    def _event(self, d: dict[str, Any], raw: str, out: list[StreamEvent]) -> None:
        t = d.get("type")
        if t in ("response.created", "response.in_progress", "response.queued"):
            self._response_start(d, out)
            return
        if t == "error":
            err = (
                d.get("error")
                if isinstance(d.get("error"), dict)
                else {k: d.get(k) for k in ("code", "message", "param", "type") if d.get(k) is not None}
            )
            raise self._fail({"error": err})
        if t == "response.failed":
            r = _obj(d.get("response"))
            err = r.get("error") if isinstance(r.get("error"), dict) else {"message": "the response failed"}
            raise self._fail({"error": err})
        if t in ("response.completed", "response.incomplete"):
            self._response_start(d, out)
            r = _obj(d.get("response"))
            for opened in list(self._by_index.values()):
                self._end(opened, out)
            usage = usage_of(r.get("usage"))
            out.append(Finish(finish_of(r, self._called)))
            if usage is not None:
                out.append(UsageUpdate(usage))
            self._done = True
            return
        if not isinstance(t, str):
            return
        self._response_start({}, out)
        if t == "response.output_item.added":
            self._added(d, out)
            return
        if t == "response.output_item.done":
            self._item_done(d, raw, out)
            return
        o: _Open | None = self._items.get(str(d.get("item_id") or ""))
        if o is None:
            oi = d.get("output_index")
            o = self._by_index.get(oi) if isinstance(oi, int) else None
        if o is None:
            return
        if o.kind == "message":
            self._message_event(o, t, d, raw, out)
        elif o.kind == "function_call":
            if t == "response.function_call_arguments.delta":
                delta = str(d.get("delta") or "")
                if delta and o.index is not None:
                    o.args_seen = True  # (not the text: the canonical deltas carry it)
                    out.append(PartDelta(o.index, "tool_args", delta))
            elif t == "response.function_call_arguments.done":
                self._args_done(o, d.get("arguments"), out)
            elif o.index is not None:
                out.append(PartDelta(o.index, "raw", raw))
        elif o.kind == "reasoning":
            self._reasoning_event(o, t, d, raw, out)
        elif o.index is not None:
            out.append(PartDelta(o.index, "raw", raw))

    def _added(self, d: dict[str, Any], out: list[StreamEvent]) -> None:
        item = _obj(d.get("item"))
        kind = str(item.get("type") or "")
        o = _Open(kind if kind in ("message", "function_call", "reasoning") else "opaque", item)
        iid = item.get("id")
        if isinstance(iid, str):
            self._items[iid] = o
        if isinstance(d.get("output_index"), int):
            self._by_index[d["output_index"]] = o
        if kind == "function_call":
            self._called = True
            part = _call_part({**item, "arguments": ""})
            o.index = self._start(part, out)
            args = item.get("arguments")
            if isinstance(args, str) and args:
                o.args_seen = True
                out.append(PartDelta(o.index, "tool_args", args))
        elif kind == "reasoning":
            pass  # a part starts with the first summary part, or at output_item.done
        elif kind != "message":
            o.index = self._start(OpaquePart(DIALECT, dict(item)), out)

    def _message_event(self, o: _Open, t: str, d: dict[str, Any], raw: str, out: list[StreamEvent]) -> None:
        ci_raw = d.get("content_index")
        ci = ci_raw if isinstance(ci_raw, int) else 0
        if t == "response.content_part.added":
            part = _obj(d.get("part"))
            refusal = part.get("type") == "refusal"
            parts = _text_parts({**o.item, "content": [{**part, "refusal" if refusal else "text": ""}]})
            if parts:
                self._announce(o, parts[0], out)
                text = part.get("refusal") if refusal else part.get("text")
                if isinstance(text, str) and text:
                    self._ensure(o, out)
                    assert o.index is not None
                    out.append(PartDelta(o.index, "text", text))
            return
        if t in ("response.output_text.delta", "response.refusal.delta"):
            if o.index is None and o.pending is None:
                self._message_event(
                    o,
                    "response.content_part.added",
                    {
                        "content_index": ci,
                        "part": {"type": "refusal" if t == "response.refusal.delta" else "output_text"},
                    },
                    raw,
                    out,
                )
            self._ensure(o, out)
            delta = str(d.get("delta") or "")
            if delta and o.index is not None:
                out.append(PartDelta(o.index, "text", delta))
            if t == "response.output_text.delta" and d.get("logprobs") and o.index is not None:
                out.append(PartDelta(o.index, "raw", raw))
            return
        if t == "response.content_part.done":
            self._end(o, out)
            return
        if t in ("response.output_text.done", "response.refusal.done"):
            return
        self._ensure(o, out)
        if o.index is not None:
            out.append(PartDelta(o.index, "raw", raw))

    def _reasoning_event(self, o: _Open, t: str, d: dict[str, Any], raw: str, out: list[StreamEvent]) -> None:
        if t == "response.reasoning_summary_part.added":
            self._announce(o, self._summary_part(o), out)
            return
        if t in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if o.index is None and o.pending is None:
                o.pending = self._summary_part(o)
            self._ensure(o, out)
            assert o.index is not None
            delta = str(d.get("delta") or "")
            if delta:
                out.append(PartDelta(o.index, "thinking", delta))
            return
        if t in (
            "response.reasoning_summary_part.done",
            "response.reasoning_summary_text.done",
            "response.reasoning_text.done",
            "response.content_part.added",
            "response.content_part.done",
        ):
            return
        self._ensure(o, out)
        if o.index is not None:
            out.append(PartDelta(o.index, "raw", raw))

    @staticmethod
    def _summary_part(o: _Open) -> Part:
        return _reasoning_parts({**o.item, "summary": [{"text": ""}], "encrypted_content": None})[0]

    def _args_done(self, o: _Open, args: Any, out: list[StreamEvent]) -> None:
        if isinstance(args, str) and args and not o.args_seen and o.index is not None:
            o.args_seen = True
            out.append(PartDelta(o.index, "tool_args", args))

    def _item_done(self, d: dict[str, Any], raw: str, out: list[StreamEvent]) -> None:
        item = _obj(d.get("item"))
        iid = item.get("id")
        o = self._items.get(iid) if isinstance(iid, str) else None
        if o is None:
            oi = d.get("output_index")
            o = self._by_index.get(oi) if isinstance(oi, int) else None
        if o is None:  # a done without an added: take the item whole
            self._added({"item": item, "output_index": d.get("output_index")}, out)
            o = (
                self._items.get(iid)
                if isinstance(iid, str)
                else self._by_index.get(d.get("output_index", -1))
            )
            if o is None:
                return
            if o.kind == "message":
                for part in _text_parts(item):
                    i = self._start(part, out)
                    out.append(PartEnd(i))
                return
        if o.kind == "function_call":
            self._args_done(o, item.get("arguments"), out)
            self._end(o, out)
        elif o.kind == "reasoning":
            enc = item.get("encrypted_content")
            self._ensure(o, out)
            if o.index is None:
                o.index = self._start(
                    _reasoning_parts({**item, "summary": [], "content": [], "encrypted_content": None})[0],
                    out,
                )
            if isinstance(enc, str) and enc:
                out.append(PartDelta(o.index, "signature", enc))
            self._end(o, out)
        elif o.kind == "message":
            self._end(o, out)
        else:
            if o.index is not None:
                out.append(PartDelta(o.index, "raw", raw))
            self._end(o, out)
