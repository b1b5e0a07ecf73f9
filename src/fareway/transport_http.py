"""The upstream HTTP/1.1 client: pooled keep-alive connections, responses parsed by httptools.

What the gateway asks of an HTTP client is narrow: POST a body of known length to a handful of
provider hosts, read the answer as it comes, keep the connection for the next call.  aiohttp's
client does that and much more (cookies, redirects, proxies, multipart, tracing), and the more
costs on every call: in the instruction counts of ``benchmarks/bench_ledger_instructions.py``
its request path was about a fifth of a call.  This client is that narrow path, on asyncio's
transports (uvloop's when installed) and httptools (llhttp, the parser uvicorn uses) for the
response: status line, headers, chunked or sized or read-until-close bodies, keep-alive.

* A connection is reused only after its response was read to the end and the server allows
  keep-alive; a response given up early (``close()``) closes its connection.
* A request sent on a reused connection that the server had closed meanwhile (it gets no byte
  back: the peer's keep-alive ran out) is sent again once on a new connection: nothing of it
  was processed.
* gzip and deflate bodies are decoded (``accept-encoding: gzip, deflate`` is sent, as aiohttp
  sends it); other encodings are passed as they came.
* A header value holding CR or LF is refused before anything is sent (header injection).
* The body reader pauses the socket while more than ``_HIGH_WATER`` bytes wait unread, so a
  slow consumer holds a bounded buffer, not the whole answer.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

_HIGH_WATER = 256 * 1024
"""Unread body bytes past which the connection stops reading from the socket."""
_KEEP_IDLE = 15.0
"""Seconds an idle connection is kept for reuse (aiohttp's default keep-alive time): servers
close theirs after a while, and one closed just as a request goes out costs a retry."""


class HttpClientError(Exception):
    """A failure of the connection itself (reset, closed mid-answer, a malformed answer)."""


_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


class _Target:
    """What a URL's scheme, host and port give, worked out once per URL."""

    __slots__ = ("host", "host_header", "key", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        if any(c < " " or c == "\x7f" for c in url):  # (urlsplit would drop CR, LF and tab)
            raise ValueError("the upstream URL holds a control character")
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        default = 443 if self.tls else 80
        self.port = u.port or default
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default else f"{host}:{self.port}"
        # what a request line may hold: a space or a non-ASCII character percent-encoded (as
        # yarl does for aiohttp), an escape already in the URL kept
        path = quote(u.path or "/", safe=_PATH_SAFE)
        self.path = path + (f"?{quote(u.query, safe=_QUERY_SAFE)}" if u.query else "")
        self.key = (self.tls, self.host, self.port)


class _Body:
    """The body of one response as it arrives: what the connection feeds, what the reader takes."""

    __slots__ = ("_conn", "_decoder", "_encoding", "_size", "_waiter", "chunks", "eof", "error")

    def __init__(self, conn: _Connection, encoding: str) -> None:
        self._conn = conn
        self.chunks: list[bytes] = []
        self._size = 0
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._encoding = encoding
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)  # (zlib-wrapped; raw: _raw_deflate)

    def feed(self, data: bytes) -> None:
        if not data:  # (httptools gives an empty body piece at EOF: not the end, and not data)
            return
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                if self._raw_deflate(data):
                    return
                self.fail(HttpClientError(f"the body could not be decoded: {exc}"))
                return
            if not data:
                return
        self.chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _raw_deflate(self, data: bytes) -> bool:
        """A ``deflate`` body without the zlib wrapper (some servers send it raw): decoded raw
        when its first bytes fail as zlib.  Whether that worked."""
        if self._size or self.chunks or self._encoding != "deflate":
            return False
        self._encoding = "raw"
        self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
        self.feed(data)
        return self.error is None

    def end(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self.chunks.append(rest)
        self.eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self.error is None and not self.eof:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def at_eof(self) -> bool:
        return self.eof and not self.chunks

    async def readany(self) -> bytes:
        while True:
            if self.chunks:
                chunks, self.chunks = self.chunks, []
                self._size = 0
                self._conn.resume()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self.error is not None:
                raise self.error
            if self.eof:
                return b""
            self._waiter = self._conn.loop.create_future()
            await self._waiter


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a host; one request at a time."""

    def __init__(self, pool: _Pool, key: tuple[bool, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.idle_since = 0.0
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: CIMultiDictProxy[str] | None = None
        self.body: _Body | None = None
        self.got_bytes = False
        """Whether anything came back for the current request (a reused connection the server
        closed before answering is retried on a new one)."""
        self.complete = False
        self.keep_alive = False
        self.lost = False
        self._paused = False
        self._interim = False
        self._stray = False
        """Whether a second answer came for one request (the connection is then closed)."""
        self._until_close = False
        """Whether the current body ends only when the connection does (no length, no chunks)."""

    # -------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.complete or self._head is None:
            # bytes with no request waiting for them (a 408 an idle connection gets before the
            # server closes it): the connection cannot be trusted with the next request
            self.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(HttpClientError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._broken(HttpClientError(f"the upstream sent a malformed answer ({exc})"))
        if self._stray:
            self.close()  # (the answer before the stray one stays readable)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.pool.forget(self)
        if self.complete:
            return
        if self.body is not None and self._until_close:
            # a body with neither a length nor chunks: it ends with the connection
            self.complete = True
            self.keep_alive = False
            self.body.end()
            return
        self._fail_current(HttpClientError("the upstream closed the connection before the answer ended"))

    # ------------------------------------------------------------------ httptools

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.complete:  # a second answer to one request: see data_received
            self._stray = True
            return
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._headers = []
            self._interim = True
            return
        self.status = status
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        self.headers = headers
        self.keep_alive = self._parser.should_keep_alive()
        self._until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and self.status not in (204, 304)
            and self.status >= 200
        )
        self.body = _Body(self, headers.get("content-encoding", "").strip().lower())
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.body is not None and not self._stray:
            self.body.feed(body)

    def on_message_complete(self) -> None:
        if self._stray:
            return
        if self._interim:
            self._interim = False
            return
        self.complete = True
        if self.body is not None:
            self.body.end()

    # --------------------------------------------------------------------- requests

    async def request(self, head: bytes, body: bytes) -> None:
        """Send one request; return once its status and headers arrived."""
        assert self.transport is not None
        self._headers = []
        self.status = 0
        self.headers = None
        self.body = None
        self.got_bytes = False
        self.complete = False
        self._head = self.loop.create_future()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        await self._head

    def _broken(self, exc: BaseException) -> None:
        self._fail_current(exc)
        if self.transport is not None:
            self.transport.close()

    def _fail_current(self, exc: BaseException) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        if self.body is not None:
            self.body.fail(exc)

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and not self._paused

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The idle connections of every host (the most recently used last in each list: taken
    first).  A connection idle for ``_KEEP_IDLE`` seconds is closed, when it is next wanted or
    by the sweep that runs while any connection is idle (so a burst leaves no sockets behind)."""

    def __init__(self, connect_timeout: float, ssl_context: ssl.SSLContext | None) -> None:
        self.connect_timeout = connect_timeout
        self.idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._ssl = ssl_context
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def forget(self, conn: _Connection) -> None:
        conns = self.idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)

    def take(self, t: _Target) -> _Connection | None:
        conns = self.idle.get(t.key)
        if not conns:
            return None
        oldest = conns[0].loop.time() - _KEEP_IDLE
        while conns:
            conn = conns.pop()
            if conn.idle_since < oldest:
                # idle too long (and so is every one before it): closed, not risked
                for c in [conn, *conns]:
                    c.close()
                conns.clear()
                return None
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def put(self, conn: _Connection) -> None:
        if self.closed or not conn.reusable():
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        self.idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(_KEEP_IDLE, self.sweep, conn.loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> int:
        """Close the connections idle for ``_KEEP_IDLE`` seconds; again later while any is left.
        The number closed."""
        self._sweeper = None
        old = loop.time() - _KEEP_IDLE
        closed = 0
        for conns in self.idle.values():
            k = 0
            while k < len(conns) and conns[k].idle_since <= old:  # (oldest first)
                k += 1
            for conn in conns[:k]:
                conn.close()
            del conns[:k]
            closed += k
        if any(self.idle.values()) and not self.closed:
            self._sweeper = loop.call_later(_KEEP_IDLE, self.sweep, loop)
        return closed

    async def connect(self, t: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if t.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        conn = _Connection(self, t.key, loop)
        async with asyncio.timeout(self.connect_timeout):
            await loop.create_connection(
                lambda: conn, t.host, t.port, ssl=ctx, server_hostname=t.host if ctx is not None else None
            )
        return conn

    async def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class HttpResponse:
    """An open upstream response (``transport_base.OpenResponse``)."""

    __slots__ = ("_conn", "_done", "_pool", "headers", "status")

    def __init__(self, conn: _Connection, pool: _Pool) -> None:
        assert conn.headers is not None
        self._conn = conn
        self._pool = pool
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._done = False

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("content-length")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    def body(self) -> _Body:
        body = self._conn.body
        assert body is not None
        return body

    def release(self) -> None:
        """The body was read (or is not wanted): the connection goes back to the pool when the
        answer ended, and is closed when it did not."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete:
            self._pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._conn.close()


class HttpClient:
    """Sends requests over pooled connections; see the module's docstring."""

    def __init__(self, *, connect_timeout: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context``: how https connections verify the server (default: the system's
        certificate authorities, ``ssl.create_default_context()``)."""
        self._pool = _Pool(connect_timeout, ssl_context)
        self._targets: dict[str, _Target] = {}

    async def close(self) -> None:
        await self._pool.close()

    def _target(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self._targets) < 4096:  # (the URLs of the configured providers: a few)
                self._targets[url] = t
        return t

    @staticmethod
    def _head(method: str, t: _Target, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"{method} {t.path} HTTP/1.1\r\nhost: {t.host_header}\r\n"]
        has_encoding = False
        for k, v in headers.items():
            if "\r" in v or "\n" in v or "\r" in k or "\n" in k or ":" in k:
                raise ValueError(f"header {k!r} holds a line break or its name a colon")
            lk = k.lower()
            if lk in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if lk == "accept-encoding":
                has_encoding = True
            lines.append(f"{k}: {v}\r\n")
        if not has_encoding:
            lines.append("accept-encoding: gzip, deflate\r\n")
        lines.append(f"content-length: {length}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        """Send a request; return once the status and headers arrived.  Raises OSError or
        TimeoutError (could not connect), HttpClientError (the connection failed)."""
        t = self._target(url)
        head = self._head(method, t, headers, len(body))
        pool = self._pool
        conn = pool.take(t)
        if conn is not None:
            try:
                await conn.request(head, body)
                return HttpResponse(conn, pool)
            except HttpClientError:
                conn.close()
                if conn.got_bytes:
                    raise
                # the server had closed the idle connection: the request never reached it
            except BaseException:  # a cancel (a race lost, the first-token deadline): never reused
                conn.close()
                raise
        conn = await pool.connect(t)
        try:
            await conn.request(head, body)
        except BaseException:
            conn.close()
            raise
        return HttpResponse(conn, pool)


__all__ = ["HttpClient", "HttpClientError", "HttpResponse"]
