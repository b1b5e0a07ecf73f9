"""Secret scrubbing: the one function that keeps provider keys out of what the gateway says.

Every string that leaves an outbound adapter (an upstream error's message, code, type, param, body
and headers; an in-stream error) and every error message a wire encoder formats passes through
:func:`scrub` before it reaches a client, a log line or the ledger.  It replaces

1. every key on the :data:`KEYRING` (each configured provider key is put there when the gateway is
   built; an adapter also adds the key of the upstream it calls) wherever it appears: raw, after
   ``Bearer``, percent-encoded (either hex case), JSON-escaped (``\\/`` too), and
2. anything shaped like an API key that we do not hold (``sk-...``, ``AIza...``, ``fw-...``),

with a fingerprint, ``[redacted key 1a2b3c4d]``: eight hex digits of the key's SHA-256, enough to tell two
keys apart in a log and useless for recovering either.  Keys shorter than :data:`MIN_KEY_LEN`
characters are not scrubbed by substring (a placeholder such as ``"a"`` would mangle every word);
a real provider key is far longer.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_KEY_LEN = 8

_KEYLIKE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|gsk_[A-Za-z0-9]{8,}|csk-[A-Za-z0-9]{8,}|xai-[A-Za-z0-9]{8,}"
    r"|AIza[0-9A-Za-z_\-]{20,}|fw-[A-Za-z0-9_\-]{8,})"
)


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag for ``secret`` (the same secret always gives the same tag)."""
    return f"[redacted key {hashlib.sha256(secret.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}]"


def _variants(key: str) -> set[str]:
    """The spellings in which an upstream may echo ``key``."""
    out = {key, quote(key, safe=""), quote(key), quote_plus(key)}
    for js in (json.dumps(key)[1:-1], json.dumps(key, ensure_ascii=False)[1:-1]):
        out.add(js)
        out.add(js.replace("/", "\\/"))
    return {v for v in out if len(v) >= MIN_KEY_LEN}


class KeyRing:
    """The set of secrets to scrub.  Adding is rare (start-up, a new upstream key); scrubbing
    reads one compiled pattern.  Thread-safe."""

    def __init__(self) -> None:
        self._tags: dict[str, str] = {}  # lower-cased variant -> fingerprint of its key
        self._keys: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, *keys: str | None) -> None:
        new = [k for k in keys if k and len(k) >= MIN_KEY_LEN and k not in self._keys]
        if not new:
            return
        with self._lock:
            for key in new:
                self._keys.add(key)
                tag = fingerprint(key)
                for v in _variants(key):
                    self._tags.setdefault(v.lower(), tag)
            alternatives = sorted(self._tags, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives), re.IGNORECASE)

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            tags = self._tags
            text = pattern.sub(lambda m: tags.get(m.group().lower(), "[redacted key]"), text)
        return _KEYLIKE.sub(lambda m: fingerprint(m.group()), text)


KEYRING = KeyRing()
"""The process-wide ring: every configured provider key (and every team key, once teams exist)."""


def register(keys: Iterable[str | None]) -> None:
    """Put ``keys`` on the process-wide ring."""
    KEYRING.add(*keys)


def scrub(text: str, *extra: str | None) -> str:
    """``text`` with every known key (the ring plus ``extra``, which joins the ring) and anything
    key-shaped replaced by its fingerprint."""
    if extra:
        KEYRING.add(*extra)
    return KEYRING.scrub(text)


def scrub_bytes(data: bytes, *extra: str | None) -> bytes:
    """:func:`scrub` for a raw body; bytes that are not UTF-8 survive unchanged."""
    text = data.decode("utf-8", "surrogateescape")
    out = scrub(text, *extra)
    return data if out == text else out.encode("utf-8", "surrogateescape")


__all__ = ["KEYRING", "MIN_KEY_LEN", "KeyRing", "fingerprint", "register", "scrub", "scrub_bytes"]
