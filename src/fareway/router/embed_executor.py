"""The embeddings executor: runs a route tree (router.routes) for one embeddings call until an
upstream attempt answers.

Why not the chat :class:`~fareway.router.executor.Executor`: its tree walk is typed on
``ChatRequest`` and ends at the *commit point* of a stream (first content event, live upstream
streams, whole-answer reads), none of which an embeddings call has: an attempt here is one
request/response (or several, when the inputs exceed the upstream's batch size) and either
answers whole or fails.  What it shares with the chat executor is everything around the attempts:
the route nodes (Target, Fallback, Race with hedge and cost cap, Split), the attempt log
(:class:`~fareway.router.executor.AttemptLog` in a :class:`~fareway.router.executor.CallLog`,
read by the same accounting), the health recorder (circuit breaker, cooldowns after Retry-After,
latency statistics: ``begin`` / ``first_token`` / ``end``), the error classes that decide a
fallback (``UpstreamError.retryable``), the last-resort try of targets skipped for an open circuit,
and ``NoRouteSucceeded`` with every attempt.

Timeout: every upstream request must answer within ``timeout`` seconds (``[timeouts]
first_token``: an embeddings answer arrives whole, so its first byte is the whole answer), else it
is an ``UpstreamTimeout`` and the call falls back.

Usage: the provider's ``prompt_tokens`` when it reports them; otherwise (gemini-embedding-001, a
cancelled race leg) the inputs are counted offline (o200k, ``fareway.tokens``) and the attempt is
marked ``estimated``; counting long inputs runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fareway.adapters.embeddings import EmbeddingAdapter
from fareway.errors import (
    BadRequest,
    FarewayError,
    NoRouteSucceeded,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
)
from fareway.router.executor import AttemptLog, CallLog, _expected_cost, _Skipped, end_attempt, fail_attempt
from fareway.router.health import HealthRecorder
from fareway.router.routes import Fallback, Race, Route, Split, Target
from fareway.tokens import estimate_text_tokens
from fareway.transport_base import UpstreamTransport
from fareway.types import EmbeddingInput, EmbeddingRequest, EmbeddingResult, HttpRequest, Upstream, Usage

_SYNC_ESTIMATE_CHARS = 32_000
"""Inputs shorter than this (in total) are counted inline; longer ones in a worker thread."""


def quick_token_estimate(inputs: Sequence[EmbeddingInput]) -> int:
    """A cheap guess (4 characters a token; a token array's length): for routing only."""
    return sum(len(i) if not isinstance(i, str) else (len(i) + 3) // 4 for i in inputs)


def count_input_tokens(inputs: Sequence[EmbeddingInput]) -> int:
    """Tokens of ``inputs`` under o200k (token arrays count their length)."""
    return sum(len(i) if not isinstance(i, str) else max(1, estimate_text_tokens(i)) for i in inputs)


def _chars(inputs: Sequence[EmbeddingInput]) -> int:
    return sum(len(i) for i in inputs if isinstance(i, str))


@dataclass(slots=True)
class EmbeddingAnswer:
    """The attempt that answered, and its answer."""

    log: AttemptLog
    result: EmbeddingResult

    @property
    def target(self) -> Target:
        return self.log.target


class EmbeddingExecutor:
    def __init__(
        self,
        transport: UpstreamTransport,
        adapters: Mapping[str, EmbeddingAdapter],
        *,
        timeout: float = 30.0,
        stats: HealthRecorder | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_parallel: int = 4,
    ) -> None:
        self.transport = transport
        self.adapters = adapters
        self.timeout = timeout
        self.stats = stats
        self.rng = rng or random.Random()
        self.clock = clock
        self.max_parallel = max(1, max_parallel)
        """Upstream requests of one attempt in flight at once (when the inputs span several)."""

    # ------------------------------------------------------------------ public

    async def run(self, route: Route, req: EmbeddingRequest, call: CallLog) -> EmbeddingAnswer:
        """Run ``route`` until an attempt answers.  Raises NoRouteSucceeded (with every attempt)
        when none does, or the caller's own error (BadRequest) unchanged."""
        try:
            return await self._commit(route, req, call, "primary")
        except UpstreamError as exc:
            last: UpstreamError = exc
        # As for chat: targets skipped for an open circuit or a cooldown get one try each now.
        for target in [a.target for a in call.attempts if a.outcome == "skipped"]:
            try:
                return await self._attempt(target, req, call, "last_resort", force=True)
            except UpstreamError as exc:
                last = exc
                if not exc.retryable:
                    break
        raise NoRouteSucceeded([a.summary() for a in call.attempts], last) from last

    # ---------------------------------------------------------------- the tree

    async def _commit(self, route: Route, req: EmbeddingRequest, call: CallLog, role: str) -> EmbeddingAnswer:
        if isinstance(route, Target):
            return await self._attempt(route, req, call, role)
        if isinstance(route, Fallback):
            last: UpstreamError | None = None
            for i, child in enumerate(route.routes):
                try:
                    return await self._commit(child, req, call, role if i == 0 else "fallback")
                except UpstreamError as exc:
                    if not exc.retryable:
                        raise
                    last = exc
            assert last is not None, "an empty fallback chain"
            raise last
        if isinstance(route, Race):
            return await self._race(route, req, call)
        if isinstance(route, Split):
            return await self._commit(self._pick(route), req, call, role)
        raise TypeError(f"unknown route node {route!r}")

    def _pick(self, split: Split) -> Route:
        total = sum(w for w, _ in split.choices)
        x = self.rng.uniform(0, total)
        for w, r in split.choices:
            x -= w
            if x <= 0:
                return r
        return split.choices[-1][1]

    async def _race(self, node: Race, req: EmbeddingRequest, call: CallLog) -> EmbeddingAnswer:
        """The first contender to answer wins; the others are cancelled (a leg that answered
        anyway is still logged: its tokens were billed).  ``hedge_ms``: start the next contender
        only after that long without an answer.  ``max_cost_usd``: as for chat."""
        children = list(node.routes)
        hedge_s = node.hedge_ms / 1000 if node.hedge_ms is not None else None
        pending: set[asyncio.Task[EmbeddingAnswer]] = set()
        started = 0
        spent = 0.0
        last: UpstreamError | None = None

        def launch() -> None:
            nonlocal started, spent
            child = children.pop(0)
            cost = _expected_cost(child)
            if node.max_cost_usd is not None and started > 0 and cost is not None:
                if spent + cost > node.max_cost_usd:
                    return  # over the race's cost cap: not started
            spent += cost or 0.0
            role = "hedge" if hedge_s is not None and started > 0 else "race"
            started += 1
            pending.add(asyncio.ensure_future(self._commit(child, req, call, role)))

        launch()
        if hedge_s is None:
            while children:
                launch()
        try:
            while pending:
                timeout = hedge_s if (hedge_s is not None and children) else None
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    launch()
                    continue
                winner: EmbeddingAnswer | None = None
                for task in done:
                    pending.discard(task)
                    exc = task.exception()
                    if exc is None:
                        winner = winner or task.result()
                    elif isinstance(exc, UpstreamError) and exc.retryable:
                        last = exc
                    else:
                        raise exc
                if winner is not None:
                    return winner
                if not pending and children:
                    launch()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        assert last is not None
        raise last

    # ------------------------------------------------------------ one attempt

    async def _attempt(
        self, target: Target, req: EmbeddingRequest, call: CallLog, role: str, *, force: bool = False
    ) -> EmbeddingAnswer:
        if call.keys is not None:  # this call's provider key (a team's own, or a pool's current one)
            picked = call.keys.pick(target.upstream)
            if picked is None:
                log = AttemptLog(target, role, datetime.now(UTC), self.clock())
                call.attempts.append(log)
                log.outcome, log.latency_s = "error", 0.0
                log.error = UpstreamAuthError(
                    f"no {target.upstream.provider} key is available to this caller; not tried",
                    provider=target.upstream.provider,
                )
                raise log.error
            if picked is not target.upstream:
                target = dataclasses.replace(target, upstream=picked)
        up = target.upstream
        log = AttemptLog(target, role, datetime.now(UTC), self.clock())
        call.attempts.append(log)
        key = target.key
        if not force and self.stats is not None and not self.stats.available(key):
            log.outcome = "skipped"
            log.latency_s = 0.0
            err = _Skipped(f"{key} is cooling down or its circuit is open; not tried", provider=up.provider)
            log.error = err
            raise err
        adapter = self.adapters.get(up.dialect)
        try:
            if adapter is None:
                raise BadRequest(
                    f"{up.provider} speaks the {up.dialect} dialect, which has no embeddings API",
                    param="model",
                )
            size = max(1, adapter.max_batch(up))
            batches = [req.inputs[i : i + size] for i in range(0, len(req.inputs), size)]
            https = [adapter.build_request(req, batch, up) for batch in batches]
        except FarewayError as exc:  # the caller's problem (BadRequest): not this provider's failure
            log.outcome = "error"
            log.error = exc
            log.latency_s = self.clock() - log.t0
            raise
        log.dropped = list(https[0].dropped)
        if self.stats is not None:
            log.stats_token = self.stats.begin(key)
        try:
            answers = await self._send_all(adapter, req, up, https, batches)
        except UpstreamError as exc:
            self._fail(log, exc)
            raise
        except asyncio.CancelledError:
            # a race loser or a client gone: the request may well have been billed; the inputs
            # are counted cheaply (no thread while being cancelled)
            log.outcome = "cancelled"
            log.latency_s = self.clock() - log.t0
            log.usage = Usage(input_tokens=quick_token_estimate(req.inputs), estimated=True)
            self._stats_end(log, ok=True, headers=None, cancelled=True)
            raise
        except Exception:
            # a bug below (not the provider's failure): the attempt still ends in the log and the
            # statistics (its in-flight count), then the call fails as a 500
            log.outcome = "error"
            log.latency_s = self.clock() - log.t0
            self._stats_end(log, ok=True, headers=None, cancelled=True)
            raise
        result = await self._merge(answers, batches)
        log.outcome = "ok"
        log.status = 200
        log.latency_s = self.clock() - log.t0
        log.ttft_s = log.latency_s
        log.usage = result.usage
        log.response_model = result.model or None
        if self.stats is not None:
            self.stats.first_token(log.stats_token or key, log.ttft_s)
        self._stats_end(log, ok=True, headers=answers[-1][1])
        return EmbeddingAnswer(log, result)

    async def _merge(
        self,
        answers: list[tuple[EmbeddingResult, Mapping[str, str]]],
        batches: list[list[EmbeddingInput]],
    ) -> EmbeddingResult:
        vectors = [v for r, _ in answers for v in r.vectors]
        model = next((r.model for r, _ in answers if r.model), "")
        tokens = 0
        estimated = False
        for (r, _), batch in zip(answers, batches, strict=True):
            if r.usage is not None:
                tokens += r.usage.input_tokens
                estimated = estimated or r.usage.estimated
                continue
            estimated = True
            if _chars(batch) > _SYNC_ESTIMATE_CHARS:
                tokens += await asyncio.to_thread(count_input_tokens, batch)
            else:
                tokens += count_input_tokens(batch)
        return EmbeddingResult(vectors, model, Usage(input_tokens=tokens, estimated=estimated))

    async def _send_all(
        self,
        adapter: EmbeddingAdapter,
        req: EmbeddingRequest,
        up: Upstream,
        https: list[HttpRequest],
        batches: list[list[EmbeddingInput]],
    ) -> list[tuple[EmbeddingResult, Mapping[str, str]]]:
        if len(https) == 1:
            return [await self._send(adapter, req, up, https[0], len(batches[0]))]
        gate = asyncio.Semaphore(self.max_parallel)

        async def one(http: HttpRequest, n: int) -> tuple[EmbeddingResult, Mapping[str, str]]:
            async with gate:
                return await self._send(adapter, req, up, http, n)

        tasks = [asyncio.ensure_future(one(h, len(b))) for h, b in zip(https, batches, strict=True)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            return [t.result() for t in tasks]
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(
        self, adapter: EmbeddingAdapter, req: EmbeddingRequest, up: Upstream, http: HttpRequest, n: int
    ) -> tuple[EmbeddingResult, Mapping[str, str]]:
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self.transport.send(http, up.provider, total=self.timeout, idle=self.timeout)
                try:
                    body = await resp.read()
                except BaseException:
                    resp.close()
                    raise
                resp.release()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"no embeddings answer within {self.timeout:g}s", phase="total", provider=up.provider
            ) from exc
        if resp.status >= 300:
            raise adapter.parse_error(resp.status, resp.headers, body, up)
        return adapter.parse_response(body, req, n, up), resp.headers

    # ---------------------------------------------------------------- stats

    def _fail(self, log: AttemptLog, exc: UpstreamError) -> None:
        fail_attempt(self.stats, log, exc, self.clock())

    def _stats_end(
        self,
        log: AttemptLog,
        *,
        ok: bool,
        headers: Mapping[str, str] | None,
        retry_after: float | None = None,
        cancelled: bool = False,
    ) -> None:
        end_attempt(self.stats, log, ok=ok, headers=headers, retry_after=retry_after, cancelled=cancelled)


__all__ = ["EmbeddingAnswer", "EmbeddingExecutor", "count_input_tokens", "quick_token_estimate"]
