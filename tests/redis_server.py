"""A redis-server of the test's own on a free port, that a test may kill and restart (an outage
mid-test) without touching the shared Redis on 6379."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile

import redis.asyncio as aioredis

from tests.conftest import free_port


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="fareway-redis-")

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        """Start it (again, on the same port, empty) and wait until it answers PING."""
        self._spawn()
        for _ in range(500):
            r = aioredis.Redis.from_url(self.url, socket_connect_timeout=0.2)
            try:
                if await r.ping():
                    return
            except Exception:
                await asyncio.sleep(0.01)
            finally:
                await r.aclose()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """Kill it (SIGKILL: nothing is saved, every connection drops)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            self._dir.cleanup()
