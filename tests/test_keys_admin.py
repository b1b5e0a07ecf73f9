"""Keys, teams, the provider-key vault, the pools and the audit log, below HTTP: unique names,
rotation with a grace period, revocation and expiry that take effect at once (even when the
change comes from another process's connection), the migration of an old state DB, SQL that
stays parameterized under hostile input, encryption at rest with a rotatable master key, and
fingerprints only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from fareway.cli import main
from fareway.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
)
from fareway.keys.admin import Admin
from fareway.keys.audit import Actor
from fareway.keys.pool import KeyPools
from fareway.keys.records import Limits
from fareway.keys.store import KeyStore, hash_key
from fareway.keys.vault import Vault, VaultLocked
from fareway.types import Upstream

ME = Actor("tester", "key_tester", "203.0.113.9")


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sha8(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def dump(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = KeyStore(tmp_path / "state.db", master_key="master-secret-xyz", cache_ttl=60)
    yield s
    s.close()


async def test_names_are_unique_among_active_keys(store: KeyStore) -> None:
    store.create("app")
    with pytest.raises(Conflict):
        store.create("app")
    assert store.revoke("app") == 1
    _, again = store.create("app")  # a revoked key's name may be used again
    assert store.require("app").key_id == again.key_id
    for bad in ("", "x y", "a'b", "key_abc", "-lead", "x" * 65):
        with pytest.raises(ValueError):
            store.create(bad)


async def test_revocation_from_another_connection_is_seen_at_once(store: KeyStore, tmp_path: Path) -> None:
    """A gateway caches lookups for a minute here; the CLI (another KeyStore, as another process
    would) revokes: the very next request fails."""
    secret, _ = store.create("svc")
    assert (await store.authenticate(secret)).name == "svc"
    other = KeyStore(tmp_path / "state.db")
    try:
        assert other.revoke("svc") == 1
    finally:
        other.close()
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await store.authenticate(secret)


async def test_expiry_takes_effect_at_once(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "state.db", cache_ttl=60, clock=clock)
    try:
        secret, _info = store.create("temp", expires_at=clock.t + 3600)
        assert (await store.authenticate(secret)).expires_at == clock.t + 3600
        clock.t += 3601  # cached principal or not, it is expired now
        with pytest.raises(AuthenticationFailed, match="expired"):
            await store.authenticate(secret)
        with pytest.raises(ValueError):
            store.create("past", expires_at=clock.t - 1)
    finally:
        store.close()


async def test_rotation_with_and_without_grace(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "state.db", clock=clock)
    try:
        old, info = store.create("rot", limits=Limits(rpm=5))
        new, after = store.rotate("rot", grace_seconds=600)
        assert after.key_id == info.key_id and after.prefix == new[:7] and after.limits.rpm == 5
        assert (await store.authenticate(old)).key_id == info.key_id  # within the grace period
        assert (await store.authenticate(new)).key_id == info.key_id
        clock.t += 601
        with pytest.raises(AuthenticationFailed, match="rotated"):
            await store.authenticate(old)
        newer, _ = store.rotate("rot")  # no grace: the previous secret stops at once
        with pytest.raises(AuthenticationFailed):
            await store.authenticate(new)
        assert (await store.authenticate(newer)).name == "rot"
    finally:
        store.close()


async def test_principal_carries_team_limits_and_allow_lists(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "state.db")
    admin = Admin(store, providers={"openai", "groq"})
    try:
        team = admin.create_team(
            ME, {"name": "research", "allowed_providers": ["groq"], "budget_daily_usd": "5", "rpm": 100}
        )
        secret, _info = admin.create_key(
            ME,
            {
                "name": "r1",
                "team": "research",
                "allowed_models": ["*8b*"],
                "tpm": 1000,
                "scopes": ["inference", "usage"],
            },
        )
        p = await store.authenticate(secret)
        assert (p.team_id, p.team_name) == (team.team_id, "research")
        assert p.allowed_models == (("*8b*",),) and p.allowed_providers == (("groq",),)
        assert (p.key_limits.tpm, p.team_limits.rpm, str(p.team_limits.daily_usd)) == (1000, 100, "5")
        assert p.allows("usage") and not p.allows("admin")
        with pytest.raises(ValueError, match="unknown provider"):
            admin.create_key(ME, {"name": "r2", "allowed_providers": ["nosuch"]})
        # a change to the team reaches the key's next request
        admin.update_team(ME, "research", {"rpm": None})
        assert (await store.authenticate(secret)).team_limits.rpm is None
    finally:
        store.close()


def test_old_state_db_migrates(tmp_path: Path) -> None:
    """A state DB from before teams and scopes: two active keys shared a name."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE gateway_keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL DEFAULT
        'inference', key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);"""
    )
    rows = [
        ("key_a", "dup", "inference", hash_key("fw-a-secret-aaaaaaaa"), "fw-a-se", 1.0, None),
        ("key_b", "dup", "admin", hash_key("fw-b-secret-bbbbbbbb"), "fw-b-se", 2.0, None),
        ("key_c", "dup", "inference", hash_key("fw-c-secret-cccccccc"), "fw-c-se", 0.5, 3.0),
    ]
    db.executemany("INSERT INTO gateway_keys VALUES (?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    store = KeyStore(path)
    try:
        names = {k.key_id: (k.name, sorted(k.scopes)) for k in store.list()}
        assert names == {
            "key_a": ("dup", ["inference"]),
            "key_b": ("dup~key_b", ["admin", "inference", "usage"]),
            "key_c": ("dup", ["inference"]),  # revoked: kept
        }
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.close()
    finally:
        store.close()


async def test_hostile_input_stays_data(store: KeyStore) -> None:
    """Parameterized SQL only: quotes and SQL in keys, names and ids are looked up as data."""
    secret, _ = store.create("victim")
    admin = Admin(store)
    for presented in ("' OR '1'='1", "fw-x' OR 1=1 --", 'x"; DROP TABLE gateway_keys; --'):
        with pytest.raises(AuthenticationFailed):
            await store.authenticate(presented)
    for ref in ("' OR '1'='1", "victim' --", "1 OR 1=1"):
        with pytest.raises(NotFound):
            admin.show_key(ref)
        with pytest.raises(NotFound):
            admin.list_keys(team=ref)
    assert admin.audit_log(target="' OR '1'='1") == []
    assert (await store.authenticate(secret)).name == "victim"
    assert len(store.list()) == 1


def test_vault_encrypts_at_rest_and_rotates_its_master_key(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = KeyStore(path)
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    try:
        admin = Admin(store, vault=Vault(store.db, [old]))
        secret = "sk-team-provider-key-0123456789abcdef"
        team = admin.create_team(ME, {"name": "t"})
        info = admin.add_provider_key(ME, "openai", secret, team="t", label="main")
        assert info.fingerprint == sha8(secret) and info.team_id == team.team_id
        text = dump(path)
        assert secret not in text
        assert sha8(secret) in text  # the fingerprint is all that shows
        assert secret not in str([e.as_dict() for e in admin.audit_log()])
        # rotation: new key first, old after; re-encrypt; then the old key alone cannot read it
        both = Vault(store.db, [new, old])
        assert [s for _, s in both.load()[0]] == [secret]
        assert Admin(store, vault=both).rotate_master(ME) == 1
        assert [s for _, s in Vault(store.db, [new]).load()[0]] == [secret]
        assert Vault(store.db, [old]).load() == ([], [info.pk_id])
        with pytest.raises(VaultLocked):
            Vault(store.db, []).add("openai", "sk-another-key-123456")
    finally:
        store.close()


def test_audit_log_records_who_did_what(store: KeyStore) -> None:
    admin = Admin(store)
    secret, info = admin.create_key(ME, {"name": "a1", "rpm": 10})
    admin.update_key(ME, "a1", {"rpm": 20, "metadata": {"owner": "ops"}})
    _, rotated = admin.rotate_key(Actor("cli:root"), "a1", "1h")
    admin.revoke_key(ME, "a1")
    rows = admin.audit_log()
    assert [r.action for r in rows] == ["key.revoke", "key.rotate", "key.update", "key.create"]
    assert rows[2].details["rpm"] == {"from": 10, "to": 20}
    assert rows[1].actor == "cli:root" and rows[1].details["grace_seconds"] == 3600
    assert rows[0].client == "203.0.113.9" and rows[0].actor_key_id == "key_tester"
    assert [r.action for r in admin.audit_log(action="key.", actor="cli:root")] == ["key.rotate"]
    assert len(admin.audit_log(target=info.key_id)) == 4
    assert secret not in dump(store.path) and rotated.prefix in str(rows[1].details)


def test_pools_rotate_on_429_and_keep_teams_apart() -> None:
    clock = Clock(100.0)
    pools = KeyPools(rate_limit_rest=60, quota_rest=3600, clock=clock)
    pools.load(
        {"groq": "gateway-config-key-1"},
        [
            ("pk_2", "groq", None, "gateway-vault-key-2"),
            ("pk_3", "groq", "team_a", "team-a-groq-key-3"),
            ("pk_4", "openai", "team_a", "team-a-openai-key-4"),
        ],
    )
    up = Upstream("groq", "openai", "http://x", "m", api_key="gateway-config-key-1")
    b = pools.for_call("team_b")
    a = pools.for_call("team_a")
    assert b is not None and a is not None
    assert b.pick(up) is up  # team B has no groq key of its own: the gateway's current one
    assert (pick := a.pick(up)) is not None and pick.api_key == "team-a-groq-key-3"
    oa = Upstream("openai", "openai", "http://y", "m", api_key=None)
    assert b.pick(oa) is None and (a.pick(oa) or oa).api_key == "team-a-openai-key-4"
    # a 429 on the gateway's first key: the next one, at once; the first rests 60 s
    nxt = b.limited(up, UpstreamRateLimited("slow down", provider="groq"))
    assert nxt is not None and nxt.api_key == "gateway-vault-key-2"
    assert (b.pick(up) or up).api_key == "gateway-vault-key-2"
    assert b.limited(nxt, UpstreamQuotaExceeded("no credits", provider="groq")) is None  # both rest now
    clock.t += 61  # the first key's rest (60 s) is over; the second rests for an hour
    assert (b.pick(up) or up).api_key == "gateway-config-key-1"
    assert a.limited(pick, UpstreamRateLimited("x")) is None  # the team's only key: nothing to rotate to
    assert pools.provider_set == {"groq", "openai"}
    solo = KeyPools()
    solo.load({"groq": "only-config-key-1"}, [])
    assert solo.for_call(None) is None  # nothing to choose: the executor's default path


def test_cli_manages_keys_teams_vault_and_audit(tmp_path: Path) -> None:
    master = Fernet.generate_key().decode()
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n[keys]\nvault_key = "{master}"\n')
    run = CliRunner().invoke
    c = ["--config", str(cfg)]
    assert (
        run(main, ["teams", "create", "--name", "ml", "--budget-daily", "2.5", "--rpm", "60", *c]).exit_code
        == 0
    )
    out = run(
        main,
        [
            "keys",
            "create",
            "--name",
            "bot",
            "--team",
            "ml",
            "--model",
            "groq/*",
            "--tpm",
            "5000",
            "--expires",
            "30d",
            *c,
        ],
    )
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip().splitlines()[0]
    shown = run(main, ["keys", "show", "bot", "--json", *c])
    assert '"allowed_models": [\n    "groq/*"' in shown.output and secret not in shown.output
    dup = run(main, ["keys", "create", "--name", "bot", *c])
    assert dup.exit_code != 0 and "already named" in dup.output
    rotated = run(main, ["keys", "rotate", "bot", "--grace", "1h", *c])
    assert rotated.exit_code == 0 and rotated.stdout.strip() != secret
    provider_key = "gsk_teamkeyteamkeyteamkey0123"
    added = run(main, ["vault", "add", "groq", "--team", "ml", "--stdin", *c], input=provider_key + "\n")
    assert added.exit_code == 0, added.output
    assert sha8(provider_key) in added.output and provider_key not in added.output
    listed = run(main, ["vault", "list", *c])
    assert sha8(provider_key) in listed.output and provider_key not in listed.output
    upd = run(main, ["keys", "update", "bot", "--clear", "tpm", "--rpm", "7", *c])
    assert upd.exit_code == 0 and "rpm:" in upd.output
    audit = run(main, ["audit", "-n", "10", *c])
    for action in ("team.create", "key.create", "key.rotate", "provider_key.add", "key.update"):
        assert action in audit.output
    assert provider_key not in audit.output and secret not in audit.output
    assert run(main, ["keys", "revoke", "bot", *c]).exit_code == 0
    assert run(main, ["teams", "delete", "ml", *c]).exit_code == 0
    assert run(main, ["vault", "new-master-key"]).stdout.strip() != master
