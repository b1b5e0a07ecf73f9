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

Each choice of ``n`` renders the same way under its own ``index``; streamed choices interleave chunk by
chunk and finish one by one before the usage chunk.  With ``logprobs`` each choice carries
``logprobs.content`` entries (token, logprob, bytes, ``top_logprobs``), streamed one per content chunk,
on the flavors that have the field.  Requests are read in :mod:`fareway.sim.openai_request`, flavors
live in :mod:`fareway.sim.openai_flavor`.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from fareway.sim.content import Reply, fragments, logprob_entries, rand_hex, rand_id
from fareway.sim.faults import Fault
from fareway.sim.openai_flavor import FLAVORS, OPENAI, Flavor, completion_id, flavor_of, tool_id
from fareway.sim.openai_request import parse_chat
from fareway.sim.runtime import Ctx, Dialect, Frame, Parsed
from fareway.sse import frame

__all__ = ["FLAVORS", "OPENAI", "Flavor", "OpenAIDialect", "flavor_of", "models_body", "parse_chat"]

_JSON = {"Content-Type": "application/json"}
_DONE = b"data: [DONE]\n\n"


def _fingerprint(ctx: Ctx) -> str:
    return "fp_" + "%010x" % (ctx.reply.seed & 0xFFFFFFFFFF)


def _or_provider(model: str) -> str:
    head = model.split("/", 1)[0] if "/" in model else ""
    return {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google", "mistralai": "Mistral"}.get(
        head, "SimCloud"
    )


# --- response pieces ------------------------------------------------------------------------------


def _finish_reason(reply: Reply) -> str:
    f = reply.finish
    return "tool_calls" if f == "tool" else f


def _replies(ctx: Ctx) -> list[Reply]:
    return ctx.replies or [ctx.reply]


def _usage(fl: Flavor, ctx: Ctx, stream: bool) -> dict[str, Any]:
    p = ctx.prompt_tokens
    c = ctx.output_tokens
    r = sum(x.thinking_tokens for x in _replies(ctx))
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
    completion = round(ctx.output_tokens * 1e-4, 9)
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


def _tool_calls(fl: Flavor, reply: Reply) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(reply.tool_calls):
        fn = {"name": c.name, "arguments": c.arguments}
        if fl.message == "mistral":
            out.append({"id": tool_id(fl), "function": fn, "index": i})
        elif fl.message == "openrouter":
            out.append({"index": i, "id": tool_id(fl), "type": "function", "function": fn})
        else:
            out.append({"id": tool_id(fl), "type": "function", "function": fn})
    return out


def _message(fl: Flavor, reply: Reply) -> dict[str, Any]:
    m = _message_body(fl, reply)
    if fl.reasoning and reply.thinking:
        m[fl.reasoning] = "".join(reply.thinking)
        if fl.message == "openrouter":
            m["reasoning_details"] = [
                {"type": "reasoning.text", "text": m[fl.reasoning], "format": "unknown", "index": 0}
            ]
    return m


def _message_body(fl: Flavor, reply: Reply) -> dict[str, Any]:
    text = reply.text
    calls = _tool_calls(fl, reply) if reply.tool_calls else None
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


def _logprobs(fl: Flavor, ctx: Ctx, reply: Reply) -> dict[str, Any] | None:
    """The ``logprobs`` object of a whole choice, or None when not asked (or not offered)."""
    top = ctx.opts.get("logprobs")
    if top is None or not fl.logprobs:
        return None
    if reply.tool_calls and not reply.pieces:
        return {"content": None, "refusal": None}
    return {"content": logprob_entries(reply.pieces, reply.seed, top), "refusal": None}


def _choice_json(fl: Flavor, ctx: Ctx, index: int, reply: Reply) -> dict[str, Any]:
    fr = _finish_reason(reply)
    msg = _message(fl, reply)
    if fl.name == "cerebras":
        return {"finish_reason": fr, "index": index, "message": msg}
    if fl.message == "openrouter":
        return {
            "logprobs": _logprobs(fl, ctx, reply),
            "finish_reason": fr,
            "native_finish_reason": fr,
            "index": index,
            "message": msg,
        }
    choice: dict[str, Any] = {"index": index, "message": msg}
    if fl.logprobs:
        choice["logprobs"] = _logprobs(fl, ctx, reply)
    choice["finish_reason"] = fr
    return choice


def render_completion(fl: Flavor, ctx: Ctx) -> bytes:
    choices = [_choice_json(fl, ctx, i, r) for i, r in enumerate(_replies(ctx))]
    cid = completion_id(fl, ctx.created)
    usage = _usage(fl, ctx, False)
    if fl.name == "cerebras":
        body: dict[str, Any] = {
            "id": cid,
            "choices": choices,
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
            "choices": choices,
            "usage": usage,
            "system_fingerprint": None,
        }
        return orjson.dumps(body)
    body = {"id": cid, "object": "chat.completion", "created": ctx.created, "model": ctx.model}
    body["choices"] = choices
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
        cid = completion_id(fl, ctx.created)
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

    def choice(
        self,
        delta: dict[str, Any],
        finish: str | None = None,
        index: int = 0,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        fl = self.fl
        if fl.name == "cerebras":
            return {"delta": delta, "finish_reason": finish, "index": index}
        if fl.message == "openrouter":
            return {
                "index": index,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": logprobs,
            }
        c: dict[str, Any] = {"index": index, "delta": delta}
        if fl.logprobs:
            c["logprobs"] = logprobs
        c["finish_reason"] = finish
        return c

    def chunk(self, choices: list[Any], extra: dict[str, Any] | None = None, tail: bool = True) -> bytes:
        body = self.head + orjson.dumps(choices) + (self.tail if tail else b"")
        if extra:
            body += b"," + orjson.dumps(extra)[1:-1]
        return frame(body + b"}")


def _content_frames(
    fl: Flavor, ctx: Ctx, ch: _Chunker, reply: Reply, index: int, first_extra: dict[str, Any] | None
) -> list[Frame]:
    """The frames of one choice up to (not including) its finish chunk."""
    out: list[Frame] = []
    orr = fl.message == "openrouter"

    def choice(d: dict[str, Any], lp: dict[str, Any] | None = None) -> dict[str, Any]:
        return ch.choice(d, None, index, lp)

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
            out.append((ch.chunk([choice(d)]), 1))

    if reply.tool_calls:
        calls = _tool_calls(fl, reply)
        if fl.tools_whole:
            first = {"role": "assistant", "content": ""}
            out.append((ch.chunk([choice(first)], first_extra), 0))
            reasoning_frames()
            whole = []
            for i, c in enumerate(calls):
                if fl.message == "mistral":
                    whole.append(c)
                else:
                    whole.append({"id": c["id"], "type": "function", "function": c["function"], "index": i})
            out.append((ch.chunk([choice({"tool_calls": whole})]), reply.output_tokens))
        else:
            if reply.thinking and fl.reasoning:
                out.append((ch.chunk([choice(delta({"role": "assistant", "content": ""}))], first_extra), 0))
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
                out.append((ch.chunk([choice(d)], first_extra if i == 0 else None), 1))
                frags = fragments(fn["arguments"], ctx.rng)
                for piece in frags:
                    fd = delta({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                    out.append((ch.chunk([choice(fd)]), 1))
    else:
        first = {"role": "assistant", "content": ""}
        if fl.name == "openai":
            first["refusal"] = None  # type: ignore[assignment]
        out.append((ch.chunk([choice(first)], first_extra), 0))
        reasoning_frames()
        top = ctx.opts.get("logprobs") if fl.logprobs else None
        entries = logprob_entries(reply.pieces, reply.seed, top) if top is not None else None
        if entries is None:
            cf, chunk = ch.choice, ch.chunk
            for piece in reply.pieces:
                d = {"role": "assistant", "content": piece} if orr else {"content": piece}
                out.append((chunk([cf(d, None, index)]), 1))
        else:
            for k, piece in enumerate(reply.pieces):
                lp = {"content": [entries[k]], "refusal": None}
                out.append((ch.chunk([choice(delta({"content": piece}), lp)]), 1))
    return out


def _interleave(groups: list[list[Frame]]) -> list[Frame]:
    """Frames of several choices taken in turn (how OpenAI streams ``n > 1``)."""
    if len(groups) == 1:
        return groups[0]
    out: list[Frame] = []
    for k in range(max(len(g) for g in groups)):
        for g in groups:
            if k < len(g):
                out.append(g[k])
    return out


def render_chunks(fl: Flavor, ctx: Ctx) -> list[Frame]:
    include_usage = bool(ctx.opts.get("include_usage"))
    ch = _Chunker(fl, ctx, include_usage)
    replies = _replies(ctx)
    orr = fl.message == "openrouter"
    groq_id = "req_" + rand_id(26, "0123456789abcdefghjkmnpqrstvwxyz") if fl.name == "groq" else ""
    first_extra = {"x_groq": {"id": groq_id, "seed": ctx.reply.seed & 0x7FFFFFFF}} if groq_id else None
    groups = [
        _content_frames(fl, ctx, ch, r, i, first_extra if i == 0 else None) for i, r in enumerate(replies)
    ]
    out = _interleave(groups)

    def delta(d: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", **d} if orr else d

    mode = fl.usage_mode
    usage = _usage(fl, ctx, True)
    last = len(replies) - 1
    for i, r in enumerate(replies):
        fr = _finish_reason(r)
        if mode == "groq":
            gx = {"x_groq": {"id": groq_id, "usage": usage}, "usage": usage} if i == last else None
            out.append((ch.chunk([ch.choice({}, fr, i)], gx), 0))
        elif mode == "finish":
            out.append(
                (ch.chunk([ch.choice({"content": ""}, fr, i)], {"usage": usage} if i == last else None), 0)
            )
        elif mode == "last":
            extra = {"usage": usage, "time_info": _time_info(ctx)} if i == last else None
            out.append((ch.chunk([ch.choice({}, fr, i)], extra), 0))
        elif mode == "openrouter":
            out.append((ch.chunk([ch.choice(delta({"content": ""}), fr, i)]), 0))
        else:
            out.append((ch.chunk([ch.choice({}, fr, i)]), 0))
    if include_usage and mode == "openrouter":
        out.append((ch.chunk([ch.choice(delta({"content": ""}))], {"usage": usage}), 0))
    elif include_usage and mode == "chunk":
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


def error_body(
    fl: Flavor, status: int, message: str, etype: str | None, code: Any, param: str | None = None
) -> bytes:
    etype = etype or _DEFAULT_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if fl.errors == "groq":
        return orjson.dumps({"error": {"message": message, "type": etype, "code": code}})
    if fl.errors == "flat":
        return orjson.dumps({"message": message, "type": etype, "param": param, "code": code})
    if fl.errors == "mistral":
        return orjson.dumps(
            {"object": "error", "message": message, "type": etype, "param": param, "code": code}
        )
    if fl.errors == "openrouter":
        return orjson.dumps(
            {"error": {"code": status, "message": message, "metadata": {"provider_name": None}}}
        )
    if status == 401 and etype == "authentication_error":
        etype = "invalid_request_error"
        code = code or "invalid_api_key"
    return orjson.dumps({"error": {"message": message, "type": etype, "param": param, "code": code}})


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
        param: str | None = None,
    ) -> web.Response:
        body = error_body(flavor_of(provider), status, message, etype, code, param)
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
