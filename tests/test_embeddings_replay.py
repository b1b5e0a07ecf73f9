"""Replay of the recorded embeddings traffic in ../shared/fixtures/embeddings (see its README):
the adapters build the recorded requests and parse the recorded answers to what they hold, and a
live gateway serves the recorded bytes to the official openai SDK.

Expected values come from the recordings themselves (decoded here with ``struct``/``json``, not
with the code under test) and from the fixtures README / WIRE.md 1g (dimensions, usage, norms)."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from fareway.adapters.gemini_embeddings import ADAPTER as GEMINI
from fareway.adapters.openai_embeddings import ADAPTER as OPENAI
from fareway.config import ProviderConfig
from fareway.errors import UpstreamClientError
from fareway.providers.registry import BUILTIN_PROVIDERS, ProviderSpec
from fareway.types import EmbeddingRequest, Upstream
from fareway.wire.openai_embeddings import encode_response
from tests.conftest import gateway_config, openai_client, start_gateway
from tests.recorded import Interaction, fixtures_dir, load_cassette

FIX = fixtures_dir()
pytestmark = pytest.mark.skipif(FIX is None, reason="../shared/fixtures is not present")
DIR = (FIX or Path(".")) / "embeddings"


def one(name: str) -> Interaction:
    [it] = load_cassette(DIR / name)
    return it


def openai_up(model: str, provider: str = "openai") -> Upstream:
    s = BUILTIN_PROVIDERS[provider]
    return Upstream(provider, "openai", s.base_url, model, "sk-test", quirks=s.quirks)


def gemini_up(model: str) -> Upstream:
    s = BUILTIN_PROVIDERS["gemini"]
    return Upstream(
        "gemini", "gemini", s.base_url, model, "g-test", auth_header="x-goog-api-key", auth_scheme=None
    )


def f32(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def norm(values: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in values))


# ------------------------------------------------------------------------------- OpenAI base64


@pytest.mark.parametrize(
    ("name", "n", "dims", "tokens"),
    [
        ("TestOpenAI.test_query.yaml", 1, 1536, 4),
        ("TestOpenAI.test_documents.yaml", 2, 1536, 2),
        ("TestOpenAI.test_instrumentation.yaml", 1, 128, None),
    ],
)
def test_openai_base64_recordings(name: str, n: int, dims: int, tokens: int | None) -> None:
    it = one(name)
    sent = it.request_json
    req = EmbeddingRequest(
        model=sent["model"], inputs=sent["input"], dimensions=sent.get("dimensions"), encoding_format="base64"
    )
    http = OPENAI.build_request(req, req.inputs, openai_up(sent["model"]))
    assert http.url == "https://api.openai.com/v1/embeddings"
    assert orjson.loads(http.body) == sent  # the request as the recorded client sent it

    recorded = it.response_json()
    result = OPENAI.parse_response(it.body, req, n, openai_up(sent["model"]))
    assert len(result.vectors) == n and result.model == recorded["model"]
    assert result.usage is not None and result.usage.input_tokens == recorded["usage"]["prompt_tokens"]
    if tokens is not None:
        assert result.usage.input_tokens == tokens
    for vec, item in zip(result.vectors, recorded["data"], strict=True):
        expected = f32(item["embedding"])
        assert len(vec) == len(expected) == dims
        assert vec.floats() == expected
        assert abs(norm(expected) - 1.0) < 1e-3  # WIRE.md: <f4 decodes to unit vectors
    # a base64 client gets the provider's bytes back unchanged
    out = orjson.loads(encode_response(result, req, req.model, None))
    assert [d["embedding"] for d in out["data"]] == [d["embedding"] for d in recorded["data"]]


def test_openai_404_is_not_a_fallback_trigger() -> None:
    it = one("TestOpenAI.test_embed_error.yaml")
    err = OPENAI.parse_error(it.status, it.response_headers, it.body, openai_up("nonexistent"))
    assert isinstance(err, UpstreamClientError) and not err.retryable
    assert err.status == 404 and err.client_status == 404
    assert err.code == "model_not_found"
    assert err.message == "The model `nonexistent` does not exist or you do not have access to it."


# ------------------------------------------------------------------------------- OpenAI float


def ada() -> tuple[dict[str, Any], dict[str, Any]]:
    data = yaml.safe_load(
        (DIR / "text-embedding-ada-002_embeddings_the_food_was_delicious_and_the_waiter_.yml").read_text()
    )
    it = data["http_interactions"][0]
    return json.loads(it["request"]["body"]["string"]), json.loads(it["response"]["body"]["string"])


def test_openai_float_recording_round_trips_exactly() -> None:
    sent, recorded = ada()
    req = EmbeddingRequest(model=sent["model"], inputs=[sent["input"]])
    body = orjson.loads(OPENAI.build_request(req, req.inputs, openai_up(sent["model"])).body)
    assert body == {"model": sent["model"], "input": [sent["input"]]}  # floats: no encoding_format sent
    raw = orjson.dumps(recorded)
    result = OPENAI.parse_response(raw, req, 1, openai_up(sent["model"]))
    expected = recorded["data"][0]["embedding"]
    assert len(expected) == 1536 and result.usage is not None and result.usage.input_tokens == 8
    out = orjson.loads(encode_response(result, req, req.model, None))
    assert out["data"][0]["embedding"] == expected  # float -> float: the provider's numbers, unchanged
    b64 = dataclasses.replace(req, encoding_format="base64")
    encoded = orjson.loads(encode_response(result, b64, req.model, None))["data"][0]["embedding"]
    assert base64.b64decode(encoded) == struct.pack(f"<{len(expected)}f", *expected)


# -------------------------------------------------------------------------------------- Gemini


def test_gemini_batch_request_is_the_recorded_one() -> None:
    it = one("test_embedding_batch.yaml")
    sent = it.request_json
    texts = [r["content"]["parts"][0]["text"] for r in sent["requests"]]
    req = EmbeddingRequest(model="gemini-embedding-2", inputs=texts, dimensions=768)
    http = GEMINI.build_request(req, texts, gemini_up("gemini-embedding-2"))
    assert http.url == it.uri
    assert orjson.loads(http.body) == sent
    assert http.headers["x-goog-api-key"] == "g-test"


def test_gemini_single_input_uses_embed_content() -> None:
    it = one("test_embedding[gemini-embedding-001-768].yaml")
    [r] = it.request_json["requests"]
    req = EmbeddingRequest(
        model="gemini-embedding-001", inputs=[r["content"]["parts"][0]["text"]], dimensions=768
    )
    http = GEMINI.build_request(req, req.inputs, gemini_up("gemini-embedding-001"))
    assert http.url == it.uri.replace(":batchEmbedContents", ":embedContent")
    assert orjson.loads(http.body) == {"content": r["content"], "outputDimensionality": 768}


def test_gemini_001_vectors_are_normalised() -> None:
    it = one("test_embedding[gemini-embedding-001-768].yaml")
    raw = it.response_json()["embeddings"][0]["values"]
    assert len(raw) == 768 and abs(norm(raw) - 0.57) < 0.01  # WIRE.md: 768-dim 001 vectors, norm 0.57
    req = EmbeddingRequest(model="gemini-embedding-001", inputs=["Some text goes here"], dimensions=768)
    result = GEMINI.parse_response(it.body, req, 1, gemini_up("gemini-embedding-001"))
    [vec] = result.vectors
    values = vec.floats()
    assert len(values) == 768 and abs(norm(values) - 1.0) < 1e-9
    scale = norm(raw)
    assert all(abs(a - b / scale) < 1e-12 for a, b in zip(values, raw, strict=True))  # direction kept
    assert result.usage is None  # gemini-embedding-001 reports none: the executor estimates


def test_gemini_batch_with_usage() -> None:
    it = one("test_embedding_batch.yaml")
    recorded = it.response_json()
    req = EmbeddingRequest(model="gemini-embedding-2", inputs=["First text", "Second text"], dimensions=768)
    result = GEMINI.parse_response(it.body, req, 2, gemini_up("gemini-embedding-2"))
    assert [len(v) for v in result.vectors] == [768, 768]
    assert (
        result.usage is not None
        and result.usage.input_tokens == recorded["usageMetadata"]["promptTokenCount"] == 4
    )
    for vec, item in zip(result.vectors, recorded["embeddings"], strict=True):
        assert abs(norm(item["values"]) - 1.0) < 1e-3  # embedding-2 is unit length already
        assert vec.floats() == item["values"]  # ...so it passes unchanged


def test_gemini_404() -> None:
    it = one("TestGoogle.test_embed_error.yaml")
    err = GEMINI.parse_error(it.status, it.response_headers, it.body, gemini_up("nonexistent-model"))
    assert isinstance(err, UpstreamClientError) and not err.retryable
    assert err.status == 404 and err.code == "NOT_FOUND"
    assert "models/nonexistent-model is not found" in err.message


def test_gemini_task_type_is_passed_per_request() -> None:
    it = one("TestGoogle.test_embed_error.yaml")
    [r] = it.request_json["requests"]
    req = EmbeddingRequest(
        model="nonexistent-model", inputs=["Hello, world!", "x"], extensions={"task_type": r["taskType"]}
    )
    body = orjson.loads(GEMINI.build_request(req, req.inputs, gemini_up("nonexistent-model")).body)
    assert body["requests"][0] == r  # the recorded request item: model, content, taskType
    assert body["requests"][1]["taskType"] == "RETRIEVAL_QUERY"


# ---------------------------------------------------------------------------- Mistral, Voyage


def test_mistral_body() -> None:
    raw = (DIR / "embeddings_response.json").read_bytes()
    recorded = json.loads(raw)
    req = EmbeddingRequest(model="mistral-embed", inputs=["a", "b"])
    result = OPENAI.parse_response(raw, req, 2, openai_up("mistral-embed", "mistral"))
    assert [len(v) for v in result.vectors] == [1024, 1024]
    assert result.usage is not None and result.usage.input_tokens == 6
    out = orjson.loads(encode_response(result, req, req.model, None))
    assert [d["embedding"] for d in out["data"]] == [d["embedding"] for d in recorded["data"]]
    assert out["model"] == "mistral-embed"


def test_mistral_request_uses_output_dimension_and_refuses_tokens() -> None:
    up = openai_up("codestral-embed", "mistral")
    req = EmbeddingRequest(model="codestral-embed", inputs=["x"], dimensions=256, encoding_format="base64")
    body = orjson.loads(OPENAI.build_request(req, req.inputs, up).body)
    assert body == {"model": "codestral-embed", "input": ["x"], "output_dimension": 256}  # floats asked for
    with pytest.raises(Exception, match="token arrays"):
        OPENAI.build_request(EmbeddingRequest(model="m", inputs=[[1, 2]]), [[1, 2]], up)


def test_voyage_usage_is_total_tokens() -> None:
    it = one("TestVoyageAI.test_query.yaml")
    req = EmbeddingRequest(model="voyage-3.5", inputs=["Hello, world!"], encoding_format="base64")
    result = OPENAI.parse_response(it.body, req, 1, openai_up("voyage-3.5"))
    assert len(result.vectors[0]) == 1024 and result.usage is not None and result.usage.input_tokens == 3
    assert result.vectors[0].floats() == f32(it.response_json()["data"][0]["embedding"])


# ------------------------------------------------------------ the recordings through a live gateway


@pytest.fixture
async def replay_upstream() -> AsyncIterator[str]:
    """Serves recorded bodies: OpenAI base64 (two inputs) at /v1/embeddings, the Gemini batch at
    :batchEmbedContents."""
    openai_it = one("TestOpenAI.test_documents.yaml")
    gemini_it = one("test_embedding_batch.yaml")

    async def oai(request: web.Request) -> web.Response:
        return web.Response(body=openai_it.body, content_type="application/json")

    async def gem(request: web.Request) -> web.Response:
        return web.Response(body=gemini_it.body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/embeddings", oai)
    app.router.add_post("/v1beta/models/gemini-embedding-2:batchEmbedContents", gem)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_recordings_reach_the_sdk_intact(sim: Any, replay_upstream: str, tmp_path: Path) -> None:
    cfg = gateway_config(sim.url, tmp_path)
    providers = dict(cfg.providers)
    providers["rec"] = ProviderConfig(
        ProviderSpec("rec", "openai", f"{replay_upstream}/v1", builtin=False), api_key="k1"
    )
    providers["recg"] = ProviderConfig(
        ProviderSpec(
            "recg",
            "gemini",
            f"{replay_upstream}/v1beta",
            auth_header="x-goog-api-key",
            auth_scheme=None,
            builtin=False,
        ),
        api_key="k2",
    )
    gw = await start_gateway(dataclasses.replace(cfg, providers=providers))
    try:
        client = openai_client(gw.url + "/v1")
        recorded = one("TestOpenAI.test_documents.yaml").response_json()
        # the SDK asks for base64 by default and decodes it itself
        got = await client.embeddings.create(model="rec/text-embedding-3-small", input=["hello", "world"])
        assert [d.embedding for d in got.data] == [f32(d["embedding"]) for d in recorded["data"]]
        assert got.usage.prompt_tokens == 2
        floats = await client.embeddings.create(
            model="rec/text-embedding-3-small", input=["hello", "world"], encoding_format="float"
        )
        assert [d.embedding for d in floats.data] == [f32(d["embedding"]) for d in recorded["data"]]

        grec = one("test_embedding_batch.yaml").response_json()
        g = await client.embeddings.create(
            model="recg/gemini-embedding-2", input=["First text", "Second text"], dimensions=768
        )
        assert [len(d.embedding) for d in g.data] == [768, 768]
        for d, item in zip(g.data, grec["embeddings"], strict=True):
            # base64 (the SDK's default) carries float32: the recorded floats to float32 precision
            assert d.embedding == [struct.unpack("<f", struct.pack("<f", x))[0] for x in item["values"]]
        assert g.usage.prompt_tokens == 4
    finally:
        await gw.stop()
