"""What each Redis-backed feature does when its Redis dies mid-test and comes back (empty): a
redis-server of the test's own (tests/redis_server.py), killed with SIGKILL and restarted on the
same port; a live gateway over the simulator throughout.  The table is docs/shared-state.md.

* budgets and rate limits (``[limits] store = "redis"``): closed by default (a budgeted call gets
  a 503 ``limits_unavailable``), open with ``on_store_error = "admit"``; served again once back;
* the response cache (``[cache] url``): open (a hit becomes a miss, every call is answered), and
  it stores and hits again once back;
* provider health (``[shared] health = "redis"``): open (routing on the gateway's own view);
* experiments (``[shared] experiments = "redis"``): open (assigned and served; counted in memory
  and added to Redis when it is back).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from redis.exceptions import RedisError

from fareway.cache.settings import CacheSettings
from fareway.config import Config
from fareway.experiments.manager import ExperimentManager
from fareway.experiments.settings import parse
from fareway.keys.settings import KeySettings
from fareway.limits.settings import LimitSettings
from fareway.router.shared_health import SharedStats
from fareway.router.shared_settings import SharedSettings
from tests.conftest import MASTER_KEY, LiveGateway, gateway_config, start_gateway
from tests.redis_server import OwnRedis

pytestmark = pytest.mark.redis
MODEL = "groq/llama-3.1-8b-instant"


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    r = OwnRedis()
    await r.start()
    yield r
    r.stop()


async def call(
    gw: LiveGateway, key: str = MASTER_KEY, content: str = "echo:hi", **headers: str
) -> tuple[int, dict[str, str], Any]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 16}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gw.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {key}", **headers},
        ) as r,
    ):
        return r.status, dict(r.headers), await r.json()


async def budget_key(gw: LiveGateway) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gw.url + "/v1/admin/keys",
            json={"name": f"b-{uuid.uuid4().hex[:6]}", "budget_daily_usd": "100"},
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        ) as r,
    ):
        assert r.status < 300, await r.text()
        return str((await r.json())["key"])


def limits_config(sim: Any, tmp: Path, url: str, **limits: Any) -> Config:
    return dataclasses.replace(
        gateway_config(sim.url, tmp),
        key_settings=KeySettings(vault_key=Fernet.generate_key().decode()),
        limit_settings=LimitSettings(store="redis", redis_url=url, redis_timeout=0.3, **limits),
    )


async def test_budgets_fail_closed_by_default_and_serve_again_after_a_redis_restart(
    sim: Any, tmp_path: Path, own_redis: OwnRedis
) -> None:
    gw = await start_gateway(limits_config(sim, tmp_path, own_redis.url))
    try:
        key = await budget_key(gw)
        assert (await call(gw, key))[0] == 200
        own_redis.kill()
        status, _, body = await call(gw, key)
        assert status == 503 and body["error"]["code"] == "limits_unavailable", body
        assert (await call(gw))[0] == 200  # a key without limits does not need the store
        await own_redis.start()
        assert (await call(gw, key))[0] == 200
    finally:
        await gw.stop()


async def test_budgets_fail_open_with_on_store_error_admit(
    sim: Any, tmp_path: Path, own_redis: OwnRedis
) -> None:
    gw = await start_gateway(limits_config(sim, tmp_path, own_redis.url, on_store_error="admit"))
    try:
        key = await budget_key(gw)
        own_redis.kill()
        assert (await call(gw, key))[0] == 200
        await own_redis.start()
        assert (await call(gw, key))[0] == 200
    finally:
        await gw.stop()


async def test_the_cache_fails_open_and_hits_again_after_a_redis_restart(
    sim: Any, tmp_path: Path, own_redis: OwnRedis
) -> None:
    cfg = dataclasses.replace(
        gateway_config(sim.url, tmp_path),
        cache=CacheSettings(url=own_redis.url, prefix="fwtest:", timeout=0.3),
    )
    gw = await start_gateway(cfg)
    use = {"x-fareway-cache": "use"}
    try:
        first = f"echo:harbors {uuid.uuid4().hex[:6]}"
        got = [(await call(gw, content=first, **use))[1]["x-fareway-cache"] for _ in range(2)]
        assert got == ["stored", "hit"]
        own_redis.kill()
        status, headers, _ = await call(gw, content=first, **use)
        assert (status, headers["x-fareway-cache"]) == (200, "miss")
        await own_redis.start()  # back, empty: the entry is gone, a new one is stored and hit
        # the store rests a moment after a failure (RedisStore.down_for) before it tries again
        for _ in range(300):
            headers = (await call(gw, content=first, **use))[1]
            if headers["x-fareway-cache"] != "miss":
                break
            await asyncio.sleep(0.01)
        assert headers["x-fareway-cache"] == "stored"
        assert (await call(gw, content=first, **use))[1]["x-fareway-cache"] == "hit"
    finally:
        await gw.stop()


async def test_health_and_experiments_fail_open_and_catch_up_after_a_redis_restart(
    sim: Any, tmp_path: Path, own_redis: OwnRedis
) -> None:
    exp = parse(
        "ab",
        {
            "model": "support",
            "mode": "split",
            "split": 0.5,
            "control": "openai/gpt-4o",
            "challenger": "groq/llama-3.3-70b-versatile",
            "judge": "anthropic/claude-sonnet-4-5",
            "sample": 0.0,
        },
    )
    shared = SharedSettings(
        health="redis",
        experiments="redis",
        redis_url=own_redis.url,
        prefix="fwtest:",
        sync_interval=0.1,
        timeout=0.3,
    )
    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path, experiments={"ab": exp}), shared=shared)
    gw = await start_gateway(cfg)
    mgr = gw.app.gateway.parts["experiments"]
    stats = gw.app.gateway.stats
    assert isinstance(mgr, ExperimentManager) and isinstance(stats, SharedStats)

    async def support(n: int) -> None:
        async with aiohttp.ClientSession() as s:
            for i in range(n):
                body = {"model": "support", "user": f"u{i}", "messages": [{"role": "user", "content": "hi"}]}
                async with s.post(
                    gw.url + "/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {MASTER_KEY}"},
                ) as r:
                    assert r.status == 200, await r.text()

    try:
        await support(4)
        await mgr.share()
        own_redis.kill()
        await support(6)  # assigned and served with Redis down
        with pytest.raises((RedisError, OSError)):
            await mgr.share()
        c = mgr.experiments["ab"].counters
        assert c["calls_control"] + c["calls_challenger"] == 10  # counted in memory
        # health: this gateway's own view answers; a cooldown it learns holds locally
        stats.cool_down("openai/gpt-4o-mini", 60, "test")
        assert not stats.available("openai/gpt-4o-mini")
        for _ in range(300):
            if not stats.connected:
                break
            await asyncio.sleep(0.01)
        assert not stats.connected
        await own_redis.start()  # back, empty
        await mgr.share()  # the hash is seeded with this gateway's totals, nothing is lost
        c = mgr.experiments["ab"].counters
        assert c["calls_control"] + c["calls_challenger"] == 10
        # the cooldown learned during the outage is written once Redis answers
        r = aioredis.Redis.from_url(own_redis.url)
        try:
            for _ in range(300):
                if await r.hget("fwtest:{health}:info", "cool|openai/gpt-4o-mini"):
                    break
                await asyncio.sleep(0.01)
            info = await r.hget("fwtest:{health}:info", "cool|openai/gpt-4o-mini")
        finally:
            await r.aclose()
        assert info is not None and b"cooling down: test" in info
        assert stats.connected
    finally:
        await gw.stop()


async def test_a_gateway_whose_redis_is_not_there_at_start_serves(sim: Any, tmp_path: Path) -> None:
    from tests.conftest import free_port

    shared = SharedSettings(
        health="redis",
        experiments="redis",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        sync_interval=0.1,
        timeout=0.2,
    )
    exp = parse(
        "ab",
        {
            "model": "support",
            "control": "openai/gpt-4o",
            "challenger": "groq/llama-3.3-70b-versatile",
            "judge": "anthropic/claude-sonnet-4-5",
            "sample": 0.0,
        },
    )
    cfg = dataclasses.replace(gateway_config(sim.url, tmp_path, experiments={"ab": exp}), shared=shared)
    gw = await start_gateway(cfg)
    try:
        stats = gw.app.gateway.stats
        assert isinstance(stats, SharedStats) and not stats.connected
        for _ in range(3):
            assert (await call(gw))[0] == 200
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                gw.url + "/v1/chat/completions",
                json={"model": "support", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {MASTER_KEY}"},
            ) as r,
        ):
            assert r.status == 200
        mgr = gw.app.gateway.parts["experiments"]
        assert isinstance(mgr, ExperimentManager)
        assert mgr.experiments["ab"].counters["calls_control"] == 1
    finally:
        await gw.stop()
