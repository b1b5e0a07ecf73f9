"""Provider health shared by every gateway on one Redis (``[shared] health = "redis"``).

:class:`SharedStats` is the in-process :class:`fareway.router.stats.Stats` (it keeps every local
number, breaker and bucket) plus a *remote view*: what the other gateways learned.  Routing reads
only memory: ``available`` and ``snapshot`` never wait for Redis.

What is shared
    * **blocks**: a cooldown (a 429's Retry-After, a 429 without hints, a Retry-After on a 5xx,
      an operator's ``cool_down``), an exhausted rate-limit bucket (a quota wall: remaining
      requests or tokens at 0 until its reset), an open circuit.  One gateway learns it, every
      gateway avoids the offer until it ends.  A circuit that closes again (its probe succeeded)
      is cleared everywhere.
    * **numbers**: each gateway's TTFT, tokens/s, latency percentiles, error rate, sample and
      in-flight counts per offer, blended into ``snapshot`` weighted by samples (calls for the
      error rate), so ``auto:fast`` and the hedge delay see what every gateway measured.

How (``P`` is ``[shared] prefix``; keys carry the ``{health}`` hash tag for Redis Cluster)::

    P{health}:until   hash  "<kind>|<provider/model>" -> until (epoch seconds; kind: cool, circuit)
    P{health}:info    hash  the same fields -> the block as JSON (reason, origin gateway)
    P{health}:stats   hash  gateway id -> its numbers per offer as JSON, with the time written
    P{health}:events  pub/sub channel: each batch of blocks as it is written

* **writes** are queued in memory (one entry per offer and kind: a later block replaces an
  earlier one) and sent by a background task as ONE Lua script per batch (keep the longest block
  per field, drop expired ones, publish the batch); the numbers go with the poll.
* **reads**: a subscriber applies published batches as they arrive (milliseconds), and a poll
  every ``sync_interval`` seconds reads both hashes (a gateway that starts, or that missed
  messages while disconnected, catches up) and writes this gateway's numbers.
* **Redis down**: fail open, to the local view.  Routing goes on with this gateway's own
  health; blocks already learned run out at their own end; other gateways' numbers are dropped
  once older than ``stale_after``; blocks learned meanwhile stay queued and are written when Redis
  answers again (those that have not ended yet).  Logged once per outage.

Times cross gateways as wall-clock (epoch) seconds and are turned into this gateway's monotonic
clock on arrival, so machines need synchronised clocks (NTP) for the ends of blocks to agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fareway.redis_client import fail_fast_client
from fareway.router.health import OfferStats
from fareway.router.stats import CallToken, Key, Stats, _Entry, key_of

log = logging.getLogger("fareway.router")

_WRITE = """
local until_h, info_h = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local op, field, u, info = ARGV[4 + i * 4], ARGV[5 + i * 4], ARGV[6 + i * 4], ARGV[7 + i * 4]
  if op == 'clear' then
    redis.call('HDEL', until_h, field)
    redis.call('HDEL', info_h, field)
  else
    local cur = tonumber(redis.call('HGET', until_h, field) or '0')
    if tonumber(u) > cur then
      redis.call('HSET', until_h, field, u)
      redis.call('HSET', info_h, field, info)
    end
  end
end
local all = redis.call('HGETALL', until_h)
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then
    redis.call('HDEL', until_h, all[i])
    redis.call('HDEL', info_h, all[i])
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[4 + n * 4])
return n
"""

_NUMBERS = (
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "ttft_ewma",
    "tps",
    "tps_p50",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "latency_ewma",
)


@dataclass(slots=True)
class Block:
    """An offer avoided until ``until`` (this gateway's monotonic clock), learned elsewhere."""

    until: float
    reason: str
    origin: str
    learned_at: float = 0.0


@dataclass(slots=True)
class _Remote:
    """Other gateways' numbers for one offer, summed: ``sums[name]`` is Σ value x samples."""

    sums: dict[str, float]
    samples: int = 0
    error_sum: float = 0.0
    calls: int = 0
    in_flight: int = 0


@dataclass(slots=True)
class SyncStats:
    published: int = 0
    """Blocks written to Redis."""
    writes: int = 0
    """Scripts sent to write them (one per batch)."""
    received: int = 0
    """Blocks of other gateways applied (pub/sub or poll)."""
    polls: int = 0
    errors: int = 0


async def _end_tasks(tasks: list[asyncio.Task[None]], bound: float) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again whatever still runs: a cancel that a
    library swallows (one arriving inside a Redis client's own wait) must not leave the loop
    running and ``close`` waiting forever (seen once in the suite, under load).  After ``bound``
    seconds whatever still runs is left to the event loop's end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    pending = [t for t in tasks if not t.done()]
    while pending and loop.time() < deadline:
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=0.2)
        pending = [t for t in pending if not t.done()]
    if pending:
        log.warning("shared health: %d background task(s) did not stop", len(pending))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: an error of a cancelled task is not worth a warning


class SharedStats(Stats):
    """Stats whose blocks and numbers are shared through Redis (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        redis_url: str,
        prefix: str = "fareway:shared:",
        timeout: float = 0.25,
        sync_interval: float = 1.0,
        stale_after: float | None = None,
        instance: str | None = None,
        client: Any = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.redis_url = redis_url
        self.prefix = prefix
        self.timeout = timeout
        self.sync_interval = sync_interval
        self.stale_after = stale_after if stale_after is not None else max(30.0, 10 * sync_interval)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        base = f"{prefix}{{health}}"
        self._until_key = f"{base}:until"
        self._info_key = f"{base}:info"
        self._stats_key = f"{base}:stats"
        self.channel = f"{base}:events"
        self._client = client
        self.sync = SyncStats()
        self.blocks: dict[tuple[str, str], Block] = {}
        """(kind, offer) -> what another gateway learned; kind is ``cool`` or ``circuit``."""
        self._remote: dict[str, _Remote] = {}
        self._remote_at = -1e18
        """Monotonic time the other gateways' numbers were last read."""
        self._outbox: dict[tuple[str, str], tuple[str, float, str]] = {}
        """(kind, offer) -> (op, until in epoch seconds, reason): blocks not yet written."""
        self._parsed: _Entry | None = None
        """The entry whose rate-limit headers the current ``end`` parsed."""
        self._queued: dict[tuple[str, str], float] = {}
        """(kind, offer) -> the end of the last block queued for it (not to queue it again)."""
        self._stale: list[str] = []
        """Other gateways whose numbers are too old: their field is deleted by the next poll."""
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def _redis(self) -> Any:
        if self._client is None:
            self._client = fail_fast_client(self.redis_url, self.timeout)
        return self._client

    async def start(self) -> None:
        """Read what the other gateways know, then keep in step (poll, subscriber, writer)."""
        self._closed = False
        self._wake = asyncio.Event()
        await self.poll()
        self._tasks = [
            asyncio.create_task(self._writer(), name="fareway-health-writer"),
            asyncio.create_task(self._poller(), name="fareway-health-poll"),
            asyncio.create_task(self._subscriber(), name="fareway-health-sub"),
        ]

    async def close(self) -> None:
        self._closed = True
        await _end_tasks(self._tasks, 4 * self._deadline)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.flush()
            async with asyncio.timeout(self._deadline):
                await self._redis().hdel(self._stats_key, self.instance)
        if self._client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._deadline):
                    await self._client.aclose()
            self._client = None

    def _failed(self, what: str, exc: BaseException) -> None:
        self.sync.errors += 1
        if not self._down:
            self._down = True
            log.warning(
                "shared health: Redis unavailable (%s: %s: %s); routing goes on with this gateway's "
                "own view of provider health",
                what,
                type(exc).__name__,
                exc,
            )

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("shared health: Redis answers again")

    @property
    def _deadline(self) -> float:
        """Seconds any Redis operation may take in all (connect and reply), whatever the client does."""
        return 2 * self.timeout + 0.1

    @property
    def connected(self) -> bool:
        return not self._down

    # ------------------------------------------------------------------ local events -> outbox

    def end(
        self,
        key: Key | CallToken,
        ok: bool,
        latency_s: float,
        output_tokens: int = 0,
        status: int | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        e = self._entry(key)
        cool_before = e.cooldown_until
        state_before = e.breaker.state
        open_before = e.breaker._open_until
        self._parsed = None
        super().end(key, ok, latency_s, output_tokens, status, retry_after, headers)
        self._learned(key_of(key), e, cool_before, state_before, open_before)

    def cool_down(self, key: Key, seconds: float, reason: str) -> None:
        e = self._entry(key)
        before = e.cooldown_until
        super().cool_down(key, seconds, reason)
        if e.cooldown_until > before:
            self._queue("cool", key_of(key), e.cooldown_until, f"cooling down: {e.cooldown_reason}")

    def _update_limits(self, e: _Entry, headers: Mapping[str, str], now: float) -> None:
        throttled = now - e.limits_parsed_at < self.limits_refresh_s and not any(
            lim.remaining <= self.limits_low_water for lim in e.limits.values()
        )  # Stats._update_limits's own rule: then it reads nothing
        super()._update_limits(e, headers, now)
        if not throttled:
            self._parsed = e  # this response's buckets were read (see _learned)

    def _learned(self, k: str, e: _Entry, cool_before: float, state_before: str, open_before: float) -> None:
        if e.cooldown_until > cool_before:
            self._queue("cool", k, e.cooldown_until, f"cooling down: {e.cooldown_reason}")
        state = e.breaker.state
        if state == "open" and e.breaker._open_until > open_before:
            self._queue("circuit", k, e.breaker._open_until, f"circuit open: {e.breaker.reason}")
        elif state == "closed" and state_before != "closed":
            self._queue("circuit", k, 0.0, "", op="clear")
        if e.limits and self._parsed is e:
            # only what the provider just said (not this gateway's own count-down since)
            now = self.clock()
            for (kind, window), lim in e.limits.items():
                if lim.remaining <= 0 and lim.seen_at == e.limits_parsed_at:
                    end = lim.reset_at if lim.reset_at is not None else lim.seen_at + self.unknown_reset_s
                    if end > now:
                        label = f"{kind}/{window}" if window else kind
                        self._queue("cool", k, end, f"rate limit: {label} remaining 0")

    def _queue(self, kind: str, k: str, until: float, reason: str, op: str = "set") -> None:
        wall_until = 0.0 if op == "clear" else self.wall() + (until - self.clock())
        field = (kind, k)
        if op == "set":
            if self._queued.get(field, 0.0) >= wall_until - 0.001:
                return  # already queued or sent (an exhausted bucket is seen on every response)
            self._queued[field] = wall_until
        else:
            self._queued.pop(field, None)
        self._outbox[field] = (op, wall_until, reason)
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ Redis I/O

    async def _writer(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # Redis down: keep the blocks, try again on the next poll
                self._failed("write", exc)

    async def flush(self) -> None:
        """Write the queued blocks (one script) and publish them."""
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, {}
        now_wall = self.wall()
        events = []
        args: list[Any] = []
        for (kind, k), (op, until, reason) in batch.items():
            if op == "set" and until <= now_wall:
                continue  # ended while queued
            field = f"{kind}|{k}"
            info = {"reason": reason, "origin": self.instance}
            events.append({"op": op, "field": field, "until": until, **info})
            args += [op, field, repr(until), orjson.dumps(info).decode()]
        if not events:
            return
        payload = orjson.dumps({"origin": self.instance, "events": events}).decode()
        try:
            async with asyncio.timeout(self._deadline):
                await self._redis().eval(
                    _WRITE,
                    2,
                    self._until_key,
                    self._info_key,
                    repr(now_wall),
                    self.channel,
                    len(events),
                    *args,
                    payload,
                )
        except BaseException:
            for pending, value in batch.items():  # put back what no newer block replaced
                self._outbox.setdefault(pending, value)
            raise
        self.sync.published += len(events)
        self.sync.writes += 1
        self._ok()

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            await self.poll()
            if self._outbox and self._wake is not None:
                self._wake.set()

    async def poll(self) -> None:
        """Write this gateway's numbers; read every block and every other gateway's numbers."""
        mine = orjson.dumps({"t": self.wall(), "offers": self._numbers()}).decode()
        asked = self.clock()
        try:
            pipe = self._redis().pipeline(transaction=False)
            pipe.hset(self._stats_key, self.instance, mine)
            pipe.hgetall(self._until_key)
            pipe.hgetall(self._info_key)
            pipe.hgetall(self._stats_key)
            if self._stale:
                pipe.hdel(self._stats_key, *self._stale)
            async with asyncio.timeout(self._deadline):
                until, info, numbers = (await pipe.execute())[1:4]
            self._stale = []
        except Exception as exc:
            self._failed("poll", exc)
            if self.clock() - self._remote_at > self.stale_after:
                self._remote = {}
            return
        self.sync.polls += 1
        self._ok()
        self._apply_blocks(until, info, asked)
        self._apply_numbers(numbers)

    async def _subscriber(self) -> None:
        while True:
            pubsub = None
            try:
                pubsub = self._redis().pubsub(ignore_subscribe_messages=True)
                async with asyncio.timeout(self._deadline):
                    await pubsub.subscribe(self.channel)
                while True:
                    async with asyncio.timeout(self.sync_interval + self._deadline):
                        msg = await pubsub.get_message(timeout=self.sync_interval)
                    if msg is not None and msg.get("type") == "message":
                        self._apply_events(msg["data"])
            except asyncio.CancelledError:
                raise
            except TimeoutError:  # a stuck subscription: reconnect (the poll reports an outage)
                await asyncio.sleep(self.sync_interval)
            except Exception as exc:
                self._failed("subscribe", exc)
                await asyncio.sleep(self.sync_interval)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(self._deadline):
                            await pubsub.aclose()

    # ------------------------------------------------------------------ applying remote state

    def _to_local(self, wall_until: float) -> float:
        return self.clock() + (wall_until - self.wall())

    def _apply_events(self, data: bytes | str) -> None:
        try:
            batch = orjson.loads(data)
            if batch.get("origin") == self.instance:
                return
            for ev in batch.get("events", ()):
                kind, _, k = str(ev["field"]).partition("|")
                if ev["op"] == "clear":
                    self.blocks.pop((kind, k), None)
                else:
                    self._block(
                        kind, k, float(ev["until"]), str(ev.get("reason", "")), str(ev.get("origin", ""))
                    )
        except Exception:  # a malformed message is ignored, never breaks the subscriber
            log.exception("shared health: unreadable event")

    def _block(self, kind: str, k: str, wall_until: float, reason: str, origin: str) -> None:
        if origin == self.instance:
            return
        until = self._to_local(wall_until)
        if until <= self.clock():
            return
        cur = self.blocks.get((kind, k))
        if cur is None or until > cur.until:
            self.blocks[(kind, k)] = Block(until, reason, origin, self.clock())
            self.sync.received += 1

    def _apply_blocks(self, until: Mapping[bytes, bytes], info: Mapping[bytes, bytes], asked: float) -> None:
        seen: set[tuple[str, str]] = set()
        for raw_field, raw_until in until.items():
            field = raw_field.decode()
            kind, _, k = field.partition("|")
            try:
                meta = orjson.loads(info.get(raw_field, b"{}"))
                self._block(
                    kind, k, float(raw_until), str(meta.get("reason", "")), str(meta.get("origin", ""))
                )
            except (ValueError, orjson.JSONDecodeError):
                continue
            seen.add((kind, k))
        # a circuit cleared elsewhere while a message was missed (not one that arrived meanwhile)
        stale = [
            f for f, b in self.blocks.items() if f[0] == "circuit" and f not in seen and b.learned_at < asked
        ]
        for gone in stale:
            del self.blocks[gone]

    def _numbers(self) -> dict[str, list[float]]:
        """This gateway's numbers per offer that has any (what the poll writes)."""
        out: dict[str, list[float]] = {}
        for k in list(self._entries):
            s = Stats.snapshot(self, k)
            calls = self._entries[k].breaker.window_calls()
            if s.samples == 0 and calls == 0 and s.in_flight == 0:
                continue
            out[k] = [*(getattr(s, n) for n in _NUMBERS), s.samples, s.error_rate, calls, s.in_flight]
        return out

    def _apply_numbers(self, numbers: Mapping[bytes, bytes]) -> None:
        horizon = self.wall() - self.stale_after
        merged: dict[str, _Remote] = {}
        for raw_id, raw in numbers.items():
            if raw_id.decode() == self.instance:
                continue
            try:
                doc = orjson.loads(raw)
                if float(doc["t"]) < horizon:
                    if float(doc["t"]) < horizon - 10 * self.stale_after:
                        self._stale.append(raw_id.decode())
                    continue
                for k, row in doc["offers"].items():
                    samples, err, calls, flight = int(row[-4]), float(row[-3]), int(row[-2]), int(row[-1])
                    r = merged.get(k)
                    if r is None:
                        r = merged[k] = _Remote(dict.fromkeys(_NUMBERS, 0.0))
                    for name, v in zip(_NUMBERS, row, strict=False):
                        r.sums[name] += float(v) * samples
                    r.samples += samples
                    r.error_sum += err * calls
                    r.calls += calls
                    r.in_flight += flight
            except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError):
                continue
        self._remote = merged
        self._remote_at = self.clock()

    # ------------------------------------------------------------------ reads (memory only)

    def _remote_block(self, k: str) -> Block | None:
        now = self.clock()
        best: Block | None = None
        for kind in ("cool", "circuit"):
            b = self.blocks.get((kind, k))
            if b is None:
                continue
            if b.until <= now:
                del self.blocks[(kind, k)]
                continue
            if best is None or b.until > best.until:
                best = b
        return best

    def available(self, key: Key, prompt_tokens: int = 0, output_tokens: int = 0) -> bool:
        if not super().available(key, prompt_tokens, output_tokens):
            return False
        if not self.blocks:
            return True
        return self._remote_block(key_of(key)) is None

    def snapshot(self, key: Key, prompt_tokens: int = 0, output_tokens: int = 0) -> OfferStats:
        s = super().snapshot(key, prompt_tokens, output_tokens)
        k = s.key
        r = self._remote.get(k)
        b = self._remote_block(k) if self.blocks else None
        if b is not None and not (
            s.available or (s.cooldown_until is not None and b.until > s.cooldown_until)
        ):
            b = None  # a local block that ends later wins
        if b is None and (r is None or not (r.samples or r.calls or r.in_flight)):
            return s
        v = [getattr(s, name) for name in _NUMBERS]
        samples, error_rate, in_flight = s.samples, s.error_rate, s.in_flight
        if r is not None:
            in_flight += r.in_flight
            if r.samples:
                n = samples + r.samples
                v = [(x * samples + r.sums[name]) / n for x, name in zip(v, _NUMBERS, strict=True)]
                samples = n
            if r.calls:
                calls = self._entries[k].breaker.window_calls()
                error_rate = (error_rate * calls + r.error_sum) / (calls + r.calls)
        return OfferStats(
            key=k,
            ttft_p50=v[0],
            ttft_p90=v[1],
            ttft_p99=v[2],
            ttft_ewma=v[3],
            tps=v[4],
            tps_p50=v[5],
            latency_p50=v[6],
            latency_p90=v[7],
            latency_p99=v[8],
            latency_ewma=v[9],
            error_rate=error_rate,
            in_flight=in_flight,
            samples=samples,
            state=s.state,
            available=s.available if b is None else False,
            cooldown_until=s.cooldown_until if b is None else b.until,
            reason=s.reason if b is None else f"{b.reason} (learned by {b.origin})",
        )


__all__ = ["Block", "SharedStats", "SyncStats"]
