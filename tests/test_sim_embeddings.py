"""The simulator's embeddings: deterministic, similar texts close, sizes honoured, and the OpenAI,
Mistral, DeepInfra and Gemini shapes (as recorded in ../shared/fixtures/embeddings)."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fareway.sim.embeddings import sim_vector


def cos(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


@given(st.text(min_size=1, max_size=80), st.integers(1, 600))
def test_deterministic_unit_vectors_of_the_asked_size(text: str, dims: int) -> None:
    v = sim_vector(text, dims, "m")
    assert len(v) == dims and v == sim_vector(text, dims, "m")
    assert abs(math.sqrt(math.fsum(x * x for x in v)) - 1.0) < 1e-9


def test_similar_texts_are_close_and_unrelated_ones_are_not() -> None:
    base = "the invoice for march was paid late"
    near = [
        "the invoice for March was paid late!",
        "the invoices for march were paid late",
        "march invoice paid late",
    ]
    far = [
        "photosynthesis converts light into chemical energy",
        "a recipe for tomato soup",
        "kubernetes pod eviction",
    ]
    for dims in (256, 1536):
        b = sim_vector(base, dims)
        nears = [cos(b, sim_vector(t, dims)) for t in near]
        fars = [cos(b, sim_vector(t, dims)) for t in far]
        assert min(nears) > 0.5, nears
        assert max(fars) < 0.2, fars
        assert cos(b, sim_vector(base.upper(), dims)) > 0.999  # case does not matter


def test_two_models_do_not_share_a_space() -> None:
    assert abs(cos(sim_vector("same text", 512, "model-a"), sim_vector("same text", 512, "model-b"))) < 0.5


async def call(sim: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = headers if headers is not None else {"authorization": "Bearer k", "x-goog-api-key": "k"}
    async with aiohttp.ClientSession() as s, s.post(f"{sim.url}{path}", json=body, headers=hdrs) as r:
        return r.status, await r.json()


async def test_openai_shape(sim: Any) -> None:
    status, body = await call(
        sim, "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b c"]}
    )
    assert status == 200 and body["object"] == "list" and body["model"] == "text-embedding-3-small"
    assert [d["index"] for d in body["data"]] == [0, 1] and len(body["data"][0]["embedding"]) == 1536
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    status, b64 = await call(
        sim,
        "/openai/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64", "dimensions": 128},
    )
    raw = base64.b64decode(b64["data"][0]["embedding"])
    assert len(raw) == 128 * 4  # 684 base64 characters, as recorded for dimensions=128
    assert len(b64["data"][0]["embedding"]) == 684
    assert list(struct.unpack("<128f", raw)) == pytest.approx(
        sim_vector("a", 128, "text-embedding-3-small"), abs=1e-7
    )


async def test_openai_errors(sim: Any) -> None:
    status, body = await call(
        sim, "/openai/v1/embeddings", {"model": "nonexistent", "input": ["Hello, world!"]}
    )
    # the recorded 404 (fixtures/embeddings/TestOpenAI.test_embed_error.yaml)
    assert status == 404 and body == {
        "error": {
            "message": "The model `nonexistent` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert (await call(sim, "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": ""}))[
        0
    ] == 400
    assert (
        await call(
            sim,
            "/openai/v1/embeddings",
            {"model": "text-embedding-3-small", "input": "x", "dimensions": 4096},
        )
    )[0] == 400
    assert (await call(sim, "/openai/v1/embeddings", {"model": "m-embed", "input": "x"}, headers={}))[
        0
    ] == 401


async def test_mistral_and_deepinfra_flavours(sim: Any) -> None:
    status, body = await call(sim, "/mistral/v1/embeddings", {"model": "mistral-embed", "input": ["a", "b"]})
    assert status == 200 and len(body["id"]) == 32 and len(body["data"][0]["embedding"]) == 1024
    assert body["usage"]["completion_tokens"] == 0  # as in fixtures/embeddings/embeddings_response.json
    status, body = await call(
        sim, "/mistral/v1/embeddings", {"model": "codestral-embed", "input": "x", "output_dimension": 256}
    )
    assert status == 200 and len(body["data"][0]["embedding"]) == 256
    status, body = await call(sim, "/mistral/v1/embeddings", {"model": "mistral-embed", "input": [[1, 2]]})
    assert status == 422 and body["object"] == "error"
    status, body = await call(
        sim, "/deepinfra/v1/embeddings", {"model": "BAAI/bge-base-en-v1.5", "input": "x", "dimensions": 1000}
    )
    vec = body["data"][0]["embedding"]
    assert status == 200 and len(vec) == 1000 and vec[768:] == [0.0] * 232  # zero-padded (WIRE.md 1g)


async def test_gemini_shapes(sim: Any) -> None:
    path = "/gemini/v1beta/models/gemini-embedding-001"
    status, one = await call(sim, f"{path}:embedContent", {"content": {"parts": [{"text": "hi"}]}})
    assert status == 200 and len(one["embedding"]["values"]) == 3072 and "usageMetadata" not in one
    req = {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "Some text goes here"}]},
        "outputDimensionality": 768,
    }
    status, batch = await call(sim, f"{path}:batchEmbedContents", {"requests": [req, req]})
    values = batch["embeddings"][0]["values"]
    assert status == 200 and len(batch["embeddings"]) == 2 and len(values) == 768
    assert abs(math.sqrt(math.fsum(x * x for x in values)) - 0.57) < 1e-9  # as recorded for 768 dims
    status, two = await call(
        sim,
        "/gemini/v1beta/models/gemini-embedding-2:batchEmbedContents",
        {
            "requests": [
                {"model": "models/gemini-embedding-2", "content": {"parts": [{"text": "First text"}]}}
            ]
        },
    )
    assert status == 200 and two["usageMetadata"]["promptTokenCount"] == 2
    status, err = await call(sim, f"{path}:batchEmbedContents", {"requests": [req] * 101})
    assert status == 400 and "at most 100 requests" in err["error"]["message"]
    status, err = await call(
        sim,
        "/gemini/v1beta/models/nonexistent-model:batchEmbedContents",
        {"requests": [{"model": "models/nonexistent-model"}]},
    )
    assert status == 404 and err["error"]["status"] == "NOT_FOUND"
    assert (
        "is not found for API version v1beta, or is not supported for embedContent" in err["error"]["message"]
    )


async def test_faults_apply_to_embeddings(sim: Any, sim_control: Any) -> None:
    await sim_control.fault(provider="openai", model="text-embedding-3-small", kind="429", count=1)
    status, body = await call(sim, "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert (await call(sim, "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}))[
        0
    ] == 200
    await sim_control.fault(provider="gemini", kind="503", count=1)
    status, body = await call(
        sim,
        "/gemini/v1beta/models/gemini-embedding-001:embedContent",
        {"content": {"parts": [{"text": "x"}]}},
    )
    assert status == 503 and body["error"]["status"] == "UNAVAILABLE"
