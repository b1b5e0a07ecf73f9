"""A first run that cannot fool its user (issue 16): no silent demo, an unset secret is an error
naming it, simulated answers say so, and an unpriced call says its cost is unknown."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fareway.config import ConfigError, load_config
from tests.conftest import MASTER_KEY, gateway_config, openai_client, start_gateway


def _fareway() -> list[str]:
    exe = Path(sys.executable).parent / "fareway"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fareway.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment with no provider key in it."""
    keys = (
        "OPENAI",
        "ANTHROPIC",
        "GEMINI",
        "GOOGLE",
        "CEREBRAS",
        "GROQ",
        "DEEPINFRA",
        "MISTRAL",
        "XAI",
        "OPENROUTER",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(keys) and k != "FAREWAY_MASTER_KEY"}
    return {**env, **extra}


def test_serve_with_no_provider_key_refuses_to_start_and_says_how(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n')
    out = subprocess.run(
        [*_fareway(), "serve", "--config", str(cfg)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "no provider key is configured" in out.stderr
    assert "OPENAI_API_KEY" in out.stderr and "fareway serve --demo" in out.stderr
    assert "DEMO MODE" not in out.stderr and "Traceback" not in out.stderr


def test_an_unset_secret_is_an_error_naming_the_variable_and_never_starts_the_demo(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp_path / "state"}"\n[providers.openai]\napi_key = "${{OPENAI_API_KEY}}"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert "[providers.openai] api_key" in info.value.message and "${OPENAI_API_KEY}" in info.value.message
    out = subprocess.run(
        [*_fareway(), "serve", "--config", str(cfg)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "${OPENAI_API_KEY}" in out.stderr and "is not set" in out.stderr
    assert "DEMO MODE" not in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('[ledger]\nurl = "postgresql://u:${PGPASS}@h/db"\n', "[ledger] url"),
        ('master_key = "${FW_MASTER}"\n', "master_key"),
        (
            '[providers.local]\ndialect = "openai"\nbase_url = "http://${LOCAL_HOST}/v1"\n',
            "[providers.local] base_url",
        ),
    ],
)
def test_every_secret_reference_is_checked(tmp_path: Path, toml: str, where: str) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    assert where in info.value.message and "is not set" in info.value.message


def test_demo_prints_the_simulator_and_how_to_inject_a_fault(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n')
    proc = subprocess.Popen(
        [*_fareway(), "serve", "--demo", "--config", str(cfg), "--port", "0"],
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = []
        while not any("/_sim/faults" in line for line in lines):  # the last line it prints
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    text = "".join(lines)
    assert "DEMO MODE" in text
    assert "The simulated providers listen on http://127.0.0.1:" in text
    assert "/_sim/faults" in text and '"kind": "429"' in text


async def test_simulated_answers_are_marked(sim: Any, tmp_path: Path) -> None:
    gw = await start_gateway(gateway_config(sim.url, tmp_path))  # demo: every provider is the simulator
    try:
        client = openai_client(f"{gw.url}/v1")
        raw = await client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-fareway-simulated"] == "true"
        stream = await client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert stream.headers["x-fareway-simulated"] == "true"
        async for _ in stream.parse():
            pass
    finally:
        await gw.stop()


async def test_a_real_provider_answer_is_not_marked_and_an_unpriced_call_says_unknown(
    sim: Any, tmp_path: Path
) -> None:
    # a custom OpenAI-compatible provider (here the simulator's OpenAI endpoint) with a model
    # nobody has a price for: Fareway cannot price the call and says so
    cfg_file = tmp_path / "f.toml"
    cfg_file.write_text(
        f'[server]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[providers.local]\ndialect = "openai"\nbase_url = "{sim.url}/openai/v1"\napi_key = "${{LOCAL_KEY}}"\n'
    )
    cfg = load_config(cfg_file, env={"LOCAL_KEY": "sim"})
    gw = await start_gateway(dataclasses.replace(cfg, master_key=MASTER_KEY))
    try:
        client = openai_client(f"{gw.url}/v1")
        raw = await client.chat.completions.with_raw_response.create(
            model="local/house-model-7b", messages=[{"role": "user", "content": "hi"}]
        )
        assert "x-fareway-simulated" not in raw.headers
        assert raw.headers["x-fareway-cost-usd"] == "unknown"
        done = raw.parse()
        assert done.usage is not None and (done.usage.model_extra or {}).get("cost") == "unknown"
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="local/house-model-7b",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
        usage = chunks[-1].usage
        assert usage is not None and (usage.model_extra or {}).get("cost") == "unknown"
    finally:
        await gw.stop()
