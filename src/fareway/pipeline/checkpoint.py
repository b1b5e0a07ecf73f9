"""Checkpoints of committed streams (see fareway/ledger/inflight.py).

:func:`stream_snapshot` gives the ledger a function that builds a streamed call's rows as the
account stage would write them if the stream stopped now: status 200, outcome ``cancelled``,
the error :data:`~fareway.ledger.inflight.STOPPED`, and estimated tokens (the prompt as the
provider reported it or as counted offline, once; the output at ~4 characters a token of what
was streamed so far, as accounting estimates a cut-off stream).  It builds the
rows with the account stage's own row builders (``Accounting.attempt_row``, ``call_row``), priced
by the same price book, without touching the call's context.

The ledger calls it on the event loop only for streams still running ``checkpoint_after``
seconds after their commit point, and then every ``checkpoint_every`` seconds: a short stream
costs the closure made here and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fareway.ledger.inflight import STOPPED
from fareway.ledger.records import AttemptRecord, CallRecord, rollup
from fareway.pipeline.accounting import _SYNC_ESTIMATE_CHARS, Accounting, _prompt_chars, call_row
from fareway.pipeline.context import CallContext
from fareway.router.executor import Committed
from fareway.types import ChatRequest, Usage

Rows = tuple[CallRecord, list[AttemptRecord]]


def _prompt_estimate(req: ChatRequest) -> int:
    chars = _prompt_chars(req)
    if chars > _SYNC_ESTIMATE_CHARS:  # too long to count on the loop: ~4 characters a token
        return (chars + 3) // 4
    from fareway.tokens import count_tokens

    return count_tokens(req)


def stream_snapshot(accounting: Accounting, ctx: CallContext) -> Callable[[], Rows | None]:
    """The checkpoint builder of the committed streamed call ``ctx``; it returns None once the
    call is accounted (its record is on its way)."""
    prompt: list[int] = []

    def snapshot() -> Rows | None:
        committed, req = ctx.committed, ctx.req
        if ctx.accounted or committed is None or req is None:
            return None
        if not prompt:
            reported = ctx.usage.input_tokens if ctx.usage is not None else 0
            prompt.append(reported or _prompt_estimate(req))
        return _rows(accounting, ctx, committed, prompt[0])

    return snapshot


def _rows(accounting: Accounting, ctx: CallContext, committed: Committed, prompt: int) -> Rows:
    """The rows of this call as if it were cancelled now."""
    winner = committed.log
    now = time.monotonic()
    rid = ctx.request_id
    attempts: list[AttemptRecord] = []
    sources: set[str] = set()
    wrec: AttemptRecord | None = None
    for i, a in enumerate(ctx.attempts.attempts):
        usage, outcome, latency = a.usage, a.outcome, a.latency_s
        if a is winner:
            outcome = "cancelled"
            if latency is None:
                latency = now - a.t0
            if usage is None:
                out = (committed.output_chars + 3) // 4
                if ctx.usage is not None:
                    out = max(out, ctx.usage.output_tokens)
                usage = Usage(input_tokens=prompt, output_tokens=out, estimated=True)
        else:
            if outcome == "pending":  # a race leg still running
                outcome = "cancelled"
            # as accounting estimates: an attempt that reached the provider consumed its prompt
            if usage is None and (outcome in ("cancelled", "ok") or a.output_chars > 0):
                usage = Usage(input_tokens=prompt, output_tokens=(a.output_chars + 3) // 4, estimated=True)
        rec = accounting.attempt_row(rid, i, a, outcome, usage, latency, sources)
        if a is winner:
            wrec = rec
        attempts.append(rec)
    latency_s = max(((r.latency_ms or 0.0) for r in attempts), default=0.0)
    ttft_ms = wrec.ttft_ms if wrec is not None else None
    call = call_row(ctx, winner, 200, "cancelled", STOPPED, ttft_ms, latency_s)
    return rollup(call, attempts, ", ".join(sorted(sources)) or None), attempts
