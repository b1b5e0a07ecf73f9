"""The limits admission: budgets and rate limits, reserved before the call and settled after.

In the admit stage (after the route is resolved), for a key with limits of its own or of its team:

* **estimate** the call's worst case: prompt tokens counted offline (``fareway.tokens``, the
  router's count when it made one) times ``prompt_margin``; output bounded by ``max_tokens``
  (times ``n``) or, when the request sets none, ``output_tokens``; its cost at the highest
  price among the targets of a fallback chain (and the sum over a race's legs, which may all run
  at once), taking the dearer of uncached and cache-write input, of output and reasoning prices;
* **reserve** one request, those tokens and that cost in every bucket of the key and its team
  (requests and tokens per minute, USD per day, month, total) in ONE atomic store step;
* **refuse** when a bucket cannot hold it: 429 with OpenAI's ``x-ratelimit-*`` headers and
  ``Retry-After`` for a rate limit, 402 with the remaining budget (message and
  ``x-fareway-budget-*`` headers) and ``Retry-After`` where a window resets, for a budget; in the
  caller's dialect.  A budgeted call no price is known for is refused (402) or, with
  ``unpriced = "admit"``, admitted holding nothing for its cost;
* **settle** once the call is accounted, whatever its outcome: the real tokens (every attempt's)
  and the real cost (``ctx.cost_usd``) replace the reservation; a call whose cost is still
  unknown then (a long prompt estimated in a thread, an unpriced model) is charged its
  reservation.

Spend already in the ledger counts: a budget bucket that the store does not have yet is seeded,
once per process, from the ledger's sum of the key's (or the team's keys') costs in its period.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fareway.errors import BudgetExceeded, FarewayError, RateLimited
from fareway.keys.records import Limits, Principal, Window
from fareway.ledger.seams import PriceSource
from fareway.limits.headers import budget_headers, go_duration, rate_headers, to_nano, usd
from fareway.limits.settings import LimitSettings
from fareway.limits.store import (
    Bucket,
    BucketUnseeded,
    Level,
    Refusal,
    ReservationStore,
    StoreUnavailable,
    Ticket,
)
from fareway.pipeline.context import CallContext
from fareway.router.routes import Race, Route, Split, Target, targets
from fareway.tokens import count_tokens, estimate_text_tokens
from fareway.types import EmbeddingRequest, Usage

log = logging.getLogger("fareway.limits")

SpendFn = Callable[[str, str, datetime | None], Awaitable[Decimal]]
"""``(scope, owner id, since)`` -> the USD the ledger holds for it since then (None: ever);
scope is ``key`` or ``team``."""

_BIG_BODY = 32_000
"""Requests larger than this (bytes) have their prompt counted in a worker thread."""


class LimitsUnavailable(FarewayError):
    status = 503
    type = "service_unavailable"
    code = "limits_unavailable"


def period(window: Window, now: float) -> tuple[str, datetime | None, float | None]:
    """(label, start, end as Unix time) of the UTC period containing ``now``."""
    if window == "total":
        return "all", None, None
    return _period(window, int(now // 86400))


@lru_cache(maxsize=64)
def _period(window: Window, day: int) -> tuple[str, datetime | None, float | None]:
    t = datetime.fromtimestamp(day * 86400, UTC)
    if window == "daily":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.strftime("%Y-%m-%d"), start, start.timestamp() + 86400
    if window == "monthly":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start.strftime("%Y-%m"), start, nxt.timestamp()
    return "all", None, None


def _owners(p: Principal) -> list[tuple[str, str, str, Limits]]:
    """(scope, id, name, limits) of the key and its team, where they have any."""
    out = []
    if p.key_limits.any:
        out.append(("key", p.key_id, p.name, p.key_limits))
    if p.team_id is not None and p.team_limits.any:
        out.append(("team", p.team_id, p.team_name or p.team_id, p.team_limits))
    return out


class WorstRates:
    """Per (provider, model): the dearest input and output rate in nano-dollars per token (input:
    uncached or cache-write; output: plain or reasoning), from the price source's unit prices,
    kept for the UTC day.  A model with prompt-size tiers is priced exactly instead
    (:func:`worst_cost`)."""

    def __init__(self, prices: PriceSource) -> None:
        self.prices = prices
        self._day = -1
        self._rates: dict[tuple[str, str], tuple[float, float] | None] = {}

    def cost_nano(self, provider: str, model: str, prompt: int, output: int, now: float) -> int | None:
        """The worst cost of one target, or None when it has no price."""
        day = int(now // 86400)
        if day != self._day:
            self._day, self._rates = day, {}
        key = (provider, model)
        if key in self._rates:
            rates = self._rates[key]
        else:
            rates = self._rates[key] = self._rates_of(provider, model)
        if rates is None:  # unpriced, or tiered: the exact path
            exact = worst_cost(self.prices, [key], prompt, output)
            return None if exact is None else to_nano(exact)
        return math.ceil(prompt * rates[0] + output * rates[1])

    def _rates_of(self, provider: str, model: str) -> tuple[float, float] | None:
        u = self.prices.unit_prices(provider, model)
        if u is None or u.tiered:
            return None
        per_token = 1000.0  # USD per million tokens -> nano-dollars per token
        inp = float(max(u.input, u.cache_write)) * per_token
        out = float(max(u.output, u.reasoning if u.reasoning is not None else u.output)) * per_token
        return inp, out


def route_worst(route: Route, leaf: Callable[[Target], int | None]) -> int | None:
    """A route's worst case from its targets': a race may run every leg at once (the sum), a
    fallback chain or a split runs one of its children to the end (the highest); None when a
    target's is unknown."""
    if isinstance(route, Target):
        return leaf(route)
    kids = (
        [route_worst(r, leaf) for _, r in route.choices]
        if isinstance(route, Split)
        else [route_worst(r, leaf) for r in route.routes]
    )
    if any(k is None for k in kids):
        return None
    known = [k for k in kids if k is not None]
    if not known:
        return 0
    return sum(known) if isinstance(route, Race) else max(known)


def worst_cost(
    prices: PriceSource, ups: Sequence[tuple[str, str]], prompt: int, output: int
) -> Decimal | None:
    """The highest cost of ``prompt`` input and ``output`` tokens over every (provider, model) in
    ``ups``; None when one of them has no price."""
    # the input all uncached, or all written to the cache (Anthropic: 1.25x); the output all
    # plain, or all reasoning (where that is priced apart); the two shapes bound every mix
    shapes = (
        Usage(prompt, output),
        Usage(prompt, output, cache_write_tokens=prompt, reasoning_tokens=output),
    )
    worst = Decimal(0)
    for provider, model in dict.fromkeys(ups):
        for u in shapes:
            c = prices.price(provider, model, u)
            if c is None:
                return None
            if c.total > worst:
                worst = c.total
    return worst


class _Held:
    __slots__ = ("names", "reserved_cost", "reserved_tokens", "ticket")

    def __init__(self, ticket: Ticket, tokens: int, cost: int, names: dict[str, str]) -> None:
        self.ticket = ticket
        self.reserved_tokens = tokens
        self.reserved_cost = cost
        self.names = names


class LimitsAdmission:
    def __init__(
        self,
        store: ReservationStore,
        settings: LimitSettings,
        prices: PriceSource | None,
        *,
        spend: SpendFn | None = None,
        hold_s: float = 660.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.prices = prices
        self.spend = spend
        self.hold_s = hold_s
        self.clock = clock
        self._seeded: set[str] = set()
        self._seeding: dict[str, asyncio.Future[None]] = {}
        self._rates = WorstRates(prices) if prices is not None else None

    # ------------------------------------------------------------------ estimate

    def _count(self, ctx: CallContext) -> int:
        """The prompt's tokens, offline (o200k): the router's count when it made one."""
        emb = ctx.notes.get("embedding_request")
        if isinstance(emb, EmbeddingRequest):
            return sum(estimate_text_tokens(i) if isinstance(i, str) else len(i) for i in emb.inputs)
        decision = ctx.decision
        if decision is not None and decision.requirements is not None and decision.requirements.prompt_tokens:
            return decision.requirements.prompt_tokens
        return count_tokens(ctx.req) if ctx.req is not None else 0

    async def _prompt_tokens(self, ctx: CallContext) -> int:
        """:meth:`_count` times the margin; a long request is counted in a worker thread."""
        n = await asyncio.to_thread(self._count, ctx) if len(ctx.body) > _BIG_BODY else self._count(ctx)
        return math.ceil(n * self.settings.prompt_margin)

    def _output_tokens(self, ctx: CallContext) -> int:
        req = ctx.req
        if req is None:
            return 0
        per_choice = (
            req.max_tokens
            if req.max_tokens is not None and req.max_tokens > 0
            else self.settings.output_tokens
        )
        return per_choice * max(1, req.n or 1)

    def _targets(self, ctx: CallContext) -> list[tuple[str, str]]:
        if ctx.decision is None:
            return []
        return [(t.upstream.provider, t.upstream.model) for t in targets(ctx.decision.route)]

    def _worst(self, ctx: CallContext, prompt: int, output: int, now: float) -> tuple[int, int | None]:
        """(tokens, nano-dollars) the call may use at worst (None: a target has no price)."""
        route = ctx.decision.route if ctx.decision is not None else None
        if route is None:
            return prompt + output, 0
        tokens = route_worst(route, lambda t: prompt + output) or 0
        rates = self._rates
        if rates is None:
            return tokens, None
        cost = route_worst(
            route, lambda t: rates.cost_nano(t.upstream.provider, t.upstream.model, prompt, output, now)
        )
        return tokens, cost

    # -------------------------------------------------------------------- seeding

    async def _ensure_seeded(
        self, key: str, scope: str, owner: str, since: datetime | None, ends_at: float | None
    ) -> None:
        if key in self._seeded:
            return
        fut = self._seeding.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._seed(key, scope, owner, since, ends_at))
            self._seeding[key] = fut
            fut.add_done_callback(lambda f, k=key: self._seeding.pop(k, None))  # type: ignore[misc]
        await asyncio.shield(fut)

    async def _seed(
        self, key: str, scope: str, owner: str, since: datetime | None, ends_at: float | None
    ) -> None:
        spent = Decimal(0)
        if self.spend is not None:
            spent = await self.spend(scope, owner, since)
        await self.store.seed(key, to_nano(spent), ends_at)
        if len(self._seeded) > 100_000:
            self._seeded.clear()  # seeding again is harmless: an existing bucket is left alone
        self._seeded.add(key)

    # --------------------------------------------------------------------- admit

    async def admit(self, ctx: CallContext) -> None:
        p = ctx.principal
        if not (p.key_limits.any or p.team_limits.any):
            return
        owners = _owners(p)
        budgeted = any(lim.budgeted for *_, lim in owners)
        tokens_needed = budgeted or any(lim.tpm for *_, lim in owners)
        if not tokens_needed:
            prompt = 0
        elif len(ctx.body) > _BIG_BODY:
            prompt = await self._prompt_tokens(ctx)
        else:
            prompt = math.ceil(self._count(ctx) * self.settings.prompt_margin)
        output = self._output_tokens(ctx) if tokens_needed else 0
        cost = 0
        now = self.clock()
        tokens, worst = self._worst(ctx, prompt, output, now) if tokens_needed else (0, 0)
        if budgeted:
            if worst is None:
                if self.settings.unpriced == "refuse":
                    raise BudgetExceeded(
                        f"The cost of this call cannot be estimated (no price is known for "
                        f"{', '.join(sorted({f'{a}/{b}' for a, b in self._targets(ctx)}))}), and this key has a budget; "
                        "it is refused (the gateway's [limits] unpriced setting).",
                        remaining_usd="unknown",
                        code="unpriced_call",
                    )
            else:
                cost = worst
        buckets: list[Bucket] = []
        names: dict[str, str] = {}
        seeds: dict[str, tuple[str, str, datetime | None, float | None]] = {}
        try:
            for scope, owner, name, lim in owners:
                names[owner] = name
                if lim.rpm:
                    buckets.append(Bucket(f"rl:{scope}:{owner}:rpm", "window", lim.rpm, 1))
                if lim.tpm:
                    buckets.append(Bucket(f"rl:{scope}:{owner}:tpm", "window", lim.tpm, tokens))
                for window, limit_usd in lim.budgets():
                    label, since, ends_at = period(window, now)
                    key = f"bg:{scope}:{owner}:{window}:{label}"
                    seeds[key] = (scope, owner, since, ends_at)
                    if key not in self._seeded:
                        await self._ensure_seeded(key, scope, owner, since, ends_at)
                    buckets.append(Bucket(key, "budget", to_nano(limit_usd), cost, ends_at, seeded=True))
            for tries in range(len(seeds) + 2):
                try:
                    result = await self.store.reserve(ctx.request_id, buckets, hold_s=self.hold_s)
                    break
                except BucketUnseeded as lost:  # the store lost a budget's spend: seed it again
                    if lost.key not in seeds or tries > len(seeds):
                        raise StoreUnavailable(f"the budget {lost.key} cannot be seeded") from lost
                    log.warning("limits store lost budget %s: seeding it again from the ledger", lost.key)
                    self._seeded.discard(lost.key)
                    await self._ensure_seeded(lost.key, *seeds[lost.key])
        except (StoreUnavailable, OSError) as exc:
            if self.settings.on_store_error == "admit":
                log.error("limits store unavailable (%s): call %s admitted unmetered", exc, ctx.request_id)
                return
            raise LimitsUnavailable(
                "Budgets and rate limits cannot be checked right now (their store is unavailable); try again shortly."
            ) from exc
        if isinstance(result, Refusal):
            raise self._refusal(result, names, p)
        ctx.notes["limits"] = _Held(result, tokens, cost, names)
        ctx.reply_headers.update(rate_headers(result.levels) + budget_headers(result.levels))

    def _refusal(self, r: Refusal, names: dict[str, str], p: Principal) -> FarewayError:
        lv = r.level
        b = lv.bucket
        parts = b.key.split(":")
        scope, owner = parts[1], parts[2]
        who = f"{scope} `{names.get(owner, owner)}`"
        headers = tuple(rate_headers(r.levels) + budget_headers(r.levels))
        if b.kind == "window":
            unit = "requests" if b.key.endswith(":rpm") else "tokens"
            if lv.retry_after is None:
                msg = f"This request needs {b.amount} {unit}, more than the {who} may use in a minute ({b.limit})."
            else:
                msg = (
                    f"Rate limit reached for {who}: {b.limit} {unit} per minute, {lv.used} used in the last minute, "
                    f"this request needs {b.amount}. Try again in {go_duration(lv.retry_after)}."
                )
            err: FarewayError = RateLimited(
                msg, retry_after=None if lv.retry_after is None else max(1.0, lv.retry_after)
            )
            err.reply_headers = headers
            return err
        window = parts[3]
        remaining = usd(lv.remaining)
        msg = (
            f"Budget exceeded: the {window} budget of {who} is ${usd(b.limit)} with ${remaining} remaining "
            f"(${usd(lv.spent)} spent, ${usd(lv.held)} held by calls in flight); this request may cost up to "
            f"${usd(b.amount)}."
        )
        if lv.retry_after is not None:
            msg += f" Retry in {go_duration(lv.retry_after)}."
        err = BudgetExceeded(msg, remaining_usd=remaining, retry_after=lv.retry_after)
        err.reply_headers = headers
        return err

    # -------------------------------------------------------------------- settle

    def settle(self, ctx: CallContext) -> None:
        held = ctx.notes.get("limits")
        if not isinstance(held, _Held):
            return
        tokens, cost = self._actual(ctx, held)
        actual = []
        for b in held.ticket.buckets:
            if b.kind == "budget":
                actual.append(cost)
            elif b.key.endswith(":tpm"):
                actual.append(tokens)
            else:
                actual.append(1)
        self.store.settle(held.ticket, actual)

    @staticmethod
    def _actual(ctx: CallContext, held: _Held) -> tuple[int, int]:
        """(tokens, nano-dollars) the call really used; the reservation where still unknown."""
        tokens = 0
        unknown = False
        for a in ctx.attempts.attempts:
            if a.usage is not None:
                tokens += a.usage.input_tokens + a.usage.output_tokens
            elif a.outcome in ("ok", "cancelled", "pending") or a.output_chars:
                unknown = True  # it reached the provider; its usage is still being estimated
        if ctx.cost_usd is not None:
            cost = to_nano(Decimal(ctx.cost_usd))
        elif unknown or any(a.usage is not None and a.usage.total_tokens for a in ctx.attempts.attempts):
            cost = held.reserved_cost
        else:
            cost = 0
        if unknown:
            tokens = max(tokens, held.reserved_tokens)
        return tokens, cost

    # -------------------------------------------------------------------- status

    async def status(self, p: Principal) -> dict[str, Any]:
        """The key's and its team's limits and where they stand (for ``GET /v1/key``)."""
        now = self.clock()
        out: dict[str, Any] = {}
        for scope, owner, name, lim in [
            ("key", p.key_id, p.name, p.key_limits),
            ("team", p.team_id or "", p.team_name or "", p.team_limits),
        ]:
            if scope == "team" and p.team_id is None:
                continue
            buckets: list[Bucket] = []
            if lim.rpm:
                buckets.append(Bucket(f"rl:{scope}:{owner}:rpm", "window", lim.rpm, 0))
            if lim.tpm:
                buckets.append(Bucket(f"rl:{scope}:{owner}:tpm", "window", lim.tpm, 0))
            for window, limit_usd in lim.budgets():
                label, since, ends_at = period(window, now)
                key = f"bg:{scope}:{owner}:{window}:{label}"
                await self._ensure_seeded(key, scope, owner, since, ends_at)
                buckets.append(Bucket(key, "budget", to_nano(limit_usd), 0, ends_at))
            levels = await self.store.peek(buckets) if buckets else []
            out[scope] = {"id": owner, "name": name, **_describe(levels)}
        return out


def _describe(levels: list[Level]) -> dict[str, Any]:
    rate: dict[str, Any] = {}
    budgets: dict[str, Any] = {}
    for lv in levels:
        b = lv.bucket
        if b.kind == "window":
            unit = "requests_per_minute" if b.key.endswith(":rpm") else "tokens_per_minute"
            rate[unit] = {"limit": b.limit, "remaining": lv.remaining, "reset": go_duration(lv.reset_s)}
        else:
            window = b.key.split(":")[3]
            budgets[window] = {
                "limit_usd": usd(b.limit),
                "spent_usd": usd(lv.spent),
                "held_usd": usd(lv.held),
                "remaining_usd": usd(lv.remaining),
                "resets_at": None
                if b.ends_at is None
                else datetime.fromtimestamp(b.ends_at, UTC).isoformat().replace("+00:00", "Z"),
            }
    return {"rate_limits": rate, "budgets": budgets}
