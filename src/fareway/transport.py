"""The upstream HTTP seam: the gateway's HTTP/1.1 client (fareway.transport_http) with pooled
keep-alive connections.

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

from fareway.errors import UpstreamConnectionError, UpstreamServerError, UpstreamTimeout
from fareway.transport_http import HttpClient, HttpClientError, HttpResponse
from fareway.types import HttpRequest


class UpstreamResponse:
    """An open upstream response.  Read the body with ``read()`` or ``chunks()``; always
    ``release()`` (or ``close()`` to abort the connection, which stops the provider generating)."""

    __slots__ = (
        "__weakref__",
        "_body",
        "_cap",
        "_deadline",
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
        resp: HttpResponse,
        provider: str,
        idle: float,
        cap: int = 32 * 1024 * 1024,
        live: weakref.WeakSet[UpstreamResponse] | None = None,
        deadline: float | None = None,
    ) -> None:
        self._resp = resp
        self._body = resp.body()
        self._deadline = deadline
        """When a non-streamed call's total timeout ends (loop time); None for a stream."""
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
        body = self._body
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout_at(self._deadline):
                while chunk := await body.readany():
                    self._seen += len(chunk)
                    if self._seen > self._cap:
                        raise self._too_large()
                    chunks.append(chunk)
            self._check_interrupted()
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError as exc:
            self.close()
            raise UpstreamTimeout(
                "the upstream did not finish in time", phase="total", provider=self.provider
            ) from exc
        except HttpClientError as exc:
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
        pending read by setting the error on the response's body reader.  Time the consumer spends
        between reads (a slow client) is never counted as upstream idleness."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        self._reading_since = now
        if self._watchdog is None:
            self._watchdog = loop.call_at(now + self._idle, self._watch)
        try:
            chunk = await self._body.readany()
        except HttpClientError as exc:
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
        return self._body.at_eof()

    def _watch(self) -> None:
        self._watchdog = None
        since = self._reading_since
        if not since or self._loop is None:
            return  # no read pending: the next read arms the watchdog again
        due = since + self._idle
        if self._loop.time() >= due - 0.001:
            self._body.fail(
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
        max_response_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._max_response_bytes = max_response_bytes
        self._client: HttpClient | None = None
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
        if self._client is None:
            self._client = HttpClient(connect_timeout=self._connect_timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def send(self, req: HttpRequest, provider: str, *, total: float, idle: float) -> UpstreamResponse:
        """Send ``req`` and return once the response headers arrived.  A non-streamed request's
        ``total`` bounds the whole exchange (headers and body); a stream's is the caller's."""
        if self._interrupted is not None:
            raise UpstreamConnectionError(self._interrupted, provider=provider)
        client = self._client
        if client is None:
            await self.start()
            client = self._client
            assert client is not None
        deadline = None if req.stream else asyncio.get_running_loop().time() + total
        try:
            if deadline is None:
                resp = await client.send(req.method, req.url, req.headers, req.body)
            else:
                async with asyncio.timeout_at(deadline):
                    resp = await client.send(req.method, req.url, req.headers, req.body)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"could not connect to the upstream within {self._connect_timeout:g}s"
                if req.stream
                else "the upstream did not answer in time",
                phase="connect" if req.stream else "total",
                provider=provider,
            ) from exc
        except OSError as exc:
            raise UpstreamConnectionError(
                f"could not connect to the upstream ({type(exc).__name__})", provider=provider
            ) from exc
        except HttpClientError as exc:
            raise UpstreamConnectionError(
                f"the upstream connection failed ({exc})", provider=provider
            ) from exc
        return UpstreamResponse(resp, provider, idle, self._max_response_bytes, self._live, deadline)
