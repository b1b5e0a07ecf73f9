"""Classify Gemini error bodies into the gateway's exception tree.

Gemini errors are Google RPC statuses::

    {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
               "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}]}}

The OpenAI-compatibility endpoint (and some proxies) wrap the same object in a list:
``[{"error": {...}}]``.  The same object can also arrive inside a 200 stream.  Classification is by
HTTP status first (the ``code`` field when there is no HTTP status, as in a stream), then by the
RPC ``status`` name and message text.
"""

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
    UpstreamRateLimited,
    UpstreamServerError,
    retry_after_seconds,
)

_CONTEXT_LENGTH = re.compile(
    r"input token count.*exceeds the maximum|exceeds the maximum number of tokens|context (window|length)",
    re.IGNORECASE | re.DOTALL,
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def error_object(payload: Any) -> dict[str, Any] | None:
    """The ``error`` object of a decoded body (``{"error":...}`` or ``[{"error":...}]``), if any."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            return err
        if isinstance(err, str):
            return {"message": err}
    return None


def _retry_after(err: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                m = _DURATION.match(delay)
                if m:
                    return float(m.group(1))
            elif isinstance(delay, dict):  # {"seconds": 13, "nanos": 0} in some renderings
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    return retry_after_seconds(headers)


def _reasons(err: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            out.add(detail["reason"])
    return out


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    provider: str = "",
    payload: Any = None,
) -> UpstreamError:
    """The exception for a Gemini error response (``status`` 0 or 200 means "inside a stream":
    the ``code`` field of the error object decides)."""
    if payload is None:
        try:
            payload = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            payload = None
    err = error_object(payload) or {}
    message = str(err.get("message") or body[:500].decode("utf-8", "replace").strip() or "no error body")
    rpc_status = str(err.get("status") or "")
    code = err.get("code")
    if status in (0, 200) and isinstance(code, int) and 400 <= code <= 599:
        status = code
    reasons = _reasons(err)
    text = f"gemini {status} {rpc_status}: {message}".replace("  ", " ")
    common: dict[str, Any] = {
        "provider": provider,
        "status": status if status else None,
        "body": body,
        "headers": dict(headers),
        "retry_after": _retry_after(err, headers),
        "code": rpc_status or None,
    }
    lowered = message.lower()

    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        return UpstreamRateLimited(text, **common)
    if status in (401, 403) or rpc_status in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return UpstreamAuthError(text, **common)
    if "API_KEY_INVALID" in reasons or "api key not valid" in lowered or "api key expired" in lowered:
        # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        return UpstreamAuthError(text, **common)
    if status == 503 or rpc_status == "UNAVAILABLE" or "overloaded" in lowered:
        return UpstreamOverloaded(text, **common)
    if status >= 500 or rpc_status in ("INTERNAL", "DEADLINE_EXCEEDED"):
        return UpstreamServerError(text, **common)
    if 400 <= status < 500 or rpc_status:
        exc = UpstreamClientError(text, context_length=bool(_CONTEXT_LENGTH.search(message)), **common)
        if rpc_status == "FAILED_PRECONDITION":
            # "User location is not supported", billing not enabled: another provider can serve it.
            exc.retryable = True
        return exc
    return UpstreamServerError(text, **common)
