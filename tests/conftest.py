"""Shared fixtures: a live simulator and a live Fareway over it, both in the test's event loop.

The gateway is the real ASGI app on a real uvicorn server on a free port, so the official
`openai` and `anthropic` SDKs talk to it over HTTP exactly as users' code does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import uvicorn

from fareway.config import Config, Timeouts, load_config
from fareway.server.app import App
from fareway.server.factory import build_app
from fareway.server.protocol import protocol_class
from fareway.sim.server import SimConfig, start_sim

MASTER_KEY = "test-master-key-0123456789"


_SDK_CLIENTS: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


def openai_client(base_url: str, api_key: str = MASTER_KEY, **kw: Any) -> openai.AsyncOpenAI:
    """The official OpenAI SDK (no retries), closed when the test ends: an SDK client left open
    leaks its pooled sockets (a ResourceWarning at garbage collection)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, **kw)
    _SDK_CLIENTS.append(client)
    return client


def anthropic_client(base_url: str, api_key: str = MASTER_KEY, **kw: Any) -> anthropic.AsyncAnthropic:
    """The official Anthropic SDK (no retries), closed when the test ends (see openai_client)."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0, **kw)
    _SDK_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_sdk_clients() -> AsyncIterator[None]:
    yield
    while _SDK_CLIENTS:
        await _SDK_CLIENTS.pop().close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveGateway:
    url: str
    app: App
    config: Config
    server: uvicorn.Server
    task: asyncio.Task[Any]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_gateway(config: Config, *, fareway_protocol: bool = True) -> LiveGateway:
    """The app on uvicorn with Fareway's HTTP protocol (server.protocol), as ``fareway serve``
    runs it; ``fareway_protocol=False``: on uvicorn's own, where the app watches for a client
    going away with a task of its own."""
    app = build_app(config)
    port = free_port()
    extra: dict[str, Any] = {}
    if fareway_protocol:
        extra["http"] = protocol_class(config.limits, 10_000)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", access_log=False, **extra
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return LiveGateway(f"http://127.0.0.1:{port}", app, config, server, task)


def gateway_config(sim_url: str, state_dir: Path, **changes: Any) -> Config:
    cfg = load_config(None, env={}).with_demo(sim_url)
    cfg = dataclasses.replace(
        cfg,
        master_key=MASTER_KEY,
        state_dir=state_dir,
        timeouts=Timeouts(connect=2.0, first_token=1.5, idle=1.5, total=30.0),
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="session")
async def sim() -> AsyncIterator[Any]:
    handle = await start_sim("127.0.0.1", 0, SimConfig.default())
    yield handle
    await handle.stop()


@pytest.fixture(scope="session")
async def gateway(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveGateway]:
    gw = await start_gateway(gateway_config(sim.url, tmp_path_factory.mktemp("state")))
    yield gw
    await gw.stop()


@pytest.fixture
async def sim_control(sim: Any) -> AsyncIterator[Any]:
    """Arm faults on the simulator; everything armed is cleared after the test."""

    class Control:
        def __init__(self, session: aiohttp.ClientSession) -> None:
            self.session = session

        async def fault(self, **spec: Any) -> None:
            async with self.session.post(f"{sim.url}/_sim/faults", json=spec) as r:
                assert r.status in (200, 201, 204), await r.text()

        async def stats(self) -> dict[str, Any]:
            async with self.session.get(f"{sim.url}/_sim/stats") as r:
                data: dict[str, Any] = await r.json()
                return data

        async def clear(self) -> None:
            async with self.session.delete(f"{sim.url}/_sim/faults") as r:
                assert r.status in (200, 204)

    async with aiohttp.ClientSession() as s:
        c = Control(s)
        await c.clear()
        yield c
        await c.clear()
