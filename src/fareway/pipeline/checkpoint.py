"""Checkpoints of committed streams (see fareway/ledger/inflight.py).

:func:`stream_snapshot` gives the ledger a function that builds a streamed call's rows as the
account stage would write them if the stream stopped now: status 200, outcome ``cancelled``,
the error :data:`~fareway.ledger.inflight.STOPPED`, and estimated tokens (the prompt as the
provider reported it or as counted offline, once; the output at ~4 characters a token of what
was streamed so far, as accounting estimates a cut-off stream).  It runs the real accounting
code on a copy of the call's context and attempt logs, with a stand-in for the ledger, so a
checkpoint is priced and rolled up exactly as the final record would be.

The ledger calls it on the event loop only for streams still running ``checkpoint_after``
seconds after their commit point, and then every ``checkpoint_every`` seconds: a short stream
costs the closure made here and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from fareway.errors import FarewayError
from fareway.ledger.inflight import STOPPED
from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.pipeline.accounting import _SYNC_ESTIMATE_CHARS, Accounting, _prompt_chars
from fareway.pipeline.context import CallContext
from fareway.router.executor import Committed
from fareway.types import ChatRequest, Usage

Rows = tuple[CallRecord, list[AttemptRecord]]


class _Sink:
    """Stands in for the ledger: keeps what accounting records."""

    __slots__ = ("item",)

    def __init__(self) -> None:
        self.item: Rows | None = None

    def record(self, call: CallRecord, attempts: Sequence[AttemptRecord] = ()) -> None:
        self.item = (call, list(attempts))


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
        winner = committed.log
        if not prompt:
            reported = ctx.usage.input_tokens if ctx.usage is not None else 0
            prompt.append(reported or _prompt_estimate(req))
        now = time.monotonic()
        logs = []
        shadow_winner = winner
        for a in ctx.attempts.attempts:
            b = replace(a)
            if a is winner:
                shadow_winner = b
                b.outcome = "cancelled"
                if b.latency_s is None:
                    b.latency_s = now - a.t0
                if b.usage is None:
                    out = (committed.output_chars + 3) // 4
                    if ctx.usage is not None:
                        out = max(out, ctx.usage.output_tokens)
                    b.usage = Usage(input_tokens=prompt[0], output_tokens=out, estimated=True)
            else:
                if b.outcome == "pending":  # a race leg still running
                    b.outcome = "cancelled"
                # as accounting's estimate: an attempt that reached the provider consumed its prompt
                if b.usage is None and (b.outcome in ("cancelled", "ok") or b.output_chars > 0):
                    b.usage = Usage(
                        input_tokens=prompt[0], output_tokens=(b.output_chars + 3) // 4, estimated=True
                    )
            logs.append(b)
        shadow = replace(
            ctx,
            committed=Committed(shadow_winner),
            usage=None,
            status=200,
            outcome="cancelled",
            error=FarewayError(STOPPED),
            cost_usd=None,
            accounted=False,
        )
        shadow.attempts.attempts = logs
        sink = _Sink()
        Accounting(pricebook=accounting.pricebook, ledger=sink).account(shadow)
        return sink.item

    return snapshot
