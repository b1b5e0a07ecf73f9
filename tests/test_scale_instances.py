"""Two gateway instances on one machine sharing Redis and PostgreSQL (issue 15, part B).

Each instance is a real ``fareway serve`` process with a state directory of its own (nothing on
local disk is shared): keys on PostgreSQL (``[keys] database_url``), the ledger on PostgreSQL,
rate limits and budgets, the response cache and dashboard sessions on Redis, each under a schema
or prefix unique to the test module; the upstream is the simulator. Checked across the two:

* a budget and a rate limit hold when calls alternate between them (no overshoot);
* a cache entry stored by one is a hit on the other;
* a key revoked through one fails on both at the next call;
* a dashboard login on one is valid on the other;
* the ledger is complete: every call answered (admitted or refused) is one row;
* a Redis restart mid-load (a redis-server of the test's own) loses no ledger row.

Expected figures come from the budget and limits set here and from the costs the calls were
billed (``x-fareway-cost-usd``), not from the code under test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis

from tests.conftest import MASTER_KEY, free_port
from tests.test_ledger import PG_URL

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REDIS_URL = "redis://127.0.0.1:6379/0"
MODEL = "groq/llama-3.1-8b-instant"
FAREWAY = [str(Path(sys.executable).parent / "fareway")]


def _skip_without_backends() -> None:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
        with redis.Redis.from_url(REDIS_URL, socket_timeout=2) as r:
            r.ping()
    except Exception as exc:  # unreachable server
        pytest.skip(f"PostgreSQL or Redis on 127.0.0.1 unreachable: {exc}")


def _config(sim_url: str, state_dir: Path, schema: str, prefix: str, redis_url: str) -> str:
    return f"""
[server]
state_dir = "{state_dir}"
drain_seconds = 5

[providers.groq]
base_url = "{sim_url}/groq/v1"
api_key = "sim-key"

[ledger]
url = "{PG_URL}"
schema = "{schema}"
max_delay = 0.02

[keys]
database_url = "{PG_URL}"
schema = "{schema}"
pool_size = 2

[limits]
store = "redis"
redis_url = "{redis_url}"
redis_prefix = "{prefix}limits:"
redis_timeout = 0.5

[cache]
url = "{redis_url}"
prefix = "{prefix}cache:"

[dashboard]
redis_prefix = "{prefix}ui:"
"""


@dataclass
class Instance:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def _start(cfg_text: str, where: Path) -> Instance:
    where.mkdir(parents=True, exist_ok=True)
    cfg = where / "fareway.toml"
    cfg.write_text(cfg_text)
    port = free_port()
    log = where / "serve.log"
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [*FAREWAY, "serve", "--config", str(cfg), "--port", str(port), "--workers", "1"],
            env={**os.environ, "FAREWAY_MASTER_KEY": MASTER_KEY},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return Instance(f"http://127.0.0.1:{port}", proc, log)


async def _ready(*instances: Instance, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as s:
        for inst in instances:
            while True:
                if inst.proc.poll() is not None:
                    raise AssertionError(f"fareway serve exited: {inst.log.read_text()[-3000:]}")
                try:
                    async with s.get(inst.url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, inst.log.read_text()[-3000:]
                await asyncio.sleep(0.1)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def request_id(self) -> str:
        return self.headers["x-request-id"]


async def call(
    s: aiohttp.ClientSession, inst: Instance, key: str, content: str = "Say hi", **headers: str
) -> Answer:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 16}
    async with s.post(
        inst.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}", **headers}
    ) as r:
        return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None))


async def admin(s: aiohttp.ClientSession, inst: Instance, method: str, path: str, body: Any = None) -> Any:
    async with s.request(
        method, inst.url + path, json=body, headers={"authorization": f"Bearer {MASTER_KEY}"}
    ) as r:
        data = await r.json()
        assert r.status < 300, (r.status, data)
        return data


def _cleanup(schema: str, prefix: str, redis_url: str = REDIS_URL) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    try:
        r = redis.Redis.from_url(redis_url, socket_timeout=2)
        keys = list(r.scan_iter(match=f"{prefix}*"))
        if keys:
            r.delete(*keys)
        r.close()
    except redis.RedisError:
        pass


@dataclass
class Pair:
    a: Instance
    b: Instance
    schema: str
    answered: list[str]
    """The request id of every chat call answered by either instance (for the ledger check)."""


@pytest.fixture(scope="module")
async def pair(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    _skip_without_backends()
    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"fw_scale_{tag}", f"fwscale-{tag}:"
    tmp = tmp_path_factory.mktemp("scale")
    a = _start(_config(sim.url, tmp / "a", schema, prefix, REDIS_URL), tmp / "a")
    await _ready(a)  # the first runs the migrations; the second finds them done
    b = _start(_config(sim.url, tmp / "b", schema, prefix, REDIS_URL), tmp / "b")
    try:
        await _ready(b)
        yield Pair(a, b, schema, [])
    finally:
        codes = (a.stop(), b.stop())
        _cleanup(schema, prefix)
    assert codes == (0, 0), (a.log.read_text()[-2000:], b.log.read_text()[-2000:])


async def _new_key(s: aiohttp.ClientSession, inst: Instance, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = await admin(
        s, inst, "POST", "/v1/admin/keys", {"name": f"k-{uuid.uuid4().hex[:8]}", **fields}
    )
    return created


async def test_a_budget_holds_across_both_instances(pair: Pair) -> None:
    async with aiohttp.ClientSession() as s:
        probe = await _new_key(s, pair.a)
        first = await call(s, pair.b, probe["key"])  # a key made on A works on B
        assert first.status == 200, first.body
        pair.answered.append(first.request_id)
        one = Decimal(first.headers["x-fareway-cost-usd"])
        budget = one * Decimal("3.5")
        limited = await _new_key(s, pair.b, budget_total_usd=str(budget))
        spent, refused = Decimal(0), []
        for i in range(10):  # alternating A, B, A, ...
            r = await call(s, (pair.a, pair.b)[i % 2], limited["key"])
            pair.answered.append(r.request_id)
            if r.status == 200:
                spent += Decimal(r.headers["x-fareway-cost-usd"])
            else:
                refused.append(r.status)
    assert spent <= budget, (spent, budget)
    # 3 calls of this cost fit the budget: each instance counting alone would admit up to 3 each
    assert 1 <= 10 - len(refused) <= 3, refused
    assert set(refused) == {402}


async def test_a_rate_limit_holds_across_both_instances(pair: Pair) -> None:
    async with aiohttp.ClientSession() as s:
        key = await _new_key(s, pair.a, rpm=4)
        statuses = []
        for i in range(10):
            r = await call(s, (pair.a, pair.b)[i % 2], key["key"])
            pair.answered.append(r.request_id)
            statuses.append(r.status)
    assert statuses[:4] == [200] * 4 and statuses[4:] == [429] * 6, statuses


async def test_a_cache_entry_stored_by_one_is_a_hit_on_the_other(pair: Pair) -> None:
    text = f"cache me {uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as s:
        first = await call(s, pair.a, MASTER_KEY, text, **{"x-fareway-cache": "use"})
        second = await call(s, pair.b, MASTER_KEY, text, **{"x-fareway-cache": "use"})
        pair.answered += [first.request_id, second.request_id]
    assert first.status == 200 and first.headers["x-fareway-cache"] in ("miss", "stored")
    assert second.status == 200 and second.headers["x-fareway-cache"] == "hit", second.headers
    assert second.headers["x-fareway-cost-usd"] == "0"
    answer = second.body["choices"][0]["message"]["content"]
    assert answer == first.body["choices"][0]["message"]["content"]


async def test_a_key_revoked_on_one_fails_on_both_at_once(pair: Pair) -> None:
    async with aiohttp.ClientSession() as s:
        key = await _new_key(s, pair.a)
        for inst in (pair.a, pair.b, pair.b):  # B has it cached now
            r = await call(s, inst, key["key"])
            assert r.status == 200
            pair.answered.append(r.request_id)
        await admin(s, pair.a, "POST", f"/v1/admin/keys/{key['id']}/revoke")
        on_b = await call(s, pair.b, key["key"])
        on_a = await call(s, pair.a, key["key"])
    assert (on_b.status, on_a.status) == (401, 401), (on_b.body, on_a.body)
    assert "revoked" in on_b.body["error"]["message"]


async def test_a_dashboard_login_on_one_is_valid_on_the_other(pair: Pair) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        async with s.post(pair.a.url + "/ui/login", data={"key": MASTER_KEY}, allow_redirects=False) as r:
            assert r.status == 303
            cookie = r.headers["set-cookie"].split(";")[0]
        async with s.get(pair.b.url + "/ui/api/overview?since=1d", headers={"cookie": cookie}) as r:
            assert r.status == 200, await r.text()
        async with s.get(
            pair.b.url + "/ui/api/overview?since=1d", headers={"cookie": "fareway_ui=forged"}
        ) as r:
            assert r.status == 401
        async with s.post(pair.b.url + "/ui/logout", headers={"cookie": cookie}, allow_redirects=False) as r:
            assert r.status == 303
        async with s.get(pair.a.url + "/ui/api/overview?since=1d", headers={"cookie": cookie}) as r:
            assert r.status == 401  # logged out through B: gone on A too


def _ledger_ids(schema: str) -> list[str]:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(f'SELECT request_id FROM "{schema}".calls').fetchall()
    return [r[0] for r in rows]


async def _until_in_ledger(schema: str, wanted: set[str], within: float = 30.0) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        ids = await asyncio.to_thread(_ledger_ids, schema)
        if wanted <= set(ids) or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.1)


async def test_the_ledger_holds_every_call_of_both_instances_once(pair: Pair) -> None:
    async with aiohttp.ClientSession() as s:
        for i in range(20):
            r = await call(s, (pair.a, pair.b)[i % 2], MASTER_KEY, f"ledger {i}")
            assert r.status == 200
            pair.answered.append(r.request_id)
    wanted = set(pair.answered)
    assert len(wanted) == len(pair.answered)
    ids = await _until_in_ledger(pair.schema, wanted)
    missing = wanted - set(ids)
    assert not missing, f"{len(missing)} of {len(wanted)} calls have no ledger row"
    mine = [i for i in ids if i in wanted]
    assert len(mine) == len(wanted), "a call has more than one row"


# ------------------------------------------------------------------ a Redis restart mid-load


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    cmd = [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    state: dict[str, Any] = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def up() -> None:
        state["proc"] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as r:
                    r.ping()
                return
            except redis.RedisError:
                time.sleep(0.02)
        raise AssertionError("the test's redis-server did not start")

    def down() -> None:
        state["proc"].kill()
        state["proc"].wait(5)

    state["up"], state["down"] = up, down
    up()
    yield state
    if state["proc"].poll() is None:
        down()


async def test_a_redis_restart_mid_load_loses_no_ledger_row(
    sim: Any, tmp_path: Path, own_redis: dict[str, Any]
) -> None:
    _skip_without_backends()
    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"fw_scale_r_{tag}", f"fwscale-r-{tag}:"
    a = _start(_config(sim.url, tmp_path / "a", schema, prefix, own_redis["url"]), tmp_path / "a")
    await _ready(a)
    b = _start(_config(sim.url, tmp_path / "b", schema, prefix, own_redis["url"]), tmp_path / "b")
    answered: list[Answer] = []
    phase = {"n": 0}
    try:
        await _ready(b)
        async with aiohttp.ClientSession() as s:
            key = await _new_key(s, a, rpm=100_000)  # limited: every call goes through the Redis store

            async def load(inst: Instance) -> None:
                i = 0
                while phase["n"] < 3:
                    answered.append(
                        await call(s, inst, key["key"], f"load {i}", **{"x-fareway-cache": "use"})
                    )
                    i += 1

            async def restart() -> None:
                await _calls_grow(answered, 20)
                own_redis["down"]()
                phase["n"] = 1
                await _calls_grow(answered, 20)  # calls answered while Redis is down
                await asyncio.to_thread(own_redis["up"])
                phase["n"] = 2
                await _calls_grow(answered, 20)
                phase["n"] = 3

            await asyncio.gather(load(a), load(b), load(a), restart())
    finally:
        codes = (a.stop(), b.stop())  # a clean stop flushes each ledger
    try:
        statuses = [r.status for r in answered]
        assert codes == (0, 0), (a.log.read_text()[-2000:], b.log.read_text()[-2000:])
        assert 200 in statuses and 503 in statuses, sorted(set(statuses))  # limits fail closed while down
        wanted = {r.request_id for r in answered}
        assert len(wanted) == len(answered)
        ids = await asyncio.to_thread(_ledger_ids, schema)
        assert not wanted - set(ids), f"{len(wanted - set(ids))} of {len(wanted)} calls have no row"
        assert len([i for i in ids if i in wanted]) == len(wanted)
    finally:
        _cleanup(schema, prefix, own_redis["url"])


async def _calls_grow(answered: list[Answer], by: int, within: float = 60.0) -> None:
    """Wait until ``by`` more calls were answered (the load runs meanwhile)."""
    target = len(answered) + by
    deadline = time.monotonic() + within
    while len(answered) < target:
        assert time.monotonic() < deadline, f"only {len(answered)} calls answered"
        await asyncio.sleep(0.01)
