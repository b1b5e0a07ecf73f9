"""The reservation store, in-process and on the real Redis at 127.0.0.1:6379: all buckets of a
call or none, sliding-minute windows that never hold more than their limit in any 60 seconds,
budgets with holds that settle to the real amount and expire when their gateway dies, and no
overshoot under 200 concurrent reservations.

Time is a fake clock (no sleeping); expected numbers are worked out by hand in each test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from fareway.limits.redis_store import RedisStore
from fareway.limits.store import NANO, Bucket, MemoryStore, Refusal, ReservationStore, Ticket

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ReservationStore, Clock]]:
    clock = Clock()
    if request.param == "memory":
        yield MemoryStore(clock=clock), clock
        return
    prefix = f"fwtest-{uuid.uuid4().hex[:10]}:"
    s = RedisStore(REDIS_URL, prefix=prefix, clock=clock)
    try:
        yield s, clock
    finally:
        await s.close()
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()


def rpm(limit: int, key: str = "rl:key:k1:rpm") -> Bucket:
    return Bucket(key, "window", limit, 1)


async def test_all_buckets_or_none(store: tuple[ReservationStore, Clock]) -> None:
    s, _ = store
    roomy = rpm(10, "rl:key:a:rpm")
    tight = Bucket("rl:team:t:tpm", "window", 100, 60)
    assert isinstance(await s.reserve("r1", [roomy, tight], hold_s=60), Ticket)
    refused = await s.reserve("r2", [roomy, tight], hold_s=60)  # 60 + 60 > 100 tokens
    assert isinstance(refused, Refusal) and refused.index == 1
    # the refused call left the request bucket as it was: 1 used of 10
    levels = await s.peek([roomy, tight])
    assert [lv.used for lv in levels] == [1, 60]


async def test_window_holds_over_a_simulated_minute(store: tuple[ReservationStore, Clock]) -> None:
    """10 requests per minute, offered 3 a second for 150 simulated seconds: no 60-second span
    ever admits more than 10, and the limit is used again once the window has moved on."""
    s, clock = store
    start = clock.t
    admitted: list[float] = []
    retry_afters: list[float] = []
    for i in range(450):
        clock.t = start + i / 3
        r = await s.reserve(f"r{i}", [rpm(10)], hold_s=60)
        if isinstance(r, Ticket):
            admitted.append(clock.t)
            s.settle(r, [1])
        else:
            assert r.level.retry_after is not None
            retry_afters.append(r.level.retry_after)
    for t in admitted:
        assert sum(1 for u in admitted if t <= u < t + 60) <= 10
    # the first 10 go in during the first 3.33 s; the next only once their slots left the window
    # (61 one-second slots are counted), so at +61 s: 10 more, and again at +122 s
    assert len(admitted) == 30
    assert admitted[9] == start + 3 and admitted[10] == start + 61
    # first refused at +10/3 s; the first slot (start) leaves the window at start + 61
    assert retry_afters[0] == pytest.approx(61 - 10 / 3, abs=1e-6)


async def test_settle_replaces_the_estimate(store: tuple[ReservationStore, Clock]) -> None:
    s, _ = store
    tpm = Bucket("rl:key:k:tpm", "window", 1000, 900)  # reserved: 900 tokens
    t = await s.reserve("a", [tpm], hold_s=60)
    assert isinstance(t, Ticket)
    assert isinstance(await s.reserve("b", [tpm], hold_s=60), Refusal)
    s.settle(t, [120])  # it used 120
    await _drain(s)
    assert (await s.peek([tpm]))[0].used == 120
    assert isinstance(await s.reserve("c", [tpm], hold_s=60), Refusal)  # 120 + 900 > 1000
    smaller = Bucket(tpm.key, "window", 1000, 880)
    assert isinstance(await s.reserve("d", [smaller], hold_s=60), Ticket)  # 120 + 880 <= 1000


async def _drain(s: ReservationStore) -> None:
    pending = getattr(s, "_pending", None)
    if pending:
        await asyncio.gather(*pending)


async def test_budget_spent_held_and_released(store: tuple[ReservationStore, Clock]) -> None:
    s, clock = store
    day_end = clock.t + 3600
    b = Bucket("bg:key:k:daily:2027-01-15", "budget", 10 * NANO, 4 * NANO, day_end)  # $10, $4 a call
    t1 = await s.reserve("c1", [b], hold_s=600)
    t2 = await s.reserve("c2", [b], hold_s=600)
    assert isinstance(t1, Ticket) and isinstance(t2, Ticket)
    third = await s.reserve("c3", [b], hold_s=600)
    assert isinstance(third, Refusal)
    lv = third.level
    assert (lv.spent, lv.held, lv.remaining) == (0, 8 * NANO, 2 * NANO)
    assert lv.retry_after == 1.0  # only holds stand in the way: they may free soon
    s.settle(t1, [NANO // 2])  # call 1 cost $0.50
    await _drain(s)
    assert isinstance(await s.reserve("c3", [b], hold_s=600), Ticket)  # 0.5 + 4 + 4 <= 10
    levels = await s.peek([b])
    assert (levels[0].spent, levels[0].held) == (NANO // 2, 8 * NANO)
    # spent stands in the way: retry when the day ends
    s.settle(t2, [4 * NANO])
    await _drain(s)
    big = Bucket(b.key, "budget", b.limit, 6 * NANO, day_end)
    r = await s.reserve("c4", [big], hold_s=600)
    assert isinstance(r, Refusal) and r.level.retry_after == pytest.approx(3600.0)


async def test_holds_of_a_dead_gateway_expire(store: tuple[ReservationStore, Clock]) -> None:
    s, clock = store
    b = Bucket("bg:team:t:total:all", "budget", 5 * NANO, 5 * NANO)
    assert isinstance(await s.reserve("lost", [b], hold_s=660), Ticket)  # never settled
    assert isinstance(await s.reserve("next", [b], hold_s=660), Refusal)
    clock.t += 661
    assert isinstance(await s.reserve("next", [b], hold_s=660), Ticket)


async def test_seed_only_a_new_bucket(store: tuple[ReservationStore, Clock]) -> None:
    s, _ = store
    b = Bucket("bg:key:k:monthly:2027-01", "budget", 10 * NANO, NANO)
    await s.seed(b.key, 9 * NANO + 1, None)
    r = await s.reserve("x", [b], hold_s=60)  # 9.000000001 + 1 > 10
    assert isinstance(r, Refusal) and r.level.spent == 9 * NANO + 1
    await s.seed(b.key, 0, None)  # the bucket exists: left alone
    assert (await s.peek([b]))[0].spent == 9 * NANO + 1


async def test_large_budgets_are_exact(store: tuple[ReservationStore, Clock]) -> None:
    """A $900,000 budget in nano-dollars (9e14) is beyond what a Lua number prints exactly."""
    s, _ = store
    b = Bucket("bg:key:big:total:all", "budget", 900_000 * NANO, 899_999 * NANO + 123)
    t = await s.reserve("x", [b], hold_s=60)
    assert isinstance(t, Ticket)
    s.settle(t, [899_999 * NANO + 123])
    await _drain(s)
    lv = (await s.peek([b]))[0]
    assert (lv.spent, lv.held) == (899_999 * NANO + 123, 0)


async def test_200_concurrent_reservations_never_overshoot(store: tuple[ReservationStore, Clock]) -> None:
    """Budget $50, each call holds $1 (its worst case) and really costs between $0.20 and $1:
    whatever the interleaving, the spend never passes the budget (every estimate is an upper
    bound, so not even by one reservation), and at least 50 calls get in."""
    s, _ = store
    budget = Bucket("bg:key:k:daily:2027-01-15", "budget", 50 * NANO, NANO)
    team = Bucket("bg:team:t:daily:2027-01-15", "budget", 1000 * NANO, NANO)
    requests = Bucket("rl:key:k:rpm", "window", 10_000, 1)
    admitted = 0

    async def call(i: int) -> None:
        nonlocal admitted
        r = await s.reserve(f"c{i}", [requests, budget, team], hold_s=600)
        if isinstance(r, Ticket):
            admitted += 1
            await asyncio.sleep(0)
            cost = NANO // 5 + (i * 7919) % (NANO - NANO // 5)
            s.settle(r, [1, cost, cost])

    await asyncio.gather(*(call(i) for i in range(200)))
    await _drain(s)
    spent = (await s.peek([budget]))[0].spent
    assert spent <= 50 * NANO
    assert admitted >= 50
    assert (await s.peek([team]))[0].spent == spent
