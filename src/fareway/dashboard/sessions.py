"""Dashboard sessions: the browser holds only a random session id in an HttpOnly,
SameSite=Strict cookie; the server maps it to the principal that logged in.

The key typed at login is kept in the server's memory with the session (never in the cookie, never
on disk) so every data call re-authenticates it through the KeyStore: revoking the key ends its
dashboard sessions within the KeyStore's cache TTL, as it does for API calls.  Sessions live in
this process only; a restart logs everyone out.  Each expires ``ttl`` seconds after login.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from fareway.keys.store import Principal

COOKIE = "fareway_ui"
DEFAULT_TTL = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    sid: str
    principal: Principal
    key: str
    expires: float


class SessionStore:
    def __init__(self, ttl: float = DEFAULT_TTL, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal, key: str, now: float | None = None) -> Session:
        now = time.monotonic() if now is None else now
        if len(self._sessions) >= self.max_sessions:
            self.prune(now)
            while len(self._sessions) >= self.max_sessions:  # still full: drop the oldest
                del self._sessions[next(iter(self._sessions))]
        s = Session(secrets.token_urlsafe(32), principal, key, now + self.ttl)
        self._sessions[s.sid] = s
        return s

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        if s.expires <= (time.monotonic() if now is None else now):
            del self._sessions[sid]
            return None
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def prune(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]


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
