"""The catalog rows generated from genai-prices (``providers/catalog_genai.toml``): the checked-in
file is exactly what ``fareway catalog refresh`` derives from the installed genai-prices (so it
cannot drift by hand), its prices are the ledger's, and its rows route as bare ids but never
under ``auto``."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fareway.cli import main
from fareway.ledger import genai_catalog as gc
from fareway.ledger.pricing import PriceBook
from fareway.providers.catalog import Catalog, load_generated_catalog, load_handset_catalog
from fareway.router.policies import Router
from fareway.types import ChatRequest, Message, TextPart, Upstream

FILE = Path(__file__).resolve().parents[1] / "src" / "fareway" / "providers" / "catalog_genai.toml"
TEXT = FILE.read_text("utf-8")
DATA = tomllib.loads(TEXT)
ROWS: list[dict[str, Any]] = DATA["offer"]
SAME_VERSION = DATA["genai_prices"] == gc.genai_version()
needs_same_version = pytest.mark.skipif(
    not SAME_VERSION,
    reason=f"catalog_genai.toml is from genai-prices {DATA['genai_prices']}, {gc.genai_version()} is "
    "installed: run `fareway catalog refresh` (the digest test still guards against hand edits)",
)


def test_the_file_is_not_edited_by_hand() -> None:
    # the digest covers every row; an edit by hand (or a merge that mixed two refreshes) breaks it
    body = gc.split_body(TEXT)
    assert DATA["sha256"] == gc.digest(body)
    assert DATA["rows"] == len(ROWS) == body.count("[[offer]]")


@needs_same_version
def test_the_file_is_what_refresh_derives_from_genai_prices() -> None:
    assert TEXT == gc.render(gc.build_rows(), gc.genai_version())
    result = CliRunner().invoke(main, ["catalog", "refresh", "--check", "--output", str(FILE)])
    assert result.exit_code == 0 and "current" in result.output


def test_refresh_writes_and_check_says_when_stale(tmp_path: Path) -> None:
    out = tmp_path / "c.toml"
    out.write_text(TEXT.replace("[[offer]]", "[[offer]]\n# edited", 1))
    stale = CliRunner().invoke(main, ["catalog", "refresh", "--check", "--output", str(out)])
    assert stale.exit_code == 1 and "not current" in stale.output
    wrote = CliRunner().invoke(main, ["catalog", "refresh", "--output", str(out)])
    assert wrote.exit_code == 0 and wrote.output.startswith("wrote ")
    assert out.read_text("utf-8") == gc.render(gc.build_rows(), gc.genai_version())
    again = CliRunner().invoke(main, ["catalog", "refresh", "--output", str(out)])
    assert again.output.startswith("unchanged: ")


@needs_same_version
def test_every_provider_genai_prices_has_is_covered_by_its_rules() -> None:
    from genai_prices.data_snapshot import get_snapshot

    snap = {p.id: p for p in get_snapshot().providers}
    keys = {(r["provider"], r["model"]) for r in ROWS}
    counted: dict[str, int] = {}
    for provider, genai_id in gc.GENAI_PROVIDER_IDS.items():
        for m in snap[genai_id].models:
            # what the rules leave out is deprecated, has no id to send, is priced without an
            # output price, or is named by a rule
            mid = gc.api_id(m)
            if (provider, mid) in keys:
                counted[provider] = counted.get(provider, 0) + 1
                assert not m.deprecated
            else:
                assert (
                    m.deprecated or mid is None or not gc._keep(provider, mid) or not _has_output_price(m)
                ), m.id
    # the eight providers genai-prices knows each have rows (DeepInfra is not in genai-prices)
    assert set(counted) == set(gc.GENAI_PROVIDER_IDS) and "deepinfra" not in gc.GENAI_PROVIDER_IDS
    assert counted["anthropic"] >= 20 and counted["openai"] >= 40 and counted["gemini"] >= 10


def _has_output_price(m: Any) -> bool:
    price, _ = gc._newest_price(m.prices)
    return gc._first(price, "output_mtok", "output_text_mtok") is not None


def test_the_rules_leave_out_what_a_provider_does_not_serve() -> None:
    keys = {(r["provider"], r["model"]) for r in ROWS}
    models = {r["model"] for r in ROWS}
    assert ("anthropic", "claude-opus-4-1") in keys and ("gemini", "gemini-2.5-flash-lite") in keys
    # Vertex AI's Claude under genai-prices' google, open-weight gpt-oss under openai
    assert not any(p == "gemini" and m.startswith("claude") for p, m in keys)
    assert not any(p == "openai" and m.startswith("gpt-oss") for p, m in keys)
    # no speech, image, embedding or moderation models; no legacy completion models
    for bad in ("tts-1", "whisper-1", "gpt-image-1", "text-embedding-3-small", "davinci-002", "babbage-002"):
        assert bad not in models
    # deprecated in genai-prices: Cerebras' llama3.1-8b (the hand-set row still routes it)
    assert ("cerebras", "llama3.1-8b") not in keys


@needs_same_version
def test_recorded_prices_are_the_ledgers() -> None:
    book = PriceBook(use_overlay=False)
    for r in ROWS:
        when = None
        if "price_from" in r:
            when = datetime.fromisoformat(r["price_from"]).replace(tzinfo=UTC)
        rates = book.rates(r["provider"], r["model"], when)
        assert rates is not None, r
        assert rates.input.base == Decimal(r["input"]), r
        assert rates.output is not None and rates.output.base == Decimal(r["output"]), r


def test_generated_offers_are_untiered_with_unknown_capabilities() -> None:
    hand = {o.key: o for o in load_handset_catalog()}
    cat = Catalog.builtin()
    for o in load_generated_catalog():
        assert o.quality == 0 and o.family == o.model.removesuffix("-latest")
        assert (o.tools, o.vision, o.json_schema, o.reasoning, o.max_output) == (None,) * 5
        if o.key in hand:
            assert cat.offer(o.provider, o.model) == hand[o.key]  # the hand-set row wins
    assert len(cat) == len(hand) + sum(1 for o in load_generated_catalog() if o.key not in hand)


def _router(cat: Catalog) -> Router:
    from fareway.router.stats import Stats

    def upstream(provider: str, model: str) -> Upstream:
        return Upstream(provider, "openai", f"https://{provider}.test/v1", model, "k")

    return Router(cat, Stats(cat), PriceBook().unit_prices, upstream, providers=cat.providers())


def _req(model: str, **kw: Any) -> ChatRequest:
    return ChatRequest(model, [Message("user", [TextPart("hi")])], **kw)


@pytest.mark.parametrize(
    ("model", "offer"),
    [
        ("claude-opus-4-1", "anthropic/claude-opus-4-1"),
        ("claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"),
        ("claude-opus-4-1-20250805[1m]", "anthropic/claude-opus-4-1"),
        ("gemini-2.5-flash-lite", "gemini/gemini-2.5-flash-lite"),
        ("gpt-5-mini", "openai/gpt-5-mini"),
        ("gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"),
    ],
)
def test_generated_rows_route_as_bare_ids(model: str, offer: str) -> None:
    from fareway.router.routes import targets

    d = _router(Catalog.builtin()).decide(_req(model))
    first = targets(d.route)[0]
    assert f"{first.upstream.provider}/{first.upstream.model}" == offer


def test_a_generated_row_is_not_refused_for_capabilities_it_may_have() -> None:
    from fareway.router.routes import targets
    from fareway.types import ToolSpec

    req = _req("claude-opus-4-1", tools=[ToolSpec("f", None, {"type": "object"})], max_tokens=100_000)
    d = _router(Catalog.builtin()).decide(req)
    assert targets(d.route)[0].upstream.model == "claude-opus-4-1"


def test_auto_never_picks_an_untiered_row() -> None:
    from fareway.router.routes import targets

    cat = Catalog.builtin()
    for name in ("auto", "auto@1", "auto:cheap@1", "auto:fast@1"):
        d = _router(cat).decide(_req(name))
        for t in targets(d.route):
            o = cat.offer(t.upstream.provider, t.upstream.model)
            assert o is not None and o.quality >= 1, (name, t.upstream)
        assert all(c.offer.quality >= 1 for c in d.candidates)


# ------------------------------------------------------------------ over HTTP, in demo mode


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [
        # Claude Code's ids: dated, with its 1M-context marker, and the short aliases
        ("claude-sonnet-4-5-20250929", "anthropic", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929[1m]", "anthropic", "claude-sonnet-4-5"),
        ("claude-opus-4-1", "anthropic", "claude-opus-4-1"),
        ("claude-opus-4-1-20250805", "anthropic", "claude-opus-4-1"),
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
        ("claude-haiku-4-5-20251001[1m]", "anthropic", "claude-haiku-4-5"),
        ("claude-3-7-sonnet-latest", "anthropic", "claude-3-7-sonnet-latest"),
        # older Claude Code's small model: dated, found through the `-latest` row's family
        ("claude-3-5-haiku-20241022", "anthropic", "claude-3-5-haiku-latest"),
        ("gpt-4o-mini-2024-07-18", "openai", "gpt-4o-mini"),
        ("gemini-2.5-flash-lite", "gemini", "gemini-2.5-flash-lite"),
        # a provider prefix passes any id through, listed or not
        ("openai/some-new-model", "openai", "some-new-model"),
        ("anthropic/claude-opus-4-1-20250805[1m]", "anthropic", "claude-opus-4-1-20250805"),
    ],
)
@pytest.mark.parametrize("client", ["openai", "anthropic"])
async def test_model_ids_as_clients_write_them_route_in_demo(
    gateway: Any, client: str, model: str, provider: str, upstream: str
) -> None:
    from tests.conftest import anthropic_client, openai_client

    msgs: Any = [{"role": "user", "content": "hi"}]
    if client == "openai":
        raw: Any = await openai_client(gateway.url + "/v1").chat.completions.with_raw_response.create(
            model=model, messages=msgs
        )
    else:
        raw = await anthropic_client(gateway.url).messages.with_raw_response.create(
            model=model, max_tokens=50, messages=msgs
        )
    assert raw.headers["x-fareway-simulated"] == "true"
    assert (raw.headers["x-fareway-provider"], raw.headers["x-fareway-model"]) == (provider, upstream)


async def test_models_list_ownership_is_where_a_call_goes(gateway: Any) -> None:
    """Every id GET /v1/models lists (the demo has every provider keyed) is owned by the provider
    the router sends a call with that id to first; a few are checked over HTTP as well."""
    from fareway.router.routes import targets
    from tests.conftest import openai_client

    client = openai_client(gateway.url + "/v1")
    data = (await client.models.list()).data
    listed = {m.id: m.owned_by for m in data}
    kinds = {m.id: getattr(m, "kind", None) for m in data}
    assert set(kinds.values()) == {"chat", "embedding"}
    assert len(listed) > 900  # the generated rows are listed too
    router = gateway.app.gateway.resolver.router
    for mid, owner in listed.items():
        if owner == "fareway":  # auto and aliases
            continue
        if kinds[mid] == "embedding":  # the embeddings router's (its own tests)
            continue
        first = targets(router.decide(_req(mid)).route)[0]
        assert first.upstream.provider == owner, mid
    assert listed.get("openai/gpt-oss-120b") in (None, "openai")
    for mid in ("groq/openai/gpt-oss-120b", "openrouter/openai/gpt-oss-120b", "claude-opus-4-1"):
        raw = await client.chat.completions.with_raw_response.create(
            model=mid, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-provider"] == listed[mid]


async def test_default_model_takes_an_id_nothing_routes_in_demo(sim: Any, tmp_path: Path) -> None:
    import dataclasses

    from tests.conftest import gateway_config, openai_client, start_gateway

    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path), default_model="gemini-2.5-flash-lite")
    gw = await start_gateway(cfg)
    try:
        raw = await openai_client(gw.url + "/v1").chat.completions.with_raw_response.create(
            model="my-editor-default-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-provider"] == "gemini"
        assert raw.headers["x-fareway-model"] == "gemini-2.5-flash-lite"
    finally:
        await gw.stop()
