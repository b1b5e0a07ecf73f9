"""Gateway keys: created once, stored only as a hash, accepted until revoked; admin routes need admin."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from fareway.cli import main
from fareway.errors import AuthenticationFailed
from fareway.keys.store import KeyStore, hash_key
from tests.conftest import gateway_config, openai_client, start_gateway


def test_key_is_stored_only_as_a_hash(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state.db")
    secret, info = store.create("app")
    assert secret.startswith("fw-") and len(secret) > 40
    dump = "\n".join(sqlite3.connect(tmp_path / "state.db").iterdump())
    assert secret not in dump
    assert hash_key(secret) in dump
    assert [k.name for k in store.list()] == ["app"] and info.prefix == secret[:7]


async def test_authenticate_and_revoke(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state.db", master_key="master-secret", cache_ttl=0)
    secret, info = store.create("app")
    p = await store.authenticate(secret)
    assert (p.key_id, p.role, p.is_admin) == (info.key_id, "inference", False)
    assert (await store.authenticate("master-secret")).is_admin
    for bad in (None, "", "fw-wrong", "master-secre"):
        with pytest.raises(AuthenticationFailed):
            await store.authenticate(bad)
    assert store.revoke("app") == 1
    with pytest.raises(AuthenticationFailed):
        await store.authenticate(secret)
    assert store.revoke("app") == 0


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n')
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--name", "ci", "--config", str(cfg)])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("fw-")
    listed = runner.invoke(main, ["keys", "list", "--config", str(cfg)])
    assert "ci" in listed.output and secret not in listed.output
    revoked = runner.invoke(main, ["keys", "revoke", "ci", "--config", str(cfg)])
    assert revoked.exit_code == 0 and "revoked 1" in revoked.output
    again = runner.invoke(main, ["keys", "revoke", "ci", "--config", str(cfg)])
    assert again.exit_code != 0


async def test_inference_key_over_http_and_admin_routes(sim: Any, tmp_path: Path) -> None:
    cfg = gateway_config(sim.url, tmp_path)
    gw = await start_gateway(cfg)
    try:
        secret, _ = gw.app.gateway.keys.create("http-app")
        client = openai_client(gw.url + "/v1", secret)
        resp = await client.chat.completions.create(
            model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "echo:ok"}]
        )
        assert resp.choices[0].message.content == "ok"
        import aiohttp

        async with aiohttp.ClientSession() as s:
            async with s.get(gw.url + "/metrics", headers={"authorization": f"Bearer {secret}"}) as r:
                assert r.status == 403
                assert (await r.json())["error"]["type"] == "permission_error"
        gw.app.gateway.keys.revoke("http-app")
        gw.app.gateway.keys._cache.clear()
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await gw.stop()


def test_ping_is_one_query_on_the_keys_table(tmp_path: Path) -> None:
    """The readiness probe's check of the state database: it answers while the keys table does,
    and fails (for /readyz to say not ready) when it cannot be read."""
    store = KeyStore(tmp_path / "state.db")
    for i in range(3):
        store.create(f"k{i}")
    store.ping()
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("ALTER TABLE gateway_keys RENAME TO gateway_keys_gone")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.ping()


def test_state_db_connections_are_closed_after_each_use(tmp_path: Path) -> None:
    """Every lookup's connection is closed when its block ends, not when the garbage collector
    gets to it (the gateway collects rarely): the open files on the state DB do not grow."""
    import gc
    import os

    def open_files() -> int:
        fd_dir = Path("/proc/self/fd")
        if not fd_dir.is_dir():
            pytest.skip("no /proc/self/fd on this platform")
        n = 0
        for fd in fd_dir.iterdir():
            try:
                n += str(tmp_path) in os.readlink(fd)
            except OSError:
                continue
        return n

    store = KeyStore(tmp_path / "state.db", cache_ttl=0)
    store.create("app")
    gc.disable()
    try:
        before = open_files()
        for _ in range(100):
            store.list()
            store.ping()
        assert open_files() == before
    finally:
        gc.enable()
        store.close()


def test_the_state_db_notices_every_commit_of_another_process_through_its_wal_index(tmp_path: Path) -> None:
    """``changed()`` reads the WAL-index header (state.db-shm) before its PRAGMA: while no one
    commits, the header is unchanged and no statement runs; a commit by another connection (in
    another process: the CLI revoking a key) moves it, also after the WAL is checkpointed and
    truncated, and the generation moves with it."""
    import subprocess
    import sys

    from fareway.keys.state_db import StateDB

    db = StateDB(tmp_path / "state.db")
    try:
        assert db._shm is not None, "the -shm file is mapped"
        g = db.changed()
        queries: list[str] = []
        db._watch.set_trace_callback(queries.append)
        for _ in range(50):
            assert db.changed() == g
        assert queries == [], "no statement while nothing changes"
        script = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('CREATE TABLE IF NOT EXISTS t (x)')\n"
            "c.execute('INSERT INTO t VALUES (1)')\n"
            "if sys.argv[2] == 'truncate': c.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n"
            "c.close()\n"
        )
        for mode in ("plain", "truncate", "plain", "plain", "truncate"):
            subprocess.run([sys.executable, "-c", script, str(db.path), mode], check=True)
            g2 = db.changed()
            assert g2 > g, mode
            assert db.changed() == g2  # nothing since
            g = g2
    finally:
        db.close()
