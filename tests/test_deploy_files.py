"""The container files (issue 16, item 7): the Dockerfile's contract and the compose deployment's
config.  Building the image needs a container runtime; these check what can be checked without."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from fareway.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    health = next(i for i, ln in enumerate(lines) if ln.startswith("HEALTHCHECK"))
    assert "/healthz" in " ".join(lines[health : health + 2])
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    # everything `pip install .` reads is copied into the image
    copied = " ".join(ln for ln in lines if ln.startswith("COPY"))
    for needed in ("pyproject.toml", "README.md", "fareway.example.toml", "src"):
        assert needed in copied


def test_compose_runs_gateway_postgres_and_redis() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"gateway", "postgres", "redis"}
    gateway = services["gateway"]
    assert gateway["build"] == "."
    assert set(gateway["depends_on"]) == {"postgres", "redis"}
    mounted = {v.split(":")[0] for v in gateway["volumes"]}
    assert "./deploy/fareway.compose.toml" in mounted
    assert (REPO / "deploy" / "fareway.compose.toml").exists()


def test_compose_config_passes_check() -> None:
    url = "postgresql://fareway:pw-for-the-test@postgres:5432/fareway"
    r = CliRunner(env={"FAREWAY_LEDGER_URL": url}).invoke(
        main, ["config", "check", str(REPO / "deploy" / "fareway.compose.toml")]
    )
    assert r.exit_code == 0, r.output
    assert 'url = "redis://redis:6379/0"' in r.stdout
    assert "pw-for-the-test" not in r.output and "postgres:5432/fareway" in r.stdout


def test_compose_config_shares_keys_limits_and_sessions() -> None:
    url = "postgresql://fareway:pw-for-the-test@postgres:5432/fareway"
    r = CliRunner(env={"FAREWAY_LEDGER_URL": url}).invoke(
        main, ["config", "check", str(REPO / "deploy" / "fareway.compose.toml")]
    )
    assert r.exit_code == 0, r.output
    out = r.stdout
    keys = out[out.index("[keys]") :]
    assert 'database_url = "postgresql://fareway:' in keys and "pw-for-the-test" not in out
    dashboard = out[out.index("[dashboard]") :]
    assert 'sessions = "redis"' in dashboard and 'redis_url = "redis://redis:6379/0"' in dashboard


def test_compose_gives_the_gateway_time_to_drain() -> None:
    from fareway.config import ServerLimits

    gateway = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["gateway"]
    grace = gateway["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) >= ServerLimits().drain_seconds + 2 + 5 + 15
