"""What the cache stores for one answer, and its byte form (the same in every store).

An :class:`Entry` holds the committed answer as the canonical stream events it came as — so a
streamed replay has the original's chunks (one SSE event per original delta), text, reasoning and
thinking blocks with their signatures, tool calls and the usage — plus who made it, what it cost
then, and when it was stored and expires.  A non-streamed replay folds the same events into one
response (once per entry object: the memory store keeps the object).

An answer that arrived whole (a non-streamed upstream call) has one delta per part; its long
deltas are cut into word-sized pieces when the entry is made, so a streamed replay of it is a
stream of many chunks, never one.

Byte form: one JSON object (orjson), ``{"v": 1, "at", "exp", "provider", "model", "cost",
"events": [...]}``, each event a short array tagged ``s`` (start), ``p`` (part start), ``d``
(delta), ``e`` (part end), ``u`` (usage), ``f`` (finish).  Parts and usage are their dataclass
fields as JSON, so a field added to them later is stored too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fareway.events import (
    Accumulator,
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.types import (
    ChatResponse,
    ImagePart,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
)

FORMAT = 1
PIECE = 24
"""Characters a replayed piece of a whole-answer delta aims at (about what a provider streams)."""
_LONG = 2 * PIECE

_PART_TYPES: dict[str, type[Any]] = {
    "text": TextPart,
    "tool_call": ToolCallPart,
    "thinking": ThinkingPart,
    "opaque": OpaquePart,
    "image": ImagePart,
}


class BadEntry(ValueError):
    """Bytes that are not an entry of this format (read as a miss)."""


@dataclass(slots=True, eq=False)
class Entry:
    events: list[StreamEvent]
    stored_at: float
    expires_at: float
    provider: str
    model: str
    cost_usd: str | None
    """What the answer cost when it was made (decimal string), None when its price is unknown."""
    _response: ChatResponse | None = field(default=None, repr=False)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def age(self, now: float) -> int:
        """Whole seconds since the entry was stored (the ``age`` header)."""
        return max(0, int(now - self.stored_at))

    def response(self) -> ChatResponse:
        """The answer as one response (folded once, then kept; callers must not change it)."""
        if self._response is None:
            acc = Accumulator()
            for e in self.events:
                acc.add(e)
            self._response = acc.result()
        return self._response

    # ------------------------------------------------------------------ bytes

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": FORMAT,
                "at": self.stored_at,
                "exp": self.expires_at,
                "provider": self.provider,
                "model": self.model,
                "cost": self.cost_usd,
                "events": [_event_obj(e) for e in self.events],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        try:
            obj = orjson.loads(data)
            if not isinstance(obj, dict) or obj.get("v") != FORMAT:
                raise BadEntry("not an entry of this format")
            return cls(
                events=[_event(x) for x in obj["events"]],
                stored_at=float(obj["at"]),
                expires_at=float(obj["exp"]),
                provider=str(obj["provider"]),
                model=str(obj["model"]),
                cost_usd=None if obj["cost"] is None else str(obj["cost"]),
            )
        except BadEntry:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadEntry(f"unreadable entry: {type(exc).__name__}: {exc}") from None


def _event_obj(e: StreamEvent) -> list[Any]:
    if isinstance(e, PartDelta):
        return ["d", e.index, e.kind, e.text]
    if isinstance(e, PartStart):
        return ["p", e.index, e.part]
    if isinstance(e, PartEnd):
        return ["e", e.index]
    if isinstance(e, ResponseStart):
        return ["s", e.id, e.model, e.created, e.extensions]
    if isinstance(e, UsageUpdate):
        return ["u", e.usage]
    return ["f", e.reason, e.stop_sequence, e.extensions]


def _part(obj: dict[str, Any]) -> Part:
    kind = obj.get("kind")
    cls = _PART_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadEntry(f"unknown part kind {kind!r}")
    part: Part = cls(**obj)
    return part


def _event(x: list[Any]) -> StreamEvent:
    tag = x[0]
    if tag == "d":
        return PartDelta(int(x[1]), x[2], str(x[3]))
    if tag == "p":
        return PartStart(int(x[1]), _part(x[2]))
    if tag == "e":
        return PartEnd(int(x[1]))
    if tag == "s":
        return ResponseStart(str(x[1]), str(x[2]), x[3], dict(x[4]))
    if tag == "u":
        return UsageUpdate(Usage(**x[1]))
    if tag == "f":
        return Finish(x[1], x[2], dict(x[3]))
    raise BadEntry(f"unknown event tag {tag!r}")


# ------------------------------------------------------------------------------ making one


def _pieces(text: str) -> list[str]:
    """``text`` cut after whitespace into pieces of about PIECE characters (raw cuts when a run
    has no whitespace, as tool arguments stream)."""
    out: list[str] = []
    start, n = 0, len(text)
    while n - start > PIECE:
        cut = text.find(" ", start + PIECE // 2, start + 2 * PIECE)
        end = cut + 1 if cut != -1 else start + PIECE
        out.append(text[start:end])
        start = end
    if start < n:
        out.append(text[start:])
    return out


def rechunk(events: Iterable[StreamEvent]) -> list[StreamEvent]:
    """The events with long text, thinking and tool-argument deltas cut into pieces (an answer
    that arrived whole); deltas that are already stream-sized are kept as they are."""
    out: list[StreamEvent] = []
    for e in events:
        if isinstance(e, PartDelta) and e.kind in ("text", "thinking", "tool_args") and len(e.text) > _LONG:
            out += [PartDelta(e.index, e.kind, p) for p in _pieces(e.text)]
        else:
            out.append(e)
    return out


__all__ = ["FORMAT", "BadEntry", "Entry", "rechunk"]
