"""Dashboard sessions in Redis: what Redis holds (a digest of the session id as the key, the
digest of the admin key as the value: never the key, never the cookie), expiry with the session,
and failing closed when Redis is unreachable (nobody signed in, a login answers 503)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from fareway.dashboard.sessions import RedisSessionStore, SessionsUnavailable
from fareway.dashboard.settings import DashboardSettings
from fareway.keys.records import MASTER
from fareway.keys.store import hash_key
from tests.conftest import MASTER_KEY, free_port, gateway_config, start_gateway

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.mark.redis
async def test_redis_holds_digests_only_and_the_session_expires_with_its_ttl() -> None:
    prefix = f"fwui-{uuid.uuid4().hex[:8]}:"
    store = RedisSessionStore(REDIS_URL, prefix=prefix, ttl=600)
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        s = await store.create(MASTER, MASTER_KEY)
        keys = [k.decode() async for k in r.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 1 and s.sid not in keys[0]
        raw = (await r.get(keys[0])).decode()
        assert MASTER_KEY not in raw and s.sid not in raw
        assert json.loads(raw)["digest"] == hash_key(MASTER_KEY)
        assert 590 <= await r.ttl(keys[0]) <= 600
        other = RedisSessionStore(REDIS_URL, prefix=prefix, ttl=600)  # another instance
        got = await other.get(s.sid)
        assert got is not None and got.digest == hash_key(MASTER_KEY)
        await other.drop(s.sid)
        assert await store.get(s.sid) is None
        await other.close()
    finally:
        await store.close()
        async for k in r.scan_iter(match=f"{prefix}*"):
            await r.delete(k)
        await r.aclose()


async def test_an_unreachable_redis_signs_nobody_in() -> None:
    store = RedisSessionStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        with pytest.raises(SessionsUnavailable) as err:
            await store.create(MASTER, MASTER_KEY)
        assert err.value.status == 503
        assert await store.get("any-session-id") is None
    finally:
        await store.close()


async def test_a_login_while_the_session_store_is_down_is_a_503(sim: Any, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cfg = dataclasses.replace(
        gateway_config(sim.url, tmp_path), dashboard=DashboardSettings(sessions="redis", redis_url=dead)
    )
    gw = await start_gateway(cfg)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/ui/login", data={"key": MASTER_KEY}, allow_redirects=False) as r:
                assert r.status == 503
                assert "session store is unavailable" in await r.text()
            async with s.get(gw.url + "/ui") as r:  # the login page, not the dashboard
                assert r.status == 200 and 'name="key"' in await r.text()
    finally:
        await gw.stop()
