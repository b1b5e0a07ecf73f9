"""The inbound OpenAI embeddings dialect: ``POST /v1/embeddings`` bytes <-> EmbeddingRequest /
EmbeddingResult (openai 3.57.0 ``types/embedding_create_params.py``, ``create_embedding_response.py``).

Request: ``model`` (string), ``input`` (a string, a list of strings, one token array, or a list of
token arrays; at most :data:`MAX_INPUTS` items, none empty), ``dimensions`` (a positive integer),
``encoding_format`` (``float``, the default, or ``base64``: each vector as standard base64 of its
little-endian float32 values, as OpenAI sends it), ``user``.  Any other top-level field is kept in
``extensions`` and passed through to OpenAI-compatible upstreams.  Every violation is a 400 in
OpenAI's error shape with ``param`` naming the field.

Response::

    {"object": "list", "model": ..., "data": [{"object": "embedding", "index": i, "embedding": ...}],
     "usage": {"prompt_tokens": n, "total_tokens": n, "cost": <USD, when known>}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fareway.errors import BadRequest
from fareway.types import EmbeddingInput, EmbeddingRequest, EmbeddingResult, EncodingFormat, Usage

MAX_INPUTS = 2048
"""OpenAI's limit on the items of one request (its docs: "any array must be 2048 dimensions or less")."""

MAX_TOKEN_ID = 2**31 - 1

_KNOWN = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param)


def _token_array(value: list[Any], where: str) -> list[int]:
    if not value:
        raise _bad(f"{where} is an empty token array; each input must hold at least one token.", "input")
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int):
            raise _bad(
                f"{where} mixes token ids with {type(t).__name__} values; a token array holds integers only.",
                "input",
            )
        if not 0 <= t <= MAX_TOKEN_ID:
            raise _bad(f"{where} holds the token id {t}, outside 0..{MAX_TOKEN_ID}.", "input")
    return value


def parse_inputs(value: Any) -> list[EmbeddingInput]:
    """``input`` as the API takes it -> one item per vector to make (raises BadRequest)."""
    if value is None:
        raise _bad("Missing required parameter: 'input'.", "input")
    if isinstance(value, str):
        if not value:
            raise _bad("'input' must not be an empty string.", "input")
        return [value]
    if not isinstance(value, list):
        raise _bad(
            f"'input' must be a string, a list of strings or a list of token arrays, not {type(value).__name__}.",
            "input",
        )
    if not value:
        raise _bad("'input' must not be an empty list.", "input")
    if len(value) > MAX_INPUTS:
        raise _bad(f"'input' has {len(value)} items; at most {MAX_INPUTS} are allowed per request.", "input")
    first = value[0]
    if isinstance(first, int) and not isinstance(first, bool):
        return [_token_array(value, "'input'")]
    out: list[EmbeddingInput] = []
    if isinstance(first, str):
        for i, v in enumerate(value):
            if not isinstance(v, str):
                raise _bad(
                    f"'input[{i}]' is {type(v).__name__}; a list of strings holds strings only.", "input"
                )
            if not v:
                raise _bad(f"'input[{i}]' is an empty string; every input must hold text.", "input")
            out.append(v)
        return out
    if isinstance(first, list):
        for i, v in enumerate(value):
            if not isinstance(v, list):
                raise _bad(
                    f"'input[{i}]' is {type(v).__name__}; a list of token arrays holds arrays only.", "input"
                )
            out.append(_token_array(v, f"'input[{i}]'"))
        return out
    raise _bad(
        f"'input[0]' is {type(first).__name__}; items must be strings or token arrays (lists of integers).",
        "input",
    )


def parse_request(body: bytes, headers: Mapping[str, str] | None = None) -> EmbeddingRequest:
    """Client bytes -> EmbeddingRequest.  Raises BadRequest (400) naming the field at fault."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = data.get("model")
    if model is None or model == "":
        raise _bad("You must provide a model parameter.", "model")
    if not isinstance(model, str):
        raise _bad(f"'model' must be a string, not {type(model).__name__}.", "model")
    inputs = parse_inputs(data.get("input"))
    dimensions = data.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise _bad(f"'dimensions' must be a positive integer, not {dimensions!r}.", "dimensions")
    fmt = data.get("encoding_format")
    encoding: EncodingFormat
    if fmt is None or fmt == "float":
        encoding = "float"
    elif fmt == "base64":
        encoding = "base64"
    else:
        raise _bad(f"'encoding_format' must be 'float' or 'base64', not {fmt!r}.", "encoding_format")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad(f"'user' must be a string, not {type(user).__name__}.", "user")
    extensions = {k: v for k, v in data.items() if k not in _KNOWN}
    return EmbeddingRequest(
        model=model,
        inputs=inputs,
        dimensions=dimensions,
        encoding_format=encoding,
        user=user,
        extensions=extensions,
    )


def usage_object(usage: Usage | None, cost_usd: str | None) -> dict[str, Any]:
    n = usage.input_tokens if usage is not None else 0
    out: dict[str, Any] = {"prompt_tokens": n, "total_tokens": n}
    if cost_usd is not None:
        out["cost"] = float(cost_usd)
    return out


def encode_response(
    result: EmbeddingResult, req: EmbeddingRequest, model: str, cost_usd: str | None
) -> bytes:
    """The OpenAI response body, each vector in the encoding the client asked for."""
    if req.encoding_format == "base64":
        data = [
            {"object": "embedding", "index": i, "embedding": v.base64()} for i, v in enumerate(result.vectors)
        ]
    else:
        data = [
            {"object": "embedding", "index": i, "embedding": v.floats()} for i, v in enumerate(result.vectors)
        ]
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": result.model or model,
            "usage": usage_object(result.usage, cost_usd),
        }
    )


__all__ = ["MAX_INPUTS", "encode_response", "parse_inputs", "parse_request", "usage_object"]
