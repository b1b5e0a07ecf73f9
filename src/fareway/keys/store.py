"""Gateway keys: issued once, stored only as a SHA-256 hash in the embedded SQLite state DB.

A key looks like ``fw-<43 url-safe chars>`` (256 random bits), so a plain SHA-256 is the right
hash: there is nothing to brute-force, and lookup by hash keeps the secret itself out of the DB
and out of any timing-dependent comparison.  The master key (``FAREWAY_MASTER_KEY``) is compared
in constant time.

Failed guesses are logged (the fingerprint of the presented key and the client's address, never
the key) and throttled per address by :class:`FailedAuthThrottle`: after ``limit`` wrong keys
within ``window`` seconds, that address is answered 429 (with Retry-After) until the window that
began with its first failure has passed, whatever key it presents.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fareway.errors import AuthenticationFailed, TooManyFailedLogins
from fareway.scrub import fingerprint

log = logging.getLogger("fareway.auth")

KEY_PREFIX = "fw-"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: str  # admin | inference

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


MASTER = Principal("master", "master", "admin")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    name: str
    role: str
    prefix: str
    created_at: float
    revoked_at: float | None


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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'inference',
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


class KeyStore:
    """Keys in ``state.db``.  Lookups are cached in memory for ``cache_ttl`` seconds, so a
    revocation takes effect within that time on a running gateway."""

    def __init__(
        self,
        path: Path,
        *,
        master_key: str | None = None,
        cache_ttl: float = 2.0,
        throttle: FailedAuthThrottle | None = None,
    ) -> None:
        self.path = path
        self.master_key = master_key
        self.cache_ttl = cache_ttl
        self.throttle = throttle or FailedAuthThrottle()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    # ------------------------------------------------------------- admin (CLI)

    def create(self, name: str, role: str = "inference") -> tuple[str, KeyInfo]:
        if role not in ("inference", "admin"):
            raise ValueError("role must be inference or admin")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        info = KeyInfo("key_" + secrets.token_hex(6), name, role, secret[:7], time.time(), None)
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO gateway_keys (key_id, name, role, key_hash, prefix, created_at) VALUES (?,?,?,?,?,?)",
                (info.key_id, name, role, hash_key(secret), info.prefix, info.created_at),
            )
        return secret, info

    def list(self) -> list[KeyInfo]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key_id, name, role, prefix, created_at, revoked_at FROM gateway_keys ORDER BY created_at"
            ).fetchall()
        return [KeyInfo(*r) for r in rows]

    def revoke(self, key_id_or_name: str) -> int:
        with self._lock, self._connect() as db:
            cur = db.execute(
                "UPDATE gateway_keys SET revoked_at=? WHERE (key_id=? OR name=?) AND revoked_at IS NULL",
                (time.time(), key_id_or_name, key_id_or_name),
            )
            n = cur.rowcount
        self._cache.clear()
        return n

    # ------------------------------------------------------------ request path

    def _lookup(self, digest: str) -> Principal | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT key_id, name, role FROM gateway_keys WHERE key_hash=? AND revoked_at IS NULL",
                (digest,),
            ).fetchone()
        return Principal(*row) if row else None

    async def authenticate(self, presented: str | None, client: str | None = None) -> Principal:
        """The principal for a presented key; AuthenticationFailed otherwise (logged, and counted
        against ``client``, the caller's address); TooManyFailedLogins while ``client`` is
        throttled."""
        self.throttle.check(client)
        if not presented:
            raise AuthenticationFailed(
                "Missing API key. Send your Fareway key as `Authorization: Bearer <key>` (or `x-api-key`)."
            )
        if self.master_key and hmac.compare_digest(presented.encode(), self.master_key.encode()):
            return MASTER
        digest = hash_key(presented)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await asyncio.to_thread(self._lookup, digest)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_ttl, principal)
        if principal is None:
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
        return principal
