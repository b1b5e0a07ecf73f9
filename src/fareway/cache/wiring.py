"""The cache on a gateway: build its store from the settings and plug it into the seams."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fareway.cache.semantic import SemanticMatcher, VectorIndex
from fareway.cache.settings import CacheSettings
from fareway.cache.stage import PriceFn, ResponseCache
from fareway.cache.stores import CacheStore, Clock, MemoryStore

if TYPE_CHECKING:
    from fareway.pipeline.embeddings import RoutedEmbedder
    from fareway.pipeline.gateway import Gateway


def build_store(settings: CacheSettings, clock: Clock | None = None) -> CacheStore:
    """The store the settings name: Redis for a ``url``, else the in-memory LRU."""
    now = clock if clock is not None else time.time
    if settings.url:
        from fareway.cache.redis_store import RedisStore

        return RedisStore(settings.url, prefix=settings.prefix, timeout=settings.timeout, clock=now)
    return MemoryStore(settings.max_bytes, clock=now)


def install(
    gateway: Gateway, settings: CacheSettings, *, price: PriceFn | None = None, clock: Clock | None = None
) -> ResponseCache:
    """Build the cache and plug it into ``gateway`` (its store is closed with the gateway).  It is
    installed even when ``[cache] enabled = false``: it then only removes the body field and says
    ``bypass``.  When an alias asks for semantic matching, a :class:`SemanticMatcher` embedding
    through ``gateway.embeddings`` (set before this is called) is added."""
    cache = ResponseCache(settings, build_store(settings, clock), price=price, clock=clock)
    if any(a.semantic is not None for a in settings.aliases.values()):
        service = gateway.embeddings
        if service is None:
            raise RuntimeError("semantic cache matching needs the gateway's embeddings service")

        def embedder_for(model: str, principal: Any) -> RoutedEmbedder:
            return service.embedder(model, principal=principal)

        index: VectorIndex | None = None
        if settings.url:  # the vectors go where the entries go, so paraphrases match on every instance
            from fareway.cache.redis_store import RedisStore
            from fareway.cache.semantic_redis import RedisVectors

            assert isinstance(cache.store, RedisStore)
            index = RedisVectors(cache.store, settings.semantic_max_entries)
        cache.matchers.append(
            SemanticMatcher(settings, embedder_for, clock=lambda: cache.clock(), index=index)
        )
    gateway.lookups.append(cache)
    gateway.wrappers.append(cache)
    gateway.on_close.append(cache.close)
    return cache


__all__ = ["build_store", "install"]
