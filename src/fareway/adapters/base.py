"""The contract every outbound adapter (one per upstream dialect) fulfils.  Sans-IO: an adapter
builds the HTTP request and parses bytes; the transport (fareway.transport_base.UpstreamTransport) does the I/O.

Adapters import only ``types``, ``events``, ``errors``, ``sse`` and ``providers.quirks``; never
``wire`` (inbound dialects) — the canonical model sits between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from fareway.errors import UpstreamError
from fareway.events import StreamEvent
from fareway.types import ChatRequest, ChatResponse, Dialect, HttpRequest, Upstream


@runtime_checkable
class StreamParser(Protocol):
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Parse more bytes of the upstream body.  Raises UpstreamError for an error sent inside
        the stream (Groq ``event: error``, OpenRouter/Cerebras ``{"error":...}`` chunks,
        Anthropic ``event: error``)."""
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
