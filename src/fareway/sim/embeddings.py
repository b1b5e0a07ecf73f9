"""The simulator's embeddings: deterministic vectors in which similar texts get similar vectors.

:func:`sim_vector` hashes a text's features into ``dims`` signed buckets (the "hashing trick"):

* every word (lower-cased ``\\w+`` runs), weight 1.0;
* every pair of adjacent words, weight 0.5 (so word order counts a little);
* every character trigram of every word padded with ``#`` (``cat`` -> ``#ca``, ``cat``, ``at#``),
  weight 0.5 (so spelling variants and inflections stay close);
* a few very common English words ("the", "for", "is", ...) weigh a tenth of that, so sharing
  them does not make two texts look related;

and scales the sum to unit length.  Two texts that share most features therefore have a cosine
near 1, unrelated texts near 0, and the same text always gets the same vector (a keyed BLAKE2b
per feature; the key is the model id, so two models' vectors are unrelated, as in reality).

Routes (wired by sim.server):

* ``POST /{provider}/v1/embeddings`` — OpenAI's shape (``dimensions``, ``encoding_format``
  float|base64, token arrays); Mistral's flavour (``output_dimension``, an ``id``,
  ``usage.completion_tokens: 0``, text only, its flat error shape); DeepInfra zero-pads a
  ``dimensions`` above the native size (WIRE.md 1g);
* ``POST /gemini/v1beta/models/{model}:embedContent`` and ``:batchEmbedContents`` (at most 100
  requests; ``outputDimensionality`` 128..3072; ``usageMetadata`` only from gemini-embedding-2 and
  gemini-embedding-001's vectors below 3072 dimensions not unit length, as recorded).

Faults armed for a provider (``POST /_sim/faults``) apply to these routes as to chat: HTTP kinds
answer in the provider's error shape, ``stall`` never answers, ``reset`` drops the connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import math
import re
import struct
from typing import Any

import orjson
from aiohttp import web

from fareway.sim.faults import HTTP_KINDS
from fareway.sim.runtime import Dialect, SimState, key_sha

_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

NATIVE_DIMS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "gemini-embedding-001": 3072,
    "gemini-embedding-2": 3072,
    "text-embedding-004": 768,
    "mistral-embed": 1024,
    "codestral-embed": 1536,
    "BAAI/bge-m3": 1024,
    "BAAI/bge-large-en-v1.5": 1024,
    "BAAI/bge-base-en-v1.5": 768,
}
"""The embedding models the simulator serves, with their native sizes.  Any other model id that
contains ``embed`` is served too, at :data:`DEFAULT_DIMS`."""

DEFAULT_DIMS = 1024
GEMINI_MAX_BATCH = 100
MAX_INPUTS = 2048
FIXED_DIMS = frozenset({"text-embedding-ada-002", "mistral-embed"})
"""Models that refuse a requested output size (OpenAI: "does not support specifying dimensions")."""
GEMINI_UNNORMALISED = 0.57
"""The norm of gemini-embedding-001's vectors below 3072 dimensions (fixtures: 768 dims -> 0.57)."""


def native_dims(model: str) -> int | None:
    """The native size of ``model``, or None when the simulator does not serve it."""
    if model in NATIVE_DIMS:
        return NATIVE_DIMS[model]
    return DEFAULT_DIMS if "embed" in model.lower() else None


_STOPWORDS = frozenset(
    "a an and are as at be by for from how i in is it of on or that the this to was were what with you".split()
)
"""Words so common that sharing them says little: their features weigh :data:`STOPWORD_WEIGHT`."""
STOPWORD_WEIGHT = 0.1


def _features(text: str) -> list[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    scale = [STOPWORD_WEIGHT if w in _STOPWORDS else 1.0 for w in words]
    feats: list[tuple[str, float]] = [(f"w:{w}", k) for w, k in zip(words, scale, strict=True)]
    feats += [
        (f"b:{a} {b}", 0.5 * min(ka, kb))
        for (a, ka), (b, kb) in itertools.pairwise(zip(words, scale, strict=True))
    ]
    for w, k in zip(words, scale, strict=True):
        padded = f"#{w}#"
        feats += [(f"c:{padded[i : i + 3]}", 0.5 * k) for i in range(len(padded) - 2)]
    if not feats:  # punctuation or spaces only: its characters are its features
        feats = [(f"c:{text[i : i + 3]}", 0.5) for i in range(max(1, len(text) - 2))]
    return feats


def sim_vector(text: str, dims: int, model: str = "") -> list[float]:
    """The unit-length vector of ``text`` (see the module docstring)."""
    out = [0.0] * dims
    key = hashlib.blake2b(model.encode("utf-8"), digest_size=16).digest()
    for feat, weight in _features(text):
        h = int.from_bytes(hashlib.blake2b(feat.encode("utf-8"), digest_size=8, key=key).digest(), "little")
        out[h % dims] += weight if (h >> 63) & 1 else -weight
    norm = math.sqrt(math.fsum(x * x for x in out))
    if norm == 0.0:
        out[0] = 1.0
        return out
    return [x / norm for x in out]


def token_vector(tokens: list[int], dims: int, model: str = "") -> list[float]:
    """A token array's vector: its ids read as words (``t123``)."""
    return sim_vector(" ".join(f"t{t}" for t in tokens), dims, model)


def count_tokens(text: str) -> int:
    """The simulator's token count of one input: words and punctuation marks, at least 1."""
    return max(1, len(_TOKEN.findall(text)))


def to_base64(values: list[float]) -> str:
    raw = struct.pack(f"<{len(values)}f", *values)
    return base64.b64encode(raw).decode("ascii")


# ----------------------------------------------------------------------------- HTTP handlers


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers={"Content-Type": "application/json"})


async def _fault(
    state: SimState, dialect: Dialect, request: web.Request, provider: str, model: str, sha: str = ""
) -> web.StreamResponse | None:
    """The response of an armed fault for this call, or None to answer normally."""
    fault = state.faults.take(provider, model, sha)
    if fault is None:
        return None
    state.stats.of(provider).errors_injected += 1
    if fault.kind in HTTP_KINDS or fault.kind == "stream_error":
        return dialect.fault_response(provider, fault)
    if fault.kind == "reset" and request.transport is not None:
        request.transport.close()
    await asyncio.Event().wait()  # stall (or a closed connection): until the client goes away
    raise AssertionError("unreachable")


async def _latency(state: SimState, provider: str, model: str) -> None:
    profile = state.config.profile(provider, model)
    if not profile.ttft.is_zero:
        await asyncio.sleep(profile.ttft.draw(state.latency_rng(provider)))


def _openai_inputs(raw: Any) -> list[str | list[int]] | None:
    if isinstance(raw, str):
        return [raw] if raw else None
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        return [raw]
    if all(isinstance(s, str) and s for s in raw):
        return list(raw)
    if all(
        isinstance(a, list) and a and all(isinstance(t, int) and not isinstance(t, bool) for t in a)
        for a in raw
    ):
        return list(raw)
    return None


async def openai_embeddings(
    state: SimState, dialect: Dialect, request: web.Request, provider: str
) -> web.StreamResponse:
    """``POST /{provider}/v1/embeddings`` in the provider's OpenAI flavour."""
    counters = state.stats.of(provider)
    counters.requests += 1
    sha = key_sha(request, counters)
    if not dialect.auth_ok(request, provider):
        return dialect.error_response(provider, 401, "missing or invalid API key", "authentication_error")
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        return dialect.error_response(provider, 400, f"malformed JSON in the request body: {e}")
    if not isinstance(data, dict):
        return dialect.error_response(provider, 400, "the request body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        return dialect.error_response(provider, 400, "you must provide a model parameter", param="model")
    native = native_dims(model)
    if native is None:
        return dialect.error_response(
            provider,
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    mistral = provider == "mistral"
    inputs = _openai_inputs(data.get("input"))
    if inputs is None or len(inputs) > MAX_INPUTS:
        return dialect.error_response(provider, 400, "'$.input' is invalid.", param="input")
    if mistral and any(not isinstance(i, str) for i in inputs):
        return dialect.error_response(provider, 422, "input: Input should be a valid string", param="input")
    dims_field = "output_dimension" if mistral else "dimensions"
    dims = data.get(dims_field)
    if dims is not None:
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            return dialect.error_response(
                provider, 400, f"'{dims_field}' must be a positive integer", param=dims_field
            )
        if model in FIXED_DIMS:
            return dialect.error_response(
                provider, 400, "This model does not support specifying dimensions.", param=dims_field
            )
        if dims > native and provider != "deepinfra":
            return dialect.error_response(
                provider, 400, f"'{dims_field}' must be at most {native} for {model}", param=dims_field
            )
    fmt = data.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        return dialect.error_response(
            provider, 400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    faulted = await _fault(state, dialect, request, provider, model, sha)
    if faulted is not None:
        return faulted
    counters.in_flight += 1
    try:
        await _latency(state, provider, model)
        size = min(dims, native) if dims else native
        items = []
        tokens = 0
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                vec = sim_vector(item, size, model)
                tokens += count_tokens(item)
            else:
                vec = token_vector(item, size, model)
                tokens += len(item)
            if dims and dims > size:  # DeepInfra: zero-padded above the native size
                vec += [0.0] * (dims - size)
            items.append(
                {"object": "embedding", "embedding": to_base64(vec) if fmt == "base64" else vec, "index": i}
            )
        body: dict[str, Any] = {"object": "list", "data": items, "model": model}
        if mistral:
            body = {"id": hashlib.md5(repr(inputs).encode(), usedforsecurity=False).hexdigest(), **body}
            body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
        else:
            body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        counters.completed += 1
        return web.Response(body=orjson.dumps(body), headers=dialect.success_headers(provider))
    finally:
        counters.in_flight -= 1


async def gemini_embeddings(state: SimState, dialect: Dialect, request: web.Request) -> web.StreamResponse:
    """``:embedContent`` / ``:batchEmbedContents`` on ``/gemini/v1beta/models/{model}``."""
    provider = "gemini"
    counters = state.stats.of(provider)
    counters.requests += 1
    sha = key_sha(request, counters)
    if not dialect.auth_ok(request, provider):
        return dialect.error_response(provider, 401, "API key not valid. Please pass a valid API key.")
    model, _, method = request.match_info.get("target", "").partition(":")
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        return dialect.error_response(provider, 400, f"Invalid JSON payload received. {e}")
    native = native_dims(model)
    if native is None:
        return dialect.error_response(
            provider,
            404,
            f"models/{model} is not found for API version v1beta, or is not supported for embedContent. "
            "Call ListModels to see the list of available models and their supported methods.",
        )
    if not isinstance(data, dict):
        return dialect.error_response(provider, 400, "Invalid JSON payload received.")
    requests: Any
    if method == "embedContent":
        requests = [data]
    else:
        requests = data.get("requests")
        if not isinstance(requests, list) or not requests:
            return dialect.error_response(
                provider, 400, "* BatchEmbedContentsRequest.requests: requests is not specified"
            )
        if len(requests) > GEMINI_MAX_BATCH:
            return dialect.error_response(
                provider,
                400,
                f"* BatchEmbedContentsRequest.requests: at most {GEMINI_MAX_BATCH} requests can be in one batch",
            )
    texts: list[tuple[str, int | None]] = []
    for i, r in enumerate(requests):
        if not isinstance(r, dict):
            return dialect.error_response(provider, 400, f"* requests[{i}]: not an object")
        if method != "embedContent" and r.get("model") != f"models/{model}":
            return dialect.error_response(
                provider,
                400,
                f"* BatchEmbedContentsRequest.requests[{i}].model: the model must be models/{model}",
            )
        parts = (r.get("content") or {}).get("parts") if isinstance(r.get("content"), dict) else None
        if not isinstance(parts, list) or not parts:
            return dialect.error_response(provider, 400, f"* requests[{i}].content: content is not specified")
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
        if not text:
            return dialect.error_response(provider, 400, f"* requests[{i}].content: the text is empty")
        dims = r.get("outputDimensionality")
        if dims is not None and (
            isinstance(dims, bool) or not isinstance(dims, int) or not 128 <= dims <= native
        ):
            return dialect.error_response(
                provider, 400, f"* requests[{i}].outputDimensionality: must be between 128 and {native}"
            )
        texts.append((text, dims))
    faulted = await _fault(state, dialect, request, provider, model, sha)
    if faulted is not None:
        return faulted
    counters.in_flight += 1
    try:
        await _latency(state, provider, model)
        embeddings = []
        for text, dims in texts:
            size = dims or native
            vec = sim_vector(text, size, model)
            if model == "gemini-embedding-001" and size < native:
                vec = [x * GEMINI_UNNORMALISED for x in vec]
            embeddings.append({"values": vec})
        body: dict[str, Any] = (
            {"embedding": embeddings[0]} if method == "embedContent" else {"embeddings": embeddings}
        )
        if model == "gemini-embedding-2":
            n = sum(count_tokens(t) for t, _ in texts)
            body["usageMetadata"] = {
                "promptTokenCount": n,
                "promptTokenDetails": [{"modality": "TEXT", "tokenCount": n}],
            }
        counters.completed += 1
        return _json(body)
    finally:
        counters.in_flight -= 1


def is_embedding_target(target: str) -> bool:
    return target.endswith((":embedContent", ":batchEmbedContents"))


__all__ = [
    "NATIVE_DIMS",
    "count_tokens",
    "gemini_embeddings",
    "is_embedding_target",
    "native_dims",
    "openai_embeddings",
    "sim_vector",
    "to_base64",
    "token_vector",
]
