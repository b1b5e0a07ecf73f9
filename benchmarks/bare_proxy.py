"""A bare pass-through proxy: the floor any gateway is measured against.

Raw ASGI on uvicorn (uvloop + httptools) with one shared aiohttp session: read the body, forward
it to UPSTREAM + path with the same content-type and authorization, return the upstream's status
and body (streamed chunk by chunk for SSE).  No parsing, no auth, no accounting.

    python benchmarks/bare_proxy.py --port 8201 --upstream http://127.0.0.1:9100/openai
"""

from __future__ import annotations

import argparse

import aiohttp
import uvicorn


def make_app(upstream: str):  # type: ignore[no-untyped-def]
    session: aiohttp.ClientSession | None = None

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        nonlocal session
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    assert session is not None
                    await session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        headers = {
            k.decode(): v.decode() for k, v in scope["headers"] if k in (b"content-type", b"authorization")
        }
        assert session is not None
        async with session.post(upstream + scope["path"], data=body, headers=headers) as resp:
            ctype = resp.headers.get("content-type", "application/json").encode()
            await send(
                {"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]}
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8201)
    p.add_argument("--upstream", required=True)
    a = p.parse_args()
    uvicorn.run(
        make_app(a.upstream),
        host="127.0.0.1",
        port=a.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
