"""Cache stores: the contract, and the in-memory store (the embedded default).

A store never raises to its caller: a store that is down, slow or holding unreadable bytes
answers ``get`` with None (a miss) and ``put`` with False (not stored), and counts the failure in
:attr:`StoreStats.errors`.  Expiry is checked against the entry's own ``expires_at`` with the
store's clock (injectable, so tests move time without sleeping); a store may also drop entries on
its own (Redis expires keys server-side, the memory store evicts by its byte budget).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fareway.cache.entry import Entry

Clock = Callable[[], float]
"""Wall-clock seconds (``time.time``): entries shared by many gateways need one time base."""


@dataclass(slots=True)
class StoreStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    errors: int = 0
    entries: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stores": self.stores,
            "evictions": self.evictions,
            "errors": self.errors,
            "entries": self.entries,
            "bytes": self.bytes,
        }


@runtime_checkable
class CacheStore(Protocol):
    name: str
    stats: StoreStats

    async def get(self, key: str) -> Entry | None:
        """The live entry under ``key``, or None (absent, expired, or the store unreachable)."""
        ...

    async def put(self, key: str, entry: Entry) -> bool:
        """Store ``entry`` until its ``expires_at``; False when it was not stored."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """An LRU map bounded by a byte budget (each entry counted at its byte form's size plus its
    key), with per-entry expiry.  One process's entries; nothing is shared between instances."""

    name = "memory"

    def __init__(self, max_bytes: int, *, clock: Clock = time.time) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.stats = StoreStats()
        self._items: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            self.stats.misses += 1
            return None
        entry = item[0]
        if entry.expired(self.clock()):
            self._drop(key)
            self.stats.misses += 1
            return None
        self._items.move_to_end(key)
        self.stats.hits += 1
        return entry

    async def put(self, key: str, entry: Entry) -> bool:
        size = len(key) + len(entry.encode())
        if size > self.max_bytes or entry.expired(self.clock()):
            return False
        if key in self._items:
            self._drop(key)
        self._items[key] = (entry, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)
            self.stats.evictions += 1
        self.stats.stores += 1
        self._sync()
        return True

    def _drop(self, key: str) -> None:
        _, size = self._items.pop(key)
        self._bytes -= size
        self._sync()

    def _sync(self) -> None:
        self.stats.entries = len(self._items)
        self.stats.bytes = self._bytes

    async def close(self) -> None:
        self._items.clear()
        self._bytes = 0
        self._sync()


__all__ = ["CacheStore", "Clock", "MemoryStore", "StoreStats"]
