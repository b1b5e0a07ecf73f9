"""An in-memory transport for tests, shaped like ``httpx.MockTransport``: a handler function
turns each request into a response; no socket is opened.

::

    def handler(request: MockRequest) -> MockResponse:
        if request.provider == "openai":
            return MockResponse(500, json={"error": {"message": "boom"}})
        return MockResponse(200, chunks=[b'data: {...}\\n\\n', b"data: [DONE]\\n\\n"])

    executor = Executor(MockTransport(handler), adapters)

The handler may be a coroutine function (to wait on an event, or to stall), may raise an
``UpstreamError`` (``UpstreamConnectionError`` for a refused connection), and must return a new
:class:`MockResponse` each time (a response is read once).  A streamed body is ``chunks``: bytes,
exceptions (raised when reached, like a connection reset mid-stream) or an async iterator (which
may stall: ``next_chunk`` then raises ``UpstreamTimeout(phase="idle")`` as the real transport does).

Every request is kept in :attr:`MockTransport.requests` and every response in
:attr:`MockTransport.responses`; :meth:`MockTransport.unfinished` lists the responses nobody
released or closed, so a test can check that the code under test never leaks a connection.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fareway.errors import UpstreamTimeout
from fareway.types import HttpRequest


@dataclass(slots=True)
class MockRequest:
    """What was sent: the adapter's request, the provider it was for, and the timeouts."""

    http: HttpRequest
    provider: str
    total: float
    idle: float

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def headers(self) -> dict[str, str]:
        return self.http.headers

    def json(self) -> Any:
        return orjson.loads(self.http.body)


Chunks = Iterable[bytes | BaseException] | AsyncIterable[bytes]
"""A streamed body: bytes and exceptions (raised when reached), or an async iterator of bytes."""


class MockResponse:
    """A canned upstream response (an :class:`fareway.transport_base.OpenResponse`)."""

    def __init__(
        self,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        json: Any = None,
        chunks: Chunks | None = None,
    ) -> None:
        self.status = status
        hdrs = dict(headers or {})
        if json is not None:
            body = orjson.dumps(json)
            hdrs.setdefault("content-type", "application/json")
        self.headers: Mapping[str, str] = hdrs
        self._chunks: Chunks = chunks if chunks is not None else ([body] if body else [])
        self._iter: AsyncIterator[bytes | BaseException] | None = None
        self.provider = ""
        self.idle = 30.0
        self.released = False
        self.closed = False

    @property
    def finished(self) -> bool:
        return self.released or self.closed

    def _source(self) -> AsyncIterator[bytes | BaseException]:
        if self._iter is None:
            self._iter = _aiter(self._chunks)
        return self._iter

    async def next_chunk(self) -> bytes:
        if self.closed:
            raise RuntimeError("next_chunk() on a closed MockResponse")
        try:
            async with asyncio.timeout(self.idle):
                item = await anext(self._source(), b"")
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"the upstream sent nothing for {self.idle:g}s", phase="idle", provider=self.provider
            ) from exc
        if isinstance(item, BaseException):
            raise item
        return item

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def at_eof(self) -> bool:
        return False  # (the canned chunks are an iterator: whether one is left is not known)

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


async def _aiter(chunks: Chunks) -> AsyncIterator[bytes | BaseException]:
    if isinstance(chunks, AsyncIterable):
        async for c in chunks:
            yield c
    else:
        for item in chunks:
            yield item


Handler = Callable[[MockRequest], "MockResponse | Awaitable[MockResponse]"]


class MockTransport:
    """An :class:`fareway.transport_base.UpstreamTransport` that calls ``handler`` per request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[MockRequest] = []
        self.responses: list[MockResponse] = []
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, req: HttpRequest, provider: str, *, total: float, idle: float) -> MockResponse:
        sent = MockRequest(req, provider, total, idle)
        self.requests.append(sent)
        result = self.handler(sent)
        resp = await result if inspect.isawaitable(result) else result
        if any(r is resp for r in self.responses):
            raise RuntimeError("the MockTransport handler returned the same MockResponse twice")
        resp.provider = provider
        resp.idle = idle
        self.responses.append(resp)
        return resp

    def unfinished(self) -> list[MockResponse]:
        """Responses neither released nor closed (a leaked connection, with a real transport)."""
        return [r for r in self.responses if not r.finished]


__all__ = ["MockRequest", "MockResponse", "MockTransport"]
