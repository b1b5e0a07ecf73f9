"""Prices: what one call cost, bucket by bucket, in exact ``Decimal`` US dollars.

Where a price comes from, first match wins:

1. **config** — user overrides passed to :class:`PriceBook` (``{provider: {model: {...}}}``, per
   million tokens; model ``"*"`` prices every model of a provider, e.g. a private vLLM at 0);
2. **genai-prices** — the maintained price data (``genai_prices`` package) for the providers it
   covers; Fareway provider names map to its ids in :data:`GENAI_PROVIDER_IDS`;
3. **overlay** — ``prices_overlay.toml`` beside this module, for what genai-prices lacks
   (DeepInfra), every figure with the public page it was read from.

No match means the price is **unknown**: :meth:`PriceBook.price` returns ``None``, never a zero.
Embedding models are listed with an input price only (genai-prices gives OpenAI's and Google's no
output price; a config or overlay table still needs both, and ``output = 0`` is the usual value
for an embedding model there): their calls, which have no output tokens, are
priced, and a usage *with* output tokens on such a model is unknown (``None``).

Buckets (``Cost``) are disjoint and add up to ``total``:

* ``input`` — uncached prompt tokens (``Usage.uncached_input_tokens``) at the input price;
* ``cached_input`` — cache reads at the cache-read price (the input price when none is listed);
* ``cache_write`` — cache writes at the cache-write price (the input price when none is listed;
  Anthropic's 1-hour cache writes are billed at the 5-minute price: ``Usage`` does not split them);
* ``output`` — completion tokens at the output price.  Reasoning tokens are part of the output
  and billed here, at the output price, unless the model has a separate reasoning price;
* ``reasoning`` — only when the data prices reasoning tokens separately: then those tokens are
  taken out of ``output`` and billed here.  Otherwise it is ``Decimal(0)``.

Tiers follow genai-prices: once the prompt (``input_tokens``, cached tokens included) exceeds a
tier's start, every token of every bucket of that call is billed at the tier's price.  Prices
that depend on the date (a price change announced in the data) are resolved at the call's time.
Request-context price variants (service tiers such as ``flex``/``priority``), per-request and
per-search fees, and audio/image token prices are not applied: ``Usage`` does not carry them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from fareway.types import Usage

PER_MILLION = Decimal(1_000_000)
ZERO = Decimal(0)

GENAI_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "groq": "groq",
    "mistral": "mistral",
    "xai": "x-ai",
    "cerebras": "cerebras",
    "openrouter": "openrouter",
}
"""Fareway provider name -> genai-prices provider id.  A provider not listed here is looked up in
genai-prices only when its name is exactly a genai-prices provider id (``together``,
``fireworks``...), so a private endpoint never borrows a public provider's prices by accident."""

_PRICE_KEYS = ("input", "output", "cached_input", "cache_write", "reasoning")
_CACHE_LIMIT = 4096


# ------------------------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Rate:
    """A per-million-token price, optionally tiered by prompt size."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()
    """``(start, price)`` ascending: the price applies when the prompt exceeds ``start`` tokens."""

    def at(self, prompt_tokens: int) -> Decimal:
        for start, price in reversed(self.tiers):
            if prompt_tokens > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class Cost:
    """What one call cost, in USD.  The buckets are disjoint and sum to ``total``."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal
    total: Decimal
    source: str
    """``"genai-prices <version>"``, ``"overlay <date>"`` or ``"config"``."""


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """USD per million tokens at the base tier, for estimates.  ``cached_input`` and
    ``cache_write`` are the input price when the model lists none; ``reasoning`` is ``None``
    when reasoning tokens are billed as output."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal | None
    tiered: bool
    source: str

    def estimate(self, input_tokens: int, output_tokens: int) -> Decimal:
        """A quick estimate: uncached input and output at the base tier."""
        return (self.input * input_tokens + self.output * output_tokens) / PER_MILLION


@dataclass(frozen=True, slots=True)
class ModelRates:
    """The resolved prices of one (provider, model) at one point in time.  ``output`` is None
    when the data lists an input price only (embedding models)."""

    input: Rate
    output: Rate | None
    cached_input: Rate | None
    cache_write: Rate | None
    reasoning: Rate | None
    source: str

    def cost(self, usage: Usage) -> Cost | None:
        """What ``usage`` costs; None when it has output tokens and no output price is listed."""
        # Buckets with no tokens cost exactly 0: skip their Decimal arithmetic (most calls have no
        # cached, cache-write or separately priced reasoning tokens).
        prompt = usage.input_tokens
        n = usage.uncached_input_tokens
        c_input = self.input.at(prompt) * n / PER_MILLION if n else ZERO
        n = usage.cached_input_tokens
        c_cached = (self.cached_input or self.input).at(prompt) * n / PER_MILLION if n else ZERO
        n = usage.cache_write_tokens
        c_write = (self.cache_write or self.input).at(prompt) * n / PER_MILLION if n else ZERO
        reasoning = min(usage.reasoning_tokens, usage.output_tokens) if self.reasoning is not None else 0
        c_reasoning = (
            self.reasoning.at(prompt) * reasoning / PER_MILLION if reasoning and self.reasoning else ZERO
        )
        n = usage.output_tokens - reasoning
        if n and self.output is None:
            return None
        c_output = self.output.at(prompt) * n / PER_MILLION if n and self.output is not None else ZERO
        total = c_input + c_cached + c_write + c_output + c_reasoning
        return Cost(c_input, c_cached, c_write, c_output, c_reasoning, total, self.source)

    def unit_prices(self) -> UnitPrices | None:
        """The base-tier prices; None without an output price (an estimate needs both)."""
        if self.output is None:
            return None
        tiered = any(
            r is not None and r.tiers
            for r in (self.input, self.output, self.cached_input, self.cache_write, self.reasoning)
        )
        return UnitPrices(
            input=self.input.base,
            cached_input=(self.cached_input or self.input).base,
            cache_write=(self.cache_write or self.input).base,
            output=self.output.base,
            reasoning=self.reasoning.base if self.reasoning is not None else None,
            tiered=tiered,
            source=self.source,
        )


# ---------------------------------------------------------------------------- genai-prices


@cache
def _genai_version() -> str:
    import genai_prices

    return str(genai_prices.__version__)


@cache
def overlay_version() -> str:
    return str(_load_overlay_file().get("updated", "unknown"))


def price_data_version() -> str:
    """The versions of the built-in price data, e.g. ``"genai-prices 0.2.3; overlay 2026-11-25"``."""
    return f"genai-prices {_genai_version()}; overlay {overlay_version()}"


def _genai_rate(value: Any) -> Rate | None:
    from genai_prices.types import TieredPrices

    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return Rate(value.base, tuple((t.start, t.price) for t in value.tiers))
    return Rate(Decimal(value))


def _first(model_price: Any, *keys: str) -> Rate | None:
    for key in keys:
        rate = _genai_rate(getattr(model_price, key, None))
        if rate is not None:
            return rate
    return None


def _rates_from_genai(model_price: Any, source: str) -> ModelRates | None:
    inp = _first(model_price, "input_mtok", "input_text_mtok")
    out = _first(model_price, "output_mtok", "output_text_mtok")
    if inp is None:
        return None
    return ModelRates(
        input=inp,
        output=out,
        cached_input=_first(model_price, "cache_read_mtok", "cache_text_read_mtok"),
        cache_write=_first(model_price, "cache_write_mtok", "cache_write_5m_mtok", "cache_text_write_mtok"),
        reasoning=_first(model_price, "output_reasoning_mtok", "output_text_reasoning_mtok"),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    """A (provider, model)'s prices: fixed, or a schedule of (constraint, rates) from the data,
    resolved like genai-prices does (last active constraint wins; the first entry otherwise)."""

    fixed: ModelRates | None
    schedule: tuple[tuple[Any, ModelRates | None], ...] = ()

    def at(self, when: datetime | None) -> ModelRates | None:
        if not self.schedule:
            return self.fixed
        ts = when or datetime.now(tz=UTC)
        for constraint, rates in reversed(self.schedule):
            if constraint is None or constraint.active(ts):
                return rates
        return self.schedule[0][1]


def _genai_entry(genai_provider: str, model: str) -> _Entry | None:
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import ModelPrice

    try:
        _, info = get_snapshot().find_provider_model(model, None, genai_provider, None)
    except LookupError:
        return None
    source = f"genai-prices {_genai_version()}"
    if isinstance(info.prices, ModelPrice):
        rates = _rates_from_genai(info.prices, source)
        return _Entry(rates) if rates is not None else None
    schedule = tuple((cp.constraint, _rates_from_genai(cp.prices, source)) for cp in info.prices)
    if all(r is None for _, r in schedule):
        return None
    return _Entry(None, schedule)


@cache
def _genai_provider_ids() -> frozenset[str]:
    from genai_prices.data_snapshot import get_snapshot

    return frozenset(p.id for p in get_snapshot().providers)


# --------------------------------------------------------------------- overlay and config


def _decimal(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{where}: price must be a number or a numeric string, got {value!r}")
    try:
        dec = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{where}: {value!r} is not a number") from exc
    if not dec.is_finite() or dec < 0:
        raise ValueError(f"{where}: price must be finite and non-negative, got {value!r}")
    return dec


def _rates_from_table(table: Mapping[str, Any], source: str, where: str) -> ModelRates:
    allowed = {*_PRICE_KEYS, "tier", "tiers", "provider", "model", "source"}
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown price keys {sorted(unknown)}; use {list(_PRICE_KEYS)}")
    for required in ("input", "output"):
        if required not in table:
            raise ValueError(f"{where}: missing {required!r} price")
    tiers = list(table.get("tier", table.get("tiers", [])))
    tiers.sort(key=lambda t: int(t["start"]))

    def rate(key: str) -> Rate | None:
        if key not in table:
            return None
        tiered = tuple(
            (int(t["start"]), _decimal(t[key], f"{where} tier {t['start']} {key}")) for t in tiers if key in t
        )
        return Rate(_decimal(table[key], f"{where} {key}"), tiered)

    inp, out = rate("input"), rate("output")
    assert inp is not None
    return ModelRates(
        input=inp,
        output=out,
        cached_input=rate("cached_input"),
        cache_write=rate("cache_write"),
        reasoning=rate("reasoning"),
        source=source,
    )


@cache
def _load_overlay_file() -> dict[str, Any]:
    text = resources.files("fareway.ledger").joinpath("prices_overlay.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def _overlay() -> dict[tuple[str, str], ModelRates]:
    data = _load_overlay_file()
    source = f"overlay {data.get('updated', 'unknown')}"
    out: dict[tuple[str, str], ModelRates] = {}
    for i, row in enumerate(data.get("price", [])):
        where = f"prices_overlay.toml price #{i + 1}"
        if not row.get("source"):
            raise ValueError(f"{where}: every overlay price must cite its `source` page")
        out[(str(row["provider"]), str(row["model"]).lower())] = _rates_from_table(row, source, where)
    return out


def _overrides_from_config(
    overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
) -> dict[tuple[str, str], ModelRates]:
    out: dict[tuple[str, str], ModelRates] = {}
    for provider, models in (overrides or {}).items():
        for model, table in models.items():
            where = f"price override {provider}/{model}"
            out[(provider, model.lower())] = _rates_from_table(table, "config", where)
    return out


# ------------------------------------------------------------------------------ the book


class PriceBook:
    """Resolves (provider, model) to prices and prices a call's usage.

    Resolution is cached per (provider, model), so after the first call a lookup is a dict get
    (plus a date check for the few models whose data schedules a price change).
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        *,
        provider_aliases: Mapping[str, str] | None = None,
        use_overlay: bool = True,
    ) -> None:
        """``overrides``: ``{provider: {model | "*": {"input": .., "output": .., "cached_input": ..,
        "cache_write": .., "reasoning": .., "tier": [{"start": N, "input": ..}, ..]}}}`` in USD
        per million tokens.  ``provider_aliases`` maps more Fareway provider names to
        genai-prices provider ids (e.g. ``{"together-ai": "together"}``)."""
        self._overrides = _overrides_from_config(overrides)
        self._genai_ids = {**GENAI_PROVIDER_IDS, **(provider_aliases or {})}
        self._use_overlay = use_overlay
        self._cache: dict[tuple[str, str], _Entry | None] = {}

    # -- resolution

    def _resolve(self, provider: str, model: str) -> _Entry | None:
        lower = model.lower()
        rates = self._overrides.get((provider, lower)) or self._overrides.get((provider, "*"))
        if rates is not None:
            return _Entry(rates)
        genai_id = self._genai_ids.get(provider)
        if genai_id is None and provider in _genai_provider_ids():
            genai_id = provider
        if genai_id is not None:
            entry = _genai_entry(genai_id, model)
            if entry is not None:
                return entry
        if self._use_overlay:
            rates = _overlay().get((provider, lower))
            if rates is not None:
                return _Entry(rates)
        return None

    def _entry(self, provider: str, model: str) -> _Entry | None:
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        entry = self._resolve(provider, model)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def rates(self, provider: str, model: str, when: datetime | None = None) -> ModelRates | None:
        entry = self._entry(provider, model)
        return entry.at(when) if entry is not None else None

    # -- public API

    def price(self, provider: str, model: str, usage: Usage, when: datetime | None = None) -> Cost | None:
        """The cost of ``usage`` on ``provider``/``model`` at ``when`` (default: now), or ``None``
        when the price is unknown."""
        rates = self.rates(provider, model, when)
        return rates.cost(usage) if rates is not None else None

    def unit_prices(self, provider: str, model: str, when: datetime | None = None) -> UnitPrices | None:
        rates = self.rates(provider, model, when)
        return rates.unit_prices() if rates is not None else None

    def embedding_unit_prices(
        self, provider: str, model: str, when: datetime | None = None
    ) -> UnitPrices | None:
        """The base-tier prices of an embedding model, for the embeddings router's estimate: an
        input price alone is enough (an embedding call has no output tokens; ``output`` is then
        reported as 0, which no call is billed at)."""
        rates = self.rates(provider, model, when)
        if rates is None:
            return None
        if rates.output is not None:
            return rates.unit_prices()
        return UnitPrices(
            input=rates.input.base,
            cached_input=(rates.cached_input or rates.input).base,
            cache_write=(rates.cache_write or rates.input).base,
            output=ZERO,
            reasoning=None,
            tiered=bool(rates.input.tiers),
            source=rates.source,
        )

    def known(self, provider: str, model: str) -> bool:
        return self._entry(provider, model) is not None

    @property
    def version(self) -> str:
        base = price_data_version()
        return f"{base}; config" if self._overrides else base
