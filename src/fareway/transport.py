"""The upstream HTTP seam: one shared aiohttp session with pooled keep-alive connections.

Adapters are sans-IO; this module is the only place that talks to providers.  It turns transport
failures into the error tree (connect timeout, idle timeout, reset) and never includes request
headers (which hold provider keys) in any message.

A response body (or the bytes of a stream) over ``max_response_bytes`` is an upstream error
(``UpstreamServerError``, a fallback trigger before the commit point), so one huge answer cannot
take the gateway's memory.  ``interrupt`` ends every open response with an upstream error (the
bounded drain at shutdown uses it: streams end with an error event, not a cut connection).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

import aiohttp

from fareway.errors import UpstreamConnectionError, UpstreamServerError, UpstreamTimeout
from fareway.types import HttpRequest


class UpstreamResponse:
    """An open upstream response.  Read the body with ``read()`` or ``chunks()``; always
    ``release()`` (or ``close()`` to abort the connection, which stops the provider generating)."""

    __slots__ = (
        "__weakref__",
        "_cap",
        "_idle",
        "_live",
        "_loop",
        "_reading_since",
        "_resp",
        "_seen",
        "_watchdog",
        "headers",
        "interrupted",
        "provider",
        "status",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        provider: str,
        idle: float,
        cap: int = 32 * 1024 * 1024,
        live: weakref.WeakSet[UpstreamResponse] | None = None,
    ) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.provider = provider
        self._idle = idle
        self._cap = cap
        self._seen = 0
        self._live = live
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading_since = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.interrupted: str | None = None
        if live is not None:
            live.add(self)

    def _too_large(self) -> UpstreamServerError:
        self.close()
        return UpstreamServerError(
            f"the upstream response exceeded max_response_bytes ({self._cap} bytes)", provider=self.provider
        )

    def _check_interrupted(self) -> None:
        if self.interrupted is not None:
            raise UpstreamConnectionError(self.interrupted, provider=self.provider)

    async def read(self) -> bytes:
        length = self._resp.content_length
        if length is not None and length > self._cap:
            raise self._too_large()  # refuse a declared oversize answer before reading it
        content = self._resp.content
        chunks: list[bytes] = []
        try:
            while chunk := await content.readany():
                self._seen += len(chunk)
                if self._seen > self._cap:
                    raise self._too_large()
                chunks.append(chunk)
            self._check_interrupted()
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                "the upstream did not finish in time", phase="total", provider=self.provider
            ) from exc
        except aiohttp.ClientError as exc:
            self._check_interrupted()
            raise UpstreamConnectionError(
                f"the connection to the upstream failed while reading: {type(exc).__name__}",
                provider=self.provider,
            ) from exc

    async def next_chunk(self) -> bytes:
        """The next bytes of the body (b"" at the end).  Raises UpstreamTimeout(phase="idle")
        when nothing arrives for the idle timeout.

        The idle timeout is one watchdog timer per response, not a timeout scope per read (which
        costs a timer and a cancel for every chunk): each read notes when it began, and the
        watchdog, due ``idle`` seconds after the oldest read it has not seen end, fails the
        pending read by setting the error on aiohttp's stream reader.  Time the consumer spends
        between reads (a slow client) is never counted as upstream idleness."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        self._reading_since = now
        if self._watchdog is None:
            self._watchdog = loop.call_at(now + self._idle, self._watch)
        try:
            chunk = await self._resp.content.readany()
        except aiohttp.ClientError as exc:
            self._check_interrupted()
            raise UpstreamConnectionError(
                f"the upstream connection broke mid-stream: {type(exc).__name__}", provider=self.provider
            ) from exc
        finally:
            self._reading_since = 0.0
        if chunk:
            self._seen += len(chunk)  # inline, not a method call: this runs for every chunk
            if self._seen > self._cap:
                raise self._too_large()
        elif self.interrupted is not None:
            raise UpstreamConnectionError(self.interrupted, provider=self.provider)
        return chunk

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    def _watch(self) -> None:
        self._watchdog = None
        since = self._reading_since
        if not since or self._loop is None:
            return  # no read pending: the next read arms the watchdog again
        due = since + self._idle
        if self._loop.time() >= due - 0.001:
            self._resp.content.set_exception(
                UpstreamTimeout(
                    f"the upstream sent nothing for {self._idle:g}s", phase="idle", provider=self.provider
                )
            )
        else:
            self._watchdog = self._loop.call_at(due, self._watch)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def release(self) -> None:
        self._stop_watchdog()
        if self._live is not None:
            self._live.discard(self)
        self._resp.release()

    def close(self) -> None:
        """Abort: close the connection so the provider sees the disconnect and stops generating."""
        self._stop_watchdog()
        if self._live is not None:
            self._live.discard(self)
        self._resp.close()

    def interrupt(self, reason: str) -> None:
        """End this response: a pending or later read raises UpstreamConnectionError(reason)."""
        self.interrupted = reason
        self.close()


class Transport:
    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        limit_per_host: int = 0,
        max_response_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._limit_per_host = limit_per_host
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._live: weakref.WeakSet[UpstreamResponse] = weakref.WeakSet()
        self._interrupted: str | None = None

    def interrupt(self, reason: str) -> int:
        """End every open upstream response with an upstream error carrying ``reason``, and
        refuse new requests the same way (the drain at shutdown).  The number ended."""
        self._interrupted = reason
        live = list(self._live)
        for r in live:
            r.interrupt(reason)
        return len(live)

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
        if self._interrupted is not None:
            raise UpstreamConnectionError(self._interrupted, provider=provider)
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
        return UpstreamResponse(resp, provider, idle, self._max_response_bytes, self._live)
