"""The worst-case estimate of a call, by hand: the dearest target of a fallback chain, the sum
of a race's legs, cache-write and reasoning prices where they are dearer, None when a target has
no price.  Prices are the test's own (USD per million tokens), so every figure is hand-checked."""

from __future__ import annotations

from decimal import Decimal

from fareway.ledger.pricing import PriceBook
from fareway.limits.reserve import WorstRates, route_worst, worst_cost
from fareway.router.routes import Fallback, Race, Split, Target
from fareway.types import Upstream

PRICES = {
    "cheap": {"m": {"input": 1, "output": 2}},
    "dear": {"m": {"input": 3, "output": 10, "cache_write": 3.75, "reasoning": 12}},
}
NOW = 1_800_000_000.0


def t(provider: str) -> Target:
    return Target(Upstream(provider, "openai", "http://x", "m"))


def worst(route: object, prompt: int, output: int) -> int | None:
    rates = WorstRates(PriceBook(PRICES))
    return route_worst(
        route, lambda x: rates.cost_nano(x.upstream.provider, x.upstream.model, prompt, output, NOW)
    )  # type: ignore[arg-type]


def test_one_target_at_its_dearest_rates() -> None:
    # 1000 prompt tokens at $3.75/M (cache write beats $3) + 100 output at $12/M (reasoning beats $10)
    assert worst(t("dear"), 1000, 100) == 3_750_000 + 1_200_000  # nano-dollars
    # exactly what the price book says for the same shape
    exact = worst_cost(PriceBook(PRICES), [("dear", "m")], 1000, 100)
    assert exact == Decimal("0.00495")


def test_fallback_takes_the_dearest_and_a_race_the_sum() -> None:
    cheap = 1000 * 1_000 + 100 * 2_000  # $1/M, $2/M in nano-dollars per token: 1000 and 2000
    dear = 3_750_000 + 1_200_000
    assert worst(Fallback([t("cheap"), t("dear")]), 1000, 100) == dear
    assert worst(Race([t("cheap"), t("dear")]), 1000, 100) == cheap + dear
    assert worst(Split([(1.0, t("cheap")), (1.0, Race([t("cheap"), t("cheap")]))]), 1000, 100) == 2 * cheap


def test_a_target_without_a_price_makes_the_call_unpriceable() -> None:
    assert worst(Fallback([t("cheap"), t("nowhere")]), 10, 10) is None


def test_config_sections_are_strict() -> None:
    import pytest

    from fareway.config import ConfigError, load_config

    def load(text: str, env: dict[str, str] | None = None) -> object:
        import pathlib
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "f.toml"
            p.write_text(text)
            return load_config(p, env=env or {})

    cfg = load(
        '[limits]\nstore = "redis"\nredis_url = "redis://:${PW}@127.0.0.1:6379/0"\nunpriced = "admit"\n',
        {"PW": "s3cret"},
    )
    assert cfg.limit_settings.redis_url == "redis://:s3cret@127.0.0.1:6379/0"  # type: ignore[attr-defined]
    assert cfg.limit_settings.unpriced == "admit"  # type: ignore[attr-defined]
    cfg = load("[keys]\nrate_limit_rest = 5\n", {"FAREWAY_VAULT_KEY": "k1,k2"})
    assert cfg.key_settings.vault_key == "k1,k2" and cfg.key_settings.rate_limit_rest == 5.0  # type: ignore[attr-defined]
    for bad, name in (
        ('[limits]\nstore = "disk"\n', "store"),
        ("[limits]\noutput_tokens = 0\n", "output_tokens"),
        ("[limits]\nprompt_margin = 0.5\n", "prompt_margin"),
        ("[limits]\nbogus = 1\n", "bogus"),
        ('[keys]\nvault_key = "${NOPE}"\n', "NOPE"),
        ("[keys]\nquota_rest = -1\n", "quota_rest"),
        ('[limits]\nredis_url = "http://x"\n', "redis_url"),
    ):
        with pytest.raises(ConfigError, match=name):
            load(bad)
