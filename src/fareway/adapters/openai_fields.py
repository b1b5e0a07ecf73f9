"""The readers of what an OpenAI-dialect upstream sends, shared by its streamed and its
non-streamed responses (``openai_stream``, ``openai_chat``) and by the Responses and embeddings
adapters: finish reasons, the ``usage`` object (and Groq's ``x_groq.usage``), the loose field
readers (``as_dict``, ``as_str``, ``as_int``), and the classification of an error body (in a
non-2xx answer or inside a 200 stream) into the gateway's UpstreamError classes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from fareway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
    retry_after_seconds,
)
from fareway.scrub import scrub
from fareway.types import FinishReason, Upstream, Usage

D = "openai"
"""The key of this dialect's extensions bag."""

# ------------------------------------------------------------------------------ shared helpers


_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",  # Mistral
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",  # Mistral
}


def map_finish(raw: Any) -> FinishReason | None:
    """An OpenAI-dialect finish_reason as a canonical one; unknown values read as ``stop``."""
    if raw is None:
        return None
    return _FINISH.get(str(raw), "stop")


def as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def as_str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def as_int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


_USAGE_CORE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


def parse_usage(raw: Any) -> Usage | None:
    """OpenAI-shape usage as canonical :class:`Usage` (prompt_tokens already includes cached)."""
    if not isinstance(raw, dict):
        return None
    # (every call reads usage: a plain int is taken as it is, anything else goes through as_int)
    ptd = raw.get("prompt_tokens_details")
    ctd = raw.get("completion_tokens_details")
    if type(ptd) is not dict and not isinstance(ptd, dict):
        ptd = {}
    if type(ctd) is not dict and not isinstance(ctd, dict):
        ctd = {}
    cached = ptd.get("cached_tokens")
    if type(cached) is not int:
        cached = as_int(cached)
    if not cached and "cached_tokens" not in ptd:
        cached = as_int(raw.get("num_cached_tokens"))  # Mistral's older spelling
    write = ptd.get("cache_write_tokens", 0)  # (absent: 0, as as_int(None) gives)
    if type(write) is not int:
        write = as_int(write)
    reasoning = ctd.get("reasoning_tokens")
    if type(reasoning) is not int:
        reasoning = as_int(reasoning)
    inp = raw.get("prompt_tokens")
    if type(inp) is not int:
        inp = as_int(inp)
    out = raw.get("completion_tokens")
    if type(out) is not int:
        out = as_int(out)
    # every key but the core ones, in their order (a copy less three keys: no loop over the rest)
    extras = raw.copy()
    for k in _USAGE_CORE_KEYS:
        extras.pop(k, None)
    return Usage(inp, out, cached, write, reasoning, False, {D: extras} if extras else {})


def usage_of_chunk(chunk: dict[str, Any]) -> Usage | None:
    """Usage carried by a response or stream chunk: ``usage``, else Groq's ``x_groq.usage``."""
    u = chunk.get("usage")
    if not isinstance(u, dict):
        xg = chunk.get("x_groq")
        u = xg.get("usage") if isinstance(xg, dict) else None
    return parse_usage(u)


# ------------------------------------------------------------------------------------- errors

_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|reduce the length of the messages",
    re.I,
)
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "overloaded_error": 529,
    "server_error": 500,
    "api_error": 500,
    "INVALID_ARGUMENT": 400,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
}


def _error_fields(payload: Any) -> dict[str, Any]:
    """message/type/code/param/status_code/metadata from any known error body shape."""
    if isinstance(payload, list) and payload:  # Gemini's OpenAI-compatible endpoint
        payload = payload[0]
    if not isinstance(payload, dict):
        return {}
    err = payload.get("error")
    src: dict[str, Any] = err if isinstance(err, dict) else payload
    out: dict[str, Any] = {}
    msg = src.get("message")
    if msg is None and isinstance(err, str):
        msg = err
    if msg is None and "detail" in src:  # FastAPI-style validation bodies
        detail = src["detail"]
        msg = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    if msg is not None:
        out["message"] = msg if isinstance(msg, str) else orjson.dumps(msg).decode()
    out["type"] = src.get("type") or src.get("status")
    out["code"] = src.get("code")
    out["param"] = src.get("param")
    sc = src.get("status_code", payload.get("status_code"))
    out["status_code"] = sc if isinstance(sc, int) else None
    meta = src.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("raw"), str):
        who = meta.get("provider_name")
        out["message"] = f"{out.get('message') or 'error'} ({who + ': ' if who else ''}{meta['raw']})"
    return out


def classify_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    up: Upstream,
    payload: Any = None,
) -> UpstreamError:
    """The :class:`UpstreamError` for an error response or an error inside a 200.

    ``status`` is the HTTP status; for an error carried in a 200 (a body or stream chunk) pass
    200 and the parsed ``payload``: its ``status_code``, numeric ``code`` or ``type`` decide."""
    if payload is None:
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
    f = _error_fields(payload)
    etype = f.get("type") if isinstance(f.get("type"), str) else None
    raw_code = f.get("code")
    code = raw_code if isinstance(raw_code, str) else None
    if not 400 <= status <= 599:
        if f.get("status_code"):
            status = int(f["status_code"])
        elif isinstance(raw_code, int) and 400 <= raw_code <= 599:
            status = raw_code
        else:
            status = _TYPE_STATUS.get(code or "", _TYPE_STATUS.get(etype or "", 502))
    message = f.get("message")
    if not message:
        snippet = body[:300].decode("utf-8", "replace").strip()
        message = f"{up.provider or 'upstream'} returned HTTP {status}" + (f": {snippet}" if snippet else "")
    message = scrub(str(message), up.api_key)  # the code, param and body: by ScrubbingAdapter
    text = f"{etype or ''} {code or ''} {message}".lower()
    kw: dict[str, Any] = {
        "provider": up.provider,
        "status": status,
        "body": body,
        "headers": {k.lower(): v for k, v in headers.items()},
        "retry_after": retry_after_seconds(headers),
        "code": code,
        "param": f.get("param") if isinstance(f.get("param"), str) else None,
    }
    if status == 429:
        if "insufficient_quota" in text or "exceeded your current quota" in text:
            return UpstreamQuotaExceeded(message, **kw)
        return UpstreamRateLimited(message, **kw)
    if status == 402:
        return UpstreamQuotaExceeded(message, **kw)
    if status in (401, 403):
        return UpstreamAuthError(message, **kw)
    if status == 408:
        return UpstreamTimeout(message, phase="total", **kw)
    if 400 <= status < 500:
        ctx = code == "context_length_exceeded" or bool(_CONTEXT_RE.search(message))
        return UpstreamClientError(message, context_length=ctx, **kw)
    if status in (503, 529) or "overloaded" in text:
        return UpstreamOverloaded(message, **kw)
    return UpstreamServerError(message, **kw)
