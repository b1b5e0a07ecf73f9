"""Incremental parser of an OpenAI-dialect SSE stream into canonical stream events.

Handles the shapes the recordings show: ``: comment`` keep-alives (OpenRouter), the ``choices: []``
usage chunk (OpenAI), a usage chunk that repeats a choice with an empty delta (OpenRouter), usage
on the finish chunk (Mistral) or in ``x_groq.usage`` (Groq), chunks after the usage (OpenAI
``moderation``), Mistral typed ``content`` arrays (thinking/text), ``reasoning`` /
``reasoning_content`` deltas, refusal deltas, tool-call headers that repeat (OpenRouter), and errors
inside a 200: a chunk with a top-level ``error`` (OpenRouter, Cerebras) or Groq's ``event: error``.

Event order: ``ResponseStart`` from the first chunk; parts as they come (canonical indexes 0, 1,
2... in start order); at ``finish_reason`` every open part ends; ``UsageUpdate`` whenever a chunk
carries usage; ``Finish`` at ``[DONE]`` (so the extras of trailing chunks, such as ``moderation``,
reach ``Finish.extensions``).  Only choice 0 is followed (n>1 streams are refused at build time).

The readers of fields both this parser and the non-streamed response need (finish reasons,
usage, error classification) are in ``openai_fields``.

An error met inside ``feed()`` after other events were produced in the same call is raised by the
next ``feed()`` / ``close()``, so the events before it are never lost.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from fareway.adapters.openai_chunks import (
    CONTENT_KEY,
    fill,
    parse_payloads,
    plain_answer,
    template,
    text_only,
    text_run,
    whole_events,
)
from fareway.adapters.openai_fields import (
    D,
    as_dict,
    as_str,
    classify_error,
    map_finish,
    parse_usage,
    usage_of_chunk,
)
from fareway.errors import (
    UpstreamConnectionError,
    UpstreamError,
)
from fareway.events import (
    DeltaKind,
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.sse import SseEvent, SseParser
from fareway.types import FinishReason, TextPart, ThinkingPart, ToolCallPart, Upstream, Usage

# ------------------------------------------------------------------------------ stream parser

_CHUNK_KNOWN = {"id", "object", "created", "model", "choices", "usage", "error", "obfuscation"}
_CHOICE_KNOWN = {"index", "delta", "finish_reason", "logprobs"}
_DELTA_KIND: dict[str, DeltaKind] = {
    "text": "text",
    "refusal": "text",
    "thinking": "thinking",
    "signature": "signature",
}


class _Tool:
    __slots__ = ("id", "index")

    def __init__(self, index: int, tool_id: str) -> None:
        self.index = index
        self.id = tool_id


class OpenAIStreamParser:
    """``feed(bytes) -> events``, ``close() -> events``; raises :class:`UpstreamError`."""

    def __init__(self, up: Upstream) -> None:
        self._up = up
        # the general parser (UTF-8 decoder and SSE parser), made when a read first needs it: the
        # common stream never does (the fast paths read whole one-line events)
        self._decoder: codecs.IncrementalDecoder | None = None
        self._sse: SseParser | None = None
        self._started = False
        self._next = 0
        self._open: list[int] = []
        self._free: tuple[str, int] | None = None  # the open text/refusal/thinking part
        self._tools: dict[Any, _Tool] = {}
        self._last_tool: Any = None
        self._noindex = 0
        self._has_tools = False
        self._finish_raw: Any = None
        self._finish_extra: dict[str, Any] = {}
        self._extras: dict[str, Any] = {}
        self._last_own: dict[str, Any] | None = None
        """The extras merged last (:meth:`_merge_own`)."""
        self._done = False
        self._pending: UpstreamError | None = None
        self._carry = b""  # the start of an event whose end has not come yet (the fast paths)
        self._tpl: tuple[str, str, bool] | None = None  # the last text chunk, as a template
        self.fast_folds = 0
        """How many times :meth:`feed_all` took the fast path (for tests)."""

    # ------------------------------------------------------------------ public

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        self._raise_pending()
        if self._carry:
            chunk, self._carry = self._carry + chunk, b""
        if not self._done and self._between():
            end = chunk.rfind(b"\n\n") + 2
            if end >= 2:
                fast = self._fast_feed(chunk if end == len(chunk) else chunk[:end])
                if fast is not None:
                    if end < len(chunk):
                        self._carry = chunk[end:]  # a part of the next event: it comes with the next read
                    return fast
            self._tpl = None
        return self._events(self._general(chunk))

    def _fast_feed(self, chunk: bytes) -> list[StreamEvent] | None:
        """Whole events that are each one ``data:`` line, without the SSE parser; a chunk that
        repeats the text chunk before it but for its text (:func:`template`) is read from its
        text alone.  None: another shape, for the general parser."""
        payloads = whole_events(chunk)
        if payloads is None:
            return None
        if self._finish_raw is None and self._pending is None and not self._tools and len(payloads) > 2:
            free = self._free
            if free is None or free[0] == "text":
                plain = self._plain(payloads, joined=False)
                if plain is not None:
                    self._tpl = None
                    return plain
        out: list[StreamEvent] = []
        tpl = self._tpl
        n = len(payloads)
        i = 0
        bulk = True
        while i < n:
            if self._done or self._pending is not None:
                break
            if tpl is not None and bulk and n - i > 1:
                # the payloads from here up to the last that starts like the template, read in
                # bulk (a read of a fast upstream holds many chunks); once per read, so that the
                # scans stay linear in the payloads
                bulk = False
                pieces = text_run(tpl, payloads, i)
                if pieces is not None:
                    self._text_deltas(pieces, out)
                    i += len(pieces)
                    continue
            p = payloads[i]
            i += 1
            if tpl is not None:
                raw = fill(tpl, p)
                if raw is not None:
                    try:
                        piece = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        piece = None
                    if type(piece) is str:
                        self._text_deltas((piece,), out)
                        continue
            try:
                parsed = self._data(p, None, out)
            except UpstreamError as exc:
                self._tpl = None
                if not out:
                    self._done = True
                    raise
                self._pending = exc
                return out
            tpl = template(p) if parsed is not None and CONTENT_KEY in p and text_only(parsed) else None
        self._tpl = tpl
        return out

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        """More of the body, for a consumer that folds the events into one answer (a whole
        answer read as a stream): the events of :meth:`feed`, except that a run of text deltas
        within one read comes as one delta.  The common stream (text deltas of choice 0, a
        finish reason, usage, ``[DONE]``) takes a fast path that skips the per-chunk event
        building; anything else (tool calls, reasoning, refusals, errors, event names, CR line
        ends) goes through :meth:`feed`.  An event cut by the read waits for the next one."""
        self._tpl = None  # (feed's template stands for the chunk just before: not after this)
        if self._carry:
            chunk, self._carry = self._carry + chunk, b""
        end = chunk.rfind(b"\n\n") + 2
        if end < 2:  # no whole event yet
            self._carry = chunk
            return []
        fast = self._fast_rest(chunk if end == len(chunk) else chunk[:end])
        if fast is None:
            return self.feed(chunk)
        self.fast_folds += 1
        if end < len(chunk):
            self._carry = chunk[end:]  # a part of the next event: it comes with the next read
        return fast

    def _fast_rest(self, chunk: bytes) -> list[StreamEvent] | None:
        # The parser must be between events, with at most the text part open.
        if self._pending is not None or self._done or self._tools:
            return None
        free = self._free
        if free is not None and free[0] != "text":
            return None
        if not self._between():
            return None
        # The events: every one a single `data: {...}` line, a comment or `data: [DONE]` last.
        # First without the per-line check (parse_payloads refuses a payload holding a newline);
        # then, for a body with comments between its events (keep-alives), with it.
        payloads = whole_events(chunk, lines_checked=False)
        if payloads is not None and self._finish_raw is None:
            plain = self._plain(payloads, joined=True)
            if plain is not None:
                return plain
        parsed = self._rest_chunks(payloads)
        if parsed is None:
            parsed = self._rest_chunks(whole_events(chunk))
            if parsed is None:
                return None  # event names, ids, multi-line data, unspaced fields: the general parser
        chunks, done = parsed
        started = self._started
        texts: list[str] = []
        usages: list[Usage] = []
        first: dict[str, Any] | None = None
        finish_raw: Any = None
        finish_seen = False
        finished = self._finish_raw is not None  # a finish reason came before this rest
        usage_after_finish = True
        extras: list[dict[str, Any]] = []
        known = _CHUNK_KNOWN
        choice_known = _CHOICE_KNOWN
        append = texts.append
        tpl_extra: dict[str, Any] | None = None  # the template chunk, when it has extras
        tpl_ok = False  # the last parsed chunk holds a text delta of choice 0 and nothing else
        try:
            for c in chunks:
                if type(c) is str:
                    # a chunk like the template chunk before it but for its text (parse_payloads)
                    if not tpl_ok:
                        return None
                    if c:
                        if finished:
                            return None
                        append(c)
                    if tpl_extra is not None:
                        extras.append(tpl_extra)
                    continue
                if c.get("error"):  # (a chunk that is not an object raises: the general parser)
                    return None
                if not c.keys() <= known:
                    extras.append(c)
                    tpl_extra = c
                else:
                    tpl_extra = None
                if first is None and not started:
                    first = c
                tpl_ok = False
                choices = c.get("choices")
                if choices:
                    (ch,) = choices  # more than one choice: ValueError, the general parser
                    if ch.get("index") or ch.get("logprobs") is not None:
                        return None
                    if not ch.keys() <= choice_known and any(
                        v is not None for k, v in ch.items() if k not in choice_known
                    ):
                        return None
                    delta = ch.get("delta")
                    if delta:
                        content = delta.get("content")
                        if content:
                            if finished or type(content) is not str:
                                return None
                            append(content)
                        if len(delta) > 1 or content is None:
                            for k, v in delta.items():
                                if v is not None and k != "content" and k != "role":
                                    return None  # tool calls, reasoning, refusals: the general parser
                    fr = ch.get("finish_reason")
                    if fr is not None and not finished:
                        finish_raw, finish_seen, finished = fr, True, True
                    tpl_ok = fr is None and len(delta) == 1 and type(delta.get("content")) is str
                if c.get("usage") is not None or "x_groq" in c:
                    tpl_ok = False
                    u = usage_of_chunk(c)
                    if u is not None:
                        if not finished:
                            usage_after_finish = False
                        usages.append(u)
        except (AttributeError, TypeError, ValueError):
            return None  # a chunk, choice or delta of another shape
        if usages and not usage_after_finish and (texts or finish_seen):
            return None  # usage between deltas or before the finish: keep the general order
        # The stream is the common shape: build its events as the general parser would.
        out: list[StreamEvent] = []
        first_own: dict[str, Any] | None = None
        last: dict[str, Any] | None = None
        for c in extras:
            if c is last:  # the template chunk again: merging the same extras changes nothing
                continue
            last = c
            own = self._merge_extras(c)
            if c is first:
                first_own = own
        if first is not None:
            self._started = True
            if first_own is None:
                first_own = {k: v for k, v in first.items() if k not in known}
            out.append(self._response_start(first, first_own))
        if texts:
            self._free_delta("text", texts[0] if len(texts) == 1 else "".join(texts), out)
        if finish_seen:
            self._finish_raw = finish_raw
            self._finish_extra = {}
            self._end_all(out)
        for u in usages:
            out.append(UsageUpdate(u))
        if done:
            self._finish(out)
        return out

    def _plain(self, payloads: list[str], *, joined: bool) -> list[StreamEvent] | None:
        """The events of a read of the plainest shape (:func:`plain_answer`: most answers of a
        fast upstream, and most whole answers), as the general reading gives them: one text
        delta per chunk, or (``joined``, for the fold) one for them all; None for another shape.
        The parser must be between events with at most its text part open, before any finish."""
        done = payloads[-1] == "[DONE]" if payloads else False
        try:
            a = plain_answer(payloads[:-1] if done else payloads)
        except orjson.JSONDecodeError:
            return None
        if a is None:
            return None
        chunk = a.chunk
        if chunk.get("error") or "x_groq" in chunk:
            return None
        out: list[StreamEvent] = []
        # every chunk has the same fields but its delta: their extras are merged once
        own = self._merge_extras(chunk) if not chunk.keys() <= _CHUNK_KNOWN else {}
        if not self._started:
            self._started = True
            out.append(self._response_start(chunk, own))
        if joined:
            if a.text:
                self._free_delta("text", a.text, out)
        else:
            self._text_deltas(a.texts, out)
        self._finish_raw = a.finish
        self._finish_extra = {}
        self._end_all(out)
        if a.usage is not None:
            usage = parse_usage(a.usage)
            if usage is not None:
                out.append(UsageUpdate(usage))
        if done:
            self._finish(out)
        return out

    @staticmethod
    def _rest_chunks(payloads: list[str] | None) -> tuple[list[Any], bool] | None:
        """The chunks of the payloads (parse_payloads) and whether ``[DONE]`` ended them."""
        if payloads is None:
            return None
        done = bool(payloads) and payloads[-1] == "[DONE]"
        if done:
            payloads.pop()
        try:
            chunks = parse_payloads(payloads)
        except orjson.JSONDecodeError:
            return None
        return None if chunks is None else (chunks, done)

    def close(self) -> list[StreamEvent]:
        self._raise_pending()
        carry, self._carry = self._carry, b""
        out = self._events(self._general(carry, final=True)) if carry or self._sse is not None else []
        self._raise_pending()
        if not self._done:
            if self._finish_raw is None:
                raise UpstreamConnectionError(
                    f"stream ended before [DONE] and without a finish_reason from {self._up.provider or 'upstream'}: "
                    "the response is truncated",
                    provider=self._up.provider,
                )
            self._finish(out)
        return out

    # ------------------------------------------------------------------ internals

    def _between(self) -> bool:
        """Whether the general parser holds nothing (no part of an event or of a character)."""
        sse = self._sse
        return sse is None or (not sse.pending() and not self._decoder.getstate()[0])  # type: ignore[union-attr]

    def _general(self, chunk: bytes, *, final: bool = False) -> list[SseEvent]:
        """The SSE events of ``chunk`` by the general parser (made on first use); ``final``: the
        end of the body."""
        sse, decoder = self._sse, self._decoder
        if sse is None or decoder is None:
            sse = self._sse = SseParser()
            decoder = self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        events = sse.feed(decoder.decode(chunk, final=final))
        return events + sse.close() if final else events

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
            try:
                self._data(ev.data, ev.event, out)
            except UpstreamError as exc:
                if not out:
                    self._done = True
                    raise
                self._pending = exc
        return out

    def _data(self, data: str, event: str | None, out: list[StreamEvent]) -> dict[str, Any] | None:
        """One event's data; the chunk, when it was one."""
        data = data.strip()
        if not data:
            return None
        if data == "[DONE]":
            self._finish(out)
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if event == "error":
                raise classify_error(200, {}, data.encode(), self._up, {"error": {"message": data}}) from exc
            raise UpstreamConnectionError(
                f"{self._up.provider or 'upstream'} sent a stream event that is not JSON: {data[:200]!r}",
                provider=self._up.provider,
            ) from exc
        if not isinstance(chunk, dict):
            raise classify_error(200, {}, data.encode(), self._up, chunk)
        if event == "error" or chunk.get("error"):
            usage = usage_of_chunk(chunk)
            if usage is not None:
                out.append(UsageUpdate(usage))
            raise classify_error(200, {}, data.encode(), self._up, chunk)
        self._chunk(chunk, out)
        return chunk

    def _chunk(self, chunk: dict[str, Any], out: list[StreamEvent]) -> None:
        # (the hot path of every streamed call: key tests before building anything)
        extras = self._merge_extras(chunk) if not chunk.keys() <= _CHUNK_KNOWN else {}
        if not self._started:
            self._started = True
            out.append(self._response_start(chunk, extras))
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if isinstance(choice, dict) and (choice.get("index") or 0) == 0:
                    self._choice(choice, out)
        if chunk.get("usage") is not None or "x_groq" in chunk:
            usage = usage_of_chunk(chunk)
            if usage is not None:
                out.append(UsageUpdate(usage))

    def _merge_extras(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """Fold the chunk's keys outside the known ones into the stream's extras (dicts merge,
        others replace); return those keys.  The extras merged last again (most chunks repeat
        them) are not built nor merged again: merging them twice in a row changes nothing."""
        last = self._last_own
        if (
            last is not None
            and len(chunk) - len(_CHUNK_KNOWN.intersection(chunk)) == len(last)
            and last.items() <= chunk.items()  # (key by key, values compared as dict equality does)
        ):
            return last
        own = {k: v for k, v in chunk.items() if k not in _CHUNK_KNOWN}
        self._merge_own(own)
        return own

    def _merge_own(self, own: dict[str, Any]) -> None:
        self._last_own = own  # (what _chunk compares a chunk's extras with)
        ext = self._extras
        for k, v in own.items():
            old = ext.get(k)
            ext[k] = {**old, **v} if isinstance(old, dict) and isinstance(v, dict) else v

    def _response_start(self, chunk: dict[str, Any], extras: dict[str, Any]) -> ResponseStart:
        created = chunk.get("created")
        if type(created) is not int:
            created = int(created) if isinstance(created, int | float) else None
        return ResponseStart(
            str(chunk.get("id") or ""),
            str(chunk.get("model") or self._up.model),
            created,
            {D: dict(extras)} if extras else {},
        )

    def _choice(self, choice: dict[str, Any], out: list[StreamEvent]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta, out)
        fr = choice.get("finish_reason")
        if fr is not None and self._finish_raw is None:
            self._finish_raw = fr
            self._finish_extra = {k: v for k, v in choice.items() if k not in _CHOICE_KNOWN and v is not None}
            self._end_all(out)

    def _delta(self, delta: dict[str, Any], out: list[StreamEvent]) -> None:
        if "reasoning_content" in delta or "reasoning" in delta or "reasoning_details" in delta:
            self._reasoning_delta(delta, out)
        content = delta.get("content")
        if not content:
            pass
        elif isinstance(content, str):
            if content:
                self._free_delta("text", content, out)
        elif isinstance(content, list):  # Mistral typed chunks
            for item in content:
                if isinstance(item, str):
                    self._free_delta("text", item, out)
                elif isinstance(item, dict) and item.get("type") == "text":
                    self._free_delta("text", str(item.get("text") or ""), out)
                elif isinstance(item, dict) and item.get("type") == "thinking":
                    inner = item.get("thinking")
                    texts = (
                        [inner]
                        if isinstance(inner, str)
                        else [x.get("text") for x in inner or [] if isinstance(x, dict)]
                    )
                    for t in texts:
                        if isinstance(t, str) and t:
                            self._free_delta("thinking", t, out, "content")
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            self._free_delta("refusal", refusal, out)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for tc in tool_calls:
                if isinstance(tc, dict):
                    self._tool_delta(tc, out)

    def _reasoning_delta(self, delta: dict[str, Any], out: list[StreamEvent]) -> None:
        for field in ("reasoning_content", "reasoning"):
            text = delta.get(field)
            if isinstance(text, str) and text:
                self._free_delta("thinking", text, out, field)
        details = delta.get("reasoning_details")
        if isinstance(details, list):
            for d in details:
                sig = d.get("signature") if isinstance(d, dict) else None
                if isinstance(sig, str) and sig:
                    self._free_delta("signature", sig, out, "reasoning")

    def _start(self, part: TextPart | ThinkingPart | ToolCallPart, out: list[StreamEvent]) -> int:
        i = self._next
        self._next += 1
        self._open.append(i)
        out.append(PartStart(i, part))
        return i

    def _end(self, index: int, out: list[StreamEvent]) -> None:
        if index in self._open:
            self._open.remove(index)
            out.append(PartEnd(index))

    def _end_all(self, out: list[StreamEvent]) -> None:
        for i in sorted(self._open):
            out.append(PartEnd(i))
        self._open.clear()
        self._free = None
        self._tools.clear()
        self._last_tool = None

    def _text_deltas(self, texts: list[str] | tuple[str], out: list[StreamEvent]) -> None:
        """A text delta for each of ``texts`` but the empty ones (a delta of the open text part,
        made here: :meth:`_free_delta`'s common case, without a call per text)."""
        for text in texts:
            if text:
                free = self._free
                if free is not None and free[0] == "text":
                    out.append(PartDelta(free[1], "text", text))
                else:
                    self._free_delta("text", text, out)

    def _free_delta(self, kind: str, text: str, out: list[StreamEvent], field: str = "") -> None:
        """A delta of the single open free-form part (text, refusal or thinking)."""
        if not text:
            return
        part_kind = "thinking" if kind == "signature" else kind
        if self._free is None or self._free[0] != part_kind:
            if self._free is not None:
                self._end(self._free[1], out)
            part: TextPart | ThinkingPart
            if part_kind == "thinking":
                part = ThinkingPart("", extensions={D: {"field": field}})
            elif part_kind == "refusal":
                part = TextPart("", {D: {"refusal": True}})
            else:
                part = TextPart("")
            self._free = (part_kind, self._start(part, out))
        out.append(PartDelta(self._free[1], _DELTA_KIND[kind], text))

    def _tool_delta(self, tc: dict[str, Any], out: list[StreamEvent]) -> None:
        fn = as_dict(tc.get("function"))
        tool_id = as_str(tc.get("id"))
        name = as_str(fn.get("name"))
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):
            args = orjson.dumps(args).decode()
        key: Any = tc.get("index")
        if key is None:  # Gemini-compat: no index; a fragment with an id is a new call
            if tool_id or self._last_tool is None:
                self._noindex += 1
                key = ("noindex", self._noindex)
            else:
                key = self._last_tool
        tool = self._tools.get(key)
        if tool is None or (tool_id and tool.id and tool_id != tool.id):
            if tool is not None:
                self._end(tool.index, out)
            if self._free is not None:
                self._end(self._free[1], out)
                self._free = None
            ext = {k: v for k, v in tc.items() if k not in ("id", "type", "function", "index")}
            tool = _Tool(self._start(ToolCallPart(tool_id, name, "", {D: ext} if ext else {}), out), tool_id)
            self._tools[key] = tool
            self._has_tools = True
        self._last_tool = key
        if args:
            out.append(PartDelta(tool.index, "tool_args", args))

    def _finish(self, out: list[StreamEvent]) -> None:
        if self._done:
            return
        self._done = True
        self._end_all(out)
        reason: FinishReason | None = map_finish(self._finish_raw)
        if reason is None:  # OpenRouter sometimes omits the finish chunk before [DONE]
            reason = "tool_calls" if self._has_tools else "stop"
        ext = dict(self._extras)
        if self._finish_extra:
            ext["choice_extra"] = self._finish_extra
        out.append(Finish(reason, extensions={D: ext} if ext else {}))
