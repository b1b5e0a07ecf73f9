"""The usage API (/v1/usage, /v1/usage/export, /v1/logs) over a live gateway whose ledger holds
records inserted through the Ledger, plus one real call through the simulator."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fareway.config import Config
from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.server.app import App
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, openai_client, start_gateway

NOW = datetime.now(UTC).replace(microsecond=0)


# ----------------------------------------------------------------------------- helpers


async def start_usage_gateway(config: Config) -> LiveGateway:
    """A live gateway; the factory wires the ledger, the usage API and the dashboard."""
    gw = await start_gateway(config)
    assert ("GET", "/v1/usage") in gw.app.routes and gw.app.gateway.accounting.ledger is not None
    return gw


def call(
    rid: str,
    when: datetime,
    key: tuple[str, str],
    provider: str | None,
    model: str,
    cost: str | None,
    *,
    inp: int = 100,
    out: int = 20,
    outcome: str = "ok",
    status: int = 200,
    saved: str | None = None,
    attempts: list[dict[str, Any]] | None = None,
) -> tuple[CallRecord, list[AttemptRecord]]:
    c = CallRecord(
        request_id=rid,
        requested_model=model,
        time=when,
        key_id=key[0],
        key_name=key[1],
        provider=provider,
        upstream_model=model if provider else None,
        status=status,
        outcome=outcome,  # type: ignore[arg-type]
        input_tokens=inp,
        output_tokens=out,
        cached_input_tokens=inp // 4,
        cost=None if cost is None else Decimal(cost),
        cost_saved=None if saved is None else Decimal(saved),
        cache="hit" if saved else "miss",
        latency_ms=420.0,
        ttft_ms=150.0,
        route=f"{provider}/{model}",
        attempts=len(attempts or []),
    )
    atts = []
    for i, a in enumerate(attempts or []):
        atts.append(
            AttemptRecord(
                request_id=rid,
                attempt_no=i,
                started_at=when,
                **{
                    "provider": provider or "openai",
                    "model": model,
                    "latency_ms": 400.0,
                    "ttft_ms": 140.0,
                    **a,
                },
            )
        )
    return c, atts


@dataclass
class World:
    gw: LiveGateway
    admin_key: str
    alice: tuple[str, str]  # (secret, key_id)
    bob: tuple[str, str]

    async def get(self, path: str, key: str | None = None, **params: str) -> tuple[int, Any, dict[str, str]]:
        headers = {"authorization": f"Bearer {key or self.admin_key}"}
        async with (
            aiohttp.ClientSession() as s,
            s.get(self.gw.url + path, params=params, headers=headers) as r,
        ):
            body: Any = await r.read()
            if r.content_type == "application/json":
                import orjson

                body = orjson.loads(body)
            else:
                body = body.decode()
            return r.status, body, dict(r.headers)


async def seed(app: App, alice_id: str, bob_id: str) -> None:
    """Six calls over three days, two keys, two providers, one unpriced, one error, one cache hit."""
    a, b = (alice_id, "alice"), (bob_id, "bob")
    d2, d1, h1 = NOW - timedelta(days=2), NOW - timedelta(days=1), NOW - timedelta(hours=1)
    rows = [
        call("r1", d2, a, "openai", "gpt-4o-mini", "0.0010", attempts=[{"cost": Decimal("0.0010")}]),
        call("r2", d1, a, "openai", "gpt-4o-mini", "0.0020", attempts=[{"cost": Decimal("0.0020")}]),
        call(
            "r3",
            h1,
            a,
            "anthropic",
            "claude-3-5-haiku",
            "0.0300",
            attempts=[
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "outcome": "error",
                    "status": 500,
                    "error": "boom",
                    "cost": None,
                    "input_tokens": 0,
                    "output_tokens": 0,
                },
                {"role": "fallback", "cost": Decimal("0.0300"), "input_tokens": 100, "output_tokens": 20},
            ],
        ),
        call("r4", h1, b, "anthropic", "claude-3-5-haiku", "0.0400", attempts=[{"cost": Decimal("0.0400")}]),
        call("r5", h1, b, "deepinfra", "mystery-model", None, attempts=[{"cost": None, "input_tokens": 100}]),
        call(
            "r6",
            h1,
            b,
            None,
            "nope/<script>alert(1)</script>",
            "0",
            inp=0,
            out=0,
            outcome="error",
            status=404,
        ),
        call("r7", h1, a, "openai", "gpt-4o-mini", "0", inp=0, out=0, saved="0.0025"),
    ]
    ledger = app.gateway.accounting.ledger
    for c, atts in rows:
        ledger.record(c, atts)
    await ledger.flush()


@pytest.fixture(scope="module")
async def world(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    state: Path = tmp_path_factory.mktemp("usage-state")
    gw = await start_usage_gateway(gateway_config(sim.url, state))
    keys = gw.app.gateway.keys
    alice_secret, alice = keys.create("alice")
    bob_secret, bob = keys.create("bob")
    admin_secret, _ = keys.create("ops", role="admin")
    await seed(gw.app, alice.key_id, bob.key_id)
    yield World(gw, admin_secret, (alice_secret, alice.key_id), (bob_secret, bob.key_id))
    await gw.stop()


# ------------------------------------------------------------------------------- usage


async def test_totals_over_everything(world: World) -> None:
    status, body, _ = await world.get("/v1/usage")
    assert status == 200
    t = body["totals"]
    assert body["groups"] == [] and body["group_by"] == []
    assert t["calls"] == 7
    assert t["errors"] == 1
    assert t["cost"] == "0.073"  # exact decimal text, unknown prices not counted as 0 but left out
    assert t["unknown_cost_calls"] == 1
    assert t["cost_saved"] == "0.0025"
    assert t["input_tokens"] == 500 and t["output_tokens"] == 100


async def test_group_by_provider_model(world: World) -> None:
    status, body, _ = await world.get("/v1/usage", group_by="provider,model")
    assert status == 200
    groups = {(g["provider"], g["model"]): g for g in body["groups"]}
    assert set(groups) == {
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-haiku"),
        ("deepinfra", "mystery-model"),
        (None, "nope/<script>alert(1)</script>"),
    }
    assert groups[("openai", "gpt-4o-mini")]["calls"] == 3
    assert groups[("openai", "gpt-4o-mini")]["cost"] == "0.003"
    assert groups[("anthropic", "claude-3-5-haiku")]["cost"] == "0.07"
    assert groups[("deepinfra", "mystery-model")]["unknown_cost_calls"] == 1
    assert sum(Decimal(g["cost"]) for g in body["groups"]) == Decimal(body["totals"]["cost"])
    assert sum(g["calls"] for g in body["groups"]) == body["totals"]["calls"]


async def test_group_by_key_and_day_with_window(world: World) -> None:
    since = (NOW - timedelta(days=1, hours=1)).isoformat()
    status, body, _ = await world.get("/v1/usage", group_by="key,day", since=since)
    assert status == 200
    assert body["totals"]["calls"] == 6  # r1 (two days ago) is outside
    by = {(g["key_name"], g["day"]): g["calls"] for g in body["groups"]}
    d1 = (NOW - timedelta(days=1)).date().isoformat()
    h1 = (NOW - timedelta(hours=1)).date().isoformat()
    assert by[("alice", d1)] >= 1
    assert sum(v for (k, _), v in by.items() if k == "bob") == 3
    assert all(set(g) >= {"key_id", "key_name", "day", "calls", "cost"} for g in body["groups"])
    assert h1 in {d for _, d in by}


async def test_relative_since(world: World) -> None:
    _, body, _ = await world.get("/v1/usage", since="6h")
    assert body["totals"]["calls"] == 5
    _, body, _ = await world.get("/v1/usage", since="7d", until="3h")
    assert body["totals"]["calls"] == 2


async def test_inference_key_sees_only_its_own(world: World) -> None:
    bob_secret, bob_id = world.bob
    for params in ({}, {"key_id": world.alice[1]}, {"group_by": "key"}):
        status, body, _ = await world.get("/v1/usage", key=bob_secret, **params)
        assert status == 200
        assert body["totals"]["calls"] == 3
        assert body["key_id"] == bob_id
        assert all(g["key_id"] == bob_id for g in body["groups"])
    status, body, _ = await world.get("/v1/logs", key=bob_secret, n="50")
    assert status == 200
    assert {c["key_id"] for c in body["data"]} == {bob_id}
    assert len(body["data"]) == 3


async def test_admin_can_narrow_to_one_key(world: World) -> None:
    _, body, _ = await world.get("/v1/usage", key_id=world.alice[1])
    assert body["totals"]["calls"] == 4


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"until": "2025-13-45"}, "until"),
        ({"group_by": "provider,colour"}, "group_by"),
        ({"format": "xml"}, "format"),
        ({"groupby": "provider"}, "groupby"),
        ({"since": "2d", "until": "3d"}, "until"),
    ],
)
async def test_bad_parameters_are_400_in_openai_shape(
    world: World, params: dict[str, str], param: str
) -> None:
    status, body, _ = await world.get("/v1/usage", **params)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert body["error"]["message"]


async def test_logs_bad_n(world: World) -> None:
    status, body, _ = await world.get("/v1/logs", n="0")
    assert status == 400 and body["error"]["param"] == "n"


async def test_usage_needs_a_key(world: World) -> None:
    async with aiohttp.ClientSession() as s, s.get(world.gw.url + "/v1/usage") as r:
        assert r.status == 401


async def test_csv_export_parses(world: World) -> None:
    status, text, headers = await world.get("/v1/usage", group_by="provider", format="csv")
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["provider"] for r in rows} == {"", "openai", "anthropic", "deepinfra"}
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal("0.073")
    assert sum(int(r["calls"]) for r in rows) == 7


async def test_raw_call_export(world: World) -> None:
    status, text, headers = await world.get("/v1/usage/export", key=world.alice[0])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["request_id"] for r in rows] == ["r1", "r2", "r3", "r7"]  # oldest first, alice only
    assert rows[2]["cost"] == "0.0300"


async def test_logs_with_attempts_and_model_filter(world: World) -> None:
    status, body, _ = await world.get("/v1/logs", n="3")
    assert status == 200 and len(body["data"]) == 3
    status, body, _ = await world.get("/v1/logs", model="claude-3-5-haiku")
    calls = {c["request_id"]: c for c in body["data"]}
    assert set(calls) == {"r3", "r4"}
    r3 = calls["r3"]
    assert [a["outcome"] for a in r3["attempts"]] == ["error", "ok"]
    assert r3["attempts"][0]["error"] == "boom" and r3["attempts"][0]["status"] == 500
    assert r3["attempts"][1]["role"] == "fallback" and r3["attempts"][1]["cost"] == "0.03"
    assert r3["cost"] == "0.03"


async def test_a_real_call_lands_in_usage_and_logs(world: World) -> None:
    alice_secret, alice_id = world.alice
    client = openai_client(world.gw.url + "/v1", alice_secret)
    resp = await client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "echo:counted"}]
    )
    assert resp.choices[0].message.content == "counted"
    await world.gw.app.gateway.accounting.ledger.flush()
    _, body, _ = await world.get("/v1/logs", key=alice_secret, n="1")
    latest = body["data"][0]
    assert latest["key_id"] == alice_id and latest["provider"] == "openai"
    assert latest["output_tokens"] == resp.usage.completion_tokens  # type: ignore[union-attr]
    assert latest["attempts"] and latest["attempts"][0]["outcome"] == "ok"
    _, usage, _ = await world.get("/v1/usage", key=alice_secret, since="2h")
    assert usage["totals"]["calls"] >= 3


async def test_master_key_is_admin(world: World) -> None:
    status, body, _ = await world.get("/v1/usage", key=MASTER_KEY, group_by="key")
    assert status == 200 and len({g["key_id"] for g in body["groups"]}) >= 2


# --------------------------------------------------------------------- dashboard over HTTP


async def test_dashboard_login_session_and_logout(world: World) -> None:
    url = world.gw.url
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(url + "/ui") as r:
            assert r.status == 200 and 'action="/ui/login"' in await r.text()
            assert "script-src 'self'" in r.headers["content-security-policy"]
        async with s.get(url + "/ui/api/overview") as r:
            assert r.status == 401
        async with s.post(url + "/ui/login", data={"key": "wrong"}, allow_redirects=False) as r:
            assert r.status == 401 and "not valid" in await r.text()
        async with s.post(url + "/ui/login", data={"key": world.bob[0]}, allow_redirects=False) as r:
            assert r.status == 403 and "set-cookie" not in r.headers
        async with s.post(
            url + "/ui/login", data={"key": world.admin_key}, headers={"origin": "http://evil.example"}
        ) as r:
            assert r.status == 403
        async with s.post(url + "/ui/login", data={"key": world.admin_key}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["location"] == "/ui"
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
            assert world.admin_key not in cookie
        async with s.get(url + "/ui") as r:
            assert 'id="app"' in await r.text()
        async with s.get(url + "/ui/api/overview", params={"since": "7d"}) as r:
            assert r.status == 200
            ov = await r.json()
        async with s.get(url + "/ui/api/usage", params={"since": ov["since"]}) as r:
            assert (await r.json())["totals"] == ov["totals"]
        status, api, _ = await world.get("/v1/usage", since=ov["since"])
        assert status == 200
        assert api["totals"] == ov["totals"]
        assert {g["key_name"] for g in ov["by_key"]} >= {"alice", "bob"}
        assert ov["spend"]["series"] and ov["latency"]
        async with s.get(url + "/ui/api/calls", params={"n": "2"}) as r:
            assert len((await r.json())["data"]) == 2
        async with s.get(url + "/ui/api/overview", params={"since": "soon"}) as r:
            assert r.status == 400
        async with s.post(url + "/ui/logout", allow_redirects=False) as r:
            assert r.status == 303 and "Max-Age=0" in r.headers["set-cookie"]
        async with s.get(url + "/ui/api/overview") as r:
            assert r.status == 401


async def test_dashboard_session_ends_when_its_key_is_revoked(world: World) -> None:
    secret, info = world.gw.app.gateway.keys.create("temp-admin", role="admin")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(world.gw.url + "/ui/login", data={"key": secret}) as r:
            assert r.status == 200
        async with s.get(world.gw.url + "/ui/api/calls") as r:
            assert r.status == 200
        world.gw.app.gateway.keys.revoke(info.key_id)
        async with s.get(world.gw.url + "/ui/api/calls") as r:
            assert r.status == 401


async def test_dashboard_static_files(world: World) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(world.gw.url + "/ui/static/app.js") as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/javascript")
            assert "textContent" in await r.text()
        async with s.get(world.gw.url + "/ui/static/style.css") as r:
            assert r.status == 200
        for bad in ("../page.py", "..%2Fpage.py", "page.py", ".hidden.js", ""):
            async with s.get(world.gw.url + "/ui/static/" + bad) as r:
                assert r.status == 404, bad


# ---------------------------------------------------------------------------- parsing


def test_parse_time_forms() -> None:
    from fareway.dashboard.data import parse_time

    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_time("7d", "since", now) == now - timedelta(days=7)
    assert parse_time("24h", "since", now) == now - timedelta(hours=24)
    assert parse_time("30m", "since", now) == now - timedelta(minutes=30)
    assert parse_time("2w", "since", now) == now - timedelta(weeks=2)
    assert parse_time("2025-03-01", "since") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_time("2025-03-01T10:00:00Z", "since") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    # a '+' in a query string arrives as a space
    assert parse_time("2025-03-01T12:00:00 02:00", "since") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_time("2025-03-01T10:00:00", "since") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_time("", "since") is None and parse_time(None, "since") is None
