"""The reservation store: one atomic step across every bucket a call counts against.

A call is admitted only if *every* bucket can hold its amount, and then every bucket holds it;
otherwise none changes (TensorZero's shape: consume a conservative estimate up front, return the
unused part afterwards).  Two kinds of bucket:

``window``  requests or tokens in a sliding minute (rate limits).  Counted in one-second slots;
            a call is admitted when the slots of the last 61 seconds (a window that covers any
            minute ending now) plus its amount stay within the limit, so no 60-second span ever
            holds more than the limit.  Settling replaces the amount by the real one in its slot.
``budget``  USD (as integer nano-dollars) spent in a period: ``spent`` (settled calls) plus
            ``held`` (in-flight reservations, each with an expiry, so a gateway that dies
            mid-call releases its holds after ``hold_s``).  A call is admitted when spent + held
            + its amount stay within the limit.  Settling drops the hold and adds the real cost.

Implementations: :class:`MemoryStore` (one gateway process; atomic because it never awaits in
the middle) and :class:`fareway.limits.redis_store.RedisStore` (many gateways; one Lua script per
reserve, settle, peek).  The scale-out work reuses this interface.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Kind = Literal["window", "budget"]

SLOT_S = 1.0
"""Width of a rate-limit slot."""
KEEP_SLOTS = 61
"""Slots a window counts (the current one and the 60 before it)."""
NANO = 1_000_000_000
"""Budget amounts are integer nano-dollars (USD * 1e9)."""


class StoreUnavailable(Exception):
    """The reservation store cannot be reached (or answered with an error)."""


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    """The bucket's name in the store (``rl:key:<id>:rpm``, ``bg:team:<id>:daily:2026-12-03``)."""
    kind: Kind
    limit: int
    amount: int
    """What this call reserves (1 request, N tokens, N nano-dollars)."""
    ends_at: float | None = None
    """A budget of a day or month: the Unix time its period ends (the bucket expires after it)."""
    seeded: bool = False
    """A budget the caller seeded from the ledger: a store that no longer holds its spend raises
    :class:`BucketUnseeded` instead of counting from 0."""


@dataclass(slots=True)
class Level:
    """A bucket as the store saw it: ``used`` counts this call when it was admitted."""

    bucket: Bucket
    used: int
    reset_s: float
    """Window: seconds until it is empty again.  Budget: until its period ends (inf: never)."""
    retry_after: float | None = None
    """When refused: seconds until this call's amount could fit (None: not within the window)."""
    spent: int = 0
    held: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.bucket.limit - self.used)


@dataclass(slots=True)
class Ticket:
    """An admitted call's reservation: settle it exactly once."""

    rid: str
    buckets: tuple[Bucket, ...]
    slot: int
    levels: list[Level]
    settled: bool = False


class BucketUnseeded(Exception):
    """The store does not hold a budget's spend (a Redis that restarted or evicted it): seed it
    from the ledger, then reserve again."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(slots=True)
class Refusal:
    index: int
    """The first bucket that could not hold the call."""
    levels: list[Level]

    @property
    def level(self) -> Level:
        return self.levels[self.index]


@runtime_checkable
class ReservationStore(Protocol):
    async def reserve(self, rid: str, buckets: Sequence[Bucket], *, hold_s: float) -> Ticket | Refusal:
        """Every bucket holds its amount (a Ticket), or none changes (a Refusal)."""
        ...

    def settle(self, ticket: Ticket, actual: Sequence[int]) -> None:
        """Replace the ticket's amounts by ``actual`` (one per bucket) and drop its budget holds.
        Returns at once (a networked store finishes in the background; ``close`` waits)."""
        ...

    async def peek(self, buckets: Sequence[Bucket]) -> list[Level]:
        """The buckets' levels without reserving (``amount`` is ignored)."""
        ...

    async def seed(self, key: str, spent: int, ends_at: float | None) -> None:
        """A budget bucket that does not exist yet starts at ``spent`` (from the ledger); one that
        exists is left alone."""
        ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------------ shared arithmetic


def slot_of(now: float) -> int:
    return math.floor(now / SLOT_S)


def window_reset(slots: dict[int, int], now: float) -> float:
    """Seconds until every slot with something in it has left the window."""
    live = [s for s, v in slots.items() if v > 0]
    if not live:
        return 0.0
    return max(0.0, (max(live) + KEEP_SLOTS) * SLOT_S - now)


def window_retry(slots: dict[int, int], used: int, amount: int, limit: int, now: float) -> float | None:
    """Seconds until enough slots have left the window for ``amount`` to fit (None: never)."""
    if amount > limit:
        return None
    need = used + amount - limit
    freed = 0
    for s in sorted(slots):
        freed += slots[s]
        if freed >= need:
            return max(0.0, (s + KEEP_SLOTS) * SLOT_S - now)
    return float(KEEP_SLOTS * SLOT_S)


def budget_retry(b: Bucket, spent: int, now: float, hold_retry_s: float) -> float | None:
    """In-flight holds in the way: retry soon.  Spend in the way: when the period ends."""
    if spent + b.amount <= b.limit:
        return hold_retry_s
    return None if b.ends_at is None else max(0.0, b.ends_at - now)


def budget_reset(b: Bucket, now: float) -> float:
    return math.inf if b.ends_at is None else max(0.0, b.ends_at - now)


# ------------------------------------------------------------------------------ in-process


@dataclass(slots=True)
class _Window:
    slots: dict[int, int] = field(default_factory=dict)
    total: int = 0
    oldest: int = 0

    def prune(self, cur: int) -> None:
        first = cur - KEEP_SLOTS + 1
        if self.oldest < first:
            if first - self.oldest > KEEP_SLOTS:
                self.slots = {s: v for s, v in self.slots.items() if s >= first}
                self.total = sum(self.slots.values())
            else:
                for s in range(self.oldest, first):
                    self.total -= self.slots.pop(s, 0)
            self.oldest = first


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    ends_at: float | None = None

    def prune(self, now: float) -> None:
        if not self.holds:
            return
        for rid in [r for r, (_, exp) in self.holds.items() if exp <= now]:
            self.held -= self.holds.pop(rid)[0]


class MemoryStore:
    """The in-process store: buckets in dicts; reserve and settle never await, so each is atomic
    on the event loop.  Day and month buckets are dropped a day after their period ends."""

    def __init__(self, *, clock: Callable[[], float] = time.time, hold_retry_s: float = 1.0) -> None:
        self.clock = clock
        self.hold_retry_s = hold_retry_s
        self._windows: dict[str, _Window] = {}
        self._budgets: dict[str, _Budget] = {}
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 600
        cur = slot_of(now)
        for k in [k for k, w in self._windows.items() if not w.slots or max(w.slots) < cur - KEEP_SLOTS]:
            del self._windows[k]
        for k in [k for k, b in self._budgets.items() if b.ends_at is not None and b.ends_at + 86400 < now]:
            del self._budgets[k]

    def _window(self, key: str, cur: int) -> _Window:
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window(oldest=cur - KEEP_SLOTS + 1)
        w.prune(cur)
        return w

    def _budget(self, b: Bucket, now: float) -> _Budget:
        state = self._budgets.get(b.key)
        if state is None:
            state = self._budgets[b.key] = _Budget(ends_at=b.ends_at)
        state.prune(now)
        return state

    def reserve_now(self, rid: str, buckets: Sequence[Bucket], *, hold_s: float) -> Ticket | Refusal:
        now = self.clock()
        self._sweep(now)
        cur = slot_of(now)
        states: list[_Window | _Budget] = []
        refused = -1
        for i, b in enumerate(buckets):
            if b.kind == "window":
                w = self._window(b.key, cur)
                states.append(w)
                used = w.total
            else:
                s = self._budget(b, now)
                states.append(s)
                used = s.spent + s.held
            if refused < 0 and used + b.amount > b.limit:
                refused = i
        if refused < 0:
            for b, st in zip(buckets, states, strict=True):
                if isinstance(st, _Window):
                    st.slots[cur] = st.slots.get(cur, 0) + b.amount
                    st.total += b.amount
                else:
                    st.held += b.amount
                    st.holds[rid] = (b.amount, now + hold_s)
        levels = [
            self._level(b, st, now, cur if refused < 0 else None)
            for b, st in zip(buckets, states, strict=True)
        ]
        if refused >= 0:
            lv, st = levels[refused], states[refused]
            b = buckets[refused]
            lv.retry_after = (
                window_retry(st.slots, st.total, b.amount, b.limit, now)
                if isinstance(st, _Window)
                else budget_retry(b, st.spent, now, self.hold_retry_s)
            )
            return Refusal(refused, levels)
        return Ticket(rid, tuple(buckets), cur, levels)

    def _level(self, b: Bucket, st: _Window | _Budget, now: float, cur: int | None) -> Level:
        if isinstance(st, _Window):
            # admitted: this call went into the current slot, so the window empties KEEP slots later
            reset = (
                (cur + KEEP_SLOTS) * SLOT_S - now
                if cur is not None and st.total
                else window_reset(st.slots, now)
            )
            return Level(b, st.total, reset)
        return Level(b, st.spent + st.held, budget_reset(b, now), spent=st.spent, held=st.held)

    async def reserve(self, rid: str, buckets: Sequence[Bucket], *, hold_s: float) -> Ticket | Refusal:
        return self.reserve_now(rid, buckets, hold_s=hold_s)

    def settle(self, ticket: Ticket, actual: Sequence[int]) -> None:
        if ticket.settled:
            return
        ticket.settled = True
        now = self.clock()
        cur = slot_of(now)
        for b, real in zip(ticket.buckets, actual, strict=True):
            if b.kind == "window":
                w = self._windows.get(b.key)
                if w is None or ticket.slot < cur - KEEP_SLOTS + 1:
                    continue  # the reservation's slot has left the window already
                if ticket.slot in w.slots:
                    delta = max(-w.slots[ticket.slot], real - b.amount)
                    w.slots[ticket.slot] += delta
                    w.total += delta
            else:
                s = self._budgets.get(b.key)
                if s is None:
                    s = self._budgets[b.key] = _Budget(ends_at=b.ends_at)
                hold = s.holds.pop(ticket.rid, None)
                if hold is not None:
                    s.held -= hold[0]
                s.spent += max(0, real)

    async def peek(self, buckets: Sequence[Bucket]) -> list[Level]:
        now = self.clock()
        cur = slot_of(now)
        out = []
        for b in buckets:
            if b.kind == "window":
                w = self._windows.get(b.key)
                if w is not None:
                    w.prune(cur)
                out.append(Level(b, w.total if w else 0, window_reset(w.slots, now) if w else 0.0))
            else:
                s = self._budgets.get(b.key)
                if s is not None:
                    s.prune(now)
                spent, held = (s.spent, s.held) if s else (0, 0)
                out.append(Level(b, spent + held, budget_reset(b, now), spent=spent, held=held))
        return out

    async def seed(self, key: str, spent: int, ends_at: float | None) -> None:
        if key not in self._budgets:
            self._budgets[key] = _Budget(spent=spent, ends_at=ends_at)

    async def close(self) -> None:
        return None
