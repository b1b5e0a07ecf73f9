"""Provider keys at rest: encrypted in the state DB with Fernet (AES-128-CBC + HMAC-SHA256, from
the ``cryptography`` package), shown anywhere only as a fingerprint (8 hex digits of the key's
SHA-256: the same tag :func:`fareway.scrub.fingerprint` puts in logs, ``[redacted key 1a2b3c4d]``).

The master key comes from ``[keys] vault_key`` / ``FAREWAY_VAULT_KEY`` or ``[keys] vault_key_file``
/ ``FAREWAY_VAULT_KEY_FILE``: one or more Fernet keys (url-safe base64 of 32 bytes; ``fareway vault
new-master-key`` prints one), separated by commas or newlines.  The first encrypts; all decrypt
(``MultiFernet``).  Rotating the master key:

1. put a new key first, keep the old one after it, restart (or run the CLI with both);
2. ``fareway vault rotate-master``: every stored provider key is re-encrypted with the first key;
3. drop the old key.

A provider key belongs to the gateway (``team_id`` NULL: used for every caller without a key of
its own for that provider) or to one team (used for that team's calls only).
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from fareway.errors import NotFound
from fareway.keys.state_db import StateStore

_PROVIDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class VaultLocked(ValueError):
    """No master key is configured (or it is not a valid Fernet key)."""


def key_fingerprint(secret: str) -> str:
    """8 hex digits of the SHA-256 of ``secret`` (as in ``[redacted key ...]`` log tags)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def new_master_key() -> str:
    return Fernet.generate_key().decode("ascii")


def parse_master_keys(text: str | None) -> list[str]:
    """The Fernet keys in ``text`` (comma- or whitespace-separated), first the one that encrypts."""
    if not text:
        return []
    return [k for k in re.split(r"[\s,]+", text.strip()) if k]


def _fernet(master_keys: Sequence[str]) -> MultiFernet:
    if not master_keys:
        raise VaultLocked(
            "no vault master key: set FAREWAY_VAULT_KEY (or [keys] vault_key / vault_key_file); "
            "`fareway vault new-master-key` prints one"
        )
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in master_keys])
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise VaultLocked(
            "a vault master key is not a valid Fernet key (url-safe base64 of 32 bytes)"
        ) from exc


@dataclass(frozen=True, slots=True)
class ProviderKeyInfo:
    pk_id: str
    provider: str
    team_id: str | None
    label: str | None
    fingerprint: str
    created_at: float
    revoked_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk_id,
            "provider": self.provider,
            "team_id": self.team_id,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


_COLS = "pk_id, provider, team_id, label, fingerprint, created_at, revoked_at"


class Vault:
    def __init__(
        self, db: StateStore, master_keys: Sequence[str] = (), *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.master_keys = list(master_keys)
        self.clock = clock
        self._f: MultiFernet | None = _fernet(self.master_keys) if self.master_keys else None

    @property
    def unlocked(self) -> bool:
        return self._f is not None

    def _crypt(self) -> MultiFernet:
        if self._f is None:
            self._f = _fernet(self.master_keys)
        return self._f

    def add(
        self, provider: str, secret: str, *, team_id: str | None = None, label: str | None = None
    ) -> ProviderKeyInfo:
        if not _PROVIDER.match(provider):
            raise ValueError(f"invalid provider name {provider!r}")
        secret = secret.strip()
        if len(secret) < 8 or len(secret) > 4096 or any(c.isspace() for c in secret):
            raise ValueError("a provider key is 8 to 4096 characters without spaces")
        if label is not None and (len(label) > 100 or not label.isprintable()):
            raise ValueError("label: at most 100 printable characters")
        token = self._crypt().encrypt(secret.encode("utf-8"))
        pk_id = "pk_" + secrets.token_hex(6)
        with self.db.connect() as db:
            if (
                team_id is not None
                and db.execute("SELECT 1 FROM teams WHERE team_id=?", (team_id,)).fetchone() is None
            ):
                raise NotFound(f"no team {team_id!r}", code="team_not_found")
            db.execute(
                "INSERT INTO provider_keys (pk_id, provider, team_id, label, ciphertext, fingerprint, created_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (pk_id, provider, team_id, label, token, key_fingerprint(secret), self.clock()),
            )
        self.db.bump()
        return self.require(pk_id)

    def list(
        self, *, team_id: str | None = None, provider: str | None = None, include_revoked: bool = False
    ) -> list[ProviderKeyInfo]:
        sql = f"SELECT {_COLS} FROM provider_keys WHERE 1=1"
        args: list[Any] = []
        if team_id is not None:
            sql += " AND team_id=?"
            args.append(team_id)
        if provider is not None:
            sql += " AND provider=?"
            args.append(provider)
        if not include_revoked:
            sql += " AND revoked_at IS NULL"
        with self.db.connect() as db:
            rows = db.execute(sql + " ORDER BY created_at, pk_id", args).fetchall()
        return [ProviderKeyInfo(*r) for r in rows]

    def get(self, pk_id: str) -> ProviderKeyInfo | None:
        with self.db.connect() as db:
            row = db.execute(f"SELECT {_COLS} FROM provider_keys WHERE pk_id=?", (pk_id,)).fetchone()
        return ProviderKeyInfo(*row) if row else None

    def require(self, pk_id: str) -> ProviderKeyInfo:
        info = self.get(pk_id)
        if info is None:
            raise NotFound(f"no provider key {pk_id!r}", code="provider_key_not_found")
        return info

    def revoke(self, pk_id: str) -> ProviderKeyInfo:
        info = self.require(pk_id)
        with self.db.connect() as db:
            db.execute(
                "UPDATE provider_keys SET revoked_at=? WHERE pk_id=? AND revoked_at IS NULL",
                (self.clock(), pk_id),
            )
        self.db.bump()
        return self.require(info.pk_id)

    def load(self) -> tuple[builtins.list[tuple[ProviderKeyInfo, str]], builtins.list[str]]:
        """(every active provider key with its plaintext, the ids that could not be decrypted
        with the configured master keys).  Without a master key: nothing, and every id."""
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT {_COLS}, ciphertext FROM provider_keys WHERE revoked_at IS NULL ORDER BY created_at, pk_id"
            ).fetchall()
        if not rows:
            return [], []
        if self._f is None:
            return [], [r[0] for r in rows]
        out: builtins.list[tuple[ProviderKeyInfo, str]] = []
        bad: builtins.list[str] = []
        for r in rows:
            try:
                out.append((ProviderKeyInfo(*r[:7]), self._f.decrypt(bytes(r[7])).decode("utf-8")))
            except (InvalidToken, UnicodeDecodeError):
                bad.append(r[0])
        return out, bad

    def rotate_master(self) -> int:
        """Re-encrypt every stored provider key (revoked ones too) with the first master key.
        Returns how many were re-encrypted; InvalidToken if one cannot be decrypted."""
        f = self._crypt()
        n = 0
        with self.db.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for pk_id, token in db.execute("SELECT pk_id, ciphertext FROM provider_keys").fetchall():
                    db.execute(
                        "UPDATE provider_keys SET ciphertext=? WHERE pk_id=?", (f.rotate(bytes(token)), pk_id)
                    )
                    n += 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.db.bump()
        return n
