"""Semantic matching: a paraphrase of a cached request's last user turn is a hit (opt-in per alias).

For an alias with ``cache = { semantic = 0.92 }`` a request that missed its exact key is answered
by a stored entry when all of these hold:

1. the same tenant and the same *context* — everything in the key but the text of the last user
   turn (system, tools, tool choice, every parameter, earlier turns, the resolved route): the
   :meth:`~fareway.cache.key.CacheKey.context_digest` is equal;
2. the same *anchors* in the last user turn (:func:`anchors`): numbers, identifiers, quoted
   strings and code-ish tokens are equal, in the same order, so "refund order 1234" never answers "refund
   order 1235";
3. the cosine similarity of the two turns' embeddings is at least the alias's threshold.

(1) and (2) make the bucket a vector lives in, so only candidates that may match are compared at
all; (3) is a brute-force cosine over that bucket (at most ``[cache] semantic_max_entries``
vectors, oldest dropped first; pure Python: numpy is not a dependency and a bucket is small).

The embedding is the last user turn's text, embedded by the alias's ``embeddings_model`` (or
``[cache] embeddings_model``) through the gateway's own embeddings path, under the calling
principal: each embeddings call is a ledger row (kind ``embedding``) booked to the tenant.  A
request's vector is computed once, at lookup, and reused when its answer is stored.  A failing or
slow embeddings call (over :data:`EMBED_TIMEOUT`) makes a miss, never a failed call.

The vectors live where the entries live: in this process's memory (:class:`SemanticIndex`) with
the memory store, in Redis (:class:`fareway.cache.semantic_redis.RedisVectors`) with ``[cache]
url``, so that every instance matches paraphrases of every instance's entries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from fareway.cache.key import CacheKey
from fareway.cache.match import Match
from fareway.cache.settings import CacheSettings

if TYPE_CHECKING:
    from fareway.pipeline.context import CallContext

log = logging.getLogger("fareway.cache.semantic")

SIMILARITY_HEADER = "x-fareway-cache-similarity"
"""The response header of a semantic hit: the cosine similarity found, four decimals."""

EMBED_TIMEOUT = 5.0
"""Seconds an embeddings call for matching may take before the lookup counts as a miss."""

MAX_BUCKETS = 100_000
"""Buckets kept in one process (least recently used go first)."""

_NOTE = "cache.semantic"
"""``ctx.notes`` slot of the request's vector (reused when its answer is stored)."""


class Embeds(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


EmbedderFor = Callable[[str, Any], Embeds]
"""``(model, ctx.principal) -> Embedder`` (``gateway.embeddings.embedder(model, principal=...)``);
the principal's type is the keys layer's, which this layer does not import."""

# ----------------------------------------------------------------------------- anchors

_QUOTED = re.compile(
    r'"([^"\n]{1,200})"|“([^”\n]{1,200})”|`([^`\n]{1,200})`|(?<!\w)\'([^\'\n]{1,200})\'(?!\w)'
)
_EDGE = "\"'\u201c\u201d\u2018\u2019`()[]{}<>,;:!?."
_NUMBER = re.compile(r"^[$€£¥]?[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?(%|[kKmM])?$")
_HAS_DIGIT = re.compile(r"\d")
_CODEISH = re.compile(r"\w[_./:@#\\=$]\w|[_(){}\[\]<>=]|^[@#$]\w|\w\(")
_CAMEL = re.compile(r"[a-z][A-Z]")
_ALLCAPS = re.compile(r"^[A-Z]{2,}s?$")


def _number(token: str) -> str | None:
    m = _NUMBER.match(token)
    if m is None:
        return None
    suffix = m.group(4) or ""
    digits = token.lstrip("$€£¥")
    if suffix:
        digits = digits[: -len(suffix)]
    try:
        value = Decimal(digits.replace(",", ""))
    except InvalidOperation:
        return None
    text = format(value.normalize(), "f")
    return ("0" if text == "-0" else text) + suffix.lower()


def anchors(text: str) -> tuple[str, ...]:
    """The tokens of ``text`` that must be equal, in the same order, for two turns to match
    semantically (each kept once, at its first occurrence):

    * every quoted span (``"..."``, ``“...”``, ```...```, ``'...'``), exactly as written;
    * every number, normalised: thousands separators, a leading currency sign or ``#`` dropped,
      trailing zeros of a fraction dropped (``1,200.50`` = ``$1200.5``), a ``%`` or ``k``/``m``
      suffix kept (``20%`` is not ``20``);
    * every other token (split on white space, outer punctuation stripped) that contains a
      digit (``A-1234``, ``v2``, ``3pm``), or looks like code or an address (``_``, brackets,
      ``=``, inner ``. / : @ # \\ $``: ``user_id``, ``foo.bar()``, ``a@b.com``, ``/etc/hosts``),
      or is camelCase (``getUser``), or is all capitals of two letters or more (``USD``,
      ``EUR``, ``SKUs``), exactly as written.

    The order counts: "convert 10 USD to EUR" and "convert 10 EUR to USD" do not match (nor,
    conservatively, a rewording that names them in another order).  Number words ("five"),
    single capital letters and hyphenated plain words (``follow-up``) are not anchors: the
    embedding alone decides them."""
    found: dict[str, None] = {}

    def tokens(chunk: str) -> None:
        for raw in chunk.split():
            token = raw.strip(_EDGE)
            if not token:
                continue
            number = _number(token[1:] if token.startswith(("#", "№")) else token)
            if number is not None:
                found.setdefault("n:" + number)
            elif (
                _HAS_DIGIT.search(token)
                or _CODEISH.search(token)
                or _CAMEL.search(token)
                or _ALLCAPS.match(token)
            ):
                found.setdefault("t:" + token)

    last = 0
    for m in _QUOTED.finditer(text):
        tokens(text[last : m.start()])
        found.setdefault("q:" + next(g for g in m.groups() if g is not None))
        last = m.end()
    tokens(text[last:])
    return tuple(found)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return 0.0
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    return 0.0 if na == 0.0 or nb == 0.0 else dot / (na * nb)


# ----------------------------------------------------------------------------- the index

Bucket = tuple[str, str, tuple[str, ...]]
"""(embeddings model, context digest, anchors): only vectors of one bucket are ever compared."""


class VectorIndex(Protocol):
    """Where the vectors live: :class:`SemanticIndex` (this process) or
    :class:`fareway.cache.semantic_redis.RedisVectors` (shared through Redis)."""

    async def add(self, bucket: Bucket, storage_key: str, values: list[float], expires_at: float) -> None: ...

    async def best(self, bucket: Bucket, values: list[float], now: float) -> tuple[str, float] | None:
        """The live vector of ``bucket`` most similar to ``values``: (storage key, cosine)."""
        ...


@dataclass(slots=True)
class _Vector:
    values: list[float]
    expires_at: float


class SemanticIndex:
    """Vectors by bucket (model, context digest, anchors), each bucket a bounded insertion-ordered
    map of storage key -> vector; the buckets themselves are kept LRU up to :data:`MAX_BUCKETS`."""

    def __init__(self, max_entries: int = 256, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_entries = max_entries
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[Bucket, OrderedDict[str, _Vector]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    async def add(self, bucket: Bucket, storage_key: str, values: list[float], expires_at: float) -> None:
        entries = self._buckets.get(bucket)
        if entries is None:
            entries = self._buckets[bucket] = OrderedDict()
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(bucket)
        entries.pop(storage_key, None)
        entries[storage_key] = _Vector(values, expires_at)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def best(self, bucket: Bucket, values: list[float], now: float) -> tuple[str, float] | None:
        """The live vector of ``bucket`` most similar to ``values`` (expired ones are dropped)."""
        entries = self._buckets.get(bucket)
        if not entries:
            return None
        self._buckets.move_to_end(bucket)
        best: tuple[str, float] | None = None
        for key, vec in list(entries.items()):
            if vec.expires_at <= now:
                del entries[key]
                continue
            sim = cosine(values, vec.values)
            if best is None or sim > best[1]:
                best = (key, sim)
        return best


# ----------------------------------------------------------------------------- the matcher


class SemanticMatcher:
    """A :class:`~fareway.cache.match.Matcher` for the aliases whose settings ask for it."""

    def __init__(
        self,
        settings: CacheSettings,
        embedder_for: EmbedderFor,
        *,
        clock: Callable[[], float] | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        self.embedder_for = embedder_for
        self.clock = clock if clock is not None else time.time
        self.index: VectorIndex = index if index is not None else SemanticIndex(settings.semantic_max_entries)

    def _rule(self, ctx: CallContext) -> tuple[float, str] | None:
        return None if ctx.req is None else self.settings.semantic(ctx.req.model)

    async def _vector(self, key: CacheKey, ctx: CallContext, model: str) -> list[float] | None:
        noted = ctx.notes.get(_NOTE)
        if isinstance(noted, tuple) and noted[0] == model:
            return noted[1]
        text = key.last_user_text()
        if not text.strip():
            return None
        try:
            async with asyncio.timeout(EMBED_TIMEOUT):
                vectors = await self.embedder_for(model, ctx.principal).embed([text])
        except Exception as exc:  # an embeddings failure is a miss (the call goes on)
            log.warning("semantic cache: embedding with %s failed (%s): a miss", model, exc)
            return None
        if len(vectors) != 1 or not vectors[0]:
            return None
        ctx.notes[_NOTE] = (model, vectors[0])
        return vectors[0]

    @staticmethod
    def _bucket(key: CacheKey, model: str) -> Bucket:
        return (model, key.context_digest(), anchors(key.last_user_text()))

    async def find(self, key: CacheKey, ctx: CallContext) -> Match | None:
        rule = self._rule(ctx)
        if rule is None:
            return None
        threshold, model = rule
        bucket = self._bucket(key, model)
        vec = await self._vector(key, ctx, model)
        if vec is None:
            return None
        best = await self.index.best(bucket, vec, self.clock())
        if best is None or best[1] < threshold or best[0] == key.storage:
            return None
        return Match(best[0], min(best[1], 1.0))

    async def stored(self, key: CacheKey, ctx: CallContext) -> None:
        rule = self._rule(ctx)
        if rule is None:
            return
        _, model = rule
        vec = await self._vector(key, ctx, model)
        if vec is None:
            return
        call: Any = ctx.notes.get("cache")
        ttl = getattr(call, "ttl", None)
        expires = self.clock() + (ttl if isinstance(ttl, int) else self.settings.ttl)
        await self.index.add(self._bucket(key, model), key.storage, vec, expires)


__all__ = [
    "EMBED_TIMEOUT",
    "SIMILARITY_HEADER",
    "Bucket",
    "EmbedderFor",
    "SemanticIndex",
    "SemanticMatcher",
    "VectorIndex",
    "anchors",
    "cosine",
]
