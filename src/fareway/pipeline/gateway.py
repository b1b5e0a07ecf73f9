"""The gateway: one object that owns the long-lived parts (transport, executor, keys, ledger,
stats) and runs one call through them: parse -> resolve -> execute -> encode -> account.

Server routes are thin: they read the body, authenticate, and hand over to :meth:`Gateway.chat`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fareway.adapters.base import Adapter
from fareway.config import Config
from fareway.errors import FarewayError, NoRouteSucceeded, StreamInterrupted
from fareway.events import UsageUpdate
from fareway.keys.store import KeyStore, Principal
from fareway.pipeline.accounting import Accounting
from fareway.pipeline.resolve import Resolver
from fareway.router.executor import CallLog, Committed, Executor
from fareway.router.routes import describe
from fareway.transport import Transport
from fareway.types import ChatRequest, Usage
from fareway.wire.base import ResponseMeta, WireDialect

log = logging.getLogger("fareway")


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    content_type: str = "application/json"


@dataclass(slots=True)
class CallInfo:
    """What accounting needs to know about one call beyond the executor's log."""

    request_id: str
    principal: Principal
    dialect: str
    requested_model: str
    stream: bool
    t0: float
    route: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        keys: KeyStore,
        transport: Transport,
        adapters: Mapping[str, Adapter],
        resolver: Resolver,
        executor: Executor,
        accounting: Accounting,
        stats: Any = None,
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

    async def start(self) -> None:
        await self.transport.start()
        await self.accounting.start()
        for hook in self.on_start:
            await hook()

    async def close(self) -> None:
        for hook in self.on_close:
            await hook()
        await self.transport.close()
        await self.accounting.close()

    async def readiness(self) -> dict[str, str]:
        checks = {"config": "ok"}
        try:
            await asyncio.to_thread(self.keys.list)
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

    async def chat(
        self,
        wire: WireDialect,
        body: bytes,
        headers: Mapping[str, str],
        principal: Principal,
        request_id: str,
    ) -> Reply:
        """Run one chat call.  Raises FarewayError before anything was sent to the client (the
        server encodes it in the client's dialect); after the commit point errors are in-stream."""
        t0 = time.monotonic()
        call = CallLog(request_id)
        try:
            req = wire.parse_request(body, headers)
        except FarewayError as exc:
            # A refused request is still a ledger row (status 400, no attempts): nothing is lost.
            bad = ChatRequest(model=_model_of(body), messages=[])
            info = CallInfo(request_id, principal, wire.name, bad.model, False, t0)
            self.accounting.call_failed(info, call, bad, exc)
            raise
        info = CallInfo(request_id, principal, wire.name, req.model, req.stream, t0)
        try:
            route, note = self.resolver.resolve_explained(req)
            info.route = describe(route)
            info.extra["route_note"] = note
            committed = await self.executor.run(route, req, call)
        except FarewayError as exc:
            self.accounting.call_failed(info, call, req, exc)
            raise
        target = committed.target
        meta = ResponseMeta(request_id, provider=target.upstream.provider)
        hdrs = [
            ("x-fareway-provider", target.upstream.provider),
            ("x-fareway-model", target.upstream.model),
            ("x-fareway-route", self._route_header(note, call)),
        ]
        if committed.log.dropped:
            hdrs.append(("x-fareway-dropped-params", ",".join(committed.log.dropped)))
        if committed.response is not None:
            resp = committed.response
            cost = self.accounting.call_done(info, call, req, committed.log, resp.usage, status=200)
            meta.cost_usd = cost
            if cost is not None:
                hdrs.append(("x-fareway-cost-usd", cost))
            return Reply(200, hdrs, wire.encode_response(resp, req, meta))
        return Reply(
            200,
            hdrs,
            stream=self._stream(wire, req, committed, call, info, meta),
            content_type="text/event-stream",
        )

    def _route_header(self, note: str, call: CallLog) -> str:
        tried = ",".join(
            f"{a.target.key}={'committed' if a.outcome == 'pending' else a.outcome}" for a in call.attempts
        )
        return f"{note}; attempts={tried}"

    async def _stream(
        self,
        wire: WireDialect,
        req: ChatRequest,
        committed: Committed,
        call: CallLog,
        info: CallInfo,
        meta: ResponseMeta,
    ) -> AsyncIterator[bytes]:
        enc = wire.stream_encoder(req, meta)
        usage: Usage | None = None
        error: FarewayError | None = None
        completed = False
        try:
            first = enc.start()
            if first:
                yield first
            async for event in committed.events():
                if isinstance(event, UsageUpdate):
                    usage = event.usage
                chunk = enc.encode(event)
                if chunk:
                    yield chunk
            completed = True
        except StreamInterrupted as exc:
            error = exc
        finally:
            if not completed and error is None:
                committed.abort()  # the client went away: stop the upstream generating
                error_status = 499
            else:
                error_status = 200 if error is None else error.status
            meta.cost_usd = self.accounting.call_done(
                info, call, req, committed.log, committed.log.usage or usage, status=error_status, error=error
            )
        if error is not None:
            yield enc.error(error)
        else:
            tail = enc.close(meta)
            if tail:
                yield tail


def _model_of(body: bytes) -> str:
    """The model a refused request named, if it is readable at all (for its ledger row)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    return model[:200] if isinstance(model, str) else ""


__all__ = ["CallInfo", "Gateway", "NoRouteSucceeded", "Reply"]
