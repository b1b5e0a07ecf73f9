"""Provider health shared through Redis (fareway.router.shared_health), on the real Redis.

Two (or three) SharedStats stand for gateways on one Redis, each with its own monotonic clock
(different offsets: blocks cross as wall-clock time) and one shared fake wall clock, so every end
of a cooldown is checked without waiting.  What one learns (a 429's Retry-After, a quota wall, an
open circuit, latency numbers) the others see; a circuit that closes is cleared everywhere; a
Redis that dies leaves every gateway routing on its own view, and what was learned meanwhile is
written when it is back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from fareway.router.breaker import BreakerConfig
from fareway.router.shared_health import SharedStats
from tests.redis_server import OwnRedis

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"
OFFER = "openai/gpt-4o-mini"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def until(cond: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait for ``cond`` (pub/sub delivery is asynchronous); fail naming ``what`` after ``within`` seconds."""
    for _ in range(int(within / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.wall = Clock(1_800_000_000.0)
        self.members: list[SharedStats] = []

    async def member(self, name: str, offset: float, start: bool = True) -> SharedStats:
        s = SharedStats(
            redis_url=self.url,
            prefix=self.prefix,
            clock=Clock(offset),
            wall=self.wall,
            instance=name,
            sync_interval=0.05,
            timeout=0.5,
            breaker=BreakerConfig(failure_threshold=3, cooldown_s=5.0),
        )
        self.members.append(s)
        if start:
            await s.start()
        return s

    def advance(self, seconds: float) -> None:
        self.wall.t += seconds
        for m in self.members:
            m.clock.t += seconds  # type: ignore[attr-defined]

    async def close(self) -> None:
        for m in self.members:
            await m.close()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    prefix = f"fwtest-{uuid.uuid4().hex[:10]}:"
    c = Cluster(REDIS_URL, prefix)
    yield c
    await c.close()
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


def fail(
    s: SharedStats, status: int, retry_after: float | None = None, headers: dict[str, str] | None = None
) -> None:
    tok = s.begin(OFFER)
    s.end(tok, False, 0.1, 0, status, retry_after, headers)


async def test_a_429_cooldown_learned_by_one_gateway_blocks_the_other(cluster: Cluster) -> None:
    a = await cluster.member("a", 100.0)
    b = await cluster.member("b", 5_000.0)
    assert b.available(OFFER)
    fail(a, 429, retry_after=30)
    assert not a.available(OFFER)
    await until(lambda: not b.available(OFFER), "b to learn a's cooldown over pub/sub")
    snap = b.snapshot(OFFER)
    assert not snap.available
    assert snap.reason == "cooling down: retry-after 30s after status 429 (learned by a)"
    assert snap.cooldown_until == pytest.approx(5_000.0 + 30)  # on b's own clock
    cluster.advance(29.9)
    assert not b.available(OFFER)
    cluster.advance(0.2)
    assert b.available(OFFER) and a.available(OFFER)


async def test_a_quota_wall_and_a_default_429_cooldown_are_shared(cluster: Cluster) -> None:
    a = await cluster.member("a", 0.0)
    b = await cluster.member("b", 0.0)
    # an answer that leaves the day's requests at 0 until its reset: a quota wall
    tok = a.begin(OFFER)
    a.end(
        tok,
        True,
        0.2,
        20,
        200,
        None,
        {"x-ratelimit-remaining-requests-day": "0", "x-ratelimit-reset-requests-day": "120"},
    )
    assert not a.available(OFFER)
    await until(lambda: not b.available(OFFER), "b to learn the quota wall")
    assert b.snapshot(OFFER).reason == "rate limit: requests/day remaining 0 (learned by a)"
    assert b.snapshot(OFFER).cooldown_until == pytest.approx(120.0)
    # a 429 without any hint on another offer: the default cooldown
    other = "groq/llama-3.1-8b-instant"
    tok = a.begin(other)
    a.end(tok, False, 0.1, 0, 429, None, None)
    await until(lambda: not b.available(other), "b to learn the default 429 cooldown")
    assert b.snapshot(other).cooldown_until == pytest.approx(a.default_429_cooldown_s)


async def test_an_open_circuit_blocks_everywhere_and_its_close_clears_it(cluster: Cluster) -> None:
    a = await cluster.member("a", 0.0)
    b = await cluster.member("b", 0.0)
    for _ in range(3):
        fail(a, 500)
    assert a.breaker(OFFER).state == "open"
    await until(lambda: not b.available(OFFER), "b to learn the open circuit")
    assert b.snapshot(OFFER).reason == "circuit open: 3 consecutive failures (learned by a)"
    # a's own clock passes its cooldown (the shared wall does not: b's block would still hold);
    # its half-open probe succeeds and the circuit closes, for b too
    a.clock.t += 5.1  # type: ignore[attr-defined]
    assert a.breaker(OFFER).state == "half_open"
    tok = a.begin(OFFER)
    assert tok.probe
    a.end(tok, True, 0.2, 20, 200, None, None)
    assert a.breaker(OFFER).state == "closed"
    await until(lambda: b.available(OFFER), "b to learn that the circuit closed")


async def test_latency_numbers_are_blended_by_samples(cluster: Cluster) -> None:
    a = await cluster.member("a", 0.0)
    b = await cluster.member("b", 0.0)
    for _ in range(10):
        tok = a.begin(OFFER)
        a.first_token(tok, 2.0)
        a.end(tok, True, 3.0, 100, 200, None, None)
    for _ in range(10):
        tok = b.begin(OFFER)
        b.first_token(tok, 1.0)
        b.end(tok, True, 2.0, 100, 200, None, None)
    tok = a.begin(OFFER)
    a.end(tok, False, 0.1, 0, 500, None, None)  # 1 failure in a's 11 calls
    await a.poll()
    await b.poll()
    snap = b.snapshot(OFFER)
    assert snap.samples == 20
    assert snap.ttft_p50 == pytest.approx(1.5)  # (10 x 2.0 + 10 x 1.0) / 20
    assert snap.latency_p50 == pytest.approx(2.5)
    assert snap.error_rate == pytest.approx(1 / 21)
    assert snap.available  # one 500 opens nothing
    # b's own view without the others'
    assert SharedStats.__mro__[1].snapshot(b, OFFER).ttft_p50 == pytest.approx(1.0)


async def test_a_gateway_that_starts_later_reads_the_blocks_in_force(cluster: Cluster) -> None:
    a = await cluster.member("a", 0.0)
    a.cool_down(OFFER, 60, "operator")
    await a.flush()
    c = await cluster.member("c", 77.0)  # start() polls before it returns
    assert not c.available(OFFER)
    assert c.snapshot(OFFER).reason == "cooling down: operator (learned by a)"
    assert c.snapshot(OFFER).cooldown_until == pytest.approx(77.0 + 60)


async def test_redis_down_falls_back_to_the_local_view_and_catches_up_after() -> None:
    own = OwnRedis()
    await own.start()
    c = Cluster(own.url, "fwtest:")
    try:
        a = await c.member("a", 0.0)
        b = await c.member("b", 0.0)
        fail(a, 429, retry_after=100)
        await until(lambda: not b.available(OFFER), "b to learn a's first cooldown")
        own.kill()
        await until(lambda: not a.connected and not b.connected, "both to notice the outage")
        # routing goes on: what b learned holds, its own view answers; a learns a new cooldown
        other = "groq/llama-3.1-8b-instant"
        assert not b.available(OFFER) and b.available(other)
        tok = a.begin(other)
        a.end(tok, False, 0.1, 0, 503, 50, None)
        assert not a.available(other)
        assert b.available(other)  # not shared while Redis is down
        assert a.sync.errors >= 1 and b.sync.errors >= 1
        await own.start()  # back, empty
        await until(lambda: not b.available(other), "b to learn the cooldown a queued during the outage")
        assert a.connected
        assert b.snapshot(other).reason == "cooling down: retry-after 50s after status 503 (learned by a)"
    finally:
        await c.close()
        own.stop()


async def test_a_bucket_counted_down_locally_is_not_published_as_a_quota_wall(cluster: Cluster) -> None:
    a = await cluster.member("a", 0.0)
    b = await cluster.member("b", 0.0)
    tok = a.begin(OFFER)
    a.end(
        tok,
        True,
        0.2,
        20,
        200,
        None,
        {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "60s"},
    )
    a.begin(OFFER)
    a.begin(OFFER)  # two calls in flight: a's own count of the bucket is at 0
    assert not a.available(OFFER)
    await a.flush()
    await b.poll()
    assert b.available(OFFER)  # only what a provider reports is shared
    assert a.sync.published == 0
