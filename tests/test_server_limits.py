"""The [server] limits: header and body deadlines, header count and size (431), the connection cap,
the cap on upstream response size, and the bounded drain on SIGTERM with exit code 0.

The in-process tests run the gateway on the same server `fareway serve` uses (FarewayServer with
the limited httptools protocol) on a free port; the drain test runs a real `fareway serve`
subprocess in demo mode."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from fareway.config import ConfigError, ServerLimits, load_config
from fareway.server.factory import build_app
from fareway.server.serving import FarewayServer, build_server
from fareway.sim.profiles import Dist, Profile, SimConfig
from fareway.sim.server import start_sim
from tests.conftest import MASTER_KEY, free_port, gateway_config

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


_WRITERS: list[asyncio.StreamWriter] = []


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client socket to the gateway, closed when the test ends (however it ended)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    _WRITERS.append(w)
    return r, w


@pytest.fixture(autouse=True)
async def _close_raw_sockets() -> AsyncIterator[None]:
    yield
    while _WRITERS:
        w = _WRITERS.pop()
        w.close()
        with contextlib.suppress(Exception):
            await w.wait_closed()


def chat_body(model: str = "openai/gpt-4o-mini", *, stream: bool = False, text: str = "hi") -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], "stream": stream})


@dataclasses.dataclass
class Live:
    url: str
    port: int
    server: FarewayServer
    task: asyncio.Task[Any]
    app: Any


@contextlib.asynccontextmanager
async def serve(sim_url: str, tmp: Path, limits: ServerLimits, **changes: Any) -> AsyncIterator[Live]:
    cfg = gateway_config(sim_url, tmp, limits=limits, **changes)
    app = build_app(cfg)
    port = free_port()
    server = build_server(app, host="127.0.0.1", port=port, limits=limits, raise_fd_limit=False)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "server did not start"
        await asyncio.sleep(0.01)
    try:
        yield Live(f"http://127.0.0.1:{port}", port, server, task, app)
    finally:
        server.should_exit = True
        await task


async def read_all(reader: asyncio.StreamReader, limit_s: float) -> bytes:
    """Everything until the server closes the connection (fails after ``limit_s``); a reset (the
    server closed with our unread bytes in its buffer) ends it like a close."""
    out = b""
    async with asyncio.timeout(limit_s):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                out += chunk
    return out


async def wait_for(cond: Any, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def chat(url: str, **kw: Any) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/v1/chat/completions", data=chat_body(**kw), headers=AUTH) as r,
    ):
        return r.status, await r.read()


SHORT = ServerLimits(header_timeout=0.5, body_timeout=0.5, max_connections=200)


async def test_partial_headers_and_silent_sockets_are_closed_after_the_header_timeout(
    sim: Any, tmp_path: Path
) -> None:
    async with serve(sim.url, tmp_path, SHORT) as live:
        conns = []
        for i in range(60):
            r, w = await connect(live.port)
            if i % 3 == 0:
                w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-slow: ")  # partial headers
            elif i % 3 == 1:
                w.write(b"GET /v1/mod")  # a partial request line
            conns.append((r, w))  # every third sends nothing at all
        t0 = time.monotonic()
        # Meanwhile a normal call is served.
        status, _ = await chat(live.url)
        assert status == 200
        answers = await asyncio.gather(*(read_all(r, limit_s=10) for r, _ in conns))
        elapsed = time.monotonic() - t0
        for a in answers:
            assert a == b"" or a.startswith(b"HTTP/1.1 408 "), a[:100]
        assert any(a.startswith(b"HTTP/1.1 408 ") for a in answers)
        assert elapsed < 8, elapsed  # closed by the 0.5 s deadline (swept every 0.1 s), not never
        assert live.server.expired >= 60
        for _, w in conns:
            w.close()
        # After all that, calls still work.
        status, _ = await chat(live.url)
        assert status == 200


async def test_a_trickled_header_is_cut_off_at_the_deadline_not_reset_by_each_byte(
    sim: Any, tmp_path: Path
) -> None:
    async with serve(sim.url, tmp_path, SHORT) as live:
        r, w = await connect(live.port)
        w.write(b"GET /v1/models HTTP/1.1\r\n")
        got = b""
        t0 = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for i in range(200):  # a header line every 50 ms: 10 s if never cut off
                w.write(b"x-%d: y\r\n" % i)
                await w.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        got += await r.read(65536)
                if got or r.at_eof():
                    break
        assert got.startswith(b"HTTP/1.1 408 ") or r.at_eof()
        assert time.monotonic() - t0 < 5


async def test_a_kept_alive_connection_outlives_the_header_timeout(sim: Any, tmp_path: Path) -> None:
    """The header deadline runs per request: a busy keep-alive connection is never cut by it."""
    async with (
        serve(sim.url, tmp_path, SHORT) as live,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s,
    ):
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 3 * SHORT.header_timeout or n < 10:
            async with s.post(f"{live.url}/v1/chat/completions", data=chat_body(), headers=AUTH) as r:
                assert r.status == 200
            n += 1
        assert live.server.expired == 0


async def test_a_huge_header_in_a_later_request_on_a_kept_alive_connection_gets_431(
    sim: Any, tmp_path: Path
) -> None:
    async with serve(sim.url, tmp_path, ServerLimits()) as live:
        r, w = await connect(live.port)
        auth = b"authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
        w.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        await r.readexactly(length)
        w.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + auth + b"x-big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = await read_all(r, limit_s=10)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        w.close()


async def test_a_slow_body_gets_408(sim: Any, tmp_path: Path) -> None:
    async with serve(sim.url, tmp_path, SHORT) as live:
        r, w = await connect(live.port)
        w.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer " + MASTER_KEY.encode() + b'\r\ncontent-length: 500\r\n\r\n{"model"'
        )
        answer = await read_all(r, limit_s=10)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"body did not arrive in time" in answer
        w.close()


async def test_too_many_headers_and_huge_headers_are_refused_with_431(sim: Any, tmp_path: Path) -> None:
    limits = ServerLimits(max_headers=100, max_header_bytes=64 * 1024)
    async with serve(sim.url, tmp_path, limits) as live:
        # 10,000 header lines (about 90 KB)
        r, w = await connect(live.port)
        w.write(b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"x%d: y\r\n" % i for i in range(10_000)) + b"\r\n")
        answer = await read_all(r, limit_s=10)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        w.close()
        # 10,000 tiny headers (under the byte limit): refused for their number
        r, w = await connect(live.port)
        w.write(
            b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"x:%d\r\n" % (i % 10) for i in range(10_000)) + b"\r\n"
        )
        answer = await read_all(r, limit_s=10)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"more than 100 header lines" in answer
        w.close()
        # one 8 MB header: 431 as soon as 64 KiB arrived; the rest is not read
        r, w = await connect(live.port)
        w.write(b"GET /v1/models HTTP/1.1\r\nx-big: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 8_000_000:
                w.write(b"a" * 65536)
                sent += 65536
                await w.drain()
        answer = await read_all(r, limit_s=10)
        assert answer.startswith(b"HTTP/1.1 431 ") or answer == b"", answer[:200]
        assert sent < 8_000_000  # the connection was closed long before the 8 MB were sent
        w.close()
        # 100 headers of normal size are fine
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{live.url}/v1/models", headers={**AUTH, **{f"x-h{i}": "v" * 100 for i in range(90)}}
            ) as resp,
        ):
            assert resp.status == 200


async def test_at_the_connection_cap_the_longest_idle_socket_makes_room(sim: Any, tmp_path: Path) -> None:
    limits = ServerLimits(header_timeout=60, max_connections=20)
    async with serve(sim.url, tmp_path, limits) as live:
        slow = []
        for _ in range(20):
            r, w = await connect(live.port)
            w.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")  # never finished
            await w.drain()
            slow.append((r, w))
            await wait_for(lambda: len(live.server.server_state.connections) == len(slow))
        # 20 slowloris sockets hold every slot; calls still get through, each (on a connection
        # it keeps open) evicting the longest-idle socket
        sessions = [aiohttp.ClientSession() for _ in range(5)]
        try:
            for s in sessions:
                async with s.post(f"{live.url}/v1/chat/completions", data=chat_body(), headers=AUTH) as r:
                    assert r.status == 200
                assert len(live.server.server_state.connections) <= 20
            closed = [await read_all(r, limit_s=5) for r, _ in slow[:5]]  # the oldest five were closed
            assert closed == [b""] * 5
            assert not any(r.at_eof() for r, _ in slow[5:])
        finally:
            for s in sessions:
                await s.close()
            for _, w in slow:
                w.close()


@pytest.fixture(scope="module")
async def slow_sim() -> AsyncIterator[Any]:
    """A simulator whose streams run at 40 words/s."""
    cfg = SimConfig(providers={"openai": Profile(Dist(), 40.0, 16)})
    handle = await start_sim("127.0.0.1", 0, cfg)
    yield handle
    await handle.stop()


async def test_with_every_connection_busy_a_new_one_gets_503(slow_sim: Any, tmp_path: Path) -> None:
    limits = ServerLimits(max_connections=1)
    async with serve(slow_sim.url, tmp_path, limits) as live, aiohttp.ClientSession() as s:
        body = chat_body(stream=True, text="echo: " + "word " * 200)
        async with s.post(f"{live.url}/v1/chat/completions", data=body, headers=AUTH) as r:
            assert r.status == 200
            await r.content.readline()  # the stream is running: the one slot is busy
            r2, w2 = await connect(live.port)
            answer = await read_all(r2, limit_s=5)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            w2.close()


# ------------------------------------------------------------------- response size cap


class BigUpstream:
    """An OpenAI-dialect upstream whose answers are huge: counts the bytes it got to send."""

    def __init__(self) -> None:
        self.sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        data = await request.json()
        if data.get("stream"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "big"}
            frame = b"data: " + orjson.dumps(
                {**chunk, "choices": [{"index": 0, "delta": {"content": "x" * 60_000}}]}
            )
            with contextlib.suppress(ConnectionError):
                for _ in range(1000):  # 60 MB
                    await resp.write(frame + b"\n\n")
                    self.sent += len(frame) + 2
            return resp
        mode = request.headers.get("x-test-mode", "chunked")
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        if mode == "length":
            resp.content_length = 50_000_000
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(b'{"id": "x", "choices": [], "pad": "')
            for _ in range(50_000_000 // 65536):
                await resp.write(b"a" * 65536)
                self.sent += 65536
        return resp


@pytest.fixture
async def big_upstream() -> AsyncIterator[tuple[str, BigUpstream]]:
    up = BigUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", up.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/v1", up
    await runner.cleanup()


def _with_big_provider(sim_url: str, tmp: Path, big_url: str) -> dict[str, Any]:
    """Config changes: provider `big` and an alias falling back from it to the simulator."""
    base = gateway_config(sim_url, tmp)
    toml = tmp / "big.toml"
    toml.write_text(
        f'[providers.big]\ndialect = "openai"\nbase_url = "{big_url}"\napi_key = "k"\n'
        '[aliases]\nbig-then-sim = { strategy = "fallback", targets = ["big/big", "openai/gpt-4o-mini"] }\n'
    )
    loaded = load_config(toml, env={})
    providers = {**base.providers, "big": loaded.providers["big"]}
    return {"providers": providers, "aliases": loaded.aliases}


async def test_an_oversize_upstream_answer_is_an_upstream_error_and_falls_back(
    sim: Any, tmp_path: Path, big_upstream: tuple[str, BigUpstream]
) -> None:
    big_url, up = big_upstream
    limits = ServerLimits(max_response_bytes=1024 * 1024)
    changes = _with_big_provider(sim.url, tmp_path, big_url)
    async with serve(sim.url, tmp_path, limits, **changes) as live, aiohttp.ClientSession() as s:
        for mode in ("chunked", "length"):
            up.sent = 0
            # Alone: a 502 in the caller's dialect naming the limit.
            async with s.post(
                f"{live.url}/v1/chat/completions",
                data=chat_body("big/big"),
                headers={**AUTH, "x-test-mode": mode},
            ) as r:
                body = await r.json()
                assert r.status == 502, body
                assert "max_response_bytes" in body["error"]["message"]
            assert up.sent < 8 * 1024 * 1024, up.sent  # the gateway stopped reading early
            # In a fallback chain: the next target answers.
            async with s.post(
                f"{live.url}/v1/chat/completions",
                data=chat_body("big-then-sim"),
                headers={**AUTH, "x-test-mode": mode},
            ) as r:
                assert r.status == 200, (await r.text(), dict(r.headers))
                assert r.headers["x-fareway-provider"] == "openai"
                assert "big/big=" in r.headers["x-fareway-route"]


async def test_an_oversize_stream_ends_with_an_error_event(
    sim: Any, tmp_path: Path, big_upstream: tuple[str, BigUpstream]
) -> None:
    big_url, up = big_upstream
    limits = ServerLimits(max_response_bytes=1024 * 1024)
    changes = _with_big_provider(sim.url, tmp_path, big_url)
    async with (
        serve(sim.url, tmp_path, limits, **changes) as live,
        aiohttp.ClientSession() as s,
        s.post(f"{live.url}/v1/chat/completions", data=chat_body("big/big", stream=True), headers=AUTH) as r,
    ):
        assert r.status == 200
        text = (await r.read()).decode()
    assert "max_response_bytes" in text
    assert 512 * 1024 <= text.count("x") <= 1024 * 1024  # what arrived before the cap, no more
    assert up.sent < 8 * 1024 * 1024, up.sent


# ------------------------------------------------------------------------------- drain


def _fareway() -> list[str]:
    exe = Path(sys.executable).parent / "fareway"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fareway.cli"]


async def _sse_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for line in resp.content:
        yield line


def test_sigterm_drains_in_flight_calls_ends_slow_streams_and_exits_0(tmp_path: Path) -> None:
    drain = 2.0
    (tmp_path / "c.toml").write_text(
        f'[server]\ndrain_seconds = {drain}\nstate_dir = "{tmp_path / "state"}"\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [*_fareway(), "serve", "--demo", "--config", str(tmp_path / "c.toml"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "FAREWAY_MASTER_KEY": MASTER_KEY},
    )

    async def scenario() -> tuple[bytes, bytes, float]:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with s.get(f"{url}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "gateway did not start"
                await asyncio.sleep(0.05)
            # A slow stream (Anthropic at ~70 words/s, 3,000 words: ~40 s) and a short one (~30 words).
            slow_body = orjson.dumps(
                {
                    "model": "anthropic/claude-haiku-4-5",
                    "max_tokens": 8000,
                    "stream": True,
                    "messages": [{"role": "user", "content": "echo: " + "slow " * 3000}],
                }
            )
            short_body = chat_body("cerebras/llama-3.3-70b", stream=True, text="echo: " + "short " * 30)
            slow = await s.post(f"{url}/v1/messages", data=slow_body, headers=AUTH)
            short = await s.post(f"{url}/v1/chat/completions", data=short_body, headers=AUTH)
            assert slow.status == 200 and short.status == 200
            slow_lines = _sse_lines(slow)
            slow_got = await anext(slow_lines)
            short_got = await short.content.readline()  # both are in flight now
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            short_got += await short.read()
            async for line in slow_lines:
                slow_got += line
            slow.release()
            return short_got, slow_got, t_term

    try:
        short_got, slow_got, t_term = asyncio.run(scenario())
        rc = proc.wait(timeout=drain + 10)
        elapsed = time.monotonic() - t_term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    assert rc == 0, err[-2000:]
    assert elapsed < drain + 4, elapsed
    assert b"data: [DONE]" in short_got  # the short call finished normally
    assert short_got.count(b"short") == 30
    assert b"event: error" in slow_got and b"shutting down" in slow_got, slow_got[-500:]
    assert b"message_stop" not in slow_got
    assert "Traceback" not in err, err[-2000:]
    # Both calls are in the ledger: the slow one with the shutdown as its error.
    db = sqlite3.connect(tmp_path / "state" / "fareway.db")
    rows = db.execute("SELECT requested_model, status, error FROM calls ORDER BY time").fetchall()
    db.close()
    by_model = {r[0]: r for r in rows}
    assert by_model["cerebras/llama-3.3-70b"][1] == 200
    slow_row = by_model["anthropic/claude-haiku-4-5"]
    assert slow_row[1] >= 500 and "shutting down" in (slow_row[2] or ""), slow_row


# ------------------------------------------------------------------------------ config


def test_server_limits_are_read_and_checked(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        "[server]\nheader_timeout = 3\nmax_headers = 50\ndrain_seconds = 0\nmax_response_bytes = 1000\n"
    )
    limits = load_config(p, env={}).limits
    assert (limits.header_timeout, limits.max_headers, limits.drain_seconds) == (3.0, 50, 0.0)
    assert (limits.body_timeout, limits.max_header_bytes, limits.max_response_bytes) == (60.0, 65536, 1000)
    for bad, needle in (
        ("header_timeout = -1", "header_timeout"),
        ('body_timeout = "10"', "body_timeout"),
        ("max_headers = 1.5", "max_headers"),
        ("max_connections = -2", "max_connections"),
        ("max_header_bytes = true", "max_header_bytes"),
        ("header_timout = 3", r'unknown key "header_timout"; did you mean "header_timeout"'),
    ):
        p.write_text(f"[server]\n{bad}\n")
        with pytest.raises(ConfigError, match=needle):
            load_config(p, env={})


# ------------------------------------------------------------------------------ memory


def test_a_breaker_fed_only_successes_keeps_only_its_window() -> None:
    """The soak's growth (about 80 bytes per call): successes were appended to the breaker's
    window and pruned only when something asked for the error rate (routing by auto does; a
    pinned model never did)."""
    from fareway.router.breaker import BreakerConfig, CircuitBreaker

    now = [0.0]
    b = CircuitBreaker(BreakerConfig(window_s=60.0), clock=lambda: now[0])
    for _ in range(100_000):  # 100 calls/s for 1,000 s
        now[0] += 0.01
        b.record_success()
    assert len(b._window) <= 60 * 100 + 1
