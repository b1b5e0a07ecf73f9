"""The documented normalisations of the translation property tests (test-only).

``expect_<dialect>_request(req)`` is what ``req`` becomes after a trip through that dialect
(canonical -> adapter-built request -> parsed back), ``expect_<dialect>_response(resp)`` what a
response becomes after a trip through that dialect's response JSON.  Every rule here is an
intended, lossy point of the dialect, named in the comment next to it; a rule that would hide a
real loss (an id, an argument, a text or an image changed or dropped) does not belong here.
"""

from __future__ import annotations

import copy
import mimetypes
from typing import Any
from urllib.parse import urlparse

import orjson

from fareway.adapters import anthropic as anthropic_adapter
from fareway.adapters import gemini_stream as gemini_adapter_stream
from fareway.dialects.anthropic_blocks import sanitize_tool_id
from fareway.types import (
    ChatRequest,
    ChatResponse,
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
from fareway.wire import anthropic as anthropic_wire
from fareway.wire.base import ResponseMeta

from . import gemini_codec

META = ResponseMeta(request_id="req_prop")
GEMINI_MODEL = "gemini-2.5-flash"


def canon_args(args: str) -> str:
    """Tool-call arguments as compact JSON (``""`` -> ``"{}"``)."""
    return orjson.dumps(orjson.loads(args) if args.strip() else {}).decode()


def _strip(resp: ChatResponse) -> ChatResponse:
    """Drop the pass-through bags (response and usage extensions)."""
    out = copy.deepcopy(resp)
    out.extensions = {}
    if out.usage is not None:
        out.usage.extensions = {}
    return out


# ====================================================================== 1. request normalisation


def _openai_image(p: ImagePart) -> ImagePart:
    # Inline images travel as data: URLs; a missing media type is written as octet-stream.
    if p.data is not None:
        return ImagePart(data=p.data, media_type=p.media_type or "application/octet-stream", detail=p.detail)
    return ImagePart(url=p.url, detail=p.detail)


def expect_openai_request(req: ChatRequest) -> ChatRequest:
    r = copy.deepcopy(req)
    msgs: list[Message] = []
    for m in r.messages:
        if m.role == "system":
            msgs.append(Message("system", list(m.content), m.name))
        elif m.role == "user":
            parts = [_openai_image(p) if isinstance(p, ImagePart) else p for p in m.content]
            if parts:  # an empty user message is not sent
                msgs.append(Message("user", parts, m.name))
        elif m.role == "assistant":
            # OpenAI requests carry no reasoning (thinking is dropped from history); text comes
            # before tool calls; "" arguments are sent as "{}"; an empty turn is content "".
            texts: list[Part] = [p for p in m.content if isinstance(p, TextPart)]
            calls: list[Part] = [
                ToolCallPart(p.id, p.name, p.arguments if p.arguments.strip() else "{}")
                for p in m.content
                if isinstance(p, ToolCallPart)
            ]
            msgs.append(Message("assistant", (texts + calls) or [TextPart("")], m.name))
        else:
            # One `tool` message per result; its content is the joined text, an error marked by
            # an "Error: " prefix (OpenAI has no is_error); the result's name is not sent; images
            # move to a user message after the results (tool messages are text-only).
            images: list[Part] = []
            for res in m.content:
                assert isinstance(res, ToolResultPart)
                body = ("Error: " if res.is_error else "") + res.text()
                msgs.append(Message("tool", [ToolResultPart(res.tool_call_id, [TextPart(body)])]))
                images += [_openai_image(p) for p in res.content if isinstance(p, ImagePart)]
            if images:
                msgs.append(Message("user", images))
    r.messages = msgs
    r.top_k = None  # no top_k in the OpenAI dialect (reported as dropped)
    r.include_usage = r.stream  # the adapter always asks for usage when streaming
    r.extensions = (
        {"fareway": {"max_tokens_field": "max_completion_tokens"}} if r.max_tokens is not None else {}
    )
    r.headers = {}
    r.source_dialect = "openai"
    if r.thinking is not None:  # only reasoning_effort exists; budgets and "adaptive" do not
        eff = r.thinking.effort
        r.thinking = ThinkingConfig("disabled" if eff == "none" else "enabled", effort=eff) if eff else None
    rf = r.response_format
    if rf is not None and rf.type == "json_schema":
        rf.name, rf.schema = rf.name or "response", rf.schema or {}
    return r


def _anthropic_image(p: ImagePart) -> ImagePart:
    # `detail` does not exist; a missing media type is sent as image/png.
    if p.data is not None:
        return ImagePart(data=p.data, media_type=p.media_type or "image/png")
    return ImagePart(url=p.url)


def _anthropic_part(p: Part) -> Part | None:
    if isinstance(p, TextPart):
        return TextPart(p.text) if p.text else None  # Anthropic 400s on empty text blocks
    if isinstance(p, ImagePart):
        return _anthropic_image(p)
    if isinstance(p, ToolCallPart):
        # ids outside [a-zA-Z0-9_-] are rewritten (same rewrite for the call and its result);
        # arguments travel as a parsed object.
        return ToolCallPart(sanitize_tool_id(p.id), p.name, canon_args(p.arguments))
    if isinstance(p, ThinkingPart):
        if p.redacted is not None:
            return ThinkingPart(redacted=p.redacted)
        return ThinkingPart(p.text, p.signature) if p.signature else None  # unsigned: unverifiable
    if isinstance(p, ToolResultPart):
        if len(p.content) == 1 and isinstance(p.content[0], TextPart):
            content: list[Part] = [TextPart(p.content[0].text)]
        else:
            content = [q for q in map(_anthropic_part, p.content) if q is not None]
        return ToolResultPart(sanitize_tool_id(p.tool_call_id), content, p.is_error)  # no name
    raise AssertionError(p)


def expect_anthropic_request(req: ChatRequest) -> ChatRequest:
    r = copy.deepcopy(req)
    lead = next((i for i, m in enumerate(r.messages) if m.role != "system"), len(r.messages))
    inline = r.source_dialect == "anthropic"
    system: list[str] = []
    wire: list[tuple[Any, list[Part]]] = []
    for i, m in enumerate(r.messages):
        if m.role == "system" and (i < lead or not inline):
            # Leading system messages (and, for a non-Anthropic client, later ones) -> `system`.
            system += [p.text for p in m.content if isinstance(p, TextPart) and p.text]
            continue
        role = "user" if m.role == "tool" else m.role
        content: list[Part] = [q for q in map(_anthropic_part, m.content) if q is not None]
        if not content:
            continue  # a turn left empty is dropped
        if wire and wire[-1][0] == role:  # consecutive same-role turns merge
            prev = wire[-1][1]
            if m.role == "tool":  # tool_result blocks go first in the user turn
                at = next((k for k, b in enumerate(prev) if not isinstance(b, ToolResultPart)), len(prev))
                prev[at:at] = content
            else:
                prev.extend(content)
            continue
        wire.append((role, content))
    if r.response_format is not None and r.response_format.type == "json_object":
        system.append(anthropic_adapter.JSON_OBJECT_INSTRUCTION)  # no native field: an instruction
    msgs: list[Message] = []
    if system:  # a plain system prompt is one string, the blocks joined by newlines
        msgs.append(Message("system", [TextPart("\n".join(system))]))
    for role, content in wire:  # the inbound parser splits tool results out of a user turn
        results: list[Part] = [p for p in content if isinstance(p, ToolResultPart)]
        others: list[Part] = [p for p in content if not isinstance(p, ToolResultPart)]
        if results:
            msgs.append(Message("tool", results))
            if others:
                msgs.append(Message("user", others))
        else:
            msgs.append(Message(role, content))
    r.messages = msgs  # (names: Anthropic has no participant names)
    if not r.tools:
        r.tool_choice = None  # tool_choice without tools is dropped
    elif r.tool_choice is not None:
        tc = r.tool_choice
        r.tool_choice = ToolChoice(
            tc.mode, tc.name if tc.mode == "tool" else None, None if tc.mode == "none" else tc.parallel
        )
    max_tokens = r.max_tokens if r.max_tokens is not None else anthropic_adapter.DEFAULT_MAX_TOKENS
    ext: dict[str, Any] = {}
    th = r.thinking
    if th is not None:
        if th.type == "enabled":
            budget = th.budget_tokens
            if budget is None:
                budget = anthropic_adapter.EFFORT_BUDGET.get(th.effort or "medium", 4096)
            if r.max_tokens is None and max_tokens <= budget:
                max_tokens = budget + anthropic_adapter.DEFAULT_MAX_TOKENS
            r.thinking = ThinkingConfig("enabled", budget)
        elif th.type == "adaptive":
            r.thinking = ThinkingConfig("adaptive")
            if th.effort:  # effort travels in output_config, which the parser keeps as an extension
                ext["output_config"] = {"effort": th.effort}
        else:
            r.thinking = ThinkingConfig("disabled")
    r.max_tokens = max_tokens
    r.stop = [s for s in r.stop if s.strip()]  # whitespace-only stop sequences are rejected upstream
    if r.source_dialect != "anthropic" and r.temperature is not None and r.temperature > 1:
        r.temperature = 1.0  # OpenAI's 0..2 range is clamped to Anthropic's 0..1
    rf = r.response_format
    if rf is not None:  # only the schema travels (output_config.format); "text" is the default
        r.response_format = (
            ResponseFormat("json_schema", schema=rf.schema) if rf.type == "json_schema" else None
        )
    r.metadata = {}  # Anthropic metadata carries only user_id (= `user`)
    r.seed = None  # no seed (reported as dropped)
    r.n = None
    r.include_usage = True
    r.headers = {"anthropic-version": anthropic_adapter.DEFAULT_VERSION}
    r.source_dialect = "anthropic"
    r.extensions = {"anthropic": ext} if ext else {}
    return r


def _gemini_image(p: ImagePart) -> ImagePart:
    # inlineData / fileData: no `detail`; a file's mime type is guessed from its URL.
    if p.data is not None:
        return ImagePart(data=p.data, media_type=p.media_type or "application/octet-stream")
    return ImagePart(
        url=p.url, media_type=p.media_type or mimetypes.guess_type(urlparse(p.url or "").path)[0]
    )


def _gemini_result_text(res: ToolResultPart) -> str:
    # functionResponse.response is an object: a result that is a JSON object travels as that
    # object (so its text comes back compact), any other text as {"result"|"error": text}.
    text = res.text()
    if text.lstrip().startswith("{"):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(obj, dict):
            return orjson.dumps(obj).decode()
    return text


def expect_gemini_request(req: ChatRequest) -> ChatRequest:
    r = copy.deepcopy(req)
    system: list[Part] = []
    ids: dict[str, str] = {}  # Gemini-2.x calls have no ids: the decoder numbers them
    names: dict[str, str] = {}
    out: list[Message] = []
    prev_tool = False
    for m in r.messages:
        if m.role == "system":  # every system message -> systemInstruction
            system += m.content
            continue
        if m.role == "tool":
            results: list[Part] = []
            for res in m.content:
                assert isinstance(res, ToolResultPart)
                body: list[Part] = [TextPart(_gemini_result_text(res))]
                body += [_gemini_image(p) for p in res.content if isinstance(p, ImagePart)]
                results.append(
                    ToolResultPart(
                        ids[res.tool_call_id], body, res.is_error, res.name or names[res.tool_call_id]
                    )
                )
            if prev_tool:  # consecutive tool messages -> one content (one parallel batch)
                out[-1].content += results
            else:
                out.append(Message("tool", results))
            prev_tool = True
            continue
        prev_tool = False
        if m.role == "user":
            parts = [_gemini_image(p) if isinstance(p, ImagePart) else p for p in m.content]
            out.append(Message("user", parts or [TextPart("")]))
            continue
        # assistant: thought text is not sent back, only signatures, each on the next
        # text/functionCall part (of several consecutive signatures, all but the last go back on
        # empty text parts of their own); empty text is not sent; redacted (Anthropic-only)
        # thinking is dropped.
        parts = []
        pending: str | None = None
        for p in m.content:
            if isinstance(p, ThinkingPart):
                if p.signature:
                    if pending:
                        parts.append(ThinkingPart(signature=pending))
                    pending = p.signature
            elif isinstance(p, TextPart):
                if pending:
                    parts.append(ThinkingPart(signature=pending))
                if p.text:
                    parts.append(TextPart(p.text))
                pending = None
            elif isinstance(p, ToolCallPart):
                ids[p.id], names[p.id] = f"gcall_{len(ids)}", p.name
                if pending:
                    parts.append(ThinkingPart(signature=pending))
                parts.append(ToolCallPart(ids[p.id], p.name, canon_args(p.arguments)))
                pending = None
        if pending:
            parts.append(ThinkingPart(signature=pending))
        out.append(Message("assistant", parts or [TextPart("")]))
    if system:
        out.insert(0, Message("system", system))
    r.messages = out  # (names: Gemini has no participant names)
    r.tools = [ToolSpec(t.name, t.description, t.parameters) for t in r.tools]  # no `strict`
    if not r.tools:
        r.tool_choice = None
    elif r.tool_choice is not None:  # Gemini cannot forbid parallel calls (reported)
        r.tool_choice = ToolChoice(
            r.tool_choice.mode, r.tool_choice.name if r.tool_choice.mode == "tool" else None
        )
    rf = r.response_format
    if rf is not None:
        r.response_format = (
            None
            if rf.type == "text"
            else ResponseFormat("json_schema", schema=rf.schema)
            if rf.type == "json_schema"
            else ResponseFormat("json_object")
        )
    th = r.thinking
    if th is not None:
        if th.type == "disabled" or th.effort == "none":
            r.thinking = ThinkingConfig("disabled")
        elif th.budget_tokens is not None:
            r.thinking = ThinkingConfig("enabled", th.budget_tokens)
        elif th.effort:
            r.thinking = ThinkingConfig("enabled", effort="low" if th.effort == "minimal" else th.effort)
        else:
            r.thinking = ThinkingConfig(th.type)
    r.model = GEMINI_MODEL
    r.user = None  # reported as dropped
    r.metadata = {}
    r.include_usage = False
    r.headers = {}
    r.source_dialect = "gemini"
    r.extensions = {}
    return r


# ===================================================================== 2. response normalisation

_OPENAI_FINISH: dict[str | None, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "pause": "stop",
    "error": "stop",
    None: "stop",
    "length": "length",
    "context_window": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


def expect_openai_response(resp: ChatResponse) -> ChatResponse:
    """One message: all reasoning joined in ``reasoning_content`` (no signatures, no redacted
    data), all text joined in ``content``, then the tool calls; a few finish reasons collapse."""
    r = _strip(resp)
    reasoning = "".join(p.text for p in r.content if isinstance(p, ThinkingPart))
    text = "".join(p.text for p in r.content if isinstance(p, TextPart))
    content: list[Part] = []
    if reasoning:
        content.append(ThinkingPart(reasoning, extensions={"openai": {"field": "reasoning_content"}}))
    if text:
        content.append(TextPart(text))
    content += [ToolCallPart(p.id, p.name, p.arguments or "{}") for p in r.tool_calls()]
    r.content = content
    r.finish_reason = _OPENAI_FINISH[r.finish_reason]  # type: ignore[assignment]
    r.stop_sequence = None
    return r


def expect_anthropic_response(resp: ChatResponse) -> ChatResponse:
    """Blocks as they are; arguments as a parsed object; no reasoning-token count; the
    message id gets a ``msg_`` prefix; tool calls make a plain stop ``tool_use``."""
    r = _strip(resp)
    content: list[Part] = []
    for p in r.content:
        if isinstance(p, TextPart):
            content.append(TextPart(p.text))
        elif isinstance(p, ToolCallPart):
            content.append(ToolCallPart(p.id, p.name, canon_args(p.arguments)))
        elif isinstance(p, ThinkingPart):
            content.append(
                ThinkingPart(redacted=p.redacted)
                if p.redacted is not None
                else ThinkingPart(p.text, p.signature)
            )
    r.content = content
    if r.tool_calls() and r.finish_reason in (None, "stop"):
        r.finish_reason = "tool_calls"
    elif r.finish_reason in (None, "error"):
        r.finish_reason = "stop"
    if r.finish_reason != "stop_sequence":
        r.stop_sequence = None
    u = r.usage or Usage()
    r.usage = Usage(u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens)
    r.id = anthropic_wire.message_id(r.id, META)
    r.created = None
    return r


def expect_gemini_response(resp: ChatResponse, *, ids: bool = True) -> ChatResponse:
    """Gemini merges adjacent text parts, and adjacent thought parts until one is signed; has no
    cache-write count, no stop-sequence value and a coarse finishReason; gemini-2.x calls have no
    id (``ids=False``), so the adapter mints one."""
    r = _strip(resp)
    content: list[Part] = []
    open_kind: str | None = None
    calls = 0
    for p in r.content:
        if isinstance(p, ThinkingPart):
            if not p.text and not p.signature:
                continue
            if open_kind != "thinking":
                content.append(ThinkingPart(""))
                open_kind = "thinking"
            last = content[-1]
            assert isinstance(last, ThinkingPart)
            last.text += p.text
            if p.signature:
                last.signature, open_kind = p.signature, None
        elif isinstance(p, TextPart):
            if not p.text:
                continue
            if open_kind != "text":
                content.append(TextPart(""))
                open_kind = "text"
            last_text = content[-1]
            assert isinstance(last_text, TextPart)
            last_text.text += p.text
        elif isinstance(p, ToolCallPart):
            open_kind = None
            if ids:
                content.append(ToolCallPart(p.id, p.name, canon_args(p.arguments), {"gemini": {"id": p.id}}))
            else:
                call_id = gemini_adapter_stream.mint_call_id(r.id, calls, p.name)
                content.append(ToolCallPart(call_id, p.name, canon_args(p.arguments)))
            calls += 1
    r.content = content
    raw = gemini_codec.finish_reason(r.finish_reason)
    r.finish_reason = {"MAX_TOKENS": "length", "SAFETY": "content_filter"}.get(
        raw, "tool_calls" if calls else "stop"
    )  # type: ignore[assignment]
    r.stop_sequence = None
    if r.usage is not None:
        u = r.usage
        r.usage = Usage(u.input_tokens, u.output_tokens, u.cached_input_tokens, 0, u.reasoning_tokens)
    r.created = None
    return r


def expect_response(dialect: str, resp: ChatResponse, *, ids: bool = True) -> ChatResponse:
    if dialect == "openai":
        return expect_openai_response(resp)
    if dialect == "anthropic":
        return expect_anthropic_response(resp)
    return expect_gemini_response(resp, ids=ids)


EXPECT_REQUEST = {
    "openai": expect_openai_request,
    "anthropic": expect_anthropic_request,
    "gemini": expect_gemini_request,
}


def _expected_history(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the model turn looks like when sent back: thought summaries are not echoed (they only
    separate the texts around them); adjacent unsigned texts are one text; empty unsigned texts
    vanish; signatures and Gemini call ids stay on the part that carried them, except that the
    signature of an empty text part moves to the next unsigned text/functionCall part (the
    canonical model keeps a signature-only ThinkingPart, not which part carried it).  A signature
    is never lost: when another signed part comes first, it stays on its own empty text part."""
    out: list[dict[str, Any]] = []
    merge = False
    pending: str | None = None
    for p in parts:
        if p.get("thought"):
            merge = False
            continue
        sig = p.get("thoughtSignature")
        if pending and sig:
            out.append({"text": "", "thoughtSignature": pending})
            pending = None
        if "functionCall" in p:
            q = dict(p)
            if pending:
                q["thoughtSignature"] = pending
            out.append(q)
            merge, pending = False, None
            continue
        if sig and not p["text"]:
            merge, pending = False, sig
        elif p["text"] and (sig or pending):
            out.append({"text": p["text"], "thoughtSignature": sig or pending})
            merge, pending = True, None
        elif p["text"]:
            if merge:
                out[-1]["text"] += p["text"]
            else:
                out.append({"text": p["text"]})
            merge = True
    if pending:
        out.append({"text": "", "thoughtSignature": pending})
    return out or [{"text": ""}]
