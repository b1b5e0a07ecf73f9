"""Gemini response chunks -> canonical stream events (used for streams *and* whole responses).

A ``GenerateContentResponse`` is processed the same way whether it is one chunk of a stream or a
whole non-streamed body, so both paths give the same parts, ids and signatures:

* ``text`` parts extend the open text part; ``thought: true`` text parts extend the open
  thinking part.
* A ``thoughtSignature`` on a non-thought part (text or functionCall) is the signature of the
  model's reasoning up to that part.  It becomes a ``signature`` delta on the open thinking part
  (closing it), or, with no thinking part open, a signature-only :class:`ThinkingPart` emitted just
  before that part.  A functionCall's signature is also kept in the ToolCallPart's
  ``extensions["gemini"]["thoughtSignature"]``.  The adapter's request builder reverses this: a
  signed ThinkingPart's signature goes back on the next text/functionCall part of the turn.
* ``functionCall`` parts arrive whole: PartStart(ToolCallPart) + one ``tool_args`` delta + PartEnd.
  gemini-2.x gives no call id, so one is minted from the response id, call ordinal and name
  (stable across stream and non-stream parses of the same response).  A Gemini-issued id is kept
  and flagged in ``extensions["gemini"]["id"]``.
* Other part kinds (inlineData output, executableCode, ...) become :class:`OpaquePart`.
* ``usageMetadata`` is cumulative per chunk; the latest one is emitted when it changes.

Streams come in two framings: ``?alt=sse`` (``data: {...}\\r\\n\\r\\n``) and, without ``alt=sse``, a
JSON array streamed element by element (``[{...}\\n,\\r\\n{...}]``); the first non-space byte tells
them apart.  There is no ``[DONE]``: a stream that ends without a ``finishReason`` is truncated.
"""

from __future__ import annotations

import codecs
import hashlib
from typing import Any

import orjson

from fareway.adapters.gemini_errors import classify, error_object
from fareway.errors import UpstreamConnectionError, UpstreamServerError
from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.sse import SseParser
from fareway.types import FinishReason, OpaquePart, TextPart, ThinkingPart, ToolCallPart, Upstream, Usage

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def map_finish(raw: str, saw_function_call: bool) -> FinishReason:
    """Gemini ``finishReason`` -> canonical (WIRE.md 1e).  Unknown values are ``stop``; the raw
    value is always kept in the Finish extensions by the caller."""
    if raw == "STOP":
        return "tool_calls" if saw_function_call else "stop"
    if raw == "MAX_TOKENS":
        return "length"
    if raw in _CONTENT_FILTER:
        return "content_filter"
    return "stop"


def map_usage(meta: dict[str, Any]) -> Usage:
    """``usageMetadata`` -> Usage.  promptTokenCount already includes cachedContentTokenCount;
    candidatesTokenCount excludes thoughts, so output = candidates + thoughts."""
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    extras = {
        k: v
        for k, v in meta.items()
        if k
        not in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount")
    }
    return Usage(
        input_tokens=prompt,
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
        extensions={"gemini": extras} if extras else {},
    )


def mint_call_id(response_id: str, ordinal: int, name: str) -> str:
    """A deterministic tool-call id for a Gemini call that has none."""
    digest = hashlib.sha256(f"{response_id}\x00{ordinal}\x00{name}".encode()).hexdigest()
    return "call_" + digest[:24]


class ChunkProcessor:
    """Turns successive GenerateContentResponse objects into canonical events."""

    def __init__(self, up: Upstream, candidate: int = 0) -> None:
        self._up = up
        self._candidate = candidate
        self._started = False
        self._next_index = 0
        self._open_index: int | None = None
        self._open_kind: str | None = None  # "text" | "thinking"
        self._calls = 0
        self._last_usage: dict[str, Any] | None = None
        self.response_id = ""
        self.finished = False
        self.other_candidates: set[int] = set()
        """Indices of the candidates seen other than this processor's (``candidateCount`` > 1)."""

    # ------------------------------------------------------------------ part bookkeeping

    def _close(self, out: list[StreamEvent]) -> None:
        if self._open_index is not None:
            out.append(PartEnd(self._open_index))
        self._open_index = None
        self._open_kind = None

    def _open(self, kind: str, part: TextPart | ThinkingPart, out: list[StreamEvent]) -> int:
        self._close(out)
        index = self._next_index
        self._next_index += 1
        out.append(PartStart(index, part))
        self._open_index, self._open_kind = index, kind
        return index

    def _whole(self, part: ToolCallPart | OpaquePart, args: str | None, out: list[StreamEvent]) -> None:
        self._close(out)
        index = self._next_index
        self._next_index += 1
        out.append(PartStart(index, part))
        if args is not None:
            out.append(PartDelta(index, "tool_args", args))
        out.append(PartEnd(index))

    def _sign(self, signature: str, out: list[StreamEvent]) -> None:
        """Attach the reasoning signature that precedes the part about to be emitted."""
        if self._open_kind == "thinking" and self._open_index is not None:
            out.append(PartDelta(self._open_index, "signature", signature))
            self._close(out)
            return
        index = self._open("thinking", ThinkingPart(""), out)
        out.append(PartDelta(index, "signature", signature))
        self._close(out)

    # ------------------------------------------------------------------ chunks

    def process(self, chunk: Any) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not isinstance(chunk, dict):
            raise UpstreamServerError(
                f"gemini sent a non-object chunk: {str(chunk)[:200]}", provider=self._up.provider
            )
        if error_object(chunk) is not None:
            raise classify(0, {}, orjson.dumps(chunk), provider=self._up.provider, payload=chunk)
        if not self._started:
            self._started = True
            self.response_id = str(chunk.get("responseId") or "")
            out.append(ResponseStart(self.response_id, str(chunk.get("modelVersion") or self._up.model)))
        candidates = chunk.get("candidates") or []
        finish_raw: str | None = None
        finish_ext: dict[str, Any] = {}
        # With candidateCount > 1 a chunk may carry any candidate; this processor follows one
        # (candidate 0 for the canonical response) and notes the indices of the others.
        cand = None
        for c in candidates:
            if not isinstance(c, dict):
                continue
            index = c.get("index", 0)
            if index == self._candidate and cand is None:
                cand = c
            elif isinstance(index, int):
                self.other_candidates.add(index)
        if cand is not None:
            for part in (cand.get("content") or {}).get("parts") or []:
                self._part(part, out)
            if cand.get("finishReason"):
                finish_raw = str(cand["finishReason"])
                finish_ext = {
                    k: cand[k] for k in ("finishReason", "finishMessage", "safetyRatings") if k in cand
                }
        elif not candidates:
            feedback = chunk.get("promptFeedback") or {}
            if feedback.get("blockReason"):
                finish_raw = "PROMPT_BLOCKED"
                finish_ext = {"promptFeedback": feedback}
        meta = chunk.get("usageMetadata")
        if isinstance(meta, dict) and meta != self._last_usage:
            self._last_usage = meta
            out.append(UsageUpdate(map_usage(meta)))
        if finish_raw is not None and not self.finished:
            self._close(out)
            self.finished = True
            reason: FinishReason = (
                "content_filter"
                if finish_raw == "PROMPT_BLOCKED"
                else map_finish(finish_raw, self._calls > 0)
            )
            out.append(Finish(reason, extensions={"gemini": finish_ext}))
        return out

    def _part(self, part: dict[str, Any], out: list[StreamEvent]) -> None:
        signature = part.get("thoughtSignature")
        if "functionCall" in part:
            call = part["functionCall"] or {}
            name = str(call.get("name") or "")
            ext: dict[str, Any] = {}
            if call.get("id"):
                call_id = str(call["id"])
                ext["id"] = call_id
            else:
                # a call id minted for another candidate must not repeat candidate 0's
                key = f"{self.response_id}:{self._candidate}" if self._candidate else self.response_id
                call_id = mint_call_id(key, self._calls, name)
            self._calls += 1
            if signature:
                ext["thoughtSignature"] = signature
                self._sign(signature, out)
            args = call.get("args")
            self._whole(
                ToolCallPart(call_id, name, "", {"gemini": ext} if ext else {}),
                orjson.dumps(args if args is not None else {}).decode(),
                out,
            )
            return
        if "text" in part:
            text = str(part.get("text") or "")
            if part.get("thought"):
                if self._open_kind != "thinking":
                    self._open("thinking", ThinkingPart(""), out)
                assert self._open_index is not None
                if text:
                    out.append(PartDelta(self._open_index, "thinking", text))
                if signature:
                    out.append(PartDelta(self._open_index, "signature", signature))
                    self._close(out)
                return
            if signature:
                self._sign(signature, out)
            if not text:
                return
            if self._open_kind != "text":
                self._open("text", TextPart(""), out)
            assert self._open_index is not None
            out.append(PartDelta(self._open_index, "text", text))
            return
        if signature:
            self._sign(signature, out)
        data = {k: v for k, v in part.items() if k != "thoughtSignature"}
        self._whole(OpaquePart("gemini", data), None, out)


class _JsonObjects:
    """Incremental splitter for a streamed JSON array (or a bare object): yields each complete
    top-level object's bytes as soon as its closing brace arrives."""

    __slots__ = ("_buf", "_depth", "_esc", "_pos", "_start", "_str")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._start = -1
        self._depth = 0
        self._str = False
        self._esc = False

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        out: list[bytes] = []
        buf = self._buf
        i = self._pos
        n = len(buf)
        while i < n:
            c = buf[i]
            if self._str:
                if self._esc:
                    self._esc = False
                elif c == 0x5C:  # backslash
                    self._esc = True
                elif c == 0x22:
                    self._str = False
            elif c == 0x22:
                self._str = True
            elif c == 0x7B:  # {
                if self._depth == 0:
                    self._start = i
                self._depth += 1
            elif c == 0x7D:  # }
                self._depth -= 1
                if self._depth == 0:
                    out.append(bytes(buf[self._start : i + 1]))
                    self._start = -1
            i += 1
        if self._depth == 0:
            del buf[:n]
            self._pos = 0
        else:
            del buf[: self._start]
            self._pos = n - self._start
            self._start = 0
        return out

    def pending(self) -> bool:
        """True if an object was started and not finished."""
        return self._depth > 0 or self._str


class GeminiStreamParser:
    """StreamParser for ``streamGenerateContent`` bodies (SSE or streamed JSON array)."""

    def __init__(self, up: Upstream) -> None:
        self._proc = ChunkProcessor(up)
        self._up = up
        self._mode: str | None = None  # "sse" | "json"
        self._sse = SseParser()
        # SseParser decodes each chunk on its own; decode here so a UTF-8 character split across
        # two network reads survives.
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._json = _JsonObjects()

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        """More of the body, for a consumer that folds the events: the events of :meth:`feed`."""
        return self.feed(chunk)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self._mode is None:
            stripped = chunk.lstrip()
            if not stripped:
                return []
            self._mode = "json" if stripped[:1] in (b"[", b"{") else "sse"
        if self._mode == "json":
            return self._objects(self._json.feed(chunk))
        return self._objects([e.data.encode() for e in self._sse.feed(self._utf8.decode(chunk))])

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._mode == "sse":
            tail = self._utf8.decode(b"", final=True)
            events = (self._sse.feed(tail) if tail else []) + self._sse.close()
            out = self._objects([e.data.encode() for e in events])
        if not self._proc.finished or (self._mode == "json" and self._json.pending()):
            raise UpstreamConnectionError(
                "the gemini stream ended before a finishReason (truncated)", provider=self._up.provider
            )
        return out

    def _objects(self, raws: list[bytes]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for raw in raws:
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise UpstreamServerError(
                    f"gemini sent a chunk that is not JSON: {raw[:200]!r}", provider=self._up.provider
                ) from exc
            out += self._proc.process(obj)
        return out
