"""Semantic cache matching (issue: response caching, item 8) through a live gateway over the
simulator, whose embeddings are deterministic: a paraphrase hits through both endpoints with the
similarity in a header; never across tenants, never when a number differs, never when the system
prompt differs; the embeddings calls are ledger rows of the tenant; an embeddings failure is a
miss with the call answered.  Plus the anchors rule and the settings, unit by unit."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fareway.cache.semantic import SIMILARITY_HEADER, Bucket, SemanticIndex, anchors
from fareway.cache.settings import CacheSettingsError, parse
from fareway.config import ConfigError, load_config
from fareway.keys.store import KeyStore
from fareway.sim.embeddings import sim_vector
from tests.conftest import MASTER_KEY, LiveGateway, free_port, gateway_config, start_gateway
from tests.test_cache_gateway import REDIS_URL, _drop_prefix, ask, upstream_calls
from tests.test_e2e_ledger import logged

EMB = "openai/text-embedding-3-small"
EMB_MODEL = "text-embedding-3-small"
ALIAS = "sem-mini"
THRESHOLD = 0.92

ORIGINAL = "Could you please summarize the history of lighthouses in Norway?"
PARAPHRASE = "Please could you summarize the history of the lighthouses in Norway"


def sim_cosine(a: str, b: str) -> float:
    """The similarity of two texts under the simulator's embeddings (outside the code under test)."""
    va, vb = sim_vector(a, 1536, EMB_MODEL), sim_vector(b, 1536, EMB_MODEL)
    return sum(x * y for x, y in zip(va, vb, strict=True))


def semantic_config(sim: Any, tmp: Path, **section_extra: Any) -> Any:
    aliases = {ALIAS: {"targets": ["openai/gpt-4o-mini"], "cache": {"semantic": THRESHOLD}}}
    section = {"embeddings_model": EMB, **section_extra}
    return dataclasses.replace(gateway_config(sim.url, tmp), aliases=aliases, cache=parse(section, aliases))


@pytest.fixture
async def sgw(sim: Any, tmp_path: Path) -> AsyncIterator[LiveGateway]:
    gw = await start_gateway(semantic_config(sim, tmp_path))
    yield gw
    await gw.stop()


async def embedding_rows(gw: LiveGateway) -> list[Any]:
    ledger = gw.app.gateway.accounting.ledger
    await ledger.flush()
    return [r for r in await ledger.recent_calls(n=200) if r.call.kind == "embedding"]


# --------------------------------------------------------------------------- through the gateway


@pytest.mark.parametrize("how", ["openai", "anthropic", "openai-stream", "anthropic-stream"])
async def test_a_paraphrase_hits_through_either_endpoint(
    sgw: LiveGateway, sim_control: Any, how: str
) -> None:
    assert sim_cosine(ORIGINAL, PARAPHRASE) >= THRESHOLD  # the premise, from the simulator itself
    first = await ask(
        sgw, "openai" if how.startswith("anthropic") else "anthropic", ORIGINAL, model=ALIAS, headers={}
    )
    assert first.cache == "stored"
    before = await upstream_calls(sim_control)
    hit = await ask(sgw, how, PARAPHRASE, model=ALIAS, headers={})
    assert hit.cache == "hit"
    assert hit.text == first.text and hit.text
    sim = float(hit.headers[SIMILARITY_HEADER])
    assert THRESHOLD <= sim < 1.0
    assert abs(sim - sim_cosine(ORIGINAL, PARAPHRASE)) < 1e-3
    # the only upstream call of the hit is the embedding of its last user turn
    assert await upstream_calls(sim_control) - before == 1
    row = await logged(sgw, hit.request_id)
    assert row.call.outcome == "cache_hit"
    # an exact repeat is an exact hit: no similarity header
    exact = await ask(sgw, "openai", ORIGINAL, model=ALIAS, headers={})
    assert exact.cache == "hit" and SIMILARITY_HEADER not in exact.headers


async def test_embedding_calls_are_ledger_rows_of_the_tenant(sim: Any, tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "state.db", master_key=MASTER_KEY)
    alice, a_info = keys.create("alice")
    gw = await start_gateway(semantic_config(sim, tmp_path))
    try:
        await ask(gw, "openai", ORIGINAL, model=ALIAS, headers={}, key=alice)
        await ask(gw, "openai", PARAPHRASE, model=ALIAS, headers={}, key=alice)
        rows = await embedding_rows(gw)
        assert len(rows) == 2  # one per request: the stored answer reuses its lookup's vector
        assert {r.call.key_id for r in rows} == {a_info.key_id}
        assert all(r.call.requested_model == EMB and r.call.status == 200 for r in rows)
    finally:
        await gw.stop()


async def test_no_hit_across_tenants(sim: Any, tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "state.db", master_key=MASTER_KEY)
    alice, _ = keys.create("alice")
    bob, _ = keys.create("bob")
    gw = await start_gateway(semantic_config(sim, tmp_path))
    try:
        assert (await ask(gw, "openai", ORIGINAL, model=ALIAS, headers={}, key=alice)).cache == "stored"
        other = await ask(gw, "openai", PARAPHRASE, model=ALIAS, headers={}, key=bob)
        assert other.cache == "stored" and SIMILARITY_HEADER not in other.headers
        same = await ask(gw, "anthropic", PARAPHRASE, model=ALIAS, headers={}, key=alice)
        assert same.cache == "hit"
    finally:
        await gw.stop()


async def test_no_hit_when_a_number_differs(sgw: LiveGateway) -> None:
    a = (
        "Please refund order 1234 for me: the blue ceramic teapot I bought last week arrived broken "
        "and its handle came off in the box."
    )
    b = a.replace("1234", "1235")
    assert sim_cosine(a, b) >= THRESHOLD  # the vectors alone would match
    assert (await ask(sgw, "openai", a, model=ALIAS, headers={})).cache == "stored"
    assert (await ask(sgw, "openai", b, model=ALIAS, headers={})).cache == "stored"
    # the same number, reworded, does match
    c = a.replace("and its handle", "and the handle")
    assert sim_cosine(a, c) >= THRESHOLD
    assert (await ask(sgw, "anthropic", c, model=ALIAS, headers={})).cache == "hit"


async def test_no_hit_when_the_system_prompt_differs(sgw: LiveGateway) -> None:
    assert (await ask(sgw, "openai", ORIGINAL, model=ALIAS, headers={})).cache == "stored"
    other_system = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": PARAPHRASE},
    ]
    got = await ask(sgw, "openai", PARAPHRASE, model=ALIAS, headers={}, messages=other_system)
    assert got.cache == "stored"
    got = await ask(sgw, "anthropic", PARAPHRASE, model=ALIAS, headers={}, system="Answer in French.")
    assert got.cache == "hit"  # the Anthropic system equals the OpenAI one of the previous call


async def test_no_hit_when_an_earlier_turn_differs(sgw: LiveGateway) -> None:
    def turns(earlier: str, last: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": last},
        ]

    one = await ask(sgw, "openai", "", model=ALIAS, headers={}, messages=turns("I like boats.", ORIGINAL))
    assert one.cache == "stored"
    two = await ask(sgw, "openai", "", model=ALIAS, headers={}, messages=turns("I like trains.", PARAPHRASE))
    assert two.cache == "stored"
    three = await ask(sgw, "openai", "", model=ALIAS, headers={}, messages=turns("I like boats.", PARAPHRASE))
    assert three.cache == "hit"


async def test_an_embeddings_failure_is_a_miss_and_the_call_is_answered(
    sgw: LiveGateway, sim_control: Any
) -> None:
    assert (await ask(sgw, "openai", ORIGINAL, model=ALIAS, headers={})).cache == "stored"
    await sim_control.fault(provider="openai", model=EMB_MODEL, kind="500", count=10)
    got = await ask(sgw, "anthropic", PARAPHRASE, model=ALIAS, headers={})
    assert got.cache == "stored" and got.text  # answered by the upstream, stored exactly
    rows = [r for r in await embedding_rows(sgw) if r.call.status != 200]
    assert rows  # the failed embeddings call is in the ledger too


async def test_aliases_without_semantic_never_embed(sgw: LiveGateway) -> None:
    before = len(await embedding_rows(sgw))
    await ask(sgw, "openai", ORIGINAL)  # the bare model, opted in by header: exact matching only
    await ask(sgw, "openai", PARAPHRASE)
    assert len(await embedding_rows(sgw)) == before


@pytest.mark.redis
async def test_with_redis_a_paraphrase_matches_on_another_instance(sim: Any, tmp_path: Path) -> None:
    prefix = f"fareway-test:{uuid.uuid4().hex}:"
    one = await start_gateway(semantic_config(sim, tmp_path / "one", url=REDIS_URL, prefix=prefix))
    two = await start_gateway(semantic_config(sim, tmp_path / "two", url=REDIS_URL, prefix=prefix))
    try:
        made = await ask(one, "openai", ORIGINAL, model=ALIAS, headers={})
        got = await ask(two, "anthropic-stream", PARAPHRASE, model=ALIAS, headers={})
        assert (made.cache, got.cache) == ("stored", "hit")
        assert got.text == made.text
        assert abs(float(got.headers[SIMILARITY_HEADER]) - sim_cosine(ORIGINAL, PARAPHRASE)) < 1e-3
        # a changed number still misses, across instances too
        a = "Please refund order 1234 for me: the blue ceramic teapot I bought last week arrived broken."
        assert (await ask(one, "openai", a, model=ALIAS, headers={})).cache == "stored"
        b = a.replace("1234", "1235")
        assert (await ask(two, "openai", b, model=ALIAS, headers={})).cache == "stored"
    finally:
        await one.stop()
        await two.stop()
        await _drop_prefix(prefix)


@pytest.mark.redis
async def test_a_dead_redis_is_a_semantic_miss_and_the_call_is_answered(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(semantic_config(sim, tmp_path, url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        for text in (ORIGINAL, PARAPHRASE):
            got = await ask(gw, "openai", text, model=ALIAS, headers={})
            assert got.cache == "miss" and got.text
    finally:
        await gw.stop()


# --------------------------------------------------------------------------- the rules, unit by unit


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("refund order 1234", "please refund order 1234", True),
        ("refund order 1234", "refund order 1235", False),
        ("refund order #1234", "refund order 1234", True),
        ("it costs $1,200.50", "it costs 1200.5", True),
        ("it costs 20%", "it costs 20", False),
        ("convert 10 USD to EUR", "convert 10 USD to GBP", False),
        ('rename the file "report.txt"', 'rename the file "summary.txt"', False),
        ("what does getUser do", "what does getUsers do", False),
        ("what does user_id mean", "what does user_name mean", False),
        ("ticket ABC-42 status", "ticket ABC-43 status", False),
        ("send it to ann@example.com", "send it to bob@example.com", False),
        ("a follow-up on the e-mail", "a follow up on the email", True),
        ("how do I reset my password", "how can I reset my password", True),
        ("convert 10 USD to EUR", "convert 10 EUR to USD", False),
        ('replace "colour" with "color"', 'replace "color" with "colour"', False),
        ("order 1234, not 1234 again", "order 1234", True),
    ],
)
def test_anchors(a: str, b: str, equal: bool) -> None:
    assert (anchors(a) == anchors(b)) is equal


async def test_the_index_is_bounded_and_drops_expired_vectors() -> None:
    idx = SemanticIndex(max_entries=2)
    bucket: Bucket = ("m", "ctx", ())
    await idx.add(bucket, "k1", [1.0, 0.0], expires_at=10)
    await idx.add(bucket, "k2", [0.0, 1.0], expires_at=10)
    await idx.add(bucket, "k3", [0.6, 0.8], expires_at=5)
    assert len(idx) == 2  # k1, the oldest, went
    assert await idx.best(bucket, [1.0, 0.0], now=0) == ("k3", pytest.approx(0.6))
    assert await idx.best(bucket, [1.0, 0.0], now=6) == ("k2", pytest.approx(0.0))  # k3 expired
    assert await idx.best(("m", "other", ()), [1.0, 0.0], now=0) is None


def test_semantic_settings() -> None:
    aliases = {
        "a": {"targets": ["x/y"], "cache": {"semantic": 0.9}},
        "b": {"targets": ["x/y"], "cache": {"semantic": 0.95, "embeddings_model": "mistral/mistral-embed"}},
        "c": {"targets": ["x/y"], "cache": {"mode": "use"}},
    }
    s = parse({"embeddings_model": EMB}, aliases)
    assert s.semantic("a") == (0.9, EMB)
    assert s.semantic("b") == (0.95, "mistral/mistral-embed")
    assert s.semantic("c") is None and s.semantic("unknown") is None
    with pytest.raises(CacheSettingsError, match="semantic"):
        parse({}, {"a": {"cache": {"semantic": 0.9}}})  # no embeddings model anywhere
    for bad in (1.5, 0, True, "0.9"):
        with pytest.raises(CacheSettingsError, match="semantic"):
            parse({"embeddings_model": EMB}, {"a": {"cache": {"semantic": bad}}})
    with pytest.raises(CacheSettingsError, match="embeddings_model"):
        parse({"embeddings_model": ""})


def test_semantic_config_from_toml(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[cache]\nembeddings_model = "openai/text-embedding-3-small"\n'
        '[aliases.fast]\ntargets = ["groq/x"]\ncache = { semantic = 0.92 }\n'
    )
    assert load_config(f, env={}).cache.semantic("fast") == (0.92, EMB)
    f.write_text('[aliases.fast]\ntargets = ["groq/x"]\ncache = { semantic = 0.92, ttl = "x" }\n')
    with pytest.raises(ConfigError, match=r"aliases\.fast"):
        load_config(f, env={})
