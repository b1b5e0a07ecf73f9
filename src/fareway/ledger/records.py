"""What the ledger stores: one :class:`CallRecord` per client call and one :class:`AttemptRecord`
per upstream try (fallbacks, race legs, hedges, judge calls), joined by ``request_id``.

Conventions:

* times are timezone-aware UTC ``datetime``; durations are milliseconds (``float``);
* token buckets follow :class:`fareway.types.Usage`: ``input_tokens``/``output_tokens`` are totals,
  ``cached_input_tokens``/``cache_write_tokens`` are parts of the input, ``reasoning_tokens`` part
  of the output;
* money is ``Decimal`` USD; ``None`` means the price is unknown (never 0);
* a call's tokens and cost are what the whole call consumed: the sum over its attempts (a losing
  race leg or a failed try that streamed tokens is billed by its provider too).
  :func:`rollup` fills a call from its attempts that way.  A cache hit costs 0 and records what
  the original call cost in ``cost_saved``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from fareway.types import Usage

AttemptOutcome = Literal["ok", "error", "cancelled", "skipped", "cache_hit"]
CallOutcome = Literal["ok", "error", "cancelled", "cache_hit"]
Role = Literal["primary", "fallback", "race", "hedge", "judge", "last_resort"]
CallKind = Literal["chat", "embedding"]
CacheStatus = Literal["hit", "miss", "stored", "bypass"]
"""hit: answered from the cache; miss: asked, not answered from it and nothing stored; stored:
its answer was stored; bypass: the call did not use the cache."""


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(slots=True)
class AttemptRecord:
    """One upstream try of a call."""

    request_id: str
    attempt_no: int
    provider: str
    model: str
    """The upstream model id (as sent, or as the provider reported it)."""
    outcome: AttemptOutcome = "ok"
    role: Role = "primary"
    status: int | None = None
    """Upstream HTTP status, if a response came."""
    error: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None
    cost_input: Decimal | None = None
    cost_cached_input: Decimal | None = None
    cost_cache_write: Decimal | None = None
    cost_output: Decimal | None = None
    cost_reasoning: Decimal | None = None
    estimated: bool = False
    """Tokens counted offline because the provider reported none."""
    ttft_ms: float | None = None
    latency_ms: float | None = None
    tokens_per_s: float | None = None
    started_at: datetime = field(default_factory=utcnow)

    def set_usage(self, usage: Usage | None, cost: Any = None) -> None:
        """Fill the token buckets from ``usage`` and the costs from a ``pricing.Cost`` (or None
        when the price is unknown).  Typed loosely so records import nothing from pricing."""
        if usage is not None:
            self.input_tokens = usage.input_tokens
            self.cached_input_tokens = usage.cached_input_tokens
            self.cache_write_tokens = usage.cache_write_tokens
            self.output_tokens = usage.output_tokens
            self.reasoning_tokens = usage.reasoning_tokens
            self.estimated = usage.estimated
        if cost is None:
            self.cost = self.cost_input = self.cost_cached_input = None
            self.cost_cache_write = self.cost_output = self.cost_reasoning = None
        else:
            self.cost = cost.total
            self.cost_input = cost.input
            self.cost_cached_input = cost.cached_input
            self.cost_cache_write = cost.cache_write
            self.cost_output = cost.output
            self.cost_reasoning = cost.reasoning

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class CallRecord:
    """One client call, however many upstream tries it took."""

    request_id: str
    requested_model: str
    time: datetime = field(default_factory=utcnow)
    """When the call arrived."""
    key_id: str | None = None
    key_name: str | None = None
    client_dialect: str = "openai"
    provider: str | None = None
    """The provider that answered (the last attempt's when all failed); None if none was tried."""
    upstream_model: str | None = None
    status: int = 200
    """The HTTP status returned to the client."""
    outcome: CallOutcome = "ok"
    stream: bool = False
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal | None = None
    cost_saved: Decimal | None = None
    """For a cache hit: what the cached answer cost when it was made."""
    estimated: bool = False
    price_source: str | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None
    tokens_per_s: float | None = None
    cache: CacheStatus = "bypass"
    route: str = ""
    """The route tree as text, e.g. ``race(openai/gpt-4o-mini, groq/llama-3.3-70b)``."""
    attempts: int = 0
    error: str | None = None
    kind: CallKind = "chat"
    """``chat`` (chat completions, messages) or ``embedding`` (/v1/embeddings)."""
    experiment: str | None = None
    """The A/B experiment this call belongs to (``[experiments.NAME]``), or None."""
    experiment_role: str | None = None
    """Its part in that experiment: ``control`` or ``challenger`` (a caller's call served by that
    arm), ``shadow-control`` or ``shadow-challenger`` (the experiment's own background run of
    that arm, paid for by the experiment, not by a caller), or ``judge`` (a verdict call)."""
    user_id: str | None = None
    """The end user the client named (OpenAI ``user``, Anthropic ``metadata.user_id``)."""
    tags: str | None = None
    """The call's request tags, sorted, unique, joined by ``,`` (a tag holds no comma); None
    when untagged (pipeline.attribution)."""


def rollup(call: CallRecord, attempts: list[AttemptRecord], price_source: str | None = None) -> CallRecord:
    """Fill ``call``'s token buckets, cost, estimated flag and attempt count from its attempts
    (summed: every attempt that consumed tokens is billed).  The cost is None when an attempt
    that consumed tokens has an unknown price.  Returns ``call``."""
    call.attempts = len(attempts)
    if len(attempts) == 1:  # most calls: the sums below, without a generator per bucket
        a = attempts[0]
        call.input_tokens = a.input_tokens
        call.cached_input_tokens = a.cached_input_tokens
        call.cache_write_tokens = a.cache_write_tokens
        call.output_tokens = a.output_tokens
        call.reasoning_tokens = a.reasoning_tokens
        call.estimated = bool(a.estimated)
        if a.cost is not None:
            call.cost = Decimal(0) + a.cost  # as the sum: the same Decimal (context, exponent)
        else:
            call.cost = None if a.tokens else Decimal(0)
        if price_source is not None:
            call.price_source = price_source
        return call
    call.input_tokens = sum(a.input_tokens for a in attempts)
    call.cached_input_tokens = sum(a.cached_input_tokens for a in attempts)
    call.cache_write_tokens = sum(a.cache_write_tokens for a in attempts)
    call.output_tokens = sum(a.output_tokens for a in attempts)
    call.reasoning_tokens = sum(a.reasoning_tokens for a in attempts)
    call.estimated = any(a.estimated for a in attempts)
    total: Decimal | None = Decimal(0)
    for a in attempts:
        if a.cost is not None and total is not None:
            total += a.cost
        elif a.cost is None and a.tokens:
            total = None
    call.cost = total
    if price_source is not None:
        call.price_source = price_source
    return call


# --------------------------------------------------------------------------- row mapping

CALL_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AttemptRecord))
MONEY_COLUMNS = frozenset(
    {
        "cost",
        "cost_saved",
        "cost_input",
        "cost_cached_input",
        "cost_cache_write",
        "cost_output",
        "cost_reasoning",
    }
)
TIME_COLUMNS = frozenset({"time", "started_at"})
BOOL_COLUMNS = frozenset({"stream", "estimated"})


_V10_TAIL = ("user_id", "tags")
"""The call columns migration 10 appended (both nullable)."""


def upgrade_call_row(values: Any) -> Any:
    """A call row as a gateway before migration 10 spooled or checkpointed it (without the
    last two columns): with them, None.  Any other row is returned as it is."""
    if CALL_COLUMNS[-2:] == _V10_TAIL and len(values) == len(CALL_COLUMNS) - 2:
        return [*values, None, None]
    return values


def call_values(c: CallRecord) -> tuple[Any, ...]:
    return tuple(getattr(c, name) for name in CALL_COLUMNS)


def attempt_values(a: AttemptRecord) -> tuple[Any, ...]:
    return tuple(getattr(a, name) for name in ATTEMPT_COLUMNS)
