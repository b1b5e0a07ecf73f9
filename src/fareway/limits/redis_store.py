"""The reservation store on Redis, for many gateways sharing limits: each reserve is ONE Lua
script over every bucket of the call, so the check and the hold are one atomic step across all
of them (no check-then-increment race between gateways).  Settles are queued and sent together,
one script per event-loop turn for every call that ended in it (a settle is never on a call's
path; under load this halves the round trips).

Layout (``P`` is the configured prefix; every key carries the ``{lim}`` hash tag, so on Redis
Cluster all of them live in one slot and a script may touch any set of them; the scripts name
each bucket's hash and derive its ``:h`` companion from it)::

    P{lim}:<bucket>      hash   window: one field per one-second slot, ``t`` (their total), ``o``
                                (the oldest slot still counted); expires 3 minutes after its last use
                                budget: ``spent``, ``held``, ``h:<reservation>`` (each hold's amount);
                                a day's or month's bucket expires a day after its period ends
    P{lim}:<bucket>:h    zset   budget holds by expiry time: a dead gateway's holds are released
                                by the next reserve on that bucket

Budget amounts (nano-dollars) may exceed what a Lua number prints exactly, so the scripts move
them with HINCRBY from argument strings, never by formatting a computed number.  A budget settle
applies once (it is keyed by its hold); a settle re-sent after a lost reply may adjust a
rate-limit slot twice (that slot leaves the window within a minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from fareway.limits.store import (
    KEEP_SLOTS,
    Bucket,
    BucketUnseeded,
    Level,
    Refusal,
    StoreUnavailable,
    Ticket,
    budget_reset,
    budget_retry,
    slot_of,
    window_reset,
    window_retry,
)

log = logging.getLogger("fareway.limits")

_LIB = """
local KEEP = __KEEP__
local function prune_window(h, first)
  local oldest = tonumber(redis.call('HGET', h, 'o') or first)
  if oldest < first then
    if first - oldest > KEEP then
      redis.call('DEL', h)
    else
      for s = oldest, first - 1 do
        local v = redis.call('HGET', h, s)
        if v then
          redis.call('HINCRBY', h, 't', -tonumber(v))
          redis.call('HDEL', h, s)
        end
      end
    end
    redis.call('HSET', h, 'o', first)
  end
  return tonumber(redis.call('HGET', h, 't') or '0')
end
local function prune_holds(h, z, now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, r in ipairs(expired) do
    local v = redis.call('HGET', h, 'h:' .. r)
    if v then
      redis.call('HINCRBY', h, 'held', '-' .. v)
      redis.call('HDEL', h, 'h:' .. r)
    end
    redis.call('ZREM', z, r)
  end
end
"""

RESERVE = (
    _LIB
    + """
-- KEYS: each bucket's hash.  ARGV: now, cur (slot), rid, hold_until, then per bucket
-- "kind limit amount ends_at" (kind w|b, or B: a budget that must exist, seeded; ends_at - for none)
local now, cur, rid, hold_until = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local first = cur - KEEP + 1
local n = #KEYS
local spec = {}
local out = {0}
local refused = 0
for i = 1, n do
  local kind, limit, amount, ends_at = string.match(ARGV[4 + i], '^(%a) (%d+) (%d+) (%S+)$')
  local seeded = kind == 'B'
  if seeded then kind = 'b' end
  spec[i] = {kind, amount, ends_at}
  local h = KEYS[i]
  local used, spent, held = 0, 0, 0
  if kind == 'w' then
    used = prune_window(h, first)
  else
    -- a budget without its spend (Redis restarted, evicted or expired it): the gateway seeds it
    -- from the ledger and asks again; counting from 0 would let the budget overshoot
    if seeded and redis.call('HEXISTS', h, 'spent') == 0 then return {-i} end
    prune_holds(h, h .. ':h', now)
    spent = tonumber(redis.call('HGET', h, 'spent') or '0')
    held = tonumber(redis.call('HGET', h, 'held') or '0')
    used = spent + held
  end
  out[#out + 1] = used
  out[#out + 1] = spent
  out[#out + 1] = held
  if refused == 0 and used + tonumber(amount) > tonumber(limit) then refused = i end
end
out[1] = refused
if refused == 0 then
  for i = 1, n do
    local h = KEYS[i]
    local kind, amount, ends_at = spec[i][1], spec[i][2], spec[i][3]
    if kind == 'w' then
      redis.call('HINCRBY', h, cur, amount)
      redis.call('HINCRBY', h, 't', amount)
      redis.call('HSETNX', h, 'o', first)
      redis.call('EXPIRE', h, 180)
    else
      local z = h .. ':h'
      redis.call('HSETNX', h, 'spent', 0)
      redis.call('HINCRBY', h, 'held', amount)
      redis.call('HSET', h, 'h:' .. rid, amount)
      redis.call('ZADD', z, hold_until, rid)
      if ends_at ~= '-' then
        redis.call('EXPIREAT', h, math.floor(tonumber(ends_at)) + 86400)
        redis.call('EXPIREAT', z, math.floor(tonumber(ends_at)) + 86400)
      end
    end
  end
elseif spec[refused][1] == 'w' then
  local all = redis.call('HGETALL', KEYS[refused])
  for j = 1, #all, 2 do
    local s = tonumber(all[j])
    if s then
      out[#out + 1] = s
      out[#out + 1] = tonumber(all[j + 1])
    end
  end
end
return out
"""
).replace("__KEEP__", str(KEEP_SLOTS))

SETTLE = """
-- Many tickets at once.  KEYS: every bucket hash of every ticket, in order.  ARGV: cur, then per
-- ticket "rid slot n", then its n buckets as "kind reserved actual".
local cur = tonumber(ARGV[1])
local first = cur - __KEEP__ + 1
local a, k = 2, 1
while a <= #ARGV do
  local rid, slot, n = string.match(ARGV[a], '^(%S+) (%d+) (%d+)$')
  a = a + 1
  for _ = 1, tonumber(n) do
    local kind, reserved, actual = string.match(ARGV[a], '^(%a) (%d+) (%d+)$')
    local h = KEYS[k]
    a, k = a + 1, k + 1
    if kind == 'w' then
      if tonumber(slot) >= first then
        local v = redis.call('HGET', h, slot)
        if v then
          local delta = tonumber(actual) - tonumber(reserved)
          if delta < -tonumber(v) then delta = -tonumber(v) end
          if delta ~= 0 then
            redis.call('HINCRBY', h, slot, delta)
            redis.call('HINCRBY', h, 't', delta)
          end
        end
      end
    else
      local v = redis.call('HGET', h, 'h:' .. rid)
      if v then
        redis.call('HINCRBY', h, 'held', '-' .. v)
        redis.call('HDEL', h, 'h:' .. rid)
        redis.call('ZREM', h .. ':h', rid)
        redis.call('HINCRBY', h, 'spent', actual)
      end
    end
  end
end
return 1
""".replace("__KEEP__", str(KEEP_SLOTS))

PEEK = """
-- read only.  KEYS: the bucket hashes.  ARGV: now, cur, then each bucket's kind
local now, cur = tonumber(ARGV[1]), tonumber(ARGV[2])
local first = cur - __KEEP__ + 1
local out = {}
for i = 1, #KEYS do
  local h = KEYS[i]
  local used, spent, held, newest = 0, 0, 0, -1
  if ARGV[2 + i] == 'w' then
    local all = redis.call('HGETALL', h)
    for j = 1, #all, 2 do
      local s = tonumber(all[j])
      if s and s >= first then
        local v = tonumber(all[j + 1])
        used = used + v
        if v > 0 and s > newest then newest = s end
      end
    end
  else
    spent = tonumber(redis.call('HGET', h, 'spent') or '0')
    held = tonumber(redis.call('HGET', h, 'held') or '0')
    for _, r in ipairs(redis.call('ZRANGEBYSCORE', h .. ':h', '-inf', now)) do
      held = held - tonumber(redis.call('HGET', h, 'h:' .. r) or '0')
    end
    used = spent + held
  end
  out[#out + 1] = used
  out[#out + 1] = spent
  out[#out + 1] = held
  out[#out + 1] = newest
end
return out
""".replace("__KEEP__", str(KEEP_SLOTS))

SEED = """
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 and ARGV[2] ~= '-' then
  redis.call('EXPIREAT', KEYS[1], math.floor(tonumber(ARGV[2])) + 86400)
end
return 1
"""

_MAX_BATCH = 256
"""Tickets settled by one script at most."""


class RedisStore:
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "fareway:",
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
        hold_retry_s: float = 1.0,
        max_connections: int = 64,
        client: Any = None,
    ) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.clock = clock
        self.hold_retry_s = hold_retry_s
        if client is None:
            # callers wait for a free connection (up to ``timeout``) instead of failing at once
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            client = aioredis.Redis.from_pool(pool)
        self._r = client
        self._reserve = self._r.register_script(RESERVE)
        self._settle = self._r.register_script(SETTLE)
        self._peek = self._r.register_script(PEEK)
        self._seed = self._r.register_script(SEED)
        self._queue: list[tuple[Ticket, list[int]]] = []
        self._pending: set[asyncio.Task[None]] = set()

    def _key(self, b: Bucket) -> str:
        return f"{self.prefix}{{lim}}:{b.key}"

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis.exceptions

        try:
            return await script(keys=keys, args=args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    async def reserve(self, rid: str, buckets: Sequence[Bucket], *, hold_s: float) -> Ticket | Refusal:
        now = self.clock()
        cur = slot_of(now)
        args: list[Any] = [repr(now), cur, rid, repr(now + hold_s)]
        for b in buckets:
            ends = "-" if b.ends_at is None else repr(b.ends_at)
            kind = "w" if b.kind == "window" else "B" if b.seeded else "b"
            args.append(f"{kind} {b.limit} {b.amount} {ends}")
        out = [int(x) for x in await self._call(self._reserve, [self._key(b) for b in buckets], args)]
        if out[0] < 0:
            raise BucketUnseeded(buckets[-out[0] - 1].key)
        refused = out[0] - 1
        levels: list[Level] = []
        for i, b in enumerate(buckets):
            used, spent, held = out[1 + 3 * i : 4 + 3 * i]
            if b.kind == "window":
                if refused < 0:
                    used += b.amount
                # an admitted call went into the current slot: the window empties KEEP slots later
                levels.append(Level(b, used, (cur + KEEP_SLOTS) - now if used else 0.0))
            else:
                if refused < 0:
                    held += b.amount
                    used += b.amount
                levels.append(Level(b, used, budget_reset(b, now), spent=spent, held=held))
        if refused < 0:
            return Ticket(rid, tuple(buckets), cur, levels)
        b = buckets[refused]
        lv = levels[refused]
        if b.kind == "window":
            rest = out[1 + 3 * len(buckets) :]
            slots = {rest[j]: rest[j + 1] for j in range(0, len(rest), 2) if rest[j] >= cur - KEEP_SLOTS + 1}
            lv.retry_after = window_retry(slots, lv.used, b.amount, b.limit, now)
            lv.reset_s = window_reset(slots, now)
        else:
            lv.retry_after = budget_retry(b, lv.spent, now, self.hold_retry_s)
        return Refusal(refused, levels)

    def settle(self, ticket: Ticket, actual: Sequence[int]) -> None:
        if ticket.settled:
            return
        ticket.settled = True
        self._queue.append((ticket, [max(0, int(a)) for a in actual]))
        if len(self._queue) == 1:
            task = asyncio.ensure_future(self._flush())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the calls ending in this loop turn join the batch
        while self._queue:
            batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
            keys: list[str] = []
            args: list[Any] = [slot_of(self.clock())]
            for ticket, actual in batch:
                args.append(f"{ticket.rid} {ticket.slot} {len(ticket.buckets)}")
                for b, real in zip(ticket.buckets, actual, strict=True):
                    keys.append(self._key(b))
                    args.append(f"{'w' if b.kind == 'window' else 'b'} {b.amount} {real}")
            await self._send_settles(keys, args, len(batch))

    async def _send_settles(self, keys: list[str], args: list[Any], n: int) -> None:
        for delay in (0.1, 0.5, 2.0, None):
            try:
                await self._call(self._settle, keys, args)
                return
            except StoreUnavailable as exc:
                if delay is None:
                    log.error(
                        "settling %d reservation(s) failed (%s): their holds expire by themselves, their "
                        "spend is missing from the store until the next seed from the ledger",
                        n,
                        exc,
                    )
                    return
                await asyncio.sleep(delay)

    async def peek(self, buckets: Sequence[Bucket]) -> list[Level]:
        now = self.clock()
        cur = slot_of(now)
        args: list[Any] = [repr(now), cur, *("w" if b.kind == "window" else "b" for b in buckets)]
        out = [int(x) for x in await self._call(self._peek, [self._key(b) for b in buckets], args)]
        levels = []
        for i, b in enumerate(buckets):
            used, spent, held, newest = out[4 * i : 4 * i + 4]
            if b.kind == "window":
                reset = max(0.0, (newest + KEEP_SLOTS) - now) if newest >= 0 else 0.0
                levels.append(Level(b, used, reset))
            else:
                levels.append(Level(b, used, budget_reset(b, now), spent=spent, held=held))
        return levels

    async def seed(self, key: str, spent: int, ends_at: float | None) -> None:
        h = f"{self.prefix}{{lim}}:{key}"
        await self._call(self._seed, [h], [spent, "-" if ends_at is None else repr(ends_at)])

    async def close(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        await self._r.aclose()
