"""Embeddings over native Gemini (WIRE.md 1g, ai.google.dev/api/embeddings).

One input: ``POST {base}/models/{m}:embedContent`` ``{"content": {"parts": [{"text": ...}]},
"outputDimensionality": d}`` -> ``{"embedding": {"values": [...]}}``.  Several:
``:batchEmbedContents`` ``{"requests": [{"model": "models/{m}", "content": ..., ...}, ...]}`` ->
``{"embeddings": [{"values": [...]}, ...]}``, at most :data:`MAX_BATCH` requests per call (the
executor splits longer lists).

* ``dimensions`` is ``outputDimensionality``; the client's ``task_type`` / ``taskType`` and ``title``
  fields become each request's ``taskType`` / ``title``; other unmodelled fields and ``user`` have no
  Gemini equivalent and are reported as dropped.
* Token arrays cannot be sent (Gemini takes text only): a 400 naming it.
* Usage: ``usageMetadata.promptTokenCount`` when present (gemini-embedding-2); gemini-embedding-001
  reports none, so the executor estimates it.
* Vectors are scaled to unit length: gemini-embedding-001 below 3072 dimensions returns unnormalised
  vectors (norm 0.57 at 768 in the recording), which breaks dot-product similarity; OpenAI's are
  unit length, and the gateway's clients expect that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from fareway.adapters.base import json_body
from fareway.adapters.embeddings import (
    EmbeddingAdapter,
    ScrubbingEmbeddingAdapter,
    bad_body,
    float_vector,
    normalised,
)
from fareway.adapters.gemini import model_resource
from fareway.adapters.gemini_errors import classify, error_object
from fareway.errors import BadRequest, UpstreamError
from fareway.types import (
    Dialect,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResult,
    HttpRequest,
    Upstream,
    Usage,
)

MAX_BATCH = 100
"""Gemini's limit on the requests of one batchEmbedContents call (langchain-ai/langchainjs #4491)."""

_RENAMED = {"task_type": "taskType", "taskType": "taskType", "title": "title"}


def dropped_fields(req: EmbeddingRequest) -> list[str]:
    """The client's fields with no Gemini equivalent (for x-fareway-dropped-params)."""
    out = [k for k in req.extensions if k not in _RENAMED]
    if req.user is not None:
        out.append("user")
    return out


class GeminiEmbeddingsAdapter(ScrubbingEmbeddingAdapter):
    dialect: Dialect = "gemini"

    def max_batch(self, up: Upstream) -> int:
        return MAX_BATCH

    def _build_request(
        self, req: EmbeddingRequest, inputs: Sequence[EmbeddingInput], up: Upstream
    ) -> HttpRequest:
        if any(not isinstance(i, str) for i in inputs):
            raise BadRequest("gemini does not take token arrays as embedding input; send text", param="input")
        resource = model_resource(up.model)
        extra: dict[str, Any] = {}
        for key, value in req.extensions.items():
            if key in _RENAMED and value is not None:
                extra[_RENAMED[key]] = value
        if req.dimensions is not None:
            extra["outputDimensionality"] = req.dimensions
        base = up.base_url.rstrip("/")
        if len(inputs) == 1:
            body: dict[str, Any] = {"content": {"parts": [{"text": inputs[0]}]}, **extra}
            url = f"{base}/{resource}:embedContent"
        else:
            body = {
                "requests": [
                    {"model": resource, "content": {"parts": [{"text": text}]}, **extra} for text in inputs
                ]
            }
            url = f"{base}/{resource}:batchEmbedContents"
        headers = {"content-type": "application/json", **up.extra_headers}
        if up.api_key:
            headers[up.auth_header] = f"{up.auth_scheme} {up.api_key}" if up.auth_scheme else up.api_key
        return HttpRequest("POST", url, headers, json_body(body), dropped=dropped_fields(req))

    def _parse_response(self, body: bytes, req: EmbeddingRequest, up: Upstream) -> EmbeddingResult:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_body(up, f"a body that is not JSON: {body[:200]!r}") from exc
        if error_object(payload) is not None:
            raise classify(0, {}, body, provider=up.provider, payload=payload)
        if not isinstance(payload, dict):
            raise bad_body(up, "an embeddings body that is not a JSON object")
        if isinstance(payload.get("embedding"), dict):
            raw = [payload["embedding"]]
        elif isinstance(payload.get("embeddings"), list):
            raw = payload["embeddings"]
        else:
            raise bad_body(up, "an embeddings body without `embedding` or `embeddings`")
        vectors = []
        for item in raw:
            if not isinstance(item, dict):
                raise bad_body(up, "an embedding that is not an object")
            vectors.append(normalised(float_vector(item.get("values"), up)))
        usage = None
        meta = payload.get("usageMetadata")
        if isinstance(meta, dict):
            n = meta.get("promptTokenCount")
            if isinstance(n, int) and not isinstance(n, bool):
                usage = Usage(input_tokens=n)
        return EmbeddingResult(vectors=vectors, model=up.model.removeprefix("models/"), usage=usage)

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return classify(status, headers, body, provider=up.provider)


ADAPTER: EmbeddingAdapter = GeminiEmbeddingsAdapter()

__all__ = ["ADAPTER", "MAX_BATCH", "GeminiEmbeddingsAdapter", "dropped_fields"]
