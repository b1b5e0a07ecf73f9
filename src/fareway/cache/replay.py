"""A hit answered in the caller's dialect through the same wire encoders a live call uses.

Non-streamed: the entry's folded response, ``encode_response``.  Streamed: the entry's events, one
by one, through the dialect's ``stream_encoder`` — so an OpenAI client gets ``chat.completion.chunk``
events (role first, ``reasoning_content``, tool-call fragments, the usage chunk when it asked for
``stream_options.include_usage``) and an Anthropic client the ``message_start ... message_stop``
sequence with thinking and signature deltas, each original delta its own SSE event.  The events are
written in batches of about :data:`WRITE_BYTES` (the client sees the same events; the gateway makes
fewer writes).

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

WRITE_BYTES = 8192


def replay(ctx: CallContext, entry: Entry, headers: list[tuple[str, str]]) -> Reply:
    req = ctx.req
    assert req is not None
    meta = ResponseMeta(ctx.request_id, provider=entry.provider, cost_usd="0")
    if not req.stream:
        resp = replace(entry.response(), id="")
        return Reply(200, headers, ctx.wire.encode_response(resp, req, meta))
    enc = ctx.wire.stream_encoder(req, meta)
    return Reply(200, headers, stream=_stream(enc, entry.events, meta), content_type="text/event-stream")


async def _stream(enc: StreamEncoder, events: list[StreamEvent], meta: ResponseMeta) -> AsyncIterator[bytes]:
    buf: list[bytes] = []
    size = 0
    first = enc.start()
    if first:
        buf.append(first)
        size = len(first)
    for e in events:
        if isinstance(e, ResponseStart):
            e = ResponseStart("", e.model, e.created, e.extensions)
        chunk = enc.encode(e)
        if chunk:
            buf.append(chunk)
            size += len(chunk)
            if size >= WRITE_BYTES:
                yield b"".join(buf)
                buf, size = [], 0
    buf.append(enc.close(meta))
    yield b"".join(buf)


__all__ = ["WRITE_BYTES", "replay"]
