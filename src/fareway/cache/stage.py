"""The response cache on the call's seams: a lookup stage and a stream wrapper.

* ``run`` (a ``pipeline.stages.Stage`` in ``gateway.lookups``, after resolve): removes the
  ``fareway_cache`` body field, reads the request's controls, derives the key; on ``use`` it
  answers a live entry early (a hit: ``x-fareway-cache: hit``, ``age``, cost 0, the ledger row's
  outcome ``cache_hit`` with ``cost_saved``), or waits for an identical call already in flight
  (coalescing), or lets the call go on as the key's leader.
* ``wrap`` (a ``StreamWrapper``): for a call that may store, tees the committed events and, when
  the upstream's stream ended with its terminal event and usage and a finish that is an answer,
  stores the entry before the call is accounted (``stored``).  An upstream error after the commit
  point, a stream the client cut, one over ``max_entry_bytes``, one without usage, or one that
  ended in ``error``, ``pause`` or ``content_filter`` is never stored.
* a leader's flight is held like an admission (``ctx.notes["admitted"]``, whose ``settle`` the
  account stage runs exactly once for every call): settling lands a flight that ended without an
  entry (failed before the commit point, cancelled), so its waiters look again.  Only leaders
  are registered: a call that does not lead costs nothing there.

Headers: every chat response carries ``x-fareway-cache``: ``hit``, ``miss``, ``stored`` (a
non-streamed answer that was stored) or ``bypass``.  A streamed miss says ``miss`` (its headers go
out before the answer exists); its ledger row says ``stored`` when it was.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fareway.cache.coalesce import Flight, Flights
from fareway.cache.controls import HEADER, controls, pop_body_field
from fareway.cache.entry import Entry, rechunk
from fareway.cache.key import CacheKey, NotCacheable, derive
from fareway.cache.match import Matcher
from fareway.cache.replay import replay
from fareway.cache.settings import CacheSettings
from fareway.cache.stores import CacheStore, Clock
from fareway.events import Finish, PartDelta, StreamEvent, UsageUpdate
from fareway.pipeline.context import CallContext, Reply
from fareway.types import Usage

log = logging.getLogger("fareway.cache")

PriceFn = Callable[[str, str, Usage], Any]
"""``(provider, model, usage) -> pricing.Cost | None`` (``Accounting.price``)."""

NOT_ANSWERS = frozenset({"error", "pause", "content_filter"})
"""Finish reasons whose answer is not stored (an upstream error finish; Anthropic ``pause_turn``,
which the client must resend to continue; a safety block that may not recur)."""

MAX_WAITS = 3
"""How many landed-empty flights a waiter follows before it makes its own call."""


@dataclass(slots=True, eq=False)
class CacheCall:
    """``ctx.notes["cache"]``: what the cache does for this call."""

    key: CacheKey
    read: bool
    write: bool
    ttl: int
    flight: Flight | None = None


class ResponseCache:
    name = "cache"

    def __init__(
        self,
        settings: CacheSettings,
        store: CacheStore,
        *,
        price: PriceFn | None = None,
        clock: Clock | None = None,
        matchers: Sequence[Matcher] = (),
    ) -> None:
        self.settings = settings
        self.store = store
        self.price = price
        self.clock: Clock = clock if clock is not None else store_clock(store)
        self.matchers = list(matchers)
        self.flights = Flights()

    # ------------------------------------------------------------------ lookup

    async def run(self, ctx: CallContext) -> Reply | None:
        req = ctx.req
        assert req is not None, "the cache looks up after parse and resolve"
        body_value = pop_body_field(req)
        ctx.reply_headers[HEADER] = "bypass"
        if not self.settings.enabled:
            return None
        ctl = controls(ctx.headers, body_value, self.settings.aliases.get(req.model), self.settings)
        if not (ctl.read or ctl.write):
            return None
        try:
            key = derive(req, ctx.route, self.settings.tenant(ctx.principal.key_id))
        except NotCacheable as exc:
            log.debug("request %s not cacheable: %s", ctx.request_id, exc)
            return None
        call = CacheCall(key, ctl.read, ctl.write, ctl.ttl)
        ctx.notes["cache"] = call
        ctx.cache = ctx.reply_headers[HEADER] = "miss"
        if not ctl.read:
            return None
        for _ in range(MAX_WAITS):
            found = await self._find(key, ctx)
            if found is not None:
                return self._hit(ctx, *found)
            if not self.settings.coalesce:
                return None
            flight = self.flights.get(key.storage)
            if flight is None:
                if ctl.write:
                    call.flight = self.flights.lead(key.storage)
                    ctx.notes.setdefault("admitted", []).append(_FlightRelease(self.flights, call))
                return None
            entry = await flight.wait()
            if entry is not None:
                return self._hit(ctx, entry, None)
        return None

    async def _find(self, key: CacheKey, ctx: CallContext) -> tuple[Entry, float | None] | None:
        entry = await self._get(key.storage)
        if entry is not None:
            return entry, None
        for m in self.matchers:
            try:
                match = await m.find(key, ctx)
            except Exception:
                log.exception("cache matcher %s failed", type(m).__name__)
                continue
            if match is not None:
                entry = await self._get(match.storage_key)
                if entry is not None:
                    return entry, match.similarity
        return None

    async def _get(self, storage_key: str) -> Entry | None:
        try:
            return await self.store.get(storage_key)
        except Exception:  # stores do not raise; this is the belt to their braces
            log.exception("cache store %s failed on get", self.store.name)
            return None

    def _hit(self, ctx: CallContext, entry: Entry, similarity: float | None) -> Reply:
        ctx.cache = "hit"
        ctx.outcome = "cache_hit"
        ctx.status = 200
        ctx.cost_saved = entry.cost_usd
        ctx.replayed_from = (entry.provider, entry.model)
        ctx.usage = entry.response().usage
        ctx.reply_headers[HEADER] = "hit"
        hdrs = [
            ("x-fareway-provider", entry.provider),
            ("x-fareway-model", entry.model),
            ("x-fareway-route", f"{ctx.route_note}; cache=hit"),
            (HEADER, "hit"),
            ("age", str(entry.age(self.clock()))),
            ("x-fareway-cost-usd", "0"),
        ]
        if similarity is not None:
            hdrs.append(("x-fareway-cache-similarity", f"{similarity:.4f}"))
        return replay(ctx, entry, hdrs)

    # ------------------------------------------------------------------ store

    def wrap(self, ctx: CallContext, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        call = ctx.notes.get("cache")
        if not isinstance(call, CacheCall) or not call.write:
            return events
        return self._tee(ctx, call, events)

    async def _tee(
        self, ctx: CallContext, call: CacheCall, events: AsyncIterator[StreamEvent]
    ) -> AsyncIterator[StreamEvent]:
        kept: list[StreamEvent] | None = []
        size = 0
        limit = self.settings.max_entry_bytes
        entry: Entry | None = None
        try:
            async for e in events:
                if kept is not None:
                    kept.append(e)
                    if isinstance(e, PartDelta):
                        size += len(e.text) + 16
                        if size > limit:
                            kept = None  # too big to store: pass the rest through untouched
                yield e
            # the upstream's stream ended without an error: an answer, if it is complete
            if kept is not None:
                entry = self._entry(ctx, call, kept)
            if entry is not None:
                await self._store(ctx, call, entry)
        finally:
            if call.flight is not None:
                self.flights.land(call.key.storage, call.flight, entry)

    def _entry(self, ctx: CallContext, call: CacheCall, events: list[StreamEvent]) -> Entry | None:
        finish = next((e for e in reversed(events) if isinstance(e, Finish)), None)
        usage = next((e.usage for e in reversed(events) if isinstance(e, UsageUpdate)), None)
        if finish is None or usage is None or finish.reason in NOT_ANSWERS or ctx.committed is None:
            return None
        up = ctx.committed.target.upstream
        now = self.clock()
        return Entry(
            events=rechunk(events),
            stored_at=now,
            expires_at=now + call.ttl,
            provider=up.provider,
            model=up.model,
            cost_usd=self._cost(up.provider, up.model, usage),
        )

    def _cost(self, provider: str, model: str, usage: Usage) -> str | None:
        if self.price is None:
            return None
        try:
            cost = self.price(provider, model, usage)
        except Exception:
            log.exception("pricing a cache entry of %s/%s failed", provider, model)
            return None
        total = getattr(cost, "total", None)
        if not isinstance(total, Decimal):
            return None
        text = format(total.normalize(), "f")
        return "0" if text == "-0" else text

    async def _store(self, ctx: CallContext, call: CacheCall, entry: Entry) -> None:
        try:
            stored = await self.store.put(call.key.storage, entry)
        except Exception:
            log.exception("cache store %s failed on put", self.store.name)
            stored = False
        if not stored:
            return
        ctx.cache = ctx.reply_headers[HEADER] = "stored"
        for m in self.matchers:
            try:
                await m.stored(call.key, ctx)
            except Exception:
                log.exception("cache matcher %s failed to index an entry", type(m).__name__)

    async def close(self) -> None:
        await self.store.close()


class _FlightRelease:
    """A leader's flight, settled with its call (an ``Admission`` registered after admit)."""

    __slots__ = ("call", "flights")

    def __init__(self, flights: Flights, call: CacheCall) -> None:
        self.flights = flights
        self.call = call

    async def admit(self, ctx: CallContext) -> None:
        return None

    def settle(self, ctx: CallContext) -> None:
        if self.call.flight is not None:
            self.flights.land(self.call.key.storage, self.call.flight, None)


def store_clock(store: CacheStore) -> Clock:
    clock = getattr(store, "clock", None)
    if callable(clock):
        return clock
    import time

    return time.time


__all__ = ["NOT_ANSWERS", "CacheCall", "ResponseCache"]
