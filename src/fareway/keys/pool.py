"""Which provider key a call uses: pools of keys per (owner, provider), rotated on 429 or quota.

Owners: the gateway (its configured ``api_key`` first, then the vault's gateway keys) and each
team (its vault keys).  A call of a team that owns keys for a provider uses only that team's
keys for it; a call of any other caller uses the gateway's.  No call ever gets another team's key.

A pool sticks to its current key until the provider answers 429 (rate limit) or a quota error on
it; that key then rests (``Retry-After``, or ``rate_limit_rest`` / ``quota_rest`` seconds) and
the same attempt is retried at once with the next key that is not resting.  When every key of a
pool rests, the one whose rest ends first is used (the call still tries; the provider decides).

:meth:`KeyPools.for_call` gives the per-call chooser the executor reads (the
``router.keychoice.KeyChoice`` seam): ``pick`` and ``limited``.  Secrets live only in memory
here; anything shown or logged is a fingerprint.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fareway.errors import UpstreamError, UpstreamQuotaExceeded
from fareway.keys.vault import Vault, key_fingerprint
from fareway.scrub import register
from fareway.types import Upstream

Clock = Callable[[], float]
log = logging.getLogger("fareway.keys")


@dataclass(slots=True)
class PoolKey:
    key_id: str
    secret: str
    fingerprint: str
    rest_until: float = 0.0


@dataclass(slots=True)
class KeyPool:
    """The keys of one owner for one provider, in order."""

    keys: list[PoolKey] = field(default_factory=list)
    current: int = 0

    def pick(self, now: float) -> PoolKey:
        n = len(self.keys)
        for i in range(n):
            k = self.keys[(self.current + i) % n]
            if k.rest_until <= now:
                self.current = (self.current + i) % n
                return k
        return min(self.keys, key=lambda k: k.rest_until)

    def rest(self, secret: str, until: float, now: float) -> PoolKey | None:
        """Rest the key ``secret`` until ``until``; the next key not resting, or None."""
        for i, k in enumerate(self.keys):
            if k.secret == secret:
                k.rest_until = max(k.rest_until, until)
                n = len(self.keys)
                for j in range(1, n):
                    nxt = self.keys[(i + j) % n]
                    if nxt.rest_until <= now:
                        self.current = (i + j) % n
                        return nxt
                return None
        return None


class KeyPools:
    def __init__(
        self,
        *,
        rate_limit_rest: float = 60.0,
        quota_rest: float = 3600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rate_limit_rest = rate_limit_rest
        self.quota_rest = quota_rest
        self.clock = clock
        self.gateway: dict[str, KeyPool] = {}
        self.teams: dict[str, dict[str, KeyPool]] = {}
        self._multi = False
        self.provider_set: frozenset[str] = frozenset()
        """Providers some caller has a key for (routable at all)."""
        self.generation = -1
        """The state DB generation these pools were loaded at (-1: never)."""

    def load(
        self,
        config_keys: dict[str, str],
        stored: Iterable[tuple[str, str, str | None, str]],
    ) -> None:
        """Replace the pools: ``config_keys`` provider -> the configured key; ``stored`` (id,
        provider, team_id or None, secret) from the vault.  Keys that are resting stay resting."""
        resting = {k.secret: k.rest_until for p in self._all() for k in p.keys if k.rest_until}
        gateway: dict[str, KeyPool] = {}
        teams: dict[str, dict[str, KeyPool]] = {}
        for provider, secret in config_keys.items():
            if secret:
                gateway.setdefault(provider, KeyPool()).keys.append(
                    PoolKey(f"config:{provider}", secret, key_fingerprint(secret))
                )
        for key_id, provider, team_id, secret in stored:
            register([secret])  # scrubbed from anything an upstream says, from now on
            pools = gateway if team_id is None else teams.setdefault(team_id, {})
            pools.setdefault(provider, KeyPool()).keys.append(
                PoolKey(key_id, secret, key_fingerprint(secret))
            )
        for p in [*gateway.values(), *(q for t in teams.values() for q in t.values())]:
            for k in p.keys:
                k.rest_until = resting.get(k.secret, 0.0)
        self.gateway, self.teams = gateway, teams
        self.provider_set = frozenset(gateway).union(*(set(t) for t in teams.values()))
        self._multi = (
            bool(teams)
            or any(len(p.keys) > 1 for p in gateway.values())
            or any(not k.key_id.startswith("config:") for p in gateway.values() for k in p.keys)
        )

    def _all(self) -> list[KeyPool]:
        return [*self.gateway.values(), *(q for t in self.teams.values() for q in t.values())]

    def pool(self, team_id: str | None, provider: str) -> KeyPool | None:
        if team_id is not None:
            own = self.teams.get(team_id)
            if own is not None and provider in own:
                return own[provider]
        return self.gateway.get(provider)

    def has_key(self, team_id: str | None, provider: str) -> bool:
        return self.pool(team_id, provider) is not None

    def for_call(self, team_id: str | None) -> CallKeys | None:
        """The chooser for one call of ``team_id`` (None: a caller without a team), or None when
        there is nothing to choose (one configured key per provider, no vault keys)."""
        if not self._multi:
            return None
        return CallKeys(self, team_id)

    def rest_for(self, exc: UpstreamError) -> float:
        if exc.retry_after is not None and exc.retry_after > 0:
            return exc.retry_after
        return self.quota_rest if isinstance(exc, UpstreamQuotaExceeded) else self.rate_limit_rest


class CallKeys:
    """One call's choice of provider keys (``router.keychoice.KeyChoice``)."""

    __slots__ = ("pools", "team_id")

    def __init__(self, pools: KeyPools, team_id: str | None) -> None:
        self.pools = pools
        self.team_id = team_id

    def pick(self, up: Upstream) -> Upstream | None:
        pool = self.pools.pool(self.team_id, up.provider)
        if pool is None:
            return None
        key = pool.pick(self.pools.clock())
        return up if key.secret == up.api_key else dataclasses.replace(up, api_key=key.secret)

    def limited(self, up: Upstream, exc: UpstreamError) -> Upstream | None:
        pool = self.pools.pool(self.team_id, up.provider)
        if pool is None or up.api_key is None or len(pool.keys) < 2:
            return None
        now = self.pools.clock()
        nxt = pool.rest(up.api_key, now + self.pools.rest_for(exc), now)
        return None if nxt is None else dataclasses.replace(up, api_key=nxt.secret)


class PoolRefresher:
    """Keeps :class:`KeyPools` in step with the vault: ``refresh_now`` reloads (decrypting every
    stored key); ``refresh_if_changed`` does so only when the state DB changed since the last
    load (a provider key added or revoked with the CLI or the admin API)."""

    def __init__(self, pools: KeyPools, vault: Vault, config_keys: dict[str, str]) -> None:
        self.pools = pools
        self.vault = vault
        self.config_keys = dict(config_keys)
        self._lock = threading.Lock()

    def refresh_now(self) -> list[str]:
        """Reload; returns the ids of stored keys that could not be decrypted (logged)."""
        with self._lock:
            generation = self.vault.db.changed()
            stored, bad = self.vault.load()
            self.pools.load(self.config_keys, [(i.pk_id, i.provider, i.team_id, s) for i, s in stored])
            self.pools.generation = generation
        if bad:
            log.error(
                "%d stored provider key(s) cannot be decrypted with the configured vault master key "
                "(%s): they are not used",
                len(bad),
                ", ".join(bad),
            )
        return bad

    def refresh_if_changed(self) -> None:
        """Reload when the state DB moved on since the last load.  Reads the generation the
        request's authentication just brought up to date (no query of its own)."""
        if self.vault.db.generation != self.pools.generation:
            self.refresh_now()
