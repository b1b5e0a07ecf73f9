"""The real upstream transport (aiohttp) against a local server: the idle timeout counts only the
time a read waits for the upstream, never the time the consumer spends between reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from fareway.errors import UpstreamTimeout
from fareway.transport import Transport
from fareway.types import HttpRequest


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, asyncio.Event]]:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: one\n\n")
        await resp.write(b"data: two\n\n")
        if request.query.get("stall"):
            await release.wait()  # stalls until the test ends
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/s", release
    finally:
        release.set()
        await runner.cleanup()


async def _read_all(url: str, idle: float, pause: float) -> bytes:
    transport = Transport()
    await transport.start()
    try:
        resp = await transport.send(HttpRequest("GET", url, {}, b"", stream=True), "p", total=30.0, idle=idle)
        got = b""
        try:
            while chunk := await resp.next_chunk():
                got += chunk
                await asyncio.sleep(pause)  # a slow client: the gateway reads the upstream late
        finally:
            resp.close()
        return got
    finally:
        await transport.close()


async def test_a_slow_consumer_is_not_an_idle_upstream(upstream: tuple[str, asyncio.Event]) -> None:
    url, _ = upstream
    # every pause between reads is longer than the idle timeout; the upstream never waits
    got = await _read_all(url, idle=0.05, pause=0.15)
    assert got == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"


async def test_a_stalled_upstream_fails_the_read_at_the_idle_timeout(
    upstream: tuple[str, asyncio.Event],
) -> None:
    url, _ = upstream
    with pytest.raises(UpstreamTimeout) as info:
        await _read_all(url + "?stall=1", idle=0.1, pause=0.0)
    assert info.value.phase == "idle"
    assert "sent nothing for 0.1s" in str(info.value)
