"""Accounting: the cost of each call and its ledger records.

On the request path this is a price lookup (a dict get in the PriceBook) and an enqueue on the
ledger's writer; nothing waits for storage.  Where a provider reported no usage (a stream cut off,
a race loser cancelled before its usage arrived) the tokens are estimated offline and the records
are marked ``estimated``; estimating a long prompt runs in a worker thread, never on the loop.

The cost returned for a call (``x-fareway-cost-usd``, the streamed ``usage.cost``) is the sum over
all of its attempts, as the ledger's call row: a failed try or a cancelled race leg that consumed
tokens is billed by its provider too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fareway.errors import FarewayError
from fareway.ledger.records import AttemptRecord, CallRecord, rollup
from fareway.ledger.seams import LedgerSink, MetricsSink, PriceSource
from fareway.pipeline.context import CallContext
from fareway.router.executor import AttemptLog, CallLog
from fareway.types import (
    ChatRequest,
    ImagePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

log = logging.getLogger("fareway.accounting")

_SYNC_ESTIMATE_CHARS = 32_000
"""Prompts shorter than this are counted inline (well under a millisecond); longer ones in a thread."""


def _part_chars(p: Part) -> int:
    if isinstance(p, TextPart | ThinkingPart):
        return len(p.text)
    if isinstance(p, ToolCallPart):
        return len(p.name) + len(p.arguments)
    if isinstance(p, ToolResultPart):
        return sum(_part_chars(q) for q in p.content)
    if isinstance(p, ImagePart):
        return 0
    return 0


def _prompt_chars(req: ChatRequest) -> int:
    """The prompt's size in characters, to decide whether estimating its tokens may block the loop."""
    return sum(_part_chars(p) for m in req.messages for p in m.content)


class Accounting:
    def __init__(
        self,
        pricebook: PriceSource | None = None,
        ledger: LedgerSink | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.pricebook = pricebook
        self.ledger = ledger
        self.metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.ledger is not None:
            await self.ledger.start()

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.ledger is not None:
            await self.ledger.close()

    async def readiness(self) -> dict[str, str]:
        if self.ledger is None:
            return {}
        return {"ledger": await self.ledger.readiness()}

    # ------------------------------------------------------------------ prices

    def price(self, provider: str, model: str, usage: Usage | None) -> Any:
        if self.pricebook is None or usage is None:
            return None
        return self.pricebook.price(provider, model, usage)

    # ------------------------------------------------------------------- calls

    def account(self, ctx: CallContext) -> str | None:
        """Record the finished call ``ctx`` (one call row and a row per attempt), whatever its
        outcome.  Returns its cost as a decimal string, or None when unknown (or not yet known:
        a long prompt's estimate runs in a thread and the record follows).  A second call for the
        same context does nothing."""
        if ctx.accounted:
            return ctx.cost_usd
        ctx.accounted = True
        committed = ctx.committed
        winner = committed.log if committed is not None else None
        if winner is not None and winner.usage is None and ctx.usage is not None:
            winner.usage = ctx.usage
        req = ctx.req if ctx.req is not None else ChatRequest(model=ctx.requested_model, messages=[])
        needs = [a for a in ctx.attempts.attempts if self._needs_estimate(a)]
        try:
            big = bool(needs) and _prompt_chars(req) > _SYNC_ESTIMATE_CHARS
        except Exception:  # never lose the row over a size guess
            log.exception("prompt size of %s could not be measured", ctx.request_id)
            big = True
        if big:
            task = asyncio.ensure_future(self._record_later(ctx, req, winner, needs))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return None
        if needs:
            self._estimate_safely(ctx, req, needs)
        ctx.cost_usd = self._write(ctx, ctx.attempts, winner)
        return ctx.cost_usd

    # ---------------------------------------------------------------- internals

    def _needs_estimate(self, a: AttemptLog) -> bool:
        # A cancelled or cut-off attempt that reached the provider consumed at least its prompt.
        return (a.usage is None and a.outcome in ("cancelled", "ok")) or (
            a.usage is None and a.outcome == "error" and a.output_chars > 0
        )

    async def _record_later(
        self, ctx: CallContext, req: ChatRequest, winner: AttemptLog | None, needs: list[AttemptLog]
    ) -> None:
        try:
            await asyncio.to_thread(self._estimate, req, needs)
        except Exception:
            log.exception("token estimate for %s failed; recorded without it", ctx.request_id)
        ctx.cost_usd = self._write(ctx, ctx.attempts, winner)

    def _estimate_safely(self, ctx: CallContext, req: ChatRequest, needs: list[AttemptLog]) -> None:
        try:
            self._estimate(req, needs)
        except Exception:  # an estimate is a nicety; the row is not
            log.exception("token estimate for %s failed; recorded without it", ctx.request_id)

    def _estimate(self, req: ChatRequest, needs: list[AttemptLog]) -> None:
        from fareway.tokens import count_tokens

        prompt = count_tokens(req)
        for a in needs:
            # ~4 characters a token for what was streamed before the cut (documented estimate)
            out = (a.output_chars + 3) // 4
            a.usage = Usage(input_tokens=prompt, output_tokens=out, estimated=True)

    def attempt_row(
        self,
        request_id: str,
        attempt_no: int,
        a: AttemptLog,
        outcome: str,
        usage: Usage | None,
        latency_s: float | None,
        sources: set[str],
    ) -> AttemptRecord:
        """The ledger row of one attempt with ``usage`` (None: zero tokens) priced; the price's
        source is added to ``sources``.  Used by the account stage and by stream checkpoints."""
        up = a.target.upstream
        rec = AttemptRecord(
            request_id=request_id,
            attempt_no=attempt_no,
            provider=up.provider,
            model=up.model,
            outcome=outcome,  # type: ignore[arg-type]
            role=a.role,  # type: ignore[arg-type]
            status=a.status,
            error=a.error.message if a.error is not None else None,
            started_at=a.started_at,
            ttft_ms=a.ttft_s * 1000 if a.ttft_s is not None else None,
            latency_ms=latency_s * 1000 if latency_s is not None else None,
        )
        u = usage if usage is not None else Usage()
        cost = self.price(up.provider, up.model, u)
        rec.set_usage(u, cost)
        if cost is not None:
            sources.add(cost.source)
        return rec

    def _write(self, ctx: CallContext, call: CallLog, winner: AttemptLog | None) -> str | None:
        status, outcome, error = ctx.status, ctx.outcome, ctx.error
        attempts: list[AttemptRecord] = []
        sources: set[str] = set()
        for i, a in enumerate(call.attempts):
            # An attempt that failed before any content consumed nothing: zero tokens, priced at 0
            # when the price is known (an unknown price still gives None).
            outcome_a = a.outcome if a.outcome != "pending" else "ok"
            rec = self.attempt_row(ctx.request_id, i, a, outcome_a, a.usage, a.latency_s, sources)
            if a.usage is not None and a.latency_s and a.ttft_s is not None and a.latency_s > a.ttft_s:
                gen_s = a.latency_s - a.ttft_s
                if a.usage.output_tokens > 1 and gen_s > 0:
                    rec.tokens_per_s = round(a.usage.output_tokens / gen_s, 2)
            attempts.append(rec)
        if len(call.attempts) == 1:
            latency_s = call.attempts[0].latency_s or 0.0
        elif call.attempts:
            latency_s = max((a.latency_s or 0.0) for a in call.attempts)
        else:  # refused before any try (0), or answered by the cache (the time it took)
            latency_s = time.monotonic() - ctx.t0 if ctx.outcome == "cache_hit" else 0.0
        last = winner or (call.attempts[-1] if call.attempts else None)
        rec_call = call_row(
            ctx,
            last,
            status,
            outcome,
            _error_text(error),
            winner.ttft_s * 1000 if winner is not None and winner.ttft_s is not None else None,
            latency_s * 1000,
        )
        rollup(rec_call, attempts, ", ".join(sorted(sources)) or None)
        if winner is not None:
            wrec = attempts[call.attempts.index(winner)]
            rec_call.tokens_per_s = wrec.tokens_per_s
        if self.ledger is not None:
            self.ledger.record(rec_call, attempts)
        if self.metrics is not None:
            self.metrics.observe(rec_call, attempts)
        return None if rec_call.cost is None else _money(rec_call.cost)


def call_row(
    ctx: CallContext,
    served_by: AttemptLog | None,
    status: int,
    outcome: str,
    error: str | None,
    ttft_ms: float | None,
    latency_ms: float,
) -> CallRecord:
    """The ledger row of the call ``ctx`` (its tokens and cost are rolled up from the attempts
    by the caller).  Used by the account stage and by stream checkpoints.  A cache hit has no
    attempt: its provider and model are the ones that made the cached answer.  A call that belongs
    to an A/B experiment carries ``ctx.notes["experiment"] = (name, role)`` (see CallRecord)."""
    tag = ctx.notes.get("experiment")
    if served_by is not None:
        provider: str | None = served_by.target.upstream.provider
        upstream_model: str | None = served_by.target.upstream.model
    elif ctx.replayed_from is not None:
        provider, upstream_model = ctx.replayed_from
    else:
        provider = upstream_model = None
    return CallRecord(
        request_id=ctx.request_id,
        requested_model=ctx.requested_model,
        time=datetime.now(UTC),
        key_id=ctx.principal.key_id,
        key_name=ctx.principal.name,
        client_dialect=ctx.dialect,
        provider=provider,
        upstream_model=upstream_model,
        status=status,
        outcome=outcome,  # type: ignore[arg-type]
        stream=ctx.stream,
        route=ctx.route,
        error=error,
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        kind=ctx.kind,
        cache=ctx.cache,  # type: ignore[arg-type]
        cost_saved=Decimal(ctx.cost_saved) if ctx.cost_saved is not None else None,
        experiment=tag[0] if tag is not None else None,
        experiment_role=tag[1] if tag is not None else None,
        user_id=ctx.user_id,
        tags=",".join(ctx.tags) or None,
    )


def _money(d: Decimal) -> str:
    """A cost as a plain decimal string without exponent or trailing zeros ("0.0000123")."""
    s = format(d.normalize(), "f")
    return s if s != "-0" else "0"


def _error_text(error: FarewayError | None) -> str | None:
    return error.message if error is not None else None
