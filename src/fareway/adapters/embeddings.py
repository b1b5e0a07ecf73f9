"""The contract of an outbound embeddings adapter (one per upstream dialect), sans-IO as the chat
adapters (``adapters.base``): it builds the HTTP request for a batch of inputs and parses bytes;
the executor (``router.embed_executor``) sends them.

Implementations: ``adapters.openai_embeddings`` (OpenAI and every OpenAI-compatible provider:
DeepInfra, Mistral, a self-hosted server) and ``adapters.gemini_embeddings`` (native Gemini
``:embedContent`` / ``:batchEmbedContents``).  Anthropic has no embeddings API.

Every error that leaves an adapter has passed :func:`fareway.errors.scrub_error` (the
:class:`ScrubbingEmbeddingAdapter` base does it), as for chat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from fareway.errors import UpstreamError, UpstreamServerError, scrub_error
from fareway.scrub import KEYRING
from fareway.types import (
    Dialect,
    EmbeddingInput,
    EmbeddingRequest,
    EmbeddingResult,
    HttpRequest,
    Upstream,
    Vector,
)


@runtime_checkable
class EmbeddingAdapter(Protocol):
    dialect: Dialect

    def max_batch(self, up: Upstream) -> int:
        """The most inputs one upstream request may carry (the executor splits longer lists)."""
        ...

    def build_request(
        self, req: EmbeddingRequest, inputs: Sequence[EmbeddingInput], up: Upstream
    ) -> HttpRequest:
        """The upstream request embedding ``inputs`` (a slice of ``req.inputs``).  Raises
        BadRequest for what this upstream cannot take (token arrays where only text is accepted),
        naming it; never drops it silently."""
        ...

    def parse_response(self, body: bytes, req: EmbeddingRequest, n: int, up: Upstream) -> EmbeddingResult:
        """A 2xx body holding ``n`` vectors.  Raises UpstreamError for an error in disguise or a
        body that does not hold exactly ``n`` vectors."""
        ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        """Classify a non-2xx response: by status first, message text second; carry retry_after."""
        ...


class ScrubbingEmbeddingAdapter:
    """The base of the embeddings adapters: the public methods scrub every error that leaves them;
    a subclass implements ``_build_request``, ``_parse_response`` and ``_parse_error``."""

    dialect: Dialect

    def max_batch(self, up: Upstream) -> int:
        return 2048

    def build_request(
        self, req: EmbeddingRequest, inputs: Sequence[EmbeddingInput], up: Upstream
    ) -> HttpRequest:
        if up.api_key and up.api_key not in KEYRING:
            KEYRING.add(up.api_key)
        return self._build_request(req, inputs, up)

    def parse_response(self, body: bytes, req: EmbeddingRequest, n: int, up: Upstream) -> EmbeddingResult:
        try:
            result = self._parse_response(body, req, up)
            if len(result.vectors) != n:
                raise UpstreamServerError(
                    f"{up.provider or 'the upstream'} returned {len(result.vectors)} embeddings for {n} inputs",
                    provider=up.provider,
                )
            return result
        except UpstreamError as exc:
            scrub_error(exc, up.api_key)
            raise

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return scrub_error(self._parse_error(status, headers, body, up), up.api_key)

    # ------------------------------------------------------------ for subclasses

    def _build_request(
        self, req: EmbeddingRequest, inputs: Sequence[EmbeddingInput], up: Upstream
    ) -> HttpRequest:
        raise NotImplementedError

    def _parse_response(self, body: bytes, req: EmbeddingRequest, up: Upstream) -> EmbeddingResult:
        raise NotImplementedError

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        raise NotImplementedError


def bad_body(up: Upstream, what: str) -> UpstreamServerError:
    """An upstream 2xx body that is not an embeddings answer (a fallback trigger)."""
    return UpstreamServerError(f"{up.provider or 'the upstream'} sent {what}", provider=up.provider)


def float_vector(values: object, up: Upstream) -> Vector:
    """A JSON array of numbers as a Vector (raises UpstreamServerError for anything else)."""
    if not isinstance(values, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in values
    ):
        raise bad_body(up, "an embedding that is not an array of numbers")
    return Vector(values)  # kept exactly as parsed (ints are numbers too)


def normalised(v: Vector) -> Vector:
    """``v`` scaled to unit length (unchanged when it already is, or is all zeros)."""
    values = v.floats()
    norm = math.sqrt(math.fsum(x * x for x in values))
    if norm == 0.0 or abs(norm - 1.0) < 1e-6:
        return v
    return Vector([x / norm for x in values])


__all__ = ["EmbeddingAdapter", "ScrubbingEmbeddingAdapter", "bad_body", "float_vector", "normalised"]
