"""Gateway keys: issued once, stored only as a SHA-256 hash in the embedded SQLite state DB.

A key looks like ``fw-<43 url-safe chars>`` (256 random bits), so a plain SHA-256 is the right
hash: there is nothing to brute-force, and lookup by hash keeps the secret itself out of the DB
and out of any timing-dependent comparison.  The master key (``FAREWAY_MASTER_KEY``) is compared
in constant time.  A key has a display prefix (its first 7 characters), scopes, optionally a
team, allowed models and providers, an expiry, metadata, budgets and rate limits
(:mod:`fareway.keys.records`).  Active names are unique.

Rotation gives a key a new secret and keeps everything else (id, name, limits, spend); the old
secret may stay valid for a grace period.  Revocation and expiry take effect at once: the lookup
cache is dropped whenever the state DB changed (:class:`~fareway.keys.state_db.StateDB`), and
the expiry is checked on every request.

Failed guesses are logged (the fingerprint of the presented key and the client's address, never
the key) and throttled per address by :class:`FailedAuthThrottle`: after ``limit`` wrong keys
within ``window`` seconds, that address is answered 429 (with Retry-After) until the window that
began with its first failure has passed, whatever key it presents.  A revoked or expired key is
refused with a message saying so, and is not counted as a guess.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fareway.errors import AuthenticationFailed, Conflict, NotFound, TooManyFailedLogins
from fareway.keys.records import (
    MASTER,
    NO_LIMITS,
    KeyInfo,
    Limits,
    Principal,
    check_metadata,
    check_name,
    check_patterns,
    check_scopes,
    money,
)
from fareway.keys.state_db import IntegrityError, StateDB, StateStore
from fareway.scrub import fingerprint

log = logging.getLogger("fareway.auth")

KEY_PREFIX = "fw-"
MAX_GRACE_SECONDS = 30 * 86400

__all__ = [
    "KEY_PREFIX",
    "MASTER",
    "FailedAuthThrottle",
    "KeyInfo",
    "KeyStore",
    "Principal",
    "hash_key",
]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class FailedAuthThrottle:
    """Wrong keys counted per client address in fixed windows of ``window`` seconds (the first
    failure opens one); at ``limit`` failures the address is refused until its window closes.
    At most ``max_addresses`` addresses are tracked (expired windows go first, then the oldest)."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window end, failures)

    def check(self, address: str | None) -> None:
        """Raise TooManyFailedLogins if ``address`` is refused right now."""
        if address is None:
            return
        entry = self._windows.get(address)
        if entry is None:
            return
        end, failures = entry
        now = self.clock()
        if now >= end:
            del self._windows[address]
        elif failures >= self.limit:
            raise TooManyFailedLogins(
                f"Too many failed authentication attempts from this address; retry in {end - now:.0f}s.",
                retry_after=max(1.0, end - now),
            )

    def failed(self, address: str | None) -> int:
        """Count one failure from ``address``; the failures in its current window."""
        if address is None:
            return 0
        now = self.clock()
        entry = self._windows.get(address)
        if entry is None or now >= entry[0]:
            if len(self._windows) >= self.max_addresses:
                self._evict(now)
            entry = (now + self.window, 0)
        end, failures = entry[0], entry[1] + 1
        self._windows[address] = (end, failures)
        return failures

    def _evict(self, now: float) -> None:
        for addr in [a for a, (end, _) in self._windows.items() if end <= now]:
            del self._windows[addr]
        while len(self._windows) >= self.max_addresses:
            del self._windows[next(iter(self._windows))]

    def __len__(self) -> int:
        return len(self._windows)


# ------------------------------------------------------------------------------ rows

_COLS = (
    "key_id, name, role, prefix, created_at, revoked_at, scopes, team_id, allowed_models, "
    "allowed_providers, expires_at, metadata, budget_daily_usd, budget_monthly_usd, budget_total_usd, "
    "rpm, tpm, rotated_at, prev_valid_until"
)
_TEAM_COLS = (
    "t.name, t.allowed_models, t.allowed_providers, t.budget_daily_usd, t.budget_monthly_usd, "
    "t.budget_total_usd, t.rpm, t.tpm"
)


def _json_list(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _limits(row: tuple[Any, ...]) -> Limits:
    d, m, t, rpm, tpm = row
    return Limits(money(d, "budget"), money(m, "budget"), money(t, "budget"), rpm, tpm)


def _info(r: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(
        key_id=r[0],
        name=r[1],
        role=r[2],
        prefix=r[3],
        created_at=r[4],
        revoked_at=r[5],
        scopes=frozenset(json.loads(r[6])) if r[6] else frozenset(),
        team_id=r[7],
        allowed_models=_json_list(r[8]),
        allowed_providers=_json_list(r[9]),
        expires_at=r[10],
        metadata=json.loads(r[11]) if r[11] else {},
        limits=_limits(r[12:17]),
        rotated_at=r[17],
        previous_valid_until=r[18],
    )


def _limit_values(limits: Limits) -> tuple[Any, ...]:
    d = limits.as_dict()
    return (d["budget_daily_usd"], d["budget_monthly_usd"], d["budget_total_usd"], limits.rpm, limits.tpm)


class _Refusal:
    """A cached lookup that found a key that may not be used (revoked, expired, rotated out)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class KeyStore:
    """Keys in ``state.db``.  Lookups are cached in memory for ``cache_ttl`` seconds and dropped
    whenever the state DB changed, so revocation and rotation take effect at the next request."""

    def __init__(
        self,
        path: Path,
        *,
        master_key: str | None = None,
        cache_ttl: float = 2.0,
        throttle: FailedAuthThrottle | None = None,
        db: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.db: StateStore = db or StateDB(path)
        self.master_key = master_key
        self.cache_ttl = cache_ttl
        self.throttle = throttle or FailedAuthThrottle()
        self.clock = clock
        self._cache: dict[str, tuple[float, int, float | None, Principal | _Refusal | None]] = {}
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        return self.db.connect()

    def close(self) -> None:
        self.db.close()

    def _changed(self) -> None:
        self._cache.clear()
        self.db.bump()

    # ------------------------------------------------------------- admin

    def create(
        self,
        name: str,
        role: str = "inference",
        *,
        scopes: Any = None,
        team_id: str | None = None,
        allowed_models: Any = None,
        allowed_providers: Any = None,
        expires_at: float | None = None,
        metadata: Any = None,
        limits: Limits | None = None,
    ) -> tuple[str, KeyInfo]:
        """Issue a key; the secret is returned once and never stored.  Raises ValueError for bad
        input, Conflict when an active key already has ``name``, NotFound for an unknown team."""
        if role not in ("inference", "admin"):
            raise ValueError("role must be inference or admin")
        check_name(name, "key name")
        scope_set = check_scopes(scopes) if scopes is not None else check_scopes([role])
        role = "admin" if "admin" in scope_set else "inference"
        models = check_patterns(allowed_models, "allowed_models")
        providers = check_patterns(allowed_providers, "allowed_providers")
        meta = check_metadata(metadata)
        lim = limits or NO_LIMITS
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at is in the past")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = "key_" + secrets.token_hex(6)
        with self._lock, self._connect() as db:
            if (
                team_id is not None
                and db.execute("SELECT 1 FROM teams WHERE team_id=?", (team_id,)).fetchone() is None
            ):
                raise NotFound(f"no team {team_id!r}", code="team_not_found")
            try:
                db.execute(
                    "INSERT INTO gateway_keys (key_id, name, role, key_hash, prefix, created_at, scopes, "
                    "team_id, allowed_models, allowed_providers, expires_at, metadata, budget_daily_usd, "
                    "budget_monthly_usd, budget_total_usd, rpm, tpm) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        key_id,
                        name,
                        role,
                        hash_key(secret),
                        secret[:7],
                        now,
                        json.dumps(sorted(scope_set)),
                        team_id,
                        json.dumps(list(models)) if models else None,
                        json.dumps(list(providers)) if providers else None,
                        expires_at,
                        json.dumps(meta) if meta else None,
                        *_limit_values(lim),
                    ),
                )
            except IntegrityError as exc:
                raise Conflict(f"an active key is already named {name!r}", param="name") from exc
        self._changed()
        info = self.get(key_id)
        assert info is not None
        return secret, info

    def ping(self) -> None:
        """One cheap query on the keys table (the readiness probe, which a load balancer sends every
        few seconds: never a listing of every key).  Raises when the state database cannot answer."""
        with self._connect() as db:
            db.execute("SELECT 1 FROM gateway_keys LIMIT 1").fetchall()

    def list(self, *, team_id: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        sql = f"SELECT {_COLS} FROM gateway_keys WHERE 1=1"
        args: list[Any] = []
        if team_id is not None:
            sql += " AND team_id=?"
            args.append(team_id)
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY created_at, key_id", args).fetchall()
        return [_info(r) for r in rows]

    def get(self, key_id_or_name: str) -> KeyInfo | None:
        """A key by id (revoked ones too) or by the name of an active key."""
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_COLS} FROM gateway_keys WHERE key_id=? OR (name=? AND revoked_at IS NULL) "
                "ORDER BY key_id=? DESC LIMIT 1",
                (key_id_or_name, key_id_or_name, key_id_or_name),
            ).fetchone()
        return _info(row) if row else None

    def require(self, key_id_or_name: str) -> KeyInfo:
        info = self.get(key_id_or_name)
        if info is None:
            raise NotFound(f"no key with id or active name {key_id_or_name!r}", code="key_not_found")
        return info

    def update(self, key_id_or_name: str, changes: Mapping[str, Any]) -> tuple[KeyInfo, KeyInfo]:
        """Change an active key's name, scopes, team, allow-lists, expiry, metadata or limits
        (the fields of :meth:`KeyInfo.as_dict`; absent ones stay, null clears).  Returns (before,
        after)."""
        before = self.require(key_id_or_name)
        if before.revoked_at is not None:
            raise ValueError(f"key {before.key_id} is revoked")
        allowed = {
            "name",
            "scopes",
            "team_id",
            "allowed_models",
            "allowed_providers",
            "expires_at",
            "metadata",
            "budget_daily_usd",
            "budget_monthly_usd",
            "budget_total_usd",
            "rpm",
            "tpm",
        }
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        sets: dict[str, Any] = {}
        if "name" in changes:
            sets["name"] = check_name(changes["name"], "key name")
        if "scopes" in changes:
            sc = check_scopes(changes["scopes"])
            sets["scopes"] = json.dumps(sorted(sc))
            sets["role"] = "admin" if "admin" in sc else "inference"
        if "team_id" in changes:
            sets["team_id"] = changes["team_id"]
        for f in ("allowed_models", "allowed_providers"):
            if f in changes:
                v = check_patterns(changes[f], f)
                sets[f] = json.dumps(list(v)) if v else None
        if "expires_at" in changes:
            exp = changes["expires_at"]
            if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float)):
                raise ValueError("expires_at must be a Unix time or null")
            sets["expires_at"] = exp
        if "metadata" in changes:
            meta = check_metadata(changes["metadata"])
            sets["metadata"] = json.dumps(meta) if meta else None
        lim = Limits.parse(dict(changes), before.limits)
        for col, value in zip(
            ("budget_daily_usd", "budget_monthly_usd", "budget_total_usd", "rpm", "tpm"),
            _limit_values(lim),
            strict=True,
        ):
            if col in changes:
                sets[col] = value
        if not sets:
            return before, before
        sets["updated_at"] = self.clock()
        with self._lock, self._connect() as db:
            if (
                sets.get("team_id") is not None
                and db.execute("SELECT 1 FROM teams WHERE team_id=?", (sets["team_id"],)).fetchone() is None
            ):
                raise NotFound(f"no team {sets['team_id']!r}", code="team_not_found")
            # column names come from the fixed set above, values are parameters
            assignments = ", ".join(f"{c}=?" for c in sets)
            try:
                db.execute(
                    f"UPDATE gateway_keys SET {assignments} WHERE key_id=?", (*sets.values(), before.key_id)
                )
            except IntegrityError as exc:
                raise Conflict(f"an active key is already named {sets.get('name')!r}", param="name") from exc
        self._changed()
        after = self.get(before.key_id)
        assert after is not None
        return before, after

    def rotate(self, key_id_or_name: str, grace_seconds: float = 0.0) -> tuple[str, KeyInfo]:
        """A new secret for an active key (same id, name, limits, spend).  The old secret keeps
        working for ``grace_seconds`` (0: it stops at once)."""
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise ValueError(f"grace must be between 0 and {MAX_GRACE_SECONDS} seconds")
        info = self.require(key_id_or_name)
        if info.revoked_at is not None:
            raise ValueError(f"key {info.key_id} is revoked; create a new one")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE gateway_keys SET prev_hash=CASE WHEN ? > 0 THEN key_hash ELSE NULL END, "
                "prev_valid_until=CASE WHEN ? > 0 THEN ? ELSE NULL END, key_hash=?, prefix=?, rotated_at=?, "
                "updated_at=? WHERE key_id=? AND revoked_at IS NULL",
                (
                    grace_seconds,
                    grace_seconds,
                    now + grace_seconds,
                    hash_key(secret),
                    secret[:7],
                    now,
                    now,
                    info.key_id,
                ),
            )
        self._changed()
        after = self.get(info.key_id)
        assert after is not None
        return secret, after

    def revoke(self, key_id_or_name: str) -> int:
        with self._lock, self._connect() as db:
            cur = db.execute(
                "UPDATE gateway_keys SET revoked_at=? WHERE (key_id=? OR name=?) AND revoked_at IS NULL",
                (self.clock(), key_id_or_name, key_id_or_name),
            )
            n = cur.rowcount
        self._changed()
        return n

    def team_key_ids(self, team_id: str) -> builtins.list[str]:
        """Every key the team ever had (revoked ones too: their spend stays the team's)."""
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT key_id FROM gateway_keys WHERE team_id=?", (team_id,))]

    # ------------------------------------------------------------ request path

    def _lookup(self, digest: str) -> tuple[float | None, Principal | _Refusal | None]:
        """(valid until, the principal or why not, or None for an unknown key)."""
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join('k.' + c.strip() for c in _COLS.split(','))}, {_TEAM_COLS}, k.key_hash=? "
                "FROM gateway_keys k LEFT JOIN teams t ON t.team_id = k.team_id "
                "WHERE k.key_hash=? OR k.prev_hash=? ORDER BY k.key_hash=? DESC LIMIT 1",
                (digest, digest, digest, digest),
            ).fetchone()
        if row is None:
            return None, None
        info = _info(row[:19])
        team = row[19:27]
        current = bool(row[27])
        now = self.clock()
        if info.revoked_at is not None:
            return None, _Refusal(f"This key ({info.prefix}..., `{info.name}`) was revoked.")
        if not current and (info.previous_valid_until is None or info.previous_valid_until <= now):
            return None, _Refusal(
                f"This key ({info.prefix}..., `{info.name}`) was rotated; use its new secret."
            )
        if info.expires_at is not None and info.expires_at <= now:
            return None, _Refusal(f"This key ({info.prefix}..., `{info.name}`) has expired.")
        until = info.expires_at
        if not current:
            until = (
                info.previous_valid_until if until is None else min(until, info.previous_valid_until or until)
            )
        models = tuple(x for x in (info.allowed_models, _json_list(team[1])) if x)
        providers = tuple(x for x in (info.allowed_providers, _json_list(team[2])) if x)
        principal = Principal(
            key_id=info.key_id,
            name=info.name,
            role=info.role,
            scopes=info.scopes,
            team_id=info.team_id,
            team_name=team[0],
            allowed_models=models,
            allowed_providers=providers,
            key_limits=info.limits,
            team_limits=_limits(team[3:8]) if info.team_id is not None and team[0] is not None else NO_LIMITS,
            expires_at=info.expires_at,
            prefix=info.prefix,
        )
        return until, principal

    async def _find(self, digest: str, generation: int) -> Principal | _Refusal | None:
        """The cached (or looked up) principal for a key's digest, or why not, or None."""
        mono = time.monotonic()
        hit = self._cache.get(digest)
        if (
            hit is not None
            and hit[0] > mono
            and hit[1] == generation
            and (hit[2] is None or hit[2] > self.clock())
        ):
            return hit[3]
        until, found = await asyncio.to_thread(self._lookup, digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (mono + self.cache_ttl, generation, until, found)
        return found

    async def authenticate_digest(self, digest: str) -> Principal:
        """The principal for a key known only by its SHA-256 (a dashboard session re-checking the
        key that logged in); AuthenticationFailed when that key is no longer valid.  Not a guess:
        never counted by the throttle."""
        generation = self.db.changed()
        if self.master_key and hmac.compare_digest(digest, hash_key(self.master_key)):
            return MASTER
        found = await self._find(digest, generation)
        if isinstance(found, Principal):
            return found
        raise AuthenticationFailed(found.message if isinstance(found, _Refusal) else "Unknown key.")

    async def authenticate(self, presented: str | None, client: str | None = None) -> Principal:
        """The principal for a presented key; AuthenticationFailed otherwise (logged, and counted
        against ``client``, the caller's address, when the key is unknown); TooManyFailedLogins
        while ``client`` is throttled."""
        self.throttle.check(client)
        if not presented:
            raise AuthenticationFailed(
                "Missing API key. Send your Fareway key as `Authorization: Bearer <key>` (or `x-api-key`)."
            )
        generation = self.db.changed()  # every request brings the change watch up to date
        if self.master_key and hmac.compare_digest(presented.encode(), self.master_key.encode()):
            return MASTER
        found = await self._find(hash_key(presented), generation)
        if isinstance(found, Principal):
            return found
        if isinstance(found, _Refusal):
            log.info(
                "refused key %s from %s: %s",
                fingerprint(presented),
                client or "an unknown address",
                found.message,
            )
            raise AuthenticationFailed(found.message)
        failures = self.throttle.failed(client)
        log.warning(
            "failed authentication from %s: unknown key %s (%d in this window)",
            client or "an unknown address",
            fingerprint(presented),
            failures,
        )
        if failures == self.throttle.limit:
            log.warning(
                "throttling %s for up to %.0fs after %d failed authentications",
                client,
                self.throttle.window,
                failures,
            )
        raise AuthenticationFailed("Incorrect API key provided. Create one with `fareway keys create`.")
