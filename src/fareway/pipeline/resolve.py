"""Model addressing: what a request's ``model`` means, through one path.

Every name goes to :meth:`fareway.router.policies.Router.decide`, which returns a Decision (the
route tree, the candidates it weighed and why):

1. an alias from the config (``[aliases]``);
2. ``auto``, ``auto:fast``, ``auto:cheap``, each optionally with ``@1..5`` (the quality floor);
3. ``provider/model`` where ``provider`` is configured: that provider, upstream model ``model``
   (everything after the first slash, so ``openrouter/meta-llama/llama-3.3-70b-instruct`` works);
   a model the catalog does not list is passed through to that provider as given;
4. a bare model id known to the catalog: its offers on providers that have a key, filtered by what
   the request needs and ordered cheapest first for this request, as a fallback chain;
5. anything else: 404 naming the model.

This module also builds the :class:`~fareway.types.Upstream` for a (provider, model) from the
config, and lists what ``GET /v1/models`` shows, with the owner a call would really go to.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from fareway.config import Config
from fareway.errors import FarewayError, NotFound
from fareway.providers.catalog import Offer
from fareway.router.policies import Decision, Router
from fareway.router.routes import targets
from fareway.types import ChatRequest, Message, TextPart, Upstream


class Resolver:
    def __init__(self, config: Config, offers: list[Offer], router: Router | None = None) -> None:
        self.config = config
        self.offers = offers
        self._router = router
        self.stored_keys: Callable[[], Collection[str]] | None = None
        """Providers with keys in the vault (a team's or the gateway's): routable without a
        configured ``api_key``; the admit stage gives each call its key (server.factory wires it)."""

    def keyed(self) -> set[str]:
        """Providers with a key: configured, or stored in the vault."""
        keyed = self.config.keyed_providers()
        if self.stored_keys is not None:
            keyed |= {p for p in self.stored_keys() if p in self.config.providers}
        return keyed

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("the resolver has no router (server.factory wires one)")
        return self._router

    @router.setter
    def router(self, router: Router) -> None:
        self._router = router

    def upstream(self, provider: str, model: str) -> Upstream | None:
        """The Upstream for (provider, model), or None when the provider is unknown or has no key."""
        p = self.config.providers.get(provider)
        if p is None or not (p.api_key or (self.stored_keys is not None and provider in self.stored_keys())):
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

    def key_hint(self, provider: str) -> str | None:
        """How to give ``provider`` a key (for a 404's message), or None for an unknown provider."""
        p = self.config.providers.get(provider)
        if p is None:
            return None
        env = p.spec.key_env
        return (
            f"set {env} or api_key in [providers.{provider}]"
            if env
            else f"set api_key in [providers.{provider}]"
        )

    def decide(self, req: ChatRequest, model: str | None = None) -> Decision:
        """The routing decision for ``req.model`` (or for ``model`` instead, when given: an A/B
        experiment's arm).  Raises NotFound (404) for a name nothing serves, NoEligibleRoute
        (422/503) when no offer can serve this request now."""
        if not req.model:
            raise NotFound("The request names no model.", param="model")
        return self.router.decide(req, model=model)

    def listed_models(self) -> list[tuple[str, str]]:
        """(id, owned_by) for GET /v1/models (see :meth:`listed`)."""
        return [(mid, owner) for mid, owner, _ in self.listed()]

    def listed(self) -> list[tuple[str, str, str]]:
        """(id, owned_by, kind) for GET /v1/models: every routable model with the configured keys,
        owned by the provider a call with that id goes to first; ``kind`` is ``chat`` or
        ``embedding`` (the endpoint it serves)."""
        out: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        keyed = self.keyed()
        providers = self.config.providers
        kinds: dict[str, str] = {}
        for o in self.offers:
            kinds.setdefault(o.key, o.kind)
            kinds.setdefault(o.model, o.kind)
            if o.provider not in keyed:
                continue
            ids = [f"{o.provider}/{o.model}"]
            # A bare id that starts with a configured provider's name (`openai/gpt-oss-120b` on
            # groq) is routed to that provider, not to this offer: it is not this offer's to list.
            if o.model.partition("/")[0] not in providers or "/" not in o.model:
                ids.append(o.model)
            for mid in ids:
                if mid not in seen:
                    seen.add(mid)
                    owner = o.provider if mid == ids[0] else self._bare_owner(mid, o, keyed)
                    out.append((mid, owner, o.kind))
        for name, p in providers.items():
            if name in keyed:
                for models, kind in ((p.models, "chat"), (p.embedding_models, "embedding")):
                    for m in models:
                        mid = f"{name}/{m}"
                        kinds.setdefault(mid, kind)
                        if mid not in seen:
                            seen.add(mid)
                            out.append((mid, name, kind))
        for alias, spec in self.config.aliases.items():
            if alias not in seen:
                seen.add(alias)
                out.append((alias, "fareway", kinds.get(_first_target(spec), "chat")))
        if keyed:
            for a in ("auto", "auto:fast", "auto:cheap"):
                out.append((a, "fareway", "chat"))
        return out

    def _bare_owner(self, mid: str, offer: Offer, keyed: set[str]) -> str:
        """The provider a plain call to the bare id ``mid`` goes to first: ``offer``'s when it is
        the only keyed offer of that id, else the router's choice (cheapest for a short prompt, as
        healthy now), so that ``owned_by`` says where a call goes."""
        if self._router is None or offer.kind != "chat":
            return offer.provider
        if len({o.provider for o in self._router.catalog.by_model_id(mid) if o.provider in keyed}) < 2:
            return offer.provider
        try:
            route = self._router.decide(
                ChatRequest(mid, [Message("user", [TextPart("hi")])]), prompt_tokens=8
            ).route
        except FarewayError:
            return offer.provider
        return targets(route)[0].upstream.provider


def _first_target(spec: object) -> str:
    """The first target an alias names (its kind is the alias's)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        targets = spec.get("targets")
        if isinstance(targets, str):
            return targets
        if isinstance(targets, list) and targets:
            return str(targets[0])
    return ""
