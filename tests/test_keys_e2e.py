"""Keys and teams on a live gateway, with the official SDKs as clients: a revoked or expired key
fails at once; a team's own provider key is used for its calls and another team's never (the
simulator records which key it saw, as a hash); a provider key that gets a 429 hands over to the
next key at once; the admin API needs the admin scope and trusts no header for it; every admin
action is in the audit log; ``GET /v1/key`` shows a key its limits.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from fareway.cli import main
from fareway.config import Config, ProviderConfig
from fareway.keys.settings import KeySettings
from tests.conftest import (
    MASTER_KEY,
    LiveGateway,
    anthropic_client,
    gateway_config,
    openai_client,
    start_gateway,
)

PROMPT = [{"role": "user", "content": "Say hi"}]


def sha16(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def config(sim: Any, tmp_path: Path, **changes: Any) -> Config:
    cfg = gateway_config(sim.url, tmp_path)
    return dataclasses.replace(
        cfg, key_settings=KeySettings(vault_key=Fernet.generate_key().decode()), **changes
    )


async def api(
    gw: LiveGateway, method: str, path: str, body: Any = None, key: str | None = MASTER_KEY, **headers: str
) -> tuple[int, Any]:
    h = dict(headers)
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as s:
        async with s.request(method, gw.url + path, json=body, headers=h) as r:
            return r.status, await r.json(content_type=None)


async def ok(gw: LiveGateway, method: str, path: str, body: Any = None, key: str = MASTER_KEY) -> Any:
    status, data = await api(gw, method, path, body, key)
    assert status < 300, (status, data)
    return data


async def keys_seen(sim_control: Any, provider: str) -> dict[str, int]:
    stats = await sim_control.stats()
    return dict(stats["providers"].get(provider, {}).get("keys", {}))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


async def test_revoked_and_expired_keys_fail_at_once(sim: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    gw = await start_gateway(config(sim, state))
    cfg_file = tmp_path / "f.toml"
    cfg_file.write_text(f'[server]\nstate_dir = "{state}"\n')
    try:
        k = await ok(gw, "POST", "/v1/admin/keys", {"name": "short-lived"})
        client = openai_client(gw.url + "/v1", k["key"])
        await client.chat.completions.create(model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3)
        # revoked from the command line (another process's connection to the state DB)
        out = CliRunner().invoke(main, ["keys", "revoke", "short-lived", "--config", str(cfg_file)])
        assert out.exit_code == 0, out.output
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            await client.chat.completions.create(
                model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3
            )
        # expiry: the gateway's clock passes it (no waiting)
        e = await ok(gw, "POST", "/v1/admin/keys", {"name": "expiring", "expires_in": "1h"})
        ant = anthropic_client(gw.url, e["key"])
        await ant.messages.create(model="groq/llama-3.1-8b-instant", max_tokens=3, messages=PROMPT)
        store = gw.app.gateway.keys
        real = store.clock
        store.clock = lambda: real() + 3601
        try:
            with pytest.raises(anthropic.AuthenticationError, match="expired"):
                await ant.messages.create(model="groq/llama-3.1-8b-instant", max_tokens=3, messages=PROMPT)
        finally:
            store.clock = real
    finally:
        await gw.stop()


async def test_a_teams_own_provider_key_is_used_for_its_calls_and_never_for_another(
    sim: Any, sim_control: Any, tmp_path: Path
) -> None:
    cfg = config(sim, tmp_path)
    # xai has no gateway key here: only team A brings one
    xai = cfg.providers["xai"]
    providers = {**cfg.providers, "xai": ProviderConfig(xai.spec, None, xai.models)}
    gw = await start_gateway(dataclasses.replace(cfg, providers=providers))
    team_groq, team_xai = "gsk_team_a_own_groq_key_0001", "xai-team-a-own-xai-key-0001"
    try:
        for name in ("team-a", "team-b"):
            await ok(gw, "POST", "/v1/admin/teams", {"name": name})
        pk = await ok(
            gw, "POST", "/v1/admin/provider-keys", {"provider": "groq", "key": team_groq, "team": "team-a"}
        )
        assert pk["fingerprint"] == hashlib.sha256(team_groq.encode()).hexdigest()[
            :8
        ] and team_groq not in str(pk)
        await ok(
            gw, "POST", "/v1/admin/provider-keys", {"provider": "xai", "key": team_xai, "team": "team-a"}
        )
        a = (await ok(gw, "POST", "/v1/admin/keys", {"name": "a1", "team": "team-a"}))["key"]
        b = (await ok(gw, "POST", "/v1/admin/keys", {"name": "b1", "team": "team-b"}))["key"]
        solo = (await ok(gw, "POST", "/v1/admin/keys", {"name": "solo"}))["key"]
        listed = await ok(gw, "GET", "/v1/admin/provider-keys")
        assert team_groq not in str(listed) and team_xai not in str(listed)

        before = await keys_seen(sim_control, "groq")
        for secret, n in ((a, 3), (b, 2), (solo, 2)):
            client = openai_client(gw.url + "/v1", secret)
            for _ in range(n):
                await client.chat.completions.create(
                    model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3
                )
        await anthropic_client(gw.url, a).messages.create(
            model="groq/llama-3.1-8b-instant", max_tokens=3, messages=PROMPT
        )
        seen = delta(await keys_seen(sim_control, "groq"), before)
        # team A's 4 calls carried its own key; team B's and the team-less key's 4 the gateway's
        assert seen == {sha16(team_groq): 4, sha16("demo-key"): 4}

        before = await keys_seen(sim_control, "xai")
        r = await openai_client(gw.url + "/v1", a).chat.completions.create(
            model="xai/grok-4", messages=PROMPT, max_tokens=3
        )
        assert r.choices[0].message.content
        for other in (b, solo):
            with pytest.raises(openai.NotFoundError, match="No provider key for xai"):
                await openai_client(gw.url + "/v1", other).chat.completions.create(
                    model="xai/grok-4", messages=PROMPT, max_tokens=3
                )
        assert delta(await keys_seen(sim_control, "xai"), before) == {sha16(team_xai): 1}
    finally:
        await gw.stop()


async def test_a_rate_limited_provider_key_hands_over_to_the_next(
    sim: Any, sim_control: Any, tmp_path: Path
) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    second = "csk-gateway-second-cerebras-key-01"
    try:
        await ok(gw, "POST", "/v1/admin/provider-keys", {"provider": "cerebras", "key": second})
        await sim_control.fault(
            provider="cerebras", kind="429", key=sha16("demo-key"), count=1, retry_after=30
        )
        before = await keys_seen(sim_control, "cerebras")
        client = openai_client(gw.url + "/v1", MASTER_KEY)
        raw = await client.chat.completions.with_raw_response.create(
            model="cerebras/llama3.1-8b", messages=PROMPT, max_tokens=3
        )
        assert raw.headers["x-fareway-provider"] == "cerebras"
        # one call, two attempts on the same offer: the first key's 429, then the second key
        assert raw.headers["x-fareway-route"].endswith(
            "attempts=cerebras/llama3.1-8b=error,cerebras/llama3.1-8b=ok"
        )
        again = await client.chat.completions.with_raw_response.create(
            model="cerebras/llama3.1-8b", messages=PROMPT, max_tokens=3
        )
        assert again.headers["x-fareway-route"].endswith("attempts=cerebras/llama3.1-8b=ok")
        # the first key rests (Retry-After 30 s): the next call went to the second key directly
        assert delta(await keys_seen(sim_control, "cerebras"), before) == {
            sha16("demo-key"): 1,
            sha16(second): 2,
        }
    finally:
        await gw.stop()


async def test_admin_api_needs_the_admin_scope_and_trusts_no_header(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        user = (await ok(gw, "POST", "/v1/admin/keys", {"name": "user"}))["key"]
        for headers in ({}, {"Host": "localhost"}, {"X-Forwarded-For": "127.0.0.1"}, {"Host": "127.0.0.1:1"}):
            status, body = await api(gw, "POST", "/v1/admin/keys", {"name": "sneaky"}, key=None, **headers)
            assert status == 401, (headers, body)
            status, body = await api(gw, "POST", "/v1/admin/keys", {"name": "sneaky"}, key=user, **headers)
            assert status == 403 and body["error"]["type"] == "permission_error"
        status, _ = await api(gw, "GET", "/v1/admin/audit", key=user)
        assert status == 403
        # an admin-scoped key may manage keys
        admin = (await ok(gw, "POST", "/v1/admin/keys", {"name": "ops", "scopes": ["admin"]}))["key"]
        made = await ok(
            gw,
            "POST",
            "/v1/admin/keys",
            {"name": "made-by-ops", "rpm": 5, "metadata": {"app": "x"}},
            key=admin,
        )
        assert made["key"].startswith("fw-") and made["prefix"] == made["key"][:7] and made["rpm"] == 5
        status, body = await api(gw, "POST", "/v1/admin/keys", {"name": "made-by-ops"}, key=admin)
        assert status == 409
        status, body = await api(gw, "POST", "/v1/admin/keys", {"name": "x", "bogus": 1}, key=admin)
        assert status == 400 and "bogus" in body["error"]["message"]
        status, body = await api(
            gw, "POST", "/v1/admin/keys", {"name": "x", "budget_daily_usd": "-1"}, key=admin
        )
        assert status == 400
        shown = await ok(gw, "GET", "/v1/admin/keys/made-by-ops", key=admin)
        assert "key" not in shown and shown["metadata"] == {"app": "x"}
        patched = await ok(gw, "PATCH", "/v1/admin/keys/made-by-ops", {"rpm": None, "tpm": 900}, key=admin)
        assert (patched["rpm"], patched["tpm"]) == (None, 900)
        rotated = await ok(gw, "POST", f"/v1/admin/keys/{made['id']}/rotate", {}, key=admin)
        with pytest.raises(openai.AuthenticationError):
            await openai_client(gw.url + "/v1", made["key"]).models.list()
        await openai_client(gw.url + "/v1", rotated["key"]).models.list()
        revoked = await ok(gw, "DELETE", "/v1/admin/keys/made-by-ops", key=admin)
        assert revoked["revoked_at"] is not None
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            await openai_client(gw.url + "/v1", rotated["key"]).models.list()
        listed = await ok(gw, "GET", "/v1/admin/keys?include_revoked=true", key=admin)
        assert {k["name"] for k in listed["data"]} >= {"user", "ops", "made-by-ops"}
        assert all("key" not in k for k in listed["data"])
        audit = await ok(gw, "GET", f"/v1/admin/audit?target={made['id']}", key=admin)
        assert [(e["action"], e["actor"]) for e in audit["data"]] == [
            ("key.revoke", "ops"),
            ("key.rotate", "ops"),
            ("key.update", "ops"),
            ("key.create", "ops"),
        ]
        assert made["key"] not in str(audit) and rotated["key"] not in str(audit)
        status, _ = await api(gw, "GET", "/v1/admin/audit?since=bogus", key=admin)
        assert status == 400
    finally:
        await gw.stop()


async def test_usage_scope_reads_usage_but_makes_no_calls(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        caller = await ok(gw, "POST", "/v1/admin/keys", {"name": "caller"})
        reader = (await ok(gw, "POST", "/v1/admin/keys", {"name": "reader", "scopes": ["usage"]}))["key"]
        await openai_client(gw.url + "/v1", caller["key"]).chat.completions.create(
            model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3
        )
        with pytest.raises(openai.PermissionDeniedError, match="inference"):
            await openai_client(gw.url + "/v1", reader).chat.completions.create(
                model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3
            )
        await gw.app.gateway.accounting.ledger.flush()  # type: ignore[union-attr]
        usage = await ok(gw, "GET", "/v1/usage?group_by=key", key=reader)
        assert caller["id"] in {g.get("key_id") for g in usage["groups"]}
        status, _ = await api(gw, "GET", "/v1/admin/keys", key=reader)
        assert status == 403
    finally:
        await gw.stop()


async def test_get_v1_key_shows_limits_and_what_is_left(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    try:
        await ok(
            gw,
            "POST",
            "/v1/admin/teams",
            {"name": "eng", "budget_monthly_usd": "10", "allowed_providers": ["groq"]},
        )
        k = await ok(
            gw,
            "POST",
            "/v1/admin/keys",
            {
                "name": "me",
                "team": "eng",
                "rpm": 30,
                "budget_daily_usd": "1.5",
                "allowed_models": ["*llama*"],
            },
        )
        raw = await openai_client(gw.url + "/v1", k["key"]).chat.completions.with_raw_response.create(
            model="groq/llama-3.1-8b-instant", messages=PROMPT, max_tokens=3
        )
        cost = raw.headers["x-fareway-cost-usd"]
        me = await ok(gw, "GET", "/v1/key", key=k["key"])
        assert (me["id"], me["name"], me["prefix"], me["scopes"]) == (
            k["id"],
            "me",
            k["key"][:7],
            ["inference"],
        )
        assert me["team"]["name"] == "eng" and me["team"]["allowed_providers"] == ["groq"]
        assert me["allowed_models"] == ["*llama*"]
        key_limits, team_limits = me["limits"]["key"], me["limits"]["team"]
        assert key_limits["rate_limits"]["requests_per_minute"]["remaining"] == 29
        daily = key_limits["budgets"]["daily"]
        assert (daily["limit_usd"], daily["spent_usd"]) == ("1.5", cost)
        assert team_limits["budgets"]["monthly"]["spent_usd"] == cost
        assert team_limits["budgets"]["monthly"]["resets_at"].endswith("T00:00:00Z")
        master = await ok(gw, "GET", "/v1/key")
        assert master["id"] == "master" and "admin" in master["scopes"]
    finally:
        await gw.stop()


async def test_keys_never_reach_the_log(sim: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gw = await start_gateway(config(sim, tmp_path))
    provider_key = "gsk_never_logged_provider_key_42"
    try:
        with caplog.at_level("DEBUG"):
            await ok(gw, "POST", "/v1/admin/provider-keys", {"provider": "groq", "key": provider_key})
            k = await ok(gw, "POST", "/v1/admin/keys", {"name": "logged"})
            await ok(gw, "POST", "/v1/admin/keys/logged/revoke", {})
            for secret in (k["key"], "fw-not-a-key-at-all-xxxxxxxxxxxxxxxxxxx"):
                with pytest.raises(openai.AuthenticationError):
                    await openai_client(gw.url + "/v1", secret).models.list()
        text = caplog.text
        assert k["key"] not in text and provider_key not in text and "fw-not-a-key-at-all" not in text
        assert hashlib.sha256(k["key"].encode()).hexdigest()[:8] in text  # the revoked key's fingerprint
    finally:
        await gw.stop()
