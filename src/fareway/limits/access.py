"""The access admission: what a key may call, and with which provider keys.

Runs in the admit stage, after the route is resolved:

1. **Allowed models and providers.**  Targets of the route that the key (and its team) may not
   use are pruned from it: a target is allowed when, for every pattern list that restricts the
   caller, some pattern matches the requested name (an alias or ``auto`` named in the list allows
   whatever it routes to), the target's ``provider/model`` or its model; and its provider matches
   every provider list.  Nothing left: 403 ``model_not_allowed``, in the caller's dialect.
2. **Provider keys.**  When provider keys are pooled (a team's own keys, several keys for one
   provider, keys in the vault), the call gets its chooser (``CallLog.keys``, the executor's
   ``router.keychoice`` seam) and targets whose provider has no key for this caller are pruned
   (a team's key is never used for another team; a caller without a key of its own uses the
   gateway's).  Nothing left: 404, naming the providers.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from fareway.errors import NotFound, PermissionDenied
from fareway.keys.pool import KeyPools, PoolRefresher
from fareway.keys.records import Principal
from fareway.pipeline.context import CallContext
from fareway.router.routes import Fallback, Race, Route, Split, Target, describe, targets


def prune(route: Route, keep: Callable[[Target], bool]) -> Route | None:
    """``route`` without the targets ``keep(target)`` rejects (the same object when nothing was
    cut; None when nothing is left)."""
    if isinstance(route, Target):
        return route if keep(route) else None
    if isinstance(route, Split):
        pruned = [(w, prune(c, keep)) for w, c in route.choices]
        choices = [(w, r) for w, r in pruned if r is not None]
        if not choices:
            return None
        if all(r is c for (_, r), (_, c) in zip(pruned, route.choices, strict=True)):
            return route
        return Split(choices)
    kids = [prune(c, keep) for c in route.routes]
    kept = [k for k in kids if k is not None]
    if not kept:
        return None
    if len(kept) == len(route.routes) and all(k is c for k, c in zip(kept, route.routes, strict=True)):
        return route
    if isinstance(route, Fallback):
        return Fallback(kept)
    return Race(kept, hedge_ms=route.hedge_ms, max_cost_usd=route.max_cost_usd)


def allowed(p: Principal, requested: str, t: Target) -> bool:
    up = t.upstream
    names = (requested, f"{up.provider}/{up.model}", up.model)
    for patterns in p.allowed_models:
        if not any(fnmatchcase(n, pat) for pat in patterns for n in names):
            return False
    for patterns in p.allowed_providers:
        if not any(fnmatchcase(up.provider, pat) for pat in patterns):
            return False
    return True


def _renote(ctx: CallContext, route: Route) -> None:
    decision = ctx.decision
    assert decision is not None
    decision.route = route
    ctx.route = text = describe(route)
    note = decision.header(text)
    if decision.candidates:
        kept = sum(1 for c in decision.candidates if c.kept)
        note += f"; candidates={kept}/{len(decision.candidates)}"
    ctx.route_note = note


class AccessAdmission:
    def __init__(self, pools: KeyPools | None = None, refresher: PoolRefresher | None = None) -> None:
        self.pools = pools
        self.refresher = refresher

    async def admit(self, ctx: CallContext) -> None:
        decision = ctx.decision
        if decision is None:
            return
        p = ctx.principal
        pools = self.pools
        if self.refresher is not None:
            self.refresher.refresh_if_changed()
        chooser = pools.for_call(p.team_id) if pools is not None else None
        if not p.restricted and chooser is None:
            return
        route = decision.route
        if p.restricted:
            requested = ctx.requested_model
            cut = prune(route, lambda t: allowed(p, requested, t))
            if cut is None:
                raise PermissionDenied(
                    f"This key may not use `{requested}`"
                    + (
                        f" (allowed models: {', '.join(sorted({m for ms in p.allowed_models for m in ms}))})"
                        if p.allowed_models
                        else ""
                    )
                    + (
                        f" (allowed providers: {', '.join(sorted({m for ms in p.allowed_providers for m in ms}))})"
                        if p.allowed_providers
                        else ""
                    )
                    + ".",
                    param="model",
                    code="model_not_allowed",
                )
            route = cut
        if chooser is not None:
            assert pools is not None
            cut = prune(route, lambda t: pools.has_key(p.team_id, t.upstream.provider))
            if cut is None:
                names = sorted({t.upstream.provider for t in targets(route)})
                raise NotFound(
                    f"No provider key for {', '.join(names)} is available to this key.",
                    param="model",
                    code="no_provider_key",
                )
            route = cut
            ctx.attempts.keys = chooser
        if route is not decision.route:
            _renote(ctx, route)

    def settle(self, ctx: CallContext) -> None:
        return None
