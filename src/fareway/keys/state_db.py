"""The embedded state database (``state_dir/state.db``, SQLite in WAL mode): gateway keys, teams,
provider keys (encrypted), the admin audit log.  Its own migrations, numbered in
``PRAGMA user_version`` (the ledger has its own, elsewhere):

1. ``gateway_keys`` as it was first made (id, name, role, hash, prefix, created, revoked)
2. keys get scopes, a team, allowed models and providers, expiry, metadata, budgets, rate limits
   and rotation (the previous hash valid until a grace time); active names become unique (earlier
   duplicates are renamed ``name~key_id``); ``teams``, ``provider_keys`` and ``audit_log`` tables

Every statement is parameterized; nothing the caller gives is ever formatted into SQL.

:class:`StateDB` also tells whether anything changed since it last looked (``PRAGMA
data_version``, which moves when another connection, another process included, commits), so the
authentication cache and the provider-key pools drop stale entries at the next request, not after
a TTL: a key revoked with the CLI fails at once on a running gateway.  That look is made cheap by
reading the WAL-index header first (the start of ``state.db-shm``, mapped read-only): SQLite's
documented WAL format (https://www.sqlite.org/walformat.html, section 2.1) rewrites it at every
commit (``iChange``, ``mxFrame``, salts and checksums), so while its bytes are unchanged nothing was
committed and the PRAGMA (a statement, a lock and a GIL release) is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("fareway.keys")


def _m1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS gateway_keys (
            key_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT 'inference',
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        )"""
    )


_KEY_COLUMNS = [
    ("scopes", "TEXT"),
    ("team_id", "TEXT"),
    ("allowed_models", "TEXT"),
    ("allowed_providers", "TEXT"),
    ("expires_at", "REAL"),
    ("metadata", "TEXT"),
    ("budget_daily_usd", "TEXT"),
    ("budget_monthly_usd", "TEXT"),
    ("budget_total_usd", "TEXT"),
    ("rpm", "INTEGER"),
    ("tpm", "INTEGER"),
    ("rotated_at", "REAL"),
    ("prev_hash", "TEXT"),
    ("prev_valid_until", "REAL"),
    ("updated_at", "REAL"),
]


def _m2(db: sqlite3.Connection) -> None:
    have = {r[1] for r in db.execute("PRAGMA table_info(gateway_keys)")}
    for name, kind in _KEY_COLUMNS:
        if name not in have:  # names and types are the constants above, never input
            db.execute(f"ALTER TABLE gateway_keys ADD COLUMN {name} {kind}")
    db.execute(
        """UPDATE gateway_keys SET scopes = CASE role WHEN 'admin' THEN '["admin","inference","usage"]'
           ELSE '["inference"]' END WHERE scopes IS NULL"""
    )
    # active names become unique: later duplicates get their id appended
    dupes = db.execute(
        """SELECT key_id, name FROM gateway_keys k WHERE revoked_at IS NULL AND EXISTS (
             SELECT 1 FROM gateway_keys o WHERE o.name = k.name AND o.revoked_at IS NULL
             AND (o.created_at < k.created_at OR (o.created_at = k.created_at AND o.key_id < k.key_id)))"""
    ).fetchall()
    for key_id, name in dupes:
        new = f"{name}~{key_id}"
        db.execute("UPDATE gateway_keys SET name=? WHERE key_id=?", (new, key_id))
        log.warning("key %s shared the name %r with an older active key: renamed %r", key_id, name, new)
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS gateway_keys_active_name ON gateway_keys (name) "
        "WHERE revoked_at IS NULL"
    )
    db.execute("CREATE INDEX IF NOT EXISTS gateway_keys_prev_hash ON gateway_keys (prev_hash)")
    db.execute("CREATE INDEX IF NOT EXISTS gateway_keys_team ON gateway_keys (team_id)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS teams (
            team_id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            allowed_models TEXT,
            allowed_providers TEXT,
            metadata TEXT,
            budget_daily_usd TEXT,
            budget_monthly_usd TEXT,
            budget_total_usd TEXT,
            rpm INTEGER,
            tpm INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS provider_keys (
            pk_id TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            team_id TEXT,
            label TEXT,
            ciphertext BLOB NOT NULL,
            fingerprint TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS provider_keys_owner ON provider_keys (team_id, provider)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS audit_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            actor_key_id TEXT,
            client TEXT,
            action TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id TEXT,
            target_name TEXT,
            details TEXT
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)")
    db.execute("CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target_id, at)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1, _m2]

IntegrityError = sqlite3.IntegrityError
"""What a store catches for a broken constraint (a duplicate name), from either database."""


class StateStore(Protocol):
    """What the key, team, vault and audit stores need of a state database: SQLite
    (:class:`StateDB`) or PostgreSQL (:class:`fareway.keys.state_pg.PgStateDB`)."""

    generation: int

    def connect(self) -> Any:
        """A connection (a context manager) with ``execute(sql, args)`` in SQLite's spelling."""

    def changed(self) -> int:
        """Notice changes committed by anyone; the generation (cheap: called per request)."""

    def bump(self) -> None:
        """This process changed something."""

    def close(self) -> None: ...


def open_state_db(
    path: Path, *, database_url: str | None = None, schema: str = "fareway", pool_size: int = 4
) -> StateStore:
    """SQLite at ``path``, or PostgreSQL when ``database_url`` is set (``[keys] database_url``)."""
    if database_url:
        from fareway.keys.state_pg import PgStateDB

        return PgStateDB(database_url, schema=schema, pool_size=pool_size)
    return StateDB(path)


_WAL_INDEX_HEADERS = 96
"""The two copies of the WAL-index header at the start of the ``-shm`` file."""


class StateDB:
    """One state database file: connections, migrations and a change watch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            self._migrate(db)
        self._watch = self._open()
        self._watch_lock = threading.Lock()
        self._seen = self._data_version()
        self._shm = self._map_wal_index()
        self._shm_seen = b""
        self._shm_until = 0.0
        self.generation = 0
        """Moves whenever a change committed by any connection has been noticed."""

    def _map_wal_index(self) -> mmap.mmap | None:
        """The WAL-index header (both 48-byte copies), mapped read-only; None when there is no
        ``-shm`` file (not in WAL mode): then every look runs the PRAGMA.  The watch connection
        stays open, so SQLite keeps the file while this map lives."""
        try:
            fd = os.open(f"{self.path}-shm", os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < _WAL_INDEX_HEADERS:
                return None
            return mmap.mmap(fd, _WAL_INDEX_HEADERS, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one ``with`` block, closed at its end (sqlite3's own context manager
        only commits: a connection left to the garbage collector holds its file open until a
        collection, which a busy gateway makes rare)."""
        db = self._open()
        try:
            with db:
                yield db
        finally:
            db.close()

    def close(self) -> None:
        with self._watch_lock:
            self._watch.close()
            if self._shm is not None:
                self._shm.close()
                self._shm = None

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have run them
            for i in range(version, len(MIGRATIONS)):
                MIGRATIONS[i](db)
                db.execute(f"PRAGMA user_version = {i + 1:d}")  # an int, never input
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _data_version(self) -> int:
        with self._watch_lock:
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> int:
        """Notice commits made since the last look (by other connections or processes) and return
        :attr:`generation`.  A few microseconds: safe on the event loop."""
        shm = self._shm
        if shm is not None:
            head = shm[:]  # read before the PRAGMA: a commit between the two is seen next time
            now = time.monotonic()
            # (the PRAGMA still runs every second: a check of the header's word, not a reliance)
            if head == self._shm_seen and now < self._shm_until:
                return self.generation
            self._shm_seen = head
            self._shm_until = now + 1.0
        v = self._data_version()
        if v != self._seen:
            self._seen = v
            self.generation += 1
        return self.generation

    def bump(self) -> None:
        """This process changed something (through another connection of its own)."""
        self.generation += 1
