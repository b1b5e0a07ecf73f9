"""Outbound adapter for the OpenAI Chat Completions dialect (``POST {base_url}/chat/completions``).

One adapter serves OpenAI and every OpenAI-compatible provider (Cerebras, Groq, DeepInfra, Mistral,
xAI, OpenRouter, user-defined endpoints).  Their differences are :class:`~fareway.providers.quirks.Quirks`
flags read here, never branches on a provider's name.

Where unmodelled wire fields go (for lossless same-dialect pass-through), all under ``"openai"``:

* ``ChatResponse.extensions["openai"]``: every top-level response field the canonical model does
  not have (``system_fingerprint``, ``service_tier``, ``time_info``, ``x_groq``, ``provider``,
  ``usage_breakdown``, ``moderation``...) verbatim, plus ``choice_extra`` (unknown fields of
  ``choices[0]``: ``logprobs``, ``native_finish_reason``), ``message_extra`` (unknown fields of
  ``choices[0].message``: ``annotations``...) and ``extra_choices`` (raw ``choices[1:]`` when n>1).
* ``Usage.extensions["openai"]``: every usage field other than prompt/completion/total tokens
  (OpenRouter ``cost``/``cost_details``/``is_byok``, Groq timings, the ``*_details`` objects).
* ``ThinkingPart.extensions["openai"]["field"]``: the message field the reasoning came from
  (``reasoning``, ``reasoning_content``, or ``content`` for Mistral thinking chunks); a part
  with it is sent back in that field, a part without it is dropped from history.
* ``TextPart.extensions["openai"]["refusal"] = True`` marks a refusal.
* ``ToolCallPart.extensions["openai"]``: unknown tool-call fields (Gemini ``extra_content``),
  echoed back when the call is replayed in history.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from fareway.adapters.base import Adapter, ScrubbingAdapter, StreamParser, json_body
from fareway.adapters.openai_fields import (
    D,
    as_dict,
    as_int,
    classify_error,
    map_finish,
    usage_of_chunk,
)
from fareway.adapters.openai_stream import OpenAIStreamParser
from fareway.errors import (
    BadRequest,
    UpstreamError,
    UpstreamServerError,
)
from fareway.providers.quirks import Quirks
from fareway.types import (
    ChatRequest,
    ChatResponse,
    Dialect,
    HttpRequest,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Upstream,
)


def quirks_of(up: Upstream) -> Quirks:
    q = up.quirks
    return q if isinstance(q, Quirks) else Quirks()


# ------------------------------------------------------------------------------ request build

_ALNUM9 = re.compile(r"[A-Za-z0-9]{9}")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def alnum9(tool_id: str) -> str:
    """A deterministic ``[a-zA-Z0-9]{9}`` id for ``tool_id`` (kept when it already fits)."""
    if _ALNUM9.fullmatch(tool_id):
        return tool_id
    n = int.from_bytes(hashlib.sha256(tool_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


def _ext(obj: Part | Message) -> dict[str, Any]:
    return dict(obj.extensions.get(D) or {})


def _text_block(p: TextPart) -> dict[str, Any]:
    ext = _ext(p)
    ext.pop("refusal", None)
    return {"type": "text", "text": p.text, **ext}


def _image_block(p: ImagePart) -> dict[str, Any]:
    img: dict[str, Any] = {"url": p.as_data_url() or ""}
    if p.detail:
        img["detail"] = p.detail
    return {"type": "image_url", "image_url": img, **_ext(p)}


class _Builder:
    """Turns a canonical request into an OpenAI-dialect body for one upstream."""

    def __init__(self, req: ChatRequest, q: Quirks) -> None:
        self.req = req
        self.q = q
        self.dropped: list[str] = []

    def _note(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)

    def _id(self, tool_id: str) -> str:
        return alnum9(tool_id) if self.q.tool_call_id_format == "alnum9" else tool_id

    def _content(self, parts: Sequence[Part]) -> str | list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for p in parts:
            if isinstance(p, TextPart):
                blocks.append(_text_block(p))
            elif isinstance(p, ImagePart):
                blocks.append(_image_block(p))
            elif isinstance(p, OpaquePart):
                self._opaque(p, blocks)
        if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
            return str(blocks[0]["text"])
        return blocks

    def _opaque(self, p: OpaquePart, blocks: list[dict[str, Any]]) -> None:
        if p.dialect == D and p.data:
            blocks.append(dict(p.data))
        else:
            self._note(f"{p.dialect} {p.data.get('type', 'block')} content")

    def _message_common(self, m: Message, out: dict[str, Any]) -> dict[str, Any]:
        if m.name:
            if self.q.supports_message_name:
                out["name"] = m.name
            else:
                self._note("messages[].name")
        ext = _ext(m)
        ext.pop("role", None)
        for k, v in ext.items():
            out.setdefault(k, v)
        return out

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.req.messages:
            if (
                (m.role == "user" or m.role == "system")
                and len(m.content) == 1
                and not m.name
                and not m.extensions
            ):
                p = m.content[0]
                if type(p) is TextPart and not p.extensions:
                    # the usual turn: one plain text, no name, no extras (what the general
                    # path below makes of it: a plain string content)
                    out.append({"role": m.role, "content": p.text})
                    continue
            if m.role == "system":
                role = "developer" if _ext(m).get("role") == "developer" else "system"
                out.append(self._message_common(m, {"role": role, "content": self._content(m.content)}))
            elif m.role == "assistant":
                out.append(self._assistant(m))
            else:  # user or tool: tool results become one `role: tool` message each
                results = [p for p in m.content if isinstance(p, ToolResultPart)]
                rest = [p for p in m.content if not isinstance(p, ToolResultPart)]
                images: list[Part] = []
                for r in results:
                    out.append(self._tool_result(r))
                    images += [p for p in r.content if isinstance(p, ImagePart)]
                if m.role == "user" and rest:
                    out.append(self._message_common(m, {"role": "user", "content": self._content(rest)}))
                if images:  # OpenAI tool messages are text-only: show images in a user turn
                    out.append({"role": "user", "content": self._content(images)})
        return out

    def _tool_result(self, r: ToolResultPart) -> dict[str, Any]:
        text = r.text()
        if r.is_error and not _ext(r):
            text = f"Error: {text}"
        msg: dict[str, Any] = {"role": "tool", "tool_call_id": self._id(r.tool_call_id), "content": text}
        for k, v in _ext(r).items():
            msg.setdefault(k, v)
        return msg

    def _assistant(self, m: Message) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant"}
        texts: list[TextPart] = []
        refusal: list[str] = []
        calls: list[dict[str, Any]] = []
        reasoning: dict[str, str] = {}
        array: list[dict[str, Any]] = []  # Mistral-style typed content, used if thinking came that way
        for p in m.content:
            if isinstance(p, TextPart):
                if _ext(p).get("refusal"):
                    refusal.append(p.text)
                else:
                    texts.append(p)
                    array.append({"type": "text", "text": p.text})
            elif isinstance(p, ToolCallPart):
                ext = _ext(p)
                fn: dict[str, Any] = {
                    "name": p.name,
                    "arguments": p.arguments if p.arguments.strip() else "{}",
                }
                calls.append({"id": self._id(p.id), "type": "function", "function": fn, **ext})
            elif isinstance(p, ThinkingPart):
                field = _ext(p).get("field")
                if field == "content":
                    array.append({"type": "thinking", "thinking": [{"type": "text", "text": p.text}]})
                elif isinstance(field, str) and field:
                    reasoning[field] = reasoning.get(field, "") + p.text
            elif isinstance(p, OpaquePart):
                if p.dialect != D:
                    self._note(f"{p.dialect} {p.data.get('type', 'block')} content")
        if any(a["type"] == "thinking" for a in array):
            msg["content"] = array
        elif texts:
            c = self._content(texts)
            msg["content"] = c
        elif not calls:
            msg["content"] = ""
        if refusal:
            msg["refusal"] = "".join(refusal)
        msg.update(reasoning)
        if calls:
            msg["tool_calls"] = calls
        return self._message_common(m, msg)

    def body(self) -> dict[str, Any]:
        req, q = self.req, self.q
        body: dict[str, Any] = {"model": "", "messages": self.messages()}
        if req.max_tokens is not None:
            body[q.max_tokens_field] = req.max_tokens
        # (in this order: temperature, top_p, seed, n, user; read directly, not by getattr)
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.seed is not None:
            body["seed"] = req.seed
        if req.n is not None:
            body["n"] = req.n
        if req.user is not None:
            body["user"] = req.user
        if req.top_k is not None:
            self._note("top_k")
        if req.stop:
            body["stop"] = list(req.stop)
        if req.metadata:
            body["metadata"] = dict(req.metadata)
        if req.tools:
            body["tools"] = [self._tool(t) for t in req.tools]
        tc = req.tool_choice
        if tc is not None:
            if tc.mode == "tool":
                body["tool_choice"] = {"type": "function", "function": {"name": tc.name or ""}}
            elif tc.mode == "required":
                body["tool_choice"] = q.tool_choice_required_as
            else:
                body["tool_choice"] = tc.mode
            if tc.parallel is not None:
                body["parallel_tool_calls"] = tc.parallel
        rf = req.response_format
        if rf is not None:
            if rf.type == "json_schema":
                js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
                if rf.description:
                    js["description"] = rf.description
                if rf.strict is not None:
                    js["strict"] = rf.strict
                body["response_format"] = {"type": "json_schema", "json_schema": js}
            else:
                body["response_format"] = {"type": rf.type}
        th = req.thinking
        if th is not None:
            if th.effort:
                body["reasoning_effort"] = th.effort
            elif th.type != "disabled":
                self._note("thinking")
        for k, v in (req.extensions.get(D) or {}).items():
            if k == "stream_options" and isinstance(v, dict):
                body["stream_options"] = dict(v)
            else:
                body.setdefault(k, v)
        body["stream"] = req.stream
        if req.stream and q.stream_usage_option:
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        elif not req.stream:
            body.pop("stream_options", None)
        return body

    def _tool(self, t: Any) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.parameters
        if t.strict is not None:
            fn["strict"] = t.strict
        for k, v in (t.extensions.get(D) or {}).items():
            fn.setdefault(k, v)
        return {"type": "function", "function": fn}


def _apply_quirks(body: dict[str, Any], q: Quirks, dropped: list[str]) -> None:
    unsupported = q.unsupported_params
    bad = sorted(k for k in body if k in unsupported) if unsupported else None
    if bad:
        if q.unsupported_policy == "reject":
            raise BadRequest(
                f"this provider does not support the parameter(s) {', '.join(bad)}; remove them or pick another model",
                param=bad[0],
            )
        for k in bad:
            del body[k]
            dropped.append(k)
    for old, new in q.renamed_params.items():
        if old in body:
            body[new] = body.pop(old)


# ------------------------------------------------------------------------------ response parse

_MESSAGE_KNOWN = {
    "role",
    "content",
    "reasoning",
    "reasoning_content",
    "refusal",
    "tool_calls",
    "function_call",
}
_TOP_KNOWN = {"id", "object", "created", "model", "choices", "usage"}
_REASONING_FIELDS = ("reasoning_content", "reasoning")


def _tool_call_part(tc: dict[str, Any]) -> ToolCallPart:
    fn = as_dict(tc.get("function"))
    args = fn.get("arguments")
    if args is not None and not isinstance(args, str):
        args = orjson.dumps(args).decode()  # some compat servers send an object
    ext = {k: v for k, v in tc.items() if k not in ("id", "type", "function", "index")}
    return ToolCallPart(
        str(tc.get("id") or ""), str(fn.get("name") or ""), args or "", {D: ext} if ext else {}
    )


def _content_array(items: list[Any]) -> list[Part]:
    """Mistral typed content chunks (``text`` / ``thinking``), others kept as OpaqueParts."""
    parts: list[Part] = []
    for it in items:
        if isinstance(it, str):
            parts.append(TextPart(it))
        elif isinstance(it, dict) and it.get("type") == "text":
            parts.append(TextPart(str(it.get("text") or "")))
        elif isinstance(it, dict) and it.get("type") == "thinking":
            inner = it.get("thinking")
            text = (
                inner
                if isinstance(inner, str)
                else "".join(str(x.get("text") or "") for x in inner or [] if isinstance(x, dict))
            )
            parts.append(ThinkingPart(text, extensions={D: {"field": "content"}}))
        elif isinstance(it, dict):
            parts.append(OpaquePart(D, it))
    return parts


def _message_parts(msg: dict[str, Any]) -> tuple[list[Part], dict[str, Any]]:
    parts: list[Part] = []
    extra = {k: v for k, v in msg.items() if k not in _MESSAGE_KNOWN}
    for field in _REASONING_FIELDS:
        text = msg.get(field)
        if isinstance(text, str) and text:
            ext: dict[str, Any] = {"field": field}
            details = extra.pop("reasoning_details", None)
            sig = None
            if isinstance(details, list):
                ext["reasoning_details"] = details
                sig = next(
                    (d["signature"] for d in details if isinstance(d, dict) and d.get("signature")), None
                )
            parts.append(ThinkingPart(text, signature=sig, extensions={D: ext}))
            break
    content = msg.get("content")
    if isinstance(content, str) and content:
        parts.append(TextPart(content))
    elif isinstance(content, list):
        parts += _content_array(content)
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(refusal, {D: {"refusal": True}}))
    for tc in msg.get("tool_calls") or []:
        if isinstance(tc, dict):
            parts.append(_tool_call_part(tc))
    fc = msg.get("function_call")
    if isinstance(fc, dict):
        parts.append(_tool_call_part({"function": fc}))
    return parts, extra


def parse_chat_response(body: bytes, up: Upstream) -> ChatResponse:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamServerError(
            f"{up.provider or 'upstream'} sent a 2xx body that is not JSON", provider=up.provider, body=body
        ) from exc
    if isinstance(data, list) or not isinstance(data, dict) or data.get("error"):
        raise classify_error(200, {}, body, up, data)
    choices = [c for c in data.get("choices") or [] if isinstance(c, dict)]
    choices.sort(key=lambda c: as_int(c.get("index")))
    ext: dict[str, Any] = {k: v for k, v in data.items() if k not in _TOP_KNOWN}
    resp = ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or up.model),
        usage=usage_of_chunk(data),
        created=int(data["created"]) if isinstance(data.get("created"), int | float) else None,
    )
    if choices:
        c0 = choices[0]
        msg = as_dict(c0.get("message"))
        resp.content, message_extra = _message_parts(msg)
        resp.finish_reason = map_finish(c0.get("finish_reason"))
        if resp.finish_reason is None and resp.content:
            resp.finish_reason = "tool_calls" if resp.tool_calls() else "stop"
        choice_extra = {k: v for k, v in c0.items() if k not in ("index", "message", "finish_reason")}
        if choice_extra:
            ext["choice_extra"] = choice_extra
        if message_extra:
            ext["message_extra"] = message_extra
        if len(choices) > 1:
            ext["extra_choices"] = choices[1:]
    if ext:
        resp.extensions[D] = ext
    return resp


# ------------------------------------------------------------------------------------ adapter


class OpenAIChatAdapter(ScrubbingAdapter):
    """The :class:`~fareway.adapters.base.Adapter` for OpenAI-compatible chat completions."""

    dialect: Dialect = "openai"

    def _build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        q = quirks_of(up)
        if req.n is not None and req.n > 1:
            if req.stream:
                raise BadRequest(
                    "n>1 cannot be streamed through this gateway: a canonical stream carries one choice; "
                    "use n=1 or stream=false",
                    param="n",
                )
            if q.n_must_be_one:
                raise BadRequest(f"{up.provider or 'this provider'} only supports n=1", param="n")
        b = _Builder(req, q)
        body = b.body()
        body["model"] = up.model
        dropped = list(b.dropped)
        _apply_quirks(body, q, dropped)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if req.stream else "application/json",
        }
        if up.api_key:
            headers[up.auth_header.lower()] = (
                f"{up.auth_scheme} {up.api_key}" if up.auth_scheme else up.api_key
            )
        for k, v in up.extra_headers.items():
            headers[k.lower()] = v
        return HttpRequest(
            "POST",
            f"{up.base_url.rstrip('/')}/chat/completions",
            headers,
            json_body(body),
            stream=req.stream,
            dropped=dropped,
        )

    def _parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        return parse_chat_response(body, up)

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return classify_error(status, headers, body, up)

    def _stream_parser(self, up: Upstream) -> StreamParser:
        return OpenAIStreamParser(up)


ADAPTER: Adapter = OpenAIChatAdapter()
"""The module instance (typed as the protocol so mypy checks conformance)."""
