"""Anthropic Messages (``/anthropic/v1/messages``), shaped after the llm-anthropic / pydantic-ai
recordings: ``msg_``/``toolu_`` ids, thinking blocks with signatures, ``input_tokens`` excluding the
cache counters, named SSE events whose ``data:`` JSON is padded with random spaces before its closing
brace, ``ping`` after the first block start, a no-argument tool streamed as one ``partial_json: ""``,
and a ``message_delta`` with cumulative usage.

Request features honoured: ``stop_sequences`` (``stop_reason: "stop_sequence"`` with ``stop_sequence``
set), ``max_tokens`` (``"max_tokens"``), ``tool_choice`` ``auto``/``any``/``tool``/``none`` with
``disable_parallel_tool_use`` (several ``tool_use`` blocks otherwise), and structured output through
``output_config.format`` (or the older ``output_format``) of type ``json_schema``: a JSON text block.

Prompt caching is simulated: every ``cache_control`` breakpoint (on tools, system blocks, message
blocks, or the top-level ``cache_control``, which marks the end of the last message) names the prefix
up to it.  A prefix seen before (within its TTL) is read from the cache; the rest of the prefix up
to the last breakpoint is written.  Prefixes shorter than ``SimConfig.anthropic_cache_min_tokens``
are not cached.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.content import Ask, fragments, rand_id, words
from fareway.sim.faults import Fault
from fareway.sim.runtime import BadRequest, Ctx, Dialect, Frame, Parsed, SimState

_JSON = {"Content-Type": "application/json"}
_OK = {
    "Content-Type": "application/json",
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
    "anthropic-ratelimit-tokens-limit": "2400000",
    "anthropic-ratelimit-tokens-remaining": "2400000",
}
_PADS = [b" " * n for n in range(16)]
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _msg_id() -> str:
    return "msg_01" + rand_id(22)


def _request_id() -> str:
    return "req_011C" + rand_id(20)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _block_text(b: dict[str, Any]) -> str:
    t = b.get("type")
    if t == "text":
        return str(b.get("text", ""))
    if t == "tool_use":
        return f"{b.get('name', '')} {orjson.dumps(b.get('input', {})).decode()}"
    if t == "tool_result":
        c = b.get("content")
        if isinstance(c, str):
            return c
        return "\n".join(str(x.get("text", "")) for x in _blocks(c))
    if t == "thinking":
        return str(b.get("thinking", ""))
    return ""


class _Prompt:
    """Segments of the prompt in cache order (tools → system → messages) with breakpoints."""

    __slots__ = ("breakpoints", "h", "key_parts", "total", "ttl")

    def __init__(self) -> None:
        self.h = hashlib.blake2b(digest_size=16)
        self.total = 3
        self.breakpoints: list[tuple[int, bytes]] = []
        self.key_parts: list[str] = []
        self.ttl = "5m"

    def add(self, data: bytes, tokens: int, cache_control: Any) -> None:
        self.h.update(data)
        self.h.update(b"\x00")
        self.total += tokens
        if isinstance(cache_control, dict):
            self.mark(cache_control)

    def mark(self, cache_control: dict[str, Any]) -> None:
        if cache_control.get("ttl") == "1h":
            self.ttl = "1h"
        self.breakpoints.append((self.total, self.h.copy().digest()))


def parse_prompt(data: dict[str, Any]) -> tuple[_Prompt, list[tuple[str, Any]]]:
    p = _Prompt()
    tools: list[tuple[str, Any]] = []
    for t in data.get("tools") or ():
        if not isinstance(t, dict):
            continue
        raw = orjson.dumps(t)
        p.add(raw, len(raw) // 4, t.get("cache_control"))
        if isinstance(t.get("name"), str) and ("input_schema" in t or t.get("type") in (None, "custom")):
            tools.append((t["name"], t.get("input_schema") or {}))
    if tools:
        p.key_parts.append("tools:" + ",".join(n for n, _ in tools))
    system = data.get("system")
    if system:
        texts = []
        for b in _blocks(system):
            text = _block_text(b)
            texts.append(text)
            p.add(text.encode(), words(text), b.get("cache_control"))
        p.key_parts.insert(0, "system:" + "\n".join(texts))
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "messages: Field required")
    for m in messages:
        if not isinstance(m, dict):
            raise BadRequest(400, "messages: each message must be an object")
        role = str(m.get("role", ""))
        p.total += 3
        texts = []
        for b in _blocks(m.get("content")):
            text = _block_text(b)
            texts.append(text)
            p.add(f"{role}:{text}".encode(), words(text), b.get("cache_control"))
        p.key_parts.append(f"{role}:" + "\n".join(texts))
    top = data.get("cache_control")
    if isinstance(top, dict):
        p.mark(top)
    return p, tools


def _output_schema(data: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of structured output: ``output_config.format`` (or the older ``output_format``)."""
    oc = data.get("output_config")
    fmt = oc.get("format") if isinstance(oc, dict) else None
    if fmt is None:
        fmt = data.get("output_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise BadRequest(400, "output_config.format: a json_schema format needs a schema object")
    return dict(fmt["schema"])


def count_tokens_body(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest(400, "the request body must be a JSON object")
    if not isinstance(data.get("model"), str):
        raise BadRequest(400, "model: Field required")
    p, _ = parse_prompt(data)
    return {"input_tokens": p.total}


def _signature(seed: int) -> str:
    raw = hashlib.sha512(seed.to_bytes(8, "little") + b"sig").digest() * 3
    return base64.b64encode(b"\x12\x08" + raw).decode()


class AnthropicDialect(Dialect):
    def __init__(self, state: SimState) -> None:
        self.state = state

    def auth_ok(self, request: web.Request, provider: str) -> bool:
        if request.headers.get("x-api-key"):
            return True
        h = request.headers.get("Authorization", "")
        return h.startswith("Bearer ") and len(h) > 7

    def parse(self, data: Any, provider: str, request: web.Request) -> Parsed:
        if not request.headers.get("anthropic-version"):
            raise BadRequest(400, "anthropic-version: header is required")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(400, "model: Field required")
        max_tokens = data.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise BadRequest(400, "max_tokens: Field required")
        p, tools = parse_prompt(data)
        messages = data["messages"]
        last = messages[-1]
        last_blocks = _blocks(last.get("content"))
        last_is_result = last.get("role") == "user" and any(
            b.get("type") == "tool_result" for b in last_blocks
        )
        echo = None
        if last.get("role") == "user" and last_blocks and last_blocks[0].get("type") == "text":
            t = str(last_blocks[0].get("text", ""))
            if t.startswith("echo:"):
                echo = t[5:].removeprefix(" ")
        tc = data.get("tool_choice")
        mode = "auto"
        parallel = True
        if isinstance(tc, dict):
            kind = tc.get("type")
            if kind == "any":
                mode = "required"
            elif kind == "none":
                mode = "none"
            elif kind == "tool" and isinstance(tc.get("name"), str):
                mode = "tool:" + tc["name"]
            parallel = tc.get("disable_parallel_tool_use") is not True
        thinking = data.get("thinking")
        think = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        stops = data.get("stop_sequences")
        if stops is not None and not (isinstance(stops, list) and all(isinstance(x, str) for x in stops)):
            raise BadRequest(400, "stop_sequences: Input should be a valid list of strings")
        schema = _output_schema(data)
        system_text = "\n".join(_block_text(b) for b in _blocks(data.get("system")))
        last_text = "\n".join(_block_text(b) for b in last_blocks if b.get("type") == "text")
        ask = Ask(
            key="\x00".join(p.key_parts).encode(),
            prompt_tokens=p.total,
            max_tokens=max_tokens,
            tools=tools,
            tool_mode=mode,
            last_is_tool_result=last_is_result,
            echo=echo,
            thinking=think,
            parallel=parallel,
            stop=tuple(x for x in stops or () if x),
            output="json" if schema is not None else "text",
            schema=schema,
            hint=f"{system_text}\n{last_text}" if last.get("role") == "user" else system_text,
        )
        return Parsed(model=model, stream=bool(data.get("stream")), ask=ask, opts={"cache": self._cache(p)})

    def _cache(self, p: _Prompt) -> tuple[int, int, str]:
        """(cache_read, cache_creation, ttl) for this prompt; records the prefixes it writes."""
        if not p.breakpoints:
            return 0, 0, p.ttl
        cache = self.state.prompt_cache
        min_tokens = self.state.config.anthropic_cache_min_tokens
        now = time.monotonic()
        ttl_s = 3600.0 if p.ttl == "1h" else 300.0
        read = 0
        for tokens, digest in p.breakpoints:
            exp = cache.get(digest)
            if exp is not None and exp > now and tokens > read:
                read = tokens
        last_tokens = p.breakpoints[-1][0]
        if last_tokens < min_tokens:
            return 0, 0, p.ttl
        for tokens, digest in p.breakpoints:
            if tokens >= min_tokens:
                cache[digest] = now + ttl_s
        if len(cache) > 100_000:
            for k in [k for k, v in cache.items() if v <= now]:
                del cache[k]
        return read, max(0, last_tokens - read), p.ttl

    # --- rendering -------------------------------------------------------------------------------

    def _usage(self, ctx: Ctx, start: bool) -> dict[str, Any]:
        read, created, ttl = ctx.opts["cache"]
        u: dict[str, Any] = {
            "input_tokens": ctx.prompt_tokens - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }
        if start:
            u["cache_creation"] = {
                "ephemeral_5m_input_tokens": created if ttl != "1h" else 0,
                "ephemeral_1h_input_tokens": created if ttl == "1h" else 0,
            }
        return u

    def _stop_reason(self, ctx: Ctx) -> str:
        r = ctx.reply
        if r.finish == "stop" and r.stop_sequence is not None:
            return "stop_sequence"
        return {"tool": "tool_use", "length": "max_tokens"}.get(r.finish, "end_turn")

    def render_json(self, ctx: Ctx) -> bytes:
        r = ctx.reply
        content: list[dict[str, Any]] = []
        if r.thinking:
            content.append(
                {"type": "thinking", "thinking": "".join(r.thinking), "signature": _signature(r.seed)}
            )
        if r.pieces or not (r.tool_calls or r.thinking):
            content.append({"type": "text", "text": r.text})
        for c in r.tool_calls:
            content.append(
                {"type": "tool_use", "id": "toolu_01" + rand_id(22), "name": c.name, "input": c.args}
            )
        usage = self._usage(ctx, True)
        usage["output_tokens"] = r.output_tokens
        usage["service_tier"] = "standard"
        body = {
            "model": ctx.model,
            "id": _msg_id(),
            "type": "message",
            "role": "assistant",
            "content": content,
            "stop_reason": self._stop_reason(ctx),
            "stop_sequence": r.stop_sequence,
            "usage": usage,
        }
        return orjson.dumps(body)

    def _ev(self, ctx: Ctx, name: bytes, obj: dict[str, Any]) -> bytes:
        data = orjson.dumps(obj)
        pad = _PADS[ctx.rng.randrange(16)]
        return b"event: " + name + b"\ndata: " + data[:-1] + pad + b"}\n\n"

    def render_frames(self, ctx: Ctx) -> list[Frame]:
        r = ctx.reply
        ev = self._ev
        out: list[Frame] = []
        start_usage = self._usage(ctx, True)
        start_usage["output_tokens"] = 1
        start_usage["service_tier"] = "standard"
        msg: dict[str, Any] = {
            "model": ctx.model,
            "id": _msg_id(),
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        out.append((ev(ctx, b"message_start", {"type": "message_start", "message": msg}), 0))
        idx = 0
        pinged = False

        def block_start(block: dict[str, Any]) -> None:
            nonlocal pinged
            out.append(
                (
                    ev(
                        ctx,
                        b"content_block_start",
                        {"type": "content_block_start", "index": idx, "content_block": block},
                    ),
                    0,
                )
            )
            if not pinged:
                out.append((b'event: ping\ndata: {"type": "ping"}\n\n', 0))
                pinged = True

        def delta(d: dict[str, Any], tokens: int) -> None:
            out.append(
                (
                    ev(
                        ctx, b"content_block_delta", {"type": "content_block_delta", "index": idx, "delta": d}
                    ),
                    tokens,
                )
            )

        def block_stop() -> None:
            nonlocal idx
            out.append((ev(ctx, b"content_block_stop", {"type": "content_block_stop", "index": idx}), 0))
            idx += 1

        if r.thinking:
            block_start({"type": "thinking", "thinking": "", "signature": ""})
            for i in range(0, len(r.thinking), 2):
                delta(
                    {"type": "thinking_delta", "thinking": "".join(r.thinking[i : i + 2])},
                    len(r.thinking[i : i + 2]),
                )
            delta({"type": "signature_delta", "signature": _signature(r.seed)}, 0)
            block_stop()
        if r.pieces or not (r.tool_calls or r.thinking):
            block_start({"type": "text", "text": ""})
            for i in range(0, len(r.pieces), 2):
                delta({"type": "text_delta", "text": "".join(r.pieces[i : i + 2])}, len(r.pieces[i : i + 2]))
            block_stop()
        for c in r.tool_calls:
            block_start({"type": "tool_use", "id": "toolu_01" + rand_id(22), "name": c.name, "input": {}})
            delta({"type": "input_json_delta", "partial_json": ""}, 1)
            if c.args:
                for piece in fragments(c.arguments, ctx.rng):
                    delta({"type": "input_json_delta", "partial_json": piece}, 1)
            block_stop()
        final = self._usage(ctx, False)
        final["output_tokens"] = r.output_tokens
        md = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason(ctx), "stop_sequence": r.stop_sequence},
            "usage": final,
        }
        out.append((ev(ctx, b"message_delta", md), 0))
        out.append((ev(ctx, b"message_stop", {"type": "message_stop"}), 0))
        return out

    # --- errors ----------------------------------------------------------------------------------

    def error_response(
        self,
        provider: str,
        status: int,
        message: str,
        etype: str | None = None,
        code: Any = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> web.Response:
        etype = _TYPES.get(status, "api_error") if etype is None or etype not in _TYPES.values() else etype
        rid = _request_id()
        body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": rid}
        h = {**_JSON, "request-id": rid, **(headers or {})}
        return web.Response(body=orjson.dumps(body), status=status, headers=h)

    def fault_response(self, provider: str, fault: Fault) -> web.Response:
        kind = fault.kind
        ra = fault.retry_after if fault.retry_after is not None else 1.0
        if kind == "429":
            return self.error_response(
                provider,
                429,
                fault.message
                or "This request would exceed the rate limit for your organization (simulated).",
                "rate_limit_error",
                headers=_ratelimit_headers(ra),
            )
        if kind == "quota":
            msg = fault.message or "Your credit balance is too low to access the Anthropic API."
            return self.error_response(provider, 402, msg, "billing_error")
        status = fault.status or (529 if kind == "stream_error" else int(kind))
        msg = fault.message or ("Overloaded" if status == 529 else "Internal server error")
        headers = {"retry-after": str(max(1, round(ra)))} if fault.retry_after is not None else None
        return self.error_response(provider, status, msg, None, None, headers)

    def stream_error_frames(self, ctx: Ctx, fault: Fault) -> bytes:
        status = fault.status or 529
        etype = _TYPES.get(status, "api_error")
        msg = fault.message or ("Overloaded" if status == 529 else "Internal server error")
        body = {"type": "error", "error": {"type": etype, "message": msg}, "request_id": _request_id()}
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

    def success_headers(self, provider: str) -> dict[str, str]:
        return _OK


def _ratelimit_headers(retry_after: float) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=retry_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
    h = {"retry-after": str(max(1, round(retry_after)))}
    for bucket, limit in (
        ("requests", "4000"),
        ("tokens", "2400000"),
        ("input-tokens", "2000000"),
        ("output-tokens", "400000"),
    ):
        h[f"anthropic-ratelimit-{bucket}-limit"] = limit
        h[f"anthropic-ratelimit-{bucket}-remaining"] = "0"
        h[f"anthropic-ratelimit-{bucket}-reset"] = reset
    return h
