"""``fareway usage`` and ``fareway logs`` through click's CliRunner, reading a ledger written by
the Ledger (no server running)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from fareway.cli_usage import logs_cmd, register, usage_cmd
from fareway.ledger.records import AttemptRecord, CallRecord
from fareway.ledger.writer import Ledger

NOW = datetime.now(UTC)


def _records() -> list[tuple[CallRecord, list[AttemptRecord]]]:
    def mk(rid: str, when: datetime, key: str, provider: str, model: str, cost: str | None) -> CallRecord:
        return CallRecord(
            request_id=rid,
            requested_model=model,
            time=when,
            key_id=key,
            key_name=key.removeprefix("key_"),
            provider=provider,
            upstream_model=model,
            input_tokens=1000,
            output_tokens=100,
            cost=None if cost is None else Decimal(cost),
            latency_ms=800.0,
            ttft_ms=200.0,
            attempts=1,
        )

    old = mk("c1", NOW - timedelta(days=10), "key_alice", "openai", "gpt-4o-mini", "0.25")
    a = mk("c2", NOW - timedelta(hours=2), "key_alice", "openai", "gpt-4o-mini", "0.5")
    b = mk("c3", NOW - timedelta(hours=1), "key_bob", "anthropic", "claude-[bold]x[/bold]", "1.125")
    c = mk("c4", NOW - timedelta(minutes=5), "key_bob", "deepinfra", "mystery", None)
    c.outcome, c.status, c.error = "error", 502, "every attempt failed"
    return [
        (old, [AttemptRecord("c1", 0, "openai", "gpt-4o-mini", cost=Decimal("0.25"), input_tokens=1000)]),
        (a, [AttemptRecord("c2", 0, "openai", "gpt-4o-mini", cost=Decimal("0.5"), input_tokens=1000)]),
        (
            b,
            [
                AttemptRecord("c3", 0, "groq", "llama", outcome="error", status=429, error="rate limited"),
                AttemptRecord(
                    "c3", 1, "anthropic", "claude-[bold]x[/bold]", role="fallback", cost=Decimal("1.125")
                ),
            ],
        ),
        (
            c,
            [
                AttemptRecord(
                    "c4", 0, "deepinfra", "mystery", outcome="error", status=502, error="bad gateway"
                )
            ],
        ),
    ]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    state = tmp_path_factory.mktemp("cli-state")

    async def write() -> None:
        ledger = Ledger.open(None, str(state / "fareway.db"))
        await ledger.start()
        for call, attempts in _records():
            ledger.record(call, attempts)
        await ledger.close()

    asyncio.run(write())
    path = state / "fareway.toml"
    path.write_text(f'[server]\nstate_dir = "{state}"\n')
    return str(path)


def run(cmd: click.Command, *args: str) -> str:
    result = CliRunner().invoke(cmd, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_usage_table_by_provider(config_file: str) -> None:
    out = run(usage_cmd, "--by", "provider", "--since", "7d", "--config", config_file)
    assert "openai" in out and "anthropic" in out and "deepinfra" in out
    assert "1.625" in out  # 0.5 + 1.125, the 10-day-old call is outside the window
    assert "total" in out
    assert "unpriced" in out


def test_usage_json_totals_and_groups(config_file: str) -> None:
    out = run(usage_cmd, "--by", "provider,model", "--since", "7d", "--json", "--config", config_file)
    body = orjson.loads(out)
    assert body["totals"]["calls"] == 3
    assert body["totals"]["cost"] == "1.625"
    assert body["totals"]["unknown_cost_calls"] == 1
    assert body["totals"]["errors"] == 1
    models = {(g["provider"], g["model"]) for g in body["groups"]}
    assert ("anthropic", "claude-[bold]x[/bold]") in models


def test_usage_all_time_and_by_key_csv(config_file: str) -> None:
    out = run(usage_cmd, "--by", "key", "--csv", "--config", config_file)
    rows = {r["key_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == {"key_alice", "key_bob"}
    assert Decimal(rows["key_alice"]["cost"]) == Decimal("0.75")
    assert rows["key_bob"]["unknown_cost_calls"] == "1"


def test_usage_rejects_bad_options(config_file: str) -> None:
    r = CliRunner().invoke(usage_cmd, ["--by", "colour", "--config", config_file])
    assert r.exit_code == 2 and "group_by" in r.output
    r = CliRunner().invoke(usage_cmd, ["--since", "yesterday-ish", "--config", config_file])
    assert r.exit_code == 2 and "since" in r.output
    r = CliRunner().invoke(usage_cmd, ["--json", "--csv", "--config", config_file])
    assert r.exit_code == 2


def test_logs_lists_calls_with_attempts(config_file: str) -> None:
    out = run(logs_cmd, "-n", "2", "--config", config_file)
    lines = out.splitlines()
    assert "c4" in lines[0] and "502" in lines[0] and "unpriced" in lines[0]  # newest first
    assert any("bad gateway" in ln for ln in lines)
    assert any("c3" in ln for ln in lines)
    assert any(ln.strip().startswith("#1 fallback anthropic/claude-[bold]x[/bold]") for ln in lines)
    assert "c2" not in out


def test_logs_json_and_model_filter(config_file: str) -> None:
    body = orjson.loads(run(logs_cmd, "--model", "gpt-4o-mini", "--json", "--config", config_file))
    assert [c["request_id"] for c in body["data"]] == ["c2", "c1"]
    assert body["data"][0]["attempts"][0]["cost"] == "0.5"


def test_no_ledger_yet(tmp_path: Path) -> None:
    cfg = tmp_path / "fareway.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "nothing"}"\n')
    r = CliRunner().invoke(logs_cmd, ["--config", str(cfg)])
    assert r.exit_code == 0 and "no calls recorded yet" in r.output
    assert not (tmp_path / "nothing").exists()  # reading never creates a ledger
    body = orjson.loads(run(usage_cmd, "--json", "--config", str(cfg)))
    assert body["totals"]["calls"] == 0 and body["totals"]["cost"] == "0"


def test_register_adds_both_commands() -> None:
    @click.group()
    def main() -> None:
        pass

    register(main)
    assert set(main.commands) >= {"usage", "logs"}
    out = CliRunner().invoke(main, ["usage", "--help"]).output
    assert "--by" in out and "--since" in out
