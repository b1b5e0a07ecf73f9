"""Configuration: ${ENV} secrets, built-in and custom providers of every dialect, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fareway.config import ConfigError, expand_env, load_config
from tests.conftest import MASTER_KEY, anthropic_client, openai_client, start_gateway


def test_expand_env() -> None:
    env = {"A": "x", "B": "y"}
    assert expand_env("${A}-${B}", env) == "x-y"
    assert expand_env("plain", env) == "plain"
    assert expand_env("${MISSING}", env) is None, "an unset secret is absent, never the literal text"
    assert expand_env("${A}${MISSING}", env) is None


def test_builtin_provider_keys_come_from_env(tmp_path: Path) -> None:
    cfg = load_config(None, env={"GROQ_API_KEY": "g", "CEREBRAS_API_KEY": ""})
    assert cfg.providers["groq"].api_key == "g"
    assert cfg.providers["cerebras"].api_key is None
    assert cfg.keyed_providers() == {"groq"}


def test_config_key_wins_and_base_url_override(tmp_path: Path) -> None:
    f = tmp_path / "f.toml"
    f.write_text('[providers.openai]\nbase_url = "http://127.0.0.1:1/v1"\napi_key = "${MY_KEY}"\n')
    cfg = load_config(f, env={"MY_KEY": "k", "OPENAI_API_KEY": "other"})
    assert cfg.providers["openai"].api_key == "k"
    assert cfg.providers["openai"].spec.base_url == "http://127.0.0.1:1/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[providers.x]\nbase_url = 'http://a'\n", "dialect"),
        ("[providers.x]\ndialect = 'openai'\n", "base_url"),
        ("[providers.x]\ndialect = 'soap'\nbase_url = 'http://a'\n", "dialect"),
        ("[providers.x]\ndialect = 'openai'\nbase_url = 'ftp://a'\n", "base_url"),
        ("[providers]\nx = 3\n", "table"),
        ("not toml [", "not valid TOML"),
        ("[ledger]\nwriter = 'fork'\n", "writer"),
        ("[ledger]\nbatch_size = 0\n", "batch_size"),
        ("[ledger]\nmax_delay = -1\n", "max_delay"),
        ("[ledger]\nwriter_cpus = 1\n", "writer_cpus"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "f.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={})
    assert message in ei.value.message


def test_ledger_settings(tmp_path: Path) -> None:
    f = tmp_path / "f.toml"
    f.write_text('[ledger]\nbatch_size = 64\nmax_delay = 0.2\nwriter = "thread"\n')
    cfg = load_config(f, env={})
    assert (cfg.ledger_batch_size, cfg.ledger_max_delay, cfg.ledger_writer) == (64, 0.2, "thread")
    default = load_config(None, env={})
    assert (default.ledger_batch_size, default.ledger_max_delay, default.ledger_writer) == (
        500,
        0.05,
        "auto",
    )


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


async def test_custom_anthropic_and_gemini_providers_are_config_only(sim: Any, tmp_path: Path) -> None:
    f = tmp_path / "f.toml"
    f.write_text(
        f"""
[server]
state_dir = "{tmp_path / "state"}"

[providers.my-claude]
dialect = "anthropic"
base_url = "{sim.url}/anthropic"
api_key = "${{CLAUDE_PROXY_KEY}}"

[providers.my-gemini]
dialect = "gemini"
base_url = "{sim.url}/gemini/v1beta"
api_key = "${{GEMINI_PROXY_KEY}}"
"""
    )
    cfg = load_config(
        f, env={"CLAUDE_PROXY_KEY": "a", "GEMINI_PROXY_KEY": "b", "FAREWAY_MASTER_KEY": MASTER_KEY}
    )
    assert cfg.providers["my-claude"].spec.auth_header == "x-api-key"
    assert cfg.providers["my-gemini"].spec.auth_header == "x-goog-api-key"
    gw = await start_gateway(dataclasses.replace(cfg))
    try:
        oc = openai_client(gw.url + "/v1")
        for model in ("my-claude/claude-haiku-4-5", "my-gemini/gemini-2.5-flash"):
            raw = await oc.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "echo:custom"}]
            )
            assert raw.parse().choices[0].message.content == "custom"
            assert raw.headers["x-fareway-provider"] == model.split("/")[0]
        ac = anthropic_client(gw.url)
        msg = await ac.messages.create(
            model="my-gemini/gemini-2.5-flash",
            max_tokens=50,
            messages=[{"role": "user", "content": "echo:via gemini"}],
        )
        assert msg.content[0].text == "via gemini"  # type: ignore[union-attr]
    finally:
        await gw.stop()
