"""The cache stores (issue: response caching, item 5): the memory store's tests, run against the
Redis on 127.0.0.1 too; a Redis that is down answers misses and never raises; the entry's byte form
keeps text, thinking with its signature, tool calls and usage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from fareway.cache.entry import BadEntry, Entry, rechunk
from fareway.cache.redis_store import RedisStore
from fareway.cache.stores import CacheStore, MemoryStore
from fareway.events import (
    Finish,
    PartDelta,
    PartEnd,
    PartStart,
    ResponseStart,
    StreamEvent,
    UsageUpdate,
)
from fareway.types import TextPart, ThinkingPart, ToolCallPart, Usage
from tests.conftest import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def events(text: str = "Hello there, world.") -> list[StreamEvent]:
    return [
        ResponseStart("msg_1", "claude-sonnet-4-5", 1700000000, {"anthropic": {"type": "message"}}),
        UsageUpdate(Usage(input_tokens=12, output_tokens=1)),
        PartStart(0, ThinkingPart("")),
        PartDelta(0, "thinking", "Let me"),
        PartDelta(0, "thinking", " think."),
        PartDelta(0, "signature", "c2lnbmF0dXJl"),
        PartEnd(0),
        PartStart(1, TextPart("")),
        PartDelta(1, "text", text[:5]),
        PartDelta(1, "text", text[5:]),
        PartEnd(1),
        PartStart(2, ToolCallPart("toolu_1", "get_weather", "")),
        PartDelta(2, "tool_args", '{"city":'),
        PartDelta(2, "tool_args", '"Paris"}'),
        PartEnd(2),
        Finish("tool_calls"),
        UsageUpdate(Usage(input_tokens=12, output_tokens=30, reasoning_tokens=3)),
    ]


def entry(clock: Clock, ttl: float = 60.0, text: str = "Hello there, world.") -> Entry:
    return Entry(events(text), clock.now, clock.now + ttl, "anthropic", "claude-sonnet-4-5", "0.000486")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: Any) -> AsyncIterator[tuple[CacheStore, Clock]]:
    clock = Clock()
    if request.param == "memory":
        s: Any = MemoryStore(1 << 20, clock=clock)
        yield s, clock
        await s.close()
        return
    prefix = f"fareway-test:{uuid.uuid4().hex}:"
    s = RedisStore(REDIS_URL, prefix=prefix, clock=clock)
    try:
        yield s, clock
    finally:
        await s.close()
        r = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=prefix + "*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


async def test_an_entry_comes_back_whole(store: tuple[CacheStore, Clock]) -> None:
    s, clock = store
    assert await s.get("k:a:1") is None
    e = entry(clock)
    assert await s.put("k:a:1", e) is True
    got = await s.get("k:a:1")
    assert got is not None
    assert got.events == events()
    assert (got.provider, got.model, got.cost_usd) == ("anthropic", "claude-sonnet-4-5", "0.000486")
    resp = got.response()
    assert [p.kind for p in resp.content] == ["thinking", "text", "tool_call"]
    assert resp.content[0] == ThinkingPart("Let me think.", "c2lnbmF0dXJl")
    assert resp.text() == "Hello there, world."
    assert resp.tool_calls()[0].arguments == '{"city":"Paris"}'
    assert resp.usage == Usage(input_tokens=12, output_tokens=30, reasoning_tokens=3)


async def test_an_entry_expires_at_its_ttl(store: tuple[CacheStore, Clock]) -> None:
    s, clock = store
    await s.put("k:a:ttl", entry(clock, ttl=60))
    clock.now += 59.9
    got = await s.get("k:a:ttl")
    assert got is not None and got.age(clock.now) == 59
    clock.now += 0.1
    assert await s.get("k:a:ttl") is None


async def test_a_later_entry_replaces_an_earlier_one(store: tuple[CacheStore, Clock]) -> None:
    s, clock = store
    await s.put("k:a:2", entry(clock, text="first answer here"))
    await s.put("k:a:2", entry(clock, text="second answer here"))
    got = await s.get("k:a:2")
    assert got is not None and got.response().text() == "second answer here"


async def test_keys_do_not_collide(store: tuple[CacheStore, Clock]) -> None:
    s, clock = store
    await s.put("k:alice:d", entry(clock, text="alice's answer"))
    assert await s.get("k:bob:d") is None
    assert await s.get("g:team:d") is None


async def test_an_expired_entry_is_not_stored(store: tuple[CacheStore, Clock]) -> None:
    s, clock = store
    assert await s.put("k:a:3", entry(clock, ttl=0)) is False
    assert await s.get("k:a:3") is None


async def test_the_memory_store_keeps_its_byte_budget_least_recently_used_first() -> None:
    clock = Clock()
    one = len("k:a:1") + len(entry(clock).encode())
    s = MemoryStore(3 * one + one // 2, clock=clock)
    for i in (1, 2, 3):
        assert await s.put(f"k:a:{i}", entry(clock))
    assert await s.get("k:a:1") is not None  # 1 is now the most recently used
    assert await s.put("k:a:4", entry(clock))
    assert await s.get("k:a:2") is None  # the least recently used went
    assert all([await s.get(f"k:a:{i}") for i in (1, 3, 4)])
    assert s.stats.evictions == 1 and s.stats.entries == 3 and s.stats.bytes == 3 * one
    big = Entry([PartDelta(0, "text", "x" * (4 * one))], clock.now, clock.now + 60, "p", "m", None)
    assert await s.put("k:a:big", big) is False  # bigger than the whole budget: not stored


@pytest.mark.redis
async def test_a_redis_that_is_not_there_answers_misses() -> None:
    clock = Clock()
    s = RedisStore(f"redis://127.0.0.1:{free_port()}/0", clock=clock, timeout=0.2)
    try:
        assert await s.put("k:a:1", entry(clock)) is False
        assert await s.get("k:a:1") is None
        assert s.stats.errors == 1  # then it is left alone for down_for seconds
        assert await s.get("k:a:1") is None and s.stats.errors == 1
    finally:
        await s.close()


@pytest.mark.redis
async def test_unreadable_bytes_in_redis_are_a_miss() -> None:
    clock = Clock()
    prefix = f"fareway-test:{uuid.uuid4().hex}:"
    r = aioredis.Redis.from_url(REDIS_URL)
    s = RedisStore(REDIS_URL, prefix=prefix, clock=clock)
    try:
        await r.set(prefix + "k:a:1", b"not an entry", px=60_000)
        assert await s.get("k:a:1") is None and s.stats.errors == 1
    finally:
        await r.delete(prefix + "k:a:1")
        await r.aclose()
        await s.close()


def test_bad_bytes_do_not_decode() -> None:
    for data in (b"{", b"[]", b'{"v": 99}', b'{"v": 1, "events": [["z"]], "at": 0, "exp": 1}'):
        with pytest.raises(BadEntry):
            Entry.decode(data)


def test_a_whole_answer_is_cut_into_stream_sized_pieces() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    out = rechunk(
        [PartStart(0, TextPart("")), PartDelta(0, "text", text), PartDelta(0, "signature", "s" * 500)]
    )
    pieces = [e.text for e in out if isinstance(e, PartDelta) and e.kind == "text"]
    assert "".join(pieces) == text and len(pieces) > 30
    assert max(len(p) for p in pieces) <= 48
    assert next(e for e in out if isinstance(e, PartDelta) and e.kind == "signature").text == "s" * 500
    short = [PartDelta(0, "text", "Hello"), PartDelta(0, "text", " world")]
    assert rechunk(short) == short
