"""A hit answered in the caller's dialect through the same wire encoders a live call uses.

Non-streamed: the entry's folded response, ``encode_response``.  Streamed: the entry's events, one
by one, through the dialect's ``stream_encoder`` — so an OpenAI client gets ``chat.completion.chunk``
events (role first, ``reasoning_content``, tool-call fragments, the usage chunk when it asked for
``stream_options.include_usage``) and an Anthropic client the ``message_start ... message_stop``
sequence with thinking and signature deltas, each original delta its own SSE event.  The whole
replay is encoded at once (all of it is known); up to :data:`WRITE_BYTES` it is sent as one
``text/event-stream`` body, a longer one in writes of about that size that end at event boundaries.
The client sees the same SSE events either way; the gateway makes fewer writes.

A replay gets a fresh response id (a ``chatcmpl-`` id, or ``msg_`` + the request id) and costs 0
(``usage.cost`` when the client asked for usage, ``x-fareway-cost-usd``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from fareway.cache.entry import Entry
from fareway.events import ResponseStart, StreamEvent
from fareway.pipeline.context import CallContext, Reply
from fareway.wire.base import ResponseMeta, StreamEncoder

WRITE_BYTES = 32768


def replay(ctx: CallContext, entry: Entry, headers: list[tuple[str, str]]) -> Reply:
    req = ctx.req
    assert req is not None
    meta = ResponseMeta(ctx.request_id, provider=entry.provider, cost_usd="0")
    if not req.stream:
        resp = replace(entry.response(), id="")
        return Reply(200, headers, ctx.wire.encode_response(resp, req, meta))
    data = _encode(ctx.wire.stream_encoder(req, meta), entry.events, meta)
    sse = "text/event-stream"
    if len(data) <= WRITE_BYTES:
        # all of it is known: one write, the same SSE events (no stream machinery per hit)
        return Reply(200, [*headers, *_SSE_HEADERS], data, content_type=sse)
    return Reply(200, headers, stream=_batches(data), content_type=sse)


_SSE_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))


def _encode(enc: StreamEncoder, events: list[StreamEvent], meta: ResponseMeta) -> bytes:
    out = [enc.start()]
    for e in events:
        if isinstance(e, ResponseStart):
            e = ResponseStart("", e.model, e.created, e.extensions)
        out.append(enc.encode(e))
    out.append(enc.close(meta))
    return b"".join(out)


async def _batches(data: bytes) -> AsyncIterator[bytes]:
    """``data`` in writes of about WRITE_BYTES, each ending at an SSE event boundary."""
    start, n = 0, len(data)
    while start < n:
        cut = data.find(b"\n\n", start + WRITE_BYTES)
        end = n if cut == -1 else cut + 2
        yield data[start:end]
        start = end


__all__ = ["WRITE_BYTES", "replay"]
