"""uvicorn's httptools protocol with the limits it lacks: a deadline for a request's headers and one
for its body, a cap on header lines and header bytes (431), and a cap on open connections.

uvicorn bounds none of these for httptools (``h11_max_incomplete_event_size`` is h11 only, and
``timeout_keep_alive`` runs only between requests): a socket that sends half a request line, or
nothing, stays open for ever, and llhttp buffers a header of any size.  This subclass keeps the
hot path as it was: no timer per request, only a deadline (a float) per connection that
:func:`sweep`, called by the server a few times a second, compares with the clock.

* header deadline: ``header_timeout`` seconds from the connection's start (its first request) or
  from the first byte of a later request on a kept-alive connection, to the end of the headers;
  then the connection is closed (408 when nothing of the request is left to answer).
* body deadline: ``body_timeout`` seconds from the end of the headers to the end of the body; an
  app still waiting for the body sees a disconnect and the client gets a 408.
* ``max_headers`` header lines and ``max_header_bytes`` (request line plus headers, counted as
  bytes arrive, so memory is bounded before llhttp is done): a 431 and the connection closed.
* ``max_connections``: a new connection over the limit closes the connection that has been idle
  longest with no request in flight (a slowloris socket, an idle keep-alive); when every
  connection has a request in flight, the new one gets a 503.

It also tells the app when a client goes away mid-request, with no task to watch for it: each
request's cycle gets a ``fareway_on_disconnect`` slot (None); an app that puts a callable there
(server.http.DisconnectWatch) has it called when the connection is lost before the response is
complete.  Without this protocol the app watches ``receive()`` in a task of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fareway.config import ServerLimits

log = logging.getLogger("fareway.server")

_HEAD, _BODY = 1, 2


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_response(status: int, message: str) -> bytes:
    """A whole response with an OpenAI-style error body (the dialect is unknown before the
    request is parsed, and OpenAI's is what every route's clients read)."""
    code = {408: "request_timeout", 431: "request_header_fields_too_large", 503: "too_many_connections"}
    body = b'{"error":{"message":"%s","type":"invalid_request_error","param":null,"code":"%s"}}' % (
        message.encode(),
        code.get(status, "error").encode(),
    )
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        ]
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Use :func:`protocol_class` to get one bound to a :class:`ServerLimits`."""

    limits: ClassVar[ServerLimits] = ServerLimits()
    max_connections: ClassVar[int] = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = 0.0  # loop time; 0: no deadline armed
        self.phase = _HEAD
        self.head_bytes = 0
        self.idle_since = 0.0

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        now = self.loop.time()
        self.idle_since = now
        self.deadline = now + self.limits.header_timeout
        if len(self.connections) > self.max_connections and not self._evict_idle():
            log.warning("connection limit (%d) reached with every connection busy: 503", self.max_connections)
            self._refuse(503, "The gateway has too many open connections; retry shortly.")

    def _busy(self) -> bool:
        """A request is in flight (its app task runs or waits in the pipeline)."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _evict_idle(self) -> bool:
        victim: LimitedHttpToolsProtocol | None = None
        for conn in self.connections:
            if (
                conn is not self
                and isinstance(conn, LimitedHttpToolsProtocol)
                and not conn._busy()
                and not conn.transport.is_closing()
                and (victim is None or conn.idle_since < victim.idle_since)
            ):
                victim = conn
        if victim is None:
            return False
        log.info("connection limit (%d) reached: closing the longest-idle connection", self.max_connections)
        victim.transport.close()
        victim.connections.discard(victim)  # its connection_lost comes on a later loop turn
        return True

    def _refuse(self, status: int, message: str) -> None:
        self.deadline = 0.0
        if not self.transport.is_closing():
            self.transport.write(_error_response(status, message))
            self.transport.close()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app (if reading the body) sees a disconnect
            cycle.message_event.set()
            _tell_app(cycle)

    def expire(self) -> None:
        """The deadline passed: answer 408 if the request is not answered yet, and close."""
        phase = "headers" if self.phase == _HEAD else "body"
        log.info("closing a connection whose request %s did not arrive in time", phase)
        cycle = self.cycle
        if self.phase == _HEAD or (cycle is not None and not cycle.response_started):
            self._refuse(408, f"The request {phase} did not arrive in time.")
        else:
            self.deadline = 0.0
            self.transport.close()

    # ------------------------------------------------------------------ parsing

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.phase == _HEAD:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                log.info("refused a request: %s", refused.message)
                self._refuse(refused.status, refused.message)
                return
            self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.phase == _HEAD and self.head_bytes > self.limits.max_header_bytes:
            self._refuse(431, f"The request headers exceed {self.limits.max_header_bytes} bytes.")

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != _HEAD:  # a later request on a kept-alive connection
            self.phase = _HEAD
            self.head_bytes = 0
            self.deadline = self.loop.time() + self.limits.header_timeout

    def on_headers_complete(self) -> None:
        limits = self.limits
        headers = self.headers
        if len(headers) > limits.max_headers:
            raise _Refused(431, f"The request has more than {limits.max_headers} header lines.")
        # exact, whatever arrived in which read (a later request's first read is not counted above)
        if len(self.url) + sum(len(n) + len(v) + 4 for n, v in headers) > limits.max_header_bytes:
            raise _Refused(431, f"The request headers exceed {limits.max_header_bytes} bytes.")
        self.phase = _BODY
        self.deadline = self.loop.time() + limits.body_timeout
        super().on_headers_complete()
        cycle = self.cycle
        cycle.fareway_on_disconnect = None  # type: ignore[attr-defined]
        cycle.transport = _HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self.deadline = 0.0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.idle_since = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = 0.0
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            _tell_app(cycle)


class _HeadWithBody:
    """The transport a request's cycle writes its response to: uvicorn writes the status line
    and headers alone, then the body; this holds the head for the first body write, so a
    response goes out in one write (a system call less per call), or at the end of the loop's
    turn if no body comes in it.  Order is kept: every write after is passed on as it comes."""

    __slots__ = ("_head", "_loop", "_state", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head = b""
        self._state = 0  # 0: nothing written; 1: the head held; 2: passing writes on

    def write(self, data: bytes) -> None:
        state = self._state
        if state == 2:
            self._transport.write(data)
        elif state == 1:
            self._state = 2
            head, self._head = self._head, b""
            self._transport.write(head + data)
        else:
            self._state = 1
            self._head = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._state == 1:
            self._state = 2
            head, self._head = self._head, b""
            if not self._transport.is_closing():  # (the client may have gone since the head)
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _tell_app(cycle: Any) -> None:
    on_disconnect = getattr(cycle, "fareway_on_disconnect", None)
    if on_disconnect is not None:
        cycle.fareway_on_disconnect = None
        on_disconnect()


def protocol_class(limits: ServerLimits, max_connections: int) -> type[LimitedHttpToolsProtocol]:
    """A protocol class bound to these limits (uvicorn instantiates the class it is given)."""
    return type(
        "FarewayHttpProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "max_connections": max_connections},
    )


def sweep(connections: Iterable[object], now: float) -> int:
    """Close every connection whose deadline passed; the number closed."""
    expired = [
        c for c in connections if isinstance(c, LimitedHttpToolsProtocol) and c.deadline and c.deadline < now
    ]
    for c in expired:
        c.expire()
    return len(expired)
