"""The ``[keys]`` config section: the vault's master key and how provider keys rest after a 429.
Imports nothing of Fareway, so config may read it.

::

    [keys]
    vault_key = "${FAREWAY_VAULT_KEY}"   # Fernet key(s), comma-separated, the first encrypts
    vault_key_file = "/etc/fareway/vault.key"   # or a file holding them (one a line)
    rate_limit_rest = 60                 # seconds a provider key rests after a 429 without Retry-After
    quota_rest = 3600                    # ... after a quota / credits error
    database_url = "postgresql://fareway@db:5432/fareway"   # keys, teams, vault, audit on
                                         # PostgreSQL (unset: SQLite state_dir/state.db); also
                                         # FAREWAY_KEYS_DATABASE_URL
    schema = "fareway"                   # the PostgreSQL schema of those tables
    pool_size = 4                        # PostgreSQL connections per gateway process, at most

Without the section the environment is read: ``FAREWAY_VAULT_KEY``, ``FAREWAY_VAULT_KEY_FILE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class KeySettingsError(ValueError):
    """A bad ``[keys]`` key or value (config turns it into a ConfigError)."""


@dataclass(frozen=True, slots=True)
class KeySettings:
    vault_key: str | None = None
    vault_key_file: str | None = None
    rate_limit_rest: float = 60.0
    quota_rest: float = 3600.0
    database_url: str | None = None
    schema: str = "fareway"
    pool_size: int = 4

    def master_key_text(self) -> str | None:
        """The master key(s) as text: ``vault_key``, else the file's contents (KeySettingsError
        when the file cannot be read)."""
        if self.vault_key:
            return self.vault_key
        if self.vault_key_file:
            try:
                return Path(self.vault_key_file).read_text("utf-8")
            except OSError as exc:
                raise KeySettingsError(
                    f"[keys] vault_key_file {self.vault_key_file}: {exc.strerror}"
                ) from exc
        return None


def parse(section: dict[str, Any], env: Any) -> KeySettings:
    """``section`` with its ``${VAR}`` references already expanded by config."""
    allowed = set(KeySettings.__dataclass_fields__)
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise KeySettingsError(f"[keys] has unknown key(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name in ("vault_key", "vault_key_file"):
        v = section.get(name)
        if v is not None and not isinstance(v, str):
            raise KeySettingsError(f"[keys] {name} must be a string")
        out[name] = v or None
    if out["vault_key"] is None and "vault_key" not in section:
        out["vault_key"] = env.get("FAREWAY_VAULT_KEY") or None
    if out["vault_key_file"] is None and "vault_key_file" not in section:
        out["vault_key_file"] = env.get("FAREWAY_VAULT_KEY_FILE") or None
    url = section.get("database_url")
    if url is not None and not isinstance(url, str):
        raise KeySettingsError("[keys] database_url must be a string")
    if url is None and "database_url" not in section:
        url = env.get("FAREWAY_KEYS_DATABASE_URL")
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise KeySettingsError("[keys] database_url must be a postgresql:// URL")
        out["database_url"] = url
    if "schema" in section:
        schema = section["schema"]
        if not isinstance(schema, str) or not _IDENT.match(schema):
            raise KeySettingsError("[keys] schema must be a lower-case SQL name (letters, digits, _)")
        out["schema"] = schema
    if "pool_size" in section:
        size = section["pool_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 100:
            raise KeySettingsError("[keys] pool_size must be a whole number from 1 to 100")
        out["pool_size"] = size
    for name in ("rate_limit_rest", "quota_rest"):
        if name in section:
            v = section[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise KeySettingsError(f"[keys] {name} must be a number of seconds above 0")
            out[name] = float(v)
    return KeySettings(**out)


KEYS = frozenset(KeySettings.__dataclass_fields__)
"""The section's keys (for the config's registry of sections)."""
