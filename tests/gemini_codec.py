"""Test-only Gemini codec: the other half of ``fareway.adapters.gemini``.

Fareway has no inbound Gemini dialect, so the property tests need a small decoder of the Gemini
request JSON (to check canonical -> Gemini -> canonical) and an encoder of Gemini responses, whole
and as ``streamGenerateContent?alt=sse`` frames (to check Gemini -> canonical).  This module is
that, and nothing in ``src`` may import it.

Decoding rules (the inverse of the adapter's builder, as Gemini itself reads the wire):

* ``systemInstruction.parts`` -> one leading ``system`` message.
* A ``user`` content holding ``functionResponse`` parts -> a ``tool`` message; an ``inlineData`` /
  ``fileData`` part after a ``functionResponse`` belongs to that result.  Other ``user`` contents ->
  ``user`` messages; ``model`` -> ``assistant``.
* Gemini has no call ids (gemini-2.x): every ``functionCall`` gets ``gcall_<n>`` (n counts calls in
  the conversation) unless it carries an ``id``; a ``functionResponse`` answers the earliest
  unanswered call with its name (or its ``id`` when it has one).
* ``response`` ``{"result": text}`` -> that text; ``{"error": x}`` -> an error result; any other
  object -> its compact JSON text.
* A part's ``thoughtSignature`` -> a signature-only ``ThinkingPart`` just before the part (as the
  adapter's response parser reads it); an empty text that only carries a signature gives no
  TextPart.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import orjson

from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.types import (
    ChatRequest,
    ChatResponse,
    HttpRequest,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ThinkingPart,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    ToolSpec,
    Usage,
)

# ------------------------------------------------------------------------------ request decode


def _image(part: dict[str, Any]) -> ImagePart:
    if "inlineData" in part:
        d = part["inlineData"]
        return ImagePart(data=d["data"], media_type=d.get("mimeType"))
    f = part["fileData"]
    return ImagePart(url=f["fileUri"], media_type=f.get("mimeType"))


def _result_content(response: Any) -> tuple[str, bool]:
    if isinstance(response, dict) and set(response) == {"result"} and isinstance(response["result"], str):
        return response["result"], False
    if isinstance(response, dict) and set(response) == {"error"}:
        err = response["error"]
        return (err if isinstance(err, str) else orjson.dumps(err).decode()), True
    return orjson.dumps(response).decode(), False


class _Calls:
    def __init__(self) -> None:
        self.n = 0
        self.open: list[tuple[str, str]] = []  # (id, name) not yet answered

    def call(self, fc: dict[str, Any]) -> str:
        call_id = fc.get("id") or f"gcall_{self.n}"
        self.n += 1
        self.open.append((call_id, fc["name"]))
        return str(call_id)

    def answer(self, fr: dict[str, Any]) -> str:
        for k, (cid, name) in enumerate(self.open):
            if (fr.get("id") and cid == fr["id"]) or (not fr.get("id") and name == fr["name"]):
                del self.open[k]
                return cid
        raise AssertionError(f"functionResponse {fr!r} answers no open functionCall")


def _contents(contents: list[dict[str, Any]]) -> list[Message]:
    calls = _Calls()
    out: list[Message] = []
    for content in contents:
        role = content["role"]
        parts: list[Part] = []
        if role == "model":
            for p in content["parts"]:
                if "thoughtSignature" in p:
                    parts.append(ThinkingPart(signature=p["thoughtSignature"]))
                if "functionCall" in p:
                    fc = p["functionCall"]
                    parts.append(
                        ToolCallPart(calls.call(fc), fc["name"], orjson.dumps(fc.get("args", {})).decode())
                    )
                elif "text" in p:
                    if p["text"] or "thoughtSignature" not in p:
                        parts.append(TextPart(p["text"]))
                else:
                    parts.append(_image(p))
            out.append(Message("assistant", parts))
            continue
        assert role == "user", role
        if any("functionResponse" in p for p in content["parts"]):
            last: ToolResultPart | None = None
            for p in content["parts"]:
                if "functionResponse" in p:
                    fr = p["functionResponse"]
                    body, is_error = _result_content(fr["response"])
                    last = ToolResultPart(calls.answer(fr), [TextPart(body)], is_error, fr["name"])
                    parts.append(last)
                elif last is not None and ("inlineData" in p or "fileData" in p):
                    last.content.append(_image(p))
                else:
                    raise AssertionError(f"unexpected part in a tool-result content: {p!r}")
            out.append(Message("tool", parts))
            continue
        for p in content["parts"]:
            parts.append(TextPart(p["text"]) if "text" in p else _image(p))
        out.append(Message("user", parts))
    return out


def _thinking(cfg: dict[str, Any] | None) -> ThinkingConfig | None:
    if cfg is None:
        return None
    if cfg.get("thinkingBudget") == 0:
        return ThinkingConfig("disabled")
    if cfg.get("thinkingBudget") == -1:
        return ThinkingConfig("adaptive")
    if "thinkingLevel" in cfg:
        return ThinkingConfig("enabled", effort=cfg["thinkingLevel"])
    return ThinkingConfig("enabled", cfg.get("thinkingBudget"))


def decode_request(http: HttpRequest) -> ChatRequest:
    """The canonical request a Gemini ``generateContent`` HTTP request expresses."""
    body = orjson.loads(http.body)
    path = urlparse(http.url).path
    resource, _, method = path.rpartition(":")
    model = resource.split("/models/", 1)[1]
    messages: list[Message] = []
    if "systemInstruction" in body:
        messages.append(Message("system", [TextPart(p["text"]) for p in body["systemInstruction"]["parts"]]))
    messages += _contents(body["contents"])
    req = ChatRequest(model=model, messages=messages, stream=method == "streamGenerateContent")
    req.source_dialect = "gemini"
    for tools in body.get("tools", []):
        for decl in tools["functionDeclarations"]:
            req.tools.append(ToolSpec(decl["name"], decl.get("description"), decl["parameters"]))
    fcc = body.get("toolConfig", {}).get("functionCallingConfig")
    if fcc is not None:
        allowed = fcc.get("allowedFunctionNames")
        if fcc["mode"] == "ANY" and allowed and len(allowed) == 1:
            req.tool_choice = ToolChoice("tool", allowed[0])
        else:
            req.tool_choice = ToolChoice({"AUTO": "auto", "ANY": "required", "NONE": "none"}[fcc["mode"]])  # type: ignore[arg-type]
    cfg = body.get("generationConfig", {})
    req.temperature = cfg.get("temperature")
    req.top_p = cfg.get("topP")
    req.top_k = cfg.get("topK")
    req.max_tokens = cfg.get("maxOutputTokens")
    req.n = cfg.get("candidateCount")
    req.seed = cfg.get("seed")
    req.stop = list(cfg.get("stopSequences", []))
    if cfg.get("responseMimeType") == "application/json":
        schema = cfg.get("responseJsonSchema")
        req.response_format = (
            ResponseFormat("json_schema", schema=schema)
            if schema is not None
            else ResponseFormat("json_object")
        )
    req.thinking = _thinking(cfg.get("thinkingConfig"))
    return req


# ----------------------------------------------------------------------------- response encode

_FINISH = {"length": "MAX_TOKENS", "context_window": "MAX_TOKENS", "content_filter": "SAFETY"}


def finish_reason(reason: str | None) -> str:
    return _FINISH.get(reason or "stop", "STOP")


def usage_metadata(u: Usage) -> dict[str, Any]:
    """Gemini counts thoughts apart from candidates; promptTokenCount includes cached tokens."""
    meta: dict[str, Any] = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.reasoning_tokens:
        meta["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_input_tokens:
        meta["cachedContentTokenCount"] = u.cached_input_tokens
    return meta


def _call(part: ToolCallPart, *, ids: bool) -> dict[str, Any]:
    call: dict[str, Any] = {"name": part.name, "args": part.parsed_arguments()}
    if ids:
        call["id"] = part.id
    return {"functionCall": call}


def _thought(part: ThinkingPart) -> dict[str, Any] | None:
    if not part.text and not part.signature:
        return None  # Gemini never sends an empty thought
    out: dict[str, Any] = {"text": part.text, "thought": True}
    if part.signature:
        out["thoughtSignature"] = part.signature
    return out


def _chunk(resp_id: str, model: str, parts: list[dict[str, Any]], **cand: Any) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0, **cand}],
        "modelVersion": model,
        "responseId": resp_id,
    }


def encode_response(resp: ChatResponse, *, ids: bool = True) -> bytes:
    """A whole ``generateContent`` response.  ``ids=False``: gemini-2.x style calls without ids."""
    parts: list[dict[str, Any]] = []
    for p in resp.content:
        if isinstance(p, TextPart) and p.text:
            parts.append({"text": p.text})
        elif isinstance(p, ThinkingPart) and (t := _thought(p)) is not None:
            parts.append(t)
        elif isinstance(p, ToolCallPart):
            parts.append(_call(p, ids=ids))
    out = _chunk(resp.id, resp.model, parts, finishReason=finish_reason(resp.finish_reason))
    if resp.usage is not None:
        out["usageMetadata"] = usage_metadata(resp.usage)
    return orjson.dumps(out)


class GeminiSseEncoder:
    """Canonical stream events -> ``streamGenerateContent?alt=sse`` frames (CRLF-terminated, as
    Gemini sends them): one chunk per text/thinking delta, a functionCall whole at its PartEnd,
    the finishReason and usageMetadata on a last chunk with no parts."""

    def __init__(self, *, ids: bool = True) -> None:
        self.ids = ids
        self.resp_id = ""
        self.model = ""
        self.parts: dict[int, Part] = {}
        self.args: dict[int, str] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None

    def _frame(self, parts: list[dict[str, Any]], **cand: Any) -> bytes:
        chunk = _chunk(self.resp_id, self.model, parts, **cand)
        if "finishReason" in cand and self.usage is not None:
            chunk["usageMetadata"] = usage_metadata(self.usage)
        return b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"

    def encode(self, ev: StreamEvent) -> bytes:
        if isinstance(ev, ResponseStart):
            self.resp_id, self.model = ev.id, ev.model
        elif isinstance(ev, PartStart):
            self.parts[ev.index] = ev.part
            self.args[ev.index] = ev.part.arguments if isinstance(ev.part, ToolCallPart) else ""
        elif isinstance(ev, PartDelta):
            part = self.parts[ev.index]
            if ev.kind == "text" and ev.text:
                return self._frame([{"text": ev.text}])
            if ev.kind == "thinking" and ev.text:
                return self._frame([{"text": ev.text, "thought": True}])
            if ev.kind == "signature" and isinstance(part, ThinkingPart):
                return self._frame([{"text": "", "thought": True, "thoughtSignature": ev.text}])
            if ev.kind == "tool_args":
                self.args[ev.index] += ev.text
        elif isinstance(ev, PartEnd):
            part = self.parts[ev.index]
            if isinstance(part, ToolCallPart):
                call = ToolCallPart(part.id, part.name, self.args[ev.index])
                return self._frame([_call(call, ids=self.ids)])
        elif isinstance(ev, Finish):
            self.finish = finish_reason(ev.reason)
        elif isinstance(ev, UsageUpdate):
            self.usage = ev.usage
        return b""

    def close(self) -> bytes:
        return self._frame([], finishReason=self.finish or "STOP")


def encode_stream(events: list[StreamEvent], *, ids: bool = True) -> bytes:
    enc = GeminiSseEncoder(ids=ids)
    return b"".join(enc.encode(ev) for ev in events) + enc.close()
