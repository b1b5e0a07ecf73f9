"""One state location (issue 16, item 3): the CLI and the server agree on it from any working
directory — a key made by `fareway keys create` in one folder is accepted by a gateway started in
another."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fareway.config import load_config
from fareway.config_state import default_state_dir

CLI = [sys.executable, "-c", "from fareway.cli import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAREWAY_", "OPENAI_", "ANTHROPIC_"))}
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str, key: str) -> int:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@contextmanager
def _serve(args: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "serve", "--port", str(port), *args], cwd=cwd, env=env, stderr=out)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)  # polling for start-up, not a timing assertion
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _create_key(cwd: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    r = subprocess.run(
        [*CLI, "keys", "create", "--name", "app", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[0], r.stderr


def test_relative_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    cfg = conf / "gw.toml"
    cfg.write_text('[server]\nstate_dir = "state"\n')
    env = _env(OPENAI_API_KEY="sk-test-not-used")
    secret, err = _create_key(a, env, "--config", str(cfg))
    assert f"state: {conf / 'state'}" in err
    port = _free_port()
    log = tmp_path / "serve.log"
    with _serve(["--config", str(cfg)], b, env, port, log) as base:
        assert _status(f"{base}/v1/models", secret) == 200
        assert _status(f"{base}/v1/models", "fw-not-a-key") == 401
    assert f"state: {conf / 'state'}" in log.read_text()
    assert not (a / "state").exists() and not (b / "state").exists()
    assert not (a / "fareway-data").exists() and not (b / "fareway-data").exists()


def test_fareway_home_is_shared_by_cli_and_server(tmp_path: Path) -> None:
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    home = tmp_path / "home"
    env = _env(OPENAI_API_KEY="sk-test-not-used", FAREWAY_HOME=str(home))
    secret, err = _create_key(a, env)
    assert f"state: {home}  (from $FAREWAY_HOME)" in err
    assert (home / "state.db").exists()
    port = _free_port()
    with _serve([], b, env, port, tmp_path / "serve.log") as base:
        assert _status(f"{base}/v1/models", secret) == 200
    listed = subprocess.run([*CLI, "keys", "list"], cwd=b, env=env, capture_output=True, text=True)
    assert "app" in listed.stdout


def test_state_dir_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[server]\nstate_dir = "/srv/fw"\n')
    assert load_config(cfg, env={"FAREWAY_HOME": "/elsewhere"}).state_dir == Path("/srv/fw")
    assert load_config(None, env={"FAREWAY_HOME": "/home/x/fw"}).state_dir == Path("/home/x/fw")
    legacy = load_config(None, env={"FAREWAY_STATE_DIR": "/old/name"})
    assert legacy.state_dir == Path("/old/name") and legacy.state_source == "$FAREWAY_STATE_DIR"
    # no setting: the per-user data directory, the same from any working directory
    default = load_config(None, env={}).state_dir
    assert default == default_state_dir() and default.is_absolute()
    assert default.parts[-1] == "fareway"


def test_the_default_per_user_directory_is_shared_from_any_working_directory(tmp_path: Path) -> None:
    # no FAREWAY_HOME, no config: the per-user data directory (XDG_DATA_HOME here, so the test
    # does not write to the real one), whichever folder the CLI and the server start in
    (a := tmp_path / "a").mkdir()
    (b := tmp_path / "b").mkdir()
    xdg = tmp_path / "xdg"
    env = _env(OPENAI_API_KEY="sk-test-not-used", XDG_DATA_HOME=str(xdg))
    secret, err = _create_key(a, env)
    assert f"state: {xdg / 'fareway'}" in err
    with _serve([], b, env, _free_port(), tmp_path / "serve.log") as base:
        assert _status(f"{base}/v1/models", secret) == 200
    assert (xdg / "fareway" / "state.db").exists()
    assert not list(a.iterdir()) and not list(b.iterdir())  # nothing written where they started
