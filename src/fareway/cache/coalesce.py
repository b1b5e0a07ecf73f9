"""Coalescing: identical concurrent opted-in requests make one upstream call.

The first request that misses becomes the key's *leader* (its call goes upstream); the others that
arrive while it runs wait for it and are answered from its entry as hits, in their own dialect,
streamed or not.  A leader lands its flight with the entry when its answer is complete (whether or
not the store took it) or with None when it failed, was cut, or could not be cached; waiters of a
flight that landed empty look again (one of them leads the next call).  One process's flights:
instances sharing a Redis store coalesce only within themselves.
"""

from __future__ import annotations

import asyncio

from fareway.cache.entry import Entry


class Flight:
    __slots__ = ("_done", "entry", "landed", "waiters")

    def __init__(self) -> None:
        self._done = asyncio.Event()
        self.entry: Entry | None = None
        self.landed = False
        self.waiters = 0
        """Calls waiting for this flight now."""

    async def wait(self) -> Entry | None:
        """The leader's entry, or None.  Cancelling a waiter does not disturb the flight."""
        self.waiters += 1
        try:
            await self._done.wait()
        finally:
            self.waiters -= 1
        return self.entry


class Flights:
    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: str) -> Flight | None:
        return self._flights.get(key)

    def lead(self, key: str) -> Flight:
        flight = Flight()
        self._flights[key] = flight
        return flight

    def land(self, key: str, flight: Flight, entry: Entry | None) -> None:
        """End ``flight`` (idempotent: the first landing counts)."""
        if flight.landed:
            return
        flight.landed = True
        flight.entry = entry
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight._done.set()


__all__ = ["Flight", "Flights"]
