"""Canonical stream events and the accumulator that folds them into a ChatResponse.

An upstream stream, whatever its dialect, is parsed into this sequence::

    ResponseStart
    ( PartStart(i) PartDelta(i)* PartEnd(i) )*     parts may interleave (parallel tool calls)
    UsageUpdate*                                   cumulative: the last one wins
    Finish
    UsageUpdate*                                   OpenAI sends usage after the finish chunk

Part indexes are canonical: 0, 1, 2... in the order parts start, across kinds.  A wire encoder
derives its own numbering (OpenAI tool_calls[].index counts tool calls only).

Errors inside a stream are not events: an adapter's stream parser raises an
``errors.UpstreamError`` when it meets one, so the executor can fall back before the commit point
and the wire encoder can close open blocks after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fareway.types import (
    ChatResponse,
    Extensions,
    FinishReason,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)

DeltaKind = Literal["text", "tool_args", "thinking", "signature", "raw"]
"""``raw``: the JSON text of a delta of a type the canonical model does not know, for an
OpaquePart (kept for same-dialect pass-through)."""


@dataclass(slots=True)
class ResponseStart:
    id: str
    model: str
    created: int | None = None
    extensions: Extensions = field(default_factory=dict)


@dataclass(slots=True)
class PartStart:
    """A part begins.  ``part`` carries what is known at the start: a TextPart (usually empty
    text), a ToolCallPart with id and name (arguments usually ""), or a ThinkingPart."""

    index: int
    part: Part


@dataclass(slots=True)
class PartDelta:
    index: int
    kind: DeltaKind
    text: str


@dataclass(slots=True)
class PartEnd:
    index: int


@dataclass(slots=True)
class UsageUpdate:
    """Cumulative usage so far; a later UsageUpdate replaces an earlier one."""

    usage: Usage


@dataclass(slots=True)
class Finish:
    reason: FinishReason | None
    stop_sequence: str | None = None
    extensions: Extensions = field(default_factory=dict)


StreamEvent = ResponseStart | PartStart | PartDelta | PartEnd | UsageUpdate | Finish

CONTENT_EVENTS = (PartStart, PartDelta)
"""Events that commit a stream to the client (the commit point is the first of these)."""


def is_content(event: StreamEvent) -> bool:
    """True for the first event a client would see as content: any part start or delta."""
    return isinstance(event, CONTENT_EVENTS)


class Accumulator:
    """Folds stream events into a :class:`ChatResponse` (and so measures what was streamed)."""

    __slots__ = ("_parts", "_response", "_texts", "finished", "output_chars")

    def __init__(self) -> None:
        self._response = ChatResponse(id="", model="")
        self._parts: dict[int, Part] = {}
        self._texts: dict[int, list[str]] = {}
        """Deltas of a part's growing string (a text's or a thinking part's text, a tool call's
        arguments) not yet joined into it: joined once, in :meth:`result` (adding each to the
        string copies the whole of it every time: quadratic in a long answer's chunks)."""
        self.finished = False
        self.output_chars = 0

    def add(self, event: StreamEvent) -> None:
        r = self._response
        if isinstance(event, PartDelta):
            part = self._parts.get(event.index)
            if part is None:
                part = _empty_part_for(event.kind)
                self._parts[event.index] = part
            self.output_chars += len(event.text)
            kind = event.kind
            if (
                (kind == "text" and isinstance(part, TextPart))
                or (kind == "thinking" and isinstance(part, ThinkingPart))
                or (kind == "tool_args" and isinstance(part, ToolCallPart))
            ):
                pending = self._texts.get(event.index)
                if pending is None:
                    self._texts[event.index] = [event.text]
                else:
                    pending.append(event.text)
            elif event.kind == "signature" and isinstance(part, ThinkingPart):
                part.signature = (part.signature or "") + event.text
            elif event.kind == "raw" and isinstance(part, OpaquePart):
                part.deltas.append(event.text)
        elif isinstance(event, PartStart):
            if event.index in self._texts:
                self._join(event.index)  # (a part started again at an index: the old one's text)
            self._parts[event.index] = _copy_part(event.part)
        elif isinstance(event, ResponseStart):
            self._start(event)
        elif isinstance(event, UsageUpdate):
            r.usage = event.usage
        elif isinstance(event, Finish):
            self._finish(event)

    def _start(self, event: ResponseStart) -> None:
        r = self._response
        r.id, r.model, r.created = event.id, event.model, event.created
        for k, v in event.extensions.items():
            r.extensions.setdefault(k, {}).update(v)

    def _finish(self, event: Finish) -> None:
        r = self._response
        r.finish_reason = event.reason
        r.stop_sequence = event.stop_sequence
        for k, v in event.extensions.items():
            r.extensions.setdefault(k, {}).update(v)
        self.finished = True

    def add_all(self, events: list[StreamEvent]) -> bool:
        """:meth:`add` each event in order (one call for the events of a read); whether one of
        them is content (:func:`is_content`).  The events of a whole plain-text answer read at
        once (a stream parser's ``feed_all``: the start, one text part of one delta, its end,
        usage and the finish) are folded in one step, as :meth:`add` folds them one by one."""
        if len(events) == 6:
            rs, ps, pd, pe, uu, fin = events
            if (
                type(rs) is ResponseStart
                and type(ps) is PartStart
                and type(pd) is PartDelta
                and type(pe) is PartEnd
                and type(uu) is UsageUpdate
                and type(fin) is Finish
                and pd.index == ps.index
                and pd.kind == "text"
                and type(ps.part) is TextPart
                and ps.index not in self._texts
            ):
                self._start(rs)
                part = ps.part
                self._parts[ps.index] = TextPart(part.text + pd.text, dict(part.extensions))
                self.output_chars += len(pd.text)
                self._response.usage = uu.usage
                self._finish(fin)
                return True
        add = self.add
        content = False
        # A text delta right after a text delta of the same part (a read of a fast upstream
        # brings many): add() would find the same part and append to the same list of pending
        # texts; that list is kept here for the run.  Any other event ends the run.
        run_index = -1
        run: list[str] = []
        for e in events:
            if type(e) is PartDelta:
                if e.index == run_index and e.kind == "text":
                    run.append(e.text)
                    self.output_chars += len(e.text)
                    continue
                add(e)
                content = True
                pending = self._texts.get(e.index)
                if e.kind == "text" and isinstance(self._parts[e.index], TextPart) and pending is not None:
                    run_index, run = e.index, pending
                else:
                    run_index = -1
                continue
            run_index = -1
            add(e)
            if not content and is_content(e):
                content = True
        return content

    def _join(self, index: int) -> None:
        part = self._parts[index]
        joined = "".join(self._texts.pop(index))
        if isinstance(part, ToolCallPart):
            part.arguments += joined
        else:
            assert isinstance(part, TextPart | ThinkingPart)
            part.text += joined

    def result(self) -> ChatResponse:
        if self._texts:
            for index in list(self._texts):
                self._join(index)
        self._response.content = [self._parts[i] for i in sorted(self._parts)]
        return self._response


def _empty_part_for(kind: DeltaKind) -> Part:
    if kind == "tool_args":
        return ToolCallPart(id="", name="")
    if kind in ("thinking", "signature"):
        return ThinkingPart()
    return TextPart("")


def _copy_part(part: Part) -> Part:
    if isinstance(part, TextPart):
        return TextPart(part.text, dict(part.extensions))
    if isinstance(part, ToolCallPart):
        return ToolCallPart(part.id, part.name, part.arguments, dict(part.extensions))
    if isinstance(part, ThinkingPart):
        return ThinkingPart(part.text, part.signature, part.redacted, dict(part.extensions))
    if isinstance(part, OpaquePart):
        return OpaquePart(part.dialect, dict(part.data), list(part.deltas), dict(part.extensions))
    return part


def response_to_events(resp: ChatResponse) -> list[StreamEvent]:
    """A whole response as the event sequence a stream of it would give (used to replay a cached
    or non-streamed upstream answer to a streaming client)."""
    events: list[StreamEvent] = [ResponseStart(resp.id, resp.model, resp.created, resp.extensions)]
    for i, part in enumerate(resp.content):
        if isinstance(part, TextPart):
            events += [PartStart(i, TextPart("", part.extensions)), PartDelta(i, "text", part.text)]
        elif isinstance(part, ToolCallPart):
            events.append(PartStart(i, ToolCallPart(part.id, part.name, "", part.extensions)))
            if part.arguments:
                events.append(PartDelta(i, "tool_args", part.arguments))
        elif isinstance(part, ThinkingPart):
            events.append(PartStart(i, ThinkingPart("", None, part.redacted, part.extensions)))
            if part.text:
                events.append(PartDelta(i, "thinking", part.text))
            if part.signature:
                events.append(PartDelta(i, "signature", part.signature))
        elif isinstance(part, OpaquePart):
            events.append(PartStart(i, OpaquePart(part.dialect, part.data, [], part.extensions)))
            events += [PartDelta(i, "raw", d) for d in part.deltas]
        else:
            continue
        events.append(PartEnd(i))
    events.append(Finish(resp.finish_reason, resp.stop_sequence))
    if resp.usage is not None:
        events.append(UsageUpdate(resp.usage))
    return events
