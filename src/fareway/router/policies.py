"""Routing policies: turn a requested model name into a route tree, and explain why.

Model names understood by :meth:`Router.decide`:

``auto``            the cheapest offer for *this* request at or above the quality floor (default 3),
                    with healthy fallbacks behind it: the same family on other providers first
                    (same model, different provider), then the next-cheapest offers.
``auto:cheap``      the lowest expected cost for this request (prompt tokens * input price +
                    expected output * output price), fallbacks strictly by that cost.
``auto:fast``       the lowest expected latency: TTFT p50 + expected output tokens / tokens/s, from
                    live statistics (catalog priors until traffic arrives).
``auto@4``,         any of the above with the quality floor given inline (1..5).
``auto:cheap@1``
an alias            from the config: ``name = "provider/model"`` or a table
                    ``{strategy = "fallback"|"race"|"hedge"|"split"|"single", targets = [...],
                    weights = [...], hedge_ms = N, max_cost_usd = X}``.
``provider/model``  pinned: that offer only.
a bare model id     the offers whose model or family equals it, on providers with a key,
                    cheapest first (a fallback chain that keeps the model and changes the provider).

Every ``auto`` policy first drops offers that cannot serve the request — a needed capability
missing (tools, vision, json_schema, reasoning), prompt + output over the context window,
``max_tokens`` over the offer's max output — and offers that are unhealthy right now (circuit
open, cooling down after Retry-After, rate-limit bucket exhausted against this request's need),
and offers whose provider has no key.  Each Target's label says why it is there.

:meth:`Decision.explain` lists every candidate with its capability, price and latency numbers
and why it was kept or dropped; :meth:`Decision.header` is the compact ``x-fareway-route`` form.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from fareway.errors import BadRequest, NotFound, Unprocessable
from fareway.providers.catalog import Catalog, Offer, OfferKind
from fareway.router.health import HealthView, OfferStats
from fareway.router.requirements import (
    PriceFn,
    Requirements,
    TokenEstimator,
    UnitPricesLike,
    estimate_prompt_tokens,
    expected_cost,
)
from fareway.router.routes import Fallback, Race, Route, Split, Target, describe, targets
from fareway.types import ChatRequest, Upstream

MakeUpstream = Callable[[str, str], Upstream | None]
"""``(provider, model) -> Upstream``, or None when that provider has no key."""

Mode = Literal["auto", "cheap", "fast"]
STRATEGIES = ("fallback", "race", "hedge", "split", "single")
_AUTO = re.compile(r"^auto(?::(cheap|fast))?(?:@([1-5]))?$")
_CONTEXT_SUFFIX = re.compile(r"\[\d+[km]\]$", re.IGNORECASE)
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|\d{4})$")
_LATEST_SUFFIX = re.compile(r"-latest$")


@functools.lru_cache(maxsize=4096)
def model_id_forms(model: str) -> tuple[str, ...]:
    """The ids to look a model up by, most specific first: as given, then without a context-size
    marker (Claude Code's ``[1m]``), a snapshot date (``-20250929``, ``-2024-07-18``, ``-2507``) or
    ``-latest``.  ``claude-sonnet-4-5-20250929[1m]`` -> ``claude-sonnet-4-5-20250929``,
    ``claude-sonnet-4-5``.  A pure function of the name: cached (bounded), as every call of a
    pinned or bare name asks it."""
    forms = [model]
    m = _CONTEXT_SUFFIX.sub("", model)
    if m != model:
        forms.append(m)
    for pat in (_DATE_SUFFIX, _LATEST_SUFFIX):
        n = pat.sub("", m)
        if n != m and n:
            forms.append(n)
            m = n
    return tuple(forms)


@functools.lru_cache(maxsize=4096)
def _sent_model(model: str) -> str:
    """The upstream id a pinned ``provider/model`` sends: without a context-size marker (the
    marker is Claude Code's, not an upstream id).  Cached like :func:`model_id_forms`."""
    return _CONTEXT_SUFFIX.sub("", model)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    quality_floor: int = 3
    default_output_tokens: int = 512
    """Expected output when the request gives no max_tokens (for cost, latency and fit)."""
    max_fallbacks: int = 3
    """Targets behind the chosen one in an ``auto`` chain."""
    default_hedge_ms: float = 1000.0
    """``hedge`` aliases without ``hedge_ms`` use the first offer's p90 TTFT; this when unknown."""


class NoEligibleRoute(Unprocessable):
    """No offer can serve the request: 422 when none is capable, 503 when the capable ones are all
    unhealthy or keyless right now.  ``explain`` holds the full candidate table."""

    code = "no_eligible_route"

    def __init__(self, message: str, explain: dict[str, Any], *, unavailable: bool = False) -> None:
        super().__init__(message, param="model")
        self.explain = explain
        if unavailable:
            self.status = 503
            self.type = "service_unavailable"


# ------------------------------------------------------------------------------ candidates


@dataclass(slots=True, eq=False)
class Candidate:
    offer: Offer
    prices: UnitPricesLike | None
    cost: Decimal | None
    stats: OfferStats
    expected_latency_s: float
    upstream: Upstream | None
    reasons: list[str] = field(default_factory=list)
    """Why this offer was dropped; empty when kept."""
    role: str = ""
    """``chosen``, ``fallback:same-family``, ``fallback:next-cheapest``, ``fallback:next-fastest``."""

    @property
    def kept(self) -> bool:
        return not self.reasons

    def cost_key(self) -> tuple[bool, Decimal, int, float, str]:
        """Cheapest first; unknown prices last (never treated as free); then higher quality,
        then lower latency, then the key for a stable order."""
        return (
            self.cost is None,
            self.cost or Decimal(0),
            -self.offer.quality,
            self.expected_latency_s,
            self.offer.key,
        )

    def speed_key(self) -> tuple[float, bool, Decimal, str]:
        return (self.expected_latency_s, self.cost is None, self.cost or Decimal(0), self.offer.key)

    def as_dict(self) -> dict[str, Any]:
        o, s = self.offer, self.stats
        return {
            "offer": o.key,
            "family": o.family,
            "quality": o.quality,
            "capabilities": {
                "context_window": o.context_window,
                "max_output": o.max_output,
                "tools": o.tools,
                "vision": o.vision,
                "json_schema": o.json_schema,
                "reasoning": o.reasoning,
            },
            "price_per_mtok": None
            if self.prices is None
            else {"input": str(self.prices.input), "output": str(self.prices.output)},
            "expected_cost_usd": None if self.cost is None else str(self.cost),
            "latency": {
                "ttft_p50_s": round(s.ttft_p50, 4),
                "ttft_p90_s": round(s.ttft_p90, 4),
                "tps": round(s.tps, 2),
                "expected_s": round(self.expected_latency_s, 4),
                "samples": s.samples,
            },
            "health": {
                "available": s.available,
                "state": s.state,
                "error_rate": round(s.error_rate, 4),
                "in_flight": s.in_flight,
                "reason": s.reason,
            },
            "kept": self.kept,
            "why": self.role
            if self.kept and self.role
            else ("; ".join(self.reasons) if self.reasons else "eligible"),
        }


@dataclass(slots=True)
class Decision:
    model: str
    policy: str
    route: Route
    candidates: list[Candidate] = field(default_factory=list)
    requirements: Requirements | None = None
    quality_floor: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Target:
        route = self.route
        return route if isinstance(route, Target) else targets(route)[0]

    @property
    def route_text(self) -> str:
        return describe(self.route)

    def explain(self) -> dict[str, Any]:
        ts = targets(self.route)
        return {
            "model": self.model,
            "policy": self.policy,
            "quality_floor": self.quality_floor,
            "requirements": self.requirements.as_dict() if self.requirements else None,
            "candidates": [c.as_dict() for c in self.candidates],
            "chosen": ts[0].key if ts else None,
            "chosen_label": ts[0].label if ts else None,
            "fallbacks": [{"offer": t.key, "label": t.label} for t in ts[1:]],
            "route": describe(self.route),
            "notes": list(self.notes),
            "header": self.header(),
        }

    def header(self, route_text: str | None = None) -> str:
        """``x-fareway-route``: ``policy=auto:cheap; floor=3; chosen=groq/x; route=fallback(...)``.
        ``route_text``: :attr:`route_text` when the caller has it already."""
        text = describe(self.route) if route_text is None else route_text
        floor = f"floor={self.quality_floor}; " if self.quality_floor is not None else ""
        return f"policy={self.policy}; {floor}chosen={self.chosen.key}; route={text}"


# --------------------------------------------------------------------------------- router


class Router:
    """Builds route trees.  Holds the catalog, live stats, prices and the upstream factory.

    ``keyed``: provider names with a key (None: trust ``make_upstream`` alone).  An offer is
    routable only when its provider is keyed *and* ``make_upstream`` returns an Upstream."""

    def __init__(
        self,
        catalog: Catalog,
        stats: HealthView,
        prices: PriceFn,
        make_upstream: MakeUpstream,
        *,
        keyed: Collection[str] | None = None,
        aliases: Mapping[str, Any] | None = None,
        config: PolicyConfig | None = None,
        estimate_tokens: TokenEstimator = estimate_prompt_tokens,
        providers: Collection[str] | None = None,
        key_hint: Callable[[str], str | None] | None = None,
        default_model: str | None = None,
        kind: OfferKind = "chat",
    ) -> None:
        self.catalog = catalog
        self.stats = stats
        self.prices = prices
        self.make_upstream = make_upstream
        self.keyed = frozenset(keyed) if keyed is not None else None
        self.aliases: dict[str, Any] = dict(aliases or {})
        self.config = config or PolicyConfig()
        self.estimate_tokens = estimate_tokens
        self.providers = frozenset(providers) if providers is not None else None
        """Configured provider names: ``name/...`` pins that provider (None: the catalog's)."""
        self.key_hint = key_hint or (lambda provider: None)
        self.default_model = default_model
        """Where a name nothing routes goes (``[server] default_model``); None: a 404."""
        self.kind: OfferKind = kind
        """The offers this router serves (``chat``, or ``embedding`` for /v1/embeddings): a name
        that only reaches offers of another kind is a 400 naming the right endpoint."""

    # ------------------------------------------------------------------ entry points

    def __call__(self, name: str, req: ChatRequest) -> Route:
        """The ``PolicyFn`` shape pipeline.resolve takes: a route for ``name``."""
        return self.decide(req, model=name).route

    def route(self, req: ChatRequest) -> Route:
        return self.decide(req).route

    def explain(self, req: ChatRequest, *, prompt_tokens: int | None = None) -> dict[str, Any]:
        """The explanation dict; a request no offer can serve explains why instead of raising."""
        try:
            return self.decide(req, prompt_tokens=prompt_tokens, explain=True).explain()
        except NoEligibleRoute as exc:
            return exc.explain

    def decide(
        self,
        req: ChatRequest,
        *,
        model: str | None = None,
        prompt_tokens: int | None = None,
        explain: bool = False,
    ) -> Decision:
        name = model if model is not None else req.model
        if name in self.aliases:
            return self.alias(name, self.aliases[name], req)
        m = _AUTO.match(name) if name.startswith("auto") else None
        if m is not None:
            mode: Mode = m.group(1) or "auto"  # type: ignore[assignment]
            floor = int(m.group(2)) if m.group(2) else self.config.quality_floor
            return self.auto(req, mode, floor=floor, prompt_tokens=prompt_tokens, name=name)
        if name == "auto" or name.startswith(("auto:", "auto@")):
            raise NotFound(
                f"Unknown routing policy `{name}` (auto, auto:cheap, auto:fast, optionally @1..5).",
                param="model",
            )
        return self.by_name(name, req, prompt_tokens=prompt_tokens, explain=explain)

    # ------------------------------------------------------------------ helpers

    def requirements(self, req: ChatRequest, prompt_tokens: int | None = None) -> Requirements:
        n = prompt_tokens if prompt_tokens is not None else self.estimate_tokens(req)
        return Requirements.of(req, n, self.config.default_output_tokens)

    def _wrong_kind(self, name: str, offer: Offer) -> BadRequest:
        if offer.kind == "embedding":
            msg = f"The model `{name}` is an embedding model: call POST /v1/embeddings with it."
        else:
            msg = (
                f"The model `{name}` is a {offer.kind} model and does not serve {self.kind}s: "
                "POST /v1/embeddings needs an embedding model (GET /v1/models lists them with kind=embedding)."
            )
        return BadRequest(msg, param="model", code="model_not_supported")

    def _upstream(self, provider: str, model: str) -> Upstream | None:
        if self.keyed is not None and provider not in self.keyed:
            return None
        return self.make_upstream(provider, model)

    def _candidate(self, offer: Offer, need: Requirements) -> Candidate:
        prices = self.prices(offer.provider, offer.model)
        out = need.output_tokens if offer.max_output is None else min(need.output_tokens, offer.max_output)
        snap = self.stats.snapshot(offer.key, need.prompt_tokens, out)
        cand = Candidate(
            offer=offer,
            prices=prices,
            cost=expected_cost(prices, need.prompt_tokens, out),
            stats=snap,
            expected_latency_s=snap.expected_latency(out),
            upstream=self._upstream(offer.provider, offer.model),
        )
        if cand.upstream is None:
            cand.reasons.append("no key for provider")
        cand.reasons += need.missing(offer)
        if not snap.available:
            cand.reasons.append(snap.reason or "unavailable")
        return cand

    def _explain_only(
        self, name: str, policy: str, cands: list[Candidate], need: Requirements, floor: int | None
    ) -> dict[str, Any]:
        return {
            "model": name,
            "policy": policy,
            "quality_floor": floor,
            "requirements": need.as_dict(),
            "candidates": [c.as_dict() for c in cands],
            "chosen": None,
            "fallbacks": [],
            "route": None,
        }

    def _no_route(
        self, name: str, policy: str, cands: list[Candidate], need: Requirements, floor: int | None
    ) -> NoEligibleRoute:
        explain = self._explain_only(name, policy, cands, need, floor)
        capable = [
            c for c in cands if not need.missing(c.offer) and (floor is None or c.offer.quality >= floor)
        ]
        if capable:
            keyed = [c for c in capable if c.upstream is not None]
            if not keyed:
                msg = f"No provider with a key serves `{name}` for this request."
            else:
                soonest = min(
                    (c.stats.cooldown_until for c in keyed if c.stats.cooldown_until is not None),
                    default=None,
                )
                wait = (
                    ""
                    if soonest is None
                    else f" (the soonest is back in {max(0.0, soonest - self.stats.clock()):.1f}s)"
                )
                msg = f"Every offer that can serve `{name}` is unavailable right now{wait}."
            explain["error"] = msg
            return NoEligibleRoute(msg, explain, unavailable=True)
        wants = [k for k, v in need.as_dict().items() if v is True]
        floor_txt = f" at quality >= {floor}" if floor is not None else ""
        msg = (
            f"No offer{floor_txt} can serve this request to `{name}` "
            f"(needs: {', '.join(wants) or 'text'}; ~{need.prompt_tokens} prompt + {need.output_tokens} output tokens)."
        )
        explain["error"] = msg
        return NoEligibleRoute(msg, explain)

    # ------------------------------------------------------------------ auto policies

    def auto(
        self,
        req: ChatRequest,
        mode: Mode = "auto",
        *,
        floor: int | None = None,
        prompt_tokens: int | None = None,
        name: str | None = None,
    ) -> Decision:
        floor = self.config.quality_floor if floor is None else floor
        policy = "auto" if mode == "auto" else f"auto:{mode}"
        label_name = name or policy
        need = self.requirements(req, prompt_tokens)
        # untiered offers (quality 0: the rows generated from genai-prices) are never auto's
        cands = [
            self._candidate(o, need) for o in self.catalog.offers() if o.kind == self.kind and o.quality > 0
        ]
        for c in cands:
            if c.offer.quality < floor:
                c.reasons.append(f"quality {c.offer.quality} < floor {floor}")
        eligible = [c for c in cands if c.kept]
        if not eligible:
            raise self._no_route(label_name, policy, cands, need, floor)

        limit = 1 + max(0, self.config.max_fallbacks)
        if mode == "fast":
            ordered = sorted(eligible, key=Candidate.speed_key)[:limit]
            ordered[0].role = f"chosen: fastest@q{floor} {ordered[0].expected_latency_s:.2f}s"
            for c in ordered[1:]:
                c.role = f"fallback:next-fastest {c.expected_latency_s:.2f}s"
        elif mode == "cheap":
            ordered = sorted(eligible, key=Candidate.cost_key)[:limit]
            ordered[0].role = f"chosen: cheapest@q{floor} {_usd(ordered[0].cost)}"
            for c in ordered[1:]:
                c.role = f"fallback:next-cheapest {_usd(c.cost)}"
        else:
            by_cost = sorted(eligible, key=Candidate.cost_key)
            first = by_cost[0]
            same = [c for c in by_cost[1:] if c.offer.family == first.offer.family]
            rest = [c for c in by_cost[1:] if c.offer.family != first.offer.family]
            first.role = f"chosen: cheapest@q{floor} {_usd(first.cost)}"
            for c in same:
                c.role = "fallback:same-family"
            for c in rest:
                c.role = f"fallback:next-cheapest {_usd(c.cost)}"
            ordered = [first, *same, *rest][:limit]
        for c in eligible:
            if c not in ordered:
                c.role = "eligible, beyond the fallback limit"
        route = _chain([_target(c) for c in ordered])
        return Decision(label_name, policy, route, cands, need, floor)

    # ------------------------------------------------------------------ names and aliases

    def by_name(
        self, name: str, req: ChatRequest, *, prompt_tokens: int | None = None, explain: bool = False
    ) -> Decision:
        """``provider/model`` (pinned: that provider, any model id passes through) or a bare model
        id (its offers that can serve this request, cheapest first for it, as a fallback chain).

        A pinned call weighs no candidates (it goes where it was sent): its offer's numbers and
        what it lacks for the request are worked out only when ``explain`` asks (route explain)."""
        provider, _, model = name.partition("/")
        known = self.providers if self.providers is not None else frozenset(self.catalog.providers())
        if model and provider in known:
            offer = None
            for f in model_id_forms(model):
                offer = self.catalog.offer(provider, f)
                if offer is not None:
                    break
            if offer is not None and offer.kind != self.kind:
                raise self._wrong_kind(name, offer)
            sent = _sent_model(model)  # the marker is Claude Code's, not an upstream id
            up = self._upstream(provider, sent)
            if up is None:
                hint = self.key_hint(provider)
                raise NotFound(
                    f"The model `{name}` is not available: provider `{provider}` has no API key configured"
                    + (f" ({hint})." if hint else "."),
                    param="model",
                    code="provider_not_configured",
                )
            if offer is None:
                return Decision(
                    name,
                    "pinned",
                    Target(up, "pinned"),
                    [],
                    None,
                    None,
                    ["not in the catalog: passed through, no capability checks"],
                )
            if not explain:
                return Decision(name, "pinned", Target(up, "pinned"))
            need = self.requirements(req, prompt_tokens)
            c = self._candidate(offer, need)
            c.role = "pinned"
            notes = [f"pinned despite: {'; '.join(c.reasons)}"] if c.reasons else []
            if offer.model != sent:
                notes.append(f"capabilities and prices of {offer.key}")
            return Decision(name, "pinned", Target(up, "pinned"), [c], need, None, notes)
        need = self.requirements(req, prompt_tokens)
        offers: list[Offer] = []
        notes = []
        for form in model_id_forms(name):
            found = self.catalog.by_model_id(form)
            offers = [o for o in found if o.kind == self.kind]
            if found and not offers:
                raise self._wrong_kind(name, found[0])
            if offers:
                if form != name:
                    notes.append(f"`{name}` read as `{form}`")
                break
        if not offers:
            if self.default_model and name != self.default_model:
                d = self.decide(req, model=self.default_model, prompt_tokens=prompt_tokens, explain=explain)
                d.notes.append(f"`{name}` is not routed here: [server] default_model `{self.default_model}`")
                d.model = name
                return d
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.", param="model"
            )
        cands = [self._candidate(o, need) for o in offers]
        if all(c.upstream is None for c in cands):
            names = ", ".join(sorted({c.offer.provider for c in cands}))
            raise NotFound(
                f"The model `{name}` is served by {names}, but none of them has an API key configured.",
                param="model",
                code="provider_not_configured",
            )
        eligible = sorted((c for c in cands if c.kept), key=Candidate.cost_key)
        if not eligible:
            raise self._no_route(name, "family", cands, need, None)
        eligible[0].role = f"chosen: cheapest provider {_usd(eligible[0].cost)}"
        for c in eligible[1:]:
            c.role = "fallback:same-family"
        return Decision(name, "family", _chain([_target(c) for c in eligible]), cands, need, None, notes)

    def alias(self, name: str, spec: Any, req: ChatRequest) -> Decision:
        """A declared alias -> its route tree (see the module docstring for the table form)."""
        need = self.requirements(req)
        if isinstance(spec, str):
            spec = {"strategy": "single", "targets": [spec]}
        if not isinstance(spec, Mapping):
            raise BadRequest(f"alias `{name}` is malformed: expected a string or a table", param="model")
        strategy = str(spec.get("strategy", "fallback"))
        if strategy not in STRATEGIES:
            raise BadRequest(
                f"alias `{name}`: unknown strategy `{strategy}` (one of {', '.join(STRATEGIES)})"
            )
        raw_targets = spec.get("targets") or []
        if isinstance(raw_targets, str):
            raw_targets = [raw_targets]
        weights = spec.get("weights")
        if strategy == "split":
            weights = list(weights) if weights is not None else [1.0] * len(raw_targets)
            if (
                len(weights) != len(raw_targets)
                or any(float(w) < 0 for w in weights)
                or not any(float(w) > 0 for w in weights)
            ):
                raise BadRequest(
                    f"alias `{name}`: split needs one non-negative weight per target, not all zero"
                )

        notes: list[str] = []
        cands: list[Candidate] = []
        chosen: list[tuple[float, Target]] = []
        for i, t in enumerate(raw_targets):
            ref = str(t)
            provider, _, model = ref.partition("/")
            offer = self.catalog.offer(provider, model) if model else None
            if offer is not None and offer.kind != self.kind:
                raise self._wrong_kind(ref, offer)
            if offer is not None:
                cand = self._candidate(offer, need)
                cands.append(cand)
                up = cand.upstream
                missing = need.missing(offer)
                if up is not None and missing and strategy not in ("single", "split"):
                    notes.append(f"{ref} skipped: {'; '.join(missing)}")
                    continue
                if up is not None and not cand.stats.available:
                    notes.append(
                        f"{ref} is unavailable now ({cand.stats.reason}); kept, the executor skips it"
                    )
            else:
                up = self._upstream(provider, model) if model else None
            if up is None:
                notes.append(f"{ref} dropped: unknown provider or no key")
                continue
            w = float(weights[i]) if strategy == "split" and weights is not None else 1.0
            chosen.append((w, Target(up, f"alias:{name}:{strategy}")))
        if not chosen:
            explain = self._explain_only(name, f"alias:{strategy}", cands, need, None)
            explain["notes"] = notes
            explain["error"] = f"alias `{name}` has no usable target"
            raise NoEligibleRoute(
                f"The alias `{name}` has no usable target (keys, capabilities).", explain, unavailable=True
            )
        ts = [t for _, t in chosen]
        max_cost = spec.get("max_cost_usd")
        max_cost_f = float(max_cost) if max_cost is not None else None
        if strategy in ("race", "hedge"):
            for t in ts:
                est = expected_cost(
                    self.prices(t.upstream.provider, t.upstream.model), need.prompt_tokens, need.output_tokens
                )
                t.expected_cost_usd = float(est) if est is not None else None
        route: Route
        if strategy == "single" or len(ts) == 1:
            route = ts[0]
        elif strategy == "fallback":
            route = Fallback(list(ts))
        elif strategy == "race":
            route = Race(list(ts), hedge_ms=None, max_cost_usd=max_cost_f)
        elif strategy == "hedge":
            hedge = spec.get("hedge_ms")
            if hedge is None:
                # Default: the first offer's live p90 time to first token (catalog prior until
                # traffic arrives), so the second starts only when the first is already slow.
                p90 = self.stats.snapshot(ts[0].key).ttft_p90
                hedge = p90 * 1000 if p90 and p90 > 0 else self.config.default_hedge_ms
                notes.append(f"hedge after {float(hedge):.0f} ms (p90 TTFT of {ts[0].key})")
            route = Race(list(ts), hedge_ms=float(hedge), max_cost_usd=max_cost_f)
        else:
            route = Split([(w, t) for w, t in chosen])
        for c in cands:
            c.role = c.role or ("declared" if c.kept else "")
        return Decision(name, f"alias:{strategy}", route, cands, need, None, notes)


def _target(c: Candidate) -> Target:
    assert c.upstream is not None  # kept candidates have one
    return Target(c.upstream, c.role.removeprefix("chosen: "))


def _chain(ts: list[Target]) -> Route:
    return ts[0] if len(ts) == 1 else Fallback(list(ts))


def _usd(cost: Decimal | None) -> str:
    if cost is None:
        return "price unknown"
    return f"${cost:.6f}"
