"""The routes: chat in two dialects, models, health."""

from __future__ import annotations

import time
from collections.abc import Awaitable

from fareway.errors import NotFound
from fareway.pipeline.gateway import Gateway, Reply
from fareway.server.app import App, Request, json_reply
from fareway.wire.base import WireDialect


def add_routes(app: App, gateway: Gateway, openai_wire: WireDialect, anthropic_wire: WireDialect) -> None:
    # the chat handlers are plain functions giving the gateway's coroutine (a Handler returns an
    # awaitable): no coroutine of their own for every suspension of the call to pass through
    def chat_completions(req: Request) -> Awaitable[Reply]:
        assert req.principal is not None
        return gateway.chat(openai_wire, req.body, req.headers, req.principal, req.request_id)

    app.add("POST", "/v1/chat/completions", chat_completions, wire=openai_wire, body=True)
    app.add("POST", "/chat/completions", chat_completions, wire=openai_wire, body=True)

    aw = anthropic_wire

    def messages(req: Request) -> Awaitable[Reply]:
        assert req.principal is not None
        return gateway.chat(aw, req.body, req.headers, req.principal, req.request_id)

    async def count_tokens(req: Request) -> Reply:
        return await gateway.count_tokens(aw, req.body, req.headers)

    app.add("POST", "/v1/messages", messages, wire=aw, body=True)
    app.add("POST", "/v1/messages/count_tokens", count_tokens, wire=aw, body=True)

    async def models(req: Request) -> Reply:
        now = int(gateway.started)
        data = [
            {"id": mid, "object": "model", "created": now, "owned_by": owner, "kind": kind}
            for mid, owner, kind in gateway.resolver.listed()
        ]
        return json_reply({"object": "list", "data": data})

    async def model(req: Request) -> Reply:
        mid = req.path[len("/v1/models/") :]
        for m, owner, kind in gateway.resolver.listed():
            if m == mid:
                return json_reply(
                    {
                        "id": m,
                        "object": "model",
                        "created": int(gateway.started),
                        "owned_by": owner,
                        "kind": kind,
                    }
                )
        raise NotFound(f"The model `{mid}` does not exist or you do not have access to it.", param="model")

    app.add("GET", "/v1/models", models, wire=openai_wire)
    app.add("GET", "/v1/models/", model, wire=openai_wire, prefix=True)

    async def healthz(req: Request) -> Reply:
        return json_reply({"status": "ok", "uptime_s": round(time.time() - gateway.started, 3)})

    async def readyz(req: Request) -> Reply:
        checks = await gateway.readiness()
        ok = all(v == "ok" or v.startswith("degraded") for v in checks.values())
        status = "not_ready" if not ok else "ready" if all(v == "ok" for v in checks.values()) else "degraded"
        return json_reply({"status": status, "checks": checks}, 200 if ok else 503)

    app.add("GET", "/healthz", healthz, auth="none")
    app.add("GET", "/readyz", readyz, auth="none")
