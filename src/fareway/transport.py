"""The upstream HTTP seam: one shared aiohttp session with pooled keep-alive connections.

Adapters are sans-IO; this module is the only place that talks to providers.  It turns transport
failures into the error tree (connect timeout, idle timeout, reset) and never includes request
headers (which hold provider keys) in any message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp

from fareway.errors import UpstreamConnectionError, UpstreamTimeout
from fareway.types import HttpRequest


class UpstreamResponse:
    """An open upstream response.  Read the body with ``read()`` or ``chunks()``; always
    ``release()`` (or ``close()`` to abort the connection, which stops the provider generating)."""

    __slots__ = ("_idle", "_resp", "headers", "provider", "status")

    def __init__(self, resp: aiohttp.ClientResponse, provider: str, idle: float) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.provider = provider
        self._idle = idle

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                "the upstream did not finish in time", phase="total", provider=self.provider
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(
                f"the connection to the upstream failed while reading: {type(exc).__name__}",
                provider=self.provider,
            ) from exc

    async def next_chunk(self) -> bytes:
        """The next bytes of the body (b"" at the end).  Raises UpstreamTimeout(phase="idle")
        when nothing arrives for the idle timeout."""
        try:
            async with asyncio.timeout(self._idle):
                return await self._resp.content.readany()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"the upstream sent nothing for {self._idle:g}s", phase="idle", provider=self.provider
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(
                f"the upstream connection broke mid-stream: {type(exc).__name__}", provider=self.provider
            ) from exc

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        """Abort: close the connection so the provider sees the disconnect and stops generating."""
        self._resp.close()


class Transport:
    def __init__(self, *, connect_timeout: float = 5.0, limit_per_host: int = 0) -> None:
        self._connect_timeout = connect_timeout
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._limit_per_host, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: HttpRequest, provider: str, *, total: float, idle: float) -> UpstreamResponse:
        """Send ``req`` and return once the response headers arrived."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(
            total=None if req.stream else total,
            sock_connect=self._connect_timeout,
            connect=self._connect_timeout,
        )
        kw: dict[str, Any] = {"data": req.body, "headers": req.headers, "timeout": timeout}
        try:
            resp = await self._session.request(req.method, req.url, **kw)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"could not connect to the upstream within {self._connect_timeout:g}s",
                phase="connect" if req.stream else "total",
                provider=provider,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectionError(
                f"could not connect to the upstream ({type(exc).__name__})", provider=provider
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(
                f"the upstream connection failed ({type(exc).__name__})", provider=provider
            ) from exc
        return UpstreamResponse(resp, provider, idle)
