"""Encoding pieces shared by the Anthropic response encoder (wire.anthropic) and its stream
encoder (wire.anthropic_stream): message ids, stop reasons and the error body.

Kept apart so that the two encoders import this module and never each other in a loop.
"""

from __future__ import annotations

import uuid
from typing import Any

from fareway.dialects.anthropic_blocks import FINISH_TO_STOP, error_type_for_status
from fareway.errors import FarewayError, StreamInterrupted, client_status, redact
from fareway.wire.base import ResponseMeta


def message_id(resp_id: str, meta: ResponseMeta) -> str:
    if resp_id.startswith("msg_"):
        return resp_id
    base = resp_id or meta.request_id or uuid.uuid4().hex
    return "msg_" + "".join(c for c in base if c.isalnum() or c in "_-")[:64]


def stop_reason(finish: str | None, has_tool_calls: bool) -> str:
    if has_tool_calls and finish in (None, "stop"):
        return "tool_use"
    return FINISH_TO_STOP.get(finish or "stop", "end_turn")


def error_payload(exc: FarewayError) -> tuple[int, dict[str, Any]]:
    status = client_status(exc)
    etype = error_type_for_status(status)
    cause = exc.cause if isinstance(exc, StreamInterrupted) else exc
    if cause.type in ("overloaded_error", "rate_limit_error", "timeout_error", "request_too_large"):
        etype = cause.type
    return status, {"type": "error", "error": {"type": etype, "message": redact(exc.message)}}
