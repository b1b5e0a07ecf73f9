"""Strict config (issue 16, item 1): every unknown key and wrong type fails naming the file and the
key, with a suggestion; aliases are checked at load; `fareway config check` and `fareway init`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fareway.cli import main
from fareway.config import ConfigError, load_config
from fareway.config_schema import SECTIONS, Section

REPO = Path(__file__).resolve().parent.parent


def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    f = tmp_path / "gw.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f, env=env or {})
    assert str(f) in info.value.message  # the file is named
    return info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sever]\nport = 1\n", 'unknown section or key "sever"; did you mean "server"?'),
        ("[server]\nprot = 8080\n", '[server] has an unknown key "prot"; did you mean "port"?'),
        (
            '[providers.openai]\napi_kee = "x"\n',
            '[providers.openai] has an unknown key "api_kee"; did you mean "api_key"?',
        ),
        ("[timeouts]\nconect = 1\n", '[timeouts] has an unknown key "conect"; did you mean "connect"?'),
        ("[ledger]\nbatchsize = 10\n", '[ledger] has an unknown key "batchsize"; did you mean "batch_size"?'),
        ("[ledger]\nkeep_call_days = 3\n", 'did you mean "keep_calls_days"?'),
        ("[cache]\nttll = 3\n", '[cache] has an unknown key "ttll"; did you mean "ttl"?'),
        ("[defaults]\nmax_token = 3\n", 'did you mean "max_tokens"?'),
        ('[aliases.fast]\nstrategy = "race"\ntarget = ["groq/x"]\n', 'did you mean "targets"?'),
        ("[prices]\nopenai = 3\n", "[prices.openai] must be a table"),
        ('master_kee = "x"\n', 'did you mean "master_key"?'),
        ("port = 8080\n", 'unknown section or key "port"; did you mean [server] port?'),
    ],
)
def test_unknown_keys_anywhere_are_named_with_a_suggestion(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[server]\nport = "abc"\n', "[server] port must be an integer, not 'abc'"),
        ("[server]\nport = 70000\n", "[server] port must be at most 65535"),
        ("[server]\nhost = 5\n", "[server] host must be a string"),
        ('[timeouts]\ntotal = "long"\n', "[timeouts] total must be a number"),
        ('[timeouts]\nstream_upstream = "yes"\n', "[timeouts] stream_upstream must be true or false"),
        ('[defaults]\nmax_tokens = "many"\n', "[defaults] max_tokens must be an integer"),
        ('[ledger]\nbatch_size = "10"\n', "[ledger] batch_size must be an integer"),
        ('[ledger]\nenabled = "no"\n', "[ledger] enabled must be true or false"),
        ('[ledger]\nwriter = "proces"\n', 'did you mean "process"?'),
        ("[providers.openai]\napi_key = 12\n", "[providers.openai] api_key must be a string"),
        ('[providers.x]\ndialect = "opnai"\nbase_url = "http://h"\n', 'did you mean "openai"?'),
        ('[cache]\nttl = "1h"\n', "ttl must be an integer"),
        ("master_key = 5\n", "master_key must be a string"),
        ("server = 5\n", "[server] must be a table"),
    ],
)
def test_wrong_types_are_clean_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        (
            'fast = { strategy = "fallbak", targets = ["groq/x"] }',
            'unknown strategy "fallbak"; did you mean "fallback"?',
        ),
        ('fast = { targets = ["grok/llama"] }', 'unknown provider "grok"; did you mean "groq"?'),
        ('fast = "gpt-4o-mini"', 'must be "provider/model"; did you mean "openai/gpt-4o-mini"?'),
        ('fast = { strategy = "race" }', "needs targets"),
        ('fast = { strategy = "split", targets = ["openai/a", "groq/b"], weights = [1] }', "weights"),
        ('fast = { strategy = "hedge", targets = ["openai/a"], hedge_ms = "soon" }', "hedge_ms"),
        ("fast = 3", "[aliases] fast must be"),
    ],
)
def test_aliases_fail_at_load(tmp_path: Path, alias: str, expected: str) -> None:
    assert expected in _error(tmp_path, f"[aliases]\n{alias}\n")


def test_alias_on_a_declared_provider_loads(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(
        '[providers.local]\ndialect = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "k"\n'
        '[aliases]\nmine = { strategy = "fallback", targets = ["local/any-model", "openai/gpt-4o-mini"] }\n'
    )
    assert load_config(f, env={}).aliases["mine"]["targets"][0] == "local/any-model"


def test_a_new_section_joins_the_registry_with_one_line(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text("[widgets.ab]\nvariants = 2\n")
    with pytest.raises(ConfigError, match="widgets"):
        load_config(f, env={})
    SECTIONS["widgets"] = Section(named=True, entry_keys={"variants"})
    try:
        load_config(f, env={})
        f.write_text("[widgets.ab]\nvariant = 2\n")
        with pytest.raises(ConfigError, match='did you mean "variants"'):
            load_config(f, env={})
    finally:
        del SECTIONS["widgets"]


def test_a_misspelt_experiment_key_gets_a_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text('[experiments.ab]\nmodel = "m"\ncontrl = "openai/gpt-4o"\n')
    with pytest.raises(ConfigError, match='did you mean "control"'):
        load_config(f, env={})


def test_bad_price_table_is_a_config_error(tmp_path: Path) -> None:
    from fareway.server.factory import check_config

    f = tmp_path / "gw.toml"
    f.write_text('[prices.openai]\n"gpt-4o-mini" = { inptu = 1.0, output = 2.0 }\n')
    with pytest.raises(ConfigError, match="inptu"):
        check_config(load_config(f, env={}))


# ------------------------------------------------------------------------ CLI


def test_config_check_prints_resolved_config_with_secrets_masked(tmp_path: Path) -> None:
    secret = "sk-live-abcdefghijklmnop"
    f = tmp_path / "gw.toml"
    f.write_text(
        'master_key = "${MK}"\n[providers.openai]\napi_key = "${OPENAI_API_KEY}"\n'
        '[ledger]\nurl = "postgresql://u:${PGPW}@db:5432/x"\n'
    )
    r = CliRunner(env={"OPENAI_API_KEY": secret, "MK": "master-secret-1", "PGPW": "pw-secret-2"}).invoke(
        main, ["config", "check", str(f)]
    )
    assert r.exit_code == 0, r.output
    assert secret not in r.output and "master-secret-1" not in r.output and "pw-secret-2" not in r.output
    assert "[redacted key " in r.stdout and "port = 8080" in r.stdout
    assert "state:" in r.stderr


def test_config_check_error_is_one_line_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text('[server]\nport = "abc"\n')
    r = CliRunner().invoke(main, ["config", "check", str(f)])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"error: {f}: [server] port must be an integer, not 'abc'"]
    assert "Traceback" not in r.output


def test_example_config_passes_check() -> None:
    example = REPO / "fareway.example.toml"
    r = CliRunner(env={}).invoke(main, ["config", "check", str(example)])
    assert r.exit_code == 0, r.output
    # every registered section and every key of the plain ones is documented in the example
    text = example.read_text()
    for name, section in SECTIONS.items():
        assert f"[{name}" in text, name
        for key in section.keys or ():
            assert f"{key} =" in text or f"[{name}.{key}]" in text, f"[{name}] {key}"


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "fareway.toml"
    runner = CliRunner()
    r = runner.invoke(main, ["init", str(target)])
    assert r.exit_code == 0, r.output
    assert target.read_text() == (REPO / "fareway.example.toml").read_text()
    target.write_text("# mine\n")
    r = runner.invoke(main, ["init", str(target)])
    assert r.exit_code == 2 and "--force" in r.stderr and target.read_text() == "# mine\n"
    r = runner.invoke(main, ["init", str(target), "--force"])
    assert r.exit_code == 0 and target.read_text().startswith("# Fareway configuration")


@pytest.mark.parametrize(
    "args",
    [
        ["usage", "--config", "{bad}"],
        ["logs", "--config", "{bad}"],
        ["keys", "list", "--config", "{bad}"],
        ["providers", "--config", "{bad}"],
        ["models", "--config", "{bad}"],
        ["route", "explain", "--config", "{bad}"],
        ["config", "check", "{missing}"],
        ["route", "explain", "-m", "no-such-model-xyz", "--config", "{good}"],
        ["keys", "revoke", "nobody", "--config", "{good}"],
    ],
)
def test_cli_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    good = tmp_path / "good.toml"
    good.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n')
    argv = [a.format(bad=bad, good=good, missing=tmp_path / "missing.toml") for a in args]
    r = CliRunner(env={"OPENAI_API_KEY": "sk-test"}).invoke(main, argv)
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("state:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output


def test_models_explains_when_nothing_is_routable(tmp_path: Path) -> None:
    r = CliRunner(env={"FAREWAY_HOME": str(tmp_path)}).invoke(main, ["models"], env={})
    assert r.exit_code == 0
    assert r.stdout == ""
    assert "no model is routable" in r.stderr and "OPENAI_API_KEY" in r.stderr
