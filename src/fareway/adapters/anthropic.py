"""Outbound adapter for Anthropic Messages upstreams (``POST {base_url}/v1/messages``), and any
provider speaking that dialect.  Sans-IO.

Request building (canonical -> Anthropic):

* Leading canonical system messages -> ``system`` (a plain string when no block carries extra
  fields such as ``cache_control``, else text blocks).  Later system messages stay inline
  (``role: "system"``) when the request came from an Anthropic client (it chose to send them), and
  are hoisted into ``system`` otherwise (what Anthropic's own OpenAI-compat layer does).
* Canonical ``tool`` messages -> one user message starting with all ``tool_result`` blocks, any
  following user blocks after them; consecutive same-role turns are merged; empty text blocks and
  turns left empty are dropped (Anthropic 400s on them).
* Tool ids are rewritten to ``[a-zA-Z0-9_-]`` deterministically; a tool call whose arguments are
  not a JSON object is a BadRequest naming the message.  Unsigned thinking is dropped (it cannot be
  verified), other dialects' OpaqueParts are dropped, Anthropic OpaqueParts are re-emitted verbatim.
* ``extensions["anthropic"]`` is merged back into the body: dict values one level deep
  (``thinking.display``, ``output_config.effort``, ``metadata``), ``tools`` appended after the
  client tools (server tools), anything else set as is.
* Dropped (reported in HttpRequest.dropped): ``seed``, ``messages[].name``,
  ``metadata`` keys other than ``user_id`` (a ``metadata.user_id`` stands in for a missing
  ``user``), image ``detail`` (``image_detail``), OpenAI penalties/logprobs, ``tool_choice``
  without tools, whitespace-only stop sequences, sampling fields on versions that reject them.
* ``response_format``: ``json_schema`` -> ``output_config.format``; ``json_object`` (no native
  equivalent) -> :data:`JSON_OBJECT_INSTRUCTION` appended to ``system`` (the prompt half of WIRE.md's
  "prompt + prefill": no assistant prefill, which Claude 4.6+ models refuse).  JSON by instruction
  is not enforced by the upstream; ``json_schema`` is.
* Normalisations (a same-dialect round trip differs only by these): string message content
  becomes a text block list; a tool_result whose content is one text block becomes a string;
  ``is_error: false`` is omitted; ``output_format`` becomes ``output_config.format``; server tools
  move after client tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fareway.adapters.anthropic_stream import AnthropicStreamParser, error_from_body
from fareway.adapters.base import ScrubbingAdapter, json_body
from fareway.dialects.anthropic_blocks import (
    DIALECT,
    STOP_TO_FINISH,
    BlockError,
    block_to_part,
    part_to_block,
    usage_from_wire,
)
from fareway.errors import BadRequest, UpstreamError, UpstreamServerError
from fareway.types import (
    ChatRequest,
    ChatResponse,
    Dialect,
    HttpRequest,
    ImagePart,
    Message,
    Part,
    ThinkingConfig,
    ToolChoice,
    ToolResultPart,
    Upstream,
)

DEFAULT_MAX_TOKENS = 4096
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it and no "
    "Markdown code fences."
)
"""Appended to ``system`` for OpenAI's ``response_format: {"type": "json_object"}``."""
"""max_tokens sent when the client gave none (Anthropic requires it).  Config may override."""

DEFAULT_VERSION = "2023-06-01"
NO_SAMPLING_VERSIONS = frozenset({"2026-10-21"})
"""API versions that reject temperature/top_p/top_k."""

EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32000, "max": 32000}
"""Thinking budget for an ``enabled`` thinking config that gives only an effort."""

_OPENAI_IGNORED = ("frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs")

_RESPONSE_KNOWN = ("id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage")


def _messages_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


class _Builder:
    def __init__(self, req: ChatRequest) -> None:
        self.req = req
        self.dropped: list[str] = []

    def drop(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)

    # ------------------------------------------------------------------------------ messages

    def blocks(self, m: Message, i: int) -> list[dict[str, Any]]:
        if m.name:
            self.drop("messages[].name")  # Anthropic messages carry no participant name
        out = []
        for p in m.content:
            self.note_image_detail(p)
            try:
                b = part_to_block(p, upstream=True)
            except BlockError as exc:
                raise BadRequest(f"messages[{i}]: {exc.message}", param=f"messages[{i}]") from None
            if b is not None:
                out.append(b)
        return out

    def note_image_detail(self, p: Part) -> None:
        """An OpenAI image ``detail`` has no Anthropic form (image_source drops it)."""
        if isinstance(p, ImagePart) and p.detail not in (None, "auto"):
            self.drop("image_detail")
        elif isinstance(p, ToolResultPart):
            for inner in p.content:
                self.note_image_detail(inner)

    def system_and_messages(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        msgs = self.req.messages
        lead = 0
        while lead < len(msgs) and msgs[lead].role == "system":
            lead += 1
        inline_system = self.req.source_dialect == "anthropic"
        system: list[dict[str, Any]] = []
        for i in range(lead):
            system += self.blocks(msgs[i], i)
        wire: list[dict[str, Any]] = []
        for i in range(lead, len(msgs)):
            m = msgs[i]
            if m.role == "system" and not inline_system:
                system += self.blocks(m, i)
                continue
            role = "user" if m.role == "tool" else m.role
            content = self.blocks(m, i)
            ext = m.extensions.get(DIALECT, {})
            if not content and not ext:
                continue
            prev = wire[-1] if wire else None
            if prev is not None and prev["role"] == role and not ext:
                if m.role == "tool":
                    # tool_result blocks go first in the user turn
                    at = next(
                        (k for k, b in enumerate(prev["content"]) if b.get("type") != "tool_result"),
                        len(prev["content"]),
                    )
                    prev["content"][at:at] = content
                else:
                    prev["content"].extend(content)
                continue
            wire.append({"role": role, "content": content, **ext})
        return system, wire

    # ------------------------------------------------------------------------------- fields

    def tool_choice(self, tc: ToolChoice, body: dict[str, Any]) -> None:
        has_tools = bool(body.get("tools")) or bool(self.req.extensions.get(DIALECT, {}).get("tools"))
        if not has_tools:
            self.drop("tool_choice")
            return
        out: dict[str, Any] = {
            "type": {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}[tc.mode]
        }
        if tc.mode == "tool":
            out["name"] = tc.name or ""
        if tc.parallel is not None and tc.mode != "none":
            out["disable_parallel_tool_use"] = not tc.parallel
        body["tool_choice"] = out

    def thinking(self, t: ThinkingConfig, body: dict[str, Any]) -> None:
        if t.type == "enabled":
            budget = t.budget_tokens
            if budget is None:
                budget = EFFORT_BUDGET.get(t.effort or "medium", 4096)
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if self.req.max_tokens is None and body["max_tokens"] <= budget:
                body["max_tokens"] = budget + DEFAULT_MAX_TOKENS
        elif t.type == "adaptive":
            body["thinking"] = {"type": "adaptive"}
            if t.effort:
                body.setdefault("output_config", {})["effort"] = t.effort
        else:
            body["thinking"] = {"type": "disabled"}

    def build(self, up: Upstream) -> dict[str, Any]:
        req = self.req
        if req.n is not None and req.n > 1:
            raise BadRequest(
                "n > 1 is not supported by Anthropic upstreams (one choice per request)", param="n"
            )
        system, messages = self.system_and_messages()
        if not any(m["role"] != "system" for m in messages):
            # Anthropic refuses an empty list (and empty turns are dropped above), and a list of
            # inline system turns alone has no turn to answer: say so here rather than send a
            # request that can only come back as a 400.
            raise BadRequest(
                "nothing to send to an Anthropic upstream: every message is empty or a system prompt "
                "(Anthropic needs at least one user or assistant turn with content)",
                param="messages",
            )
        rf = req.response_format
        if rf is not None and rf.type == "json_object":
            # No native equivalent (WIRE.md: "prompt + prefill"); only the prompt half is used:
            # Claude 4.6+ models refuse an assistant prefill ("This model does not support
            # assistant message prefill"), and a prefill cannot be combined with thinking.
            system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        body: dict[str, Any] = {"model": up.model, "messages": messages}
        if system:
            plain = all(set(b) == {"type", "text"} and b["type"] == "text" for b in system)
            body["system"] = "\n".join(b["text"] for b in system) if plain else system
        body["max_tokens"] = req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS
        stops = [s for s in req.stop if s.strip()]
        if len(stops) != len(req.stop):
            self.drop("stop (whitespace-only sequences)")
        if stops:
            body["stop_sequences"] = stops
        version = self.version(up)
        for key in ("temperature", "top_p", "top_k"):
            value = getattr(req, key)
            if value is None:
                continue
            if version in NO_SAMPLING_VERSIONS:
                self.drop(key)
                continue
            if key == "temperature" and req.source_dialect != "anthropic" and value > 1:
                value = 1.0
                self.drop("temperature (clamped to 1)")
            body[key] = value
        if req.tools:
            tools = []
            for t in req.tools:
                spec: dict[str, Any] = {"name": t.name}
                if t.description is not None:
                    spec["description"] = t.description
                spec["input_schema"] = t.parameters
                if t.strict is not None:
                    spec["strict"] = t.strict
                spec.update(t.extensions.get(DIALECT, {}))
                tools.append(spec)
            body["tools"] = tools
        if req.tool_choice is not None:
            self.tool_choice(req.tool_choice, body)
        if rf is not None and rf.type == "json_schema":
            if rf.schema is None:
                raise BadRequest("response_format json_schema needs a schema", param="response_format")
            body["output_config"] = {"format": {"type": "json_schema", "schema": rf.schema}}
        if req.thinking is not None:
            self.thinking(req.thinking, body)
        meta = dict(req.metadata)
        user = req.user
        if user is None and isinstance(meta.get("user_id"), str):
            user = meta.pop("user_id")
        if user is not None:
            body["metadata"] = {"user_id": user}
        if meta:
            self.drop("metadata")  # Anthropic's metadata takes only user_id
        if req.seed is not None:
            self.drop("seed")
        for key in _OPENAI_IGNORED:
            if key in req.extensions.get("openai", {}):
                self.drop(key)
        body["stream"] = req.stream
        for key, value in req.extensions.get(DIALECT, {}).items():
            have = body.get(key)
            if isinstance(have, dict) and isinstance(value, dict):
                body[key] = {**have, **value}
            elif key == "tools" and isinstance(have, list) and isinstance(value, list):
                body[key] = have + value
            else:
                body[key] = value
        return body

    def version(self, up: Upstream) -> str:
        pinned = {k.lower(): v for k, v in up.extra_headers.items()}.get("anthropic-version")
        if pinned:
            return pinned
        if self.req.source_dialect == "anthropic":
            return self.req.headers.get("anthropic-version") or DEFAULT_VERSION
        return DEFAULT_VERSION


class AnthropicAdapter(ScrubbingAdapter):
    dialect: Dialect = "anthropic"

    def _build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        b = _Builder(req)
        body = b.build(up)
        headers: dict[str, str] = {"content-type": "application/json", "accept": "application/json"}
        if req.stream:
            headers["accept"] = "text/event-stream"
        if up.api_key:
            headers[up.auth_header.lower()] = (
                f"{up.auth_scheme} {up.api_key}" if up.auth_scheme else up.api_key
            )
        headers["anthropic-version"] = b.version(up)
        betas = [req.headers["anthropic-beta"]] if req.headers.get("anthropic-beta") else []
        for k, v in up.extra_headers.items():
            if k.lower() == "anthropic-beta":
                betas.insert(0, v)
            elif k.lower() != "anthropic-version":
                headers[k.lower()] = v
        if betas:
            headers["anthropic-beta"] = ",".join(betas)
        return HttpRequest(
            "POST",
            _messages_url(up.base_url),
            headers,
            json_body(body),
            stream=req.stream,
            dropped=b.dropped,
        )

    def _parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamServerError(
                "the upstream sent a body that is not JSON", provider=up.provider, status=502, body=body
            ) from None
        if not isinstance(data, dict):
            raise UpstreamServerError(
                "the upstream sent an unexpected body", provider=up.provider, status=502, body=body
            )
        if data.get("type") == "error":
            raise error_from_body(data, 200, {}, body, up)
        return response_from_wire(data, up, body)

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        return error_from_body(data, status, headers, body, up)

    def _stream_parser(self, up: Upstream) -> AnthropicStreamParser:
        return AnthropicStreamParser(up)


def response_from_wire(data: dict[str, Any], up: Upstream, body: bytes = b"") -> ChatResponse:
    raw_content = data.get("content") or []
    if not isinstance(raw_content, list):
        raise UpstreamServerError(
            "the upstream response content is not a list", provider=up.provider, status=502, body=body
        )
    content = []
    for j, block in enumerate(raw_content):
        try:
            content.append(block_to_part(block, f"content[{j}]"))
        except BlockError as exc:
            raise UpstreamServerError(
                f"the upstream sent a malformed block: {exc.message}",
                provider=up.provider,
                status=502,
                body=body,
            ) from None
    content = [p for p in content if not isinstance(p, ToolResultPart)]
    ext = {k: v for k, v in data.items() if k not in _RESPONSE_KNOWN}
    raw_stop = data.get("stop_reason")
    finish = STOP_TO_FINISH.get(raw_stop) if isinstance(raw_stop, str) else None
    if isinstance(raw_stop, str) and finish is None:
        finish = "stop"
        ext["stop_reason"] = raw_stop  # a new stop reason: an Anthropic client still sees it
    stop_seq = data.get("stop_sequence")
    usage = data.get("usage")
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or up.model),
        content=content,
        finish_reason=finish,
        stop_sequence=stop_seq if isinstance(stop_seq, str) else None,
        usage=usage_from_wire(usage) if isinstance(usage, dict) else None,
        extensions={DIALECT: ext} if ext else {},
    )


ADAPTER = AnthropicAdapter()
