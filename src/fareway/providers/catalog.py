"""The model catalog: which (provider, model) offers exist and what each can do.

Loaded from ``catalog.toml`` beside this module (hand-set rows: capabilities and quality tiers
with their sources, docs/catalog.md) and ``catalog_genai.toml`` (generated from genai-prices by
``fareway catalog refresh``: every current chat model of the providers it prices, untiered and with
unknown capabilities; a hand-set row wins for the same provider/model), then extended by the config's
``[[models]]`` entries and by user-defined providers (whose models are not known in advance:
``provider/anything`` is accepted for them).

Two layers:

* :class:`Offer` is one row (provider, upstream model id, family, capabilities, quality tier,
  optional latency priors); :func:`load_builtin_catalog` returns the built-in rows as a list.
* :class:`Catalog` indexes offers for the router: by ``provider/model``, by family, and by a bare
  model id (a bare id resolves to the offers whose ``model`` or ``family`` equals it), and holds
  the per-provider latency priors that seed live statistics (:class:`Prior`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

OfferKind = Literal["chat", "embedding"]
KINDS: tuple[OfferKind, ...] = ("chat", "embedding")


@dataclass(frozen=True, slots=True)
class Offer:
    provider: str
    model: str
    """The upstream model id sent to the provider."""
    family: str
    """The model's identity across providers (the same open model on Cerebras and Groq)."""
    context_window: int | None = 8192
    """None: unknown (a generated row genai-prices gives no window for); not checked."""
    max_output: int | None = 4096
    """None: unknown (every generated row); not checked."""
    tools: bool | None = False
    """None (here and in the three flags below): unknown, as in every generated row; a request
    needing the capability is not refused for it (the provider decides)."""
    vision: bool | None = False
    json_schema: bool | None = False
    reasoning: bool | None = False
    quality: int = 2
    """Tier 1 (small) .. 5 (frontier); see docs/catalog.md for the public numbers behind it.  0:
    untiered (the rows generated from genai-prices): ``auto`` never picks it."""
    prior_ttft_s: float | None = None
    """Cold-start time to first token for this offer; None: the provider's prior."""
    prior_tps: float | None = None
    """Cold-start output tokens per second for this offer; None: the provider's prior."""
    kind: OfferKind = "chat"
    """``chat`` (chat completions / messages) or ``embedding`` (/v1/embeddings only).  Chat
    routing (``auto``, bare ids, pins) never sends a chat call to an embedding model, nor the
    reverse.  For an embedding offer ``context_window`` is the most tokens one input may have."""
    dimensions: int | None = None
    """An embedding model's native vector size."""

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Prior:
    """A cold-start latency guess: seconds to first token and output tokens per second."""

    ttft_s: float = 1.0
    tps: float = 50.0


DEFAULT_PRIOR = Prior()
"""Used for an offer whose provider has no ``[prior.X]`` row (a user-defined provider)."""

_OFFER_FIELDS = frozenset(Offer.__dataclass_fields__)


def _builtin_toml() -> dict[str, Any]:
    text = resources.files("fareway.providers").joinpath("catalog.toml").read_text("utf-8")
    return tomllib.loads(text)


GENERATED_FILE = "catalog_genai.toml"


def _generated_family(model: str) -> str:
    """A generated row's family: its id, less a ``-latest`` (so ``claude-3-5-haiku-20241022``,
    read as ``claude-3-5-haiku``, finds ``claude-3-5-haiku-latest``)."""
    return model.removesuffix("-latest") or model


def load_generated_catalog() -> list[Offer]:
    """The rows generated from genai-prices (``catalog_genai.toml``, see
    ``fareway.ledger.genai_catalog``): family = model id (less ``-latest``), untiered, capabilities
    unknown.  Their prices are a record only (the ledger prices from genai-prices itself)."""
    return list(_generated_offers())


@cache
def _generated_offers() -> tuple[Offer, ...]:
    text = resources.files("fareway.providers").joinpath(GENERATED_FILE).read_text("utf-8")
    return tuple(
        Offer(
            provider=str(row["provider"]),
            model=str(row["model"]),
            family=_generated_family(str(row["model"])),
            context_window=row.get("context_window"),
            max_output=None,
            tools=None,
            vision=None,
            json_schema=None,
            reasoning=None,
            quality=0,
        )
        for row in tomllib.loads(text).get("offer", [])
    )


def offer_from_row(row: Mapping[str, Any]) -> Offer:
    """An Offer from a TOML/config table; unknown keys are an error (typos must not pass silently)."""
    unknown = set(row) - _OFFER_FIELDS
    if unknown:
        raise ValueError(f"unknown catalog offer field(s): {', '.join(sorted(unknown))}")
    data = dict(row)
    data.setdefault("family", data.get("model"))
    if data.get("kind", "chat") not in KINDS:
        raise ValueError(f"catalog offer kind must be one of {', '.join(KINDS)}, not {data.get('kind')!r}")
    return Offer(**data)


def load_handset_catalog() -> list[Offer]:
    """The hand-set rows of ``catalog.toml`` (capabilities and tiers with their sources)."""
    return [offer_from_row(row) for row in _builtin_toml().get("offer", [])]


def load_builtin_catalog() -> list[Offer]:
    """The hand-set rows, then every generated row for a (provider, model) they do not list."""
    hand = load_handset_catalog()
    keys = {o.key for o in hand}
    return [*hand, *(o for o in load_generated_catalog() if o.key not in keys)]


def load_builtin_priors() -> dict[str, Prior]:
    return {
        name: Prior(
            ttft_s=float(t.get("ttft_s", DEFAULT_PRIOR.ttft_s)), tps=float(t.get("tps", DEFAULT_PRIOR.tps))
        )
        for name, t in _builtin_toml().get("prior", {}).items()
    }


class Catalog:
    """Offers indexed for routing.  Immutable after construction; :meth:`extended` makes a new one."""

    def __init__(self, offers: Iterable[Offer], priors: Mapping[str, Prior] | None = None) -> None:
        self._offers: list[Offer] = []
        self._by_key: dict[str, Offer] = {}
        self._by_family: dict[str, list[Offer]] = {}
        self._by_model: dict[str, list[Offer]] = {}
        for o in offers:
            if o.key in self._by_key:
                # a later row (config) replaces an earlier one (built-in) for the same offer
                self._offers = [x for x in self._offers if x.key != o.key]
                self._by_family[self._by_key[o.key].family].remove(self._by_key[o.key])
                self._by_model[self._by_key[o.key].model].remove(self._by_key[o.key])
            self._offers.append(o)
            self._by_key[o.key] = o
            self._by_family.setdefault(o.family, []).append(o)
            self._by_model.setdefault(o.model, []).append(o)
        self._pos: dict[str, int] = {o.key: i for i, o in enumerate(self._offers)}
        self._priors: dict[str, Prior] = dict(priors or {})

    @classmethod
    def builtin(cls) -> Catalog:
        return cls(load_builtin_catalog(), load_builtin_priors())

    def extended(self, offers: Iterable[Offer], priors: Mapping[str, Prior] | None = None) -> Catalog:
        """A new catalog with ``offers`` added (replacing same provider/model rows) and priors merged."""
        return Catalog([*self._offers, *offers], {**self._priors, **(priors or {})})

    # ------------------------------------------------------------------ lookups

    def offers(self) -> list[Offer]:
        return list(self._offers)

    def __iter__(self) -> Any:
        return iter(list(self._offers))

    def __len__(self) -> int:
        return len(self._offers)

    def offer(self, provider: str, model: str) -> Offer | None:
        return self._by_key.get(f"{provider}/{model}")

    def offers_for_family(self, family: str) -> list[Offer]:
        return list(self._by_family.get(family, []))

    def families(self, kind: OfferKind | None = None) -> list[str]:
        """Every family (of offers of ``kind`` only, when given)."""
        return sorted(
            f
            for f, offers in self._by_family.items()
            if offers and (kind is None or any(o.kind == kind for o in offers))
        )

    def providers(self) -> list[str]:
        return sorted({o.provider for o in self._offers})

    def by_model_id(self, name: str) -> list[Offer]:
        """Offers for a bare model id: those whose ``model`` or ``family`` equals it (catalog order)."""
        hits = {o.key: o for o in (*self._by_model.get(name, ()), *self._by_family.get(name, ()))}
        return sorted(hits.values(), key=lambda o: self._pos[o.key])

    def lookup(self, name: str) -> list[Offer]:
        """``provider/model`` when that exact offer exists, else the bare-id matches.

        The exact form wins because some upstream ids contain a slash themselves
        (``groq/openai/gpt-oss-120b`` is provider ``groq``, model ``openai/gpt-oss-120b``; the bare
        ``openai/gpt-oss-120b`` is the Groq/DeepInfra/OpenRouter model id)."""
        provider, _, model = name.partition("/")
        if model:
            exact = self.offer(provider, model)
            if exact is not None:
                return [exact]
        return self.by_model_id(name)

    # ------------------------------------------------------------------ priors

    def prior(self, provider: str, model: str) -> Prior:
        """The cold-start latency guess for an offer: its own override, else its provider's row."""
        base = self._priors.get(provider, DEFAULT_PRIOR)
        o = self.offer(provider, model)
        if o is None:
            return base
        return Prior(
            ttft_s=o.prior_ttft_s if o.prior_ttft_s is not None else base.ttft_s,
            tps=o.prior_tps if o.prior_tps is not None else base.tps,
        )

    def prior_for_key(self, key: str) -> Prior:
        provider, _, model = key.partition("/")
        return self.prior(provider, model)
