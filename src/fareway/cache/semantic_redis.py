"""Semantic-matching vectors in Redis (with ``[cache] url``): paraphrases match across instances.

One Redis hash per bucket (:data:`fareway.cache.semantic.Bucket`), named ``prefix + "sem:" +``
a BLAKE2b digest of the bucket; its fields are the storage keys of the entries, its values the
packed vector (``<dd`` stored-at and expires-at, then float32 components).  A lookup reads the
whole bucket (``HGETALL``: at most ``semantic_max_entries`` vectors) and compares in process;
expired vectors are deleted as they are met; a bucket over its bound loses its oldest vectors; the
hash itself expires with its longest-lived vector.

It shares the :class:`~fareway.cache.redis_store.RedisStore`'s client, timeout and outage rule:
a Redis that is down, slow or holds unreadable bytes makes a miss (``best`` is None) or a vector
not kept (``add``), never a failed call.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct

import orjson

from fareway.cache.redis_store import RedisStore
from fareway.cache.semantic import Bucket, cosine

_HEAD = struct.Struct("<dd")


def _pack(values: list[float], stored_at: float, expires_at: float) -> bytes:
    return _HEAD.pack(stored_at, expires_at) + struct.pack(f"<{len(values)}f", *values)


def _unpack(raw: bytes) -> tuple[float, float, list[float]]:
    if len(raw) < _HEAD.size or (len(raw) - _HEAD.size) % 4:
        raise ValueError("not a packed vector")
    stored_at, expires_at = _HEAD.unpack_from(raw)
    n = (len(raw) - _HEAD.size) // 4
    return stored_at, expires_at, list(struct.unpack_from(f"<{n}f", raw, _HEAD.size))


class RedisVectors:
    """A :class:`~fareway.cache.semantic.VectorIndex` in the Redis of ``store``."""

    def __init__(self, store: RedisStore, max_entries: int = 256) -> None:
        self.store = store
        self.max_entries = max_entries

    def _key(self, bucket: Bucket) -> str:
        digest = hashlib.blake2b(orjson.dumps(bucket), digest_size=20).hexdigest()
        return f"{self.store.prefix}sem:{digest}"

    async def add(self, bucket: Bucket, storage_key: str, values: list[float], expires_at: float) -> None:
        store = self.store
        if not store._available():
            return
        now = store.clock()
        ttl = math.ceil(expires_at - now) + 1
        if ttl <= 1:
            return
        key = self._key(bucket)
        r = store._redis
        try:
            async with asyncio.timeout(store.timeout * 2):
                pipe = r.pipeline(transaction=False)
                pipe.hset(key, storage_key, _pack(values, now, expires_at))
                pipe.expire(key, ttl, nx=True)
                pipe.expire(key, ttl, gt=True)
                pipe.hlen(key)
                size = (await pipe.execute())[-1]
                if size > self.max_entries:
                    await self._trim(key, size - self.max_entries)
        except Exception as exc:  # a vector not kept is a semantic miss later, nothing more
            store._failed("semantic add", exc)
            return
        store._ok()

    async def _trim(self, key: str, excess: int) -> None:
        raw = await self.store._redis.hgetall(key)
        ages: list[tuple[float, bytes]] = []
        for field, value in raw.items():
            try:
                ages.append((_unpack(value)[0], field))
            except ValueError:
                ages.append((-1.0, field))
        ages.sort()
        await self.store._redis.hdel(key, *[f for _, f in ages[:excess]])

    async def best(self, bucket: Bucket, values: list[float], now: float) -> tuple[str, float] | None:
        store = self.store
        if not store._available():
            return None
        key = self._key(bucket)
        try:
            async with asyncio.timeout(store.timeout * 2):
                raw = await store._redis.hgetall(key)
                best: tuple[str, float] | None = None
                dead: list[bytes] = []
                for field, value in raw.items():
                    try:
                        _, expires_at, vec = _unpack(value)
                    except ValueError:
                        dead.append(field)
                        continue
                    if expires_at <= now:
                        dead.append(field)
                        continue
                    sim = cosine(values, vec)
                    if best is None or sim > best[1]:
                        best = (field.decode(), sim)
                if dead:
                    await store._redis.hdel(key, *dead)
        except Exception as exc:  # any failure of the store is a miss, never a failed call
            store._failed("semantic lookup", exc)
            return None
        store._ok()
        return best


__all__ = ["RedisVectors"]
