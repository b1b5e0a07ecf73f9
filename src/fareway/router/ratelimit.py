"""Provider rate-limit headers and Retry-After, parsed into buckets with a reset time.

The point is to stop sending to a provider *before* it answers 429: when a response says the
remaining requests (or tokens, against what the next request will need) reached zero, the offer is
avoided until the bucket resets.  Header families handled (see ../shared/WIRE.md):

* OpenAI and Groq: ``x-ratelimit-remaining-requests`` / ``-tokens`` with
  ``x-ratelimit-reset-requests`` / ``-tokens`` as Go-style durations (``2ms``, ``6m0s``,
  ``1.5s``, ``1h2m3s``).
* Cerebras: the same names with ``-day`` / ``-minute`` suffixes
  (``x-ratelimit-remaining-requests-day``, ``x-ratelimit-remaining-tokens-minute``,
  ``x-ratelimit-reset-tokens-minute``), reset as float seconds (``11.38``).
* Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,reset}``
  with the reset an RFC 3339 timestamp (``2026-04-05T10:23:55Z``), hence the wall clock argument.
* ``retry-after-ms`` (milliseconds), then ``retry-after`` (delta seconds or an HTTP date).

Everything is pure: times go in as arguments (``wall_now`` in epoch seconds) and come out as
seconds-from-now, so the caller adds them to its own monotonic clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

BucketKind = Literal["requests", "tokens", "input_tokens", "output_tokens"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """Seconds from a Go-style duration (``6m0s``, ``2ms``, ``1.5s``, ``1h2m3.5s``) or a bare number
    of seconds (``11.38``).  None when the text is neither."""
    s = text.strip()
    if not s:
        return None
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        return value if value >= 0 else None
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return total if pos == len(s) and pos > 0 else None


def parse_rfc3339(text: str) -> float | None:
    """Epoch seconds from an RFC 3339 timestamp (``2026-04-05T10:23:55Z``); None if unparsable."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def _reset_in(text: str, wall_now: float) -> float | None:
    """A reset value in any of the forms above, as seconds from now (never negative)."""
    d = parse_duration(text)
    if d is not None:
        return d
    at = parse_rfc3339(text)
    if at is not None:
        return max(0.0, at - wall_now)
    return None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One rate-limit counter as the provider reported it."""

    kind: BucketKind
    remaining: float
    reset_in_s: float | None
    """Seconds from the response until the bucket refills; None when the provider did not say."""
    window: str = ""
    """The provider's label for the window when it names one (``day``, ``minute``)."""


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    buckets: tuple[Bucket, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.buckets)


# (remaining header, reset header, kind, window) for each header family
_FAMILIES: tuple[tuple[str, str, BucketKind, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests", "requests", ""),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "tokens", ""),
    ("x-ratelimit-remaining-requests-day", "x-ratelimit-reset-requests-day", "requests", "day"),
    ("x-ratelimit-remaining-requests-minute", "x-ratelimit-reset-requests-minute", "requests", "minute"),
    ("x-ratelimit-remaining-tokens-minute", "x-ratelimit-reset-tokens-minute", "tokens", "minute"),
    ("x-ratelimit-remaining-tokens-day", "x-ratelimit-reset-tokens-day", "tokens", "day"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset", "requests", ""),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset", "tokens", ""),
    (
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "input_tokens",
        "",
    ),
    (
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        "output_tokens",
        "",
    ),
)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_rate_limit_headers(headers: Mapping[str, str], wall_now: float) -> RateLimitInfo:
    """Every rate-limit bucket the headers describe (any of the families in the module docstring)."""
    h = _lower(headers)
    out: list[Bucket] = []
    for rem_name, reset_name, kind, window in _FAMILIES:
        raw = h.get(rem_name)
        if raw is None:
            continue
        try:
            remaining = float(raw)
        except ValueError:
            continue
        reset_raw = h.get(reset_name)
        reset = _reset_in(reset_raw, wall_now) if reset_raw is not None else None
        out.append(Bucket(kind, remaining, reset, window))
    return RateLimitInfo(tuple(out))


def need_for(kind: BucketKind, prompt_tokens: int, output_tokens: int) -> float:
    """What one request consumes from a bucket: 1 request; prompt + max output tokens (Cerebras and
    OpenAI charge the max up front); input or output tokens alone for Anthropic's split buckets."""
    if kind == "requests":
        return 1.0
    if kind == "input_tokens":
        return float(prompt_tokens)
    if kind == "output_tokens":
        return float(output_tokens)
    return float(prompt_tokens + output_tokens)
