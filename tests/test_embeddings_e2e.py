"""``POST /v1/embeddings`` end to end: the official openai SDK against a live gateway in demo
mode (every provider is the simulator), with the ledger, routing and fallback.

Expected vectors come from the simulator's own function (sim.embeddings.sim_vector: test
infrastructure, not the gateway); expected prices from genai-prices' published list prices,
written out here by hand ($0.02 and $0.15 per million input tokens)."""

from __future__ import annotations

import base64
import dataclasses
import math
import struct
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from fareway.ledger.queries import LoggedCall
from fareway.sim.embeddings import GEMINI_MAX_BATCH, count_tokens, sim_vector
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, openai_client, start_gateway

M = Decimal(1_000_000)
SMALL = "text-embedding-3-small"


def oai(gw: LiveGateway) -> openai.AsyncOpenAI:
    return openai_client(gw.url + "/v1")


def f32(values: list[float]) -> list[float]:
    """``values`` as float32 would hold them (what base64 carries)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def cos(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        math.fsum(x * x for x in a) * math.fsum(y * y for y in b)
    )


async def logged(gw: LiveGateway, request_id: str) -> LoggedCall:
    ledger = gw.app.gateway.accounting.ledger
    assert ledger is not None
    await ledger.flush()
    for row in await ledger.recent_calls(n=500):
        if row.call.request_id == request_id:
            return row
    raise AssertionError(f"no ledger row for {request_id}")


async def post(gw: LiveGateway, payload: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gw.url}/v1/embeddings",
            data=payload if isinstance(payload, bytes) else orjson.dumps(payload),
            headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"},
        ) as r,
    ):
        return r.status, orjson.loads(await r.read()), {k.lower(): v for k, v in r.headers.items()}


# ------------------------------------------------------------------------ one input, many inputs


async def test_one_input(gateway: LiveGateway) -> None:
    raw = await oai(gateway).embeddings.with_raw_response.create(model=SMALL, input="The food was delicious")
    got = raw.parse()  # the SDK asked for base64 (its default) and decoded it
    assert len(got.data) == 1 and got.data[0].index == 0
    assert got.data[0].embedding == f32(sim_vector("The food was delicious", 1536, SMALL))
    assert got.model == SMALL
    assert got.usage.prompt_tokens == got.usage.total_tokens == count_tokens("The food was delicious")
    assert raw.headers["x-fareway-provider"] == "openai"
    assert raw.headers["x-fareway-model"] == SMALL
    cost = Decimal("0.02") * got.usage.prompt_tokens / M
    assert Decimal(raw.headers["x-fareway-cost-usd"]) == cost

    row = await logged(gateway, raw.headers["x-request-id"])
    assert row.call.kind == "embedding" and row.call.client_dialect == "openai"
    assert row.call.requested_model == SMALL and row.call.status == 200 and row.call.outcome == "ok"
    assert row.call.input_tokens == got.usage.prompt_tokens and row.call.output_tokens == 0
    assert row.call.cost == cost and not row.call.estimated and not row.call.stream
    [a] = row.attempts
    assert (a.provider, a.model, a.outcome, a.status) == ("openai", SMALL, "ok", 200)


async def test_many_inputs_keep_their_order(gateway: LiveGateway) -> None:
    texts = [f"document number {i} about {'cats' if i % 2 else 'finance'}" for i in range(40)]
    got = await oai(gateway).embeddings.create(model=SMALL, input=texts)
    assert [d.index for d in got.data] == list(range(40))
    assert [d.embedding for d in got.data] == [f32(sim_vector(t, 1536, SMALL)) for t in texts]
    assert got.usage.prompt_tokens == sum(count_tokens(t) for t in texts)


async def test_float_and_base64_agree(gateway: LiveGateway) -> None:
    texts = ["alpha beta", "gamma"]
    floats = await oai(gateway).embeddings.create(model=SMALL, input=texts, encoding_format="float")
    assert [d.embedding for d in floats.data] == [sim_vector(t, 1536, SMALL) for t in texts]
    status, body, _ = await post(gateway, {"model": SMALL, "input": texts, "encoding_format": "base64"})
    assert status == 200
    for d, f in zip(body["data"], floats.data, strict=True):
        raw = base64.b64decode(d["embedding"])
        assert raw == struct.pack(f"<{len(f.embedding)}f", *f.embedding)  # little-endian float32


async def test_token_arrays(gateway: LiveGateway) -> None:
    got = await oai(gateway).embeddings.create(model=SMALL, input=[[1, 2, 3], [4, 5]])
    assert len(got.data) == 2 and got.usage.prompt_tokens == 5
    single = await oai(gateway).embeddings.create(model=SMALL, input=[1, 2, 3])
    assert single.data[0].embedding == got.data[0].embedding
    with pytest.raises(openai.BadRequestError, match="token arrays"):
        await oai(gateway).embeddings.create(model="gemini-embedding-001", input=[[1, 2]])


async def test_dimensions(gateway: LiveGateway) -> None:
    got = await oai(gateway).embeddings.create(model=SMALL, input="short", dimensions=256)
    assert len(got.data[0].embedding) == 256
    # gemini-embedding-001 below 3072 dimensions is not unit length upstream; the gateway scales it
    g = await oai(gateway).embeddings.create(model="gemini-embedding-001", input="short", dimensions=768)
    vec = g.data[0].embedding
    assert len(vec) == 768 and abs(math.sqrt(math.fsum(x * x for x in vec)) - 1.0) < 1e-6
    assert cos(vec, sim_vector("short", 768, "gemini-embedding-001")) > 0.999999


async def test_similar_texts_get_similar_vectors(gateway: LiveGateway) -> None:
    texts = [
        "How do I reset my password?",
        "how can I reset my password",
        "What is the capital of France?",
    ]
    v = [d.embedding for d in (await oai(gateway).embeddings.create(model=SMALL, input=texts)).data]
    assert cos(v[0], v[1]) > 0.6
    assert cos(v[0], v[2]) < 0.3
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.4


# ------------------------------------------------------------------------- every provider dialect


@pytest.mark.parametrize(
    ("model", "provider", "dims"),
    [
        ("gemini-embedding-001", "gemini", 3072),
        ("mistral-embed", "mistral", 1024),
        ("BAAI/bge-m3", "deepinfra", 1024),
        ("BAAI/bge-base-en-v1.5", "deepinfra", 768),
        ("openai/text-embedding-3-large", "openai", 3072),
        ("text-embedding-ada-002", "openai", 1536),
    ],
)
async def test_every_provider(gateway: LiveGateway, model: str, provider: str, dims: int) -> None:
    raw = await oai(gateway).embeddings.with_raw_response.create(
        model=model, input=["one text", "another text"]
    )
    got = raw.parse()
    assert raw.headers["x-fareway-provider"] == provider
    assert [len(d.embedding) for d in got.data] == [dims, dims]
    assert got.usage.prompt_tokens > 0
    row = await logged(gateway, raw.headers["x-request-id"])
    assert row.call.kind == "embedding" and row.call.provider == provider


async def test_gemini_batches_over_100_are_split(gateway: LiveGateway, sim_control: Any) -> None:
    before = (await sim_control.stats())["providers"].get("gemini", {}).get("requests", 0)
    texts = [f"line {i}" for i in range(GEMINI_MAX_BATCH + 50)]
    raw = await oai(gateway).embeddings.with_raw_response.create(model="gemini-embedding-001", input=texts)
    got = raw.parse()
    assert [d.index for d in got.data] == list(range(len(texts)))
    for d, t in zip(got.data, texts, strict=True):
        assert cos(d.embedding, sim_vector(t, 3072, "gemini-embedding-001")) > 0.99999
    after = (await sim_control.stats())["providers"]["gemini"]["requests"]
    assert after - before == 2  # 100 + 50
    # gemini-embedding-001 reports no usage: the tokens are counted offline, marked estimated
    assert raw.headers["x-fareway-estimated"] == "true"
    row = await logged(gateway, raw.headers["x-request-id"])
    assert row.call.estimated and row.call.input_tokens > 0
    assert row.call.cost == Decimal("0.15") * row.call.input_tokens / M


async def test_deepinfra_cost_is_unknown_not_zero(gateway: LiveGateway) -> None:
    raw = await oai(gateway).embeddings.with_raw_response.create(model="BAAI/bge-m3", input="x")
    assert "x-fareway-cost-usd" not in raw.headers
    row = await logged(gateway, raw.headers["x-request-id"])
    assert row.call.cost is None and row.call.input_tokens == 1


# ----------------------------------------------------------------------------- bad input, errors


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"model": SMALL, "input": ""}, 400, "input"),
        ({"model": SMALL, "input": []}, 400, "input"),
        ({"model": SMALL, "input": ["ok", ""]}, 400, "input"),
        ({"model": SMALL, "input": ["x"] * 2049}, 400, "input"),
        ({"model": SMALL, "input": 42}, 400, "input"),
        ({"model": SMALL, "input": {"text": "x"}}, 400, "input"),
        ({"model": SMALL, "input": ["x", 1]}, 400, "input"),
        ({"model": SMALL, "input": [[1], "x"]}, 400, "input"),
        ({"model": SMALL}, 400, "input"),
        ({"input": "x"}, 400, "model"),
        ({"model": SMALL, "input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"model": SMALL, "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "no-such-embedding-model", "input": "x"}, 404, "model"),
        ({"model": "gpt-4o-mini", "input": "x"}, 400, "model"),
        ({"model": "openai/gpt-4o-mini", "input": "x"}, 400, "model"),
        ({"model": "claude-haiku-4-5", "input": "x"}, 400, "model"),
        ({"model": "auto", "input": "x"}, 400, "model"),
        ({"model": "auto:cheap", "input": "x"}, 400, "model"),
    ],
)
async def test_bad_input_is_an_openai_error(
    gateway: LiveGateway, payload: Any, status: int, param: str
) -> None:
    got, body, headers = await post(gateway, payload)
    assert got == status
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["param"] == param
    assert "Traceback" not in err["message"]
    row = await logged(gateway, headers["x-request-id"])  # refused calls are accounted too
    assert row.call.kind == "embedding" and row.call.status == status and row.call.outcome == "error"


async def test_malformed_json_is_a_400(gateway: LiveGateway) -> None:
    status, body, _ = await post(gateway, b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_errors_through_the_sdk(gateway: LiveGateway) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await oai(gateway).embeddings.create(model="no-such-model", input="x")
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as br:
        await oai(gateway).embeddings.create(model="gpt-4o", input="x")
    assert "chat model" in str(br.value)
    # the upstream's own 400 (ada-002 has a fixed size) reaches the client as a 400
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        await oai(gateway).embeddings.create(model="text-embedding-ada-002", input="x", dimensions=64)


async def test_chat_never_reaches_an_embedding_model(gateway: LiveGateway) -> None:
    for model in (SMALL, "openai/text-embedding-3-small", "gemini-embedding-001"):
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            await oai(gateway).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )


async def test_an_upstream_429_without_fallback_is_a_429(gateway: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", model=SMALL, kind="429", count=1, retry_after=0)
    with pytest.raises(openai.RateLimitError):
        await oai(gateway).embeddings.create(model=SMALL, input="x")


# --------------------------------------------------------------------------- models list


async def test_models_list_marks_embedding_models(gateway: LiveGateway) -> None:
    kinds = {m.id: getattr(m, "kind", None) for m in (await oai(gateway).models.list()).data}
    for mid in (
        SMALL,
        "openai/text-embedding-3-small",
        "gemini-embedding-001",
        "mistral-embed",
        "BAAI/bge-m3",
    ):
        assert kinds[mid] == "embedding", mid
    for mid in ("gpt-4o-mini", "claude-haiku-4-5", "auto"):
        assert kinds[mid] == "chat", mid
    one = await oai(gateway).models.retrieve(SMALL)
    assert getattr(one, "kind", None) == "embedding"


# ----------------------------------------------------------------- routing: fallback and race


@pytest.fixture
async def agw(sim: Any, tmp_path: Any) -> AsyncIterator[LiveGateway]:
    """A gateway of its own per test: a fault's cooldown must not leak into the next test."""
    cfg = gateway_config(sim.url, tmp_path)
    cfg = dataclasses.replace(
        cfg,
        aliases={
            "emb-chain": {
                "strategy": "fallback",
                "targets": ["openai/text-embedding-3-small", "deepinfra/BAAI/bge-m3"],
            },
            "emb-race": {
                "strategy": "race",
                "targets": ["openai/text-embedding-3-small", "mistral/mistral-embed"],
            },
            "emb": "gemini/gemini-embedding-001",
        },
    )
    gw = await start_gateway(cfg)
    yield gw
    await gw.stop()


@pytest.mark.parametrize("kind", ["429", "500", "503"])
async def test_fallback_on_429_and_5xx(agw: LiveGateway, sim_control: Any, kind: str) -> None:
    await sim_control.fault(provider="openai", model=SMALL, kind=kind, count=1, retry_after=0)
    raw = await oai(agw).embeddings.with_raw_response.create(model="emb-chain", input=["a", "b"])
    got = raw.parse()
    assert raw.headers["x-fareway-provider"] == "deepinfra" and len(got.data) == 2
    assert "openai/text-embedding-3-small=error" in raw.headers["x-fareway-route"]
    assert "deepinfra/BAAI/bge-m3=committed" in raw.headers["x-fareway-route"]
    row = await logged(agw, raw.headers["x-request-id"])
    assert row.call.attempts == 2 and row.call.provider == "deepinfra" and row.call.kind == "embedding"
    first, second = row.attempts
    assert (first.outcome, first.role, first.status) == (
        "error",
        "primary",
        529 if kind == "529" else int(kind),
    )
    assert (second.outcome, second.role) == ("ok", "fallback")
    assert first.input_tokens == 0  # a refused try consumed nothing


async def test_a_400_is_not_a_fallback_trigger(agw: LiveGateway, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", model=SMALL, kind="500", status=400, count=1)
    with pytest.raises(openai.BadRequestError):
        await oai(agw).embeddings.create(model="emb-chain", input="a")


async def test_race_takes_one_answer(agw: LiveGateway) -> None:
    raw = await oai(agw).embeddings.with_raw_response.create(model="emb-race", input="a b c")
    assert raw.headers["x-fareway-provider"] in ("openai", "mistral")
    row = await logged(agw, raw.headers["x-request-id"])
    assert row.call.attempts == 2 and {a.role for a in row.attempts} == {"race"}
    assert sum(a.outcome == "ok" for a in row.attempts) >= 1


async def test_an_alias_for_an_embedding_model(agw: LiveGateway) -> None:
    raw = await oai(agw).embeddings.with_raw_response.create(model="emb", input="x", dimensions=128)
    assert raw.headers["x-fareway-provider"] == "gemini" and len(raw.parse().data[0].embedding) == 128
    kinds = {m.id: getattr(m, "kind", None) for m in (await oai(agw).models.list()).data}
    assert kinds["emb"] == "embedding" and kinds["emb-chain"] == "embedding"


# ------------------------------------------------------------------ the in-process Embedder


async def test_in_process_embedder(gateway: LiveGateway) -> None:
    from fareway.types import Embedder

    service = gateway.app.gateway.embeddings
    assert service is not None
    embedder = service.embedder(SMALL, dimensions=64)
    assert isinstance(embedder, Embedder)
    vectors = await embedder.embed(["same words here", "same words there"])
    assert [len(v) for v in vectors] == [64, 64]
    assert vectors[0] == sim_vector("same words here", 64, SMALL)  # floats end to end, unchanged
    assert await embedder.embed([]) == []
    ledger = gateway.app.gateway.accounting.ledger
    assert ledger is not None
    await ledger.flush()
    rows = [r for r in await ledger.recent_calls(n=50) if r.call.key_name == "fareway-internal"]
    assert rows and rows[0].call.kind == "embedding" and rows[0].call.input_tokens == 6
