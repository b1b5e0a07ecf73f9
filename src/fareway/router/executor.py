"""The executor: runs a route tree until one upstream attempt *commits*.

The commit point is the first content event of a stream (or a whole non-streamed response).
Before it, a failed attempt may fall back or lose a race; after it, the call belongs to that
attempt, and a failure becomes a StreamInterrupted that the wire encoder turns into an in-stream
error in the client's dialect.

Every attempt, whatever became of it, is logged in ``CallLog.attempts`` for the ledger: ok, error,
cancelled (a race loser, its connection closed so the provider stops generating) or skipped (its
circuit was open, so no request was sent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fareway.adapters.base import Adapter, StreamParser
from fareway.errors import Attempt as AttemptSummary
from fareway.errors import (
    FarewayError,
    NoRouteSucceeded,
    StreamInterrupted,
    UpstreamAuthError,
    UpstreamError,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from fareway.events import Accumulator, StreamEvent, response_to_events
from fareway.router.health import HealthRecorder
from fareway.router.keychoice import KeyChoice
from fareway.router.routes import Fallback, Race, Route, Split, Target
from fareway.router.target_request import for_target
from fareway.transport_base import OpenResponse, UpstreamTransport
from fareway.types import ChatRequest, ChatResponse, Upstream, Usage


@dataclass(slots=True)
class AttemptLog:
    target: Target
    role: str
    started_at: datetime
    t0: float
    ttft_s: float | None = None
    latency_s: float | None = None
    outcome: str = "pending"  # ok | error | cancelled | skipped
    status: int | None = None
    error: FarewayError | None = None
    usage: Usage | None = None
    output_chars: int = 0
    dropped: list[str] = field(default_factory=list)
    response_model: str | None = None
    stats_token: Any = None

    def summary(self) -> AttemptSummary:
        return AttemptSummary(
            provider=self.target.upstream.provider,
            model=self.target.upstream.model,
            outcome=self.outcome,
            status=self.status,
            error=self.error.message if self.error else None,
            latency_ms=self.latency_s * 1000 if self.latency_s is not None else None,
        )


@dataclass(slots=True)
class CallLog:
    request_id: str
    attempts: list[AttemptLog] = field(default_factory=list)
    keys: KeyChoice | None = None
    """This call's provider keys (router.keychoice); None: each target's configured key."""


class _NextKey(Exception):
    """Internal: the attempt's key was rate-limited and another key of its pool is ready."""

    def __init__(self, up: Upstream) -> None:
        super().__init__(up.provider)
        self.up = up


class _Skipped(UpstreamError):
    """The target's circuit is open or it is cooling down: no request was sent."""

    status = 503
    type = "api_error"


class _Deadline:
    """``asyncio.timeout`` for the first-token wait, as a plain context manager: its timer cancels
    the task, and leaving the scope turns that cancel into TimeoutError, exactly as
    ``asyncio.timeout`` does (a cancel from elsewhere stays a cancel).  It skips what makes that
    one cost about 1 % of a call: two coroutines to enter and leave, the running-loop and
    current-task look-ups, and the state checks."""

    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        self._handle = loop.call_at(loop.time() + delay, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._handle.cancel()
        if self.expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


def _is_json(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").startswith("application/json")


def _streamable(req: ChatRequest) -> bool:
    """Whether a non-streamed request can be read as a stream without losing anything: a canonical
    stream carries one choice and no token logprobs, so ``n > 1`` and ``logprobs`` are sent as
    asked (and get only the total timeout)."""
    if req.n is not None and req.n > 1:
        return False
    return not req.extensions.get("openai", {}).get("logprobs")


def _expected_cost(route: Route) -> float | None:
    """The policy's cost estimate of a contender (the first Target's, for a subtree)."""
    if isinstance(route, Target):
        return route.expected_cost_usd
    if isinstance(route, Split):
        return _expected_cost(route.choices[0][1]) if route.choices else None
    return _expected_cost(route.routes[0]) if route.routes else None


class Committed:
    """The attempt that won.  For a stream, iterate ``events()`` exactly once."""

    def __init__(
        self,
        log: AttemptLog,
        *,
        response: ChatResponse | None = None,
        buffered: list[StreamEvent] | None = None,
        live: _Live | None = None,
    ) -> None:
        self.log = log
        self.response = response
        self._buffered = buffered or []
        self._live = live

    @property
    def target(self) -> Target:
        return self.log.target

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The committed stream: the buffered events, then the rest.  Raises StreamInterrupted
        if the upstream fails after the commit point."""
        async for batch in self.batches():
            for e in batch:
                yield e

    async def batches(self) -> AsyncIterator[list[StreamEvent]]:
        """The committed stream as the lists of events each upstream read gave (the buffered
        events first): what ``events()`` yields, one list per read, so that a consumer can encode
        and send what one read brought in one write.  Iterate exactly once."""
        if self.response is not None and self._live is None and not self._buffered:
            # a whole answer, as the events a stream of it would give (for stream wrappers)
            self._buffered = response_to_events(self.response)
        if self._buffered:
            buffered, self._buffered = self._buffered, []
            yield buffered
        live = self._live
        if live is None:
            return
        try:
            while not live.eof:
                batch = await live.read_or_fail()
                if batch:
                    yield batch
        except UpstreamError as exc:
            raise StreamInterrupted(exc) from exc
        finally:
            live.finish()

    async def collect(self) -> ChatResponse:
        """The whole answer, for a client that did not ask for a stream: the response itself, or
        the rest of the committed upstream stream folded into one.  Raises StreamInterrupted if
        the upstream fails after the commit point."""
        if self.response is not None:
            return self.response
        live = self._live
        if live is None:
            acc = Accumulator()
            for e in self._buffered:
                acc.add(e)
            return acc.result()
        async for _ in self.events():
            pass  # the live reader folds every event into its accumulator
        return live.acc.result()

    def at_end(self) -> bool:
        """Whether what is left of the stream comes without waiting for the upstream (its body
        was read to the end already)."""
        live = self._live
        return live is None or live.eof or live.resp.at_eof()

    def abort(self) -> None:
        """The client went away (or this attempt lost a race after committing)."""
        if self._live is not None:
            self._live.abort()

    @property
    def output_chars(self) -> int:
        """Characters of content read from the upstream so far (for a checkpoint of a stream)."""
        return self._live.acc.output_chars if self._live is not None else self.log.output_chars


class _Live:
    """An open upstream stream being read."""

    def __init__(
        self,
        executor: Executor,
        log: AttemptLog,
        resp: OpenResponse,
        parser: StreamParser,
        deadline: float,
        *,
        whole: bool = False,
    ) -> None:
        self.executor = executor
        self.log = log
        self.resp = resp
        self.parser = parser
        # a whole answer folds the events: the parser may join deltas (its fast path)
        self._feed = parser.feed_all if whole else parser.feed
        self.acc = Accumulator()
        self.content = False
        """Whether the events of the latest :meth:`read` hold content (``is_content``)."""
        self.eof = False
        self.deadline = deadline
        self._done = False
        self.response: ChatResponse | None = None
        """The folded answer, once the attempt ended (``_end``)."""

    async def read(self) -> list[StreamEvent]:
        if self.eof:
            return []
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._over_total()
        if remaining < self.executor.idle_timeout:
            # the total limit falls before the idle one: wait no longer than it
            try:
                async with asyncio.timeout(remaining):
                    chunk = await self.resp.next_chunk()
            except TimeoutError as exc:
                raise self._over_total() from exc
        else:
            chunk = await self.resp.next_chunk()
        if chunk:
            events = self._feed(chunk)
        else:
            self.eof = True
            events = self.parser.close()
        self.content = self.acc.add_all(events)
        return events

    async def read_rest_at_once(self) -> None:
        """Read the rest of the stream as bytes, then parse it in one go (for a whole answer:
        nothing goes to the client before the end, so the events are not needed one by one;
        parsing once saves the per-read parse, about a fifth of the cost of the stream)."""
        parts: list[bytes] = []
        deadline = self.deadline
        idle = self.executor.idle_timeout
        resp = self.resp
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._over_total()
            if remaining < idle:
                try:
                    async with asyncio.timeout(remaining):
                        chunk = await resp.next_chunk()
                except TimeoutError as exc:
                    raise self._over_total() from exc
            else:
                chunk = await resp.next_chunk()
            if not chunk:
                break
            parts.append(chunk)
        self.eof = True
        parser = self.parser
        events = parser.feed_all(parts[0] if len(parts) == 1 else b"".join(parts)) if parts else []
        events += parser.close()
        self.acc.add_all(events)

    def _over_total(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            "the upstream stream exceeded the total timeout",
            phase="total",
            provider=self.log.target.upstream.provider,
        )

    async def read_or_fail(self) -> list[StreamEvent]:
        """``read()``, recording a failure on the attempt (and closing the upstream) when it
        raises; a cancel (the client went away) ends the attempt as cancelled."""
        try:
            return await self.read()
        except UpstreamError as exc:
            self.executor._fail(self.log, exc)
            self.resp.close()
            self._done = True
            raise
        except asyncio.CancelledError:
            self._end("cancelled")
            self.resp.close()
            raise

    def _end(self, outcome: str) -> None:
        if self._done:
            return
        self._done = True
        log = self.log
        log.outcome = outcome
        log.latency_s = time.monotonic() - log.t0
        r = self.response = self.acc.result()
        log.usage = r.usage
        log.output_chars = self.acc.output_chars
        if r.model:
            log.response_model = r.model
        self.executor._stats_end(log, ok=outcome == "ok", headers=self.resp.headers)

    def finish(self) -> None:
        if not self._done:
            self._end("ok" if self.eof else "cancelled")
            if self.eof:
                self.resp.release()
            else:
                self.resp.close()

    def abort(self) -> None:
        if not self._done:
            self._end("cancelled")
            self.resp.close()


class Executor:
    def __init__(
        self,
        transport: UpstreamTransport,
        adapters: Mapping[str, Adapter],
        *,
        first_token_timeout: float = 30.0,
        idle_timeout: float = 30.0,
        total_timeout: float = 600.0,
        stats: HealthRecorder | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        stream_whole_answers: bool = True,
    ) -> None:
        self.transport = transport
        self.adapters = adapters
        self.first_token_timeout = first_token_timeout
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.stats = stats
        self.rng = rng or random.Random()
        self.clock = clock
        self.stream_whole_answers = stream_whole_answers
        """Read non-streamed calls from the upstream as streams (see ``_attempt``)."""

    # ------------------------------------------------------------------ public

    async def run(self, route: Route, req: ChatRequest, call: CallLog) -> Committed:
        """Run ``route`` until an attempt commits.  Raises NoRouteSucceeded (with every attempt)
        when none does, or the caller's own error (BadRequest) unchanged."""
        try:
            return await self._commit(route, req, call, "primary", whole=not req.stream)
        except UpstreamError as exc:
            last: UpstreamError = exc
        # Nothing answered.  Targets that were skipped for an open circuit or a cooldown get one
        # try each now, in route order: a circuit reorders offers, it never turns a call that one
        # of them could still serve into an error.
        for target in [a.target for a in call.attempts if a.outcome == "skipped"]:
            try:
                return await self._attempt(target, req, call, "last_resort", force=True, whole=not req.stream)
            except UpstreamError as exc:
                if not exc.retryable:
                    last = exc
                    break
                last = exc
        raise NoRouteSucceeded([a.summary() for a in call.attempts], last) from last

    # ---------------------------------------------------------------- the tree

    async def _commit(
        self, route: Route, req: ChatRequest, call: CallLog, role: str, *, whole: bool = False
    ) -> Committed:
        """``whole``: the client wants one answer and no race is deciding, so an attempt reads its
        upstream stream to the end before it commits (a failure part-way still falls back)."""
        if isinstance(route, Target):
            return await self._attempt(route, req, call, role, whole=whole)
        if isinstance(route, Fallback):
            return await self._fallback(route, req, call, role, whole=whole)
        if isinstance(route, Race):
            return await self._race(route, req, call)
        if isinstance(route, Split):
            return await self._commit(self._pick(route), req, call, role, whole=whole)
        raise TypeError(f"unknown route node {route!r}")

    def _pick(self, split: Split) -> Route:
        total = sum(w for w, _ in split.choices)
        x = self.rng.uniform(0, total)
        for w, r in split.choices:
            x -= w
            if x <= 0:
                return r
        return split.choices[-1][1]

    async def _fallback(
        self, node: Fallback, req: ChatRequest, call: CallLog, role: str, *, whole: bool = False
    ) -> Committed:
        last: UpstreamError | None = None
        for i, child in enumerate(node.routes):
            try:
                return await self._commit(child, req, call, role if i == 0 else "fallback", whole=whole)
            except UpstreamError as exc:
                if not exc.retryable:
                    raise
                last = exc
        assert last is not None, "an empty fallback chain"
        raise last

    async def _race(self, node: Race, req: ChatRequest, call: CallLog) -> Committed:
        pending: set[asyncio.Task[Committed]] = set()
        children = list(node.routes)
        hedge_s = node.hedge_ms / 1000 if node.hedge_ms is not None else None
        last: UpstreamError | None = None

        budget = node.max_cost_usd
        spent = [0.0]

        def launch() -> None:
            child = children.pop(0)
            if budget is not None and pending_started[0] > 0:
                cost = _expected_cost(child)
                if cost is not None and spent[0] + cost > budget:
                    return  # over the race's cost cap: this contender is not started
                spent[0] += cost or 0.0
            elif budget is not None:
                spent[0] += _expected_cost(child) or 0.0
            role = "hedge" if hedge_s is not None and pending_started[0] > 0 else "race"
            pending_started[0] += 1
            pending.add(asyncio.ensure_future(self._commit(child, req, call, role)))

        pending_started = [0]
        launch()
        if hedge_s is None:
            while children:
                launch()
        winner: Committed | None = None
        try:
            while pending:
                timeout = hedge_s if (hedge_s is not None and children) else None
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    launch()  # hedge: the running contenders were silent for hedge_ms
                    continue
                for task in done:
                    pending.discard(task)
                    exc = task.exception()
                    if exc is None:
                        if winner is None:
                            winner = task.result()
                        else:
                            task.result().abort()
                    elif isinstance(exc, UpstreamError) and exc.retryable:
                        last = exc
                    else:
                        raise exc
                if winner is not None:
                    return winner
                if not pending and children:
                    launch()  # a contender failed fast: start the next at once
        finally:
            for task in pending:
                task.cancel()
            if pending:
                results = await asyncio.gather(*pending, return_exceptions=True)
                for r in results:
                    if isinstance(r, Committed):
                        r.abort()
        assert last is not None
        raise last

    # ------------------------------------------------------------ one attempt

    async def _attempt(
        self,
        target: Target,
        req: ChatRequest,
        call: CallLog,
        role: str,
        *,
        force: bool = False,
        whole: bool = False,
    ) -> Committed:
        keys = call.keys
        if keys is None:
            return await self._attempt_once(target, req, call, role, force=force, whole=whole)
        up = keys.pick(target.upstream)
        if up is None:
            log = AttemptLog(target, role, datetime.now(UTC), self.clock())
            call.attempts.append(log)
            log.outcome = "error"
            log.latency_s = 0.0
            err = UpstreamAuthError(
                f"no {target.upstream.provider} key is available to this caller; not tried",
                provider=target.upstream.provider,
            )
            log.error = err
            raise err
        while True:
            t = target if up is target.upstream else dataclasses.replace(target, upstream=up)
            try:
                return await self._attempt_once(t, req, call, role, force=force, whole=whole)
            except _NextKey as nxt:
                up, force = nxt.up, True  # the same offer again at once, with the pool's next key

    async def _attempt_once(
        self,
        target: Target,
        req: ChatRequest,
        call: CallLog,
        role: str,
        *,
        force: bool = False,
        whole: bool = False,
    ) -> Committed:
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
        # the adapter for this upstream (a native one when the provider speaks the client's dialect)
        # and the request as this upstream gets it (router/target_request.py)
        try:
            adapter, req = for_target(self.adapters, up, req)
        except UpstreamError as exc:  # this target cannot carry the request: nothing was sent
            self._fail(log, exc)
            raise
        if adapter is None:
            raise UpstreamServerError(f"no adapter for dialect {up.dialect}", provider=up.provider)
        # A call whose client wants one answer is still read from the upstream as a stream when it
        # can be (one choice): so the first-token and idle timeouts catch a stalled provider and the
        # call falls back as a stream does, instead of waiting for the total timeout.
        upstream_stream = req.stream or (self.stream_whole_answers and _streamable(req))
        if upstream_stream == req.stream:
            out_req = req
        else:
            out_req = req.copy()
            out_req.stream = True
        http = adapter.build_request(out_req, up)  # BadRequest propagates: the caller's problem
        log.dropped = http.dropped
        if self.stats is not None:
            log.stats_token = self.stats.begin(key)
        resp: OpenResponse | None = None
        try:
            if not upstream_stream:
                resp = await self.transport.send(
                    http, up.provider, total=self.total_timeout, idle=self.idle_timeout
                )
                if resp.status >= 300:
                    body = await resp.read()
                    resp.release()
                    raise adapter.parse_error(resp.status, resp.headers, body, up)
                return Committed(log, response=await self._whole_answer(log, adapter, resp))
            return await self._open_stream(log, adapter, http, req, whole=whole)
        except UpstreamError as exc:
            if resp is not None:
                resp.close()
            nxt = self._next_key(call, up, exc)
            if nxt is not None:
                self._rested(log, exc)
                raise _NextKey(nxt) from exc
            self._fail(log, exc)
            raise
        except asyncio.CancelledError:
            if resp is not None:
                resp.close()
            if log.outcome == "pending":
                log.outcome = "cancelled"
                log.latency_s = self.clock() - log.t0
                self._stats_end(log, ok=True, headers=None, cancelled=True)
            raise

    async def _open_stream(
        self, log: AttemptLog, adapter: Adapter, http: Any, req: ChatRequest, *, whole: bool = False
    ) -> Committed:
        up = log.target.upstream
        resp: OpenResponse | None = None
        live: _Live | None = None
        try:
            with _Deadline(self.first_token_timeout):
                resp = await self.transport.send(
                    http, up.provider, total=self.total_timeout, idle=self.idle_timeout
                )
                if resp.status >= 300:
                    body = await resp.read()
                    resp.release()
                    raise adapter.parse_error(resp.status, resp.headers, body, up)
                log.status = resp.status
                if _is_json(resp.headers):
                    # A server that ignores `stream: true` and answers with one JSON body
                    # (some self-hosted OpenAI-compatible servers do): take it as the whole answer.
                    answer = await self._whole_answer(log, adapter, resp)
                    if req.stream:
                        return Committed(log, buffered=response_to_events(answer))
                    return Committed(log, response=answer)
                live = _Live(
                    self, log, resp, adapter.stream_parser(up), log.t0 + self.total_timeout, whole=whole
                )
                buffered: list[StreamEvent] = []
                while True:
                    events = await live.read()
                    buffered += events
                    if live.eof or live.content:
                        break
        except UpstreamError:
            # an error before the first token (in-stream error, idle timeout, truncated stream):
            # close the connection so the provider stops generating
            if resp is not None:
                resp.close()
            raise
        except TimeoutError as exc:
            if resp is not None:
                resp.close()
            raise UpstreamTimeout(
                f"no first token within {self.first_token_timeout:g}s",
                phase="first_token",
                provider=up.provider,
            ) from exc
        except asyncio.CancelledError:
            if live is not None:
                live.abort()
            elif resp is not None:
                resp.close()
            raise
        log.ttft_s = self.clock() - log.t0
        if self.stats is not None:
            self.stats.first_token(log.stats_token or log.target.key, log.ttft_s)
        if whole and live is not None:
            return await self._read_whole(live)
        return Committed(log, buffered=buffered, live=live)

    async def _read_whole(self, live: _Live) -> Committed:
        """Read a committed stream to its end for a client that wants one answer: an upstream
        failure before the end is still this attempt's failure (the call falls back)."""
        try:
            await live.read_rest_at_once()
        except UpstreamError:
            live.resp.close()
            raise
        except asyncio.CancelledError:
            live.abort()
            raise
        live.finish()
        # (finish folded the answer, unless the attempt had ended already)
        return Committed(live.log, response=live.response or live.acc.result())

    async def _whole_answer(self, log: AttemptLog, adapter: Adapter, resp: OpenResponse) -> ChatResponse:
        body = await resp.read()
        resp.release()
        response = adapter.parse_response(body, log.target.upstream)
        log.outcome = "ok"
        log.status = resp.status
        log.latency_s = self.clock() - log.t0
        log.ttft_s = log.latency_s
        log.usage = response.usage
        log.response_model = response.model
        self._stats_end(log, ok=True, headers=resp.headers)
        return response

    # ---------------------------------------------------------------- stats

    @staticmethod
    def _next_key(call: CallLog, up: Upstream, exc: UpstreamError) -> Upstream | None:
        """Another key of this provider to retry with, when ``exc`` is a 429 or a quota error."""
        if call.keys is None or not isinstance(exc, UpstreamRateLimited | UpstreamQuotaExceeded):
            return None
        return call.keys.limited(up, exc)

    def _rested(self, log: AttemptLog, exc: UpstreamError) -> None:
        """The attempt's key was limited and the next key takes over: an error row for this try,
        but the offer's health is untouched (its provider is fine; that key is resting)."""
        log.outcome = "error"
        log.error = exc
        if exc.status:
            log.status = exc.status
        log.latency_s = self.clock() - log.t0
        self._stats_end(log, ok=True, headers=None, cancelled=True)

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


def end_attempt(
    stats: HealthRecorder | None,
    log: AttemptLog,
    *,
    ok: bool,
    headers: Mapping[str, str] | None,
    retry_after: float | None = None,
    cancelled: bool = False,
) -> None:
    """Report one finished attempt to the health recorder (chat and embeddings executors)."""
    if stats is None or log.stats_token is None:
        return
    out = log.usage.output_tokens if log.usage else 0
    stats.end(
        log.stats_token,
        ok,
        log.latency_s or 0.0,
        out,
        None if cancelled else log.status,
        retry_after,
        headers,
    )


def fail_attempt(stats: HealthRecorder | None, log: AttemptLog, exc: UpstreamError, now: float) -> None:
    """The attempt ``log`` failed with ``exc`` at ``now`` (the executor's clock)."""
    log.outcome = "error"
    log.error = exc
    if exc.status:
        log.status = exc.status
    log.latency_s = now - log.t0
    end_attempt(stats, log, ok=False, headers=exc.headers, retry_after=exc.retry_after)
