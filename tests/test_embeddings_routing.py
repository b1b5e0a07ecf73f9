"""Embeddings routing: the kind marker (chat routing never reaches an embedding model and the
reverse), the embeddings router (bare ids, pins, aliases, cheapest first), and the embeddings
executor over an in-memory transport (fallback, timeouts, batching, races, the circuit, usage)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import orjson
import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fareway.adapters.gemini_embeddings import ADAPTER as GEMINI
from fareway.adapters.openai_embeddings import ADAPTER as OPENAI
from fareway.config import ConfigError, load_config
from fareway.errors import BadRequest, NoRouteSucceeded, NotFound
from fareway.ledger.pricing import PriceBook
from fareway.pipeline.resolve import Resolver
from fareway.providers.catalog import Catalog, Offer
from fareway.providers.quirks import Quirks
from fareway.router.breaker import BreakerConfig
from fareway.router.embed_executor import EmbeddingExecutor
from fareway.router.executor import CallLog
from fareway.router.policies import PolicyConfig, Router
from fareway.router.routes import Fallback, Race, Target, targets
from fareway.router.stats import Stats
from fareway.tokens import _seed_o200k
from fareway.transport_mock import MockRequest, MockResponse, MockTransport
from fareway.types import ChatRequest, EmbeddingRequest, Message, TextPart, ToolSpec, Upstream

# ------------------------------------------------------------------ chat routing and the kind


def builtin_router(kind: str = "chat") -> Router:
    cat = Catalog.builtin()
    book = PriceBook()

    def make(provider: str, model: str) -> Upstream:
        return Upstream(provider, "openai", f"https://{provider}.test/v1", model, "k")

    return Router(
        cat,
        Stats(cat),
        book.unit_prices if kind == "chat" else book.embedding_unit_prices,
        make,
        keyed=set(cat.providers()),
        kind=kind,  # type: ignore[arg-type]
    )


CHAT = builtin_router()
EMBEDDING_MODELS = {o.key for o in Catalog.builtin().offers() if o.kind == "embedding"}


def test_the_catalog_has_embedding_models() -> None:
    assert {
        "openai/text-embedding-3-small",
        "openai/text-embedding-3-large",
        "gemini/gemini-embedding-001",
        "mistral/mistral-embed",
        "deepinfra/BAAI/bge-m3",
    } <= EMBEDDING_MODELS
    small = Catalog.builtin().offer("openai", "text-embedding-3-small")
    assert small is not None and small.dimensions == 1536 and small.context_window == 8192


def test_a_bad_kind_in_a_catalog_row_is_refused() -> None:
    from fareway.providers.catalog import offer_from_row

    with pytest.raises(ValueError, match="kind"):
        offer_from_row({"provider": "p", "model": "m", "kind": "rerank"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["auto", "auto:cheap", "auto:fast", "auto@1", "auto:cheap@1", "auto:fast@2"]),
    text=st.text(min_size=1, max_size=200),
    tools=st.booleans(),
    max_tokens=st.one_of(st.none(), st.integers(1, 4000)),
)
def test_auto_never_picks_an_embedding_model(
    policy: str, text: str, tools: bool, max_tokens: int | None
) -> None:
    tool = [ToolSpec("f", "d", {"type": "object", "properties": {}})] if tools else []
    r = ChatRequest(
        model=policy, messages=[Message("user", [TextPart(text)])], tools=tool, max_tokens=max_tokens
    )
    d = CHAT.decide(r)
    assert not {t.key for t in targets(d.route)} & EMBEDDING_MODELS
    assert not {c.offer.key for c in d.candidates} & EMBEDDING_MODELS


@pytest.mark.parametrize("name", ["text-embedding-3-small", "openai/text-embedding-3-small", "bge-m3"])
def test_chat_with_an_embedding_model_is_a_400(name: str) -> None:
    with pytest.raises(BadRequest, match="embedding model") as info:
        CHAT.decide(ChatRequest(model=name, messages=[]))
    assert info.value.param == "model"


def test_an_alias_mixing_kinds_is_a_400() -> None:
    cat = Catalog.builtin()
    r = Router(
        cat,
        Stats(cat),
        PriceBook().unit_prices,
        lambda p, m: Upstream(p, "openai", "https://x.test", m, "k"),
        aliases={
            "mix": {
                "strategy": "fallback",
                "targets": ["openai/gpt-4o-mini", "openai/text-embedding-3-small"],
            }
        },
    )
    with pytest.raises(BadRequest, match="embedding model"):
        r.decide(ChatRequest(model="mix", messages=[]))


EMB = builtin_router("embedding")


def emb_decide(name: str) -> list[str]:
    return [t.key for t in targets(EMB.decide(ChatRequest(model=name, messages=[]), prompt_tokens=1).route)]


def test_embedding_router_names() -> None:
    assert emb_decide("text-embedding-3-small") == ["openai/text-embedding-3-small"]
    assert emb_decide("bge-m3") == ["deepinfra/BAAI/bge-m3"]  # a family name is a bare id too
    assert emb_decide("gemini/gemini-embedding-001") == ["gemini/gemini-embedding-001"]
    assert emb_decide("openai/some-new-embedding-model") == [
        "openai/some-new-embedding-model"
    ]  # passed through
    with pytest.raises(BadRequest, match="chat model"):
        emb_decide("gpt-4o-mini")
    with pytest.raises(BadRequest, match="chat model"):
        emb_decide("openai/gpt-4o-mini")
    with pytest.raises(NotFound):
        emb_decide("no-such-model")


def test_a_bare_id_on_several_providers_is_a_cheapest_first_chain() -> None:
    offers = [
        Offer("dear", "e5", "e5", 512, kind="embedding"),
        Offer("cheap", "intfloat/e5", "e5", 512, kind="embedding"),
        Offer("unpriced", "e5", "e5", 512, kind="embedding"),
        Offer("cheap", "chatty", "chatty", 8192),
    ]
    prices = {"dear/e5": Decimal("0.10"), "cheap/intfloat/e5": Decimal("0.01")}

    class InputOnly:
        def __init__(self, price: Decimal) -> None:
            self.input = price
            self.output = Decimal(0)

    cat = Catalog(offers)
    r = Router(
        cat,
        Stats(cat),
        lambda p, m: InputOnly(prices[f"{p}/{m}"]) if f"{p}/{m}" in prices else None,
        lambda p, m: Upstream(p, "openai", f"https://{p}.test", m, "k"),
        config=PolicyConfig(default_output_tokens=0),
        kind="embedding",
    )
    d = r.decide(ChatRequest(model="e5", messages=[]), prompt_tokens=1)
    assert isinstance(d.route, Fallback)
    assert [t.key for t in targets(d.route)] == [
        "cheap/intfloat/e5",
        "dear/e5",
        "unpriced/e5",
    ]  # unknown last


def test_embedding_unit_prices_are_input_prices() -> None:
    book = PriceBook()
    assert book.unit_prices("openai", "text-embedding-3-small") is None  # no output price: no chat estimate
    p = book.embedding_unit_prices("openai", "text-embedding-3-small")
    assert p is not None and p.input == Decimal("0.02") and p.output == 0
    assert book.embedding_unit_prices("deepinfra", "BAAI/bge-m3") is None  # unknown stays unknown


# -------------------------------------------------------------------------------- config, models


def test_embedding_models_of_a_custom_provider(tmp_path: Any) -> None:
    cfg_file = tmp_path / "f.toml"
    cfg_file.write_text(
        '[providers.local]\ndialect = "openai"\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "k"\n'
        'models = ["llama"]\nembedding_models = ["nomic-embed-text"]\n'
    )
    cfg = load_config(cfg_file, env={})
    listed = {mid: kind for mid, _, kind in Resolver(cfg, Catalog.builtin().offers()).listed()}
    assert listed["local/nomic-embed-text"] == "embedding" and listed["local/llama"] == "chat"
    cfg_file.write_text(
        '[providers.local]\ndialect = "openai"\nbase_url = "http://127.0.0.1:1/v1"\nembedding_models = "x"\n'
    )
    with pytest.raises(ConfigError, match="embedding_models"):
        load_config(cfg_file, env={})


# ------------------------------------------------------------------------------ the executor


def target(provider: str, model: str = "e", dialect: str = "openai", **quirks: Any) -> Target:
    return Target(
        Upstream(
            provider,
            dialect,
            f"https://{provider}.test/v1",
            model,
            f"key-{provider}",
            quirks=Quirks(**quirks),
        )  # type: ignore[arg-type]
    )


def answer(req: MockRequest, usage: bool = True) -> MockResponse:
    inputs = req.json()["input"]
    data = [{"object": "embedding", "index": i, "embedding": [float(i), 1.0]} for i in range(len(inputs))]
    body: dict[str, Any] = {"object": "list", "data": data, "model": req.json()["model"]}
    if usage:
        body["usage"] = {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}
    return MockResponse(200, json=body)


def executor(handler: Any, **kw: Any) -> EmbeddingExecutor:
    return EmbeddingExecutor(MockTransport(handler), {"openai": OPENAI, "gemini": GEMINI}, **kw)


def ereq(*inputs: Any) -> EmbeddingRequest:
    return EmbeddingRequest(model="e", inputs=list(inputs) or ["x"])


async def test_fallback_on_5xx_and_nothing_left_open() -> None:
    def handler(r: MockRequest) -> MockResponse:
        if r.provider == "a":
            return MockResponse(503, json={"error": {"message": "overloaded", "type": "server_error"}})
        return answer(r)

    ex = executor(handler)
    call = CallLog("r1")
    got = await ex.run(Fallback([target("a"), target("b")]), ereq("x", "y"), call)
    assert got.target.upstream.provider == "b" and len(got.result.vectors) == 2
    assert [(a.outcome, a.role, a.status) for a in call.attempts] == [
        ("error", "primary", 503),
        ("ok", "fallback", 200),
    ]
    assert got.result.usage is not None and got.result.usage.input_tokens == 6
    assert not ex.transport.unfinished()  # type: ignore[attr-defined]


async def test_no_route_succeeded_lists_every_attempt() -> None:
    ex = executor(lambda r: MockResponse(500, json={"error": {"message": "boom"}}))
    call = CallLog("r2")
    with pytest.raises(NoRouteSucceeded) as info:
        await ex.run(Fallback([target("a"), target("b")]), ereq(), call)
    assert [a.provider for a in info.value.attempts] == ["a", "b"] and info.value.status == 500


async def test_a_stalled_upstream_times_out_and_falls_back() -> None:
    gate = asyncio.Event()

    async def handler(r: MockRequest) -> MockResponse:
        if r.provider == "slow":
            await gate.wait()
        return answer(r)

    ex = executor(handler, timeout=0.05)
    call = CallLog("r3")
    got = await ex.run(Fallback([target("slow"), target("b")]), ereq(), call)
    assert got.target.upstream.provider == "b"
    assert call.attempts[0].outcome == "error" and "no embeddings answer" in str(call.attempts[0].error)


async def test_a_4xx_is_not_a_fallback_trigger() -> None:
    def handler(r: MockRequest) -> MockResponse:
        return MockResponse(400, json={"error": {"message": "too long", "type": "invalid_request_error"}})

    ex = executor(handler)
    call = CallLog("r4")
    with pytest.raises(NoRouteSucceeded) as info:
        await ex.run(Fallback([target("a"), target("b")]), ereq(), call)
    assert info.value.status == 400 and len(call.attempts) == 1


async def test_inputs_over_the_batch_size_are_split_and_merged_in_order() -> None:
    seen: list[list[str]] = []

    def handler(r: MockRequest) -> MockResponse:
        inputs = r.json()["input"]
        seen.append(inputs)
        data = [{"index": i, "embedding": [float(t.removeprefix("t"))]} for i, t in enumerate(inputs)]
        return MockResponse(200, json={"data": data, "usage": {"prompt_tokens": len(inputs)}})

    ex = executor(handler, max_parallel=2)
    texts = [f"t{i}" for i in range(7)]
    got = await ex.run(target("a", embedding_max_batch=3), ereq(*texts), CallLog("r5"))
    assert sorted(seen) == sorted([["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]])
    assert [v.floats() for v in got.result.vectors] == [[float(i)] for i in range(7)]
    assert got.result.usage is not None and got.result.usage.input_tokens == 7


async def test_one_failed_batch_fails_the_attempt_and_closes_the_rest() -> None:
    gate = asyncio.Event()

    async def handler(r: MockRequest) -> MockResponse:
        inputs = r.json()["input"]
        if inputs[0] == "t0":
            return MockResponse(502, json={"error": {"message": "bad gateway"}})
        await gate.wait()  # the others would never answer: they must be cancelled
        return answer(r)

    ex = executor(handler, max_parallel=4)
    call = CallLog("r6")
    with pytest.raises(NoRouteSucceeded):
        await ex.run(target("a", embedding_max_batch=1), ereq("t0", "t1", "t2"), call)
    assert call.attempts[0].outcome == "error"
    assert not ex.transport.unfinished()  # type: ignore[attr-defined]


async def test_missing_usage_is_counted_offline_and_marked() -> None:
    _seed_o200k()
    ex = executor(lambda r: answer(r, usage=False))
    texts = ["The quick brown fox jumps over the lazy dog.", "Embeddings, estimated."]
    got = await ex.run(target("a"), ereq(*texts, [1, 2, 3]), CallLog("r7"))
    enc = tiktoken.get_encoding("o200k_base")
    expected = sum(len(enc.encode(t)) for t in texts) + 3
    assert got.result.usage is not None and got.result.usage.estimated
    assert got.result.usage.input_tokens == expected


async def test_an_open_circuit_is_skipped_then_tried_last() -> None:
    cat = Catalog([])
    stats = Stats(cat, breaker=BreakerConfig(failure_threshold=1, cooldown_s=60))
    ex = executor(lambda r: MockResponse(500, json={"error": {"message": "down"}}), stats=stats)
    with pytest.raises(NoRouteSucceeded):
        await ex.run(target("a"), ereq(), CallLog("r8"))  # opens a's circuit
    ex.transport.handler = answer  # type: ignore[attr-defined]
    call = CallLog("r9")
    got = await ex.run(Fallback([target("a"), target("b")]), ereq(), call)
    assert got.target.upstream.provider == "b"
    assert [a.outcome for a in call.attempts] == ["skipped", "ok"]
    # with nothing else left, the skipped target is still tried (last resort)
    call2 = CallLog("r10")
    got2 = await ex.run(target("a"), ereq(), call2)
    assert [(a.outcome, a.role) for a in call2.attempts] == [("skipped", "primary"), ("ok", "last_resort")]
    assert got2.target.upstream.provider == "a"


async def test_race_winner_and_the_cancelled_leg() -> None:
    gate = asyncio.Event()

    async def handler(r: MockRequest) -> MockResponse:
        if r.provider == "slow":
            await gate.wait()
        return answer(r)

    ex = executor(handler)
    call = CallLog("r11")
    got = await ex.run(Race([target("slow"), target("fast")]), ereq("a b c d"), call)
    assert got.target.upstream.provider == "fast"
    slow = next(a for a in call.attempts if a.target.upstream.provider == "slow")
    assert slow.outcome == "cancelled" and slow.usage is not None and slow.usage.estimated
    assert not ex.transport.unfinished()  # type: ignore[attr-defined]


async def test_hedge_starts_the_second_only_when_the_first_is_silent() -> None:
    ex = executor(answer)
    call = CallLog("r12")
    got = await ex.run(Race([target("a"), target("b")], hedge_ms=10_000), ereq(), call)
    assert got.target.upstream.provider == "a" and len(call.attempts) == 1


async def test_what_a_provider_cannot_take_is_the_callers_400_and_nothing_is_sent() -> None:
    ex = executor(answer)
    call = CallLog("r13")
    with pytest.raises(BadRequest, match="token arrays"):
        await ex.run(target("g", "gemini-embedding-001", dialect="gemini"), ereq([1, 2]), call)
    with pytest.raises(BadRequest, match="no embeddings API"):
        await ex.run(target("anthropic", dialect="anthropic"), ereq(), CallLog("r14"))
    assert not ex.transport.requests  # type: ignore[attr-defined]


async def test_an_answer_with_the_wrong_count_is_an_upstream_error() -> None:
    def handler(r: MockRequest) -> MockResponse:
        return MockResponse(200, json={"data": [{"index": 0, "embedding": [1.0]}]})

    ex = executor(handler)
    with pytest.raises(NoRouteSucceeded, match="returned 1 embeddings for 2 inputs"):
        await ex.run(target("a"), ereq("x", "y"), CallLog("r15"))


async def test_keys_never_leave_in_errors() -> None:
    def handler(r: MockRequest) -> MockResponse:
        key = r.headers["authorization"].removeprefix("Bearer ")
        return MockResponse(401, body=orjson.dumps({"error": {"message": f"bad key {key}"}}))

    ex = executor(handler)
    with pytest.raises(NoRouteSucceeded) as info:
        await ex.run(target("leaky"), ereq(), CallLog("r16"))
    assert "key-leaky" not in str(info.value) and "key-leaky" not in str(info.value.last)
