"""OpenAI Chat Completions, as OpenAI and each OpenAI-compatible provider really shape it.

Per-provider differences are a :class:`Flavor` row (see ../shared/fixtures for the recordings each
row follows): OpenAI (chatcmpl ids, ``system_fingerprint``, ``service_tier``, ``*_tokens_details``,
a ``choices: []`` usage chunk only with ``include_usage``), Cerebras (top-level ``time_info``,
usage on the last chunk, flat error bodies, ``{"error":..,"status_code":N}`` in-stream errors), Groq
(``x_groq``, timings inside usage, usage on the finish chunk always, tool calls whole, ``event:
error`` in-stream), Mistral (hex ids, usage on the finish chunk, flat ``{"object":"error"}`` bodies,
9-character tool-call ids enforced), OpenRouter (``gen-`` ids, ``provider``, ``native_finish_reason``,
``usage.cost``, ``: OPENROUTER PROCESSING`` comments, a usage chunk that repeats a choice, errors as a
chunk with a top-level ``error``).  xAI, DeepInfra and any other name get the plain OpenAI shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.content import Ask, fragments, rand_hex, rand_id, rand_uuid, words
from fareway.sim.faults import Fault
from fareway.sim.runtime import BadRequest, Ctx, Dialect, Frame, Parsed
from fareway.sse import frame

_JSON = {"Content-Type": "application/json"}
_DONE = b"data: [DONE]\n\n"
_MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    ids: str = "openai"  # openai | uuid | hex | gen
    tool_ids: str = "call"  # call | nine | fc
    fingerprint: bool = True
    service_tier: str | None = "default"
    logprobs: bool = True
    message: str = "openai"  # openai | plain | mistral | openrouter
    usage: str = "openai"  # openai | cerebras | groq | mistral | openrouter
    usage_mode: str = "chunk"  # chunk | last | finish | groq | openrouter
    tools_whole: bool = False
    stream_error: str = "openai"  # openai | groq | cerebras | openrouter
    errors: str = "openai"  # openai | groq | flat | mistral | openrouter
    ratelimit: str = "openai"  # openai | cerebras | none
    retry_after_ms: bool = False
    check_tool_ids: bool = False
    keepalive: bytes | None = None
    reasoning: str | None = "reasoning_content"
    """Field carrying reasoning text in messages and deltas; None keeps it hidden (tokens only)."""


OPENAI = Flavor("openai", retry_after_ms=True, reasoning=None)
FLAVORS: dict[str, Flavor] = {
    "openai": OPENAI,
    "cerebras": Flavor(
        "cerebras",
        ids="uuid",
        tool_ids="nine",
        service_tier=None,
        logprobs=False,
        message="plain",
        usage="cerebras",
        usage_mode="last",
        stream_error="cerebras",
        errors="flat",
        ratelimit="cerebras",
        reasoning="reasoning",
    ),
    "groq": Flavor(
        "groq",
        ids="uuid",
        tool_ids="fc",
        service_tier="on_demand",
        message="plain",
        usage="groq",
        usage_mode="groq",
        tools_whole=True,
        stream_error="groq",
        errors="groq",
        reasoning="reasoning",
    ),
    "mistral": Flavor(
        "mistral",
        ids="hex",
        tool_ids="nine",
        fingerprint=False,
        service_tier=None,
        logprobs=False,
        message="mistral",
        usage="mistral",
        usage_mode="finish",
        tools_whole=True,
        errors="mistral",
        check_tool_ids=True,
        reasoning=None,
    ),
    "openrouter": Flavor(
        "openrouter",
        ids="gen",
        tool_ids="call",
        fingerprint=False,
        service_tier=None,
        message="openrouter",
        usage="openrouter",
        usage_mode="openrouter",
        stream_error="openrouter",
        errors="openrouter",
        ratelimit="none",
        keepalive=b": OPENROUTER PROCESSING\n\n",
        reasoning="reasoning",
    ),
}


def flavor_of(provider: str) -> Flavor:
    f = FLAVORS.get(provider)
    return f if f is not None else replace(OPENAI, name=provider, retry_after_ms=False, service_tier=None)


def _completion_id(fl: Flavor, created: int) -> str:
    if fl.ids == "uuid":
        return "chatcmpl-" + rand_uuid()
    if fl.ids == "hex":
        return rand_hex(32)
    if fl.ids == "gen":
        return f"gen-{created}-{rand_id(20)}"
    return "chatcmpl-" + rand_id(29)


def _tool_id(fl: Flavor) -> str:
    if fl.tool_ids == "nine":
        return rand_id(9)
    if fl.tool_ids == "fc":
        return "fc_" + rand_uuid()
    return "call_" + rand_id(24)


def _fingerprint(ctx: Ctx) -> str:
    return "fp_" + "%010x" % (ctx.reply.seed & 0xFFFFFFFFFF)


def _or_provider(model: str) -> str:
    head = model.split("/", 1)[0] if "/" in model else ""
    return {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google", "mistralai": "Mistral"}.get(
        head, "SimCloud"
    )


# --- request --------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for p in content:
            if isinstance(p, dict):
                t = p.get("text")
                if isinstance(t, str):
                    out.append(t)
            elif isinstance(p, str):
                out.append(p)
        return "\n".join(out)
    return ""


def parse_chat(data: dict[str, Any], fl: Flavor) -> Parsed:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(400, "you must provide a model parameter")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "'messages' must be a non-empty array", code="invalid_value")
    key_parts: list[str] = []
    n_words = 0
    for m in messages:
        if not isinstance(m, dict):
            raise BadRequest(400, "each message must be an object", code="invalid_value")
        role = str(m.get("role", ""))
        text = _text_of(m.get("content"))
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {} if isinstance(tc, dict) else {}
            text += f"\n{fn.get('name', '')} {fn.get('arguments', '')}"
            if fl.check_tool_ids:
                _check_mistral_id(tc.get("id") if isinstance(tc, dict) else None)
        if fl.check_tool_ids and role == "tool":
            _check_mistral_id(m.get("tool_call_id"))
        n_words += words(text)
        key_parts.append(f"{'system' if role == 'developer' else role}:{text}")
    tools: list[tuple[str, Any]] = []
    raw_tools = data.get("tools") or []
    for t in raw_tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            tools.append((fn["name"], fn.get("parameters") or {}))
    prompt = n_words + 3 * len(messages) + 3
    if tools:
        prompt += len(orjson.dumps(raw_tools)) // 4
        key_parts.append("tools:" + ",".join(n for n, _ in tools))
    tc = data.get("tool_choice")
    mode = "auto"
    if tc in ("none", "required", "auto"):
        mode = tc
    elif tc == "any":
        mode = "required"
    elif isinstance(tc, dict):
        name = (tc.get("function") or {}).get("name")
        if isinstance(name, str):
            mode = "tool:" + name
    last = messages[-1]
    echo = None
    if last.get("role") == "user":
        lt = _text_of(last.get("content"))
        if lt.startswith("echo:"):
            echo = lt[5:].removeprefix(" ")
    max_tokens = data.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = data.get("max_tokens")
    effort = data.get("reasoning_effort")
    rfmt = data.get("reasoning_format")
    orr = data.get("reasoning")
    thinking = (
        "gpt-oss" in model
        or effort not in (None, "none")
        or (isinstance(orr, dict) and orr.get("enabled", True))
    )
    if effort == "none" or rfmt == "hidden" or data.get("disable_reasoning") is True:
        thinking = False
    so = data.get("stream_options")
    include_usage = bool(isinstance(so, dict) and so.get("include_usage"))
    ask = Ask(
        key="\x00".join(key_parts).encode(),
        prompt_tokens=prompt,
        max_tokens=int(max_tokens) if isinstance(max_tokens, int | float) and max_tokens > 0 else None,
        tools=tools,
        tool_mode=mode,
        last_is_tool_result=last.get("role") == "tool",
        echo=echo,
        thinking=thinking,
    )
    return Parsed(
        model=model, stream=bool(data.get("stream")), ask=ask, opts={"include_usage": include_usage}
    )


def _check_mistral_id(tid: Any) -> None:
    if not isinstance(tid, str) or not _MISTRAL_ID.match(tid):
        raise BadRequest(
            400, f"Tool call id was {tid} but must be a-z, A-Z, 0-9, with a length of 9.", code="3280"
        )


# --- response pieces ------------------------------------------------------------------------------


def _finish_reason(ctx: Ctx) -> str:
    f = ctx.reply.finish
    return "tool_calls" if f == "tool" else f


def _usage(fl: Flavor, ctx: Ctx, stream: bool) -> dict[str, Any]:
    p = ctx.prompt_tokens
    c = ctx.reply.output_tokens
    r = ctx.reply.thinking_tokens
    u = _usage_body(fl, ctx, stream, p, c, r)
    if r and fl.usage in ("groq", "cerebras"):
        u["completion_tokens_details"] = {"reasoning_tokens": r}
    return u


def _usage_body(fl: Flavor, ctx: Ctx, stream: bool, p: int, c: int, r: int) -> dict[str, Any]:
    if fl.usage == "openai":
        return {
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": r,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    if fl.usage == "groq":
        t = _timings(ctx)
        return {
            "queue_time": t["queue_time"],
            "prompt_tokens": p,
            "prompt_time": t["prompt_time"],
            "completion_tokens": c,
            "completion_time": t["completion_time"],
            "total_tokens": p + c,
            "total_time": t["total_time"],
        }
    if fl.usage == "mistral":
        u: dict[str, Any] = {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}
        if not stream:
            u["prompt_tokens_details"] = {"cached_tokens": 0}
        return u
    if fl.usage == "openrouter":
        cost = round((p * 0.15 + c * 0.6) / 1e6, 9)
        return {
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "cost": cost,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "cost_details": {"upstream_inference_cost": None},
            "completion_tokens_details": {"reasoning_tokens": r},
        }
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _timings(ctx: Ctx) -> dict[str, float]:
    queue = round(0.1 * ctx.ttft + 0.0002, 9)
    prompt = round(0.9 * ctx.ttft + ctx.prompt_tokens * 2e-6, 9)
    completion = round(ctx.reply.output_tokens * 1e-4, 9)
    return {
        "queue_time": queue,
        "prompt_time": prompt,
        "completion_time": completion,
        "total_time": round(queue + prompt + completion, 9),
    }


def _time_info(ctx: Ctx) -> dict[str, Any]:
    t = _timings(ctx)
    return {
        "queue_time": t["queue_time"],
        "prompt_time": t["prompt_time"],
        "completion_time": t["completion_time"],
        "total_time": t["total_time"],
        "created": float(ctx.created),
    }


def _tool_calls(fl: Flavor, ctx: Ctx) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(ctx.reply.tool_calls):
        fn = {"name": c.name, "arguments": c.arguments}
        if fl.message == "mistral":
            out.append({"id": _tool_id(fl), "function": fn, "index": i})
        elif fl.message == "openrouter":
            out.append({"index": i, "id": _tool_id(fl), "type": "function", "function": fn})
        else:
            out.append({"id": _tool_id(fl), "type": "function", "function": fn})
    return out


def _message(fl: Flavor, ctx: Ctx) -> dict[str, Any]:
    m = _message_body(fl, ctx)
    if fl.reasoning and ctx.reply.thinking:
        m[fl.reasoning] = "".join(ctx.reply.thinking)
        if fl.message == "openrouter":
            m["reasoning_details"] = [
                {"type": "reasoning.text", "text": m[fl.reasoning], "format": "unknown", "index": 0}
            ]
    return m


def _message_body(fl: Flavor, ctx: Ctx) -> dict[str, Any]:
    text = ctx.reply.text
    calls = _tool_calls(fl, ctx) if ctx.reply.tool_calls else None
    if fl.message == "openai":
        m: dict[str, Any] = {"role": "assistant", "content": None if calls else text}
        if calls:
            m["tool_calls"] = calls
        m["refusal"] = None
        m["annotations"] = []
        return m
    if fl.message == "mistral":
        return {"role": "assistant", "tool_calls": calls, "content": text}
    if fl.message == "openrouter":
        m = {"role": "assistant", "content": text, "refusal": None, "reasoning": None}
        if calls:
            m["tool_calls"] = calls
        return m
    if calls:
        return {"role": "assistant", "tool_calls": calls}
    return {"role": "assistant", "content": text}


def render_completion(fl: Flavor, ctx: Ctx) -> bytes:
    fr = _finish_reason(ctx)
    msg = _message(fl, ctx)
    cid = _completion_id(fl, ctx.created)
    usage = _usage(fl, ctx, False)
    if fl.name == "cerebras":
        body: dict[str, Any] = {
            "id": cid,
            "choices": [{"finish_reason": fr, "index": 0, "message": msg}],
            "created": ctx.created,
            "model": ctx.model,
            "system_fingerprint": _fingerprint(ctx),
            "object": "chat.completion",
            "usage": usage,
            "time_info": _time_info(ctx),
        }
        return orjson.dumps(body)
    if fl.message == "openrouter":
        body = {
            "id": cid,
            "provider": _or_provider(ctx.model),
            "model": ctx.model,
            "object": "chat.completion",
            "created": ctx.created,
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": fr,
                    "native_finish_reason": fr,
                    "index": 0,
                    "message": msg,
                }
            ],
            "usage": usage,
            "system_fingerprint": None,
        }
        return orjson.dumps(body)
    choice: dict[str, Any] = {"index": 0, "message": msg}
    if fl.logprobs:
        choice["logprobs"] = None
    choice["finish_reason"] = fr
    body = {"id": cid, "object": "chat.completion", "created": ctx.created, "model": ctx.model}
    body["choices"] = [choice]
    body["usage"] = usage
    if fl.name == "groq":
        body["usage_breakdown"] = None
        body["system_fingerprint"] = _fingerprint(ctx)
        body["x_groq"] = {"id": "req_" + rand_id(26, "0123456789abcdefghjkmnpqrstvwxyz")}
        body["service_tier"] = fl.service_tier
        return orjson.dumps(body)
    if fl.service_tier is not None:
        body["service_tier"] = fl.service_tier
    if fl.fingerprint:
        body["system_fingerprint"] = _fingerprint(ctx)
    return orjson.dumps(body)


class _Chunker:
    """Builds chunk frames around a pre-serialised common head."""

    __slots__ = ("fl", "head", "tail")

    def __init__(self, fl: Flavor, ctx: Ctx, include_usage: bool) -> None:
        self.fl = fl
        cid = _completion_id(fl, ctx.created)
        if fl.name == "cerebras":
            head: dict[str, Any] = {"id": cid}
        elif fl.message == "openrouter":
            head = {
                "id": cid,
                "provider": _or_provider(ctx.model),
                "model": ctx.model,
                "object": "chat.completion.chunk",
                "created": ctx.created,
            }
        else:
            head = {"id": cid, "object": "chat.completion.chunk", "created": ctx.created, "model": ctx.model}
            if fl.service_tier is not None and fl.usage_mode == "chunk":
                head["service_tier"] = fl.service_tier
            if fl.fingerprint:
                head["system_fingerprint"] = _fingerprint(ctx)
        self.head = orjson.dumps(head)[:-1] + b',"choices":'
        if fl.name == "cerebras":
            tail = {
                "created": ctx.created,
                "model": ctx.model,
                "system_fingerprint": _fingerprint(ctx),
                "object": "chat.completion.chunk",
            }
            self.tail = b"," + orjson.dumps(tail)[1:-1]
        elif fl.usage_mode == "chunk" and include_usage:
            self.tail = b',"usage":null'
        else:
            self.tail = b""

    def choice(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        fl = self.fl
        if fl.name == "cerebras":
            return {"delta": delta, "finish_reason": finish, "index": 0}
        if fl.message == "openrouter":
            return {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": None,
            }
        c: dict[str, Any] = {"index": 0, "delta": delta}
        if fl.logprobs:
            c["logprobs"] = None
        c["finish_reason"] = finish
        return c

    def chunk(self, choices: list[Any], extra: dict[str, Any] | None = None, tail: bool = True) -> bytes:
        body = self.head + orjson.dumps(choices) + (self.tail if tail else b"")
        if extra:
            body += b"," + orjson.dumps(extra)[1:-1]
        return frame(body + b"}")


def render_chunks(fl: Flavor, ctx: Ctx) -> list[Frame]:
    include_usage = bool(ctx.opts.get("include_usage"))
    ch = _Chunker(fl, ctx, include_usage)
    reply = ctx.reply
    out: list[Frame] = []
    orr = fl.message == "openrouter"
    groq_id = "req_" + rand_id(26, "0123456789abcdefghjkmnpqrstvwxyz") if fl.name == "groq" else ""
    first_extra = {"x_groq": {"id": groq_id, "seed": reply.seed & 0x7FFFFFFF}} if groq_id else None

    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", **d} if orr else d

    def reasoning_frames() -> None:
        field = fl.reasoning
        if not field:
            return
        for piece in reply.thinking:
            d: dict[str, Any] = {field: piece}
            if fl.name == "groq":
                d["channel"] = "analysis"
            elif orr:
                d = {
                    "role": "assistant",
                    "content": "",
                    field: piece,
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}
                    ],
                }
            out.append((ch.chunk([ch.choice(d)]), 1))

    if reply.tool_calls:
        calls = _tool_calls(fl, ctx)
        if fl.tools_whole:
            first = {"role": "assistant", "content": ""}
            out.append((ch.chunk([ch.choice(first)], first_extra), 0))
            reasoning_frames()
            whole = []
            for i, c in enumerate(calls):
                if fl.message == "mistral":
                    whole.append(c)
                else:
                    whole.append({"id": c["id"], "type": "function", "function": c["function"], "index": i})
            out.append((ch.chunk([ch.choice({"tool_calls": whole})]), reply.output_tokens))
        else:
            if reply.thinking and fl.reasoning:
                out.append(
                    (ch.chunk([ch.choice(delta({"role": "assistant", "content": ""}))], first_extra), 0)
                )
                first_extra = None
                reasoning_frames()
            for i, c in enumerate(calls):
                fn = c["function"]
                header = {
                    "index": i,
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": fn["name"], "arguments": ""},
                }
                d: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [header]}
                if fl.name == "openai" and i == 0:
                    d["refusal"] = None
                elif i > 0:
                    d = delta({"tool_calls": [header]})
                out.append((ch.chunk([ch.choice(d)], first_extra if i == 0 else None), 1))
                frags = fragments(fn["arguments"], ctx.rng)
                for piece in frags:
                    fd = delta({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                    out.append((ch.chunk([ch.choice(fd)]), 1))
    else:
        first = {"role": "assistant", "content": ""}
        if fl.name == "openai":
            first["refusal"] = None  # type: ignore[assignment]
        out.append((ch.chunk([ch.choice(first)], first_extra), 0))
        reasoning_frames()
        for piece in reply.pieces:
            out.append((ch.chunk([ch.choice(delta({"content": piece}))]), 1))

    fr = _finish_reason(ctx)
    mode = fl.usage_mode
    usage = _usage(fl, ctx, True)
    if mode == "groq":
        extra = {"x_groq": {"id": groq_id, "usage": usage}, "usage": usage}
        out.append((ch.chunk([ch.choice({}, fr)], extra), 0))
    elif mode == "finish":
        out.append((ch.chunk([ch.choice({"content": ""}, fr)], {"usage": usage}), 0))
    elif mode == "last":
        out.append((ch.chunk([ch.choice({}, fr)], {"usage": usage, "time_info": _time_info(ctx)}), 0))
    elif mode == "openrouter":
        out.append((ch.chunk([ch.choice(delta({"content": ""}), fr)]), 0))
        if include_usage:
            out.append((ch.chunk([ch.choice(delta({"content": ""}))], {"usage": usage}), 0))
    else:
        out.append((ch.chunk([ch.choice({}, fr)]), 0))
        if include_usage:
            out.append((ch.chunk([], {"usage": usage}, tail=False), 0))
    out.append((_DONE, 0))
    return out


# --- errors ---------------------------------------------------------------------------------------

_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_error",
    529: "server_error",
}


def error_body(fl: Flavor, status: int, message: str, etype: str | None, code: Any) -> bytes:
    etype = etype or _DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if fl.errors == "groq":
        return orjson.dumps({"error": {"message": message, "type": etype, "code": code}})
    if fl.errors == "flat":
        return orjson.dumps({"message": message, "type": etype, "param": None, "code": code})
    if fl.errors == "mistral":
        return orjson.dumps(
            {"object": "error", "message": message, "type": etype, "param": None, "code": code}
        )
    if fl.errors == "openrouter":
        return orjson.dumps(
            {"error": {"code": status, "message": message, "metadata": {"provider_name": None}}}
        )
    if status == 401 and etype == "authentication_error":
        etype = "invalid_request_error"
        code = code or "invalid_api_key"
    return orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}})


def ratelimit_headers(fl: Flavor, retry_after: float) -> dict[str, str]:
    secs = f"{retry_after:g}"
    h = {"retry-after": str(max(1, round(retry_after)))}
    if fl.retry_after_ms:
        h["retry-after-ms"] = str(int(retry_after * 1000))
    if fl.ratelimit == "openai":
        h.update(
            {
                "x-ratelimit-limit-requests": "10000",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{secs}s",
                "x-ratelimit-limit-tokens": "2000000",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": f"{secs}s",
            }
        )
    elif fl.ratelimit == "cerebras":
        h.update(
            {
                "x-ratelimit-limit-requests-day": "14400",
                "x-ratelimit-remaining-requests-day": "0",
                "x-ratelimit-reset-requests-day": f"{retry_after:.2f}",
                "x-ratelimit-limit-tokens-minute": "60000",
                "x-ratelimit-remaining-tokens-minute": "0",
                "x-ratelimit-reset-tokens-minute": f"{retry_after:.2f}",
            }
        )
    return h


_OK_HEADERS: dict[str, dict[str, str]] = {
    "openai": {
        "Content-Type": "application/json",
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-tokens": "1999000",
        "x-ratelimit-reset-tokens": "30ms",
    },
}


class OpenAIDialect(Dialect):
    def auth_ok(self, request: web.Request, provider: str) -> bool:
        h = request.headers.get("Authorization", "")
        return h.startswith("Bearer ") and len(h) > 7

    def parse(self, data: Any, provider: str, request: web.Request) -> Parsed:
        return parse_chat(data, flavor_of(provider))

    def error_response(
        self,
        provider: str,
        status: int,
        message: str,
        etype: str | None = None,
        code: Any = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = error_body(flavor_of(provider), status, message, etype, code)
        return web.Response(body=body, status=status, headers={**_JSON, **(headers or {})})

    def fault_response(self, provider: str, fault: Fault) -> web.Response:
        fl = flavor_of(provider)
        kind = fault.kind
        ra = fault.retry_after if fault.retry_after is not None else 1.0
        if kind == "429":
            msg = (
                fault.message
                or f"Rate limit reached for requests on {provider} (simulated). Please try again in {ra:g}s."
            )
            etype = "tokens" if fl.name == "openai" else "rate_limit_exceeded"
            return self.error_response(
                provider, 429, msg, etype, "rate_limit_exceeded", ratelimit_headers(fl, ra)
            )
        if kind == "quota":
            msg = (
                fault.message
                or "You exceeded your current quota, please check your plan and billing details."
            )
            return self.error_response(
                provider, 429, msg, "insufficient_quota", "insufficient_quota", ratelimit_headers(fl, ra)
            )
        status = fault.status or (500 if kind == "stream_error" else int(kind))
        msg = fault.message or (
            "The server had an error while processing your request. Sorry about that!"
            if status == 500
            else "The engine is currently overloaded, please try again later."
        )
        headers = {"retry-after": str(max(1, round(ra)))} if fault.retry_after is not None else None
        return self.error_response(provider, status, msg, None, None, headers)

    def success_headers(self, provider: str) -> dict[str, str]:
        return _OK_HEADERS.get(provider, _JSON)

    def keepalive_for(self, provider: str) -> bytes | None:
        return flavor_of(provider).keepalive

    def render_json(self, ctx: Ctx) -> bytes:
        return render_completion(flavor_of(ctx.provider), ctx)

    def render_frames(self, ctx: Ctx) -> list[Frame]:
        return render_chunks(flavor_of(ctx.provider), ctx)

    def stream_error_frames(self, ctx: Ctx, fault: Fault) -> bytes:
        fl = flavor_of(ctx.provider)
        status = fault.status or 500
        msg = fault.message or "Internal server error (simulated stream fault)"
        if fl.stream_error == "groq":
            err = {
                "message": msg,
                "type": "internal_server_error",
                "code": "internal_server_error",
                "status_code": status,
            }
            return frame(orjson.dumps({"error": err}), "error")
        if fl.stream_error == "cerebras":
            err = {
                "id": rand_hex(16),
                "code": "internal_error",
                "message": msg,
                "param": None,
                "type": "server_error",
            }
            return frame(orjson.dumps({"error": err, "status_code": status}))
        if fl.stream_error == "openrouter":
            ch = _Chunker(fl, ctx, False)
            choice = ch.choice({"role": "assistant", "content": ""}, "error")
            return ch.chunk([choice], {"error": {"code": status, "message": msg}}) + _DONE
        err = {"message": msg, "type": "server_error", "param": None, "code": None}
        return frame(orjson.dumps({"error": err}))


def models_body(provider: str, ids: list[str]) -> bytes:
    owner = {"cerebras": "Cerebras", "groq": "Groq", "mistral": "mistralai", "openai": "system"}.get(
        provider, provider
    )
    data = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in ids]
    return orjson.dumps({"object": "list", "data": data})
