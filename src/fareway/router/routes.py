"""Route trees: what the executor runs for one call.

A policy (router.policies) turns a requested model into a tree of these nodes::

    Target(offer)                  one upstream attempt
    Fallback([route, ...])         try each in order until one commits (before the first content event)
    Race([route, ...], hedge_ms)   start all at once (or each after hedge_ms of silence); the first
                                   to produce content wins, the others are cancelled
    Split([(weight, route), ...])  pick one child by weight (A/B tests)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fareway.types import Upstream


@dataclass(slots=True)
class Target:
    upstream: Upstream
    label: str = ""
    """How this offer was chosen, for x-fareway-route (e.g. "cheapest@q3")."""
    expected_cost_usd: float | None = None
    """The policy's estimate of this attempt's cost (for a race's cost cap); None if unknown."""

    @property
    def key(self) -> str:
        return f"{self.upstream.provider}/{self.upstream.model}"


@dataclass(slots=True)
class Fallback:
    routes: list[Route]


@dataclass(slots=True)
class Race:
    routes: list[Route]
    hedge_ms: float | None = None
    """None: start all at once.  Otherwise start the next contender only after this many
    milliseconds without a first content event from those already running."""
    max_cost_usd: float | None = None
    """A cap on the race's expected cost: a contender whose estimate would take the sum of the
    started contenders past it is not started (the first one always is)."""


@dataclass(slots=True)
class Split:
    choices: list[tuple[float, Route]] = field(default_factory=list)


Route = Target | Fallback | Race | Split


def targets(route: Route) -> list[Target]:
    """Every Target in the tree, depth first."""
    if isinstance(route, Target):
        return [route]
    if isinstance(route, Split):
        return [t for _, r in route.choices for t in targets(r)]
    return [t for r in route.routes for t in targets(r)]


def describe(route: Route) -> str:
    """A compact text form for headers and `route explain`: fallback(a,race(b,c))."""
    if isinstance(route, Target):
        return route.key
    if isinstance(route, Fallback):
        return "fallback(" + ",".join(describe(r) for r in route.routes) + ")"
    if isinstance(route, Race):
        name = "hedge" if route.hedge_ms is not None else "race"
        return name + "(" + ",".join(describe(r) for r in route.routes) + ")"
    return "split(" + ",".join(f"{w:g}:{describe(r)}" for w, r in route.choices) + ")"
