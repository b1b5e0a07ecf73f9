"""The gateway: one object that owns the long-lived parts (transport, executor, keys, ledger,
stats) and runs one call through its stages (pipeline.stages)::

    admit -> parse -> resolve -> lookup -> execute -> encode -> account -> after

Server routes are thin: they read the body, authenticate, and hand over to :meth:`Gateway.chat`.
Accounting happens in one place, :meth:`Gateway._account`, from the call's context, for every
outcome: success, refusal, upstream failure, client cancel, in-stream error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson

from fareway.adapters.base import Adapter
from fareway.config import Config
from fareway.errors import FarewayError, NoRouteSucceeded, StreamInterrupted
from fareway.events import Finish, PartDelta, StreamEvent, UsageUpdate
from fareway.keys.store import KeyStore, Principal
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.checkpoint import stream_snapshot
from fareway.pipeline.context import CallContext, Reply
from fareway.pipeline.embeddings import EmbeddingService
from fareway.pipeline.resolve import Resolver
from fareway.pipeline.stages import (
    Admission,
    Admit,
    AfterHook,
    ArmPicker,
    Parse,
    Resolve,
    Stage,
    StreamWrapper,
)
from fareway.router.executor import Executor
from fareway.router.health import HealthView
from fareway.transport_base import UpstreamTransport
from fareway.wire.base import ResponseMeta, StreamEncoder, WireDialect

log = logging.getLogger("fareway")


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        keys: KeyStore,
        transport: UpstreamTransport,
        adapters: Mapping[str, Adapter],
        resolver: Resolver,
        executor: Executor,
        accounting: Accounting,
        stats: HealthView | None = None,
        admissions: list[Admission] | None = None,
    ) -> None:
        self.config = config
        self.keys = keys
        self.transport = transport
        self.adapters = adapters
        self.resolver = resolver
        self.executor = executor
        self.accounting = accounting
        self.stats = stats
        self.started = time.time()
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_close: list[Callable[[], Awaitable[None]]] = []
        self.parts: dict[str, Any] = {}
        """Long-lived parts features attach for their routes (``experiments``: the manager)."""
        self.admit = Admit(list(admissions or []))
        self.prepare: list[Stage] = []
        """Stages between parse and resolve that complete the request (stored conversation state)."""
        self.lookups: list[Stage] = []
        """Stages between resolve and execute that may answer early (the response cache)."""
        self.wrappers: list[StreamWrapper] = []
        self.after_hooks: list[AfterHook] = []
        self.embeddings: EmbeddingService | None = None
        """``/v1/embeddings`` and the in-process Embedder (pipeline.embeddings); the factory wires it."""
        self.pickers: list[ArmPicker] = []
        """Consulted by resolve: another model name to route a call to (an experiment's arm)."""
        self._parse = Parse()
        self._resolve = Resolve(resolver, self.pickers)
        self._after_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.transport.start()
        await self.accounting.start()
        for hook in self.on_start:
            await hook()

    async def close(self) -> None:
        for hook in self.on_close:
            await hook()
        if self._after_tasks:
            await asyncio.gather(*self._after_tasks, return_exceptions=True)
        await self.transport.close()
        await self.accounting.close()

    async def readiness(self) -> dict[str, str]:
        checks = {"config": "ok"}
        try:
            await asyncio.to_thread(self.keys.ping)
            checks["state_db"] = "ok"
        except Exception as exc:  # report any storage failure as not-ready, never crash the probe
            checks["state_db"] = f"error: {type(exc).__name__}"
        checks.update(await self.accounting.readiness())
        return checks

    async def count_tokens(self, wire: Any, body: bytes, headers: Mapping[str, str]) -> Reply:
        """Anthropic's count_tokens: an offline estimate (o200k BPE plus per-message overhead)."""
        from fareway.tokens import count_tokens

        req = wire.count_tokens_request(body, headers)
        n = await asyncio.to_thread(count_tokens, req)
        return Reply(200, [("x-fareway-estimated", "true")], orjson.dumps({"input_tokens": n}))

    # ------------------------------------------------------------------ calls

    @property
    def stages(self) -> list[Stage]:
        """The stages before execution, in order."""
        return [self._parse, *self.prepare, self._resolve, self.admit, *self.lookups]

    def chat(
        self,
        wire: WireDialect,
        body: bytes,
        headers: Mapping[str, str],
        principal: Principal,
        request_id: str,
    ) -> Awaitable[Reply]:
        """Run one chat call (await what this gives).  Raises FarewayError before anything was
        sent to the client (the server encodes it in the client's dialect); after the commit point
        errors are in-stream.  Every path through here leaves exactly one ledger record.  A plain
        function giving :meth:`run`'s coroutine: no coroutine of its own for every suspension of
        the call to pass through."""
        return self.run(CallContext(request_id, principal, wire, body, headers))

    async def run(self, ctx: CallContext) -> Reply:
        try:
            for stage in self.stages:
                early = await stage.run(ctx)
                if early is not None:
                    if ctx.status == 0:
                        ctx.succeeded()
                    self._account(ctx)
                    if ctx.reply_headers:  # those the early reply does not carry already
                        have = {name for name, _ in early.headers}
                        early.headers = [
                            *early.headers,
                            *((k, v) for k, v in ctx.reply_headers.items() if k not in have),
                        ]
                    return early
            assert ctx.req is not None and ctx.decision is not None
            req = ctx.req
            ctx.committed = await self.executor.run(ctx.decision.route, req, ctx.attempts)
            if not req.stream:
                return await self._whole(ctx)
        except FarewayError as exc:
            ctx.fail(exc)
            self._account(ctx)
            raise
        except asyncio.CancelledError:
            # the client went away (the server cancels the call): accounted as its cancel
            if ctx.committed is not None:
                ctx.committed.abort()
            ctx.cancelled()
            self._account(ctx)
            raise
        except Exception:
            # a bug: the client gets a 500 from the server; the call is still accounted
            if ctx.committed is not None:
                ctx.committed.abort()
            ctx.fail(FarewayError("internal error"))
            self._account(ctx)
            raise
        meta = ResponseMeta(ctx.request_id, provider=ctx.committed.target.upstream.provider)
        checkpoint = getattr(self.accounting.ledger, "checkpoint", None)
        if checkpoint is not None:  # the commit point: a killed gateway still leaves this call's row
            checkpoint(ctx.request_id, stream_snapshot(self.accounting, ctx))
        return Reply(
            200,
            self._headers(ctx),
            stream=CallStream(self, ctx, meta),
            content_type="text/event-stream",
        )

    async def _whole(self, ctx: CallContext) -> Reply:
        """A non-streamed answer: the committed attempt's response, or its stream folded."""
        committed, req = ctx.committed, ctx.req
        assert committed is not None and req is not None
        if self.wrappers:
            source: AsyncIterator[StreamEvent] = committed.events()
            events = source
            for w in self.wrappers:
                events = w.wrap(ctx, events)
            if events is not source:  # a wrapper that passes a call by (returns it as is) costs nothing
                async for _ in events:
                    pass
        try:
            resp = await committed.collect()
        except StreamInterrupted as exc:
            # nothing was sent to the client yet: it gets the upstream's error, not half an answer
            raise exc.cause from exc
        ctx.response = resp
        ctx.usage = resp.usage
        ctx.succeeded()
        cost = self._account(ctx)
        meta = ResponseMeta(ctx.request_id, provider=committed.target.upstream.provider, cost_usd=cost)
        hdrs = self._headers(ctx)
        hdrs.append(("x-fareway-cost-usd", cost if cost is not None else "unknown"))
        return Reply(200, hdrs, ctx.wire.encode_response(resp, req, meta))

    def _headers(self, ctx: CallContext) -> list[tuple[str, str]]:
        committed = ctx.committed
        assert committed is not None
        target = committed.target
        hdrs = [
            ("x-fareway-provider", target.upstream.provider),
            ("x-fareway-model", target.upstream.model),
            ("x-fareway-route", self._route_header(ctx)),
        ]
        if committed.log.dropped:
            hdrs.append(("x-fareway-dropped-params", ",".join(committed.log.dropped)))
        if self.config.demo:
            hdrs.append(("x-fareway-simulated", "true"))
        if ctx.reply_headers:
            hdrs += ctx.reply_headers.items()
        return hdrs

    def _route_header(self, ctx: CallContext) -> str:
        attempts = ctx.attempts.attempts
        if len(attempts) == 1:  # most calls: the join below without a generator
            a = attempts[0]
            return f"{ctx.route_note}; attempts={a.target.key}={'committed' if a.outcome == 'pending' else a.outcome}"
        tried = ",".join(
            f"{a.target.key}={'committed' if a.outcome == 'pending' else a.outcome}" for a in attempts
        )
        return f"{ctx.route_note}; attempts={tried}"

    def _account(self, ctx: CallContext) -> str | None:
        """The account stage: settle admissions, write the record, schedule after-call hooks."""
        if ctx.accounted:
            return ctx.cost_usd
        cost = None
        try:
            cost = self.accounting.account(ctx)
        except Exception:  # accounting must never turn a call into a 500; the log says why
            log.exception("accounting failed for request %s", ctx.request_id)
        for a in ctx.notes.get("admitted", ()):
            try:
                a.settle(ctx)
            except Exception:
                log.exception("settling %s failed for request %s", type(a).__name__, ctx.request_id)
        for hook in self.after_hooks:
            if not hook.wants(ctx):
                continue
            task = asyncio.ensure_future(self._after(hook, ctx))
            self._after_tasks.add(task)
            task.add_done_callback(self._after_tasks.discard)
        return cost

    async def _after(self, hook: AfterHook, ctx: CallContext) -> None:
        try:
            await hook.after(ctx)
        except Exception:
            log.exception("after-call hook %s failed for request %s", type(hook).__name__, ctx.request_id)


class CallStream:
    """The client's byte stream of a committed streamed call.  Whatever way it ends (completed,
    interrupted upstream, the client gone mid-way, or closed before it was ever iterated), the
    call is accounted exactly once and the upstream connection is closed."""

    __slots__ = ("_gen", "_started", "ctx", "done", "gateway", "meta")

    def __init__(self, gateway: Gateway, ctx: CallContext, meta: ResponseMeta) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.meta = meta
        self._gen: AsyncIterator[bytes] | None = None
        self._started = False
        self.done = False
        """Set as the last piece is given: the server sends it with the end of the body."""

    def __aiter__(self) -> CallStream:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        # the generator's own awaitable, not a coroutine around it: one frame less per piece
        if self._gen is None:
            self._started = True
            self._gen = self._run()
        return self._gen.__anext__()

    async def aclose(self) -> None:
        gen = self._gen
        if gen is not None:
            await gen.aclose()  # type: ignore[attr-defined]
        if not self.ctx.accounted:
            # closed before (or without) running to its end: the client went away
            committed = self.ctx.committed
            if committed is not None:
                committed.abort()
            self.ctx.cancelled()
            self.gateway._account(self.ctx)

    async def _run(self) -> AsyncIterator[bytes]:
        ctx, gw, meta = self.ctx, self.gateway, self.meta
        committed, req = ctx.committed, ctx.req
        assert committed is not None and req is not None
        enc: StreamEncoder = ctx.wire.stream_encoder(req, meta)
        error: FarewayError | None = None
        completed = False
        held: list[bytes] = []
        pending: list[bytes] = []
        try:
            first = enc.start()
            source: AsyncIterator[StreamEvent] = committed.events()
            events = source
            for w in gw.wrappers:
                events = w.wrap(ctx, events)
            if events is not source:  # a wrapper that passes a call by returns its events as they are
                if first:
                    yield first
                async for event in events:
                    if isinstance(event, UsageUpdate):
                        ctx.usage = event.usage
                    chunk = enc.encode(event)
                    if chunk:
                        yield chunk
            else:
                # no wrapper: what one upstream read brought goes out in one write; the read
                # that ends the answer goes out with the closing chunk (usage, cost, [DONE]) when
                # the rest of the upstream body is already in (no wait: one write, not two)
                encode = enc.encode
                pending = [first] if first else []
                async for batch in committed.batches():
                    out, pending = pending, []
                    ended = False
                    for event in batch:
                        if type(event) is not PartDelta:  # (most events: neither test below)
                            if isinstance(event, UsageUpdate):
                                ctx.usage = event.usage
                            elif type(event) is Finish:
                                ended = True
                        chunk = encode(event)
                        if chunk:
                            out.append(chunk)
                    if held or (ended and committed.at_end()):
                        held += out  # (what comes after it too: it is already in)
                        continue
                    if out:
                        yield out[0] if len(out) == 1 else b"".join(out)
            completed = True
        except StreamInterrupted as exc:
            error = exc
        finally:
            if not completed and error is None:
                committed.abort()  # the client went away: stop the upstream generating
                ctx.cancelled()
            elif error is not None:
                ctx.interrupted(error)
            else:
                ctx.succeeded()
            meta.cost_usd = gw._account(ctx)
        last = enc.error(error) if error is not None else enc.close(meta)
        parts = [*pending, *held, last] if last else [*pending, *held]
        self.done = True
        if parts:
            yield parts[0] if len(parts) == 1 else b"".join(parts)


__all__ = ["CallContext", "CallStream", "Gateway", "NoRouteSucceeded", "Reply"]
