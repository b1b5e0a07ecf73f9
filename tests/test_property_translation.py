"""Property tests: lossless translation between the canonical model and every dialect.

For each dialect D in {openai, anthropic, gemini}:

1. requests:  canonical -> ``adapters/D.build_request`` -> parsed back (the inbound wire of D, or
   ``gemini_codec.decode_request``) == ``expect_<D>_request(canonical)``;
2. responses: canonical -> D response JSON (``wire/D.encode_response``, or
   ``gemini_codec.encode_response``) -> ``adapters/D.parse_response`` == ``expect_<D>_response``;
3. streams:   canonical -> events -> D SSE bytes -> split anywhere -> ``adapters/D.stream_parser`` ->
   Accumulator == the non-streamed parse of (2.);
4. cross-dialect: an OpenAI client's request sent to each upstream dialect, and each upstream's
   answer shown to an OpenAI (and an Anthropic) client, keep every tool call id/name/arguments,
   tool result and text.

The ``expect_*`` functions are the documented normalisation: each rule is an intended lossy point of
that dialect (named in its comment).  A rule that would hide a real loss (an id, an argument, a
text or an image changed or dropped) does not belong there; such cases are xfail tests below.

Two bags are ignored in comparisons (``_strip``): ``ChatResponse.extensions`` and
``Usage.extensions`` — per-dialect pass-through of wire fields, not part of the translation.
"""

from __future__ import annotations

import copy
import dataclasses
import mimetypes
from typing import Any
from urllib.parse import urlparse

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.adapters import anthropic as anthropic_adapter
from fareway.adapters import gemini as gemini_adapter
from fareway.adapters import gemini_stream as gemini_adapter_stream
from fareway.adapters import openai_chat as openai_adapter
from fareway.dialects.anthropic_blocks import sanitize_tool_id
from fareway.errors import BadRequest
from fareway.events import Accumulator, response_to_events
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
    Upstream,
    Usage,
)
from fareway.wire import anthropic as anthropic_wire
from fareway.wire import openai_chat as openai_wire
from fareway.wire.base import ResponseMeta

from . import gemini_codec
from .strategies import chat_request, chat_response, cut_points, split

SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
META = ResponseMeta(request_id="req_prop")
GEMINI_MODEL = "gemini-2.5-flash"

ADAPTERS = {
    "openai": openai_adapter.ADAPTER,
    "anthropic": anthropic_adapter.ADAPTER,
    "gemini": gemini_adapter.ADAPTER,
}


def upstream(dialect: str, model: str = "up-model") -> Upstream:
    return Upstream(provider=dialect, dialect=dialect, base_url=f"https://{dialect}.test/v1", model=model)  # type: ignore[arg-type]


def client_request(dialect: str, *, stream: bool = True) -> ChatRequest:
    return ChatRequest(model="client-model", messages=[], stream=stream, include_usage=True, source_dialect=dialect)  # type: ignore[arg-type]


def view(obj: Any) -> Any:
    """A dataclass as plain dicts, so pytest shows a readable diff."""
    return dataclasses.asdict(obj)


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
    r.extensions = {"fareway": {"max_tokens_field": "max_completion_tokens"}} if r.max_tokens is not None else {}
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
    wire: list[tuple[str, list[Part]]] = []
    for i, m in enumerate(r.messages):
        if m.role == "system" and (i < lead or not inline):
            # Leading system messages (and, for a non-Anthropic client, later ones) -> `system`.
            system += [p.text for p in m.content if isinstance(p, TextPart) and p.text]
            continue
        role = "user" if m.role == "tool" else m.role
        content = [q for q in map(_anthropic_part, m.content) if q is not None]
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
    msgs: list[Message] = []
    if system:  # a plain system prompt is one string, the blocks joined by newlines
        msgs.append(Message("system", [TextPart("\n".join(system))]))
    for role, content in wire:  # the inbound parser splits tool results out of a user turn
        results: list[Part] = [p for p in content if isinstance(p, ToolResultPart)]
        others = [p for p in content if not isinstance(p, ToolResultPart)]
        if results:
            msgs.append(Message("tool", results))
            if others:
                msgs.append(Message("user", others))
        else:
            msgs.append(Message(role, content))  # type: ignore[arg-type]
    r.messages = msgs  # (names: Anthropic has no participant names)
    if not r.tools:
        r.tool_choice = None  # tool_choice without tools is dropped
    elif r.tool_choice is not None:
        tc = r.tool_choice
        r.tool_choice = ToolChoice(tc.mode, tc.name if tc.mode == "tool" else None, None if tc.mode == "none" else tc.parallel)
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
        r.response_format = ResponseFormat("json_schema", schema=rf.schema) if rf.type == "json_schema" else None
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
    return ImagePart(url=p.url, media_type=p.media_type or mimetypes.guess_type(urlparse(p.url or "").path)[0])


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
                    ToolResultPart(ids[res.tool_call_id], body, res.is_error, res.name or names[res.tool_call_id])
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
        # text/functionCall part (the last of several consecutive signatures wins); empty text
        # is not sent; redacted (Anthropic-only) thinking is dropped.
        parts = []
        pending: str | None = None
        for p in m.content:
            if isinstance(p, ThinkingPart):
                if p.signature:
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
        r.tool_choice = ToolChoice(r.tool_choice.mode, r.tool_choice.name if r.tool_choice.mode == "tool" else None)
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


def _refused(dialect: str, req: ChatRequest) -> bool:
    """The features a dialect refuses with a BadRequest by design."""
    if dialect == "openai":
        return req.n is not None and req.n > 1 and req.stream
    if dialect == "anthropic":
        rf = req.response_format
        return (req.n is not None and req.n > 1) or (rf is not None and rf.type == "json_object")
    tc = req.tool_choice
    return tc is not None and not req.tools and tc.mode in ("required", "tool")


def roundtrip_request(dialect: str, req: ChatRequest) -> ChatRequest:
    if dialect == "gemini":
        return gemini_codec.decode_request(ADAPTERS["gemini"].build_request(req, upstream("gemini", GEMINI_MODEL)))
    http = ADAPTERS[dialect].build_request(req, upstream(dialect, req.model))
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    return wire.parse_request(http.body, http.headers)


EXPECT_REQUEST = {
    "openai": expect_openai_request,
    "anthropic": expect_anthropic_request,
    "gemini": expect_gemini_request,
}


DIALECTS = ("openai", "anthropic", "gemini")


@SETTINGS
@given(req=chat_request())
def test_request_roundtrip(req: ChatRequest) -> None:
    """canonical -> D request -> canonical is the identity up to expect_D_request, per dialect
    (one generated conversation checked against all three, to keep generation cheap)."""
    for dialect in DIALECTS:
        if _refused(dialect, req):
            with pytest.raises(BadRequest):
                roundtrip_request(dialect, req)
            continue
        got, want = view(roundtrip_request(dialect, req)), view(EXPECT_REQUEST[dialect](req))
        assert got == want, dialect


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
            content.append(ThinkingPart(redacted=p.redacted) if p.redacted is not None else ThinkingPart(p.text, p.signature))
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
    r.finish_reason = {"MAX_TOKENS": "length", "SAFETY": "content_filter"}.get(raw, "tool_calls" if calls else "stop")  # type: ignore[assignment]
    r.stop_sequence = None
    if r.usage is not None:
        u = r.usage
        r.usage = Usage(u.input_tokens, u.output_tokens, u.cached_input_tokens, 0, u.reasoning_tokens)
    r.created = None
    return r


def encode_response(dialect: str, resp: ChatResponse, *, ids: bool = True) -> bytes:
    """``resp`` as the upstream dialect's non-streamed response body."""
    if dialect == "gemini":
        return gemini_codec.encode_response(resp, ids=ids)
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    return wire.encode_response(resp, client_request(dialect, stream=False), META)


def expect_response(dialect: str, resp: ChatResponse, *, ids: bool = True) -> ChatResponse:
    if dialect == "openai":
        return expect_openai_response(resp)
    if dialect == "anthropic":
        return expect_anthropic_response(resp)
    return expect_gemini_response(resp, ids=ids)


# (dialect, gemini call ids issued by the model?)
UPSTREAMS = [("openai", True), ("anthropic", True), ("gemini", True), ("gemini", False)]


@SETTINGS
@given(resp=chat_response(redacted=True))
def test_response_roundtrip(resp: ChatResponse) -> None:
    """canonical -> D response JSON -> adapters/D.parse_response == expect_D_response."""
    for dialect, ids in UPSTREAMS:
        if dialect == "gemini" and any(isinstance(p, ThinkingPart) and p.redacted for p in resp.content):
            continue  # redacted thinking is Anthropic's own; Gemini cannot say it
        got = ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), upstream(dialect))
        if dialect == "openai" and resp.created is None:
            got.created = None
        assert view(_strip(got)) == view(expect_response(dialect, resp, ids=ids)), (dialect, ids)


# ============================================================================ 3. streams


def encode_stream(dialect: str, resp: ChatResponse, *, ids: bool = True) -> bytes:
    """``resp`` as the events a stream of it gives, encoded as D's SSE body."""
    events = response_to_events(resp)
    if dialect == "gemini":
        return gemini_codec.encode_stream(events, ids=ids)
    wire = openai_wire.WIRE if dialect == "openai" else anthropic_wire.WIRE
    enc = wire.stream_encoder(client_request(dialect), META)
    return enc.start() + b"".join(enc.encode(ev) for ev in events) + enc.close(META)


def parse_stream(dialect: str, chunks: list[bytes]) -> ChatResponse:
    parser = ADAPTERS[dialect].stream_parser(upstream(dialect))
    acc = Accumulator()
    for chunk in chunks:
        for ev in parser.feed(chunk):
            acc.add(ev)
    for ev in parser.close():
        acc.add(ev)
    assert acc.finished, "the stream never finished"
    return acc.result()


def _canon_calls(resp: ChatResponse) -> ChatResponse:
    for p in resp.content:
        if isinstance(p, ToolCallPart):
            p.arguments = canon_args(p.arguments)
    return resp


@SETTINGS
@given(resp=chat_response(redacted=True), data=st.data())
def test_stream_folds_to_response(resp: ChatResponse, data: st.DataObject) -> None:
    """canonical -> events -> D SSE -> split at random bytes -> stream parser -> Accumulator gives
    what the non-streamed parse of the same response gives."""
    for dialect, ids in UPSTREAMS:
        if dialect == "gemini" and any(isinstance(p, ThinkingPart) and p.redacted for p in resp.content):
            continue
        body = encode_stream(dialect, resp, ids=ids)
        streamed = _strip(parse_stream(dialect, split(body, data.draw(cut_points(len(body)), label=dialect))))
        whole = _strip(ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), upstream(dialect)))
        if dialect == "openai":
            # A stream can interleave reasoning, text and calls; one message cannot.
            streamed = expect_openai_response(streamed)
        elif dialect == "anthropic":
            # The stream carries the arguments' text as written, the message their parsed object.
            streamed, whole = _canon_calls(streamed), _canon_calls(whole)
        assert view(streamed) == view(whole), (dialect, ids)


# ====================================================================== 4. cross-dialect


def _id_map(dialect: str, req: ChatRequest) -> dict[str, str]:
    calls = [p.id for m in req.messages if m.role == "assistant" for p in m.content if isinstance(p, ToolCallPart)]
    if dialect == "anthropic":
        return {i: sanitize_tool_id(i) for i in calls}
    if dialect == "gemini":
        return {i: f"gcall_{k}" for k, i in enumerate(calls)}
    return {i: i for i in calls}


def _result_value(text: str) -> Any:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return obj if isinstance(obj, dict) else text


def summary(req: ChatRequest, ids: dict[str, str] | None = None) -> dict[str, Any]:
    """What must survive any translation of a conversation: the system prompt, every text,
    image, tool call (id, name, arguments) and tool result (call id, content)."""
    ids = ids if ids is not None else {}
    out: dict[str, Any] = {"system": [], "texts": [], "images": [], "calls": [], "results": []}
    for m in req.messages:
        for p in m.content:
            parts = p.content if isinstance(p, ToolResultPart) else [p]
            if isinstance(p, ToolResultPart):
                out["results"].append((ids.get(p.tool_call_id, p.tool_call_id), _result_value(p.text())))
            for q in parts:
                if isinstance(q, TextPart) and q.text and not isinstance(p, ToolResultPart):
                    out["system" if m.role == "system" else "texts"].append(q.text)
                elif isinstance(q, ImagePart):
                    out["images"].append(q.data or q.url)
                elif isinstance(q, ToolCallPart):
                    out["calls"].append((ids.get(q.id, q.id), q.name, q.parsed_arguments()))
    out["system"] = "\n".join(out["system"])
    return out


@settings(SETTINGS, max_examples=80)
@given(req=chat_request())
def test_openai_client_request_to_every_upstream(req: ChatRequest) -> None:
    """An OpenAI client's conversation sent to each upstream dialect keeps every text, image,
    tool call id/name/arguments and tool result (ids rewritten only where the dialect must)."""
    if _refused("openai", req):
        return
    client = roundtrip_request("openai", req)  # what an OpenAI client's body parses to
    for dialect in DIALECTS:
        if _refused(dialect, client):
            continue
        sent = roundtrip_request(dialect, client)
        assert summary(sent) == summary(client, _id_map(dialect, client)), dialect


def _client_view(client: str, body: bytes) -> tuple[str, list[tuple[str, str, Any]]]:
    """(text, [(call id, name, arguments)]) as a client of dialect ``client`` reads the body."""
    data = orjson.loads(body)
    if client == "openai":
        msg = data["choices"][0]["message"]
        calls = [
            (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
            for c in msg.get("tool_calls") or []
        ]
        return msg["content"] or "", calls
    text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
    return text, [(b["id"], b["name"], b["input"]) for b in data["content"] if b["type"] == "tool_use"]


def _stream_view(client: str, body: bytes, chunks: list[int]) -> tuple[str, list[tuple[str, str, Any]]]:
    resp = parse_stream(client, split(body, chunks))
    return resp.text(), [(p.id, p.name, p.parsed_arguments()) for p in resp.tool_calls()]


@SETTINGS
@given(resp=chat_response(redacted=False), data=st.data())
def test_every_upstream_answer_to_every_client(resp: ChatResponse, data: st.DataObject) -> None:
    """An upstream's answer (D response JSON or SSE -> canonical -> client dialect) never loses
    tool call ids, names, arguments or text, streamed or not."""
    want_text = resp.text()
    for dialect, ids in UPSTREAMS:
        up = upstream(dialect)
        canonical = ADAPTERS[dialect].parse_response(encode_response(dialect, resp, ids=ids), up)
        call_ids = [p.id for p in canonical.tool_calls()]  # Gemini-2.x: minted by the adapter
        if ids:
            assert call_ids == [p.id for p in resp.tool_calls()], dialect
        want_calls = [(i, p.name, p.parsed_arguments()) for i, p in zip(call_ids, resp.tool_calls(), strict=True)]
        for client in ("openai", "anthropic"):
            wire = openai_wire.WIRE if client == "openai" else anthropic_wire.WIRE
            body = wire.encode_response(canonical, client_request(client, stream=False), META)
            assert _client_view(client, body) == (want_text, want_calls), (dialect, ids, client)
            # streamed: upstream SSE -> adapter events -> client encoder -> client SSE
            parser = ADAPTERS[dialect].stream_parser(up)
            enc = wire.stream_encoder(client_request(client), META)
            raw = encode_stream(dialect, resp, ids=ids)
            out = enc.start()
            for chunk in split(raw, data.draw(cut_points(len(raw)), label=f"{dialect}-up")):
                out += b"".join(enc.encode(ev) for ev in parser.feed(chunk))
            out += b"".join(enc.encode(ev) for ev in parser.close()) + enc.close(META)
            cuts = data.draw(cut_points(len(out)), label=f"{client}-down")
            assert _stream_view(client, out, cuts) == (want_text, want_calls), (dialect, ids, client, "stream")
