"""Embeddings over the OpenAI dialect: ``POST {base_url}/embeddings`` on OpenAI, DeepInfra
(``/v1/openai/embeddings``), Mistral and any OpenAI-compatible server (WIRE.md 1g).

Request: ``model``, ``input`` (the batch; token arrays only where ``Quirks.embedding_token_input``),
the output size under ``Quirks.embedding_dimensions_field`` (Mistral: ``output_dimension``),
``encoding_format: base64`` only when the client asked for base64 *and* the provider answers it
(``Quirks.embedding_base64``: the bytes then pass through untouched; else floats are asked for and
the gateway encodes them), ``user``, and the client's unmodelled fields as they came.

Response: ``data[].embedding`` (floats or a base64 string), ordered by ``index``; ``usage.prompt_tokens``
(VoyageAI-style bodies carry only ``total_tokens``); an ``{"error": ...}`` body in a 200 is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from fareway.adapters.base import json_body
from fareway.adapters.embeddings import EmbeddingAdapter, ScrubbingEmbeddingAdapter, bad_body, float_vector
from fareway.adapters.openai_chat import quirks_of
from fareway.adapters.openai_fields import classify_error
from fareway.errors import BadRequest, UpstreamError
from fareway.types import (
    Dialect,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResult,
    HttpRequest,
    Upstream,
    Usage,
    Vector,
)


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    n = raw.get("prompt_tokens")
    if not isinstance(n, int) or isinstance(n, bool):
        n = raw.get("total_tokens")  # VoyageAI: {"total_tokens": 3} only
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    return Usage(input_tokens=n)


class OpenAIEmbeddingsAdapter(ScrubbingEmbeddingAdapter):
    dialect: Dialect = "openai"

    def max_batch(self, up: Upstream) -> int:
        return quirks_of(up).embedding_max_batch

    def _build_request(
        self, req: EmbeddingRequest, inputs: Sequence[EmbeddingInput], up: Upstream
    ) -> HttpRequest:
        q = quirks_of(up)
        if not q.embedding_token_input and any(not isinstance(i, str) for i in inputs):
            raise BadRequest(
                f"{up.provider or 'this provider'} does not take token arrays as embedding input; send text",
                param="input",
            )
        body: dict[str, Any] = dict(req.extensions)
        body["model"] = up.model
        body["input"] = list(inputs)
        if req.dimensions is not None:
            body[q.embedding_dimensions_field] = req.dimensions
        if req.encoding_format == "base64" and q.embedding_base64:
            body["encoding_format"] = "base64"
        else:
            body.pop("encoding_format", None)  # floats, the API's default
        if req.user is not None:
            body["user"] = req.user
        headers = {"content-type": "application/json", "accept": "application/json"}
        if up.api_key:
            headers[up.auth_header.lower()] = (
                f"{up.auth_scheme} {up.api_key}" if up.auth_scheme else up.api_key
            )
        for k, v in up.extra_headers.items():
            headers[k.lower()] = v
        return HttpRequest("POST", f"{up.base_url.rstrip('/')}/embeddings", headers, json_body(body))

    def _parse_response(self, body: bytes, req: EmbeddingRequest, up: Upstream) -> EmbeddingResult:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_body(up, f"a body that is not JSON: {body[:200]!r}") from exc
        if not isinstance(payload, dict):
            raise bad_body(up, "an embeddings body that is not a JSON object")
        if payload.get("error") is not None:
            raise classify_error(200, {}, body, up, payload)
        data = payload.get("data")
        if not isinstance(data, list):
            raise bad_body(up, "an embeddings body without a `data` list")
        items: list[tuple[int, Vector]] = []
        for pos, item in enumerate(data):
            if not isinstance(item, dict):
                raise bad_body(up, "an embeddings `data` item that is not an object")
            index = item.get("index", pos)
            if not isinstance(index, int) or isinstance(index, bool):
                raise bad_body(up, f"an embedding index {index!r}")
            emb = item.get("embedding")
            if isinstance(emb, str):
                try:
                    vec = Vector.from_base64(emb)
                except ValueError as exc:
                    raise bad_body(up, f"an embedding that is not base64 float32 ({exc})") from exc
            else:
                vec = float_vector(emb, up)
            items.append((index, vec))
        items.sort(key=lambda t: t[0])
        if [i for i, _ in items] != list(range(len(items))):
            raise bad_body(up, "embedding indexes that are not 0..n-1")
        model = payload.get("model")
        return EmbeddingResult(
            vectors=[v for _, v in items],
            model=model if isinstance(model, str) else "",
            usage=_usage(payload.get("usage")),
        )

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return classify_error(status, headers, body, up)


ADAPTER: EmbeddingAdapter = OpenAIEmbeddingsAdapter()
"""The module instance (typed as the protocol so mypy checks conformance)."""

__all__ = ["ADAPTER", "OpenAIEmbeddingsAdapter"]
