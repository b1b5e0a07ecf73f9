"""Limits every inbound dialect checks while parsing, before anything is re-encoded or sent on.

* :func:`check_depth`: JSON nested deeper than :data:`MAX_DEPTH` in any field is refused (orjson
  refuses to *encode* past 254 levels, so an unchecked body would fail later as a 500, and deep
  tool schemas would exhaust the recursion of a schema translation).
* :func:`check_model`: a model name is printable text (it is echoed in response headers, where a
  control character breaks the response) of at most :data:`MAX_MODEL_LEN` characters.
* :func:`bounded_int` / :func:`bounded_number`: integer and sampling fields range-checked
  (``max_tokens`` at most :data:`MAX_OUTPUT_TOKENS`; a ``seed`` a signed 64-bit integer).

Each raises :class:`~fareway.errors.BadRequest` naming the parameter; the dialect's encoder turns it
into its own error JSON.
"""

from __future__ import annotations

import math
from typing import Any

from fareway.errors import BadRequest

MAX_DEPTH = 64
"""Deepest nesting of arrays/objects accepted anywhere in a request body (the body itself is 1)."""
MAX_MODEL_LEN = 256
MAX_OUTPUT_TOKENS = 2**31 - 1
"""Largest ``max_tokens`` accepted: no model comes near it, and every upstream's integer fits it."""
INT64 = (-(2**63), 2**63 - 1)


def _too_deep(data: Any, limit: int) -> str | None:
    """The top-level field of ``data`` that nests more than ``limit`` levels ("" for the body
    itself), or None.  Walked one level at a time: no recursion, so no stack to overflow."""
    fields = data.items() if isinstance(data, dict) else [("", data)]
    for field, value in fields:
        if type(value) is not dict and type(value) is not list:
            continue
        level, depth = [value], (1 if field == "" else 2)
        if depth > limit:
            return str(field)
        while level:
            level = [
                c
                for v in level
                for c in (v.values() if type(v) is dict else v if type(v) is list else ())
                if type(c) is dict or type(c) is list
            ]
            depth += bool(level)
            if depth > limit:
                return str(field)
    return None


def check_depth(body: bytes, data: Any, limit: int = MAX_DEPTH) -> None:
    """Raise BadRequest if ``data`` (decoded from ``body``) nests more than ``limit`` levels.

    Nesting cannot exceed the number of ``[`` and ``{`` bytes in the body, so the usual request
    is passed after two C-speed counts; only a body with more brackets than ``limit`` is walked
    (measured: the walk of a 53 kB body of 200 messages costs about what orjson.loads of it does)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    field = _too_deep(data, limit)
    if field is None:
        return
    where = f"'{field}'" if field else "the body"
    raise BadRequest(
        f"{where} nests arrays/objects more than {limit} levels deep; flatten it", param=field or None
    )


def check_model(model: str, param: str = "model") -> str:
    """``model`` if it is printable text of at most MAX_MODEL_LEN characters."""
    if len(model) > MAX_MODEL_LEN:
        raise BadRequest(f"'{param}' is longer than {MAX_MODEL_LEN} characters", param=param)
    if not model.isprintable():
        raise BadRequest(
            f"'{param}' contains control or other non-printable characters: {model!r}", param=param
        )
    return model


def bounded_int(value: int, param: str, low: int, high: int) -> int:
    """``value`` if ``low <= value <= high``."""
    if not low <= value <= high:
        raise BadRequest(f"'{param}' must be between {low} and {high}, got {value}", param=param)
    return value


def bounded_number(value: float, param: str, low: float, high: float) -> float:
    """``value`` if it is finite and ``low <= value <= high``."""
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"'{param}' must be between {low:g} and {high:g}, got {value:g}", param=param)
    return value


__all__ = [
    "INT64",
    "MAX_DEPTH",
    "MAX_MODEL_LEN",
    "MAX_OUTPUT_TOKENS",
    "bounded_int",
    "bounded_number",
    "check_depth",
    "check_model",
]
