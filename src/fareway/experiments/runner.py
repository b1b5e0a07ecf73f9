"""One background call of an experiment (the arm that did not serve the caller, or a verdict):
resolved, executed and accounted like any call, but as the experiment's own.

Its ledger row carries ``experiment`` and ``experiment_role`` (``shadow-control``,
``shadow-challenger``, ``judge``; a verdict's attempts have the attempt role ``judge``) and the
pseudo-key ``experiment:NAME``: it is the experiment's spend, never a caller's.  Nothing here
touches the caller's context, its cost header or its budget; no admission runs for it, and no
lookup (a cache hit would not be the model's answer).  Whatever happens (an upstream error, a
timeout, a cancel at shutdown) the call is accounted exactly once and its cost reported to
``charge`` before this returns or raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from fareway.errors import FarewayError, StreamInterrupted
from fareway.keys.store import Principal
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.context import CallContext
from fareway.pipeline.resolve import Resolver
from fareway.router.executor import Executor
from fareway.types import ChatRequest, ChatResponse
from fareway.wire.base import WireDialect

log = logging.getLogger("fareway.experiments")

Charge = Callable[[Decimal | None], None]
"""Told the cost of each background call as it is accounted (None: no known price)."""


@dataclass(slots=True)
class Background:
    response: ChatResponse | None
    error: str | None = None
    cost: Decimal | None = None


def principal_of(experiment: str) -> Principal:
    """The pseudo-key background calls are recorded under (never a real key's id)."""
    return Principal(f"experiment:{experiment}", f"experiment {experiment}", "inference")


class BackgroundRunner:
    def __init__(self, resolver: Resolver, executor: Executor, accounting: Accounting) -> None:
        self.resolver = resolver
        self.executor = executor
        self.accounting = accounting

    async def run(
        self,
        *,
        request_id: str,
        experiment: str,
        role: str,
        req: ChatRequest,
        wire: WireDialect,
        charge: Charge,
    ) -> Background:
        ctx = CallContext(request_id, principal_of(experiment), wire)
        ctx.req = req
        ctx.notes["experiment"] = (experiment, role)
        error: str | None = None
        try:
            decision = self.resolver.decide(req)
            ctx.decision = decision
            ctx.route = decision.route_text
            ctx.committed = await self.executor.run(decision.route, req, ctx.attempts)
            try:
                resp = await ctx.committed.collect()
            except StreamInterrupted as exc:
                raise exc.cause from exc
            ctx.response = resp
            ctx.usage = resp.usage
            ctx.succeeded()
        except FarewayError as exc:
            ctx.fail(exc)
            error = exc.message
        except asyncio.CancelledError:
            if ctx.committed is not None:
                ctx.committed.abort()
            ctx.cancelled()
            charge(self._account(ctx, role))
            raise
        except Exception:
            log.exception("experiment %s: background call %s failed", experiment, request_id)
            if ctx.committed is not None:
                ctx.committed.abort()
            ctx.fail(FarewayError("internal error"))
            error = "internal error"
        cost = self._account(ctx, role)
        charge(cost)
        return Background(ctx.response, error, cost)

    def _account(self, ctx: CallContext, role: str) -> Decimal | None:
        if role == "judge":
            for a in ctx.attempts.attempts:
                a.role = "judge"
        try:
            cost = self.accounting.account(ctx)
        except Exception:  # accounting must not break the experiment; the log says why
            log.exception("accounting failed for background call %s", ctx.request_id)
            return None
        return None if cost is None else Decimal(cost)
