"""Dashboard sessions: the browser holds only a random session id in an HttpOnly,
SameSite=Strict cookie; the server maps it to the key that logged in.

The server keeps the key's SHA-256 digest with the session (never the key itself, never in the
cookie) so every data call re-authenticates it through the KeyStore (by digest): revoking the key
ends its dashboard sessions at the next call, as it does for API calls.  Each session expires
``ttl`` seconds after login.

Two stores, chosen by ``[dashboard] sessions`` (fareway.dashboard.settings):

* :class:`SessionStore`, in this process's memory: a restart logs everyone out, and with several
  workers or instances a login holds only on the process that took it;
* :class:`RedisSessionStore`: one Redis key per session (``PREFIX + "session:" +`` the SHA-256 of
  the id, so the Redis keys do not hold the cookie values), a JSON value (the key's digest, the
  name shown), expiring with the session; every instance on that Redis sees every login.  When
  Redis is down or slow (``timeout``), nobody is signed in (the dashboard shows its login page)
  and a login fails with a 503: it fails closed, never open.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

from fareway.errors import FarewayError
from fareway.keys.store import Principal, hash_key

log = logging.getLogger("fareway.dashboard")

COOKIE = "fareway_ui"
DEFAULT_TTL = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    sid: str
    digest: str
    """The SHA-256 (hex) of the key that logged in (fareway.keys.store.hash_key)."""
    name: str
    """The principal's name at login (the page shows the re-authenticated one)."""
    expires: float
    principal: Principal | None = None
    """Set by the routes once the key behind the session is re-authenticated."""


class SessionsUnavailable(FarewayError):
    status = 503
    type = "api_error"
    code = "session_store_unavailable"


class Sessions(Protocol):
    """What the dashboard routes need of a session store."""

    ttl: float

    async def create(self, principal: Principal, key: str) -> Session: ...

    async def get(self, sid: str | None) -> Session | None: ...

    async def drop(self, sid: str | None) -> None: ...

    async def close(self) -> None: ...


class SessionStore:
    """Sessions in this process's memory (at most ``max_sessions``: the oldest go first)."""

    def __init__(self, ttl: float = DEFAULT_TTL, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(self, principal: Principal, key: str, now: float | None = None) -> Session:
        now = time.monotonic() if now is None else now
        if len(self._sessions) >= self.max_sessions:
            self.prune(now)
            while len(self._sessions) >= self.max_sessions:  # still full: drop the oldest
                del self._sessions[next(iter(self._sessions))]
        s = Session(secrets.token_urlsafe(32), hash_key(key), principal.name, now + self.ttl, principal)
        self._sessions[s.sid] = s
        return s

    async def get(self, sid: str | None, now: float | None = None) -> Session | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        if s.expires <= (time.monotonic() if now is None else now):
            del self._sessions[sid]
            return None
        return s

    async def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def prune(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]

    async def close(self) -> None:
        self._sessions.clear()


class RedisSessionStore:
    """Sessions in Redis, shared by every gateway on it (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fareway:ui:",
        ttl: float = DEFAULT_TTL,
        timeout: float = 1.0,
        client: Any = None,
    ) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.client: Any = client or aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )

    def _key(self, sid: str) -> str:
        return self.prefix + "session:" + hashlib.sha256(sid.encode("utf-8", "surrogatepass")).hexdigest()

    async def create(self, principal: Principal, key: str) -> Session:
        sid = secrets.token_urlsafe(32)
        s = Session(sid, hash_key(key), principal.name, time.time() + self.ttl, principal)
        value = json.dumps({"digest": s.digest, "name": s.name, "expires": s.expires})
        try:
            await self.client.set(self._key(sid), value, px=int(self.ttl * 1000))
        except Exception as exc:  # any Redis failure: no session (fail closed)
            log.warning("dashboard: cannot store a session in Redis (%s)", exc)
            raise SessionsUnavailable("The dashboard's session store is unavailable; try again.") from exc
        return s

    async def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        try:
            raw = await self.client.get(self._key(sid))
        except Exception as exc:  # any Redis failure: not signed in (fail closed)
            log.warning("dashboard: cannot read sessions from Redis (%s)", exc)
            return None
        if raw is None:
            return None
        try:
            d = json.loads(raw)
            s = Session(sid, str(d["digest"]), str(d["name"]), float(d["expires"]))
        except (ValueError, KeyError, TypeError):
            return None
        return s if s.expires > time.time() else None

    async def drop(self, sid: str | None) -> None:
        if not sid:
            return
        try:
            await self.client.delete(self._key(sid))
        except Exception as exc:  # the session expires with its TTL anyway
            log.warning("dashboard: cannot drop a session in Redis (%s)", exc)

    async def close(self) -> None:
        await self.client.aclose()


def read_cookie(header: str | None, name: str = COOKIE) -> str | None:
    """The value of cookie ``name`` in a ``Cookie:`` header."""
    if not header:
        return None
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip().strip('"') or None
    return None


def set_cookie(sid: str, max_age: int, secure: bool) -> str:
    attrs = [f"{COOKIE}={sid}", "Path=/ui", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)


def clear_cookie(secure: bool) -> str:
    attrs = [f"{COOKIE}=", "Path=/ui", "Max-Age=0", "HttpOnly", "SameSite=Strict"]
    if secure:
        attrs.append("Secure")
    return "; ".join(attrs)
