"""The contract every outbound adapter (one per upstream dialect) fulfils.  Sans-IO: an adapter
builds the HTTP request and parses bytes; the transport (fareway.transport_base.UpstreamTransport) does the I/O.

Adapters import only ``types``, ``events``, ``errors``, ``sse``, ``scrub`` and ``providers``; never
``wire`` (inbound dialects) — the canonical model sits between the two.

Every adapter derives from :class:`ScrubbingAdapter`: whatever error leaves it
(``parse_error``, an error in disguise in ``parse_response``, an in-stream error from the stream
parser's ``feed``/``close``) has passed :func:`fareway.errors.scrub_error`, so no provider key
reaches a client, a log line or the ledger, whichever dialect and code path produced the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

from fareway.errors import UpstreamError, scrub_error
from fareway.events import StreamEvent
from fareway.scrub import KEYRING
from fareway.types import ChatRequest, ChatResponse, Dialect, HttpRequest, Upstream


def json_body(obj: Any) -> bytes:
    """``obj`` as the JSON body of an upstream request, in an allocation of its own size.
    ``orjson.dumps`` gives every result a buffer of about 4 KiB, however short the JSON (4,122
    bytes of RSS per 20-byte result, measured): a request body that waits for its connection (a
    burst of new calls) holds that much, and freed between long-lived objects it leaves the
    heap holed.  With 2,000 streams opened at once this copy took the gateway's peak RSS from
    43.1 to 39.7 KB a stream (benchmarks/bench_hotpath.py)."""
    return bytes(memoryview(orjson.dumps(obj)))


@runtime_checkable
class StreamParser(Protocol):
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Parse more bytes of the upstream body.  Raises UpstreamError for an error sent inside
        the stream (Groq ``event: error``, OpenRouter/Cerebras ``{"error":...}`` chunks,
        Anthropic ``event: error``)."""
        ...

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        """More of the upstream body, for a consumer that folds the events into one answer (a
        whole answer read as a stream): the events of :meth:`feed`, where a parser may join a
        run of deltas of one part into one delta and hold back an event cut by the read."""
        ...

    def close(self) -> list[StreamEvent]:
        """The upstream body ended.  Returns the events still buffered.  Raises
        UpstreamConnectionError if the stream ended before its terminal event (``[DONE]``,
        ``message_stop``, a Gemini finishReason): a truncated stream is an error, not a success."""
        ...


@runtime_checkable
class Adapter(Protocol):
    dialect: Dialect

    def build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        """The upstream HTTP request for ``req`` sent to ``up`` (``up.model`` is the upstream
        model id).  Always asks the upstream for usage when streaming.  Raises BadRequest for a
        feature this dialect cannot express (never drops it silently), naming the feature."""
        ...

    def parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        """A non-streamed 2xx body.  Raises UpstreamError if the body is an error in disguise."""
        ...

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        """Classify a non-2xx response: by status first, message text second; carry retry_after."""
        ...

    def stream_parser(self, up: Upstream) -> StreamParser: ...


class _ScrubbedParser:
    __slots__ = ("_inner", "_key")

    def __init__(self, inner: StreamParser, key: str | None) -> None:
        self._inner = inner
        self._key = key

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        try:
            return self._inner.feed(chunk)
        except UpstreamError as exc:
            scrub_error(exc, self._key)
            raise

    def feed_all(self, chunk: bytes) -> list[StreamEvent]:
        try:
            return self._inner.feed_all(chunk)
        except UpstreamError as exc:
            scrub_error(exc, self._key)
            raise

    def close(self) -> list[StreamEvent]:
        try:
            return self._inner.close()
        except UpstreamError as exc:
            scrub_error(exc, self._key)
            raise


class ScrubbingAdapter:
    """The base of every outbound adapter: the public :class:`Adapter` methods scrub whatever
    error leaves them (see the module docstring); a subclass implements ``_build_request``,
    ``_parse_response``, ``_parse_error`` and ``_stream_parser``."""

    dialect: Dialect

    def build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        if up.api_key and up.api_key not in KEYRING:
            KEYRING.add(up.api_key)
        return self._build_request(req, up)

    def parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        try:
            return self._parse_response(body, up)
        except UpstreamError as exc:
            scrub_error(exc, up.api_key)
            raise

    def parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        return scrub_error(self._parse_error(status, headers, body, up), up.api_key)

    def stream_parser(self, up: Upstream) -> StreamParser:
        return _ScrubbedParser(self._stream_parser(up), up.api_key)

    # ------------------------------------------------------------ for subclasses

    def _build_request(self, req: ChatRequest, up: Upstream) -> HttpRequest:
        raise NotImplementedError

    def _parse_response(self, body: bytes, up: Upstream) -> ChatResponse:
        raise NotImplementedError

    def _parse_error(
        self, status: int, headers: Mapping[str, str], body: bytes, up: Upstream
    ) -> UpstreamError:
        raise NotImplementedError

    def _stream_parser(self, up: Upstream) -> StreamParser:
        raise NotImplementedError
