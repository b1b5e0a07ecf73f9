"""The contract every inbound dialect (what clients speak) fulfils.

Wire modules import only ``types``, ``events``, ``errors`` and ``sse``; never ``adapters``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fareway.errors import FarewayError
from fareway.events import StreamEvent
from fareway.types import ChatRequest, ChatResponse


@dataclass(slots=True)
class ResponseMeta:
    """What the gateway adds to a response beyond the upstream's answer."""

    request_id: str
    provider: str = ""
    cost_usd: str | None = None
    """Decimal cost as a string, or None when unknown (never "0" for unknown)."""
    extra_headers: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class StreamEncoder(Protocol):
    def start(self) -> bytes:
        """Bytes to send before the first event (may be b"")."""
        ...

    def encode(self, event: StreamEvent) -> bytes:
        """Bytes for one canonical event (may be b"" when the dialect shows nothing for it or
        must hold it back, as Anthropic holds Finish until usage is final)."""
        ...

    def error(self, exc: FarewayError) -> bytes:
        """An in-stream error in this dialect after the commit point; open parts are closed
        first.  The stream ends after it (close() is not called)."""
        ...

    def close(self, meta: ResponseMeta) -> bytes:
        """The end of a successful stream: held-back finish, usage (with cost when the client
        asked for usage), and the terminator (``data: [DONE]`` / ``message_stop``)."""
        ...


@runtime_checkable
class WireDialect(Protocol):
    name: str

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        """Raises BadRequest (malformed JSON, wrong types, missing fields) with ``param`` set."""
        ...

    def encode_response(self, resp: ChatResponse, req: ChatRequest, meta: ResponseMeta) -> bytes: ...

    def stream_encoder(self, req: ChatRequest, meta: ResponseMeta) -> StreamEncoder: ...

    def encode_error(self, exc: FarewayError) -> tuple[int, bytes]:
        """(status, body) for an error before any bytes were sent."""
        ...
