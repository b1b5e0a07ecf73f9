"""One call, carried through the stages: what came in, what was decided, what happened.

A :class:`CallContext` is created when a chat request arrives and is the only thing the stages
share.  Each stage reads what the stages before it wrote and adds its own part; accounting reads
the finished context, whatever the outcome, and writes exactly one ledger record from it.

Fields, in the order the stages fill them::

    request_id, principal, wire, body, headers, t0     the server (before any stage); kind
                                                        (chat, embedding) by the entry point
    req                                                 parse
    decision, route, route_note                         resolve
    reply_headers, notes["limits"], attempts.keys       admit (x-ratelimit-*, reservations, keys)
    notes["cache"], notes["experiment"], ...            lookup and later features (free-form)
    attempts (CallLog), committed                       execute
    response / stream events, usage                     execute and encode
    status, outcome, error, cost_usd                    the gateway as the call ends
    cache, cost_saved, replayed_from, reply_headers     a lookup or wrapper (the response cache)
    accounted                                           account (guards "exactly once")
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from fareway.errors import FarewayError, NoRouteSucceeded, UpstreamError
from fareway.keys.store import Principal
from fareway.ledger.records import CallKind
from fareway.router.executor import CallLog, Committed
from fareway.router.policies import Decision
from fareway.types import ChatRequest, ChatResponse, Usage
from fareway.wire.base import WireDialect

Outcome = Literal["ok", "error", "cancelled", "cache_hit"]


@dataclass(slots=True)
class Reply:
    """What the server sends: a whole body, or a stream of bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    content_type: str = "application/json"


@dataclass(slots=True, eq=False)
class CallContext:
    request_id: str
    principal: Principal
    wire: WireDialect
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    kind: CallKind = "chat"
    """``chat``, or ``embedding`` for a call of /v1/embeddings (pipeline.embeddings); the
    ledger's ``calls.kind``."""

    req: ChatRequest | None = None
    decision: Decision | None = None
    route: str = ""
    route_note: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    """Free-form notes of the stages (cache status, experiment arm, admission tickets)."""

    attempts: CallLog = field(init=False)
    committed: Committed | None = None
    response: ChatResponse | None = None
    usage: Usage | None = None
    """Usage as the client was shown it (the committed attempt's, for a stream its last update)."""

    status: int = 0
    outcome: Outcome = "ok"
    error: FarewayError | None = None
    cost_usd: str | None = None
    cache: str = "bypass"
    """The cache's part in the call, for its ledger row: hit | miss | stored | bypass."""
    cost_saved: str | None = None
    """For a cache hit: what the answer cost when it was made (decimal string)."""
    replayed_from: tuple[str, str] | None = None
    """For a cache hit: (provider, upstream model) that made the answer."""
    reply_headers: dict[str, str] = field(default_factory=dict)
    """Headers a stage adds to the call's response (read when the response headers are built):
    the admit stage's ``x-ratelimit-*`` and budget headers, the cache's ``x-fareway-cache``."""
    accounted: bool = False
    user_id: str | None = None
    """The end user the client named (pipeline.attribution), for the ledger row."""
    tags: tuple[str, ...] = ()
    """The call's request tags, sorted and unique (pipeline.attribution)."""

    def __post_init__(self) -> None:
        self.attempts = CallLog(self.request_id)

    # ------------------------------------------------------------------ views

    @property
    def dialect(self) -> str:
        return self.wire.name

    @property
    def stream(self) -> bool:
        return self.req.stream if self.req is not None else False

    @property
    def requested_model(self) -> str:
        if self.req is not None:
            return self.req.model
        return _model_of(self.body)

    # ------------------------------------------------------------- outcomes

    def fail(self, exc: FarewayError) -> None:
        """The call ends with ``exc`` before anything was sent to the client."""
        self.error = exc
        self.outcome = "error"
        if isinstance(exc, NoRouteSucceeded):
            self.status = exc.status
        elif isinstance(exc, UpstreamError):
            self.status = exc.client_status
        else:
            self.status = exc.status

    def interrupted(self, exc: FarewayError) -> None:
        """The upstream failed after the commit point: the client got a 200 and an in-stream error."""
        self.error = exc
        self.outcome = "error"
        self.status = exc.status

    def cancelled(self) -> None:
        """The client went away before the call ended."""
        self.outcome = "cancelled"
        self.status = 499

    def succeeded(self) -> None:
        self.outcome = "ok"
        self.status = 200


def _model_of(body: bytes) -> str:
    """The model a refused request named, if it is readable at all (for its ledger row)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str):
        return ""
    # printable text only, and short: this goes into the ledger and the dashboard
    return "".join(c if c.isprintable() else "?" for c in model[:200])
