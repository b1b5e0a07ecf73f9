"""Outbound adapter for the OpenAI Responses API (``POST {base_url}/responses``): the native path
for a Responses client whose call goes to a provider that speaks it (``Quirks.native_dialects``).

Same dialect on both sides, so nothing is translated away: the request's items are rebuilt from
the canonical messages with their upstream ids and unmodelled fields (``dialects/openai_responses``),
built-in tools and every unmodelled top-level field (``include``, ``truncation``,
``service_tier``, ``text.verbosity``, ``reasoning.summary``, ...) are sent as given, and the
answer's items come back as parts carrying their ids (message content parts, reasoning summary
parts, built-in tool calls as opaque items with their own stream events).

Two things differ from a client talking to OpenAI directly, on purpose:

* ``store`` is always ``false`` upstream: Fareway keeps the conversation itself (its own response
  ids, ``previous_response_id`` expanded to the full input), so a conversation is not tied to
  one upstream key and can move to another provider;
* when the call reasons (``reasoning`` asked for, a model that reasons by default: ``o*``,
  ``gpt-5*``, ``codex*``, or reasoning already in the history), ``include`` gets
  ``reasoning.encrypted_content``, so the reasoning state can be carried to the next turn without
  OpenAI's storage.

Item ids Fareway minted (``<prefix>_fw...``) are not sent: OpenAI never issued them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from fareway.adapters.base import Adapter, ScrubbingAdapter, StreamParser, json_body
from fareway.adapters.openai_fields import classify_error
from fareway.adapters.openai_responses_stream import (
    ResponsesStreamParser,
    finish_of,
    output_parts,
    response_start_extras,
    usage_of,
)
from fareway.dialects.openai_responses import DIALECT, FW, is_assistant_item, messages_to_items
from fareway.errors import UpstreamError, UpstreamServerError
from fareway.types import ChatRequest, ChatResponse, Dialect, HttpRequest, TextPart, Upstream

_EXT_HANDLED = frozenset({"builtin_tools", "tool_choice", "text", "reasoning", "parallel_tool_calls"})
ENCRYPTED = "reasoning.encrypted_content"


def _minted(iid: Any) -> bool:
    return isinstance(iid, str) and iid.split("_", 1)[-1].startswith("fw")


_REASONING_MODEL = re.compile(r"^(?:o\d|gpt-5|codex)(?!.*-chat)")
"""Model ids that reason by default (their reasoning state is asked for so it can be carried)."""


def _with_upstream_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items with only the ids OpenAI issued and can match: no minted ids, no reasoning item
    it did not issue; and in an assistant turn whose reasoning is not sent (none was kept), no ids
    on its calls and messages (OpenAI refuses an item of a reasoning model's turn without the
    reasoning item it came with, and accepts them without ids)."""
    out: list[dict[str, Any]] = []
    turn: list[dict[str, Any]] = []

    def flush() -> None:
        if not any(i.get("type") == "reasoning" for i in turn):
            for i in turn:
                if i.get("type") in ("function_call", "message"):
                    i.pop("id", None)
        out.extend(turn)
        turn.clear()

    for it in items:
        it = {k: v for k, v in it.items() if not (k == "id" and _minted(v))}
        if it.get("type") == "reasoning" and "id" not in it:
            continue  # reasoning OpenAI did not issue cannot go back to it
        if is_assistant_item(it):
            turn.append(it)
        else:
            flush()
            out.append(it)
    flush()
    return out


def build_body(req: ChatRequest, up: Upstream) -> tuple[dict[str, Any], list[str]]:
    dropped: list[str] = []
    ext: dict[str, Any] = dict(req.extensions.get(DIALECT) or {})
    echo = (req.extensions.get(FW) or {}).get("responses") or {}
    messages = list(req.messages)
    body: dict[str, Any] = {"model": up.model}
    instructions = echo.get("instructions")
    if (
        instructions
        and messages
        and messages[0].role == "system"
        and len(messages[0].content) == 1
        and isinstance(messages[0].content[0], TextPart)
        and messages[0].content[0].text == instructions
    ):
        body["instructions"] = instructions
        messages = messages[1:]
    items = messages_to_items(messages, dropped)
    body["input"] = _with_upstream_ids(items)
    tools: list[dict[str, Any]] = []
    for t in req.tools:
        tool: dict[str, Any] = {"type": "function", "name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["parameters"] = t.parameters
        if t.strict is not None:
            tool["strict"] = t.strict
        for k, v in (t.extensions.get(DIALECT) or {}).items():
            tool.setdefault(k, v)
        tools.append(tool)
    tools += [dict(t) for t in ext.get("builtin_tools") or []]
    if tools:
        body["tools"] = tools
    tc = req.tool_choice
    if isinstance(ext.get("tool_choice"), dict):
        body["tool_choice"] = ext["tool_choice"]
    elif tc is not None:
        body["tool_choice"] = {"type": "function", "name": tc.name or ""} if tc.mode == "tool" else tc.mode
    parallel = tc.parallel if tc is not None else ext.get("parallel_tool_calls")
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    text: dict[str, Any] = dict(ext.get("text") or {})
    rf = req.response_format
    if rf is not None:
        if rf.type == "json_schema":
            fmt: dict[str, Any] = {
                "type": "json_schema",
                "name": rf.name or "response",
                "schema": rf.schema or {},
            }
            if rf.description:
                fmt["description"] = rf.description
            if rf.strict is not None:
                fmt["strict"] = rf.strict
            text["format"] = fmt
        else:
            text["format"] = {"type": rf.type}
    if text:
        body["text"] = text
    reasoning: dict[str, Any] = dict(ext.get("reasoning") or {})
    th = req.thinking
    if th is not None:
        reasoning["effort"] = th.effort or ("none" if th.type == "disabled" else "medium")
    if reasoning:
        body["reasoning"] = reasoning
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "user"):
        v = getattr(req, name)
        if v is not None:
            body[name] = v
    if req.metadata:
        body["metadata"] = dict(req.metadata)
    for k, v in ext.items():
        if k not in _EXT_HANDLED:
            body.setdefault(k, v)
    include = list(body.get("include") or [])
    reasons = (
        (th.type != "disabled")
        if th is not None
        else (
            bool(_REASONING_MODEL.match(up.model)) or any(i.get("type") == "reasoning" for i in body["input"])
        )
    )
    if reasons and ENCRYPTED not in include:
        include.append(ENCRYPTED)
    if include:
        body["include"] = include
    body["store"] = False
    body["stream"] = req.stream
    return body, dropped


def parse_responses_body(body: bytes, up: Upstream) -> ChatResponse:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamServerError(
            f"{up.provider or 'upstream'} sent a 2xx body that is not JSON", provider=up.provider, body=body
        ) from exc
    if not isinstance(data, dict) or data.get("error") or data.get("status") == "failed":
        err = data.get("error") if isinstance(data, dict) else None
        raise classify_error(200, {}, body, up, {"error": err or {"message": "the response failed"}})
    items = [it for it in data.get("output") or [] if isinstance(it, dict)]
    resp = ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or up.model),
        content=output_parts(items),
        usage=usage_of(data.get("usage")),
        created=int(data["created_at"]) if isinstance(data.get("created_at"), int | float) else None,
    )
    resp.finish_reason = finish_of(data, any(it.get("type") == "function_call" for it in items))
    extras = response_start_extras(data)
    if extras:
        resp.extensions[DIALECT] = extras
    return resp


class OpenAIResponsesAdapter(ScrubbingAdapter):
    """The :class:`~fareway.adapters.base.Adapter` speaking the Responses API upstream."""

    dialect: Dialect = "openai_responses"

    def _build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        body, dropped = build_body(req, up)
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
            f"{up.base_url.rstrip('/')}/responses",
            headers,
            json_body(body),
            stream=req.stream,
            dropped=dropped,
        )

    def _parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        return parse_responses_body(body, up)

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return classify_error(status, headers, body, up)

    def _stream_parser(self, up: Upstream) -> StreamParser:
        return ResponsesStreamParser(up)


ADAPTER: Adapter = OpenAIResponsesAdapter()
