"""Injected faults and the per-provider counters.

A fault is armed with ``POST /_sim/faults`` (or ``[[faults]]`` in the config)::

    {"provider": "groq", "model": null, "kind": "429", "count": 2, "retry_after": 1}

kinds: ``429``, ``500``, ``503``, ``529`` (an HTTP error in the provider's shape), ``quota``
(429 insufficient_quota; Anthropic 402 billing_error), ``stall`` (accept, never answer, until the
client goes away), ``stall_after_first`` (stream up to the first content chunk, then stall),
``reset`` (close the connection after ``after_chunks`` content chunks), ``stream_error`` (an error
event in the provider's in-stream error shape after ``after_chunks`` content chunks, status 200).

``count: N`` fires on the next N matching requests; ``rate: p`` fires with probability p per
matching request (a seeded RNG), until cleared.  With neither, ``count`` is 1.  ``provider`` and
``model`` null (or absent) match any; ``key`` (hex digits) matches only requests whose API key's
SHA-256 starts with them (one key of a pool rate-limited, the others not).

The counters of a provider include ``keys``: per API key seen (the first 16 hex digits of its
SHA-256, never the key), how many requests carried it.  Optional ``status`` and ``message`` override the default
error status and text.

``after_chunks`` counts *content* chunks (text/tool/thinking deltas) already delivered: with 0 the
client has received the stream's preamble (role chunk, ``message_start``...) but no content, which
is how the gateway's commit point is tested.  Stream-only kinds on a non-streaming request:
``stream_error`` becomes an HTTP error, ``stall_after_first`` a stall, ``reset`` a closed
connection without a response.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = frozenset(
    {"429", "500", "503", "529", "stall", "stall_after_first", "reset", "stream_error", "quota"}
)
HTTP_KINDS = frozenset({"429", "500", "503", "529", "quota"})


@dataclass(slots=True)
class Fault:
    kind: str
    provider: str | None = None
    model: str | None = None
    count: int | None = None
    rate: float | None = None
    retry_after: float | None = None
    after_chunks: int = 1
    status: int | None = None
    message: str | None = None
    key: str | None = None
    """A prefix of the hex SHA-256 of the API key this fault is for (None: any key)."""

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Fault:
        if not isinstance(obj, dict):
            raise ValueError("a fault is a JSON object")
        kind = str(obj.get("kind", ""))
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        unknown = set(obj) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}")
        count = obj.get("count")
        rate = obj.get("rate")
        if count is None and rate is None:
            count = 1
        if rate is not None and not 0.0 <= float(rate) <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        ra = obj.get("retry_after")
        return cls(
            kind=kind,
            provider=obj.get("provider") or None,
            model=obj.get("model") or None,
            count=None if count is None else int(count),
            rate=None if rate is None else float(rate),
            retry_after=None if ra is None else float(ra),
            after_chunks=int(obj.get("after_chunks", 1)),
            status=None if obj.get("status") is None else int(obj["status"]),
            message=obj.get("message"),
            key=str(obj["key"]).lower() if obj.get("key") else None,
        )

    def to_obj(self) -> dict[str, Any]:
        return asdict(self)


class FaultTable:
    """Armed faults, first match wins.  Empty most of the time, so the check is one list test."""

    __slots__ = ("_faults", "_rngs", "_seed")

    def __init__(self, seed: int = 0) -> None:
        self._faults: list[Fault] = []
        self._seed = seed
        self._rngs: dict[str, random.Random] = {}
        """One generator per provider, so one provider's fault draws never depend on the traffic
        to another (rate-based storms stay reproducible per provider)."""

    def arm(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def reseed(self) -> None:
        self._rngs.clear()

    def _rng(self, provider: str) -> random.Random:
        rng = self._rngs.get(provider)
        if rng is None:
            rng = self._rngs[provider] = random.Random(f"{self._seed ^ 0xFA17}:{provider}")
        return rng

    def list(self) -> list[dict[str, Any]]:
        return [f.to_obj() for f in self._faults]

    def take(self, provider: str, model: str, key_sha: str = "") -> Fault | None:
        if not self._faults:
            return None
        for f in self._faults:
            if f.provider is not None and f.provider != provider:
                continue
            if f.model is not None and f.model != model:
                continue
            if f.key is not None and not key_sha.startswith(f.key):
                continue
            if f.rate is not None:
                if self._rng(provider).random() < f.rate:
                    return f
                continue
            if f.count is not None and f.count > 0:
                f.count -= 1
                if f.count == 0:
                    self._faults.remove(f)
                return f
        return None


@dataclass(slots=True)
class Counters:
    requests: int = 0
    completed: int = 0
    errors_injected: int = 0
    disconnects: int = 0
    in_flight: int = 0
    keys: dict[str, int] = field(default_factory=dict)
    """Requests per API key seen (its SHA-256's first 16 hex digits)."""


@dataclass(slots=True)
class Stats:
    providers: dict[str, Counters] = field(default_factory=dict)

    def of(self, provider: str) -> Counters:
        c = self.providers.get(provider)
        if c is None:
            c = self.providers[provider] = Counters()
        return c

    def reset(self) -> None:
        for c in self.providers.values():
            in_flight = c.in_flight
            c.requests = c.completed = c.errors_injected = c.disconnects = 0
            c.keys = {}
            c.in_flight = in_flight  # still-running requests stay counted

    def to_obj(self) -> dict[str, Any]:
        total = Counters()
        provs: dict[str, Any] = {}
        for name, c in sorted(self.providers.items()):
            provs[name] = asdict(c)
            total.requests += c.requests
            total.completed += c.completed
            total.errors_injected += c.errors_injected
            total.disconnects += c.disconnects
            total.in_flight += c.in_flight
        return {"providers": provs, "total": asdict(total)}
