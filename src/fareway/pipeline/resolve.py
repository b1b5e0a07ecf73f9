"""Model addressing: what a request's ``model`` means.

In order:

1. an alias from the config (``[aliases]``) or ``auto``, ``auto:fast``, ``auto:cheap``: the routing
   policies build the route tree (router.policies.Router);
2. ``provider/model`` where ``provider`` is configured: that provider, upstream model ``model``
   (everything after the first slash, so ``openrouter/meta-llama/llama-3.3-70b-instruct`` works);
3. a bare model id known to the catalog: its offers on providers that have a key, as a fallback
   chain that keeps the model and changes the provider;
4. anything else: 404 naming the model.
"""

from __future__ import annotations

from collections.abc import Callable

from fareway.config import Config
from fareway.errors import NotFound
from fareway.providers.catalog import Offer
from fareway.router.routes import Fallback, Route, Target, describe
from fareway.types import ChatRequest, Upstream

PolicyFn = Callable[[str, ChatRequest], Route]
"""Builds a route for ``auto``-style model names; provided by router.policies."""


class Resolver:
    def __init__(self, config: Config, offers: list[Offer], policy: PolicyFn | None = None) -> None:
        self.config = config
        self.offers = offers
        self.policy = policy
        self._by_id: dict[str, list[Offer]] = {}
        for o in offers:
            self._by_id.setdefault(o.model, []).append(o)
            if o.family != o.model:
                self._by_id.setdefault(o.family, []).append(o)

    def upstream(self, provider: str, model: str) -> Upstream | None:
        """The Upstream for (provider, model), or None when the provider is unknown or has no key."""
        p = self.config.providers.get(provider)
        if p is None or not p.api_key:
            return None
        s = p.spec
        return Upstream(
            provider=s.name,
            dialect=s.dialect,
            base_url=s.base_url,
            model=model,
            api_key=p.api_key,
            auth_header=s.auth_header,
            auth_scheme=s.auth_scheme,
            extra_headers=dict(s.extra_headers),
            quirks=s.quirks,
        )

    def _pinned(self, name: str, label: str) -> Target:
        provider, _, model = name.partition("/")
        p = self.config.providers.get(provider)
        if p is None or not model:
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.", param="model"
            )
        up = self.upstream(provider, model)
        if up is None:
            env = p.spec.key_env
            hint = (
                f" (set {env} or api_key in [providers.{provider}])"
                if env
                else f" (set api_key in [providers.{provider}])"
            )
            raise NotFound(
                f"The model `{name}` is not available: provider `{provider}` has no API key configured{hint}.",
                param="model",
                code="provider_not_configured",
            )
        return Target(up, label)

    def resolve(self, req: ChatRequest) -> Route:
        return self.resolve_explained(req)[0]

    def resolve_explained(self, req: ChatRequest) -> tuple[Route, str]:
        """The route and a one-line account of how it was chosen (for x-fareway-route)."""
        name = req.model
        if name in self.config.aliases or name == "auto" or name.startswith("auto:"):
            if self.policy is None:
                raise NotFound(
                    f"The model `{name}` needs the routing policies, which are not enabled.", param="model"
                )
            decide = getattr(self.policy, "decide", None)
            if decide is None:
                route = self.policy(name, req)
                return route, f"route={describe(route)}"
            decision = decide(req, model=name)
            kept = sum(1 for c in decision.candidates if c.kept)
            note = decision.header()
            if decision.candidates:
                note += f"; candidates={kept}/{len(decision.candidates)}"
            return decision.route, note
        route = self._resolve_plain(req)
        policy = "pinned" if "/" in name and name.partition("/")[0] in self.config.providers else "catalog"
        return route, f"policy={policy}; route={describe(route)}"

    def _resolve_plain(self, req: ChatRequest) -> Route:
        name = req.model
        provider = name.partition("/")[0]
        if "/" in name and provider in self.config.providers:
            return self._pinned(name, "pinned")
        offers = self._by_id.get(name, [])
        targets = []
        for o in offers:
            up = self.upstream(o.provider, o.model)
            if up is not None:
                targets.append(Target(up, "catalog"))
        if not targets:
            if offers:
                providers = ", ".join(sorted({o.provider for o in offers}))
                raise NotFound(
                    f"The model `{name}` is served by {providers}, but none of them has an API key configured.",
                    param="model",
                    code="provider_not_configured",
                )
            raise NotFound(
                f"The model `{name}` does not exist or you do not have access to it.", param="model"
            )
        return targets[0] if len(targets) == 1 else Fallback(list(targets))

    def listed_models(self) -> list[tuple[str, str]]:
        """(id, owned_by) for GET /v1/models: every routable model with the configured keys."""
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        keyed = self.config.keyed_providers()
        for o in self.offers:
            if o.provider in keyed:
                for mid in (f"{o.provider}/{o.model}", o.model):
                    if mid not in seen:
                        seen.add(mid)
                        out.append((mid, o.provider))
        for name, p in self.config.providers.items():
            if name in keyed:
                for m in p.models:
                    mid = f"{name}/{m}"
                    if mid not in seen:
                        seen.add(mid)
                        out.append((mid, name))
        for alias in self.config.aliases:
            if alias not in seen:
                seen.add(alias)
                out.append((alias, "fareway"))
        if self.policy is not None and keyed:
            for a in ("auto", "auto:fast", "auto:cheap"):
                out.append((a, "fareway"))
        return out
