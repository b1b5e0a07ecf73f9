"""The stages of a call, and the typed seams where later features plug in.

::

    parse     client bytes -> canonical request (the wire dialect checks limits while parsing)
    prepare   stages that complete the request before routing (stored conversation state)
    resolve   the model name -> a routing Decision (pinned, bare id, alias, auto with @floor);
              an ArmPicker may name another model to route to (an A/B experiment's arm)
    admit     Admission.admit for each admission (allowed models, provider keys, rate limits,
              budget reservations): raise a FarewayError to refuse (402/403/429 in the caller's
              dialect); after resolve, because a worst-case reservation prices the route
    lookup    each Lookup may answer early with a Reply (a cache hit)
    execute   the route tree until an attempt commits (fallback, race, hedge)
    encode    canonical events -> client bytes; each StreamWrapper wraps the committed events
              (tee into a cache, settle a budget as tokens arrive)
    account   one ledger record from the context for every outcome; Admission.settle runs here
    after     AfterHook.after, off the request path (judge sampling, shadow calls, alerts)

A stage reads and writes the :class:`~fareway.pipeline.context.CallContext` only; it never reaches
into another stage.  The gateway (pipeline.gateway) runs them in this order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from fareway.events import StreamEvent
from fareway.pipeline import attribution
from fareway.pipeline.context import CallContext, Reply
from fareway.pipeline.resolve import Resolver


@runtime_checkable
class Stage(Protocol):
    """One step before execution.  Returns a Reply to answer early, None to go on; raises a
    FarewayError to refuse (the gateway accounts the refusal and the server encodes it)."""

    name: str

    async def run(self, ctx: CallContext) -> Reply | None: ...


@runtime_checkable
class Admission(Protocol):
    """A check before the call that may hold something until the call is accounted (a budget
    reservation, a concurrency slot).  ``settle`` runs exactly once for every admitted call, with
    the finished context (its usage and cost, whatever the outcome)."""

    async def admit(self, ctx: CallContext) -> None: ...

    def settle(self, ctx: CallContext) -> None: ...


@runtime_checkable
class StreamWrapper(Protocol):
    """Wraps the committed event stream of a call (streamed or not: a non-streamed call's
    upstream answer passes through as events too)."""

    def wrap(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]: ...


@runtime_checkable
class ArmPicker(Protocol):
    """Consulted by resolve before routing: the model name this call is routed to instead of the
    one it names (the arm of an A/B experiment on that name), or None to leave it.  Runs on the
    request path: a dict lookup and a hash, no I/O.  It may leave notes on the context."""

    def pick(self, ctx: CallContext) -> str | None: ...


@runtime_checkable
class AfterHook(Protocol):
    """Runs after the call was accounted, off the request path (its errors are logged)."""

    def wants(self, ctx: CallContext) -> bool:
        """Whether :meth:`after` has anything to do for this call (a cheap look at its notes): a
        call no hook wants schedules no task."""
        ...

    async def after(self, ctx: CallContext) -> None: ...


# ------------------------------------------------------------------------ the built-in stages


class Admit:
    name = "admit"

    def __init__(self, admissions: list[Admission] | None = None) -> None:
        self.admissions: list[Admission] = list(admissions or [])

    async def run(self, ctx: CallContext) -> Reply | None:
        if not self.admissions:
            return None
        admitted: list[Admission] = ctx.notes.setdefault("admitted", [])
        for a in self.admissions:
            await a.admit(ctx)
            admitted.append(a)
        return None


class Parse:
    name = "parse"

    async def run(self, ctx: CallContext) -> Reply | None:
        ctx.req = ctx.wire.parse_request(ctx.body, ctx.headers)
        ctx.user_id, ctx.tags = attribution.from_chat(ctx.req, ctx.headers)
        return None


class Resolve:
    name = "resolve"

    def __init__(self, resolver: Resolver, pickers: list[ArmPicker] | None = None) -> None:
        self.resolver = resolver
        self.pickers: list[ArmPicker] = pickers if pickers is not None else []
        """Shared with the gateway (``Gateway.pickers``): appended to after construction."""

    async def run(self, ctx: CallContext) -> Reply | None:
        assert ctx.req is not None, "resolve runs after parse"
        name = None
        for picker in self.pickers:
            name = picker.pick(ctx)
            if name is not None:
                break
        decision = self.resolver.decide(ctx.req, model=name)
        ctx.decision = decision
        ctx.route = text = decision.route_text
        note = decision.header(text)
        if decision.candidates:
            kept = sum(1 for c in decision.candidates if c.kept)
            note += f"; candidates={kept}/{len(decision.candidates)}"
        ctx.route_note = note
        return None
