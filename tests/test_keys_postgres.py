"""Keys, teams, the vault and the audit log on PostgreSQL ([keys] database_url): the same stores
as on SQLite, shared by instances; a change made through one instance is seen by another at its
next request (LISTEN/NOTIFY), and a broken listener disables the lookup cache instead of
serving stale keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fareway.errors import AuthenticationFailed, Conflict
from fareway.keys.admin import Admin
from fareway.keys.audit import Actor
from fareway.keys.state_db import open_state_db
from fareway.keys.state_pg import PgStateDB, StateUnavailable
from fareway.keys.store import KeyStore
from fareway.keys.vault import Vault, new_master_key
from tests.test_ledger import PG_URL

pytestmark = pytest.mark.postgres


def _reachable() -> str | None:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # unreachable server, auth, missing database
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def schema() -> Iterator[str]:
    reason = _reachable()
    if reason:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({reason})")
    name = f"fw_keys_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _instance(tmp: Path, schema: str, **kw: object) -> KeyStore:
    db = open_state_db(tmp / "unused.db", database_url=PG_URL, schema=schema, pool_size=2)
    assert isinstance(db, PgStateDB)
    return KeyStore(tmp / "unused.db", db=db, **kw)  # type: ignore[arg-type]


async def test_a_key_revoked_through_one_instance_fails_at_once_on_the_other(
    tmp_path: Path, schema: str
) -> None:
    a = _instance(tmp_path, schema)
    b = _instance(tmp_path, schema, cache_ttl=3600.0)  # only a change notice may drop B's cache
    try:
        secret, info = a.create("app")
        assert (await b.authenticate(secret)).key_id == info.key_id
        assert (await b.authenticate(secret)).key_id == info.key_id  # from B's cache now
        seen = b.db.changed()
        assert a.revoke("app") == 1
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await a.authenticate(secret)  # the revoking instance: at once
        # the other: at its first request after PostgreSQL's notification reaches it (documented:
        # milliseconds after the commit; a loaded machine once took longer than the next line)
        for _ in range(500):
            if b.db.changed() != seen:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await b.authenticate(secret)
        assert not (tmp_path / "unused.db").exists()  # nothing went to SQLite
    finally:
        a.close()
        b.close()


async def test_teams_vault_and_audit_on_postgres(tmp_path: Path, schema: str) -> None:
    keys = _instance(tmp_path, schema)
    master = new_master_key()
    admin = Admin(keys, vault=Vault(keys.db, [master]))
    actor = Actor("cli:test")
    try:
        team = admin.teams.create("research")
        with pytest.raises(Conflict):
            admin.teams.create("research")
        secret, info = admin.create_key(actor, {"name": "svc", "team": "research", "budget_daily_usd": "5"})
        with pytest.raises(Conflict):
            keys.create("svc")
        principal = await keys.authenticate(secret)
        assert principal.team_name == "research"
        assert str(principal.key_limits.daily_usd) == "5"
        pk = admin.vault.add("openai", "sk-test-0123456789", team_id=team.team_id)
        # another instance decrypts it with the same master key
        other = _instance(tmp_path, schema)
        try:
            loaded, bad = Vault(other.db, [master]).load()
            assert [(i.pk_id, s) for i, s in loaded] == [(pk.pk_id, "sk-test-0123456789")]
            assert bad == []
            assert [k.key_id for k in other.list()] == [info.key_id]
        finally:
            other.close()
        with pytest.raises(Conflict):
            admin.teams.delete("research")
        keys.revoke(info.key_id)
        admin.teams.delete("research")
        assert admin.vault.list() == []  # its provider keys went with it (revoked)
        entries = admin.audit.query(n=10)
        assert [e.action for e in entries] == ["key.create"]
        assert admin.audit.query(action="key.")[0].target_id == info.key_id
    finally:
        keys.close()


async def test_a_broken_listener_disables_the_cache_and_comes_back(tmp_path: Path, schema: str) -> None:
    keys = _instance(tmp_path, schema, cache_ttl=3600.0)
    db = keys.db
    assert isinstance(db, PgStateDB)
    try:
        secret, _ = keys.create("app")
        await keys.authenticate(secret)
        g = db.changed()
        assert db.changed() == g  # nothing changed: the same generation, no query made
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # the server ends the LISTEN session
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %%' AND query LIKE %s",
                (f"%{schema}%",),
            )
        # the next looks notice it (once the server's close reaches the socket) and trust nothing
        for _ in range(200):
            if db._listener is None:
                break
            db.changed()
            await asyncio.sleep(0.01)
        assert db._listener is None
        assert db.changed() != db.changed()  # every request moves the generation: no cached lookup
        db._listen()  # what the watch thread does every few seconds
        g = db.changed()
        assert db.changed() == g
        assert (await keys.authenticate(secret)).name == "app"
    finally:
        keys.close()


async def test_a_database_that_is_down_is_a_503_not_a_crash(tmp_path: Path, schema: str) -> None:
    keys = _instance(tmp_path, schema)
    try:
        secret, _ = keys.create("app")
        db = keys.db
        assert isinstance(db, PgStateDB)
        db.pool.close()  # no connection can be had any more
        keys._cache.clear()
        with pytest.raises(StateUnavailable) as err:
            await keys.authenticate(secret)
        assert err.value.status == 503
    finally:
        keys.close()


def test_an_unreachable_key_database_stops_start_up_with_its_address(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="key database is unavailable"):
        PgStateDB("postgresql://postgres@127.0.0.1:1/test", schema="fw_keys_never")


async def test_the_key_cli_writes_to_the_postgres_state_db(tmp_path: Path, schema: str) -> None:
    from click.testing import CliRunner

    from fareway.cli import main

    cfg = tmp_path / "fareway.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp_path / "state"}"\n[keys]\ndatabase_url = "{PG_URL}"\nschema = "{schema}"\n'
    )
    r = CliRunner().invoke(main, ["keys", "create", "--name", "from-cli", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[0]
    gateway_side = _instance(tmp_path, schema)
    try:
        assert (await gateway_side.authenticate(secret)).name == "from-cli"
        r = CliRunner().invoke(main, ["keys", "revoke", "from-cli", "--config", str(cfg)])
        assert r.exit_code == 0, r.output
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await gateway_side.authenticate(secret)
    finally:
        gateway_side.close()
    assert not (tmp_path / "state" / "state.db").exists()


def test_ping_on_postgres_is_one_query_on_the_keys_table(tmp_path: Path, schema: str) -> None:
    """The readiness probe's check on PostgreSQL: one query, answered while the keys table can be
    read; an error (for /readyz to say not ready) once it cannot."""
    store = _instance(tmp_path, schema)
    try:
        store.create("app")
        store.ping()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{schema}".gateway_keys RENAME TO gateway_keys_gone')
        with pytest.raises(psycopg.errors.UndefinedTable):
            store.ping()
    finally:
        store.close()
