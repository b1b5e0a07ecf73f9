"""The Redis store (``[cache] url = "redis://..."``): entries shared by many gateway instances.

redis-py's asyncio client (the ``redis`` package, already a dependency) with no retries and short
socket timeouts (``[cache] timeout``): a Redis that refuses, hangs or drops the connection makes
the operation a miss (``get``) or a skipped store (``put``), logged once per outage, and the store
is left alone for :attr:`RedisStore.down_for` seconds after a failure so a dead Redis costs a call
nothing more than a clock read.  Keys are ``prefix + tenant:digest``; each is written with
``SET ... PX`` (the entry's TTL plus a second), and an entry read back is also checked against its
own ``expires_at`` with the store's clock (the same rule as the memory store).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from fareway.cache.entry import BadEntry, Entry
from fareway.cache.stores import Clock, StoreStats
from fareway.redis_client import fail_fast_client

log = logging.getLogger("fareway.cache")


class RedisStore:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fareway:cache:",
        timeout: float = 0.25,
        clock: Clock = time.time,
        down_for: float = 1.0,
        client: Any = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.clock = clock
        self.down_for = down_for
        self.stats = StoreStats()
        self._down_until = 0.0
        self._logged = False
        self._redis: Any = client or fail_fast_client(url, timeout)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        self._down_until = time.monotonic() + self.down_for
        if not self._logged:
            self._logged = True
            log.warning(
                "cache store %s unavailable (%s: %s: %s); calls go on as misses",
                _safe_url(self.url),
                what,
                type(exc).__name__,
                exc,
            )

    def _ok(self) -> None:
        if self._logged:
            self._logged = False
            log.warning("cache store %s is reachable again", _safe_url(self.url))

    async def get(self, key: str) -> Entry | None:
        if not self._available():
            self.stats.misses += 1
            return None
        try:
            async with asyncio.timeout(self.timeout * 2):
                raw = await self._redis.get(self.prefix + key)
        except Exception as exc:  # any failure of the store is a miss, never a failed call
            self._failed("get", exc)
            self.stats.misses += 1
            return None
        self._ok()
        if raw is None:
            self.stats.misses += 1
            return None
        try:
            entry = Entry.decode(raw)
        except BadEntry as exc:
            self.stats.errors += 1
            self.stats.misses += 1
            log.warning("unreadable cache entry %s ignored: %s", key, exc)
            return None
        if entry.expired(self.clock()):
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return entry

    async def put(self, key: str, entry: Entry) -> bool:
        if not self._available():
            return False
        ttl_ms = math.ceil((entry.expires_at - self.clock()) * 1000)
        if ttl_ms <= 0:
            return False
        try:
            async with asyncio.timeout(self.timeout * 2):
                await self._redis.set(self.prefix + key, entry.encode(), px=ttl_ms + 1000)
        except Exception as exc:  # a store that is down leaves the answer unstored, nothing more
            self._failed("set", exc)
            return False
        self._ok()
        self.stats.stores += 1
        return True

    async def close(self) -> None:
        await self._redis.aclose()


def _safe_url(url: str) -> str:
    """The URL without its password (for logs)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


__all__ = ["RedisStore"]
