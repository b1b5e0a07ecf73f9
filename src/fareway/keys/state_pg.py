"""The state database on PostgreSQL (``[keys] database_url``): gateway keys, teams, provider keys
and the audit log shared by every gateway instance, with the same tables and rules as the SQLite
one (:mod:`fareway.keys.state_db`), so the stores above use either unchanged.

Connections: one small pool per gateway process (``[keys] pool_size``, default 4; psycopg_pool
opens them as needed, at least one), plus one connection that only LISTENs. So one instance of
``W`` workers holds at most ``W * (pool_size + 1)`` connections for keys; with ``I`` instances,
``I * W * (pool_size + 1)`` plus the ledger's must stay under the server's ``max_connections``.

Its own migrations, numbered in ``keys_schema_version``, run under an advisory lock (instances
that start together run them once):

1. the tables of SQLite's migrations 1 and 2 in their final form; ``keys_state_version`` (one
   counter) and a statement trigger on ``gateway_keys``, ``teams`` and ``provider_keys`` that
   bumps it and sends ``NOTIFY "<schema>.fareway_keys"`` in the writing transaction.

Change detection (:meth:`PgStateDB.changed`, called on every request): the notification of a
committed change reaches the LISTEN connection of every instance; each request polls that
socket (a ``select`` with no timeout, microseconds, no query) and moves :attr:`generation`
when one came, so the key cache drops its entries and the revoked key fails at the next request
on every instance. A thread reads the counter every :data:`POLL_SECONDS` as a safety net (a
notification lost with a silently broken connection) and reconnects the listener; while the
listener is down every request moves the generation (no cached lookup is trusted).
"""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from fareway.errors import FarewayError

log = logging.getLogger("fareway.keys")

POLL_SECONDS = 5.0
"""How often the counter is read besides the notifications (and the listener reconnected)."""

_TABLES = """
CREATE TABLE IF NOT EXISTS gateway_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'inference',
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    scopes TEXT,
    team_id TEXT,
    allowed_models TEXT,
    allowed_providers TEXT,
    expires_at DOUBLE PRECISION,
    metadata TEXT,
    budget_daily_usd TEXT,
    budget_monthly_usd TEXT,
    budget_total_usd TEXT,
    rpm BIGINT,
    tpm BIGINT,
    rotated_at DOUBLE PRECISION,
    prev_hash TEXT,
    prev_valid_until DOUBLE PRECISION,
    updated_at DOUBLE PRECISION
);
CREATE UNIQUE INDEX IF NOT EXISTS gateway_keys_active_name ON gateway_keys (name) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS gateway_keys_prev_hash ON gateway_keys (prev_hash);
CREATE INDEX IF NOT EXISTS gateway_keys_team ON gateway_keys (team_id);
CREATE TABLE IF NOT EXISTS teams (
    team_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    allowed_models TEXT,
    allowed_providers TEXT,
    metadata TEXT,
    budget_daily_usd TEXT,
    budget_monthly_usd TEXT,
    budget_total_usd TEXT,
    rpm BIGINT,
    tpm BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS provider_keys (
    pk_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    team_id TEXT,
    label TEXT,
    ciphertext BYTEA NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS provider_keys_owner ON provider_keys (team_id, provider);
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    actor_key_id TEXT,
    client TEXT,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT,
    target_name TEXT,
    details TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target_id, at);
CREATE TABLE IF NOT EXISTS keys_state_version (id INT PRIMARY KEY, n BIGINT NOT NULL);
INSERT INTO keys_state_version (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""


def channel(schema: str) -> str:
    """The NOTIFY channel of a schema's key tables."""
    return f"{schema}.fareway_keys"


def _m1(cur: Any, schema: str) -> None:
    cur.execute(_TABLES)
    # schema is a checked identifier ([keys] schema: lower-case letters, digits, _), never input
    cur.execute(
        f"""CREATE OR REPLACE FUNCTION keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE keys_state_version SET n = n + 1 WHERE id = 1;
            PERFORM pg_notify('{channel(schema)}', '');
            RETURN NULL;
        END $$"""
    )
    for table in ("gateway_keys", "teams", "provider_keys"):
        cur.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
        cur.execute(
            f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION keys_changed()"
        )


MIGRATIONS = [_m1]


class StateIntegrityError(sqlite3.IntegrityError):
    """A broken constraint (a duplicate name) reported by PostgreSQL: the stores catch
    ``fareway.keys.state_db.IntegrityError`` (sqlite3's), whichever database said it."""


class StateUnavailable(FarewayError):
    """The PostgreSQL state database cannot be reached (or did not answer in time)."""

    status = 503
    type = "api_error"
    code = "key_store_unavailable"


def _sql(statement: str) -> str:
    """SQLite's spelling to psycopg's: ``?`` placeholders become ``%s`` (the stores' SQL has no
    ``%`` and no ``?`` inside literals), ``BEGIN IMMEDIATE`` becomes ``BEGIN``."""
    if statement.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    return statement.replace("?", "%s")


class _Cursor:
    __slots__ = ("_cur",)

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur.fetchall())


class PgConnection:
    """A pooled connection with the interface the key stores use of ``sqlite3.Connection``:
    ``with db.connect() as c: c.execute(sql, args).fetchone()``, autocommit unless ``BEGIN``."""

    def __init__(self, owner: PgStateDB) -> None:
        self.owner = owner
        self._conn: Any = None

    def __enter__(self) -> PgConnection:
        import psycopg

        try:
            self._conn = self.owner.pool.getconn(timeout=self.owner.connect_timeout)
        except (psycopg.OperationalError, OSError) as exc:  # PoolTimeout, PoolClosed are these
            raise StateUnavailable(f"the key database is unavailable: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if conn.info.transaction_status != 0:  # IDLE: not inside a transaction left open
                conn.rollback()
        self.owner.pool.putconn(conn)

    def execute(self, statement: str, args: Sequence[Any] = ()) -> _Cursor:
        import psycopg

        assert self._conn is not None, "use inside `with db.connect() as c`"
        try:
            cur = self._conn.execute(_sql(statement), tuple(args) or None)
        except psycopg.errors.IntegrityError as exc:
            raise StateIntegrityError(str(exc)) from exc
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"the key database is unavailable: {exc}") from exc
        return _Cursor(cur)

    def close(self) -> None:
        self.__exit__()


class PgStateDB:
    """The state database on PostgreSQL: pooled connections, migrations, and a change watch fed
    by LISTEN/NOTIFY (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "fareway",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        from psycopg_pool import ConnectionPool

        self.url = url
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.poll_seconds = poll_seconds
        self.generation = 0
        """Moves whenever a change committed by any instance has been noticed."""
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
            "options": f"-c search_path={schema} -c statement_timeout={int(statement_timeout * 1000)}",
        }
        self._migrate()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=self._kwargs,
            timeout=connect_timeout,
            open=True,
            name=f"fareway-keys-{schema}",
        )
        self._lock = threading.Lock()
        self._listener: Any = None
        self._seen_version = -1
        self._stop = threading.Event()
        self._listen()
        self._seen_version = self._version()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="fareway-keys-watch")
        self._thread.start()

    # ------------------------------------------------------------------ connections

    def connect(self) -> PgConnection:
        return PgConnection(self)

    def _direct(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, **self._kwargs)
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"the key database is unavailable: {exc}") from exc

    def _migrate(self) -> None:
        with self._direct() as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"fareway-keys:{self.schema}",))
                conn.execute("CREATE TABLE IF NOT EXISTS keys_schema_version (version INT NOT NULL)")
                row = conn.execute("SELECT max(version) FROM keys_schema_version").fetchone()
                version = int(row[0]) if row and row[0] is not None else 0
                with conn.cursor() as cur:
                    for i in range(version, len(MIGRATIONS)):
                        MIGRATIONS[i](cur, self.schema)
                        cur.execute("INSERT INTO keys_schema_version (version) VALUES (%s)", (i + 1,))

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    self._listener.close()
                self._listener = None
        self.pool.close()

    # ------------------------------------------------------------------ change watch

    def _listen(self) -> None:
        """(Re)open the LISTEN connection; on failure the listener stays down (retried)."""
        try:
            conn = self._direct()
            conn.execute(f'LISTEN "{channel(self.schema)}"')
        except (StateUnavailable, Exception) as exc:
            log.warning("keys: cannot LISTEN for changes (%s); retrying every %gs", exc, self.poll_seconds)
            return
        with self._lock:
            old, self._listener = self._listener, conn
            self.generation += 1  # whatever happened while nobody listened
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()

    def _version(self) -> int:
        with self.connect() as c:
            row = c.execute("SELECT n FROM keys_state_version WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            if self._listener is None:
                self._listen()
            try:
                v = self._version()
            except StateUnavailable:
                continue
            if v != self._seen_version:
                self._seen_version = v
                with self._lock:
                    self.generation += 1

    def _drain_notifications(self) -> bool:
        """Read what the listener received (never blocks); False when it is broken."""
        conn = self._listener
        if conn is None:
            return False
        pgconn = conn.pgconn
        try:
            readable, _, _ = select.select([pgconn.socket], [], [], 0)
            if not readable:
                return True
            pgconn.consume_input()
            got = False
            while pgconn.notifies() is not None:
                got = True
            if pgconn.status != 0:  # CONNECTION_OK
                raise OSError("the LISTEN connection is closed")
        except Exception as exc:
            log.warning(
                "keys: the LISTEN connection broke (%s): lookups are not cached until it is back", exc
            )
            with contextlib.suppress(Exception):
                conn.close()
            self._listener = None
            return False
        if got:
            self.generation += 1
        return True

    def changed(self) -> int:
        """Notice changes committed since the last look (by any instance) and return
        :attr:`generation`. No query: a poll of the LISTEN socket, safe on the event loop."""
        with self._lock:
            if not self._drain_notifications():
                self.generation += 1  # no listener: trust no cached lookup
            return self.generation

    def bump(self) -> None:
        """This process changed something."""
        with self._lock:
            self.generation += 1
