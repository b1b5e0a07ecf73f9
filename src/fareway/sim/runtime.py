"""The request lifecycle shared by every dialect: auth, parse, faults, latency, render, counters.

A dialect (``openai_dialect``, ``anthropic_dialect``, ``gemini_dialect``) subclasses :class:`Dialect`
and only knows its wire shapes; :func:`handle` runs one call through the common steps.

Disconnects: the server runs with aiohttp's ``handler_cancellation``, so a client that goes away
cancels the handler wherever it waits (a latency sleep, a stall, a paced write); a write into a
closed socket raises instead.  Both are counted as ``disconnects`` unless the response had already
been fully written or the simulator closed the connection itself (``reset``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from fareway.sim.content import Ask, Reply, content_seed, json_pieces, plan_replies, sign
from fareway.sim.faults import HTTP_KINDS, Fault, FaultTable, Stats
from fareway.sim.judge import verdict_text
from fareway.sim.profiles import SimConfig

_NO_RNG = random.Random(0)
"""Non-streaming renderers draw nothing; seeding a Random per request costs more than the reply."""

Frame = tuple[bytes, int]
"""One SSE frame and the number of output tokens it carries (0 for preamble/trailer frames)."""


class BadRequest(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        etype: str = "invalid_request_error",
        code: Any = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype
        self.code = code
        self.param = param


@dataclass(slots=True)
class Parsed:
    model: str
    stream: bool
    ask: Ask
    opts: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Ctx:
    """Everything a renderer needs for one response."""

    provider: str
    model: str
    stream: bool
    reply: Reply
    """The first choice (the only one unless the request asked for several)."""
    prompt_tokens: int
    opts: dict[str, Any]
    created: int
    ttft: float
    rng: random.Random
    replies: list[Reply] = field(default_factory=list)
    """Every choice, ``reply`` first."""

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.replies) if self.replies else self.reply.output_tokens


class SimState:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = FaultTable(config.seed)
        self.stats = Stats()
        self._rngs: dict[str, random.Random] = {}
        self.prompt_cache: dict[bytes, float] = {}
        """Anthropic prompt-cache prefixes (hash → expiry, monotonic seconds)."""
        for f in config.faults:
            self.faults.arm(Fault.from_obj(f))

    def latency_rng(self, provider: str) -> random.Random:
        r = self._rngs.get(provider)
        if r is None:
            r = self._rngs[provider] = random.Random(f"{self.config.seed}:{provider}")
        return r

    def reseed(self) -> None:
        self._rngs.clear()
        self.faults.reseed()


class Dialect:
    """Wire shapes of one API family.  ``provider`` selects per-provider flavour inside a dialect."""

    json_headers: dict[str, str] = {}

    def stream_type(self, parsed: Parsed) -> tuple[str, str | None]:
        """(content type, charset) of a streamed response."""
        return "text/event-stream", "utf-8"

    def auth_ok(self, request: web.Request, provider: str) -> bool:
        raise NotImplementedError

    def parse(self, data: Any, provider: str, request: web.Request) -> Parsed:
        raise NotImplementedError

    def error_response(
        self,
        provider: str,
        status: int,
        message: str,
        etype: str | None = None,
        code: Any = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> web.Response:
        raise NotImplementedError

    def fault_response(self, provider: str, fault: Fault) -> web.Response:
        raise NotImplementedError

    def render_json(self, ctx: Ctx) -> bytes:
        raise NotImplementedError

    def render_frames(self, ctx: Ctx) -> list[Frame]:
        raise NotImplementedError

    def stream_error_frames(self, ctx: Ctx, fault: Fault) -> bytes:
        raise NotImplementedError

    def success_headers(self, provider: str) -> dict[str, str]:
        return self.json_headers

    def keepalive_for(self, provider: str) -> bytes | None:
        return None


def _cut_index(frames: list[Frame], n_content: int) -> int:
    """Index of the frame that would deliver content chunk ``n_content + 1`` (or len)."""
    seen = 0
    for i, (_, toks) in enumerate(frames):
        if toks:
            if seen == n_content:
                return i
            seen += 1
    return len(frames)


async def _forever() -> None:
    await asyncio.Event().wait()


async def _write_frames(resp: web.StreamResponse, frames: list[Frame], tps: float) -> None:
    if not frames:
        return
    if math.isinf(tps) or tps <= 0:
        await resp.write(b"".join(f for f, _ in frames))
        return
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent_tokens = 0
    buf: list[bytes] = []
    for data, toks in frames:
        if toks:
            sent_tokens += toks
            wait = t0 + sent_tokens / tps - loop.time()
            if wait > 0.001:
                if buf:
                    await resp.write(b"".join(buf))
                    buf.clear()
                await asyncio.sleep(wait)
        buf.append(data)
    if buf:
        await resp.write(b"".join(buf))


class _Outcome:
    __slots__ = ("done", "server_closed")

    def __init__(self) -> None:
        self.done = False
        self.server_closed = False


def presented_key(request: web.Request) -> str:
    """The API key a request carries (Bearer, x-api-key, x-goog-api-key or ?key=), or ""."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[7:].strip()
    return (
        request.headers.get("x-api-key")
        or request.headers.get("x-goog-api-key")
        or request.query.get("key")
        or ""
    )


def key_sha(request: web.Request, counters: Any) -> str:
    """The hex SHA-256 of the request's API key, counted in ``counters.keys`` (by 16 digits)."""
    digest = hashlib.sha256(presented_key(request).encode("utf-8", "surrogateescape")).hexdigest()
    counters.keys[digest[:16]] = counters.keys.get(digest[:16], 0) + 1
    return digest


async def handle(
    state: SimState, dialect: Dialect, request: web.Request, provider: str
) -> web.StreamResponse:
    counters = state.stats.of(provider)
    counters.requests += 1
    sha = key_sha(request, counters)
    if not dialect.auth_ok(request, provider):
        return dialect.error_response(provider, 401, "missing or invalid API key", "authentication_error")
    raw = await request.read()
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise BadRequest(400, "the request body must be a JSON object")
        parsed = dialect.parse(data, provider, request)
    except orjson.JSONDecodeError as e:
        return dialect.error_response(provider, 400, f"malformed JSON in the request body: {e}")
    except BadRequest as e:
        return dialect.error_response(provider, e.status, e.message, e.etype, e.code, param=e.param)

    counters.in_flight += 1
    out = _Outcome()
    try:
        return await _serve(state, dialect, request, provider, parsed, out, sha)
    except asyncio.CancelledError:
        if not out.done and not out.server_closed:
            counters.disconnects += 1
        raise
    except (ConnectionResetError, ClientConnectionResetError):
        if not out.done and not out.server_closed:
            counters.disconnects += 1
        raise
    finally:
        counters.in_flight -= 1


async def _serve(
    state: SimState,
    dialect: Dialect,
    request: web.Request,
    provider: str,
    parsed: Parsed,
    out: _Outcome,
    sha: str = "",
) -> web.StreamResponse:
    counters = state.stats.of(provider)
    config = state.config
    profile = config.profile(provider, parsed.model)
    fault = state.faults.take(provider, parsed.model, sha)
    if fault is not None:
        counters.errors_injected += 1
        kind = fault.kind
        if kind in HTTP_KINDS or (kind == "stream_error" and not parsed.stream):
            return dialect.fault_response(provider, fault)
        if kind == "stall" or (kind == "stall_after_first" and not parsed.stream):
            await _forever()
        if kind == "reset" and not parsed.stream:
            out.server_closed = True
            if request.transport is not None:
                request.transport.close()
            await _forever()

    rng = state.latency_rng(provider)
    ttft = 0.0 if profile.ttft.is_zero else profile.ttft.draw(rng)
    judge = config.judges.get(parsed.model)
    if judge is not None and parsed.ask.output == "json":
        text = verdict_text(judge, parsed.ask.hint, parsed.ask.schema, config.seed)
        replies = [Reply(pieces=json_pieces(text), seed=content_seed(config.seed, parsed.ask.key))]
    else:
        replies = [
            sign(r, parsed.ask, profile.signature)
            for r in plan_replies(parsed.ask, config.seed, profile.output_tokens)
        ]
    reply = replies[0]
    ctx = Ctx(
        provider=provider,
        model=parsed.model,
        stream=parsed.stream,
        reply=reply,
        prompt_tokens=parsed.ask.prompt_tokens,
        opts=parsed.opts,
        created=int(time.time()),
        ttft=ttft,
        rng=random.Random(reply.seed) if parsed.stream else _NO_RNG,
        replies=replies,
    )
    tps = profile.tokens_per_s

    if not parsed.stream:
        delay = ttft
        if not math.isinf(tps) and tps > 0:
            delay += ctx.output_tokens / tps
        if delay > 0:
            await asyncio.sleep(delay)
        body = dialect.render_json(ctx)
        out.done = True
        counters.completed += 1
        return web.Response(body=body, status=200, headers=dialect.success_headers(provider))

    headers = {k: v for k, v in dialect.success_headers(provider).items() if k != "Content-Type"}
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type, charset = dialect.stream_type(parsed)
    if charset:
        resp.charset = charset
    await resp.prepare(request)
    keepalive = dialect.keepalive_for(provider)
    if keepalive is not None:
        await resp.write(keepalive)
        remaining = ttft
        while remaining > 0:
            step = min(remaining, 0.5)
            await asyncio.sleep(step)
            remaining -= step
            if remaining > 0:
                await resp.write(keepalive)
    elif ttft > 0:
        await asyncio.sleep(ttft)

    frames = dialect.render_frames(ctx)
    if fault is not None:
        kind = fault.kind
        if kind == "stall_after_first":
            cut = _cut_index(frames, 1)
            await _write_frames(resp, frames[:cut], tps)
            await _forever()
        cut = _cut_index(frames, max(0, fault.after_chunks))
        await _write_frames(resp, frames[:cut], tps)
        if kind == "reset":
            out.server_closed = True
            if request.transport is not None:
                request.transport.close()
            await _forever()
        if kind == "stream_error":
            await resp.write(dialect.stream_error_frames(ctx, fault))
            out.done = True
            await _finish(resp)
            return resp
    await _write_frames(resp, frames, tps)
    out.done = True
    counters.completed += 1
    await _finish(resp)
    return resp


async def _finish(resp: web.StreamResponse) -> None:
    try:
        await resp.write_eof()
    except (ConnectionResetError, ClientConnectionResetError):
        pass
