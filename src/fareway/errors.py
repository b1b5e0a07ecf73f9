"""One exception tree for the gateway.

::

    FarewayError                     base; every error carries an HTTP status for the client
    ├── ClientError                  the caller's fault (4xx); never a fallback trigger
    │   ├── BadRequest               400 malformed JSON, wrong types, untranslatable feature
    │   ├── AuthenticationFailed     401 missing, wrong, revoked or expired gateway key
    │   ├── BudgetExceeded           402 a key's or team's USD budget cannot hold this call
    │   ├── PermissionDenied         403 key lacks the right (admin route, model not allowed)
    │   ├── NotFound                 404 unknown model or route
    │   ├── Conflict                 409 a name already taken (a key's, a team's)
    │   ├── PayloadTooLarge          413 body over the configured limit
    │   ├── Unprocessable            422 well-formed but semantically wrong
    │   └── RateLimited              429 over a limit of the gateway's own (retry_after)
    │       └── TooManyFailedLogins  429 this address presented too many wrong keys
    ├── UpstreamError                a provider failed; carries status/body/headers/retry_after
    │   ├── UpstreamRateLimited      429 (rate limit) — fallback trigger, starts a cooldown
    │   ├── UpstreamQuotaExceeded    429/402 insufficient_quota, credits exhausted — fallback trigger
    │   ├── UpstreamOverloaded       529 / 503 overloaded — fallback trigger
    │   ├── UpstreamServerError      5xx — fallback trigger
    │   ├── UpstreamClientError      4xx other than 429 — the request was bad for that upstream;
    │   │   │                        not a fallback trigger unless ``context_length`` is set
    │   │   └── UpstreamAuthError    401/403 from the provider: our stored key is wrong
    │   ├── UpstreamTimeout          connect / first_token / idle / total — fallback trigger
    │   ├── UpstreamConnectionError  refused, reset, DNS — fallback trigger
    │   └── StreamInterrupted        failure after the commit point (first content event sent)
    └── NoRouteSucceeded             every attempt failed; ``attempts`` lists each one

Messages never contain a provider key: every UpstreamError an adapter produces goes through
:func:`scrub_error` (message, code, type, param, body, headers, the cause it carries), and the wire
encoders apply ``redact`` (the same :func:`fareway.scrub.scrub`) to anything they format.  Some
providers do echo the key they were sent, raw, after ``Bearer``, url-encoded or inside JSON.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from fareway.scrub import scrub, scrub_bytes


def retry_after_seconds(headers: Mapping[str, str], wall_now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``retry-after`` (delta seconds, or an
    HTTP date measured against ``wall_now``, the Unix time, default now); None when absent or
    unreadable.  Header names in any case."""
    h = {k.lower(): v for k, v in headers.items()}
    ms = h.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = h.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(ra).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if wall_now is None else wall_now))


def redact(text: str) -> str:
    """Replace every known provider key, and anything shaped like an API key, by its fingerprint
    (:func:`fareway.scrub.scrub`)."""
    return scrub(text)


class FarewayError(Exception):
    status: int = 500
    type: str = "api_error"
    code: str | None = None
    reply_headers: tuple[tuple[str, str], ...] = ()
    """Headers the client gets with this error (the ``x-ratelimit-*`` of a refused call)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ClientError(FarewayError):
    status = 400
    type = "invalid_request_error"


class BadRequest(ClientError):
    status = 400


class AuthenticationFailed(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"


class BudgetExceeded(ClientError):
    """A USD budget (a key's or its team's, per day, month or in total) cannot hold this call's
    worst-case cost.  ``remaining_usd`` is what is left (spent and in-flight holds taken off);
    ``retry_after`` (seconds) is when the window resets or in-flight holds may free enough."""

    status = 402
    type = "budget_exceeded"
    code = "budget_exceeded"

    def __init__(
        self, message: str, *, remaining_usd: str, retry_after: float | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.remaining_usd = remaining_usd
        self.retry_after = retry_after


class Conflict(ClientError):
    status = 409
    code = "conflict"


class NotFound(ClientError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class PayloadTooLarge(ClientError):
    status = 413
    type = "request_too_large"


class Unprocessable(ClientError):
    status = 422


class RateLimited(ClientError):
    """The caller is over a limit of the gateway's own (a key's rate limit, failed key guesses).
    ``retry_after`` (seconds) goes into the ``retry-after`` header."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TooManyFailedLogins(RateLimited):
    code = "too_many_failed_authentications"


class UpstreamError(FarewayError):
    """A provider failed.  ``status`` is what the provider returned (0 if none)."""

    status = 502
    type = "upstream_error"
    retryable = True
    """Whether another offer may serve the same request (a fallback trigger)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code)
        self.provider = provider
        if status is not None:
            self.status = status
        self.body = body
        self.headers = headers or {}
        self.retry_after = retry_after

    @property
    def client_status(self) -> int:
        """The status the gateway's client should see."""
        return self.status if 400 <= self.status <= 599 else 502


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamQuotaExceeded(UpstreamError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class UpstreamOverloaded(UpstreamError):
    status = 529
    type = "overloaded_error"
    code = "overloaded"


class UpstreamServerError(UpstreamError):
    status = 502
    type = "api_error"


class UpstreamClientError(UpstreamError):
    status = 400
    type = "invalid_request_error"
    retryable = False

    def __init__(self, message: str, *, context_length: bool = False, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.context_length = context_length
        if context_length:
            self.retryable = True


class UpstreamAuthError(UpstreamClientError):
    status = 401
    type = "authentication_error"
    retryable = True  # another provider's key may well work

    @property
    def client_status(self) -> int:
        # The caller's own key was fine; the gateway's stored provider key was not.
        return 502


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"

    def __init__(self, message: str, *, phase: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.phase = phase  # connect | first_token | idle | total


class UpstreamConnectionError(UpstreamError):
    status = 502
    type = "api_connection_error"


class StreamInterrupted(UpstreamError):
    """The upstream failed after content reached the client; no fallback is possible."""

    retryable = False

    def __init__(self, cause: UpstreamError) -> None:
        super().__init__(
            f"the upstream stream failed after it started: {cause.message}",
            provider=cause.provider,
            status=cause.status,
        )
        self.cause = cause
        self.type = cause.type


@dataclass(slots=True)
class Attempt:
    """One try of one offer, for NoRouteSucceeded and the ledger."""

    provider: str
    model: str
    outcome: str  # ok | error | cancelled | skipped
    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class NoRouteSucceeded(FarewayError):
    """Every attempt failed.  The client sees the status of the last meaningful failure."""

    def __init__(self, attempts: list[Attempt], last: FarewayError | None) -> None:
        summary = "; ".join(f"{a.provider}/{a.model}: {a.error or a.outcome}" for a in attempts)
        super().__init__(
            f"no provider could serve the request ({summary})"
            if attempts
            else "no provider could serve the request"
        )
        self.attempts = attempts
        self.last = last
        if last is not None:
            self.status = last.client_status if isinstance(last, UpstreamError) else last.status
            self.type = last.type
            self.code = last.code
            if isinstance(last, UpstreamError):
                self.retry_after = last.retry_after
        else:
            self.status = 503
            self.type = "api_error"

    retry_after: float | None = None


def client_status(exc: FarewayError) -> int:
    if isinstance(exc, UpstreamError):
        return exc.client_status
    return exc.status


_FIELD_CAP = 200
"""Longest code / type / param an upstream may put in front of a client (they are identifiers)."""


def _scrub_field(value: Any, key: str | None) -> Any:
    if not isinstance(value, str):
        return value
    return scrub(value, key)[:_FIELD_CAP]


def scrub_error(exc: UpstreamError, key: str | None = None) -> UpstreamError:
    """``exc`` (changed in place and returned) with every known key and ``key`` (the key of the
    upstream that answered) replaced by its fingerprint in every string it carries: message,
    ``args``, code, type, param, body, header values, and the same for a StreamInterrupted's
    cause.  A chained exception whose text holds a key is dropped from the chain."""
    exc.message = scrub(exc.message, key)
    exc.args = (exc.message, *(scrub(a, key) if isinstance(a, str) else a for a in exc.args[1:]))
    for name in ("code", "param"):
        value = getattr(exc, name, None)
        if value is not None:
            setattr(exc, name, _scrub_field(value, key))
    if "type" in vars(exc):
        exc.type = _scrub_field(exc.type, key)
    if exc.body:
        exc.body = scrub_bytes(exc.body, key)
    if exc.headers:
        exc.headers = {k: scrub(v, key) if isinstance(v, str) else v for k, v in exc.headers.items()}
    if isinstance(exc, StreamInterrupted):
        scrub_error(exc.cause, key)
    for chained in (exc.__cause__, exc.__context__):
        if chained is not None:
            text = str(chained)
            if scrub(text, key) != text:
                exc.__cause__ = None
                exc.__context__ = None
                exc.__suppress_context__ = True
                break
    return exc
