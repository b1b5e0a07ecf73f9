"""Opt-in response caching: an exact, per-tenant cache of complete answers, replayed in the
caller's dialect, streamed or not, with identical concurrent requests coalesced.

Modules::

    settings     the [cache] section and the per-alias cache = {...} defaults (imports nothing)
    key          the deny-list key over the canonical request, namespaced by tenant
    entry        what is stored (the answer's events) and its byte form
    stores       the store contract and the in-memory LRU (byte budget, TTL)
    redis_store  the Redis store (many instances)
    controls     what one request asks: headers, the body field, the alias default
    coalesce     one upstream call for identical concurrent requests
    match        the Matcher seam where a semantic matcher plugs in later
    replay       a hit through the wire encoders
    stage        ResponseCache: the lookup stage and the stream wrapper
    wiring       install(gateway, settings): the cache on a gateway's seams

The cache sits above the pipeline: it plugs into the gateway's seams (``lookups``, ``wrappers``) and the pipeline knows nothing of it.
This ``__init__`` imports nothing: ``fareway.config`` imports ``fareway.cache.settings``, and
importing a submodule runs its package's ``__init__`` first.
"""
