"""Routing policies: auto / auto:cheap / auto:fast / aliases / bare ids, and their explanations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fareway.errors import BadRequest, NotFound
from fareway.providers.catalog import Catalog, Offer, Prior, load_handset_catalog
from fareway.router.breaker import BreakerConfig
from fareway.router.policies import NoEligibleRoute, PolicyConfig, Router
from fareway.router.requirements import Requirements, chars_estimate, estimate_prompt_tokens
from fareway.router.routes import Fallback, Race, Split, Target, targets
from fareway.router.stats import Stats
from fareway.types import (
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingConfig,
    ToolSpec,
    Upstream,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class P:
    input: Decimal
    output: Decimal


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def up(provider: str, model: str) -> Upstream:
    return Upstream(
        provider=provider, dialect="openai", base_url=f"https://{provider}.test/v1", model=model, api_key="k"
    )


OFFERS = [
    # family "big-open" on three providers
    Offer("cheapco", "big-open", "big-open", 131072, 8192, tools=True, json_schema=True, quality=3),
    Offer("fastco", "big-open-fast", "big-open", 131072, 8192, tools=True, json_schema=True, quality=3),
    Offer("midco", "big-open", "big-open", 131072, 8192, tools=True, quality=3),
    # a vision model, pricier
    Offer(
        "visco",
        "seer",
        "seer",
        200000,
        16384,
        tools=True,
        vision=True,
        json_schema=True,
        reasoning=True,
        quality=4,
    ),
    # a tiny model: cheap but below the default floor, small context
    Offer("cheapco", "tiny", "tiny", 8192, 2048, quality=1),
    # a text-only model without tools, short context
    Offer("midco", "plain", "plain", 16384, 4096, quality=3),
]
PRICES = {
    "cheapco/big-open": P(Decimal("0.50"), Decimal("0.80")),
    "fastco/big-open-fast": P(Decimal("0.85"), Decimal("1.20")),
    "midco/big-open": P(Decimal("0.60"), Decimal("0.90")),
    "visco/seer": P(Decimal("3.00"), Decimal("15.00")),
    "cheapco/tiny": P(Decimal("0.05"), Decimal("0.08")),
    "midco/plain": P(Decimal("0.70"), Decimal("1.00")),
}
PRIORS = {
    "cheapco": Prior(1.5, 60),
    "fastco": Prior(0.2, 1500),
    "midco": Prior(0.6, 300),
    "visco": Prior(1.0, 80),
}


def make_router(
    offers: list[Offer] | None = None,
    prices: dict[str, P] | None = None,
    keyed: set[str] | None = None,
    clock: FakeClock | None = None,
    **kw: object,
) -> Router:
    catalog = Catalog(offers if offers is not None else OFFERS, PRIORS)
    stats = Stats(
        catalog, clock=clock or FakeClock(), breaker=BreakerConfig(failure_threshold=2, cooldown_s=30)
    )
    table = prices if prices is not None else PRICES
    keys = keyed if keyed is not None else {o.provider for o in catalog.offers()}
    return Router(
        catalog,
        stats,
        lambda p, m: table.get(f"{p}/{m}"),
        up,
        keyed=keys,
        estimate_tokens=chars_estimate,
        **kw,  # type: ignore[arg-type]
    )


def req(text: str = "hello", model: str = "auto", **kw: object) -> ChatRequest:
    return ChatRequest(model=model, messages=[Message("user", [TextPart(text)])], **kw)  # type: ignore[arg-type]


def keys(route: object) -> list[str]:
    return [t.key for t in targets(route)]  # type: ignore[arg-type]


WEATHER = ToolSpec(
    "weather", "get the weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
IMAGE = ImagePart(url="https://example.test/cat.png")
SCHEMA = ResponseFormat(type="json_schema", name="x", schema={"type": "object"})


# ------------------------------------------------------------------------------- estimates


def test_chars_estimate() -> None:
    r = req("a" * 400)
    assert chars_estimate(r) == 100 + 4
    r2 = ChatRequest(model="auto", messages=[Message("user", [TextPart("abcd"), IMAGE])])
    assert chars_estimate(r2) == 1 + 4 + 1000
    r3 = req("abcd", tools=[WEATHER])
    assert chars_estimate(r3) > chars_estimate(req("abcd"))


def test_estimate_prompt_tokens_falls_back_or_uses_counter() -> None:
    n = estimate_prompt_tokens(req("a" * 4000))
    assert 500 <= n <= 1100  # chars/4 gives 1004; a real tokenizer gives ~500 for runs of "a"


def test_requirements_of_request() -> None:
    need = Requirements.of(
        ChatRequest(
            model="auto",
            messages=[Message("user", [TextPart("hi"), IMAGE])],
            tools=[WEATHER],
            response_format=SCHEMA,
            thinking=ThinkingConfig("enabled", 1024),
            max_tokens=99,
        ),
        prompt_tokens=10,
        default_output_tokens=512,
    )
    assert (need.tools, need.vision, need.json_schema, need.reasoning, need.output_tokens) == (
        True,
        True,
        True,
        True,
        99,
    )
    plain = Requirements.of(req("x"), 5, 512)
    assert (
        not (plain.tools or plain.vision or plain.json_schema or plain.reasoning)
        and plain.output_tokens == 512
    )


# ------------------------------------------------------------------------------------ auto


def test_auto_cheapest_above_floor_with_same_family_fallbacks_first() -> None:
    router = make_router()
    d = router.decide(req("hi"))
    # tiny is cheapest overall but quality 1 < floor 3; big-open on cheapco is next
    assert keys(d.route) == ["cheapco/big-open", "midco/big-open", "fastco/big-open-fast", "midco/plain"]
    assert isinstance(d.route, Fallback)
    labels = [t.label for t in targets(d.route)]
    assert labels[0].startswith("cheapest@q3 $")
    assert labels[1] == labels[2] == "fallback:same-family"
    assert labels[3].startswith("fallback:next-cheapest")


def test_auto_family_first_even_when_another_family_is_cheaper() -> None:
    prices = dict(PRICES)
    prices["midco/plain"] = P(Decimal("0.55"), Decimal("0.85"))  # cheaper than the other big-opens
    d = make_router(prices=prices).decide(req("hi"))
    assert keys(d.route)[:3] == ["cheapco/big-open", "midco/big-open", "fastco/big-open-fast"]
    d_cheap = make_router(prices=prices).decide(req("hi", model="auto:cheap"))
    assert keys(d_cheap.route)[:2] == ["cheapco/big-open", "midco/plain"]


def test_auto_fallback_limit() -> None:
    d = make_router(config=PolicyConfig(max_fallbacks=1)).decide(req("hi"))
    assert keys(d.route) == ["cheapco/big-open", "midco/big-open"]
    beyond = [c for c in d.candidates if c.role == "eligible, beyond the fallback limit"]
    assert {c.offer.key for c in beyond} == {"fastco/big-open-fast", "midco/plain", "visco/seer"}


def test_quality_floor_inline_and_configured() -> None:
    router = make_router()
    assert keys(router.decide(req("hi", model="auto@4")).route) == ["visco/seer"]
    assert keys(router.decide(req("hi", model="auto:cheap@1")).route)[0] == "cheapco/tiny"
    assert (
        keys(make_router(config=PolicyConfig(quality_floor=1)).decide(req("hi")).route)[0] == "cheapco/tiny"
    )
    with pytest.raises(NotFound):
        router.decide(req("hi", model="auto:slow"))


@pytest.mark.parametrize(
    ("kw", "allowed"),
    [
        ({"tools": [WEATHER]}, {"cheapco/big-open", "fastco/big-open-fast", "midco/big-open", "visco/seer"}),
        ({"response_format": SCHEMA}, {"cheapco/big-open", "fastco/big-open-fast", "visco/seer"}),
        ({"thinking": ThinkingConfig("enabled", 1000)}, {"visco/seer"}),
    ],
)
def test_auto_never_picks_an_offer_lacking_a_needed_capability(
    kw: dict[str, object], allowed: set[str]
) -> None:
    for model in ("auto", "auto:cheap", "auto:fast", "auto@1"):
        d = make_router().decide(req("hi", model=model, **kw))
        assert set(keys(d.route)) <= allowed, model
        dropped = {c.offer.key for c in d.candidates if any(r.startswith("no ") for r in c.reasons)}
        assert dropped and not dropped & set(keys(d.route))


def test_auto_vision_request_goes_to_the_vision_offer() -> None:
    r = ChatRequest(model="auto", messages=[Message("user", [TextPart("what is this?"), IMAGE])])
    d = make_router().decide(r)
    assert keys(d.route) == ["visco/seer"]
    assert isinstance(d.route, Target)
    plain = next(c for c in d.candidates if c.offer.key == "midco/plain")
    assert "no vision" in plain.reasons


def test_auto_long_prompt_skips_small_context_windows() -> None:
    router = make_router(config=PolicyConfig(quality_floor=1))
    short = router.decide(req("x" * 400))
    assert keys(short.route)[0] == "cheapco/tiny"
    long_prompt = req("x" * 4 * 20_000)  # ~20k tokens: too big for tiny (8k) and plain (16k)
    d = router.decide(long_prompt)
    assert "cheapco/tiny" not in keys(d.route) and "midco/plain" not in keys(d.route)
    tiny = next(c for c in d.candidates if c.offer.key == "cheapco/tiny")
    assert any(r.startswith("context 20") for r in tiny.reasons)
    huge = req("x" * 4 * 190_000)  # only the 200k-window offer fits
    assert keys(router.decide(huge).route) == ["visco/seer"]
    with pytest.raises(NoEligibleRoute) as ei:
        router.decide(req("x" * 4 * 300_000))
    assert ei.value.status == 422 and ei.value.explain["chosen"] is None


def test_max_tokens_over_max_output_is_filtered() -> None:
    d = make_router().decide(req("hi", max_tokens=10_000))
    assert keys(d.route) == ["visco/seer"]  # 16384 max output; the others cap at 8192/4096


def test_auto_cheap_uses_the_cost_of_this_request_not_list_price() -> None:
    offers = [
        Offer("a", "reader", "reader", 200000, 8192, quality=3),  # cheap input, dear output
        Offer("b", "writer", "writer", 200000, 8192, quality=3),  # dear input, cheap output
    ]
    prices = {
        "a/reader": P(Decimal("0.10"), Decimal("10.00")),
        "b/writer": P(Decimal("2.00"), Decimal("0.50")),
    }
    router = make_router(offers=offers, prices=prices)
    # By list price b/writer is cheaper on output and on input+output (2.50 vs 10.10)...
    long_in_short_out = req("x" * 4 * 50_000, model="auto:cheap", max_tokens=50)
    d = router.decide(long_in_short_out)
    # ...but for 50k prompt tokens and 50 out: a = 0.005 + 0.0005, b = 0.1 + 0.000025
    assert keys(d.route) == ["a/reader", "b/writer"]
    assert d.candidates[0].cost == (Decimal("0.10") * 50_004 + Decimal("10.00") * 50) / 1_000_000
    short_in_long_out = req("hi", model="auto:cheap", max_tokens=4000)
    assert keys(router.decide(short_in_long_out).route) == ["b/writer", "a/reader"]


def test_unknown_price_is_last_never_free() -> None:
    prices = dict(PRICES)
    del prices["cheapco/big-open"]
    d = make_router(prices=prices, config=PolicyConfig(max_fallbacks=10)).decide(
        req("hi", model="auto:cheap")
    )
    assert keys(d.route)[-1] == "cheapco/big-open"
    assert next(c for c in d.candidates if c.offer.key == "cheapco/big-open").cost is None


def test_auto_fast_uses_priors_then_live_stats() -> None:
    clock = FakeClock()
    router = make_router(clock=clock, config=PolicyConfig(max_fallbacks=10))
    assert keys(router.decide(req("hi", model="auto:fast")).route)[0] == "fastco/big-open-fast"
    # fastco turns slow in live traffic: 4 s to first token, 20 tokens/s
    for _ in range(20):
        tok = router.stats.begin("fastco/big-open-fast")
        router.stats.first_token(tok, 4.0)
        router.stats.end(tok, True, 4.0 + 500 / 20, 500, 200, None, None)
    d = router.decide(req("hi", model="auto:fast"))
    assert keys(d.route)[0] == "midco/big-open"  # prior 0.6 s + 512/300
    assert keys(d.route)[-1] == "fastco/big-open-fast"
    fast = next(c for c in d.candidates if c.offer.key == "fastco/big-open-fast")
    assert fast.expected_latency_s == pytest.approx(fast.stats.ttft_p50 + 512 / fast.stats.tps)
    assert fast.stats.ttft_p50 == pytest.approx(4.0)
    assert targets(d.route)[0].label.startswith("fastest@q3 ")


def test_unhealthy_offers_are_dropped() -> None:
    clock = FakeClock()
    router = make_router(clock=clock)
    for _ in range(2):  # breaker threshold 2
        router.stats.end(router.stats.begin("cheapco/big-open"), False, 0.1, 0, 500, None, None)
    router.stats.end(router.stats.begin("midco/big-open"), False, 0.1, 0, 429, 60.0, None)
    router.stats.end(
        router.stats.begin("fastco/big-open-fast"),
        True,
        1.0,
        100,
        200,
        None,
        {"x-ratelimit-remaining-tokens": "300", "x-ratelimit-reset-tokens": "20s"},
    )
    d = router.decide(req("hi"))
    assert keys(d.route) == ["midco/plain", "visco/seer"]
    why = {c.offer.key: "; ".join(c.reasons) for c in d.candidates}
    assert "circuit open" in why["cheapco/big-open"]
    assert "cooling down: retry-after 60s" in why["midco/big-open"]
    assert "rate limit: tokens remaining 300" in why["fastco/big-open-fast"]
    clock.t += 30  # breaker half-open, rate-limit reset; midco still cooling
    # decisions read live stats each time: the same router sees the clock move
    assert keys(router.decide(req("hi")).route) == [
        "cheapco/big-open",
        "fastco/big-open-fast",
        "midco/plain",
        "visco/seer",
    ]


def test_all_capable_offers_unhealthy_is_503() -> None:
    clock = FakeClock()
    router = make_router(clock=clock)
    r = ChatRequest(model="auto", messages=[Message("user", [IMAGE])])
    router.stats.end(router.stats.begin("visco/seer"), False, 0.1, 0, 429, 45.0, None)
    with pytest.raises(NoEligibleRoute) as ei:
        router.decide(r)
    assert ei.value.status == 503 and "back in 45.0s" in ei.value.message
    assert router.explain(r)["error"] == ei.value.message


def test_keyless_providers_are_dropped() -> None:
    router = make_router(keyed={"midco"})
    d = router.decide(req("hi"))
    assert keys(d.route) == ["midco/big-open", "midco/plain"]
    assert all(
        c.reasons == ["no key for provider"]
        for c in d.candidates
        if c.offer.provider not in {"midco"} and c.offer.quality >= 3
    )
    # make_upstream returning None also counts as keyless
    r2 = Router(
        router.catalog, router.stats, router.prices, lambda p, m: None, estimate_tokens=chars_estimate
    )
    with pytest.raises(NoEligibleRoute) as ei:
        r2.decide(req("hi"))
    assert ei.value.status == 503 and "No provider with a key" in ei.value.message


# -------------------------------------------------------------------------- names, aliases


def test_bare_model_id_resolves_to_family_cheapest_first() -> None:
    d = make_router().decide(req("hi", model="big-open"))
    assert d.policy == "family"
    assert keys(d.route) == ["cheapco/big-open", "midco/big-open", "fastco/big-open-fast"]
    assert keys(make_router().decide(req("hi", model="big-open-fast")).route) == ["fastco/big-open-fast"]


def test_pinned_provider_model() -> None:
    router = make_router()
    d = router.decide(req("hi", model="midco/big-open"))
    assert d.policy == "pinned" and isinstance(d.route, Target) and d.route.label == "pinned"
    # not in the catalog but the provider has a key: accepted without capability checks
    d2 = router.decide(req("hi", model="midco/brand-new"))
    assert keys(d2.route) == ["midco/brand-new"] and d2.notes
    with pytest.raises(NotFound):
        router.decide(req("hi", model="nope"))
    with pytest.raises(NotFound):
        make_router(keyed={"cheapco"}).decide(req("hi", model="midco/big-open"))


ALIASES = {
    "smart": {"strategy": "fallback", "targets": ["visco/seer", "cheapco/big-open"]},
    "quick": {
        "strategy": "race",
        "targets": ["fastco/big-open-fast", "midco/big-open"],
        "max_cost_usd": 0.01,
    },
    "hedged": {"strategy": "hedge", "targets": ["cheapco/big-open", "midco/big-open"], "hedge_ms": 250},
    "hedged-default": {"strategy": "hedge", "targets": ["cheapco/big-open", "midco/big-open"]},
    "ab": {"strategy": "split", "targets": ["cheapco/big-open", "midco/big-open"], "weights": [90, 10]},
    "one": {"strategy": "single", "targets": ["midco/plain", "cheapco/big-open"]},
    "short": "fastco/big-open-fast",
    "partly-keyless": {"strategy": "fallback", "targets": ["nokey/model-x", "midco/big-open"]},
    "custom": {"strategy": "fallback", "targets": ["midco/not-in-catalog"]},
}


def test_aliases_build_the_declared_tree() -> None:
    router = make_router(aliases=ALIASES)
    smart = router.decide(req("hi", model="smart")).route
    assert isinstance(smart, Fallback) and keys(smart) == ["visco/seer", "cheapco/big-open"]
    assert targets(smart)[0].label == "alias:smart:fallback"
    quick = router.decide(req("hi", model="quick")).route
    assert isinstance(quick, Race) and quick.hedge_ms is None and quick.max_cost_usd == 0.01
    hedged = router.decide(req("hi", model="hedged")).route
    assert isinstance(hedged, Race) and hedged.hedge_ms == 250.0
    default = router.decide(req("hi", model="hedged-default")).route
    p90 = router.stats.snapshot("cheapco/big-open").ttft_p90
    assert isinstance(default, Race) and default.hedge_ms == pytest.approx(p90 * 1000)
    ab = router.decide(req("hi", model="ab")).route
    assert isinstance(ab, Split) and [(w, t.key) for w, t in ab.choices] == [  # type: ignore[union-attr]
        (90.0, "cheapco/big-open"),
        (10.0, "midco/big-open"),
    ]
    assert keys(router.decide(req("hi", model="one")).route) == ["midco/plain"]
    assert keys(router.decide(req("hi", model="short")).route) == ["fastco/big-open-fast"]
    partly = router.decide(req("hi", model="partly-keyless"))
    assert keys(partly.route) == ["midco/big-open"] and "nokey/model-x dropped" in partly.notes[0]
    assert keys(router.decide(req("hi", model="custom")).route) == ["midco/not-in-catalog"]
    # a route-tree PolicyFn for pipeline.resolve
    assert keys(router("smart", req("hi"))) == ["visco/seer", "cheapco/big-open"]


def test_alias_fallback_skips_targets_lacking_a_capability() -> None:
    router = make_router(aliases=ALIASES)
    r = ChatRequest(model="smart", messages=[Message("user", [TextPart("?"), IMAGE])])
    d = router.decide(r)
    assert keys(d.route) == ["visco/seer"] and any("no vision" in n for n in d.notes)


@pytest.mark.parametrize(
    "spec",
    [
        {"strategy": "teleport", "targets": ["midco/plain"]},
        {"strategy": "split", "targets": ["midco/plain", "cheapco/big-open"], "weights": [1]},
        {"strategy": "split", "targets": ["midco/plain"], "weights": [-1]},
        42,
    ],
)
def test_bad_alias_specs_are_rejected(spec: object) -> None:
    router = make_router(aliases={"bad": spec})
    with pytest.raises(BadRequest):
        router.decide(req("hi", model="bad"))


def test_alias_with_no_usable_target() -> None:
    router = make_router(aliases={"ghost": {"targets": ["nokey/a", "nokey/b"]}})
    with pytest.raises(NoEligibleRoute) as ei:
        router.decide(req("hi", model="ghost"))
    assert ei.value.explain["notes"] == [
        "nokey/a dropped: unknown provider or no key",
        "nokey/b dropped: unknown provider or no key",
    ]


# --------------------------------------------------------------------------------- explain


def test_explain_lists_candidates_with_numbers_and_reasons() -> None:
    router = make_router()
    e = router.explain(req("hi", model="auto", tools=[WEATHER]))
    assert e["policy"] == "auto" and e["quality_floor"] == 3 and e["model"] == "auto"
    assert e["requirements"]["tools"] is True and e["requirements"]["output_tokens"] == 512
    assert e["chosen"] == "cheapco/big-open"
    assert [f["offer"] for f in e["fallbacks"]] == ["midco/big-open", "fastco/big-open-fast", "visco/seer"]
    by = {c["offer"]: c for c in e["candidates"]}
    assert set(by) == {o.key for o in OFFERS}
    assert by["midco/plain"]["kept"] is False and "no tools" in by["midco/plain"]["why"]
    assert by["cheapco/tiny"]["why"] == "no tools; quality 1 < floor 3"
    chosen = by["cheapco/big-open"]
    assert chosen["kept"] and chosen["why"].startswith("chosen: cheapest@q3 $")
    assert chosen["price_per_mtok"] == {"input": "0.50", "output": "0.80"}
    assert Decimal(chosen["expected_cost_usd"]) > 0
    assert chosen["capabilities"]["context_window"] == 131072 and chosen["capabilities"]["tools"] is True
    assert chosen["latency"] == {
        "ttft_p50_s": 1.5,
        "ttft_p90_s": 1.5,
        "tps": 60.0,
        "expected_s": pytest.approx(1.5 + 512 / 60, abs=1e-4),
        "samples": 0,
    }
    assert chosen["health"]["available"] is True
    assert e["route"] == "fallback(cheapco/big-open,midco/big-open,fastco/big-open-fast,visco/seer)"
    assert e["header"] == (
        "policy=auto; floor=3; chosen=cheapco/big-open; "
        "route=fallback(cheapco/big-open,midco/big-open,fastco/big-open-fast,visco/seer)"
    )
    assert e["header"].isascii()


def test_header_for_pinned_and_alias() -> None:
    router = make_router(aliases=ALIASES)
    assert (
        router.decide(req("hi", model="midco/plain")).header()
        == "policy=pinned; chosen=midco/plain; route=midco/plain"
    )
    assert router.decide(req("hi", model="hedged")).header() == (
        "policy=alias:hedge; chosen=cheapco/big-open; route=hedge(cheapco/big-open,midco/big-open)"
    )


# ------------------------------------------------------------------------------- property


offer_st = st.builds(
    Offer,
    provider=st.sampled_from(["p1", "p2", "p3", "p4"]),
    model=st.sampled_from(["m1", "m2", "m3", "m4", "m5"]),
    family=st.sampled_from(["f1", "f2", "f3"]),
    context_window=st.sampled_from([4096, 8192, 32768, 131072]),
    max_output=st.sampled_from([1024, 4096, 16384]),
    tools=st.booleans(),
    vision=st.booleans(),
    json_schema=st.booleans(),
    reasoning=st.booleans(),
    quality=st.integers(1, 5),
)


@settings(max_examples=200, deadline=None)
@given(
    offers=st.lists(offer_st, min_size=1, max_size=10),
    tools=st.booleans(),
    vision=st.booleans(),
    schema=st.booleans(),
    thinking=st.booleans(),
    prompt_chars=st.integers(0, 200_000),
    max_tokens=st.one_of(st.none(), st.integers(1, 20_000)),
    mode=st.sampled_from(["auto", "auto:cheap", "auto:fast", "auto@1", "auto:cheap@5"]),
    priced=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_chosen_offer_always_satisfies_the_request(
    offers: list[Offer],
    tools: bool,
    vision: bool,
    schema: bool,
    thinking: bool,
    prompt_chars: int,
    max_tokens: int | None,
    mode: str,
    priced: list[bool],
) -> None:
    prices = {o.key: P(Decimal(i + 1) / 10, Decimal(i + 2) / 10) for i, o in enumerate(offers) if priced[i]}
    router = make_router(offers=offers, prices=prices)
    content: list[object] = [TextPart("x" * prompt_chars)]
    if vision:
        content.append(IMAGE)
    r = ChatRequest(
        model=mode,
        messages=[Message("user", content)],  # type: ignore[arg-type]
        tools=[WEATHER] if tools else [],
        response_format=SCHEMA if schema else None,
        thinking=ThinkingConfig("enabled", 512) if thinking else None,
        max_tokens=max_tokens,
    )
    need = router.requirements(r)
    floor = int(mode[-1]) if "@" in mode else 3
    catalog_offers = router.catalog.offers()
    ok = [o for o in catalog_offers if not need.missing(o) and o.quality >= floor]
    try:
        d = router.decide(r)
    except NoEligibleRoute:
        assert not ok
        return
    assert ok
    for t in targets(d.route):
        o = router.catalog.offer(t.upstream.provider, t.upstream.model)
        assert o is not None
        assert not need.missing(o) and o.quality >= floor
        assert (not tools or o.tools) and (not vision or o.vision) and (not schema or o.json_schema)
        assert need.prompt_tokens + min(need.output_tokens, o.max_output) <= o.context_window
    if mode.startswith("auto:cheap"):
        costs = [c.cost_key() for c in d.candidates if c.kept]
        assert (
            d.candidates
            and min(costs)[:2] == next(c for c in d.candidates if c.offer.key == d.chosen.key).cost_key()[:2]
        )


# ------------------------------------------------------------------------ built-in catalog


def test_builtin_catalog_is_complete_and_documented() -> None:
    hand = Catalog(load_handset_catalog())
    assert len(hand) >= 19
    doc = (ROOT / "docs" / "catalog.md").read_text("utf-8")
    for o in hand.offers():
        assert o.context_window is not None and o.max_output is not None
        assert 1 <= o.quality <= 5
        assert o.context_window > 0 and o.max_output > 0
        assert o.family in doc, f"docs/catalog.md does not cite a tier for {o.family}"
        assert f"`{o.provider}`" in doc or o.provider in doc
    cat = Catalog.builtin()
    # same open model on several providers shares a family
    assert {o.provider for o in cat.offers_for_family("llama-3.3-70b")} >= {
        "cerebras",
        "groq",
        "deepinfra",
        "openrouter",
    }
    assert {o.provider for o in cat.offers_for_family("gpt-oss-120b")} >= {"cerebras", "groq"}
    # bare ids: model or family; exact provider/model first even with slashes in the model id
    assert [o.key for o in cat.lookup("groq/openai/gpt-oss-120b")] == ["groq/openai/gpt-oss-120b"]
    assert {o.provider for o in cat.lookup("openai/gpt-oss-120b")} >= {"groq", "openrouter"}
    assert cat.offer("openai", "gpt-4o-mini") is not None and cat.offer("openai", "nope") is None
    assert "llama-3.1-8b" in cat.families()
    # every family's tier is the same on every provider
    for fam in hand.families():
        assert len({o.quality for o in hand.offers_for_family(fam)}) == 1, fam


def test_docs_tiers_match_the_catalog() -> None:
    """docs/catalog.md's tier table and catalog.toml agree."""
    doc = (ROOT / "docs" / "catalog.md").read_text("utf-8")
    cat = Catalog(load_handset_catalog())
    rows = re.findall(r"^\| `([^`]+)` \| (\d) \|", doc, flags=re.M)
    assert rows, "tier table not found"
    documented = {fam: int(tier) for fam, tier in rows}
    assert set(documented) == set(cat.families("chat"))
    for fam, tier in documented.items():
        assert cat.offers_for_family(fam)[0].quality == tier, fam


def test_catalog_extension_replaces_rows() -> None:
    cat = Catalog.builtin()
    new = cat.extended(
        [Offer("groq", "llama-3.3-70b-versatile", "llama-3.3-70b", 8192, 1024, quality=2)],
        {"groq": Prior(9.0, 1.0)},
    )
    o = new.offer("groq", "llama-3.3-70b-versatile")
    assert o is not None and o.context_window == 8192 and len(new) == len(cat)
    assert new.prior("groq", "x") == Prior(9.0, 1.0)
    assert cat.offer("groq", "llama-3.3-70b-versatile").context_window == 131072  # type: ignore[union-attr]
