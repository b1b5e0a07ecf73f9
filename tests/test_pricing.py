"""Prices: exact Decimal costs, bucket by bucket, against the price data itself."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.ledger.pricing import (
    GENAI_PROVIDER_IDS,
    Cost,
    PriceBook,
    _load_overlay_file,
    price_data_version,
)
from fareway.types import Usage

M = Decimal(1_000_000)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GENAI = f"genai-prices {genai_prices.__version__}"


def data_price(provider: str, model: str, when: datetime = NOW) -> ModelPrice:
    """The model's prices straight from the genai-prices data (not through Fareway's code)."""
    _, info = get_snapshot().find_provider_model(model, None, GENAI_PROVIDER_IDS[provider], None)
    return info.get_prices(when)


def flat(value: Any) -> Decimal:
    assert isinstance(value, Decimal), value
    return value


def bucket_sum(c: Cost) -> Decimal:
    return c.input + c.cached_input + c.cache_write + c.output + c.reasoning


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def test_openai_cached_input(book: PriceBook) -> None:
    p = data_price("openai", "gpt-4o")
    usage = Usage(input_tokens=12_345, cached_input_tokens=4_096, output_tokens=789, reasoning_tokens=0)
    cost = book.price("openai", "gpt-4o", usage, NOW)
    assert cost is not None
    assert cost.input == flat(p.input_mtok) * (12_345 - 4_096) / M
    assert cost.cached_input == flat(p.cache_read_mtok) * 4_096 / M
    assert cost.cache_write == 0
    assert cost.output == flat(p.output_mtok) * 789 / M
    assert cost.reasoning == 0
    assert cost.total == bucket_sum(cost)
    assert cost.source == GENAI
    # literal check of the data we read, so the test is not only self-referential
    assert (p.input_mtok, p.cache_read_mtok, p.output_mtok) == (
        Decimal("2.5"),
        Decimal("1.25"),
        Decimal("10"),
    )
    assert cost.total == Decimal("0.0336325")


def test_anthropic_cache_read_and_write(book: PriceBook) -> None:
    p = data_price("anthropic", "claude-haiku-4-5")
    usage = Usage(input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=3_000, output_tokens=500)
    cost = book.price("anthropic", "claude-haiku-4-5", usage, NOW)
    assert cost is not None
    assert cost.input == flat(p.input_mtok) * 1_000 / M
    assert cost.cached_input == flat(p.cache_read_mtok) * 6_000 / M
    assert cost.cache_write == flat(p.cache_write_mtok) * 3_000 / M
    assert cost.output == flat(p.output_mtok) * 500 / M
    assert cost.total == bucket_sum(cost)


def test_reasoning_is_output_unless_priced_separately(book: PriceBook) -> None:
    p = data_price("groq", "openai/gpt-oss-120b")
    usage = Usage(input_tokens=1_000, output_tokens=2_000, reasoning_tokens=1_500)
    cost = book.price("groq", "openai/gpt-oss-120b", usage, NOW)
    assert cost is not None
    assert cost.reasoning == 0
    assert cost.output == flat(p.output_mtok) * 2_000 / M
    assert cost.total == flat(p.input_mtok) * 1_000 / M + flat(p.output_mtok) * 2_000 / M


def test_reasoning_bucket_when_the_data_prices_it(book: PriceBook) -> None:
    p = data_price("openrouter", "perplexity/sonar-deep-research")
    assert p.output_reasoning_mtok is not None
    usage = Usage(input_tokens=100, output_tokens=1_000, reasoning_tokens=600)
    cost = book.price("openrouter", "perplexity/sonar-deep-research", usage, NOW)
    assert cost is not None
    assert cost.reasoning == flat(p.output_reasoning_mtok) * 600 / M
    assert cost.output == flat(p.output_mtok) * 400 / M
    assert cost.total == bucket_sum(cost)


@pytest.mark.parametrize("prompt", [200_000, 200_001])
def test_gemini_pro_tiers_at_the_threshold(book: PriceBook, prompt: int) -> None:
    p = data_price("gemini", "gemini-2.5-pro")
    assert isinstance(p.input_mtok, TieredPrices) and isinstance(p.output_mtok, TieredPrices)
    usage = Usage(input_tokens=prompt, cached_input_tokens=50_000, output_tokens=1_000)
    cost = book.price("gemini", "gemini-2.5-pro", usage, NOW)
    assert cost is not None

    def rate(tp: Any) -> Decimal:
        if isinstance(tp, TieredPrices):
            return tp.tiers[0].price if prompt > tp.tiers[0].start else tp.base
        return flat(tp)

    assert cost.input == rate(p.input_mtok) * (prompt - 50_000) / M
    assert cost.cached_input == rate(p.cache_read_mtok) * 50_000 / M
    assert cost.output == rate(p.output_mtok) * 1_000 / M
    if prompt > 200_000:
        assert rate(p.input_mtok) > p.input_mtok.base  # the tier really applied


def test_anthropic_tier_literal(book: PriceBook) -> None:
    usage = Usage(
        input_tokens=300_000, cached_input_tokens=1_000, cache_write_tokens=2_000, output_tokens=1_000
    )
    cost = book.price("anthropic", "claude-sonnet-4-5", usage, NOW)
    assert cost is not None
    # claude-sonnet-4-5 past 200k prompt tokens: $6 in, $0.6 cache read, $7.5 cache write, $22.5 out
    assert cost.input == Decimal("6") * 297_000 / M
    assert cost.cached_input == Decimal("0.6") * 1_000 / M
    assert cost.cache_write == Decimal("7.5") * 2_000 / M
    assert cost.output == Decimal("22.5") * 1_000 / M
    assert cost.total == Decimal("1.8201")


def test_price_changes_on_the_date_in_the_data(book: PriceBook) -> None:
    _, info = get_snapshot().find_provider_model("mistral-small-latest", None, "mistral", None)
    assert not isinstance(info.prices, ModelPrice)
    change = info.prices[-1].constraint
    assert isinstance(change, StartDateConstraint)
    before = datetime.combine(change.start_date, datetime.min.time(), UTC).replace(
        year=change.start_date.year - 1
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    old, new = info.prices[0].prices, info.prices[-1].prices
    c_old = book.price("mistral", "mistral-small-latest", usage, before)
    c_new = book.price("mistral", "mistral-small-latest", usage, NOW)
    assert c_old is not None and c_new is not None
    assert c_old.total == flat(old.input_mtok) + flat(old.output_mtok)
    assert c_new.total == flat(new.input_mtok) + flat(new.output_mtok)


def test_deepinfra_from_the_overlay(book: PriceBook) -> None:
    usage = Usage(input_tokens=1_000, output_tokens=250)
    cost = book.price("deepinfra", "meta-llama/Llama-3.3-70B-Instruct", usage, NOW)
    assert cost is not None
    assert cost.input == Decimal("0.23") * 1_000 / M
    assert cost.output == Decimal("0.40") * 250 / M
    assert cost.source == f"overlay {_load_overlay_file()['updated']}"


def test_every_overlay_entry_is_cited_and_used(book: PriceBook) -> None:
    rows = _load_overlay_file()["price"]
    assert rows
    for row in rows:
        assert str(row["source"]).startswith("https://")
        up = book.unit_prices(row["provider"], row["model"])
        assert up is not None and up.source.startswith("overlay ")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "no-such-model-xyz"),
        ("deepinfra", "unknown/model"),
        ("my-vllm", "gpt-4o"),
        ("localopenai", "gpt-4o"),
    ],
)
def test_unknown_price_is_none_not_zero(book: PriceBook, provider: str, model: str) -> None:
    assert book.price(provider, model, Usage(input_tokens=10, output_tokens=10)) is None
    assert book.unit_prices(provider, model) is None
    assert not book.known(provider, model)


def test_overrides_win_and_wildcard() -> None:
    book = PriceBook(
        {
            "openai": {"gpt-4o": {"input": "1", "output": 2, "cached_input": "0.5", "reasoning": "3"}},
            "my-vllm": {"*": {"input": 0, "output": 0}},
        }
    )
    usage = Usage(input_tokens=1_000, cached_input_tokens=400, output_tokens=100, reasoning_tokens=40)
    cost = book.price("openai", "gpt-4o", usage, NOW)
    assert cost == Cost(
        input=Decimal(1) * 600 / M,
        cached_input=Decimal("0.5") * 400 / M,
        cache_write=Decimal(0),
        output=Decimal(2) * 60 / M,
        reasoning=Decimal(3) * 40 / M,
        total=Decimal("0.00104"),
        source="config",
    )
    free = book.price("my-vllm", "anything", usage)
    assert free is not None and free.total == 0 and free.source == "config"
    assert book.version.endswith("; config")
    # other models of the same provider still come from genai-prices
    other = book.unit_prices("openai", "gpt-4o-mini")
    assert other is not None and other.source == GENAI


def test_tiered_override() -> None:
    book = PriceBook(
        {"corp": {"m": {"input": "1", "output": "2", "tier": [{"start": 1000, "input": "3", "output": "4"}]}}}
    )
    small = book.price("corp", "m", Usage(input_tokens=1000, output_tokens=10))
    big = book.price("corp", "m", Usage(input_tokens=1001, output_tokens=10))
    assert small is not None and big is not None
    assert small.total == (Decimal(1) * 1000 + Decimal(2) * 10) / M
    assert big.total == (Decimal(3) * 1001 + Decimal(4) * 10) / M
    up = book.unit_prices("corp", "m")
    assert up is not None and up.tiered and up.input == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"input": "1"},
        {"input": "-1", "output": "1"},
        {"input": "x", "output": "1"},
        {"input": 1, "output": 1, "inptu": 2},
    ],
)
def test_bad_override_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PriceBook({"p": {"m": bad}})


def test_unit_prices_for_the_router(book: PriceBook) -> None:
    up = book.unit_prices("anthropic", "claude-haiku-4-5")
    p = data_price("anthropic", "claude-haiku-4-5")
    assert up is not None
    assert (up.input, up.cached_input, up.cache_write, up.output) == (
        p.input_mtok,
        p.cache_read_mtok,
        p.cache_write_mtok,
        p.output_mtok,
    )
    assert up.estimate(1_000_000, 1_000_000) == flat(p.input_mtok) + flat(p.output_mtok)
    cerebras = book.unit_prices("cerebras", "llama3.1-8b")
    assert cerebras is not None and cerebras.cached_input == cerebras.input  # no cache price listed


def test_lookup_is_cached(book: PriceBook, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = PriceBook()
    calls = 0
    original = fresh._resolve

    def counting(provider: str, model: str) -> Any:
        nonlocal calls
        calls += 1
        return original(provider, model)

    monkeypatch.setattr(fresh, "_resolve", counting)
    for _ in range(100):
        fresh.price("openai", "gpt-4o-mini", Usage(input_tokens=1, output_tokens=1))
        fresh.price("nobody", "nothing", Usage(input_tokens=1, output_tokens=1))
    assert calls == 2


def test_version_string() -> None:
    v = price_data_version()
    assert v.startswith(f"genai-prices {genai_prices.__version__}; overlay ")


CASES = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gemini", "gemini-2.5-pro"),
    ("groq", "openai/gpt-oss-120b"),
    ("xai", "grok-4"),
    ("openrouter", "perplexity/sonar-deep-research"),
]


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(CASES),
    uncached=st.integers(0, 400_000),
    cached=st.integers(0, 100_000),
    written=st.integers(0, 50_000),
    output=st.integers(0, 100_000),
    reasoning_share=st.integers(0, 100),
)
def test_total_matches_genai_prices_calc_price(
    case: tuple[str, str], uncached: int, cached: int, written: int, output: int, reasoning_share: int
) -> None:
    """An independent check: our bucket sum equals genai-prices' own calc_price total."""
    provider, model = case
    reasoning = output * reasoning_share // 100
    usage = Usage(
        input_tokens=uncached + cached + written,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output,
        reasoning_tokens=reasoning,
    )
    cost = PriceBook().price(provider, model, usage, NOW)
    assert cost is not None
    theirs = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=cached,
            cache_write_tokens=written,
            output_tokens=output,
            output_reasoning_tokens=reasoning,
        ),
        model,
        provider_id=GENAI_PROVIDER_IDS[provider],
        genai_request_timestamp=NOW,
    )
    assert cost.total == theirs.total_price
    assert cost.total == bucket_sum(cost)
