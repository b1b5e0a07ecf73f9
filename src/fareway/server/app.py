"""The ASGI application: only wiring.  Routes are a dict of (method, path) -> handler; the hot
chat routes are raw ASGI with no framework in between.

Every response carries ``x-request-id``.  Errors are encoded in the dialect of the route that was
called (OpenAI error JSON on /v1/chat/completions, Anthropic error JSON on /v1/messages); an
unexpected exception is logged with its traceback server-side and the client gets a plain 500
without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fareway.errors import FarewayError, NotFound
from fareway.keys.store import Principal
from fareway.pipeline.gateway import Gateway, Reply
from fareway.server.http import (
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    header_map,
    new_request_id,
    read_body,
    send_body,
    send_stream,
)
from fareway.wire.base import WireDialect

log = logging.getLogger("fareway.server")

Handler = Callable[["Request"], Awaitable[Reply]]


class Request:
    __slots__ = ("body", "headers", "method", "path", "principal", "query", "request_id", "scope")

    def __init__(self, scope: Scope, request_id: str) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers = header_map(scope)
        self.request_id = request_id
        self.body = b""
        self.principal: Principal | None = None

    def presented_key(self) -> str | None:
        auth = self.headers.get("authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        return self.headers.get("x-api-key") or None


class Route:
    __slots__ = ("auth", "handler", "read_body", "wire")

    def __init__(self, handler: Handler, wire: WireDialect | None, auth: str, read_body: bool) -> None:
        self.handler = handler
        self.wire = wire
        self.auth = auth  # none | key (any valid key) | a scope: inference | usage | admin
        self.read_body = read_body


class App:
    def __init__(self, gateway: Gateway, error_wire: WireDialect) -> None:
        self.gateway = gateway
        self.routes: dict[tuple[str, str], Route] = {}
        self.prefix_routes: list[tuple[str, str, Route]] = []
        self.error_wire = error_wire

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        wire: WireDialect | None = None,
        auth: str = "inference",
        body: bool = False,
        prefix: bool = False,
    ) -> None:
        route = Route(handler, wire, auth, body)
        if prefix:
            self.prefix_routes.append((method, path, route))
        else:
            self.routes[(method, path)] = route

    def _match(self, method: str, path: str) -> Route | None:
        route = self.routes.get((method, path))
        if route is None and len(path) > 1 and path.endswith("/"):
            route = self.routes.get((method, path.rstrip("/")))
        if route is None:
            for m, p, r in self.prefix_routes:
                if m == method and path.startswith(p):
                    return r
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # (the http case is here, not in a method of its own: a coroutine less, whose frame
            # every suspension of the call would pass through both ways)
            watch = DisconnectWatch.install(receive)
            if watch is None:  # a server without Fareway's protocol: a task watches receive()
                await self._serve(scope, receive, send, None)
                return
            try:
                await self._serve(scope, receive, send, watch)
            except asyncio.CancelledError:
                if not watch.fired:
                    raise
                # the client went away: the handler has closed the upstream and accounted the call
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            finally:
                watch.remove()
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:  # startup failure must be reported, not hidden
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                _tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(self, scope: Scope, receive: Receive, send: Send, watch: DisconnectWatch | None) -> None:
        rid = new_request_id()
        req = Request(scope, rid)
        route = self._match(req.method, req.path)
        wire = route.wire if route is not None and route.wire is not None else self.error_wire
        try:
            if route is None:
                raise NotFound(f"Unknown route: {req.method} {req.path}", code="unknown_url")
            if route.auth != "none":
                client = scope.get("client")
                req.principal = await self.gateway.keys.authenticate(
                    req.presented_key(), client=client[0] if client else None
                )
                if route.auth != "key" and not req.principal.allows(route.auth):
                    from fareway.errors import PermissionDenied

                    raise PermissionDenied(
                        "This route needs an admin key."
                        if route.auth == "admin"
                        else f"This key lacks the `{route.auth}` scope this route needs."
                    )
            if route.read_body:
                req.body = await read_body(receive, self.gateway.config.max_body_bytes)
                if watch is None:
                    reply = await _unless_disconnected(route.handler(req), receive)
                else:
                    reply = await route.handler(req)
            else:
                reply = await route.handler(req)
        except FarewayError as exc:
            status, body = wire.encode_error(exc)
            headers = [("x-request-id", rid)]
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                headers.append(("retry-after", str(max(0, round(retry_after)))))
            headers += exc.reply_headers
            await send_body(send, status, body, headers)
            return
        except ConnectionResetError:
            return
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", req.method, req.path, rid)
            status, body = wire.encode_error(
                FarewayError("The gateway had an internal error; see its log for request " + rid)
            )
            await send_body(send, 500, body, [("x-request-id", rid)])
            return
        headers = [("x-request-id", rid), *reply.headers]
        if reply.stream is not None:
            try:
                if watch is not None and watch.fired:
                    return  # gone before its stream started (the finally below accounts it)
                await send_stream(
                    send, receive, reply.status, reply.stream, headers, reply.content_type, watch=watch
                )
            finally:
                # however the send ended (even before the stream was first read), close it: that
                # ends the upstream call and accounts it
                aclose = getattr(reply.stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            await send_body(send, reply.status, reply.body, headers, reply.content_type)


async def _unless_disconnected(work: Awaitable[Reply], receive: Receive) -> Reply:
    """Run a handler while watching the client: if it disconnects first, the handler is cancelled
    (the gateway closes the upstream connection and accounts the call as the client's cancel) and
    ConnectionResetError is raised.  The body has been read, so the next message is a disconnect."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        if not watch.done():
            watch.cancel()
    if task.done():
        return task.result()
    if watch.result().get("type") != "http.disconnect":
        return await task  # not a disconnect (no more body is expected): just wait for the call
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ConnectionResetError("client disconnected")


def _tune_gc() -> None:
    """After start-up: move everything alive now (modules, config, catalog, price data) out of
    the collector's view and collect young objects less often.  A call allocates many short-lived
    objects; with the default threshold (700) the collector runs every few calls and rescans the
    long-lived heap.  Measured on the benchmark: a few percent of requests/s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def json_reply(data: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, headers or [], orjson.dumps(data))
