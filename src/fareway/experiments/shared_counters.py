"""Experiment counters and judge spend counted by every gateway on one Redis
(``[shared] experiments = "redis"``).

Assignment needs no shared state: an arm is a keyed hash of the experiment's name and the unit
(fareway.experiments.assign), the same on every gateway that runs the same definition.  What
gateways must add up together is the counts (calls per arm, sampled, dropped, over budget,
unpriced) and the judge + shadow spend, which ``judge_budget_usd`` is checked against: counted
per gateway, N gateways would spend N budgets.

The same script records which definition each gateway runs (a fingerprint of the experiment's
settings, in ``P{exp}:<name>:defs``, one field per gateway with the time): two gateways with
different definitions (another ``split``, say, during a rolling deploy) could give one subject
two arms, so the manager warns while it sees one that differs (:meth:`RedisCounters.add`
returns them).

One hash per experiment, ``P{exp}:<name>`` (``P`` is ``[shared] prefix``): a field per counter
and ``spend`` in pico-dollars (an integer, moved with HINCRBY: exact for costs of up to 12
decimals).  The manager adds what it counted since the last tick with ONE script per experiment
(which returns the totals), never on a call's path.  A hash that does not exist yet (a new
experiment, or a Redis that restarted empty) is first seeded with the calling gateway's own
totals, so a restart does not drop the counts to zero.

Redis down: fail open.  Calls are assigned and served as before (assignment is local), each
gateway counts in memory and checks the budget against the last totals it read plus its own
spend since; what it counted is added when Redis answers again.  Logged once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fareway.redis_client import fail_fast_client

log = logging.getLogger("fareway.experiments")

PICO = Decimal(10) ** 12

_ADD = """
local h = KEYS[1]
local n = tonumber(ARGV[1])
if redis.call('EXISTS', h) == 0 then
  for i = 0, n - 1 do
    redis.call('HSET', h, ARGV[2 + i * 3], ARGV[3 + i * 3])
  end
end
for i = 0, n - 1 do
  redis.call('HINCRBY', h, ARGV[2 + i * 3], ARGV[4 + i * 3])
end
local defs = KEYS[2]
redis.call('HSET', defs, ARGV[2 + n * 3], ARGV[3 + n * 3])
redis.call('PEXPIRE', defs, 86400000)
return {redis.call('HGETALL', h), redis.call('HGETALL', defs)}
"""


def to_pico(amount: Decimal) -> int:
    return int((amount * PICO).to_integral_value(ROUND_HALF_EVEN))


class RedisCounters:
    """Adds an experiment's counts to its hash and returns the totals of every gateway."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fareway:shared:",
        timeout: float = 0.25,
        client: Any = None,
        instance: str | None = None,
        wall: Any = time.time,
    ) -> None:
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wall = wall
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._client = client
        self.down = False
        self.errors = 0

    def key(self, name: str) -> str:
        return f"{self.prefix}{{exp}}:{name}"

    def _redis(self) -> Any:
        if self._client is None:
            self._client = fail_fast_client(self.url, self.timeout)
        return self._client

    async def add(
        self,
        name: str,
        deltas: dict[str, int],
        spend: Decimal,
        seed: dict[str, int],
        seed_spend: Decimal,
        fingerprint: str = "",
    ) -> tuple[dict[str, int], Decimal, dict[str, tuple[str, float]]]:
        """Add ``deltas`` and ``spend``; a missing hash is first set to ``seed``/``seed_spend``;
        record that this gateway runs the definition ``fingerprint``.  Returns every gateway's
        totals and every gateway's definition (gateway -> (fingerprint, when it said so)).
        Raises when Redis does not answer."""
        fields = [*seed, "spend"]
        args: list[Any] = [len(fields)]
        for f in fields:
            if f == "spend":
                args += [f, to_pico(seed_spend), to_pico(spend)]
            else:
                args += [f, seed.get(f, 0), deltas.get(f, 0)]
        args += [self.instance, f"{fingerprint}|{self.wall()!r}"]
        try:
            async with asyncio.timeout(2 * self.timeout + 0.1):
                flat, defs_flat = await self._redis().eval(
                    _ADD, 2, self.key(name), self.key(name) + ":defs", *args
                )
        except Exception as exc:
            self.errors += 1
            if not self.down:
                self.down = True
                log.warning(
                    "experiments: shared counters unavailable (%s: %s); counting in memory until Redis "
                    "answers again",
                    type(exc).__name__,
                    exc,
                )
            raise
        if self.down:
            self.down = False
            log.warning("experiments: shared counters answer again")
        totals = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        pico = totals.pop("spend", 0)
        defs: dict[str, tuple[str, float]] = {}
        for i in range(0, len(defs_flat), 2):
            fp, _, when = defs_flat[i + 1].decode().rpartition("|")
            try:
                defs[defs_flat[i].decode()] = (fp, float(when))
            except ValueError:
                continue
        return {f: totals.get(f, 0) for f in seed}, Decimal(pico) / PICO, defs

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2 * self.timeout + 0.1):
                    await client.aclose()
