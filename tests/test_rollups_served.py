"""What the gateway shows, now read from the rollups, against the same figures computed from
the raw rows of the same ledger: ``/v1/usage``, the dashboard's overview, ``/metrics`` (against
the in-memory counters fed the same calls), and the CLI (``fareway usage``, ``fareway ledger``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from fareway.cli_ledger import ledger_group
from fareway.cli_usage import usage_cmd
from fareway.dashboard import data
from fareway.ledger import Ledger, queries
from fareway.metrics import Metrics
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config
from tests.rollup_reference import fixed_records

NOW = datetime.now(UTC)
RECORDS = fixed_records(400, seed=17, end=NOW - timedelta(seconds=5), span=timedelta(days=9))


@pytest.fixture(scope="module")
async def served(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    from tests.test_usage_api import start_usage_gateway

    gw = await start_usage_gateway(gateway_config(sim.url, tmp_path_factory.mktemp("served")))
    ledger = gw.app.gateway.accounting.ledger
    for call, attempts in RECORDS:
        ledger.record(call, attempts)
    await ledger.flush()
    yield gw
    await gw.stop()


async def get(gw: LiveGateway, path: str, **params: str) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.url + path, params=params, headers={"authorization": f"Bearer {MASTER_KEY}"}) as r,
    ):
        assert r.status == 200, await r.text()
        if r.content_type == "application/json":
            return await r.json()
        return await r.text()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("group_by", ["", "provider,model", "key,day", "day,provider,model,key"])
async def test_usage_api_figures_are_the_raw_rows_figures(served: LiveGateway, group_by: str) -> None:
    store = served.app.gateway.accounting.ledger.store
    groups = data.parse_group_by(group_by)
    for since, until in (
        (NOW - timedelta(days=7, seconds=12.345678), None),
        (NOW - timedelta(days=3, minutes=7, microseconds=5), NOW - timedelta(hours=5, seconds=1.5)),
        (None, None),
    ):
        params = {"group_by": group_by}
        if since is not None:
            params["since"] = _iso(since)
        if until is not None:
            params["until"] = _iso(until)
        body = await get(served, "/v1/usage", **params)
        raw = await queries.usage(store, since, until, groups)
        assert body == orjson.loads(orjson.dumps(data.usage_payload(raw, groups, since, until)))
        assert body["totals"]["calls"] > 0


async def test_dashboard_overview_figures_are_the_raw_rows_figures(served: LiveGateway) -> None:
    store = served.app.gateway.accounting.ledger.store
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(served.url + "/ui/login", data={"key": MASTER_KEY}, allow_redirects=False) as r:
            assert r.status == 303
        for window in ("24h", "7d", "30d", "all"):
            async with s.get(served.url + "/ui/api/overview", params={"since": window}) as r:
                assert r.status == 200
                ov = await r.json()
            since = None if ov["since"] is None else datetime.fromisoformat(ov["since"])
            assert ov["totals"] == data.totals(await queries.usage(store, since, None, []))
            assert ov["by_model"] == [
                data.usage_group(r, ["provider", "model"])
                for r in await queries.usage(store, since, None, ["provider", "model"])
            ]
            assert ov["by_key"] == [
                data.usage_group(r, ["key"]) for r in await queries.usage(store, since, None, ["key"])
            ]
            spend = await queries.spend_over_time(store, since, ov["bucket"], "provider")
            assert ov["spend"] == data.spend_series(spend)
            raw_latency = [data.latency_dict(r) for r in await queries.latency_by_provider(store, since)]
            counts = ("provider", "attempts", "errors", "error_rate")
            assert [{k: r[k] for k in counts} for r in ov["latency"]] == [
                {k: r[k] for k in counts} for r in raw_latency
            ]
            assert ov["totals"]["calls"] > 0


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith(("fareway_ledger", "fareway_cache_store")):
            continue  # the writer's and the cache store's gauges, not call figures
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def test_metrics_from_rollups_equal_the_counters_of_the_same_calls(served: LiveGateway) -> None:
    text = await get(served, "/metrics")
    assert "fareway_ledger_readable 1.0" in text
    counted = Metrics()  # no ledger: counts in memory, as observe() always did
    for call, attempts in RECORDS:
        counted.observe(call, attempts)
    got, want = _samples(text), _samples(counted.render().decode())
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9), k
    assert any(name == "fareway_upstream_latency_seconds_bucket" for name, _ in got)


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    state = tmp_path_factory.mktemp("cli-rollups")

    async def write() -> None:
        ledger = Ledger.open(None, str(state / "fareway.db"), writer="thread")
        await ledger.start()
        for call, attempts in RECORDS:
            ledger.record(call, attempts)
        await ledger.close()

    asyncio.run(write())
    path = state / "fareway.toml"
    path.write_text(f'[server]\nstate_dir = "{state}"\n[ledger]\nkeep_calls_days = 5\n')
    return str(path), state / "fareway.db"


def _raw(db: Path, fn: Any) -> Any:
    async def go() -> Any:
        ledger = Ledger.open(None, str(db), writer="thread")
        await ledger.start()
        try:
            return await fn(ledger.store)
        finally:
            await ledger.close()

    return asyncio.run(go())


def cli(*args: str) -> str:
    cmd = usage_cmd if args[0] == "usage" else ledger_group
    r = CliRunner().invoke(cmd, list(args[1:]), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_cli_usage_stats_and_prune(config_file: tuple[str, Path]) -> None:
    path, db = config_file
    since = NOW - timedelta(days=6, seconds=3.25)
    body = orjson.loads(
        cli("usage", "--by", "provider,model", "--since", _iso(since), "--json", "--config", path)
    )
    raw = _raw(db, lambda store: queries.usage(store, since, None, ["provider", "model"]))
    assert body == orjson.loads(orjson.dumps(data.usage_payload(raw, ["provider", "model"], since, None)))
    everything = _raw(db, lambda store: queries.usage(store))[0]

    stats = orjson.loads(cli("ledger", "stats", "--json", "--config", path))
    assert stats["backend"] == "sqlite" and stats["keep_calls_days"] == 5
    assert stats["rows"]["calls"] == len(RECORDS)
    assert stats["rows"]["attempts"] == sum(len(a) for _, a in RECORDS)
    assert datetime.fromisoformat(stats["oldest_call"]) == min(c.time for c, _ in RECORDS)
    assert stats["size_bytes"] > 0 and stats["pruned_before"] is None
    assert "rollup_calls" in cli("ledger", "stats", "--config", path)

    cut = (NOW - timedelta(days=5)).replace(second=0, microsecond=0)
    out = cli("ledger", "prune", "--config", path)  # keep_calls_days = 5 from the config
    old = sum(1 for c, _ in RECORDS if c.time < cut)
    assert 0 < old < len(RECORDS)
    assert out.startswith(f"pruned {old:,} call(s)")
    stats = orjson.loads(cli("ledger", "stats", "--json", "--config", path))
    assert stats["rows"]["calls"] == len(RECORDS) - old
    assert datetime.fromisoformat(stats["oldest_call"]) >= cut
    # the rollups keep the history: all-time usage unchanged
    body = orjson.loads(cli("usage", "--json", "--config", path))
    assert body["totals"] == data.totals([everything])
    assert "vacuumed" in cli("ledger", "prune", "--keep-days", "5", "--vacuum", "--config", path)


def test_cli_prune_needs_a_retention(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}"\n')
    r = CliRunner().invoke(ledger_group, ["prune", "--config", str(cfg)])
    assert r.exit_code == 2 and "keep_calls_days" in r.output
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path}"\n[ledger]\nkeep_calls_days = "a week"\n')
    r = CliRunner().invoke(ledger_group, ["stats", "--config", str(cfg)])
    assert r.exit_code == 1 and "keep_calls_days must be a number of days" in r.output
