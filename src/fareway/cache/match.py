"""Where a matcher other than the exact key plugs in (semantic matching, later).

The lookup stage first reads the entry stored under the request's exact key.  On a miss it asks
each :class:`Matcher`, in order, for the storage key of another entry that answers the request;
after it stores an entry it tells every matcher, so a matcher can index it.  A semantic matcher
would embed :meth:`CacheKey.last_user_text` and search only among the entries remembered under
the same :meth:`CacheKey.context_digest` (same tenant, system, tools, parameters and earlier
turns), returning the similarity it found (sent to the client as ``x-fareway-cache-similarity``).

Exact matching is the lookup itself, not a Matcher; :mod:`fareway.cache.semantic` is the one
matcher built.  Both calls get the call's context (its principal pays for any embeddings call,
its requested model names the alias whose settings apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fareway.cache.key import CacheKey

if TYPE_CHECKING:
    from fareway.pipeline.context import CallContext


@dataclass(frozen=True, slots=True)
class Match:
    storage_key: str
    """The ``CacheKey.storage`` of the entry that answers."""
    similarity: float | None = None


@runtime_checkable
class Matcher(Protocol):
    async def find(self, key: CacheKey, ctx: CallContext) -> Match | None:
        """An entry that answers the request of ``key`` though its exact key differs, or None.
        Errors are the matcher's to swallow (a failing matcher makes a miss)."""
        ...

    async def stored(self, key: CacheKey, ctx: CallContext) -> None:
        """An entry was stored under ``key.storage`` (index it)."""
        ...


__all__ = ["Match", "Matcher"]
