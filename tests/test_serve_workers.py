"""``fareway serve --workers N``: the count (the usable cores, not the machine's), the refusal of
per-worker limits, and a live supervisor with two workers on one port: every call answered, the
default SQLite ledger written by both holding each call once, a call in flight when SIGTERM
comes finishing before a clean exit (0)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import redis
from click.testing import CliRunner

from fareway.cli import main
from fareway.server import workers
from tests.conftest import free_port

FAREWAY = str(Path(sys.executable).parent / "fareway")


def test_usable_cores_follow_the_affinity_mask_not_the_machine() -> None:
    code = "from fareway.server.workers import usable_cores; print(usable_cores())"
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True
    )
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "1"
    assert workers.usable_cores() == len(os.sched_getaffinity(0))


def _config(tmp: Path, store: str, prefix: str = "") -> Path:
    cfg = tmp / "fareway.toml"
    cfg.write_text(
        f'[server]\nstate_dir = "{tmp / "state"}"\n'
        f'[limits]\nstore = "{store}"\nredis_prefix = "{prefix or "fwworkers:"}"\n'
    )
    return cfg


def test_several_workers_with_in_memory_limits_are_refused(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["serve", "--demo", "--workers", "2", "--config", str(_config(tmp_path, "memory"))]
    )
    assert r.exit_code != 0
    assert '--workers 2: [limits] store is "memory"' in r.output
    assert 'Set [limits] store = "redis"' in r.output


def test_the_default_is_one_worker_with_in_memory_limits_and_the_cores_with_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fareway.cli import _worker_count
    from fareway.config import load_config

    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    assert _worker_count(load_config(_config(tmp_path, "memory")), None) == 1
    assert _worker_count(load_config(_config(tmp_path, "redis")), None) == 2
    assert _worker_count(load_config(_config(tmp_path, "redis")), 3) == 3


def _worker_pids(supervisor: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == supervisor:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"spawn_main" in cmd:  # not the resource tracker
                    out.append(int(entry))
    return out


def _serve(tmp_path: Path, port: int, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [
                FAREWAY,
                "serve",
                "--demo",
                "--workers",
                "2",
                "--port",
                str(port),
                "--config",
                str(_config(tmp_path, "redis", prefix)),
            ],
            env={k: v for k, v in os.environ.items() if k != "FAREWAY_MASTER_KEY"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


@pytest.mark.redis
async def test_two_workers_serve_one_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    try:
        with redis.Redis(socket_timeout=2) as r:
            r.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis on 127.0.0.1 unreachable: {exc}")
    prefix = f"fwworkers-{uuid.uuid4().hex[:8]}:"
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _serve(tmp_path, port, prefix, log)
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": "Bearer demo"}
    body = {"model": "groq/llama-3.1-8b-instant", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    async with s.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            assert len(_worker_pids(proc.pid)) == 2

            async def one() -> int:
                async with aiohttp.ClientSession() as own:  # a connection of its own: any worker
                    async with own.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                        await r.read()
                        return r.status

            statuses = await asyncio.gather(*(one() for _ in range(20)))
            assert statuses == [200] * 20
            # a stream in flight when SIGTERM comes is finished, then every process exits 0
            async with s.post(
                url + "/v1/chat/completions",
                json={**body, "stream": True, "max_tokens": 200},
                headers=headers,
            ) as r:
                assert r.status == 200
                first = await r.content.readline()
                assert first.startswith(b"data: ")
                proc.send_signal(signal.SIGTERM)
                rest = await r.content.read()
            assert rest.rstrip().endswith(b"data: [DONE]"), rest[-300:]
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        with redis.Redis(socket_timeout=2) as r:
            keys = list(r.scan_iter(match=f"{prefix}*"))
            if keys:
                r.delete(*keys)
    text = log.read_text()
    assert "2 workers" in text and "Traceback" not in text, text
    with sqlite3.connect(tmp_path / "state" / "fareway.db") as db:  # both workers wrote the SQLite ledger
        rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM calls").fetchone()
    assert rows == (21, 21)


def test_workers_from_the_config_file_are_refused_naming_the_file(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "memory")
    text = cfg.read_text().replace("[server]\n", "[server]\nworkers = 2\n")
    cfg.write_text(text)
    r = CliRunner().invoke(main, ["serve", "--demo", "--config", str(cfg)])
    assert r.exit_code != 0
    assert f"{cfg}: [server] workers = 2: [limits] store is" in r.output
